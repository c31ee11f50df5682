//! Configuration: the TOML schema ([`file`]), and its validation into one immutable [`Snapshot`].
//!
//! Loading is the fallible half of a reload: it parses, validates, resolves upstream addresses and
//! opens every sealed credential once to prove it opens. Only a fully valid snapshot is ever
//! handed to the request path, which then uses that one snapshot from start to end.

pub mod client_ip;
pub mod conn;
pub mod endpoints;
mod explain;
pub mod file;
mod governance;
pub mod ledger;
pub mod limits;
pub mod observe;
mod providers;
mod references;
mod routes;
#[cfg(test)]
mod routes_tests;
mod snapshot;
#[cfg(test)]
mod tests;

pub use conn::ConnectionSettings;
pub use endpoints::{ActiveCheck, Endpoint, HealthPolicy};
pub use governance::ModelLimits;
pub use ledger::{IngestToken, LedgerSettings};
pub use limits::{LimitsSettings, RedisSettings, Unreachable};
pub use observe::{LogSettings, MetricsSettings};
pub use providers::{AuthStyle, Provider, Timeouts};
pub use snapshot::{Org, Route, ServerSettings, SinkKind, Snapshot, UsageSettings, VirtualKey};

use std::path::Path;

/// Why a configuration was refused. Messages name the offending entry, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid TOML in {path}: {message}")]
    Parse { path: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl ConfigError {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Self::Invalid(msg.into())
    }
}

/// An optional humantime duration (`"200ms"`, `"5m"`), `default` when absent; `field` is its full
/// name in errors (`ledger.batch_interval`).
pub(crate) fn optional_duration(
    value: &Option<String>,
    default: std::time::Duration,
    field: &str,
) -> Result<std::time::Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(text) => humantime::parse_duration(text).map_err(|e| {
            ConfigError::invalid(format!(
                "{field} {text:?} is not a duration (e.g. \"200ms\", \"30s\", \"5m\"): {e}"
            ))
        }),
    }
}

/// Where secrets come from: the environment of this process (`SLUICE_MASTER_KEY` and the
/// `env:VAR` references), abstracted so tests can supply their own.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// An environment with nothing in it (no master key, no provider keys): for configurations that
/// need no secrets, in tests and benchmarks.
#[derive(Debug, Clone, Copy)]
pub struct NoEnv;

impl Env for NoEnv {
    fn var(&self, _: &str) -> Option<String> {
        None
    }
}

/// The real process environment.
#[derive(Debug, Clone, Copy)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

/// For unit tests of one section: `text` with one provider and one model added, and keys not
/// required, so that the rest of the file passes the "can serve" rule.
#[cfg(test)]
pub(crate) fn serving(text: &str) -> String {
    let route = sluice_test_support::config::ONE_ROUTE;
    format!("allow_no_keys = true\n{text}\n{route}")
}

/// Reads and validates a configuration file.
pub fn load(path: &Path, env: &dyn Env) -> Result<Snapshot, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, &path.display().to_string(), env)
}

/// Validates configuration text; `origin` names it in error messages.
pub fn parse(text: &str, origin: &str, env: &dyn Env) -> Result<Snapshot, ConfigError> {
    let raw: file::FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: origin.to_string(),
        message: e.message().to_string(),
    })?;
    snapshot::build(raw, env)
}
