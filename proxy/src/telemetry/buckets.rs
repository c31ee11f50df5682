//! Histogram bucket boundaries, chosen per job (the exporter renders a histogram without set
//! buckets as a summary, which cannot be aggregated across replicas, so every histogram has some).

/// `gen_ai.server.request.duration` and `gen_ai.client.operation.duration`: the boundaries the
/// OpenTelemetry GenAI conventions (v1.41.0) advise, 10 ms doubling to 82 s, extended by 164 s
/// and 328 s because a long reasoning stream runs for minutes and a p99 above the last bucket
/// would read as "+Inf".
pub const DURATION: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92, 163.84,
    327.68,
];

/// `gen_ai.server.time_to_first_token`: the convention's boundaries (1 ms to 10 s).
pub const TIME_TO_FIRST_TOKEN: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// `gen_ai.server.time_per_output_token`: the convention's boundaries (10 ms to 2.5 s).
pub const TIME_PER_OUTPUT_TOKEN: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
];

/// `gen_ai.client.token.usage`: the convention's powers of four, 1 to 67 M tokens.
pub const TOKENS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];

/// Gateway overhead: sluice's own promise is sub-millisecond added latency, so the buckets
/// resolve 25 µs steps below 1 ms (where a regression shows first) and stay coarse above it,
/// up to 1 s (an overhead that large is an incident, whatever its exact size).
pub const OVERHEAD: &[f64] = &[
    0.000_025, 0.000_05, 0.000_1, 0.000_15, 0.000_2, 0.000_3, 0.000_4, 0.000_5, 0.000_75, 0.001,
    0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bucket_list_is_non_empty_and_increasing() {
        for buckets in [
            DURATION,
            TIME_TO_FIRST_TOKEN,
            TIME_PER_OUTPUT_TOKEN,
            TOKENS,
            OVERHEAD,
        ] {
            assert!(!buckets.is_empty());
            assert!(buckets.windows(2).all(|w| w[0] < w[1]), "{buckets:?}");
        }
    }
}
