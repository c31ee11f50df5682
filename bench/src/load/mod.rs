//! `sluice-load`: an open- and closed-loop HTTP load generator for LLM API gateways.
//!
//! Build a [`Plan`] and call [`run`] on a tokio runtime (or use the `sluice-load` binary).
//! Requests are OpenAI chat or Anthropic messages, streamed or not. Per request the run
//! measures the time to response headers, to the first SSE `data:` line, every gap between
//! data lines, and the total, all from the request's *intended* send time: in open loop that
//! is its slot in the fixed arrival schedule, so a stalled server shows up as latency instead
//! of silently slowing the generator down (coordinated omission). Results go into HDR
//! histograms (microseconds) and come back as a [`Report`].
//!
//! Runs are always bounded (duration and/or request count, with hard caps) and only ever
//! connect to loopback addresses.

mod conn;
mod plan;
mod report;
mod request;
mod runner;
mod sse;
mod stats;

pub use plan::{
    Api, Auth, AuthScheme, Mode, Plan, PlanError, Secret, Target, MAX_CLIENTS, MAX_DURATION,
    MAX_OUTSTANDING, MAX_PROMPT_BYTES, MAX_RATE, MAX_REQUESTS, MAX_TIMEOUT,
};
pub use report::{PlanSummary, Report, Throughput, SCHEMA};
pub use runner::{run, LoadError};
pub use stats::{Errors, Latencies, Summary};
