//! The top-level `[limits]` table: where limit state lives (this process, or Redis shared by every
//! replica) and what an org gets while Redis cannot be reached.
//!
//! The Redis password may only come from the environment (`env:VAR`), like the ledger token, and
//! a URL carrying one is refused: URLs end up in logs and dashboards, passwords must not.

use super::{optional_duration, ConfigError, Env};
use serde::Deserialize;
use std::time::Duration;

/// `[limits]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsBackendSection {
    /// `"local"` (the default) or `"redis"`.
    pub backend: Option<String>,
    /// `redis://host:port[/db]` or `rediss://…` (TLS); no password in it.
    pub url: Option<String>,
    /// Redis ACL user name (optional).
    pub username: Option<String>,
    /// Password as `env:VAR`.
    pub password: Option<String>,
    /// PEM file of the CA that signed a `rediss://` server's certificate, when the system's
    /// roots do not (a private CA).
    pub ca_file: Option<std::path::PathBuf>,
    /// How many replicas share the limits: a replica's share while Redis is unreachable under
    /// `fail_open` is `quota / replicas`.
    pub replicas: Option<u32>,
    /// `"fail_open"` (the default) or `"fail_closed"`; an org may override it.
    pub when_unreachable: Option<String>,
    /// Longest wait on the request path for a lease when the local slice is empty (default 20ms).
    pub wait: Option<String>,
    /// Timeout of one Redis call (default 250ms).
    pub timeout: Option<String>,
    /// How long a replica's concurrency lease lives without renewal (default 10s).
    pub lease_ttl: Option<String>,
    /// A slice unused this long goes back to Redis (default 2s).
    pub idle_return: Option<String>,
}

/// What an org's requests get while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unreachable {
    /// Admit from a local share of each quota (`quota / replicas`).
    #[default]
    FailOpen,
    /// Refuse with 503 and `retry-after`.
    FailClosed,
}

impl Unreachable {
    pub fn parse(text: &str, field: &str) -> Result<Self, ConfigError> {
        match text {
            "fail_open" => Ok(Self::FailOpen),
            "fail_closed" => Ok(Self::FailClosed),
            other => Err(ConfigError::invalid(format!(
                "{field} {other:?} is not one of fail_open, fail_closed"
            ))),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::FailOpen => "fail_open",
            Self::FailClosed => "fail_closed",
        }
    }
}

/// The Redis password. `Debug` never shows it; only the connection reads it.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisPassword(String);

impl RedisPassword {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for RedisPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisPassword(..)")
    }
}

/// Where Redis is (start-only: a reload logs a change but does not apply it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// The URL as written (no password in it, so it can be logged).
    pub url: String,
    pub username: Option<String>,
    pub password: Option<RedisPassword>,
    /// The PEM of `ca_file`, read at load (a missing file fails the load, not the first lease).
    pub ca_pem: Option<Vec<u8>>,
    pub timeout: Duration,
    pub lease_ttl: Duration,
    pub idle_return: Duration,
}

/// Validated `[limits]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsSettings {
    /// `None`: the local backend.
    pub redis: Option<RedisSettings>,
    /// Replicas sharing the limits (at least 1), for the `fail_open` share. Follows reloads.
    pub replicas: u32,
    /// The default policy while Redis is unreachable. Follows reloads.
    pub when_unreachable: Unreachable,
    /// Longest wait for a lease on the request path. Follows reloads.
    pub wait: Duration,
}

impl Default for LimitsSettings {
    fn default() -> Self {
        Self {
            redis: None,
            replicas: 1,
            when_unreachable: Unreachable::FailOpen,
            wait: DEFAULT_WAIT,
        }
    }
}

const DEFAULT_WAIT: Duration = Duration::from_millis(20);

/// Validates `[limits]` (absent: the local backend).
pub fn build(
    raw: Option<&LimitsBackendSection>,
    env: &dyn Env,
) -> Result<LimitsSettings, ConfigError> {
    let Some(raw) = raw else {
        return Ok(LimitsSettings::default());
    };
    let replicas = raw.replicas.unwrap_or(1);
    if replicas == 0 {
        return Err(ConfigError::invalid("limits.replicas must be at least 1"));
    }
    let when_unreachable = raw
        .when_unreachable
        .as_deref()
        .map(|t| Unreachable::parse(t, "limits.when_unreachable"))
        .transpose()?
        .unwrap_or_default();
    let wait = optional_duration(&raw.wait, DEFAULT_WAIT, "limits.wait")?;
    if wait > Duration::from_secs(5) {
        return Err(ConfigError::invalid(
            "limits.wait must be at most 5s: it is spent on the request path",
        ));
    }
    let redis = match raw.backend.as_deref().unwrap_or("local") {
        "local" => {
            if raw.url.is_some() || raw.password.is_some() || raw.ca_file.is_some() {
                return Err(ConfigError::invalid(
                    "limits.url, limits.password and limits.ca_file need backend = \"redis\"",
                ));
            }
            None
        }
        "redis" => Some(redis(raw, env)?),
        other => {
            return Err(ConfigError::invalid(format!(
                "limits.backend {other:?} is not one of local, redis"
            )))
        }
    };
    Ok(LimitsSettings {
        redis,
        replicas,
        when_unreachable,
        wait,
    })
}

