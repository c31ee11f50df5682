//! A throwaway Postgres server for the scenarios (`control/scripts/postgres.sh run`), started
//! once per test process, and a fresh database per scenario.

use sqlx::{Connection, Executor};
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

struct Server {
    url: String,
    /// Held for the life of the test process: closing it stops the cluster.
    _stdin: Option<ChildStdin>,
    _child: Option<Child>,
}

fn start_server() -> Option<Server> {
    if let Ok(url) = std::env::var("SLUICE_TEST_DATABASE_URL") {
        return Some(Server {
            url,
            _stdin: None,
            _child: None,
        });
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../control/scripts/postgres.sh"
    );
    let mut child = Command::new("bash")
        .args([script, "run"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run postgres.sh");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let url = rx
        .recv_timeout(Duration::from_secs(90))
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
        "postgres.sh found Postgres but could not start it"
    );
    None
}

/// The URL of a fresh database, or `None` (after a loud notice) when no Postgres is installed
/// and `SLUICE_TEST_REQUIRE_POSTGRES` is not set.
pub async fn fresh_database() -> Option<String> {
    static SERVER: OnceLock<Option<Server>> = OnceLock::new();
    let Some(server) = SERVER.get_or_init(start_server).as_ref() else {
        eprintln!(
            "\n!!!!! POSTGRES NOT AVAILABLE: the Postgres variant of this scenario is SKIPPED \
             (apt-get install postgresql, or set SLUICE_TEST_DATABASE_URL) !!!!!\n"
        );
        assert!(
            std::env::var_os("SLUICE_TEST_REQUIRE_POSTGRES").is_none(),
            "SLUICE_TEST_REQUIRE_POSTGRES is set but Postgres is not available"
        );
        return None;
    };
    let name = format!("e2e_{}", uuid::Uuid::now_v7().simple());
    let mut admin = sqlx::PgConnection::connect(&server.url)
        .await
        .expect("connect to the test Postgres");
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create database");
    let _ = admin.close().await;
    let (base, _) = server.url.rsplit_once('/').expect("URL with a path");
    Some(format!("{base}/{name}"))
}
