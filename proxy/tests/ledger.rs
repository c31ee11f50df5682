//! Usage delivery with real processes: `sluice-proxy` with `[ledger]` in front of the mock, and
//! the real `sluice-control` ledger (built by this workspace). SIGTERM drains every record to the
//! ledger before the process exits; a proxy killed while the ledger is down keeps its records in
//! the spool and delivers them at its next start. The ledger's totals must equal the records the
//! proxy wrote to its local sink, exactly. A record holding a NUL (a client's model name or
//! tag) reaches the ledger sanitised and blocks nothing, on SQLite and on Postgres. A plain start
//! runs beside a process that still drains on the same spool directory. A key or org suspended
//! at the ledger is refused by the proxy until the suspension is lifted; a burst from one client
//! address is flagged, reviewed, and its key refused.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(clippy::panic, reason = "test code: a panic fails the test")]

mod common;
use common::*;
use sluice_test_support::{binary, wait_for, Process};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The ledger's admin token (the ingest token is the one the proxy already has in its
/// environment, `MOCK_SHARED_KEY`, so the test need not change the proxy's environment).
const ADMIN: &str = "ledger-test-admin-token-0001";

struct Ledger {
    process: Process,
    addr: String,
    data: PathBuf,
}

impl Ledger {
    fn start(data: &Path, listen: &str) -> Self {
        Self::start_args(data, listen, &[])
    }

    fn start_args(data: &Path, listen: &str, extra: &[&str]) -> Self {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "--listen".as_ref(),
            listen.as_ref(),
            "--data-dir".as_ref(),
            data.as_os_str(),
        ];
        args.extend(extra.iter().map(|a| std::ffi::OsStr::new(*a)));
        let mut ledger = Self::spawn(&args);
        ledger.data = data.to_path_buf();
        ledger
    }

    /// A ledger on the database at `url` (`sqlite://…` or `postgres://…`).
    fn start_url(url: &str) -> Self {
        Self::spawn(&[
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--database-url".as_ref(),
            url.as_ref(),
        ])
    }

    fn spawn(args: &[&std::ffi::OsStr]) -> Self {
        let mut cmd = Command::new(binary("sluice-control"));
        cmd.args(args)
            .env("SLUICE_INGEST_TOKEN", config::SHARED_PROVIDER_KEY)
            .env("SLUICE_ADMIN_TOKEN", ADMIN);
        let process = Process::spawn("sluice-control", cmd);
        let addr = process.wait_line("sluice-control listening on http://", WAIT);
        Self {
            process,
            addr,
            data: PathBuf::new(),
        }
    }

    async fn usage(&self, query: &str) -> sluice_wire::UsageAnswer {
        reqwest::Client::new()
            .get(format!("http://{}/v1/usage?{query}", self.addr))
            .bearer_auth(ADMIN)
            .timeout(WAIT)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    fn kill(&mut self) {
        self.process.kill();
    }

    async fn totals(&self, org: &str) -> sluice_wire::UsageTotals {
        self.usage(&format!("org={org}")).await.total
    }

    /// Polls the ledger (bounded) until `org` has `requests` requests; returns its totals.
    async fn await_requests(&self, org: &str, requests: u64) -> sluice_wire::UsageTotals {
        let what = format!("{requests} requests of {org} in the ledger");
        wait_for(&what, WAIT, || async {
            let t = self.totals(org).await;
            (t.requests >= requests).then_some(t)
        })
        .await
    }
}

