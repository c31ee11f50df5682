//! `[server.connections]`: how long a client may take and how many connections may be open —
//! the limits that keep slow or idle clients from exhausting the proxy's file descriptors.

use super::ConfigError;
use serde::Deserialize;
use std::time::Duration;

/// The TOML table, as operators write it (humantime durations).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionsSection {
    /// Whole request header, from its first byte (from the accept for a new connection).
    pub header_timeout: Option<String>,
    /// Whole request body, from the end of its header (408 in the caller's shape).
    pub body_timeout: Option<String>,
    /// Idle time allowed between two requests on a keep-alive connection (whole seconds).
    pub idle_timeout: Option<String>,
    /// Open client connections; over it a new connection gets 503 with `retry-after`
    /// (default: derived from the file-descriptor limit).
    pub max: Option<usize>,
}

/// The validated settings (read once at start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionSettings {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    /// Whole seconds: Pingora counts keep-alive in seconds.
    pub idle_timeout_secs: u64,
    /// `None`: derived from the file-descriptor limit at start.
    pub max: Option<usize>,
}

/// Generous for any real client (a request header is a few hundred bytes), short enough that a
/// client trickling bytes cannot hold a connection.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest default body (16 MiB) at about 2.2 Mbit/s.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// Longer than the connection pools of common clients keep idle connections (httpx, hence the
/// OpenAI and Anthropic Python SDKs: 5 s), so the proxy never closes a connection a client is
/// about to reuse.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;

impl Default for ConnectionSettings {
    fn default() -> Self {
        Self {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            idle_timeout_secs: DEFAULT_IDLE_TIMEOUT_SECS,
            max: None,
        }
    }
}

/// Validates `[server.connections]`; zero durations and a zero cap are refused (they would fail
/// every request).
pub fn build(raw: &ConnectionsSection) -> Result<ConnectionSettings, ConfigError> {
    let positive = |value: &Option<String>, default: Duration, name: &str| {
        let field = format!("server.connections.{name}");
        let d = super::optional_duration(value, default, &field)?;
        if d.is_zero() {
            return Err(ConfigError::invalid(format!(
                "{field} must be longer than 0s"
            )));
        }
        Ok(d)
    };
    let header_timeout = positive(
        &raw.header_timeout,
        DEFAULT_HEADER_TIMEOUT,
        "header_timeout",
    )?;
    let body_timeout = positive(&raw.body_timeout, DEFAULT_BODY_TIMEOUT, "body_timeout")?;
    let idle = positive(
        &raw.idle_timeout,
        Duration::from_secs(DEFAULT_IDLE_TIMEOUT_SECS),
        "idle_timeout",
    )?;
    if raw.max == Some(0) {
        return Err(ConfigError::invalid(
            "server.connections.max must be at least 1 (omit it for the default)",
        ));
    }
    Ok(ConnectionSettings {
        header_timeout,
        body_timeout,
        // Rounded up, so a configured idle time is never shortened.
        idle_timeout_secs: idle.as_secs() + u64::from(idle.subsec_nanos() > 0),
        max: raw.max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(toml_text: &str) -> ConnectionsSection {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(build(&section("")).unwrap(), ConnectionSettings::default());
        let s = build(&section(
            "header_timeout = \"2s\"\nbody_timeout = \"5s\"\nidle_timeout = \"1500ms\"\nmax = 7",
        ))
        .unwrap();
        assert_eq!(s.header_timeout, Duration::from_secs(2));
        assert_eq!(s.body_timeout, Duration::from_secs(5));
        assert_eq!(s.idle_timeout_secs, 2);
        assert_eq!(s.max, Some(7));
    }

    #[test]
    fn zero_and_nonsense_are_refused() {
        for bad in [
            "header_timeout = \"0s\"",
            "body_timeout = \"0s\"",
            "idle_timeout = \"0s\"",
            "idle_timeout = \"soon\"",
            "max = 0",
        ] {
            let e = build(&section(bad)).unwrap_err().to_string();
            assert!(e.contains("server.connections."), "{bad}: {e}");
        }
        assert!(toml::from_str::<ConnectionsSection>("maxx = 3").is_err());
    }
}
