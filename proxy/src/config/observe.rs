//! `[metrics]` and `[log]`: what the process tells operators, validated like the rest.
//!
//! `[metrics]` is part of the snapshot and follows reloads (a label switch takes effect for the
//! next request). `[log]` is read once at start: the tracing subscriber and the access log's
//! writer are set up before serving, like the usage sink.

use super::ConfigError;
use serde::Deserialize;
use std::path::PathBuf;

/// `[metrics]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Record the per-request series (default true); the process series stay either way.
    pub requests: Option<bool>,
    /// Label per-request series with the org id (default true); off for deployments with so
    /// many orgs that a series per org is too many.
    pub org_label: Option<bool>,
}

/// `[log]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// `text` (default) or `json` (one JSON object per line, tracing's JSON formatter).
    pub format: Option<String>,
    /// A tracing filter (`info`, `warn,sluice_proxy=debug`); `RUST_LOG`, when set, wins.
    pub level: Option<String>,
    /// One JSON line per request (absent: no access log).
    pub access: Option<AccessLogSection>,
}

/// `[log.access]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogSection {
    /// `stdout`, or a file path (appended to).
    pub to: String,
    /// Share of successful requests logged, 0.0–1.0 (default 1.0); failures are always logged.
    pub sample: Option<f64>,
}

/// The validated `[metrics]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsSettings {
    pub requests: bool,
    pub org_label: bool,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            requests: true,
            org_label: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Where access-log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessTarget {
    Stdout,
    File(PathBuf),
}

/// The validated `[log.access]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLogSettings {
    pub to: AccessTarget,
    pub sample: f64,
}

/// The validated `[log]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogSettings {
    pub format: LogFormat,
    /// The configured filter, already proven to parse.
    pub level: Option<String>,
    pub access: Option<AccessLogSettings>,
}

pub(crate) fn metrics(raw: Option<&MetricsSection>) -> MetricsSettings {
    let defaults = MetricsSettings::default();
    raw.map_or(defaults, |m| MetricsSettings {
        requests: m.requests.unwrap_or(defaults.requests),
        org_label: m.org_label.unwrap_or(defaults.org_label),
    })
}

pub(crate) fn log(raw: Option<&LogSection>) -> Result<LogSettings, ConfigError> {
    let Some(raw) = raw else {
        return Ok(LogSettings::default());
    };
    let format = match raw.format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            return Err(ConfigError::invalid(format!(
                "log.format {other:?}: expected \"text\" or \"json\""
            )))
        }
    };
    if let Some(level) = &raw.level {
        tracing_subscriber::EnvFilter::try_new(level)
            .map_err(|e| ConfigError::invalid(format!("log.level {level:?}: {e}")))?;
    }
    let access = raw.access.as_ref().map(access).transpose()?;
    Ok(LogSettings {
        format,
        level: raw.level.clone(),
        access,
    })
}

fn access(raw: &AccessLogSection) -> Result<AccessLogSettings, ConfigError> {
    let sample = raw.sample.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample) {
        return Err(ConfigError::invalid(format!(
            "log.access.sample {sample}: expected a share between 0.0 and 1.0"
        )));
    }
    let to = match raw.to.as_str() {
        "stdout" => AccessTarget::Stdout,
        "" => return Err(ConfigError::invalid("log.access.to is empty")),
        path => AccessTarget::File(PathBuf::from(path)),
    };
    Ok(AccessLogSettings { to, sample })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<LogSettings, ConfigError> {
        let raw: LogSection =
            toml::from_str(text).map_err(|e| ConfigError::invalid(e.to_string()))?;
        log(Some(&raw))
    }

    #[test]
    fn log_settings_are_validated() {
        let ok = parsed("format = \"json\"\nlevel = \"warn,sluice_proxy=debug\"\n[access]\nto = \"stdout\"\nsample = 0.25\n")
            .unwrap();
        assert_eq!(ok.format, LogFormat::Json);
        assert_eq!(ok.access.unwrap().sample, 0.25);
        for bad in [
            "format = \"yaml\"",
            "level = \"info,=[\"",
            "[access]\nto = \"stdout\"\nsample = 1.5",
            "[access]\nto = \"\"",
        ] {
            assert!(parsed(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn metrics_default_to_everything_on() {
        assert_eq!(metrics(None), MetricsSettings::default());
        let off = MetricsSection {
            requests: Some(false),
            org_label: None,
        };
        assert_eq!(
            metrics(Some(&off)),
            MetricsSettings {
                requests: false,
                org_label: true
            }
        );
    }
}
