//! Integration-test harness: a real `sluice-proxy` process listening on port 0, in front of the
//! in-process mock provider over TCP, with its usage records read from its stdout.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

pub mod config;

use sluice_bench::mock::MockProvider;
use sluice_test_support::Process;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;
use tokio::sync::mpsc;

pub use config::{TestConfig, MASTER_KEY};
pub use sluice_test_support::Signal;

/// Bound for anything a test waits on; reaching it is a failure, never a synchronisation.
pub const WAIT: Duration = Duration::from_secs(20);

/// One running `sluice-proxy` process: its addresses, usage records and stderr.
pub struct Proc {
    /// The first proxy address it announced.
    pub addr: SocketAddr,
    /// The admin listener's address, when it has one.
    pub admin: Option<SocketAddr>,
    process: Process,
    records: mpsc::UnboundedReceiver<serde_json::Value>,
    /// Whether the command line asked for an admin listener (its line is awaited too).
    expect_admin: bool,
}

impl Proc {
    /// Starts `sluice-proxy --config <config> <args…>` and waits until it announces that it
    /// listens (and its admin listener, when `args` ask for one).
    pub async fn start(config: &Path, args: &[&str]) -> Self {
        let mut p = Self::spawn(config, args);
        p.wait_listening().await;
        p
    }

    /// Starts the process without waiting for it to listen (an upgrade first waits for the old
    /// process's sockets); call [`Proc::wait_listening`] later.
    pub fn spawn(config: &Path, args: &[&str]) -> Self {
        Self::spawn_logging(config, args, "info")
    }

    /// [`Proc::spawn`] with `RUST_LOG` set to `log` (e.g. `trace`, to scan every log level).
    pub fn spawn_logging(config: &Path, args: &[&str], log: &str) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice-proxy"));
        cmd.arg("--config")
            .arg(config)
            .args(args)
            .env("SLUICE_MASTER_KEY", MASTER_KEY)
            .env("MOCK_SHARED_KEY", config::SHARED_PROVIDER_KEY)
            .env("RUST_LOG", log);
        let (process, stdout) = Process::spawn_with_stdout("sluice-proxy", cmd);
        let (tx, records) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("usage line is not JSON ({e}): {line}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Self {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            admin: None,
            process,
            records,
            expect_admin: args.contains(&"--admin-listen"),
        }
    }

    /// Waits for the `listening on` line (and the `admin on` line if `--admin-listen` or
    /// `server.admin_listen` is in effect: detected from the text, both come together).
    pub async fn wait_listening(&mut self) {
        let admin = self.expect_admin;
        self.wait_stderr("the listening announcement", |s| {
            s.contains("listening on http://") && (!admin || s.contains("admin on http://"))
        })
        .await;
        let parse = |marker: &str| {
            let a = self.process.announced(marker)?;
            Some(a.parse().expect("announced address"))
        };
        self.addr = parse("listening on http://").expect("listening address");
        self.admin = parse("admin on http://");
    }

    /// Waits until the stderr text so far satisfies `done`; returns that text.
    pub async fn wait_stderr(&mut self, what: &str, done: impl Fn(&str) -> bool) -> String {
        self.process.wait_stderr_async(what, WAIT, done).await
    }

    /// Waits (bounded) for the process to exit by itself.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        self.process.wait_exit_async(WAIT).await
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn signal(&self, signal: Signal) {
        self.process.signal(signal);
    }

    /// The next usage record this process wrote.
    pub async fn next_record(&mut self) -> serde_json::Value {
        match tokio::time::timeout(WAIT, self.records.recv()).await {
            Ok(Some(r)) => r,
            _ => panic!("no usage record; stderr:\n{}", self.stderr()),
        }
    }

    /// A usage record already written, if any (does not wait).
    pub fn try_record(&mut self) -> Option<serde_json::Value> {
        self.records.try_recv().ok()
    }

    /// Everything the process logged so far.
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The admin listener's text at `path` (e.g. `/metrics`).
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        let admin = self.admin.expect("started with an admin listener");
        let resp = reqwest::Client::new()
            .get(format!("http://{admin}{path}"))
            .timeout(WAIT)
            .send()
            .await
            .expect("admin request");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("admin body"))
    }

    /// The value of one sample line of `/metrics` (e.g. `sluice_config_generation`), 0 if absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        let (_, text) = self.admin_get("/metrics").await;
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
            .map_or(0.0, |v| v.trim().parse().expect("metric value"))
    }
}

pub struct Sluice {
    pub addr: SocketAddr,
    pub mock: MockProvider,
    pub cfg: TestConfig,
    pub proc: Proc,
    dir: tempfile::TempDir,
}

impl Sluice {
    /// Mock + sluice with the standard test configuration.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Mock + sluice; `edit` may add TOML to the generated configuration.
    pub async fn start_with(edit: impl FnOnce(&mut TestConfig)) -> Self {
        Self::start_with_args(edit, &[]).await
    }