/// Throwaway data and spool directories (they must outlive the processes), a ledger on the first,
/// and the `[ledger]` table of a proxy that spools in the second and sends every `interval`.
fn ledger_and_table(interval: &str) -> (tempfile::TempDir, tempfile::TempDir, Ledger, String) {
    let data = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let ledger = Ledger::start(data.path(), "127.0.0.1:0");
    let table = ledger_table(&ledger.addr, spool.path(), interval);
    (data, spool, ledger, table)
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
    // An hour-long batch interval: nothing is sent before the shutdown, so the drain must do it.
    let (_data, _spool, ledger, table) = ledger_and_table("1h");
    let mut s = Sluice::start_with(|c| c.extra = table).await;
    let (input, output) = traffic(&mut s, 25).await;
    assert_eq!(ledger.totals("acme").await.requests, 0);

    s.proc.signal(Signal::SIGTERM);
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
    // Learn a free port, then take the ledger down: the proxy starts against a dead address.
    let (_data, _spool, mut ledger, table) = ledger_and_table("20ms");
    ledger.kill();
    let admin = ["--admin-listen", "127.0.0.2:0"];
    let mut s = Sluice::start_with_args(|c| c.extra = table, &admin).await;
    let (input, output) = traffic(&mut s, 12).await;
    wait_for("12 records spooled", WAIT, || async {
        (s.proc.metric("sluice_usage_records_spooled_total").await >= 12.0).then_some(())
    })
    .await;
    assert_eq!(s.proc.metric("sluice_ledger_up").await, 0.0);
    s.proc.signal(Signal::SIGKILL);
    s.proc.wait_exit().await;

    let ledger = Ledger::start(&ledger.data, &ledger.addr.clone());
    let _again = Proc::start(&s.config_path(), &["--listen", "127.0.0.1:0"]).await;
    let t = ledger.await_requests("acme", 12).await;
    assert_eq!(
        (t.requests, t.input_tokens, t.output_tokens),
        (12, input, output)
    );
}

/// Requests whose records carry a NUL (a model name answered 404, a body `user`) between good
/// ones: every record reaches the ledger, the bad text replaced by U+FFFD, and delivery keeps
/// flowing. Before, Postgres answered 500 for the whole batch forever (and SQLite stored NUL).
async fn poisoned_records_do_not_stop_billing(ledger: Ledger) {
    let spool = tempfile::tempdir().unwrap();
    let table = ledger_table(&ledger.addr, spool.path(), "20ms");
    let mut s = Sluice::start_with(|c| c.extra = table).await;
    let client = s.client();
    let (url, key) = (s.url("/v1/chat/completions"), s.cfg.keys.acme.clone());
    let send = |body: serde_json::Value| client.post(&url).bearer_auth(&key).json(&body).send();
    let mut bad_model = chat("mock-gpt", false);
    bad_model["model"] = "x\u{0}".into();
    let mut bad_user = chat("mock-gpt", false);
    bad_user["user"] = "u\u{0}".into();
    let plan = [
        (chat("mock-gpt", false), 200),
        (bad_model, 404),
        (chat("mock-gpt", true), 200),
        (bad_user, 200),
        (chat("mock-gpt", false), 200),
    ];
    for round in [1u64, 2] {
        let expected = round;
        for (body, status) in &plan {
            let resp = send(body.clone()).await.unwrap();
            assert_eq!(resp.status(), *status);
            resp.bytes().await.unwrap();
            s.next_record().await;
        }
        let t = ledger.await_requests("acme", expected * 5).await;
        assert_eq!(
            t.requests,
            expected * 5,
            "round {round}: every record is stored"
        );
    }
    let models = ledger.usage("org=acme&group_by=model").await;
    let names: Vec<_> = models.groups.iter().map(|g| g.model.clone()).collect();
    assert!(names.contains(&Some("x\u{FFFD}".into())), "{names:?}");
    let users = ledger.usage("org=acme&group_by=user").await;
    let users: Vec<_> = users.groups.iter().map(|g| g.user.clone()).collect();
    assert!(users.contains(&Some("u\u{FFFD}".into())), "{users:?}");
    assert!(!spool.path().join("dead-letter.jsonl").exists());
}

#[tokio::test]
async fn poisoned_records_do_not_stop_billing_on_sqlite() {
    let data = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", data.path().join("ledger.db").display());
    poisoned_records_do_not_stop_billing(Ledger::start_url(&url)).await;
}

#[tokio::test]
async fn poisoned_records_do_not_stop_billing_on_postgres() {
    let Some(url) = sluice_test_support::postgres::server_url() else {
        return;
    };
    poisoned_records_do_not_stop_billing(Ledger::start_url(url)).await;
}

