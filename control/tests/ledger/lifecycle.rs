//! Process life cycle: the default SQLite database in the data directory (in WAL mode),
//! refusal of unusable configuration, and a clean exit on SIGTERM.

use crate::harness::{now_ms, record, ADMIN, INGEST};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn ledger_command(data_dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice-control"));
    cmd.args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env_remove("SLUICE_DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

#[tokio::test]
async fn default_sqlite_store_is_wal_and_sigterm_exits_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("nested").join("data");
    let mut child = ledger_command(&data)
        .env("SLUICE_INGEST_TOKEN", INGEST)
        .env("SLUICE_ADMIN_TOKEN", ADMIN)
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let base = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("ledger output");
        if let Some(addr) = line.strip_prefix("sluice-control listening on ") {
            break addr.to_string();
        }
    };
    assert!(
        data.join("ledger.db").exists(),
        "database created in the data directory"
    );

    let body = serde_json::to_vec(&sluice_wire::IngestBatch {
        records: vec![record("life", now_ms(), 1, 1, 1)],
    })
    .expect("batch");
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/events"))
        .bearer_auth(INGEST)
        .body(body)
        .send()
        .await
        .expect("ingest");
    assert_eq!(resp.status(), 200);
    // A committed write in WAL mode leaves the write-ahead log beside the database.
    assert!(data.join("ledger.db-wal").exists(), "journal mode is WAL");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(exit.success(), "graceful exit on SIGTERM: {exit:?}");
}

#[test]
fn unusable_configuration_is_refused_without_echoing_tokens() {
    let dir = tempfile::tempdir().expect("temp dir");
    let same = ledger_command(dir.path())
        .env("SLUICE_INGEST_TOKEN", "same-secret-token")
        .env("SLUICE_ADMIN_TOKEN", "same-secret-token")
        .output()
        .expect("run");
    assert!(!same.status.success());
    let err = String::from_utf8_lossy(&same.stderr);
    assert!(err.contains("must differ"), "{err}");
    assert!(!err.contains("same-secret-token"), "token echoed: {err}");

    let missing = ledger_command(dir.path())
        .env_remove("SLUICE_INGEST_TOKEN")
        .env("SLUICE_ADMIN_TOKEN", ADMIN)
        .output()
        .expect("run");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--ingest-token"));

    let scheme = ledger_command(dir.path())
        .args(["--database-url", "mysql://u:pw@host/db"])
        .env("SLUICE_INGEST_TOKEN", INGEST)
        .env("SLUICE_ADMIN_TOKEN", ADMIN)
        .output()
        .expect("run");
    assert!(!scheme.status.success());
    let err = String::from_utf8_lossy(&scheme.stderr);
    assert!(err.contains("sqlite:// or postgres://"), "{err}");
    assert!(!err.contains("pw@"), "credentials echoed: {err}");
}
