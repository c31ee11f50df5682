//! Exactly-once usage delivery under faults, end to end: real `sluice-proxy` and
//! `sluice-control` processes, the mock provider as ground truth. In every scenario the ledger's
//! token totals equal what the mock served, and no record id is stored twice — against SQLite
//! and against a real Postgres.
//!
//! 1. the ledger is SIGKILLed during load and restarted;
//! 2. the proxy is restarted gracefully (SIGTERM, drain, new process on the same spool) during
//!    load;
//! 3. the proxy is SIGKILLed while the ledger is down: its spool survives and is replayed;
//! 4. as 3, with a torn entry at the spool's tail (a crash in the middle of an append).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(clippy::panic, reason = "test code: a panic fails the test")]

use sluice_bench::mock::{MockProvider, Outcome};
use sluice_load_tests::ledger::Ledger;
use sluice_load_tests::load::drive;
use sluice_load_tests::proxy::{Proxy, ProxyConfig, ORG};
use sluice_load_tests::{fresh_postgres, wait_for};
use sluice_test_support::Signal;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

/// Where a scenario's ledger keeps its records.
enum Backend {
    Sqlite,
    Postgres,
}

/// The database URL for `backend`, or `None` when Postgres is unavailable (and allowed to be).
async fn database(backend: &Backend, dir: &Path) -> Option<String> {
    match backend {
        Backend::Sqlite => Some(format!("sqlite://{}", dir.join("ledger.db").display())),
        Backend::Postgres => fresh_postgres().await,
    }
}

/// What the mock served: requests, input and output tokens. Every request must have finished.
fn ground_truth(mock: &MockProvider) -> (u64, u64, u64) {
    let served = mock.requests();
    let (mut input, mut output) = (0, 0);
    for r in &served {
        assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
        let u = r.usage.expect("the mock reported usage");
        input += u.input_tokens;
        output += u.output_tokens;
    }
    (served.len() as u64, input, output)
}

/// The ledger holds exactly what the mock served: same request count and token totals, and
/// each record id once.
async fn assert_exactly_once(ledger: &Ledger, mock: &MockProvider) {
    let (requests, input, output) = ground_truth(mock);
    assert!(requests > 0);
    let usage = wait_for("the ledger to hold every served request", || async {
        let u = ledger.usage(ORG).await;
        (u.total.requests >= requests).then_some(u)
    })
    .await;
    assert_eq!(usage.total.requests, requests, "no record counted twice");
    assert_eq!(usage.total.input_tokens, input, "input tokens");
    assert_eq!(usage.total.output_tokens, output, "output tokens");
    let (ids, lines) = ledger.exported_ids(ORG).await;
    assert_eq!(lines, ids.len(), "an id stored twice");
    assert_eq!(ids.len() as u64, requests);
}

struct Scene {
    dir: tempfile::TempDir,
    mock: MockProvider,
    db: String,
}

async fn scene(backend: Backend) -> Option<Scene> {
    let dir = tempfile::tempdir().unwrap();
    let db = database(&backend, dir.path()).await?;
    let mock = MockProvider::start("127.0.0.1:0").await.unwrap();
    Some(Scene { dir, mock, db })
}

/// How many requests the mock has received so far.
async fn served_at_least(mock: &MockProvider, n: usize) {
    tokio::time::timeout(sluice_load_tests::WAIT, mock.wait_for_requests(n))
        .await
        .expect("load progresses");
}

async fn ledger_killed_during_load(backend: Backend) {
    let Some(s) = scene(backend).await else {
        return;
    };
    let mut ledger = Ledger::start(&s.db, "127.0.0.1:0");
    let cfg = ProxyConfig::new(s.mock.addr(), &ledger.base, s.dir.path());
    let proxy = Proxy::start(&cfg.write(s.dir.path()));
    let load = tokio::spawn({
        let (base, key) = (proxy.base.clone(), cfg.key.clone());
        async move { drive(&base, &key, 600, 8).await }
    });
    served_at_least(&s.mock, 150).await;
    let listen = ledger.listen_addr();
    ledger.proc.kill();
    served_at_least(&s.mock, 350).await;
    // Back on the same address and database, as a supervisor would restart it.
    let ledger = Ledger::start(&s.db, &listen);
    let tally = load.await.unwrap();
    assert_eq!(tally.failed, 0, "the ledger is never on the request path");
    assert_exactly_once(&ledger, &s.mock).await;
}