/// A restart (a plain start, not `--upgrade`) while the old process still drains a stream on the
/// same spool directory: the new process takes another spool slot and serves at once, instead
/// of exiting because the directory is in use.
#[tokio::test]
async fn a_plain_start_runs_beside_a_process_that_still_drains() {
    use futures_util::StreamExt;
    let (_data, _spool, ledger, table) = ledger_and_table("20ms");
    let mut old = Sluice::start_with(|c| {
        c.extra = table;
        c.server = "grace_period = \"60s\"\nshutdown_timeout = \"1s\"\n".into();
    })
    .await;
    // A stream that stalls until the client leaves keeps the old process draining.
    let resp = old
        .post_chat(&[("x-mock-stall-after", "2")], &chat("mock-gpt", true))
        .await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    body.next().await.unwrap().unwrap();
    old.proc.signal(Signal::SIGTERM);
    old.proc
        .wait_stderr("the drain to begin", |e| e.contains("SIGTERM received"))
        .await;

    let mut new = Proc::start(&old.config_path(), &["--listen", "127.0.0.1:0"]).await;
    let resp = old
        .client()
        .post(format!("http://{}/v1/chat/completions", new.addr))
        .bearer_auth(&old.cfg.keys.acme)
        .json(&chat("mock-gpt", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    new.next_record().await;
    assert_eq!(ledger.await_requests("acme", 1).await.requests, 1);

    // The client leaves: the old process logs its stream and exits; both records are stored.
    drop(body);
    assert!(old.proc.wait_exit().await.success());
    assert_eq!(ledger.await_requests("acme", 2).await.requests, 2);
    new.signal(Signal::SIGTERM);
    assert!(new.wait_exit().await.success());
}

impl Ledger {
    /// An admin call: `PUT` (with a reason) or `DELETE` of a suspension, or a `GET`.
    async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> reqwest::Response {
        let mut req = reqwest::Client::new()
            .request(method, format!("http://{}{path}", self.addr))
            .bearer_auth(ADMIN)
            .timeout(WAIT);
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.unwrap()
    }
}

/// What the proxy answers `key`'s chat request with: status and body.
async fn chat_status(s: &Sluice) -> (u16, serde_json::Value) {
    let resp = s.post_chat(&[], &chat("mock-gpt", false)).await;
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

/// A key, then its org, suspended at the ledger is refused by the proxy within the feed's
/// period, in the caller's shape and without a provider call; lifting restores it; the audit log
/// holds each change with where it came from.
#[tokio::test]
async fn a_suspension_set_at_the_ledger_is_enforced_by_the_proxy_until_lifted() {
    let (_data, spool, ledger, _) = ledger_and_table("50ms");
    let table = ledger_table(&ledger.addr, spool.path(), "50ms")
        .replace("spend_poll = \"0s\"", "spend_poll = \"100ms\"");
    let mut s = Sluice::start_with(|c| c.extra = table).await;
    assert_eq!(chat_status(&s).await.0, 200);
    let key_id = s.next_record().await["key_id"]
        .as_str()
        .unwrap()
        .to_string();

    let reason = serde_json::json!({"reason": "3000 requests in an hour from 203.0.113.7"});
    let path = format!("/v1/suspensions/key/{key_id}");
    let put = ledger
        .admin(reqwest::Method::PUT, &path, Some(reason.clone()))
        .await;
    assert_eq!(put.status(), 200);
    let body = wait_for("the proxy to refuse the suspended key", WAIT, || async {
        let (status, body) = chat_status(&s).await;
        (status == 403).then_some(body)
    })
    .await;
    assert_eq!(body["error"]["code"], "api_key_suspended", "{body}");
    assert_eq!(body["error"]["type"], "permission_error", "{body}");
    // The Anthropic shape, and no provider call for either.
    let resp = s
        .anthropic_post("/v1/messages")
        .json(&chat("mock-claude", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "permission_error", "{body}");
    loop {
        let rec = s.next_record().await;
        if rec["status"] == 403 {
            // `attempts` is left out of a record when zero.
            let upstream =
                rec["attempts"].as_u64().unwrap_or(0) > 0 || !rec["upstream_ms"].is_null();
            assert!(!upstream, "a refused request reached the provider: {rec}");
        }
        if rec["api"] == "messages" {
            assert_eq!(rec["status"], 403, "{rec}");
            break;
        }
    }

    // The org instead of the key.
    let lift = ledger.admin(reqwest::Method::DELETE, &path, None).await;
    assert_eq!(lift.status(), 204);
    let org_path = "/v1/suspensions/org/acme";
    let put = ledger
        .admin(reqwest::Method::PUT, org_path, Some(reason))
        .await;
    assert_eq!(put.status(), 200);
    wait_for("the proxy to refuse the suspended org", WAIT, || async {
        let (status, body) = chat_status(&s).await;
        (status == 403 && body["error"]["code"] == "organization_suspended").then_some(())
    })
    .await;
    assert_eq!(
        ledger
            .admin(reqwest::Method::DELETE, org_path, None)
            .await
            .status(),
        204
    );
    assert_eq!(
        ledger
            .admin(reqwest::Method::DELETE, org_path, None)
            .await
            .status(),
        404
    );
    wait_for("the proxy to serve the key again", WAIT, || async {
        (chat_status(&s).await.0 == 200).then_some(())
    })
    .await;

    let audit: sluice_wire::AuditAnswer = ledger
        .admin(reqwest::Method::GET, "/v1/audit", None)
        .await
        .json()
        .await
        .unwrap();
    let seen: Vec<(String, Option<String>)> = audit
        .entries
        .iter()
        .map(|e| (e.action.clone(), e.subject.clone()))
        .collect();
    assert_eq!(
        seen,
        [
            ("suspension.set".into(), Some(format!("key {key_id}"))),
            ("suspension.lifted".into(), Some(format!("key {key_id}"))),
            ("suspension.set".into(), Some("org acme".into())),
            ("suspension.lifted".into(), Some("org acme".into())),
        ]
    );
    assert!(audit
        .entries
        .iter()
        .all(|e| e.actor == "operator" && e.source_ip.as_deref() == Some("127.0.0.1")));
    assert_eq!(
        audit.entries[0].detail.as_deref(),
        Some("3000 requests in an hour from 203.0.113.7")
    );
}

/// The whole abuse loop with real processes: a burst through the proxy from one client address
/// (forwarded by a trusted proxy) raises a flag at the ledger; the operator reviews it and
/// suspends the key; the proxy refuses that key within its poll period.
#[tokio::test]
async fn a_burst_from_one_ip_is_flagged_and_its_key_suspended_through_review() {
    let data = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let ledger = Ledger::start_args(
        data.path(),
        "127.0.0.1:0",
        &[
            "--abuse-threshold",
            "ip:requests=20",
            "--abuse-interval-secs",
            "1",
        ],
    );
    let table = ledger_table(&ledger.addr, spool.path(), "50ms")
        .replace("spend_poll = \"0s\"", "spend_poll = \"100ms\"");
    let mut s = Sluice::start_with(|c| {
        c.extra = format!("{table}\n[client_ip]\ntrusted_proxies = [\"127.0.0.1\"]\n");
    })
    .await;
    for _ in 0..25 {
        let resp = s
            .post_chat(
                &[("x-forwarded-for", "203.0.113.9")],
                &chat("mock-gpt", false),
            )
            .await;
        assert_eq!(resp.status(), 200);
    }
    let key_id = s.next_record().await["key_id"]
        .as_str()
        .unwrap()
        .to_string();
    let flag = wait_for("the ledger to flag the bursting address", WAIT, || async {
        let answer: sluice_wire::FlagsAnswer = ledger
            .admin(reqwest::Method::GET, "/v1/flags", None)
            .await
            .json()
            .await
            .unwrap();
        answer
            .flags
            .into_iter()
            .find(|f| f.subject == "203.0.113.9" && f.value >= 25)
    })
    .await;
    let review = serde_json::json!({
        "action": "suspend",
        "suspend": {"kind": "key", "subject": key_id},
    });
    let path = format!("/v1/flags/{}/review", flag.id);
    let resp = ledger
        .admin(reqwest::Method::POST, &path, Some(review))
        .await;
    assert_eq!(resp.status(), 200);
    let body = wait_for("the proxy to refuse the suspended key", WAIT, || async {
        let (status, body) = chat_status(&s).await;
        (status == 403).then_some(body)
    })
    .await;
    assert_eq!(body["error"]["code"], "api_key_suspended", "{body}");
}
