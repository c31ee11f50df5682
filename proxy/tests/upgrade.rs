//! Graceful binary upgrade with real processes: a new `sluice-proxy --upgrade` takes the
//! listening socket over from the old one on SIGQUIT while streams run on the old process and a
//! steady trickle of new requests keeps arriving. Nothing fails, the old process's streams finish,
//! the new process serves, and the old one exits. Without a running instance, `--upgrade` fails.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(clippy::panic, reason = "test code: a panic fails the test")]

mod common;
use common::*;
use sluice_test_support::wait_for;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// 70 chunks 100 ms apart: the streams outlast the 5 s in which the old process still accepts
/// after handing its sockets over, so they run on while it drains.
const CHUNKS: usize = 70;
const GAP_MS: &str = "100";

#[tokio::test]
async fn upgrade_hands_over_sockets_without_failing_a_request() {
    let run = tempfile::tempdir().unwrap();
    let sock = run.path().join("up.sock");
    let pid_file = run.path().join("sluice.pid");
    let server = format!(
        "upgrade_sock = \"{}\"\npid_file = \"{}\"\ngrace_period = \"60s\"\nshutdown_timeout = \"1s\"\n",
        sock.display(),
        pid_file.display()
    );
    let admin = ["--admin-listen", "127.0.0.2:0"];
    let mut s = Sluice::start_with_args(|c| c.server = server, &admin).await;
    let old_pid = s.proc.pid();
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        old_pid.to_string()
    );

    // Streams on the old process, each past its first bytes.
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(open_stream(&s, &s.cfg.keys.acme, CHUNKS, GAP_MS).await);
    }

    // A steady trickle of new requests, each on a new connection: a keep-alive connection to the
    // old process is closed by it once it stops serving, and a client that reuses one at that
    // instant fails in any server (HTTP/1.1 has no way to say "closing" to an idle connection).
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let stop = stop.clone();
        let url = s.url("/v1/chat/completions");
        let key = s.cfg.keys.acme.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(WAIT)
                .build()
                .unwrap();
            let mut pace = tokio::time::interval(Duration::from_millis(25));
            let mut results = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                pace.tick().await;
                let r = send_chat(&client, &url, &key, &[], &chat("mock-gpt", false)).await;
                results.push(match r {
                    Ok(resp) => Ok(resp.status().as_u16()),
                    Err(e) => Err(e.to_string()),
                });
            }
            results
        })
    };

    // The new process waits for the sockets; then the old one is told to hand them over.
    let config = s.config_path();
    let mut new = Proc::spawn(
        &config,
        &["--listen", "127.0.0.1:0", "--upgrade", admin[0], admin[1]],
    );
    new.wait_stderr("the upgrade to wait for sockets", |t| {
        t.contains("waiting for the listening sockets")
    })
    .await;
    s.proc.signal(Signal::SIGQUIT);
    new.wait_listening().await;
    assert_eq!(
        new.addr, s.addr,
        "the same socket, now served by the new process"
    );
    assert_eq!(
        new.admin, s.proc.admin,
        "the admin socket is handed over too"
    );
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        new.pid().to_string(),
        "the pid file names the new process"
    );

    for stream in streams {
        let body = tokio::time::timeout(WAIT, stream).await.unwrap().unwrap();
        assert_chat_stream_complete(&body, CHUNKS);
    }

    let status = s.proc.wait_exit().await;
    assert!(status.success(), "old process exit: {status}");
    let old_log = s.proc.stderr();
    assert!(old_log.contains("SIGQUIT received"), "{old_log}");
    // The grace period (60 s) is far longer than the test's bound: the old process left because
    // its last connection closed.
    assert!(
        old_log.contains("all client connections closed"),
        "{old_log}"
    );

    // After the old process is gone the new one answers, and the trickle never saw a failure.
    let resp = s.post_chat(&[], &chat("mock-gpt", false)).await;
    assert_eq!(resp.status(), 200);
    stop.store(true, Ordering::Relaxed);
    let results = tokio::time::timeout(WAIT, trickle).await.unwrap().unwrap();
    let failed: Vec<_> = results.iter().filter(|r| **r != Ok(200)).collect();
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    assert!(results.len() > 10, "trickle ran: {}", results.len());
    assert_eq!(new.admin_get("/healthz").await.0, 200);
    let rec = new.next_record().await;
    assert_eq!(
        rec["status"], 200,
        "the new process serves and records: {rec}"
    );
}

