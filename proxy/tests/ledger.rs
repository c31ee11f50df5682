//! Usage delivery with real processes: `sluice-proxy` with `[ledger]` in front of the mock, and
//! the real `sluice-control` ledger (built by this workspace). SIGTERM drains every record to the
//! ledger before the process exits; a proxy killed while the ledger is down keeps its records in
//! the spool and delivers them at its next start. The ledger's totals must equal the records the
//! proxy wrote to its local sink, exactly.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns: a panic is a failed test

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The ledger's admin token (the ingest token is the one the proxy already has in its
/// environment, `MOCK_SHARED_KEY`, so the test need not change the proxy's environment).
const ADMIN: &str = "ledger-test-admin-token-0001";

struct Ledger {
    child: Child,
    addr: String,
    data: PathBuf,
}

impl Ledger {
    fn start(data: &Path, listen: &str) -> Self {
        // target/release/deps/<this test> → target/release/sluice-control
        let exe = std::env::current_exe().unwrap();
        let bin = exe
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("sluice-control");
        assert!(
            bin.exists(),
            "build it first: cargo build --release -p sluice-control"
        );
        let mut child = Command::new(bin)
            .args(["--listen", listen, "--data-dir"])
            .arg(data)
            .env("SLUICE_INGEST_TOKEN", config::SHARED_PROVIDER_KEY)
            .env("SLUICE_ADMIN_TOKEN", ADMIN)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stderr).lines().map_while(Result::ok);
            for line in lines.by_ref() {
                if let Some(a) = line.strip_prefix("sluice-control listening on http://") {
                    let _ = tx.send(a.trim().to_string());
                    break;
                }
            }
            lines.for_each(drop);
        });
        let addr = rx.recv_timeout(WAIT).expect("ledger listening");
        Self {
            child,
            addr,
            data: data.to_path_buf(),
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn totals(&self, org: &str) -> sluice_wire::UsageTotals {
        let answer: sluice_wire::UsageAnswer = reqwest::Client::new()
            .get(format!("http://{}/v1/usage?org={org}", self.addr))
            .bearer_auth(ADMIN)
            .timeout(WAIT)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        answer.total
    }

    /// Polls the ledger (bounded) until `org` has `requests` requests; returns its totals.
    async fn await_requests(&self, org: &str, requests: u64) -> sluice_wire::UsageTotals {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let t = self.totals(org).await;
            if t.requests >= requests || tokio::time::Instant::now() >= deadline {
                return t;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.kill();
    }
}

fn ledger_table(url: &str, spool: &Path, interval: &str) -> String {
    format!(
        "\n[ledger]\nurl = \"http://{url}\"\ntoken = \"env:MOCK_SHARED_KEY\"\n\
         spool_dir = \"{}\"\nbatch_records = 1000\nbatch_interval = \"{interval}\"\n\
         spend_poll = \"0s\"\ndrain_timeout = \"10s\"\n",
        spool.display()
    )
}

/// Sends `n` chat requests as acme and returns the (input, output) tokens of their records.
async fn traffic(s: &mut Sluice, n: usize) -> (u64, u64) {
    let client = s.client();
    for i in 0..n {
        let resp = client
            .post(s.url("/v1/chat/completions"))
            .bearer_auth(&s.cfg.keys.acme)
            .json(&chat("mock-gpt", i % 2 == 0))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    let (mut input, mut output) = (0, 0);
    for _ in 0..n {
        let r = s.next_record().await;
        input += r["input_tokens"].as_u64().unwrap();
        output += r["output_tokens"].as_u64().unwrap();
    }
    (input, output)
}

#[tokio::test]
async fn sigterm_drains_every_record_to_the_ledger() {
    let data = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let ledger = Ledger::start(data.path(), "127.0.0.1:0");
    // An hour-long batch interval: nothing is sent before the shutdown, so the drain must do it.
    let table = ledger_table(&ledger.addr, spool.path(), "1h");
    let mut s = Sluice::start_with(|c| c.extra = table).await;
    let (input, output) = traffic(&mut s, 25).await;
    assert_eq!(ledger.totals("acme").await.requests, 0);

    s.proc.signal("TERM");
    assert!(s.proc.wait_exit().await.success());
    let t = ledger.totals("acme").await;
    assert_eq!(
        (t.requests, t.input_tokens, t.output_tokens),
        (25, input, output)
    );
    assert!(
        s.stderr().contains("usage delivery drained"),
        "{}",
        s.stderr()
    );
}

#[tokio::test]
async fn a_proxy_killed_while_the_ledger_is_down_delivers_its_spool_at_the_next_start() {
    let data = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    // Learn a free port, then take the ledger down: the proxy starts against a dead address.
    let mut ledger = Ledger::start(data.path(), "127.0.0.1:0");
    ledger.kill();
    let table = ledger_table(&ledger.addr, spool.path(), "20ms");
    let admin = ["--admin-listen", "127.0.0.2:0"];
    let mut s = Sluice::start_with_args(|c| c.extra = table, &admin).await;
    let (input, output) = traffic(&mut s, 12).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while s.proc.metric("sluice_usage_records_spooled_total").await < 12.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "records not spooled"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(s.proc.metric("sluice_ledger_up").await, 0.0);
    s.proc.signal("KILL");
    s.proc.wait_exit().await;

    let ledger = Ledger::start(&ledger.data, &ledger.addr.clone());
    let _again = Proc::start(&s.config_path(), &["--listen", "127.0.0.1:0"]).await;
    let t = ledger.await_requests("acme", 12).await;
    assert_eq!(
        (t.requests, t.input_tokens, t.output_tokens),
        (12, input, output)
    );
}
