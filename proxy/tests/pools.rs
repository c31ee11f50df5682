//! Upstream pools against a real sluice and several real mock providers, each on its own port:
//! weights, least-tokens balancing, failover past a dead endpoint and a 429 storm, passive
//! ejection and the half-open probe, the retry budget, and data regions. Every test checks that
//! failover never bills twice: the records' tokens equal what the mocks really served.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(clippy::panic, reason = "test code: a panic fails the test")]

mod common;
use common::*;
use sluice_bench::mock::{MockProvider, Outcome as MockOutcome};
use std::net::SocketAddr;

async fn mock() -> MockProvider {
    MockProvider::start("127.0.0.1:0")
        .await
        .expect("mock starts")
}

/// An address nothing listens on: a port bound, then released.
fn dead_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}/v1")
}

/// A `[[providers]]` entry speaking OpenAI's API without a credential, at `endpoints`, with
/// `extra` TOML lines (region, health).
fn provider(name: &str, endpoints: &[SocketAddr], extra: &[&str]) -> String {
    let list: Vec<String> = endpoints
        .iter()
        .map(|a| format!("\"{}\"", url(*a)))
        .collect();
    format!(
        "\n[[providers]]\nname = \"{name}\"\nkind = \"openai\"\nendpoints = [{}]\nauth = \"none\"\n{}\n",
        list.join(", "),
        extra.join("\n")
    )
}

/// A `[[models]]` entry named `name` with the rest of its TOML lines.
fn model(name: &str, rest: &[&str]) -> String {
    format!("\n[[models]]\nname = \"{name}\"\n{}\n", rest.join("\n"))
}

/// Sends one non-streamed chat request for `model` with org acme's key; returns the status.
async fn send(s: &Sluice, model: &str) -> u16 {
    s.post_chat(&[], &chat(model, false))
        .await
        .status()
        .as_u16()
}

/// [`send`] within a session (`x-sluice-session`).
async fn send_in(s: &Sluice, session: &str) -> u16 {
    s.post_chat(&[("x-sluice-session", session)], &chat("pooled", false))
        .await
        .status()
        .as_u16()
}

/// The next `n` usage records.
async fn records(s: &mut Sluice, n: usize) -> Vec<serde_json::Value> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(s.next_record().await);
    }
    out
}

/// Input + output tokens the mocks served with a success (their ground truth).
fn served_tokens(mocks: &[&MockProvider]) -> u64 {
    mocks
        .iter()
        .flat_map(|m| m.requests())
        .filter(|r| r.outcome == MockOutcome::Completed)
        .filter_map(|r| r.usage)
        .map(|u| u.input_tokens + u.output_tokens)
        .sum()
}

fn billed_tokens(records: &[serde_json::Value]) -> u64 {
    records
        .iter()
        .map(|r| r["input_tokens"].as_u64().unwrap() + r["output_tokens"].as_u64().unwrap())
        .sum()
}

fn served_by(records: &[serde_json::Value], endpoint: &str) -> usize {
    records.iter().filter(|r| r["endpoint"] == endpoint).count()
}

#[tokio::test]
async fn weights_are_honoured() {
    let (a, b) = (mock().await, mock().await);
    let extra = [
        provider("a", &[a.addr()], &[]),
        provider("b", &[b.addr()], &[]),
        model(
            "pooled",
            &[
                r#"balance = "weighted""#,
                r#"targets = [{ provider = "a", weight = 3 }, { provider = "b", weight = 1 }]"#,
            ],
        ),
    ]
    .concat();
    let mut s = Sluice::start_with(|c| c.extra = extra).await;
    const N: usize = 400;
    for _ in 0..N {
        assert_eq!(send(&s, "pooled").await, 200);
    }
    let recs = records(&mut s, N).await;
    let on_a = served_by(&recs, &url(a.addr()));
    assert_eq!(on_a + served_by(&recs, &url(b.addr())), N);
    assert_eq!(on_a, a.requests().len());
    // 3:1 expects 300 on a; the binomial's standard deviation is about 9, so ±60 is ~7σ.
    assert!((240..=360).contains(&on_a), "a served {on_a} of {N}");
    assert!(recs
        .iter()
        .all(|r| r["attempts"] == 1 && r["provider"] != "none"));
    assert_eq!(billed_tokens(&recs), served_tokens(&[&a, &b]));
}