fn redis(raw: &LimitsBackendSection, env: &dyn Env) -> Result<RedisSettings, ConfigError> {
    let url = raw
        .url
        .as_deref()
        .map(str::trim)
        .ok_or_else(|| ConfigError::invalid("limits: backend = \"redis\" needs a url"))?;
    let parsed = url.parse::<http::Uri>().map_err(|_| {
        ConfigError::invalid("limits.url is not a URL (expected redis://host:port)")
    })?;
    if !matches!(parsed.scheme_str(), Some("redis" | "rediss")) || parsed.host().is_none() {
        return Err(ConfigError::invalid(format!(
            "limits.url {url:?} must be a redis:// or rediss:// URL with a host"
        )));
    }
    // Never echo this URL: the user info may hold the password.
    if parsed.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(ConfigError::invalid(
            "limits.url must not carry a user or password; use limits.username and \
             limits.password = \"env:VAR\"",
        ));
    }
    let password = match raw.password.as_deref() {
        None => None,
        Some(p) => {
            let var = p.strip_prefix("env:").ok_or_else(|| {
                ConfigError::invalid(
                    "limits.password must be \"env:VAR\" (a literal password is refused)",
                )
            })?;
            let value = env.var(var).ok_or_else(|| {
                ConfigError::invalid(format!(
                    "limits.password: environment variable {var} is not set"
                ))
            })?;
            Some(RedisPassword(value))
        }
    };
    let ca_pem = match &raw.ca_file {
        None => None,
        Some(path) => {
            if parsed.scheme_str() != Some("rediss") {
                return Err(ConfigError::invalid(
                    "limits.ca_file needs a rediss:// (TLS) url",
                ));
            }
            Some(std::fs::read(path).map_err(|e| {
                ConfigError::invalid(format!("limits.ca_file {}: {e}", path.display()))
            })?)
        }
    };
    let positive = |value: &Option<String>, default: Duration, field: &str| {
        let d = optional_duration(value, default, field)?;
        if d.is_zero() {
            return Err(ConfigError::invalid(format!(
                "{field} must be longer than 0"
            )));
        }
        Ok(d)
    };
    Ok(RedisSettings {
        url: url.to_string(),
        username: raw.username.clone(),
        password,
        ca_pem,
        timeout: positive(&raw.timeout, Duration::from_millis(250), "limits.timeout")?,
        lease_ttl: positive(&raw.lease_ttl, Duration::from_secs(10), "limits.lease_ttl")?,
        idle_return: positive(
            &raw.idle_return,
            Duration::from_secs(2),
            "limits.idle_return",
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse, serving, NoEnv};

    struct Vars;
    impl Env for Vars {
        fn var(&self, name: &str) -> Option<String> {
            (name == "REDIS_PW").then(|| "hunter2".to_string())
        }
    }

    fn load(text: &str, env: &dyn Env) -> Result<LimitsSettings, String> {
        parse(&serving(text), "t.toml", env)
            .map(|s| s.limits)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn local_is_the_default_and_redis_takes_its_settings() {
        assert_eq!(load("", &NoEnv).unwrap(), LimitsSettings::default());
        let s = load(
            "[limits]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\npassword = \
             \"env:REDIS_PW\"\nreplicas = 3\nwhen_unreachable = \"fail_closed\"\nwait = \"5ms\"\n",
            &Vars,
        )
        .unwrap();
        let redis = s.redis.unwrap();
        assert_eq!(redis.password.unwrap().expose(), "hunter2");
        assert_eq!(s.replicas, 3);
        assert_eq!(s.when_unreachable, Unreachable::FailClosed);
        assert_eq!(s.wait, Duration::from_millis(5));
    }

    #[test]
    fn refuses_passwords_in_urls_and_literal_passwords_without_echoing_them() {
        for (text, says) in [
            ("url = \"redis://u:hunter2@h:1\"", "must not carry a user"),
            (
                "url = \"redis://h:1\"\npassword = \"hunter2\"",
                "literal password",
            ),
            (
                "url = \"redis://h:1\"\npassword = \"env:NOPE\"",
                "NOPE is not set",
            ),
            ("url = \"http://h:1\"", "redis://"),
            (
                "url = \"redis://h:1\"\nca_file = \"/x.pem\"",
                "needs a rediss://",
            ),
            (
                "url = \"rediss://h:1\"\nca_file = \"/nonexistent.pem\"",
                "/nonexistent.pem",
            ),
        ] {
            let err =
                load(&format!("[limits]\nbackend = \"redis\"\n{text}\n"), &NoEnv).unwrap_err();
            assert!(err.contains(says), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
        for (text, says) in [
            ("backend = \"redis\"", "needs a url"),
            ("backend = \"etcd\"", "not one of local, redis"),
            ("replicas = 0", "at least 1"),
            ("when_unreachable = \"maybe\"", "fail_open"),
            ("url = \"redis://h:1\"", "need backend"),
            ("ca_file = \"/x.pem\"", "need backend"),
            ("wait = \"10s\"", "at most 5s"),
        ] {
            let err = load(&format!("[limits]\n{text}\n"), &NoEnv).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
