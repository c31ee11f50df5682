//! The `[ledger]` table: where usage records are delivered besides the local sink, and how.
//!
//! The ingest token may only come from the environment (`env:VAR`): a config file is read by
//! more people and tools than a process environment, and a literal token in it would leak.

use super::optional_duration;
use super::{ConfigError, Env};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `[ledger]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerSection {
    /// sluice-control base URL, e.g. `http://127.0.0.1:9300`.
    pub url: String,
    /// Ingest token as `env:VAR`.
    pub token: String,
    /// Directory of the spool (created if missing).
    pub spool_dir: PathBuf,
    /// Send when this many records are pending (default 500, at most 10,000: the ledger's cap).
    pub batch_records: Option<usize>,
    /// … or this long after the first pending record (default 200ms).
    pub batch_interval: Option<String>,
    /// Period of `GET /v1/spend` (default 5s; "0s" disables the spend feed).
    pub spend_poll: Option<String>,
    /// Longest wait for the ledger at shutdown before the rest goes to the spool (default 10s).
    pub drain_timeout: Option<String>,
    /// Timeout of one request to the ledger (default 5s).
    pub request_timeout: Option<String>,
    /// Refusals of one batch (a 4xx other than auth, not-found, timeout or rate limit) after
    /// which it goes to the dead-letter file instead of blocking the queue (default 5).
    pub dead_letter_after: Option<u32>,
}

/// The ingest token. `Debug` never shows it; only the HTTP client reads it.
#[derive(Clone, PartialEq, Eq)]
pub struct IngestToken(String);

impl IngestToken {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for IngestToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IngestToken(..)")
    }
}

/// Validated `[ledger]` settings (start-only: a reload logs a change but does not apply it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerSettings {
    /// Base URL without a trailing slash.
    pub url: String,
    pub token: IngestToken,
    pub spool_dir: PathBuf,
    pub batch_records: usize,
    pub batch_interval: Duration,
    /// `None`: the spend feed is off.
    pub spend_poll: Option<Duration>,
    pub drain_timeout: Duration,
    pub request_timeout: Duration,
    /// Refusals of one batch before it is dead-lettered (at least 1).
    pub dead_letter_after: u32,
}

/// Default of `dead_letter_after`: a refusal that repeats five times (with backoff between) is
/// not a ledger being deployed.
pub const DEFAULT_DEAD_LETTER_AFTER: u32 = 5;

/// The ledger refuses larger batches.
pub const MAX_BATCH_RECORDS: usize = 10_000;

/// Validates `[ledger]`; `None` when the table is absent.
pub fn build(
    raw: Option<&LedgerSection>,
    env: &dyn Env,
) -> Result<Option<LedgerSettings>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let url = raw.url.trim().trim_end_matches('/').to_string();
    let parsed = url
        .parse::<http::Uri>()
        .map_err(|e| ConfigError::invalid(format!("ledger.url {url:?} is not a URL: {e}")))?;
    if !matches!(parsed.scheme_str(), Some("http" | "https")) || parsed.host().is_none() {
        return Err(ConfigError::invalid(format!(
            "ledger.url {url:?} must be an http:// or https:// URL with a host"
        )));
    }
    if parsed.query().is_some() {
        return Err(ConfigError::invalid(format!(
            "ledger.url {url:?} must not have a query string"
        )));
    }
    let var = raw.token.strip_prefix("env:").ok_or_else(|| {
        // Never echo the value: it may be the token itself.
        ConfigError::invalid("ledger.token must be \"env:VAR\" (a literal token is refused)")
    })?;
    let token = env.var(var).ok_or_else(|| {
        ConfigError::invalid(format!(
            "ledger.token: environment variable {var} is not set"
        ))
    })?;
    if raw.spool_dir.as_os_str().is_empty() {
        return Err(ConfigError::invalid("ledger.spool_dir must not be empty"));
    }
    let batch_records = raw.batch_records.unwrap_or(500);
    if !(1..=MAX_BATCH_RECORDS).contains(&batch_records) {
        return Err(ConfigError::invalid(format!(
            "ledger.batch_records {batch_records} must be between 1 and {MAX_BATCH_RECORDS}"
        )));
    }
    // A zero batch interval would spin; a zero request timeout would fail every batch.
    let positive = |value: &Option<String>, default: Duration, field: &str| {
        let d = optional_duration(value, default, field)?;
        if d.is_zero() {
            return Err(ConfigError::invalid(format!("{field} must be above 0")));
        }
        Ok(d)
    };
    let batch_interval = positive(
        &raw.batch_interval,
        Duration::from_millis(200),
        "ledger.batch_interval",
    )?;
    let spend_poll =
        optional_duration(&raw.spend_poll, Duration::from_secs(5), "ledger.spend_poll")?;
    let request_timeout = positive(
        &raw.request_timeout,
        Duration::from_secs(5),
        "ledger.request_timeout",
    )?;
    Ok(Some(LedgerSettings {
        url,
        token: IngestToken(token),
        spool_dir: raw.spool_dir.clone(),
        batch_records,
        batch_interval,
        spend_poll: (!spend_poll.is_zero()).then_some(spend_poll),
        drain_timeout: optional_duration(
            &raw.drain_timeout,
            Duration::from_secs(10),
            "ledger.drain_timeout",
        )?,
        request_timeout,
        dead_letter_after: match raw.dead_letter_after {
            None => DEFAULT_DEAD_LETTER_AFTER,
            Some(0) => {
                return Err(ConfigError::invalid(
                    "ledger.dead_letter_after must be at least 1",
                ))
            }
            Some(n) => n,
        },
    }))
}