#[tokio::test]
async fn least_outstanding_prefers_the_endpoint_that_answers_sooner() {
    let (slow, fast) = (mock().await, mock().await);
    slow.set_default_headers(&[("x-mock-header-delay-ms", "200")]);
    let extra = [
        provider("gpu", &[slow.addr(), fast.addr()], &[]),
        model("pooled", &[r#"provider = "gpu""#]),
    ]
    .concat();
    let mut s = Sluice::start_with(|c| c.extra = extra).await;
    for _ in 0..20 {
        assert_eq!(send(&s, "pooled").await, 200);
    }
    // Peak EWMA: once the slow endpoint has answered one request (or before it, against the
    // fast one's measured latency), the power of two choices sends the rest to the fast one.
    assert!(
        slow.requests().len() <= 1,
        "slow served {}",
        slow.requests().len()
    );
    assert_eq!(fast.requests().len() + slow.requests().len(), 20);
    records(&mut s, 20).await;
}

#[tokio::test]
async fn least_tokens_sends_work_away_from_the_endpoint_holding_a_long_stream() {
    let (a, b) = (mock().await, mock().await);
    let extra = [
        provider("gpu", &[a.addr(), b.addr()], &[]),
        model(
            "pooled",
            &[r#"provider = "gpu""#, r#"balance = "least_tokens""#],
        ),
    ]
    .concat();
    let mut s = Sluice::start_with(|c| c.extra = extra).await;
    // A stream that reserved many tokens stays open (the mock stalls after a few events).
    let mut big = chat("pooled", true);
    big["max_tokens"] = 50_000.into();
    let held = s.post_chat(&[("x-mock-stall-after", "2")], &big).await;
    assert_eq!(held.status(), 200);
    let busy = if a.requests().len() == 1 { &a } else { &b };
    let idle = if a.requests().len() == 1 { &b } else { &a };
    assert_eq!(busy.requests().len(), 1);
    for _ in 0..20 {
        assert_eq!(send(&s, "pooled").await, 200);
    }
    assert_eq!(
        busy.requests().len(),
        1,
        "every small request went to the idle endpoint"
    );
    assert_eq!(idle.requests().len(), 20);
    drop(held);
    let recs = records(&mut s, 21).await;
    assert_eq!(served_by(&recs, &url(idle.addr())), 20);
}

#[tokio::test]
async fn a_dead_endpoint_costs_one_failover_then_is_ejected() {
    let (a, b) = (mock().await, mock().await);
    let dead = dead_addr();
    let extra = [
        provider(
            "fleet",
            &[a.addr(), b.addr(), dead],
            &[r#"health = { eject_after = 1, backoff = "1h" }"#],
        ),
        model(
            "pooled",
            &[r#"provider = "fleet""#, r#"balance = "weighted""#],
        ),
    ]
    .concat();
    let mut s =
        Sluice::start_with_args(|c| c.extra = extra, &["--admin-listen", "127.0.0.2:0"]).await;
    const N: usize = 60;
    for _ in 0..N {
        assert_eq!(
            send(&s, "pooled").await,
            200,
            "no client sees the dead endpoint"
        );
    }
    let recs = records(&mut s, N).await;
    let failovers = recs.iter().filter(|r| r["attempts"] == 2).count();
    // Weighted picks reach the dead endpoint within 60 requests (odds of missing: (2/3)^60);
    // its one failure ejects it for an hour, so no request pays for it again.
    assert_eq!(failovers, 1, "{recs:?}");
    assert_eq!(served_by(&recs, &url(dead)), 0);
    assert_eq!(a.requests().len() + b.requests().len(), N);
    assert_eq!(billed_tokens(&recs), served_tokens(&[&a, &b]));
    let labels = format!("{{provider=\"fleet\",endpoint=\"{}\"", url(dead));
    let ejections = s
        .proc
        .metric(&format!("sluice_upstream_ejections_total{labels}}}"))
        .await;
    assert_eq!(ejections, 1.0);
    let up = s
        .proc
        .metric(&format!("sluice_upstream_endpoint_up{labels}}}"))
        .await;
    assert_eq!(up, 0.0);
}

#[tokio::test]
async fn an_ejected_endpoint_gets_its_probe_and_recovers() {
    let a = mock().await;
    let dead = dead_addr();
    let extra = [
        provider(
            "fleet",
            &[a.addr(), dead],
            &[r#"health = { eject_after = 1, backoff = "50ms", max_backoff = "200ms" }"#],
        ),
        model(
            "pooled",
            &[r#"provider = "fleet""#, r#"balance = "weighted""#],
        ),
    ]
    .concat();
    let mut s = Sluice::start_with(|c| c.extra = extra).await;
    // Until the dead endpoint has failed once (and been ejected), traffic goes on regardless.
    let mut sent = 0;
    loop {
        assert_eq!(send(&s, "pooled").await, 200);
        sent += 1;
        if s.next_record().await["attempts"] == 2 {
            break;
        }
        assert!(sent < 1000, "the dead endpoint was never tried");
    }
    // It comes back on the same address; its probe, once the backoff is over, finds it.
    let back =
        MockProvider::from_listener(tokio::net::TcpListener::bind(dead).await.unwrap()).unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        assert_eq!(
            send(&s, "pooled").await,
            200,
            "no client sees a failed probe"
        );
        let rec = s.next_record().await;
        if rec["endpoint"] == url(dead) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never probed again");
    }
    // Recovered: it takes its share again.
    let before = back.requests().len();
    for _ in 0..60 {
        assert_eq!(send(&s, "pooled").await, 200);
    }
    assert!(
        back.requests().len() > before,
        "the recovered endpoint serves again"
    );
}

#[tokio::test]
async fn a_429_storm_shifts_traffic_for_the_time_the_provider_asked() {
    let (stormy, fallback) = (mock().await, mock().await);
    stormy.set_default_headers(&[("x-mock-status", "429"), ("x-mock-retry-after", "3600")]);
    let extra = [
        provider("primary", &[stormy.addr()], &[]),
        provider("backup", &[fallback.addr()], &[]),
        model(
            "pooled",
            &[
                r#"targets = [{ provider = "primary", model = "gpt-a" },"#,
                r#"  { provider = "backup", model = "gpt-b", priority = 1 }]"#,
            ],
        ),
    ]
    .concat();
    let mut s = Sluice::start_with(|c| c.extra = extra).await;
    for _ in 0..20 {
        assert_eq!(send(&s, "pooled").await, 200);
    }
    // Each target got the model under its own name: the failover rewrote the body.
    assert!(stormy
        .requests()
        .iter()
        .all(|r| r.model.as_deref() == Some("gpt-a")));
    assert!(fallback
        .requests()
        .iter()
        .all(|r| r.model.as_deref() == Some("gpt-b")));
    // The first request met the 429 and moved on; the cool-down kept the rest off it.
    assert_eq!(stormy.requests().len(), 1);
    assert_eq!(fallback.requests().len(), 20);
    let recs = records(&mut s, 20).await;
    // (Records of back-to-back requests may be written in either order.)
    assert_eq!(recs.iter().filter(|r| r["attempts"] == 2).count(), 1);
    assert_eq!(recs.iter().filter(|r| r["attempts"] == 1).count(), 19);
    assert!(recs.iter().all(|r| r["provider"] == "backup"));
    assert!(recs.iter().all(|r| r["upstream_model"] == "gpt-b"));
    assert_eq!(billed_tokens(&recs), served_tokens(&[&stormy, &fallback]));
}

#[tokio::test]
async fn the_retry_budget_caps_the_attempts_the_providers_see() {
    let (failing, fallback) = (mock().await, mock().await);
    failing.set_default_headers(&[("x-mock-status", "500")]);
    let extra = [
        provider(
            "primary",
            &[failing.addr()],
            &[r#"health = { eject_after = 100000 }"#],
        ),
        provider("backup", &[fallback.addr()], &[]),
        model(
            "pooled",
            &[
                r#"retry_budget = 0.0"#,
                r#"targets = [{ provider = "primary" }, { provider = "backup", priority = 1 }]"#,
            ],
        ),
    ]
    .concat();
    let mut s = Sluice::start_with(|c| c.extra = extra).await;
    const N: usize = 130;
    let mut ok = 0;
    for _ in 0..N {
        match send(&s, "pooled").await {
            200 => ok += 1,
            500 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    // With no ratio, only the floor is left: 10 retries a second over the 10-second window.
    assert_eq!(failing.requests().len(), N);
    assert_eq!(fallback.requests().len(), 100);
    assert_eq!(ok, 100);
    let recs = records(&mut s, N).await;
    assert_eq!(billed_tokens(&recs), served_tokens(&[&failing, &fallback]));
}

#[tokio::test]
async fn an_org_stays_in_its_region() {
    let (us, eu) = (mock().await, mock().await);
    let dead = dead_addr();
    let extra = [
        provider("us", &[us.addr()], &[r#"region = "us""#]),
        provider("eu", &[eu.addr()], &[r#"region = "eu""#]),
        provider(
            "eu-down",
            &[dead],
            &[
                r#"region = "eu""#,
                r#"health = { eject_after = 1, backoff = "1h" }"#,
            ],
        ),
        model(
            "geo",
            &[r#"targets = [{ provider = "us" }, { provider = "eu" }]"#],
        ),
        model("us-only", &[r#"provider = "us""#]),
        model(
            "geo-down",
            &[r#"targets = [{ provider = "us" }, { provider = "eu-down" }]"#],
        ),
    ]
    .concat();
    // Org acme is pinned to the EU; org beta may go anywhere.
    let mut s = Sluice::start_with(|c| {
        c.extra = extra;
        c.acme_org = "region = \"eu\"".into();
    })
    .await;
    for _ in 0..20 {
        assert_eq!(send(&s, "geo").await, 200);
    }
    assert_eq!(
        us.requests().len(),
        0,
        "an EU org never reaches a US endpoint"
    );
    let recs = records(&mut s, 20).await;
    assert!(recs
        .iter()
        .all(|r| r["region"] == "eu" && r["provider"] == "eu"));

    // A model with no EU target is refused, in the caller's shape, not served elsewhere.
    let refused = s.post_chat(&[], &chat("us-only", false)).await;
    assert_eq!(refused.status(), 403);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "model_not_in_region", "{body}");
    assert_eq!(s.next_record().await["outcome"], "rejected");

    // Every EU endpoint down: the first request finds out (502), the next are refused (503)
    // with retry-after, and the US endpoint never sees any of them.
    assert_eq!(send(&s, "geo-down").await, 502);
    let down = s.post_chat(&[], &chat("geo-down", false)).await;
    assert_eq!(down.status(), 503);
    assert!(down.headers().contains_key("retry-after"));
    assert_eq!(us.requests().len(), 0);

    // A US-unpinned org uses the US-only model.
    let beta = s
        .post_chat_as(&s.cfg.keys.beta, &[], &chat("us-only", false))
        .await;
    assert_eq!(beta.status(), 200);
    assert_eq!(us.requests().len(), 1);
}

#[tokio::test]
async fn session_affinity_keeps_a_session_on_its_endpoint_until_it_fails() {
    let (a, b) = (mock().await, mock().await);
    a.set_killable();
    let extra = [
        provider(
            "gpu",
            &[a.addr(), b.addr()],
            &[r#"health = { eject_after = 1, backoff = "1h" }"#],
        ),
        model("pooled", &[r#"provider = "gpu""#, r#"affinity = true"#]),
    ]
    .concat();
    let mut s = Sluice::start_with(|c| c.extra = extra).await;
    // Many sessions spread over both endpoints; each stays where it started.
    let mut home = std::collections::HashMap::new();
    for round in 0..3 {
        for session in 0..30 {
            assert_eq!(send_in(&s, &format!("s{session}")).await, 200);
            let endpoint = s.next_record().await["endpoint"].clone();
            let first = home.entry(session).or_insert_with(|| endpoint.clone());
            assert_eq!(*first, endpoint, "session {session} moved in round {round}");
        }
    }
    let on_a = home.values().filter(|e| **e == url(a.addr())).count();
    assert!(on_a > 0 && on_a < 30, "30 sessions all on one endpoint");
    // Endpoint a goes away: its sessions move to b (the first after one failover), b's stay.
    let a_addr = url(a.addr());
    a.kill();
    for session in 0..30 {
        assert_eq!(send_in(&s, &format!("s{session}")).await, 200);
        assert_eq!(s.next_record().await["endpoint"], url(b.addr()));
    }
    assert!(home.values().any(|e| *e == a_addr));
}

#[tokio::test]
async fn an_endpoint_killed_mid_load_fails_no_request_that_had_not_started() {
    let (a, b, c) = (mock().await, mock().await, mock().await);
    let extra = [
        provider(
            "fleet",
            &[a.addr(), b.addr(), c.addr()],
            &[r#"health = { eject_after = 1, backoff = "1h" }"#],
        ),
        model(
            "pooled",
            &[r#"provider = "fleet""#, r#"balance = "weighted""#],
        ),
    ]
    .concat();
    c.set_killable();
    let mut s = Sluice::start_with(|cfg| cfg.extra = extra).await;
    // A stream flowing on c when c dies: it was started, so it is cut, not retried.
    let mut flowing = None;
    while flowing.is_none() {
        let resp = s
            .post_chat(
                &[("x-mock-chunks", "50"), ("x-mock-gap-ms", "100")],
                &chat("pooled", true),
            )
            .await;
        assert_eq!(resp.status(), 200);
        if c.requests()
            .iter()
            .any(|r| r.outcome == MockOutcome::InProgress)
        {
            flowing = Some(resp);
        } else {
            drop(resp);
            s.next_record().await;
        }
    }
    // Load from several clients at once; c is killed while it runs.
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let req = s
                .openai_post("/v1/chat/completions")
                .json(&chat("pooled", false));
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..50 {
                    let r = req.try_clone().unwrap().send().await.unwrap();
                    statuses.push(r.status().as_u16());
                }
                statuses
            })
        })
        .collect();
    c.wait_for_requests(c.requests().len() + 5).await;
    let c_addr = url(c.addr());
    c.kill();
    let body = flowing.unwrap().text().await;
    assert!(
        body.map_or(true, |b| !b.contains("[DONE]")),
        "the stream on the killed endpoint was cut"
    );
    for client in clients {
        let statuses = client.await.unwrap();
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    }
    let recs = records(&mut s, 201).await;
    let dropped: Vec<_> = recs
        .iter()
        .filter(|r| r["outcome"] == "upstream_dropped")
        .collect();
    assert_eq!(dropped.len(), 1, "the flowing stream, and only it");
    assert_eq!(dropped[0]["endpoint"], c_addr);
    assert_eq!(dropped[0]["attempts"], 1);
    let after: Vec<_> = recs
        .iter()
        .filter(|r| r["stream"] == false && r["attempts"] == 2)
        .collect();
    // Each client can have had one request cut on c and one refused by it before the first
    // failure ejected c; after that, nothing tries c again.
    assert!(after.len() <= 8, "failovers after the ejection: {after:?}");
}

#[tokio::test]
async fn active_checks_eject_a_dead_endpoint_before_traffic_finds_it_and_bring_it_back() {
    let a = mock().await;
    let dead = dead_addr();
    let extra = [
        provider("fleet", &[a.addr(), dead], &[r#"health = { eject_after = 1, backoff = "1h", check_path = "/models", check_interval = "100ms" }"#]),
        model("pooled", &[r#"provider = "fleet""#, r#"balance = "weighted""#]),
    ]
    .concat();
    let mut s =
        Sluice::start_with_args(|c| c.extra = extra, &["--admin-listen", "127.0.0.2:0"]).await;
    let up = format!(
        "sluice_upstream_endpoint_up{{provider=\"fleet\",endpoint=\"{}\"}}",
        url(dead)
    );
    // The checker finds the dead endpoint on its own; no request has been sent yet.
    let deadline = tokio::time::Instant::now() + WAIT;
    while s
        .proc
        .admin_get("/metrics")
        .await
        .1
        .lines()
        .all(|l| l != format!("{up} 0"))
    {
        assert!(tokio::time::Instant::now() < deadline, "never ejected");
    }
    for _ in 0..30 {
        assert_eq!(send(&s, "pooled").await, 200);
    }
    let recs = records(&mut s, 30).await;
    assert!(recs.iter().all(|r| r["attempts"] == 1), "no request met it");
    // It comes back: a passing check ends the ejection long before its hour is over.
    let back =
        MockProvider::from_listener(tokio::net::TcpListener::bind(dead).await.unwrap()).unwrap();
    while s.proc.metric(&up).await != 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline + WAIT,
            "never readmitted"
        );
    }
    let checks = back.requests().len();
    for _ in 0..60 {
        assert_eq!(send(&s, "pooled").await, 200);
    }
    assert!(back.requests().len() > checks, "traffic returned");
    assert!(
        back.requests().iter().any(|r| r.path == "/v1/models"),
        "the checks' path"
    );
}
