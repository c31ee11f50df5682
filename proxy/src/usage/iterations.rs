//! Anthropic `usage.iterations[]`: the per-iteration breakdown of a request that ran several
//! model passes (compaction, say). The top-level counts of such a report cover only the last
//! iteration, while the provider bills the sum of all of them, so the sum is what sluice records.

use std::fmt;

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::counts::{absent_otherwise, drain_map, lenient_value, Count, Lenient};

/// The counts of one iteration; anything else in it (its `type`, `cache_creation{}`) is skipped.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default)]
struct Iteration {
    input_tokens: Count,
    output_tokens: Count,
    cache_creation_input_tokens: Count,
    cache_read_input_tokens: Count,
}

/// The saturating sums over every iteration that carried a count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct IterationSums {
    pub(crate) input: u64,
    pub(crate) output: u64,
    pub(crate) cache_write: u64,
    pub(crate) cache_read: u64,
}

/// `iterations` read leniently: absent unless it is an array holding at least one iteration
/// with a count (an empty or garbage array must not zero the top-level counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Iterations(pub(crate) Option<IterationSums>);

lenient_value! {
    Iterations via IterationsVisitor expecting "an array of usage iterations", numbers absent;
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Iterations, A::Error> {
        let mut sums = IterationSums::default();
        let mut counted = false;
        while let Some(Lenient(item)) = seq.next_element::<Lenient<Iteration>>()? {
            let Some(it) = item else { continue };
            let parts = [
                it.input_tokens,
                it.output_tokens,
                it.cache_creation_input_tokens,
                it.cache_read_input_tokens,
            ];
            counted |= parts.iter().any(|c| c.0.is_some());
            let add = |acc: u64, c: Count| acc.saturating_add(c.0.unwrap_or(0));
            sums.input = add(sums.input, it.input_tokens);
            sums.output = add(sums.output, it.output_tokens);
            sums.cache_write = add(sums.cache_write, it.cache_creation_input_tokens);
            sums.cache_read = add(sums.cache_read, it.cache_read_input_tokens);
        }
        Ok(Iterations(counted.then_some(sums)))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Iterations, A::Error> {
        drain_map(map).map(|_| Iterations(None))
    }
}