    /// Mock + sluice on `127.0.0.1:0`, with `edit` applied to the configuration and `args`
    /// added to the command line.
    pub async fn start_with_args(edit: impl FnOnce(&mut TestConfig), args: &[&str]) -> Self {
        Self::start_logging(edit, args, "info").await
    }

    /// [`Sluice::start_with_args`] logging at `log` (`RUST_LOG`).
    pub async fn start_logging(
        edit: impl FnOnce(&mut TestConfig),
        args: &[&str],
        log: &str,
    ) -> Self {
        let mock = MockProvider::start("127.0.0.1:0")
            .await
            .expect("mock starts");
        let mut cfg = TestConfig::new(mock.addr());
        edit(&mut cfg);
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, cfg.render()).expect("write config");
        let mut all = vec!["--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut proc = Proc::spawn_logging(&path, &all, log);
        proc.wait_listening().await;
        Self {
            addr: proc.addr,
            mock,
            cfg,
            proc,
            dir,
        }
    }

    /// The configuration file sluice was started with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("sluice.toml")
    }

    /// The test's own temp directory (for sockets, pid files, …).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Replaces the configuration file the way editors and config management do: a new file
    /// renamed over the old one.
    pub fn write_config(&self, text: &str) {
        let tmp = self.dir.path().join(".sluice.toml.tmp");
        std::fs::write(&tmp, text).expect("write config");
        std::fs::rename(&tmp, self.config_path()).expect("replace config");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The next usage record sluice wrote.
    pub async fn next_record(&mut self) -> serde_json::Value {
        self.proc.next_record().await
    }

    /// Everything sluice logged so far.
    pub fn stderr(&self) -> String {
        self.proc.stderr()
    }

    /// An HTTP client with no connection reuse surprises (fresh pool per test).
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(WAIT)
            .build()
            .expect("client")
    }

    /// A POST to `path` as org acme with the OpenAI-style credential (`Authorization: Bearer`).
    pub fn openai_post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client()
            .post(self.url(path))
            .bearer_auth(&self.cfg.keys.acme)
    }

    /// Sends `body` to `/v1/chat/completions` with `key` and the extra `headers` (mock switches
    /// such as `x-mock-status`, attribution headers); a request that gets no answer fails the
    /// test.
    pub async fn post_chat_as(
        &self,
        key: &str,
        headers: &[(&str, &str)],
        body: &serde_json::Value,
    ) -> reqwest::Response {
        send_chat(
            &self.client(),
            &self.url("/v1/chat/completions"),
            key,
            headers,
            body,
        )
        .await
        .expect("chat request")
    }

    /// [`Sluice::post_chat_as`] as org acme.
    pub async fn post_chat(
        &self,
        headers: &[(&str, &str)],
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.post_chat_as(&self.cfg.keys.acme, headers, body).await
    }

    /// A POST to `path` as org acme the way the Anthropic SDK sends it (`x-api-key` and
    /// `anthropic-version`).
    pub fn anthropic_post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client()
            .post(self.url(path))
            .header("x-api-key", &self.cfg.keys.acme)
            .header("anthropic-version", "2023-06-01")
    }
}

/// Opens a slow chat stream with `key` (`chunks` content chunks, `gap_ms` apart), waits for its
/// first bytes (so it surely started under the current configuration and process), and returns
/// a task yielding the whole body.
pub async fn open_stream(
    s: &Sluice,
    key: &str,
    chunks: usize,
    gap_ms: &str,
) -> tokio::task::JoinHandle<String> {
    use futures_util::StreamExt;
    let chunks = chunks.to_string();
    let headers = [
        ("x-mock-chunks", chunks.as_str()),
        ("x-mock-gap-ms", gap_ms),
    ];
    let resp = s.post_chat_as(key, &headers, &chat("mock-gpt", true)).await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let first = body
        .next()
        .await
        .expect("first bytes")
        .expect("first bytes");
    tokio::spawn(async move {
        let mut text = String::from_utf8_lossy(&first).to_string();
        while let Some(chunk) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.expect("stream chunk")));
        }
        text
    })
}

/// Asserts that an OpenAI chat SSE body ended with `[DONE]` and carried `chunks` content deltas.
pub fn assert_chat_stream_complete(body: &str, chunks: usize) {
    let data: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "stream ended early:\n{body}");
    let content = data
        .iter()
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
        })
        .count();
    assert_eq!(content, chunks, "content chunks:\n{body}");
}

/// Sends `body` as a chat completion to `url` on `client` (whose connection reuse the caller
/// chose) with `key` and the extra `headers`.
pub async fn send_chat(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    headers: &[(&str, &str)],
    body: &serde_json::Value,
) -> reqwest::Result<reqwest::Response> {
    let mut req = client.post(url).bearer_auth(key);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.json(body).send().await
}

/// Runs `sluice-proxy check` on `text` with `master` as the master key set; returns whether it
/// passed, its stdout and its stderr.
pub fn check_config(text: &str, master: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-proxy"))
        .args(["check", "--config"])
        .arg(&path)
        .env("SLUICE_MASTER_KEY", master)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
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