#[cfg(test)]
mod tests {
    use crate::config::{self, Env};
    use std::time::Duration;

    struct Vars;
    impl Env for Vars {
        fn var(&self, name: &str) -> Option<String> {
            (name == "INGEST").then(|| "tok-secret-value".to_string())
        }
    }

    const FULL: &str = "[ledger]\nurl = \"http://127.0.0.1:9300/\"\ntoken = \"env:INGEST\"\n\
        spool_dir = \"/tmp/s\"\nbatch_records = 500\nbatch_interval = \"200ms\"\nspend_poll = \"5s\"\n";

    fn parse(text: &str) -> Result<config::Snapshot, config::ConfigError> {
        config::parse(&config::serving(text), "t", &Vars)
    }

    #[test]
    fn the_documented_table_parses() {
        let l = parse(FULL).unwrap().usage.ledger.unwrap();
        assert_eq!(l.url, "http://127.0.0.1:9300");
        assert_eq!(l.token.expose(), "tok-secret-value");
        assert_eq!(l.batch_records, 500);
        assert_eq!(l.batch_interval, Duration::from_millis(200));
        assert_eq!(l.spend_poll, Some(Duration::from_secs(5)));
        assert_eq!(l.drain_timeout, Duration::from_secs(10));
        assert_eq!(l.dead_letter_after, 5);
        let custom = FULL.to_string() + "dead_letter_after = 2\n";
        assert_eq!(
            parse(&custom)
                .unwrap()
                .usage
                .ledger
                .unwrap()
                .dead_letter_after,
            2
        );
        let zero = FULL.to_string() + "dead_letter_after = 0\n";
        assert!(parse(&zero)
            .unwrap_err()
            .to_string()
            .contains("dead_letter_after"));
        assert!(!format!("{l:?}").contains("tok-secret-value"));
        assert!(parse("").unwrap().usage.ledger.is_none());
    }

    #[test]
    fn zero_spend_poll_disables_the_feed() {
        let text = FULL.replace("\"5s\"", "\"0s\"");
        assert_eq!(parse(&text).unwrap().usage.ledger.unwrap().spend_poll, None);
    }

    #[test]
    fn bad_values_are_refused_without_echoing_a_token() {
        let literal = FULL.replace("env:INGEST", "tok-literal-123");
        let e = parse(&literal).unwrap_err().to_string();
        assert!(
            e.contains("env:VAR") && !e.contains("tok-literal-123"),
            "{e}"
        );
        let unset = FULL.replace("env:INGEST", "env:NOPE");
        assert!(parse(&unset).unwrap_err().to_string().contains("NOPE"));
        for (from, to, needle) in [
            ("http://127.0.0.1:9300/", "ftp://x", "ledger.url"),
            ("batch_records = 500", "batch_records = 0", "batch_records"),
            (
                "batch_records = 500",
                "batch_records = 10001",
                "batch_records",
            ),
            ("\"200ms\"", "\"soon\"", "batch_interval"),
            ("\"200ms\"", "\"0s\"", "batch_interval"),
            ("spend_poll", "spend_pol", "unknown field"),
        ] {
            let e = parse(&FULL.replace(from, to)).unwrap_err().to_string();
            assert!(e.contains(needle), "{from} -> {to}: {e}");
        }
    }
}
