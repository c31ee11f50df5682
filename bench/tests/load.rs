//! Integration tests of the load generator against the real mock provider over TCP: exact
//! accounting, event and gap counts, error classification and the loopback rule. No test
//! asserts a timing; bounded waits only guard against hangs.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(clippy::panic, reason = "test code: a panic fails the test")]

use std::future::Future;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use sluice_bench::load::{
    self, Api, Auth, AuthScheme, Mode, Plan, PlanError, Report, Secret, Target,
};
use sluice_bench::mock::{MockProvider, Outcome};

/// Only a guard against a hung test; nothing here waits on time to synchronise.
async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test step hung")
}

async fn mock() -> MockProvider {
    MockProvider::start("127.0.0.1:0").await.unwrap()
}

fn plan(mock: &MockProvider, api: Api, mode: Mode, requests: u64) -> Plan {
    let target = Target::parse(&mock.base_url()).unwrap();
    let mut plan = Plan::new(target, api, mode);
    plan.requests = Some(requests);
    plan
}

async fn run(plan: &Plan) -> Report {
    within(load::run(plan)).await.unwrap()
}

/// Runs the plan and checks the accounting invariants of its report.
async fn run_accounted(plan: &Plan) -> Report {
    let r = run(plan).await;
    assert_accounted(&r);
    r
}

/// The accounting invariants every report must satisfy.
fn assert_accounted(r: &Report) {
    assert_eq!(r.planned, r.ok + r.errors.total + r.dropped, "{r:#?}");
    assert_eq!(r.sent, r.ok + r.errors.total, "{r:#?}");
    let status_errors: u64 = r.errors.status.values().sum();
    assert_eq!(
        r.errors.total,
        r.errors.connect
            + r.errors.timeout
            + r.errors.protocol
            + r.errors.body
            + r.errors.stream_cut
            + status_errors
    );
    assert_eq!(r.latency_us.total.count, r.ok);
    assert_eq!(r.latency_us.send_lag.count, r.sent);
}

#[tokio::test]
async fn closed_loop_non_stream_counts_are_exact() {
    let mock = mock().await;
    let p = plan(&mock, Api::Openai, Mode::Closed { clients: 4 }, 100);
    let r = run_accounted(&p).await;
    assert_eq!((r.planned, r.sent, r.ok, r.dropped), (100, 100, 100, 0));
    assert_eq!(r.errors.total, 0);
    assert_eq!(r.statuses.get(&200), Some(&100));
    assert_eq!(r.latency_us.ttfb.count, 100);
    assert_eq!(r.latency_us.first_event.count, 0);
    assert_eq!(r.latency_us.gap.count, 0);
    assert_eq!(
        r.latency_us.send_lag.max, 0,
        "closed loop sends when intended"
    );
    assert!(r.bytes_received > 0);
    // Keep-alive: one connection per client, not one per request.
    assert!((1..=4).contains(&r.connections_opened), "{r:#?}");
    let records = within(mock.wait_for_settled(100)).await;
    assert_eq!(records.len(), 100);
    assert!(records.iter().all(|x| x.path == "/v1/chat/completions"));
    assert!(records
        .iter()
        .all(|x| x.model.as_deref() == Some("gpt-4o-mini")));

    // The JSON report parses and carries the documented fields.
    let json: Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(json["schema"], load::SCHEMA);
    assert_eq!(json["plan"]["mode"], "closed");
    assert_eq!(json["plan"]["clients"], 4);
    assert_eq!(json["ok"], 100);
    assert_eq!(json["statuses"]["200"], 100);
    for h in ["ttfb", "first_event", "gap", "total", "send_lag"] {
        for f in ["count", "min", "mean", "p50", "p90", "p99", "p99_9", "max"] {
            assert!(json["latency_us"][h][f].is_number(), "{h}.{f}");
        }
    }
    assert!(json["throughput"]["requests_per_s"].as_f64().unwrap() > 0.0);
    // The harness can read the report back into the same type; floats are compared
    // elsewhere because serde_json's default float parsing may differ in the last digit.
    let back: Report = serde_json::from_value(json).unwrap();
    assert_eq!(back.plan, r.plan);
    assert_eq!((back.planned, back.sent, back.ok), (100, 100, 100));
    assert_eq!(back.latency_us.total.p99_9, r.latency_us.total.p99_9);
    assert_eq!(back.statuses, r.statuses);
}

