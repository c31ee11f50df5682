//! Integration-test harness: a real `sluice-proxy` process listening on port 0, in front of the
//! in-process mock provider over TCP, with its usage records read from its stdout.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod config;

use sluice_bench::mock::MockProvider;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

pub use config::{TestConfig, MASTER_KEY};

/// Bound for anything a test waits on; reaching it is a failure, never a synchronisation.
pub const WAIT: Duration = Duration::from_secs(20);

pub struct Sluice {
    pub addr: SocketAddr,
    pub mock: MockProvider,
    pub cfg: TestConfig,
    child: Child,
    records: mpsc::UnboundedReceiver<serde_json::Value>,
    stderr: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Sluice {
    /// Mock + sluice with the standard test configuration.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Mock + sluice; `edit` may add TOML to the generated configuration.
    pub async fn start_with(edit: impl FnOnce(&mut TestConfig)) -> Self {
        let mock = MockProvider::start("127.0.0.1:0")
            .await
            .expect("mock starts");
        let mut cfg = TestConfig::new(mock.addr());
        edit(&mut cfg);
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, cfg.render()).expect("write config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-proxy"))
            .arg("--config")
            .arg(&path)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .env("SLUICE_MASTER_KEY", MASTER_KEY)
            .env("MOCK_SHARED_KEY", config::SHARED_PROVIDER_KEY)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sluice-proxy");

        let (tx, records) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("usage line is not JSON ({e}): {line}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let stderr_text = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        let sink = stderr_text.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(a) = line.split("listening on http://").nth(1) {
                    let _ = addr_tx.send(a.trim().to_string());
                }
                let mut s = sink.lock().expect("stderr lock");
                s.push_str(&line);
                s.push('\n');
            }
        });
        let addr = match addr_rx.recv_timeout(WAIT) {
            Ok(a) => a.parse().expect("listening address"),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "sluice did not start:\n{}",
                    stderr_text.lock().expect("lock")
                );
            }
        };
        Self {
            addr,
            mock,
            cfg,
            child,
            records,
            stderr: stderr_text,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The next usage record sluice wrote.
    pub async fn next_record(&mut self) -> serde_json::Value {
        match tokio::time::timeout(WAIT, self.records.recv()).await {
            Ok(Some(r)) => r,
            _ => panic!("no usage record; stderr:\n{}", self.stderr()),
        }
    }

    /// Everything sluice logged so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }

    /// An HTTP client with no connection reuse surprises (fresh pool per test).
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(WAIT)
            .build()
            .expect("client")
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A chat body.
pub fn chat(model: &str, stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": "one two three four"}]
    })
}

/// Reads a response body chunk by chunk as it arrives.
pub async fn body_chunks(resp: reqwest::Response) -> Result<Vec<bytes::Bytes>, reqwest::Error> {
    use futures_util::StreamExt;
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        out.push(chunk?);
    }
    Ok(out)
}
