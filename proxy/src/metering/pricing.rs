//! Model prices and the cost of one request, in integer micro-USD.
//!
//! Prices are configured in USD per million tokens (what providers publish) and held as integer
//! micro-USD per million tokens, so every sum is exact integer arithmetic. A request's cost is
//! `ceil(Σ tokens × price / 10^6)` micro-USD: the one rounding happens once per request, upward,
//! so a ledger summing records never bills less than the provider's price.

use crate::usage::Usage;

/// Prices of one model in micro-USD per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Price {
    /// Uncached input tokens.
    pub input: u64,
    pub output: u64,
    /// Cache reads (defaults to the input price).
    pub cached_input: u64,
    /// Cache writes, Anthropic's `cache_creation_input_tokens` (defaults to the input price).
    pub cache_write: u64,
}

/// Largest configurable price: $1,000,000 per million tokens, far above any real model, low
/// enough that `u64::MAX` tokens times it still fits in `u128`.
const MAX_USD: f64 = 1_000_000.0;

/// Converts a USD amount from the configuration to integer micro-USD, refusing negatives,
/// non-numbers and absurd values. `what` names the field in the error.
pub fn usd_to_micro(usd: f64, what: &str) -> Result<u64, String> {
    if !(0.0..=MAX_USD * 1_000.0).contains(&usd) {
        return Err(format!(
            "{what} = {usd} is not a price in USD (a number from 0 up to 1e9)"
        ));
    }
    // Rounded to the nearest micro-USD: TOML floats such as 2.5 or 0.15 are not exact in binary.
    Ok((usd * 1e6).round() as u64)
}

impl Price {
    /// Builds a price from USD per million tokens; cached and cache-write prices default to the
    /// input price.
    pub fn from_usd(
        input: f64,
        output: f64,
        cached_input: Option<f64>,
        cache_write: Option<f64>,
    ) -> Result<Self, String> {
        for (v, name) in [(input, "input"), (output, "output")] {
            if v > MAX_USD {
                return Err(format!(
                    "price.{name} = {v} USD per million tokens is too high"
                ));
            }
        }
        let input = usd_to_micro(input, "price.input")?;
        Ok(Self {
            input,
            output: usd_to_micro(output, "price.output")?,
            cached_input: cached_input
                .map(|v| usd_to_micro(v, "price.cached_input"))
                .transpose()?
                .unwrap_or(input),
            cache_write: cache_write
                .map(|v| usd_to_micro(v, "price.cache_write"))
                .transpose()?
                .unwrap_or(input),
        })
    }

    /// Cost of `usage` in micro-USD, rounded up. `usage.input_tokens` includes cache reads and
    /// writes (see the usage module's normalisation), so they are taken out of the uncached part.
    pub fn cost(&self, usage: &Usage) -> u64 {
        let uncached = usage
            .input_tokens
            .saturating_sub(usage.cached_tokens)
            .saturating_sub(usage.cache_write_tokens);
        let total: u128 = u128::from(uncached) * u128::from(self.input)
            + u128::from(usage.cached_tokens) * u128::from(self.cached_input)
            + u128::from(usage.cache_write_tokens) * u128::from(self.cache_write)
            + u128::from(usage.output_tokens) * u128::from(self.output);
        u64::try_from(total.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, output: u64, cached: u64, write: u64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            cached_tokens: cached,
            cache_write_tokens: write,
            reasoning_tokens: 0,
        }
    }

    #[test]
    fn prices_convert_exactly_to_micro_usd() {
        let p = Price::from_usd(2.5, 10.0, Some(1.25), None).unwrap();
        assert_eq!(p.input, 2_500_000);
        assert_eq!(p.output, 10_000_000);
        assert_eq!(p.cached_input, 1_250_000);
        assert_eq!(p.cache_write, 2_500_000, "defaults to the input price");
        assert_eq!(
            Price::from_usd(0.15, 0.6, None, None).unwrap().input,
            150_000
        );
    }

    #[test]
    fn bad_prices_are_refused_with_the_field_name() {
        for bad in [-1.0, f64::NAN, f64::INFINITY, 2e6] {
            let e = Price::from_usd(bad, 1.0, None, None).unwrap_err();
            assert!(e.contains("price.input"), "{e}");
        }
        assert!(Price::from_usd(1.0, 1.0, Some(-0.5), None)
            .unwrap_err()
            .contains("cached_input"));
    }

    #[test]
    fn cost_splits_cached_and_written_input() {
        // $3/M input, $15/M output, $0.30/M cache read, $3.75/M cache write (Claude Sonnet).
        let p = Price::from_usd(3.0, 15.0, Some(0.3), Some(3.75)).unwrap();
        // 1000 input of which 600 cache reads and 100 writes → 300 uncached.
        let c = p.cost(&usage(1000, 200, 600, 100));
        // 300×3 + 600×0.3 + 100×3.75 + 200×15 = 900 + 180 + 375 + 3000 = 4455 micro-USD.
        assert_eq!(c, 4455);
    }

    #[test]
    fn cost_rounds_up_once_per_request() {
        let p = Price::from_usd(0.15, 0.6, None, None).unwrap();
        // 7 × 0.15 + 3 × 0.6 = 1.05 + 1.8 = 2.85 micro-USD → 3.
        assert_eq!(p.cost(&usage(7, 3, 0, 0)), 3);
        assert_eq!(p.cost(&usage(0, 0, 0, 0)), 0);
        assert_eq!(Price::default().cost(&usage(1_000_000, 1_000_000, 0, 0)), 0);
    }

    #[test]
    fn inconsistent_counts_and_huge_counts_never_panic() {
        let p = Price::from_usd(1_000_000.0, 1_000_000.0, None, None).unwrap();
        // More cached than input (a broken provider): uncached saturates at zero.
        assert!(p.cost(&usage(10, 0, 50, 50)) > 0);
        assert_eq!(
            p.cost(&usage(u64::MAX, u64::MAX, 0, 0)),
            u64::MAX,
            "saturates"
        );
    }
}
