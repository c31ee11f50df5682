//! sluice-bench: the mock LLM provider used by tests and benchmarks, plus load tooling.

pub mod load;
pub mod mock;
