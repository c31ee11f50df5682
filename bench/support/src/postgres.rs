//! The throwaway Postgres server of a test process (`control/scripts/postgres.sh run`), started
//! once per test process on a free loopback port and stopped when the process exits (the script
//! stops the cluster when its stdin closes), or the server named by `SLUICE_TEST_DATABASE_URL`.
//!
//! The Postgres variants of tests skip, loudly, only when no Postgres installation is found;
//! `SLUICE_TEST_REQUIRE_POSTGRES=1` (CI sets it) makes that a failure.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

/// Bound on the cluster's start (initdb and the first start are slow on a busy machine).
const START: Duration = Duration::from_secs(120);

struct Server {
    url: String,
    /// Held for the life of the test process: closing it stops the cluster.
    _stdin: Option<ChildStdin>,
    _child: Option<Child>,
}

fn start() -> Option<Server> {
    if let Ok(url) = std::env::var("SLUICE_TEST_DATABASE_URL") {
        return Some(Server {
            url,
            _stdin: None,
            _child: None,
        });
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../control/scripts/postgres.sh"
    );
    let mut child = Command::new("bash")
        .args([script, "run"])
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
    let url = rx
        .recv_timeout(START)
        .unwrap_or_default()
        .trim()
        .to_string();
    if url.starts_with("postgres://") {
        return Some(Server {
            url,
            _stdin: child.stdin.take(),
            _child: Some(child),
        });
    }
    // Exit code 2 means no Postgres is installed; anything else is a broken setup.
    let code = child.wait().ok().and_then(|s| s.code());
    assert_eq!(
        code,
        Some(2),
        "postgres.sh found Postgres but could not start it (see its output above)"
    );
    None
}

/// The URL of the test Postgres server (its `postgres` database), or `None` (after a loud
/// notice) when no Postgres is installed and `SLUICE_TEST_REQUIRE_POSTGRES` is not set.
pub fn server_url() -> Option<&'static str> {
    static SERVER: OnceLock<Option<Server>> = OnceLock::new();
    let server = SERVER.get_or_init(start).as_ref();
    if server.is_none() {
        eprintln!(
            "\n\n!!!!!!!! POSTGRES NOT AVAILABLE: the Postgres variant of this test is SKIPPED. \
             Install it with `apt-get install postgresql` or set SLUICE_TEST_DATABASE_URL. \
             !!!!!!!!\n"
        );
        assert!(
            std::env::var_os("SLUICE_TEST_REQUIRE_POSTGRES").is_none(),
            "SLUICE_TEST_REQUIRE_POSTGRES is set but Postgres is not available"
        );
    }
    server.map(|s| s.url.as_str())
}

/// The URL of a fresh, empty database named `<prefix>_<uuid>` on the test server, or `None` as
/// [`server_url`] says.
#[cfg(feature = "fresh-database")]
pub async fn fresh_database(prefix: &str) -> Option<String> {
    use sqlx::{Connection, Executor};
    let url = server_url()?;
    let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
    let mut admin = sqlx::PgConnection::connect(url)
        .await
        .expect("connect to the test Postgres server");
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create the test database");
    admin.close().await.expect("close");
    let (base, _) = url.rsplit_once('/').expect("server URL with a path");
    Some(format!("{base}/{name}"))
}
