//! Process life cycle: the default SQLite database in the data directory (in WAL mode),
//! refusal of unusable configuration, and a clean exit on SIGTERM.

use crate::harness::{now_ms, record, wait_listening, INGEST, START_TIMEOUT};
use sluice_test_support::{Process, Signal};
use std::process::Command;

/// The ledger (with the test tokens) on its default store in `data_dir`, no database URL from
/// the environment.
fn ledger_command(data_dir: &std::path::Path) -> Command {
    let mut cmd = crate::harness::ledger_command();
    cmd.arg("--data-dir")
        .arg(data_dir)
        .env_remove("SLUICE_DATABASE_URL");
    cmd
}

#[tokio::test]
async fn default_sqlite_store_is_wal_and_sigterm_exits_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("nested").join("data");
    let mut ledger = Process::spawn("sluice-control", ledger_command(&data));
    let base = wait_listening(&ledger);
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

    ledger.signal(Signal::SIGTERM);
    let exit = ledger.wait_exit_async(START_TIMEOUT).await;
    assert!(exit.success(), "graceful exit on SIGTERM: {exit:?}");
}

/// Runs the ledger, which must refuse to start; returns what it said on stderr.
fn refusal(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn unusable_configuration_is_refused_without_echoing_tokens() {
    let dir = tempfile::tempdir().expect("temp dir");
    let err = refusal(
        ledger_command(dir.path())
            .env("SLUICE_INGEST_TOKEN", "same-secret-token")
            .env("SLUICE_ADMIN_TOKEN", "same-secret-token"),
    );
    assert!(err.contains("must differ"), "{err}");
    assert!(!err.contains("same-secret-token"), "token echoed: {err}");

    let err = refusal(ledger_command(dir.path()).env_remove("SLUICE_INGEST_TOKEN"));
    assert!(err.contains("--ingest-token"));

    let err = refusal(ledger_command(dir.path()).args(["--database-url", "mysql://u:pw@host/db"]));
    assert!(err.contains("sqlite:// or postgres://"), "{err}");
    assert!(!err.contains("pw@"), "credentials echoed: {err}");
}