#[tokio::test]
async fn upgrade_without_a_running_instance_gives_up_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "allow_no_keys = true\n[server]\nlisten = [\"127.0.0.1:0\"]\nupgrade_sock = \"{}\"\npid_file = \"{}\"\n\
             [usage]\nsink = \"none\"\n\
             [[providers]]\nname = \"p\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
             auth = \"none\"\n[[models]]\nname = \"m\"\nprovider = \"p\"\n",
            dir.path().join("up.sock").display(),
            dir.path().join("s.pid").display()
        ),
    )
    .unwrap();
    let mut p = Proc::spawn(&config, &["--upgrade"]);
    let status = p.wait_exit().await;
    assert!(!status.success(), "no sockets to take over must fail");
    let log = p.stderr();
    assert!(log.contains("waiting for the listening sockets"), "{log}");
    assert!(!log.contains("listening on http://"), "{log}");
}

/// Keep-alive clients sending continuously: counts of answered requests and of failures (a
/// request that got no answer, or an answer other than 200). A connection refused before
/// anything was sent is retried, as every HTTP client does: no request was written.
#[derive(Default)]
struct Pool {
    ok: std::sync::atomic::AtomicUsize,
    failed: Mutex<Vec<String>>,
    stop: AtomicBool,
}

use std::sync::Mutex;

impl Pool {
    /// Starts `workers` tasks on one client whose pool keeps idle connections for 1 s (the
    /// OpenAI and Anthropic SDKs keep them 5 s; the proxy's idle timeout is longer in both).
    fn start(
        url: String,
        key: String,
        workers: usize,
    ) -> (Arc<Self>, Vec<tokio::task::JoinHandle<()>>) {
        let pool = Arc::new(Self::default());
        let client = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(1))
            .timeout(WAIT)
            .build()
            .unwrap();
        let tasks = (0..workers)
            .map(|_| {
                let (pool, client, url, key) =
                    (pool.clone(), client.clone(), url.clone(), key.clone());
                tokio::spawn(async move {
                    while !pool.stop.load(Ordering::Relaxed) {
                        let r = send_chat(&client, &url, &key, &[], &chat("mock-gpt", false)).await;
                        let r = match r {
                            Ok(resp) => {
                                let status = resp.status();
                                Ok((status, resp.bytes().await.is_ok()))
                            }
                            Err(e) => Err(e),
                        };
                        match r {
                            Ok((status, true)) if status == 200 => {
                                pool.ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok((status, _)) => pool
                                .failed
                                .lock()
                                .unwrap()
                                .push(format!("status {status} or body lost")),
                            // Nothing was written: retried after a pause, like a client's retry.
                            Err(e) if e.is_connect() => {
                                tokio::time::sleep(Duration::from_millis(20)).await
                            }
                            Err(e) => pool.failed.lock().unwrap().push(format!("{e:?}")),
                        }
                    }
                })
            })
            .collect();
        (pool, tasks)
    }

