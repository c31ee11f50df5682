//! The declarative scenario format (`load-tests/scenarios/*.toml`): topology, a configuration
//! overlay, the load, a fault timeline and the expected outcome. Parsed with serde; every table
//! denies unknown fields, so a typo fails the scenario instead of silently testing less.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// One scenario file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    /// What it shows, for the report.
    pub about: String,
    #[serde(default)]
    pub topology: Topology,
    #[serde(default)]
    pub config: Overlay,
    /// Load parts, run at the same time.
    pub load: Vec<Part>,
    #[serde(default)]
    pub fault: Vec<Fault>,
    /// Slow clients (slowloris) beside the load.
    #[serde(default)]
    pub slow: Vec<Slow>,
    #[serde(default)]
    pub expect: Expect,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// sluice processes sharing one configuration (default 1).
    pub replicas: Option<usize>,
    /// `none` (default) or `sqlite`: a real ledger the replicas deliver to.
    pub ledger: Option<String>,
    /// A real Redis, and `[limits] backend = "redis"` for every replica.
    #[serde(default)]
    pub redis: bool,
    /// Mock providers beside the main one, as `@MOCK1@`, `@MOCK2@`, … in the overlay; each can
    /// be killed by the timeline (`kill_mock`), cutting the connections it holds.
    #[serde(default)]
    pub spare_mocks: usize,
}

/// TOML added to the standard scenario configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overlay {
    /// Lines inside the org's table (limits, budget).
    #[serde(default)]
    pub org: String,
    /// Tables appended to the file (models, providers; `[server]` and `[usage]` are set).
    /// `@MOCK@` stands for the mock provider's `host:port`.
    #[serde(default)]
    pub extra: String,
}

/// One stream of requests, driven by the project's load generator (`sluice_bench::load`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Part {
    /// Names the part in the report.
    pub name: String,
    /// `openai` (chat completions, default) or `anthropic` (messages).
    pub api: Option<String>,
    #[serde(default)]
    pub stream: bool,
    /// The model in the body (default `mock-gpt` / `mock-claude`).
    pub model: Option<String>,
    /// Which replica it is sent to (default 0).
    #[serde(default)]
    pub replica: usize,
    /// `x-mock-*` and other headers, `name: value`.
    #[serde(default)]
    pub headers: Vec<String>,
    #[serde(flatten)]
    pub size: Size,
    /// Per request, send to end of body (default 30s); a shorter one makes the client hang up.
    #[serde(default, with = "opt_duration")]
    pub timeout: Option<Duration>,
    /// The larger size `run.sh --full` uses (any field left out keeps the CI value).
    pub full: Option<Size>,
    /// Errors this part must end with, by kind (`connect`, `timeout`, `protocol`, `body`,
    /// `stream_cut`, `status_429`, …): an exact count, `"all"`, or a range `"a..b"`
    /// (inclusive). Every kind not named must be 0.
    #[serde(default)]
    pub errors: BTreeMap<String, Count>,
    /// Successful requests, when not simply "all that did not fail as expected".
    pub ok: Option<Count>,
}

/// Connections that trickle a request header one byte at a time; every one must be cut by
/// sluice within `bound` (default 30 s).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slow {
    pub connections: usize,
    #[serde(default)]
    pub replica: usize,
    #[serde(with = "humantime_serde_compat")]
    pub byte_every: Duration,
    #[serde(default, with = "opt_duration")]
    pub bound: Option<Duration>,
}

/// How much load: open loop (`rate`) or closed loop (`clients`), bounded by `requests` and/or
/// `duration`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Size {
    pub clients: Option<usize>,
    pub rate: Option<f64>,
    pub requests: Option<u64>,
    #[serde(default, with = "opt_duration")]
    pub duration: Option<Duration>,
    /// Sets `clients` and `requests` to as many connections as the descriptor limits allow
    /// (see `run::fd_limited_clients`).
    pub fit_fd_limit: Option<bool>,
}

impl Size {
    /// `self` with the fields `over` sets replaced.
    pub fn overlay(&self, over: &Size) -> Size {
        Size {
            clients: over.clients.or(self.clients),
            rate: over.rate.or(self.rate),
            requests: over.requests.or(self.requests),
            duration: over.duration.or(self.duration),
            fit_fd_limit: over.fit_fd_limit.or(self.fit_fd_limit),
        }
    }
}

/// An expected count: `7`, `"all"`, or `"3..9"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Count {
    Exact(u64),
    Text(String),
}

impl Count {
    /// Whether `n` of `total` satisfies it; `Err` for a malformed text.
    pub fn holds(&self, n: u64, total: u64) -> Result<bool, String> {
        match self {
            Count::Exact(v) => Ok(n == *v),
            Count::Text(t) if t == "all" => Ok(n == total),
            Count::Text(t) => {
                let (lo, hi) = t
                    .split_once("..")
                    .ok_or_else(|| format!("{t:?} is not a count, \"all\" or \"a..b\""))?;
                let num = |s: &str| {
                    s.trim()
                        .parse::<u64>()
                        .map_err(|_| format!("{t:?}: {s:?} is not a number"))
                };
                Ok(num(lo)? <= n && n <= num(hi)?)
            }
        }
    }
}

/// One fault at a point of the timeline (from the start of the load).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    #[serde(with = "humantime_serde_compat")]
    pub at: Duration,
    /// `reload` (every replica, SIGHUP after rewriting the file), `kill_ledger`,
    /// `restart_ledger`, `stop_redis`, `start_redis`, `kill_replica` (SIGKILL),
    /// `restart_replica` (SIGTERM, drain, a new process on the same addresses),
    /// `upgrade_replica` (a binary upgrade: `--upgrade`, then SIGQUIT to the old process),
    /// `kill_mock` (a spare mock stops accepting and cuts every connection it holds).
    pub action: String,
    /// For `kill_replica`, `restart_replica` and `upgrade_replica`.
    pub replica: Option<usize>,
    /// For `kill_mock`: which spare mock (1 is `@MOCK1@`).
    pub mock: Option<usize>,
}

/// Invariants across the whole scenario (the per-part ones are on [`Part`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Successful requests over every part.
    pub ok_total: Option<Count>,
    /// RSS after the load may exceed RSS before by at most this many MiB (default 64).
    pub rss_growth_mib: Option<u64>,
    /// The same bound at `--full` size (default: `rss_growth_mib`).
    pub full_rss_growth_mib: Option<u64>,
    /// The most requests in progress at once at the main mock: what a concurrency cap let
    /// through, seen from the provider's side.
    pub upstream_peak: Option<Count>,
    /// Input plus output tokens over every usage record of every live replica: what a token
    /// quota let through.
    pub record_tokens: Option<Count>,
}

mod opt_duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_exact_all_or_inclusive_ranges() {
        assert_eq!(Count::Exact(3).holds(3, 9), Ok(true));
        assert_eq!(Count::Exact(3).holds(4, 9), Ok(false));
        assert_eq!(Count::Text("all".into()).holds(9, 9), Ok(true));
        assert_eq!(Count::Text("all".into()).holds(8, 9), Ok(false));
        assert_eq!(Count::Text("2..5".into()).holds(5, 9), Ok(true));
        assert_eq!(Count::Text("2..5".into()).holds(6, 9), Ok(false));
        assert!(Count::Text("lots".into()).holds(1, 1).is_err());
    }
}
