//! Command-line flags and their environment variables. Tokens are held in [`Secret`], whose
//! `Debug` never shows the value, and clap is told not to print their environment values.

use crate::db::Retention;
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// A token that must never reach a log.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for Secret {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Err("a token must not be empty".into());
        }
        Ok(Self(s.to_string()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// sluice-control: the usage ledger.
#[derive(Debug, Clone, Parser)]
#[command(name = "sluice-control", version, about)]
pub struct Config {
    /// Address to listen on (port 0 picks a free port, reported on stderr).
    #[arg(long, env = "SLUICE_CONTROL_LISTEN", default_value = "127.0.0.1:9300")]
    pub listen: SocketAddr,

    /// Directory of the default SQLite database (`ledger.db`); created when missing.
    #[arg(long, env = "SLUICE_CONTROL_DATA_DIR", default_value = "sluice-data")]
    pub data_dir: PathBuf,

    /// `sqlite://PATH` or `postgres://USER@HOST:PORT/DB`; default `sqlite://<data dir>/ledger.db`.
    #[arg(long, env = "SLUICE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Bearer token proxies present to `POST /v1/events` (and `GET /v1/spend`).
    #[arg(long, env = "SLUICE_INGEST_TOKEN", hide_env_values = true)]
    pub ingest_token: Secret,

    /// Bearer token for queries, export, spend and erasure.
    #[arg(long, env = "SLUICE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Secret,

    /// Days raw records are kept (hourly and daily aggregates are kept as billing records).
    #[arg(long, env = "SLUICE_RETENTION_DAYS", default_value_t = 90)]
    pub retention_days: u32,

    /// Days a record's client IP (when recorded at all) is kept.
    #[arg(long, env = "SLUICE_CLIENT_IP_RETENTION_DAYS", default_value_t = 30)]
    pub client_ip_retention_days: u32,

    /// Days the audit log of operator and org-admin actions is kept.
    #[arg(long, env = "SLUICE_AUDIT_RETENTION_DAYS", default_value_t = 90)]
    pub audit_retention_days: u32,

    /// Abuse flag thresholds, `KIND:METRIC=N` (kind key, org or ip; metric requests or tokens;
    /// more than N in one hour raises a flag), beside each subject's own baseline.
    #[arg(
        long = "abuse-threshold",
        env = "SLUICE_ABUSE_THRESHOLDS",
        value_delimiter = ','
    )]
    pub abuse_thresholds: Vec<crate::abuse::Threshold>,

    /// Seconds between abuse detection passes (one also runs at start).
    #[arg(long, default_value_t = 300)]
    pub abuse_interval_secs: u64,

    /// Seconds between retention passes (one also runs at start).
    #[arg(long, default_value_t = 3600)]
    pub retention_interval_secs: u64,

    /// Largest accepted ingest body in bytes (413 beyond).
    #[arg(long, default_value_t = 16 << 20)]
    pub max_body_bytes: usize,

    /// Database connections in the pool.
    #[arg(long, default_value_t = 8)]
    pub max_connections: u32,
}

impl Config {
    /// The database URL, defaulting to SQLite in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("ledger.db").display()),
        }
    }

    pub fn retention(&self) -> Retention {
        Retention {
            records_days: self.retention_days,
            client_ip_days: self.client_ip_retention_days,
            audit_days: self.audit_retention_days,
        }
    }
}
