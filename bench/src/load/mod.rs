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
//!
//! # Command line
//!
//! ```text
//! sluice-load --url http://127.0.0.1:8080 --clients 32 --duration 10s --json closed.json
//! sluice-load --url http://127.0.0.1:8080 --rate 2000 --requests 20000 --max-outstanding 512
//! sluice-load --url http://127.0.0.1:8080 --api anthropic --stream --rate 200 --duration 10s \
//!     -H 'x-mock-chunks: 64' -H 'x-mock-gap-ms: 5' --key-env SLUICE_KEY --json -
//! ```
//!
//! Exactly one of `--rate` (open loop) or `--clients` (closed loop), and at least one of
//! `--duration` / `--requests`. The key comes from `--key-env VAR` or `--key-file PATH` and
//! is sent as `Authorization: Bearer` (OpenAI) or `x-api-key` (Anthropic) unless `--auth`
//! says otherwise. Exit status: 0 when the run completed (failed requests are in the
//! report), 2 for a refused plan, 1 when the run itself failed.
//!
//! # Report
//!
//! [`Report`] serialises to JSON (`schema: "sluice-load/1"`) with: `plan` (what ran, no
//! secrets), `elapsed_s`, `planned`, `sent`, `ok`, `dropped`, `errors` (`total`,
//! `connect`, `timeout`, `protocol`, `body`, `stream_cut`, `status: {code: n}`),
//! `statuses` (every status seen), `bytes_received`, `connections_opened`, `events`,
//! `throughput` (`requests_per_s`, `events_per_s`, `bytes_per_s`), `latency_us` (`ttfb`,
//! `first_event`, `gap`, `total`, `send_lag`, each a [`Summary`]: `count`, `min`, `mean`,
//! `p50`, `p90`, `p99`, `p99_9`, `max`) and `events_per_request` (a [`Summary`] of counts).
//! `planned == ok + errors.total + dropped` always holds. Latencies cover successful
//! requests only.

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