    fn ok(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    /// Waits (bounded) until `more` further requests were answered.
    async fn wait_more(&self, more: usize) {
        let target = self.ok() + more;
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.ok() < target {
            assert!(
                tokio::time::Instant::now() < deadline,
                "requests stalled at {}; failures: {:?}",
                self.ok(),
                self.failed.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn finish(&self, tasks: Vec<tokio::task::JoinHandle<()>>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in tasks {
            tokio::time::timeout(WAIT, t).await.unwrap().unwrap();
        }
        let failed = self.failed.lock().unwrap();
        assert!(failed.is_empty(), "failed requests: {failed:?}");
    }
}

/// A sluice whose connections drain on upgrade and restart (upgrade socket and pid file in the
/// returned run directory, which must outlive it), with a pool of 6 keep-alive clients that
/// has already seen 30 answers.
async fn sluice_under_keep_alive_load() -> (
    tempfile::TempDir,
    Sluice,
    Arc<Pool>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let run = tempfile::tempdir().unwrap();
    let server = format!(
        "upgrade_sock = \"{}\"\npid_file = \"{}\"\ngrace_period = \"60s\"\nshutdown_timeout = \"1s\"\n\
         [server.connections]\nidle_timeout = \"3s\"\n",
        run.path().join("up.sock").display(),
        run.path().join("sluice.pid").display()
    );
    let s = Sluice::start_with(|c| c.server = server).await;
    let (pool, tasks) = Pool::start(s.url("/v1/chat/completions"), s.cfg.keys.acme.clone(), 6);
    pool.wait_more(30).await;
    (run, s, pool, tasks)
}

#[tokio::test]
async fn keep_alive_clients_lose_no_request_across_an_upgrade() {
    let (_run, mut s, pool, tasks) = sluice_under_keep_alive_load().await;

    let mut new = Proc::spawn(&s.config_path(), &["--listen", "127.0.0.1:0", "--upgrade"]);
    new.wait_stderr("the upgrade to wait for sockets", |t| {
        t.contains("waiting for the listening sockets")
    })
    .await;
    s.proc.signal(Signal::SIGQUIT);
    new.wait_listening().await;
    pool.wait_more(30).await;
    let status = s.proc.wait_exit().await;
    assert!(status.success(), "old process exit: {status}");
    pool.wait_more(30).await;
    pool.finish(tasks).await;
}

#[tokio::test]
async fn keep_alive_clients_lose_no_request_across_a_sigterm_restart() {
    let (_run, mut s, pool, tasks) = sluice_under_keep_alive_load().await;

    s.proc.signal(Signal::SIGTERM);
    // The old process stops listening at once (its connections still drain); then the new one
    // can bind the same address.
    wait_for("the old process to stop listening", WAIT, || async {
        tokio::net::TcpStream::connect(s.addr)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    let addr = s.addr.to_string();
    let mut new = Proc::start(&s.config_path(), &["--listen", &addr]).await;
    pool.wait_more(30).await;
    let status = s.proc.wait_exit().await;
    assert!(status.success(), "old process exit: {status}");
    pool.wait_more(30).await;
    pool.finish(tasks).await;
    assert_eq!(new.next_record().await["status"], 200);
}

/// Connections the kernel accepted (handshake done, request sent) but the process had not yet
/// taken off the listening socket when SIGTERM came are served, not reset: a stopped process
/// (SIGSTOP) queues them all, and SIGTERM is pending when it resumes. Without the drain, closing
/// the listener reset every connection still queued; those clients had written their request,
/// so none of them could safely retry it.
#[tokio::test]
async fn connections_queued_when_sigterm_comes_are_answered_not_reset() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Sluice::start_with(|c| {
        c.server = "grace_period = \"60s\"\nshutdown_timeout = \"1s\"\n".into();
    })
    .await;
    let request = format!(
        "GET /v1/models HTTP/1.1\r\nHost: sluice\r\nAuthorization: Bearer {}\r\n\r\n",
        s.cfg.keys.acme
    );
    s.proc.signal(Signal::SIGSTOP);
    let mut queued = Vec::new();
    for _ in 0..100 {
        let mut c = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        c.write_all(request.as_bytes()).await.unwrap();
        queued.push(c);
    }
    s.proc.signal(Signal::SIGTERM);
    s.proc.signal(Signal::SIGCONT);
    let mut failed = Vec::new();
    for (i, mut c) in queued.into_iter().enumerate() {
        // A whole answer: its head, then as many body bytes as it announces. (One accepted
        // before the stop began may keep its connection open, so the end of the stream is not
        // awaited.)
        let mut answer = Vec::new();
        let whole = tokio::time::timeout(WAIT, async {
            let mut chunk = [0u8; 4096];
            loop {
                let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok());
                    if length.is_some_and(|n| answer.len() >= end + 4 + n) {
                        return Ok(text.starts_with("http/1.1 200"));
                    }
                }
                match c.read(&mut chunk).await {
                    Ok(0) => return Err("closed".to_string()),
                    Ok(n) => answer.extend_from_slice(&chunk[..n]),
                    Err(e) => return Err(e.to_string()),
                }
            }
        })
        .await;
        if !matches!(whole, Ok(Ok(true))) {
            let text = String::from_utf8_lossy(&answer);
            failed.push(format!("connection {i}: {whole:?} after {text:?}"));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of 100 not answered: {failed:#?}",
        failed.len()
    );
}