async fn proxy_restarted_gracefully_during_load(backend: Backend) {
    let Some(s) = scene(backend).await else {
        return;
    };
    let ledger = Ledger::start(&s.db, "127.0.0.1:0");
    let cfg = ProxyConfig::new(s.mock.addr(), &ledger.base, s.dir.path());
    let config = cfg.write(s.dir.path());
    let mut first = Proxy::start(&config);
    let load = tokio::spawn({
        let (base, key) = (first.base.clone(), cfg.key.clone());
        async move { drive(&base, &key, 400, 8).await }
    });
    served_at_least(&s.mock, 100).await;
    first.proc.signal(Signal::SIGTERM);
    // Requests that reached it finish; later ones find it gone and fail at connect.
    let before = load.await.unwrap();
    assert!(before.ok >= 100, "{before:?}");
    assert!(
        first.proc.wait_exit(Duration::from_secs(60)).success(),
        "clean exit:\n{}",
        first.proc.stderr()
    );
    let second = Proxy::start(&config);
    let after = drive(&second.base, &cfg.key, 300, 8).await;
    assert_eq!(after.failed, 0);
    assert_exactly_once(&ledger, &s.mock).await;
}

/// Serves `n` requests while the ledger is down and waits until the proxy has spooled them all,
/// then SIGKILLs the proxy.
async fn spool_then_crash(s: &Scene, mut ledger: Ledger, cfg: &ProxyConfig, proxy: Proxy) {
    let warm = drive(&proxy.base, &cfg.key, 120, 8).await;
    assert_eq!(warm.failed, 0);
    assert_exactly_once(&ledger, &s.mock).await;
    ledger.proc.kill();
    let down = drive(&proxy.base, &cfg.key, 240, 8).await;
    assert_eq!(down.failed, 0, "serving goes on without the ledger");
    wait_for("every record of the outage to be spooled", || async {
        let spooled = proxy.metric("sluice_usage_records_spooled_total").await;
        (spooled >= 240.0).then_some(())
    })
    .await;
    let mut proxy = proxy;
    proxy.proc.kill();
}

async fn proxy_killed_while_ledger_down(backend: Backend, torn_tail: bool) {
    let Some(s) = scene(backend).await else {
        return;
    };
    let ledger = Ledger::start(&s.db, "127.0.0.1:0");
    let cfg = ProxyConfig::new(s.mock.addr(), &ledger.base, s.dir.path());
    let proxy = Proxy::start(&cfg.write(s.dir.path()));
    spool_then_crash(&s, ledger, &cfg, proxy).await;
    if torn_tail {
        tear_spool_tail(&cfg.spool_dir);
    }
    let ledger = Ledger::start(&s.db, "127.0.0.1:0");
    // The ledger came back elsewhere; the new proxy replays the spool to it before new records.
    let cfg = ProxyConfig {
        ledger: ledger.base.clone(),
        ..cfg
    };
    let proxy = Proxy::start(&cfg.write(s.dir.path()));
    assert_exactly_once(&ledger, &s.mock).await;
    let more = drive(&proxy.base, &cfg.key, 60, 4).await;
    assert_eq!(more.failed, 0);
    assert_exactly_once(&ledger, &s.mock).await;
}

/// Appends half an entry to every spool file: what a crash in the middle of an append leaves.
fn tear_spool_tail(spool: &Path) {
    let mut torn = 0;
    for entry in std::fs::read_dir(spool).unwrap() {
        let path = entry.unwrap().path();
        let len = std::fs::metadata(&path).unwrap().len();
        if !path.is_file() || len == 0 || path.extension().is_some_and(|e| e == "lock") {
            continue;
        }
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        // A length prefix promising far more than follows, then a few payload bytes.
        f.write_all(&[0x00, 0x10, 0x00, 0x00, 0x12, 0x34, 0x56, 0x78, b'{', b'"'])
            .unwrap();
        f.sync_all().unwrap();
        torn += 1;
    }
    assert!(torn > 0, "no spool file in {}", spool.display());
}

/// One test per backend for a scenario: `$sqlite` and `$postgres` run `$scenario(backend, $args)`.
macro_rules! on_both_backends {
    ($sqlite:ident, $postgres:ident, $scenario:ident $(, $arg:expr)*) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            $scenario(Backend::Sqlite $(, $arg)*).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            $scenario(Backend::Postgres $(, $arg)*).await;
        }
    };
}

on_both_backends!(
    sqlite_ledger_killed_during_load,
    postgres_ledger_killed_during_load,
    ledger_killed_during_load
);
on_both_backends!(
    sqlite_proxy_restarted_gracefully_during_load,
    postgres_proxy_restarted_gracefully_during_load,
    proxy_restarted_gracefully_during_load
);
on_both_backends!(
    sqlite_proxy_killed_while_ledger_down,
    postgres_proxy_killed_while_ledger_down,
    proxy_killed_while_ledger_down,
    false
);
on_both_backends!(
    sqlite_spool_with_a_torn_tail,
    postgres_spool_with_a_torn_tail,
    proxy_killed_while_ledger_down,
    true
);