#[tokio::test]
async fn openai_stream_events_and_gaps_are_exact() {
    let mock = mock().await;
    let mut p = plan(&mock, Api::Openai, Mode::Closed { clients: 3 }, 30);
    p.stream = true;
    p.header("x-mock-chunks: 16").unwrap();
    let r = run_accounted(&p).await;
    assert_eq!(r.ok, 30);
    // The mock sends the role chunk, 16 content chunks, the finish chunk and [DONE].
    let per = 16 + 3;
    assert_eq!(r.events_per_request.min, per);
    assert_eq!(r.events_per_request.max, per);
    assert_eq!(r.events_per_request.count, 30);
    assert_eq!(r.events, 30 * per);
    assert_eq!(r.latency_us.first_event.count, 30);
    assert_eq!(r.latency_us.gap.count, 30 * (per - 1));
}

#[tokio::test]
async fn anthropic_stream_events_split_in_small_frames() {
    let mock = mock().await;
    let mut p = plan(&mock, Api::Anthropic, Mode::Closed { clients: 2 }, 10);
    p.stream = true;
    p.header("x-mock-chunks: 16").unwrap();
    // Tiny frames put `data:` prefixes across chunk boundaries; CRLF exercises line ends.
    p.header("x-mock-fragment: 3").unwrap();
    p.header("x-mock-line-ending: crlf").unwrap();
    let r = run_accounted(&p).await;
    assert_eq!(r.ok, 10);
    // message_start, content_block_start, ping, 16 deltas, content_block_stop,
    // message_delta, message_stop.
    let per = 16 + 6;
    assert_eq!(r.events_per_request.min, per);
    assert_eq!(r.events_per_request.max, per);
    assert_eq!(r.latency_us.gap.count, 10 * (per - 1));
    let records = within(mock.wait_for_settled(10)).await;
    assert!(records.iter().all(|x| x.path == "/v1/messages" && x.stream));
    assert!(records.iter().all(|x| x
        .headers
        .iter()
        .any(|(k, v)| k == "anthropic-version" && v == "2023-06-01")));
}

#[tokio::test]
async fn open_loop_accounts_for_every_arrival() {
    let mock = mock().await;
    // 50 arrivals 1 ms apart span 49 ms, while each answer is held back 500 ms: with at
    // most 4 outstanding, later arrivals find the cap full and are dropped, not queued.
    let mut p = plan(&mock, Api::Openai, Mode::Open { rate: 1000.0 }, 50);
    p.max_outstanding = 4;
    p.header("x-mock-header-delay-ms: 500").unwrap();
    let r = run_accounted(&p).await;
    assert_eq!(r.planned, 50);
    assert!(r.dropped > 0, "{r:#?}");
    assert!(r.sent <= 50 - r.dropped);
    assert_eq!(r.errors.total, 0);
    let records = within(mock.wait_for_settled(r.sent as usize)).await;
    assert_eq!(records.len() as u64, r.sent);
    assert_eq!(r.plan.mode, "open");
    assert_eq!(r.plan.max_outstanding, Some(4));
}

#[tokio::test]
async fn open_loop_duration_bound_and_streams() {
    let mock = mock().await;
    let target = Target::parse(&mock.base_url()).unwrap();
    let mut p = Plan::new(target, Api::Openai, Mode::Open { rate: 200.0 });
    p.duration = Some(Duration::from_millis(100));
    p.stream = true;
    p.header("x-mock-chunks: 4").unwrap();
    let r = run_accounted(&p).await;
    // Arrivals at 0, 5, ..., 95 ms fall inside 100 ms.
    assert_eq!(r.planned, 20);
    assert_eq!(r.dropped, 0);
    assert_eq!(r.ok, 20);
    assert_eq!(r.events, 20 * 7);
}

#[tokio::test]
async fn status_errors_are_counted_by_code() {
    let mock = mock().await;
    let mut p = plan(&mock, Api::Openai, Mode::Closed { clients: 2 }, 12);
    p.header("x-mock-status: 500").unwrap();
    let r = run_accounted(&p).await;
    assert_eq!(r.ok, 0);
    assert_eq!(r.errors.total, 12);
    assert_eq!(r.errors.status.get(&500), Some(&12));
    assert_eq!(r.statuses.get(&500), Some(&12));
    assert_eq!(r.latency_us.total.count, 0);

    let mut p = plan(&mock, Api::Anthropic, Mode::Closed { clients: 1 }, 3);
    p.stream = true;
    p.header("x-mock-status: 529").unwrap();
    let r = run(&p).await;
    assert_eq!(r.errors.status.get(&529), Some(&3));
}

#[tokio::test]
async fn closed_port_is_a_connect_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let target = Target::parse(&format!("http://{addr}")).unwrap();
    let mut p = Plan::new(target, Api::Openai, Mode::Closed { clients: 2 });
    p.requests = Some(7);
    let r = run_accounted(&p).await;
    assert_eq!(r.errors.connect, 7);
    assert_eq!(r.errors.total, 7);
    assert!(r.statuses.is_empty());
}

