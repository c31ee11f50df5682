//! Test harness: the real `sluice-control` binary on port 0 over SQLite in a temp dir or over a
//! fresh database on a real Postgres server, an HTTP client for it, and record builders.
//!
//! Postgres comes from `SLUICE_TEST_DATABASE_URL` (a server URL; each test creates its own
//! database on it) or else from `control/scripts/postgres.sh run`, started once per test process
//! and stopped when the process exits (the script stops the cluster when its stdin closes). The
//! Postgres variants skip, loudly, only when no Postgres installation is found; set
//! `SLUICE_TEST_REQUIRE_POSTGRES=1` to make that a failure.

use sluice_wire::{IngestAnswer, Outcome, UsageAnswer, UsageRecord};
use sqlx::{Connection, Executor};
use std::borrow::Cow;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub const INGEST: &str = "test-ingest-token-0123456789";
pub const ADMIN: &str = "test-admin-token-0123456789";
/// Bound on waiting for a process to report readiness (never a synchronisation sleep).
const START_TIMEOUT: Duration = Duration::from_secs(90);

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

struct PgServer {
    url: String,
    /// Held open for the life of the test process; closing it stops the cluster.
    _stdin: Option<ChildStdin>,
    _child: Option<Child>,
}

fn start_pg_server() -> Option<PgServer> {
    if let Ok(url) = std::env::var("SLUICE_TEST_DATABASE_URL") {
        return Some(PgServer {
            url,
            _stdin: None,
            _child: None,
        });
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postgres.sh");
    let mut child = Command::new("bash")
        .arg(script)
        .arg("run")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run postgres.sh");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(START_TIMEOUT).unwrap_or_default();
    let url = line.trim().to_string();
    if url.starts_with("postgres://") {
        return Some(PgServer {
            url,
            _stdin: child.stdin.take(),
            _child: Some(child),
        });
    }
    let status = child.wait().ok().and_then(|s| s.code());
    // Exit code 2: no Postgres installed. Anything else is a broken setup and must fail.
    assert_eq!(
        status,
        Some(2),
        "postgres.sh found Postgres but could not start it (see its output above)"
    );
    None
}

/// A fresh, empty database on the test Postgres server, or `None` (after a loud message) when
/// no Postgres is installed here.
pub async fn postgres() -> Option<Db> {
    static SERVER: OnceLock<Option<PgServer>> = OnceLock::new();
    let server = SERVER.get_or_init(start_pg_server).as_ref();
    let Some(server) = server else {
        let msg = "\n\n!!!!!!!! POSTGRES NOT AVAILABLE: the Postgres variant of this test is \
                   SKIPPED. Install it with `apt-get install postgresql` or set \
                   SLUICE_TEST_DATABASE_URL. !!!!!!!!\n";
        eprintln!("{msg}");
        assert!(
            std::env::var_os("SLUICE_TEST_REQUIRE_POSTGRES").is_none(),
            "SLUICE_TEST_REQUIRE_POSTGRES is set but Postgres is not available"
        );
        return None;
    };
    let name = format!("ledger_{}", uuid::Uuid::now_v7().simple());
    let mut admin = sqlx::PgConnection::connect(&server.url)
        .await
        .expect("connect to the test Postgres server");
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create test database");
    admin.close().await.expect("close");
    let base = server
        .url
        .rsplit_once('/')
        .map(|(base, _)| base)
        .expect("server URL has a path");
    Some(Db::Postgres(format!("{base}/{name}")))
}

/// A running `sluice-control` process.
pub struct Ledger {
    child: Child,
    pub base: String,
    pub http: reqwest::Client,
    pub db: Arc<Db>,
}

impl Ledger {
    pub fn start(db: Arc<Db>) -> Self {
        Self::start_with(db, &[])
    }

    pub fn start_with(db: Arc<Db>, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-control"))
            .args(["--listen", "127.0.0.1:0", "--database-url", &db.url()])
            .args(extra)
            .env("SLUICE_INGEST_TOKEN", INGEST)
            .env("SLUICE_ADMIN_TOKEN", ADMIN)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sluice-control");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("sluice-control listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.to_string());
                    }
                } else {
                    eprintln!("[sluice-control] {line}");
                }
            }
        });
        let base = match rx.recv_timeout(START_TIMEOUT) {
            Ok(base) => base,
            Err(_) => {
                let _ = child.kill();
                panic!("sluice-control did not report its address (its log is above)");
            }
        };
        Self {
            child,
            base,
            http: reqwest::Client::new(),
            db,
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(mut self) -> Arc<Db> {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

    pub async fn usage(&self, query: &str) -> UsageAnswer {
        let resp = self.admin_get(&format!("/v1/usage?{query}")).await;
        assert_eq!(resp.status(), 200, "usage status for {query}");
        resp.json().await.expect("usage answer")
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A successful record of `org` at `time_ms` with the given counts; tags are left empty.
pub fn record(org: &str, time_ms: u64, input: u64, output: u64, cost: u64) -> UsageRecord {
    UsageRecord {
        v: 1,
        id: uuid::Uuid::now_v7(),
        time_ms,
        org: Some(Arc::from(org)),
        key_id: Some(Arc::from("key_0000000000000001")),
        provider: Some(Arc::from("mock")),
        model: Some("mock-gpt".into()),
        upstream_model: Some("mock-gpt-1".into()),
        api: Cow::Borrowed("chat.completions"),
        stream: true,
        status: 200,
        outcome: Outcome::Ok,
        input_tokens: input,
        output_tokens: output,
        cached_tokens: 0,
        cache_write_tokens: 0,
        reasoning_tokens: 0,
        estimated: false,
        cost_micro_usd: cost,
        ttft_ms: Some(1.5),
        total_ms: 10.25,
        upstream_ms: Some(9.0),
        bytes_in: 100,
        bytes_out: 200,
        user: None,
        session: None,
        feature: None,
        meta: Default::default(),
        client_ip: None,
        error_type: None,
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
