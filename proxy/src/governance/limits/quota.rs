//! A quota: `amount` per `period`, parsed from configuration text such as `600/min`.

use std::fmt;
use std::time::Duration;

/// An amount (requests or tokens) allowed per period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Quota {
    pub amount: u64,
    pub period: Duration,
}

/// Period units, longest first so `Display` picks the largest unit that divides the period.
const UNITS: [(&str, u64); 4] = [("day", 86_400), ("h", 3_600), ("min", 60), ("s", 1)];

fn unit_seconds(unit: &str) -> Option<u64> {
    match unit {
        "s" | "sec" | "secs" | "second" | "seconds" => Some(1),
        "min" | "mins" | "minute" | "minutes" => Some(60),
        "h" | "hr" | "hour" | "hours" => Some(3_600),
        "d" | "day" | "days" => Some(86_400),
        _ => None,
    }
}

/// Parses digits with optional `_` separators (`2_000_000`); `None` when it is not a number.
fn parse_number(text: &str) -> Option<u64> {
    let digits: String = text.chars().filter(|c| *c != '_').collect();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl Quota {
    /// Parses `AMOUNT/UNIT` or `AMOUNT/N UNIT` (`600/min`, `20/s`, `2_000_000/day`, `500/10s`).
    /// Units: `s`, `sec`, `second`, `min`, `minute`, `h`, `hour`, `d`, `day` (plurals too).
    /// The error text quotes the input so it can be shown as is in a configuration error.
    pub fn parse(text: &str) -> Result<Quota, String> {
        let bad = |why: &str| format!("invalid quota {text:?}: {why}");
        let (amount, per) = text
            .split_once('/')
            .ok_or_else(|| bad("expected AMOUNT/PERIOD such as 600/min"))?;
        let amount = parse_number(amount.trim())
            .ok_or_else(|| bad("the amount must be a whole number such as 600 or 2_000_000"))?;
        if amount == 0 {
            return Err(bad("the amount must be at least 1"));
        }
        let per = per.trim();
        let split = per
            .find(|c: char| !(c.is_ascii_digit() || c == '_'))
            .unwrap_or(per.len());
        let (count, unit) = per.split_at(split);
        let count = if count.is_empty() {
            1
        } else {
            parse_number(count).ok_or_else(|| bad("the period count must be a whole number"))?
        };
        let unit = unit_seconds(unit.trim()).ok_or_else(|| {
            bad("unknown period unit (use s, sec, second, min, minute, h, hour, d or day)")
        })?;
        if count == 0 {
            return Err(bad("the period must be longer than zero"));
        }
        let seconds = count
            .checked_mul(unit)
            .filter(|s| *s <= 100 * 365 * 86_400)
            .ok_or_else(|| bad("the period is too long"))?;
        Ok(Quota {
            amount,
            period: Duration::from_secs(seconds),
        })
    }
}

impl std::str::FromStr for Quota {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quota::parse(s)
    }
}

impl fmt::Display for Quota {
    /// The canonical form (`600/min`, `500/10s`); it parses back to the same quota for every
    /// quota `parse` can produce. Sub-second periods (only constructible directly) print as
    /// `AMOUNT/<debug duration>`, which is informative but not parseable.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.period.as_secs();
        if self.period.subsec_nanos() != 0 || secs == 0 {
            return write!(f, "{}/{:?}", self.amount, self.period);
        }
        for (name, unit) in UNITS {
            if secs % unit == 0 {
                let count = secs / unit;
                return if count == 1 {
                    write!(f, "{}/{name}", self.amount)
                } else {
                    write!(f, "{}/{count}{name}", self.amount)
                };
            }
        }
        // Unreachable in practice: every whole number of seconds is divisible by 1.
        write!(f, "{}/{secs}s", self.amount)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(amount: u64, secs: u64) -> Quota {
        Quota {
            amount,
            period: Duration::from_secs(secs),
        }
    }

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(Quota::parse("600/min").unwrap(), q(600, 60));
        assert_eq!(Quota::parse("20/s").unwrap(), q(20, 1));
        assert_eq!(Quota::parse("2_000_000/day").unwrap(), q(2_000_000, 86_400));
        assert_eq!(Quota::parse("100/h").unwrap(), q(100, 3_600));
        assert_eq!(Quota::parse("5/sec").unwrap(), q(5, 1));
        assert_eq!(Quota::parse("5/second").unwrap(), q(5, 1));
        assert_eq!(Quota::parse("5/minute").unwrap(), q(5, 60));
        assert_eq!(Quota::parse("5/hour").unwrap(), q(5, 3_600));
        assert_eq!(Quota::parse("5/d").unwrap(), q(5, 86_400));
        assert_eq!(Quota::parse(" 7 / min ").unwrap(), q(7, 60));
        assert_eq!(Quota::parse("500/10s").unwrap(), q(500, 10));
    }

    #[test]
    fn rejects_bad_input_naming_it() {
        for bad in [
            "", "600", "0/min", "x/min", "600/", "600/week", "-1/s", "1.5/s", "/s", "1/0s", "_/s",
        ] {
            let err = Quota::parse(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
        assert!(Quota::parse("0/min").unwrap_err().contains("at least 1"));
        assert!(Quota::parse("1/week").unwrap_err().contains("unit"));
        assert!(Quota::parse("99999999999999999999/s").is_err());
    }

    #[test]
    fn display_is_canonical_and_round_trips() {
        for (text, canonical) in [
            ("600/minute", "600/min"),
            ("20/sec", "20/s"),
            ("2_000_000/d", "2000000/day"),
            ("100/hour", "100/h"),
            ("3/120s", "3/2min"),
            ("9/90s", "9/90s"),
        ] {
            let quota = Quota::parse(text).unwrap();
            assert_eq!(quota.to_string(), canonical);
            assert_eq!(Quota::parse(canonical).unwrap(), quota);
        }
    }
}