#[tokio::test]
async fn dropped_streams_and_bodies_are_cut_short() {
    let mock = mock().await;
    let mut p = plan(&mock, Api::Openai, Mode::Closed { clients: 2 }, 6);
    p.stream = true;
    p.header("x-mock-drop-after: 5").unwrap();
    let r = run_accounted(&p).await;
    assert_eq!(r.errors.stream_cut, 6, "{r:#?}");
    assert_eq!(r.statuses.get(&200), Some(&6));

    let mut p = plan(&mock, Api::Anthropic, Mode::Closed { clients: 1 }, 4);
    p.header("x-mock-drop-after: 1").unwrap();
    let r = run_accounted(&p).await;
    assert_eq!(r.errors.body, 4, "{r:#?}");
}

#[tokio::test]
async fn stalled_streams_time_out() {
    let mock = mock().await;
    let mut p = plan(&mock, Api::Openai, Mode::Closed { clients: 2 }, 4);
    p.stream = true;
    p.timeout = Duration::from_millis(200);
    p.header("x-mock-stall-after: 2").unwrap();
    let r = run_accounted(&p).await;
    assert_eq!(r.errors.timeout, 4, "{r:#?}");
    // A connection is never reused after a failure.
    assert_eq!(r.connections_opened, 4);
    // Timed-out connections are closed, not reused, so the mock sees every client leave.
    let records = within(
        mock.wait_until(|r| r.len() == 4 && r.iter().all(|x| x.outcome == Outcome::ClientGone)),
    )
    .await;
    assert_eq!(records.len(), 4);
}

#[test]
fn non_loopback_targets_are_refused() {
    for url in [
        "http://10.0.0.1:80",
        "http://192.0.2.1:8080",
        "http://example.com:80",
    ] {
        assert!(
            matches!(Target::parse(url), Err(PlanError::NotLoopback(_))),
            "{url}"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-load"))
        .args([
            "--url",
            "http://192.0.2.1:80",
            "--clients",
            "1",
            "--requests",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a loopback address"), "{stderr}");
}

#[test]
fn unbounded_runs_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-load"))
        .args(["--url", "http://127.0.0.1:9", "--clients", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-load"))
        .args([
            "--url",
            "http://127.0.0.1:9",
            "--clients",
            "1",
            "--duration",
            "11m",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("duration"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_writes_json_and_never_prints_the_key() {
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.json");
    let key = "sk-test-0123456789-do-not-print";
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice-load"));
    cmd.args(["--url", &mock.base_url(), "--api", "anthropic", "--stream"])
        .args(["--clients", "2", "--requests", "8", "--threads", "2"])
        .args([
            "--key-env",
            "SLUICE_LOAD_TEST_KEY",
            "-H",
            "x-mock-chunks: 4",
        ])
        .args(["-H", "x-extra: not-shown"])
        .arg("--json")
        .arg(&report_path)
        .env("SLUICE_LOAD_TEST_KEY", key);
    // The mock runs on this test's runtime, so the child is awaited on a blocking thread.
    let out = within(tokio::task::spawn_blocking(move || cmd.output()))
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let json_text = std::fs::read_to_string(&report_path).unwrap();
    for text in [&*stdout, &*stderr, &*json_text] {
        assert!(!text.contains(key));
        assert!(!text.contains("not-shown"));
    }
    assert!(stderr.contains("p99.9"), "{stderr}");
    let r: Report = serde_json::from_str(&json_text).unwrap();
    assert_accounted(&r);
    assert_eq!(r.ok, 8);
    assert_eq!(r.events_per_request.max, 4 + 6);
    assert_eq!(r.plan.auth.as_deref(), Some("x-api-key"));
    assert_eq!(r.plan.headers, ["x-mock-chunks: 4", "x-extra: <redacted>"]);
    // The key did reach the server.
    let records = within(mock.wait_for_settled(8)).await;
    assert!(records
        .iter()
        .all(|x| x.headers.iter().any(|(k, v)| k == "x-api-key" && v == key)));
}

#[tokio::test]
async fn bearer_auth_reaches_the_server() {
    let mock = mock().await;
    let mut p = plan(&mock, Api::Openai, Mode::Closed { clients: 1 }, 1);
    p.auth = Some(Auth {
        scheme: AuthScheme::Bearer,
        value: Secret::new("sk-abc"),
    });
    let r = run(&p).await;
    assert_eq!(r.ok, 1);
    let records = within(mock.wait_for_settled(1)).await;
    assert!(records[0]
        .headers
        .iter()
        .any(|(k, v)| k == "authorization" && v == "Bearer sk-abc"));
}
