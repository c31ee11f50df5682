//! Delivery test harness: the real `sluice-control` binary (from this workspace's target dir), a
//! tiny in-process ledger stub that records every batch it is sent and can play dead, records,
//! settings, and a bounded wait on observable conditions.

use crate::config::{IngestToken, LedgerSettings};
use crate::metering::record::UsageRecord;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use sluice_test_support::{binary, eventually, Process};
use sluice_wire::{IngestAnswer, IngestBatch, Rejection, UsageTotals};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const INGEST: &str = "delivery-test-ingest-token-0123";
pub const ADMIN: &str = "delivery-test-admin-token-4567";
/// Bound on every wait for an observable condition (never a synchronisation sleep).
pub const WAIT: Duration = Duration::from_secs(30);

/// Polls `cond` until it holds or [`WAIT`] passes; returns whether it held.
pub fn wait_until(cond: impl FnMut() -> bool) -> bool {
    eventually(WAIT, cond)
}

pub fn record(org: &str, input: u64, output: u64) -> UsageRecord {
    UsageRecord {
        upstream_model: None,
        stream: false,
        input_tokens: input,
        output_tokens: output,
        cost_micro_usd: input + output,
        ttft_ms: None,
        total_ms: 1.0,
        upstream_ms: None,
        bytes_in: 10,
        bytes_out: 20,
        ..sluice_test_support::usage_record(org)
    }
}

pub fn settings(
    url: &str,
    spool: &Path,
    batch_records: usize,
    interval: Duration,
) -> LedgerSettings {
    LedgerSettings {
        url: url.to_string(),
        token: IngestToken::new(INGEST),
        spool_dir: spool.to_path_buf(),
        batch_records,
        batch_interval: interval,
        spend_poll: None,
        drain_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(2),
        dead_letter_after: 2,
    }
}

/// Records held in this process's spool file (slot 0), read through a fresh scan.
pub fn spooled_bytes(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("spool-0.log"))
        .map_or(0, |m| m.len())
        .saturating_sub(crate::delivery::format::MAGIC.len() as u64)
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("test runtime")
        .block_on(f)
}

/// The real ledger binary over SQLite in `data`.
pub struct RealLedger {
    process: Process,
    pub addr: String,
    data: PathBuf,
}

impl RealLedger {
    /// Starts the ledger on `listen` (`127.0.0.1:0` for a free port) and waits until it listens.
    pub fn start(data: &Path, listen: &str) -> Self {
        let mut cmd = Command::new(binary("sluice-control"));
        cmd.args(["--listen", listen, "--data-dir"])
            .arg(data)
            .env("SLUICE_INGEST_TOKEN", INGEST)
            .env("SLUICE_ADMIN_TOKEN", ADMIN)
            .env("RUST_LOG", "warn");
        let process = Process::spawn("sluice-control", cmd);
        let addr = process.wait_line("sluice-control listening on http://", WAIT);
        Self {
            process,
            addr,
            data: data.to_path_buf(),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts the ledger again on the same address and data.
    pub fn restart(&mut self) {
        self.kill();
        let again = Self::start(&self.data, &self.addr);
        *self = again;
    }

    /// Totals of `org` as the ledger reports them.
    pub fn totals(&self, org: &str) -> UsageTotals {
        let url = format!("{}/v1/usage?org={org}", self.url());
        block_on(async {
            let answer: sluice_wire::UsageAnswer = reqwest::Client::new()
                .get(url)
                .bearer_auth(ADMIN)
                .send()
                .await
                .expect("usage query")
                .error_for_status()
                .expect("usage query status")
                .json()
                .await
                .expect("usage answer");
            answer.total
        })
    }
}

/// A ledger stand-in that records the ids of every batch it accepts and can answer 503, refuse
/// batches holding a record of one org (422), or reject the records of another org alone.
#[derive(Default)]
pub struct Stub {
    pub batches: Mutex<Vec<Vec<uuid::Uuid>>>,
    pub down: AtomicBool,
    /// Batches with a record of this org are refused as a whole.
    pub refuse_org: Mutex<Option<String>>,
    pub refusals: AtomicUsize,
    /// Records of this org are rejected in the answer; the rest of their batch is accepted.
    pub reject_org: Mutex<Option<String>>,
}

impl Stub {
    /// Serves on a free loopback port from its own thread; returns the state and base URL.
    pub fn start() -> (Arc<Self>, String) {
        let stub = Arc::new(Self::default());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind stub");
        let addr = listener.local_addr().expect("stub addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let state = stub.clone();
        std::thread::spawn(move || {
            block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                let app = axum::Router::new()
                    .route("/v1/events", axum::routing::post(events))
                    .with_state(state);
                let _ = axum::serve(listener, app).await;
            });
        });
        (stub, format!("http://{addr}"))
    }

    /// Every id received, in the order received.
    pub fn ids(&self) -> Vec<uuid::Uuid> {
        self.batches
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .copied()
            .collect()
    }

    pub fn sizes(&self) -> Vec<usize> {
        self.batches.lock().unwrap().iter().map(Vec::len).collect()
    }
}

async fn events(
    State(stub): State<Arc<Stub>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let expected = format!("Bearer {INGEST}");
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return (StatusCode::UNAUTHORIZED, "bad token").into_response();
    }
    if stub.down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let Ok(batch) = serde_json::from_slice::<IngestBatch>(&body) else {
        return (StatusCode::BAD_REQUEST, "not a batch").into_response();
    };
    let of =
        |org: &Option<String>, r: &UsageRecord| org.is_some() && r.org.as_deref() == org.as_deref();
    let refuse = stub.refuse_org.lock().unwrap().clone();
    if batch.records.iter().any(|r| of(&refuse, r)) {
        stub.refusals.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::UNPROCESSABLE_ENTITY, "refused").into_response();
    }
    let reject = stub.reject_org.lock().unwrap().clone();
    let mut rejected = Vec::new();
    let mut ids = Vec::new();
    for (index, r) in batch.records.iter().enumerate() {
        if of(&reject, r) {
            rejected.push(Rejection {
                index,
                id: Some(r.id.to_string()),
                message: "not storable".into(),
            });
        } else {
            ids.push(r.id);
        }
    }
    let accepted = ids.len() as u64;
    stub.batches.lock().unwrap().push(ids);
    Json(IngestAnswer {
        accepted,
        duplicates: 0,
        rejected,
    })
    .into_response()
}
