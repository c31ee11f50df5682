//! Test harness: the real `sluice-control` binary on port 0 over SQLite in a temp dir or over a
//! fresh database on a real Postgres server, an HTTP client for it, and record builders.
//!
//! Postgres is `sluice_test_support::postgres`'s (each test creates its own database on it); the
//! Postgres variants skip, loudly, only when no Postgres installation is found; set
//! `SLUICE_TEST_REQUIRE_POSTGRES=1` to make that a failure.

use sluice_test_support::Process;
use sluice_wire::{IngestAnswer, UsageAnswer, UsageRecord};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

pub const INGEST: &str = "test-ingest-token-0123456789";
pub const ADMIN: &str = "test-admin-token-0123456789";
/// Bound on waiting for a process to report readiness (never a synchronisation sleep).
pub const START_TIMEOUT: Duration = Duration::from_secs(90);

/// Where a test's ledger keeps its data.
pub enum Db {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Db {
    pub fn url(&self) -> String {
        match self {
            Db::Sqlite(dir) => format!("sqlite://{}", dir.path().join("ledger.db").display()),
            Db::Postgres(url) => url.clone(),
        }
    }
}

pub fn sqlite() -> Db {
    Db::Sqlite(tempfile::tempdir().expect("temp dir"))
}

/// A fresh, empty database on the test Postgres server, or `None` (after a loud message) when
/// no Postgres is installed here.
pub async fn postgres() -> Option<Db> {
    let url = sluice_test_support::postgres::fresh_database("ledger").await?;
    Some(Db::Postgres(url))
}

/// `sluice-control` with the test tokens, listening on a free port, logging warnings only.
pub fn ledger_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice-control"));
    cmd.args(["--listen", "127.0.0.1:0"])
        .env("SLUICE_INGEST_TOKEN", INGEST)
        .env("SLUICE_ADMIN_TOKEN", ADMIN)
        .env("RUST_LOG", "warn");
    cmd
}

/// The URL the ledger announced once it listens.
pub fn wait_listening(process: &Process) -> String {
    process.wait_line("sluice-control listening on ", START_TIMEOUT)
}

/// A running `sluice-control` process.
pub struct Ledger {
    process: Process,
    pub base: String,
    pub http: reqwest::Client,
    pub db: Arc<Db>,
}

impl Ledger {
    pub fn start(db: Arc<Db>) -> Self {
        Self::start_with(db, &[])
    }

    pub fn start_with(db: Arc<Db>, extra: &[&str]) -> Self {
        let mut cmd = ledger_command();
        cmd.args(["--database-url", &db.url()]).args(extra);
        let process = Process::spawn("sluice-control", cmd);
        let base = wait_listening(&process);
        Self {
            process,
            base,
            http: reqwest::Client::new(),
            db,
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(mut self) -> Arc<Db> {
        self.process.kill();
        self.db.clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post_raw(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http
            .post(self.url("/v1/events"))
            .bearer_auth(INGEST)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST /v1/events")
    }

    pub async fn ingest(&self, records: &[UsageRecord]) -> IngestAnswer {
        let body = serde_json::to_vec(&sluice_wire::IngestBatch {
            records: records.to_vec(),
        })
        .expect("serialize batch");
        let resp = self.post_raw(body).await;
        assert_eq!(resp.status(), 200, "ingest status");
        resp.json().await.expect("ingest answer")
    }

    pub async fn admin_get(&self, path_and_query: &str) -> reqwest::Response {
        self.http
            .get(self.url(path_and_query))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("GET")
    }

    /// A `GET` with the admin token, its JSON answer read as `T`.
    pub async fn admin_json<T: serde::de::DeserializeOwned>(&self, path_and_query: &str) -> T {
        let resp = self.admin_get(path_and_query).await;
        assert_eq!(resp.status(), 200, "status of {path_and_query}");
        resp.json().await.expect("JSON answer")
    }

    pub async fn usage(&self, query: &str) -> UsageAnswer {
        let resp = self.admin_get(&format!("/v1/usage?{query}")).await;
        assert_eq!(resp.status(), 200, "usage status for {query}");
        resp.json().await.expect("usage answer")
    }
}

/// A successful record of `org` at `time_ms` with the given counts; tags are left empty.
pub fn record(org: &str, time_ms: u64, input: u64, output: u64, cost: u64) -> UsageRecord {
    UsageRecord {
        time_ms,
        input_tokens: input,
        output_tokens: output,
        cost_micro_usd: cost,
        ..sluice_test_support::usage_record(org)
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// Runs a test case against SQLite and against Postgres (when available).
#[macro_export]
macro_rules! both_backends {
    ($case:ident) => {
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$case($crate::harness::sqlite()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = $crate::harness::postgres().await {
                    super::$case(db).await;
                }
            }
        }
    };
}
