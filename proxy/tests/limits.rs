//! Limits and budgets against a real sluice and the mock provider: request bursts, token
//! reservations settled to real usage, concurrency caps, and spend caps — with the exact 429
//! answers and rate-limit headers the providers' SDKs expect.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(clippy::panic, reason = "test code: a panic fails the test")]

mod common;
use common::*;
use futures_util::future::join_all;
use futures_util::{stream, StreamExt};
use serde_json::Value;
use sluice_bench::mock::Outcome;

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

fn header_num(r: &reqwest::Response, name: &str) -> u64 {
    header(r, name)
        .unwrap_or_else(|| panic!("missing {name}: {:?}", r.headers()))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number: {:?}", r.headers()))
}

/// A 429 in OpenAI's shape with retry headers; returns the body.
async fn assert_openai_429(r: reqwest::Response, error_type: &str, code: &str) -> Value {
    assert_eq!(r.status(), 429);
    let retry = header_num(&r, "retry-after");
    let retry_ms = header_num(&r, "retry-after-ms");
    assert!(retry >= 1, "retry-after rounds up to whole seconds");
    assert!(
        retry_ms <= retry * 1000 && retry_ms > (retry - 1) * 1000,
        "retry-after {retry} s and retry-after-ms {retry_ms} agree"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], error_type, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    body
}

#[tokio::test]
async fn a_burst_over_the_request_quota_admits_exactly_the_quota() {
    let mut s =
        Sluice::start_with(|c| c.acme_org = r#"limits = { requests = "10/hour" }"#.into()).await;
    let body = chat("mock-gpt", false);
    let answers = join_all((0..30).map(|_| s.post_chat(&[], &body))).await;
    let mut remaining_seen = Vec::new();
    let mut refused = Vec::new();
    for r in answers {
        assert_eq!(header(&r, "x-ratelimit-limit-requests"), Some("10"));
        assert!(header(&r, "x-ratelimit-reset-requests").is_some());
        match r.status().as_u16() {
            200 => {
                remaining_seen.push(header_num(&r, "x-ratelimit-remaining-requests"));
                let _ = r.bytes().await.unwrap();
            }
            429 => refused.push(r),
            other => panic!("unexpected status {other}"),
        }
    }
    // Each admission reports what is left after it; concurrent ones may read the same moment.
    assert_eq!(remaining_seen.len(), 10);
    assert!(remaining_seen.iter().all(|r| *r < 10), "{remaining_seen:?}");
    assert!(remaining_seen.contains(&0), "{remaining_seen:?}");
    assert_eq!(refused.len(), 20);
    for r in refused {
        assert_eq!(header(&r, "x-ratelimit-remaining-requests"), Some("0"));
        let body = assert_openai_429(r, "requests", "rate_limit_exceeded").await;
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains("org acme") && msg.contains("10/h"), "{msg}");
        assert!(!msg.contains(&s.cfg.keys.acme), "never the key");
    }
    assert_eq!(
        s.mock.requests().len(),
        10,
        "only admitted requests reach the provider"
    );
    let mut outcomes = Vec::new();
    for _ in 0..30 {
        let rec = s.next_record().await;
        outcomes.push((rec["status"].as_u64().unwrap(), rec["outcome"].clone()));
    }
    assert_eq!(
        outcomes
            .iter()
            .filter(|(st, o)| *st == 429 && o == "rejected")
            .count(),
        20
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|(st, o)| *st == 200 && o == "ok")
            .count(),
        10
    );
}

#[tokio::test]
async fn anthropic_paths_get_anthropic_errors_and_headers() {
    let s = Sluice::start_with(|c| c.acme_org = r#"limits = { requests = "1/hour" }"#.into()).await;
    let send = || {
        s.client()
            .post(s.url("/v1/messages"))
            .header("x-api-key", &s.cfg.keys.acme)
            .header("anthropic-version", "2023-06-01")
            .json(&serde_json::json!({
                "model": "mock-claude", "max_tokens": 50,
                "messages": [{"role": "user", "content": "hi"}]
            }))
            .send()
    };
    let ok = send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(header(&ok, "anthropic-ratelimit-requests-limit"), Some("1"));
    assert_eq!(
        header(&ok, "anthropic-ratelimit-requests-remaining"),
        Some("0")
    );
    let reset = header(&ok, "anthropic-ratelimit-requests-reset").unwrap();
    humantime::parse_rfc3339(reset).unwrap_or_else(|e| panic!("{reset}: {e}"));
    assert!(header(&ok, "x-ratelimit-limit-requests").is_none());

    let refused = send().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(header_num(&refused, "retry-after") >= 1);
    assert!(header(&refused, "retry-after-ms").is_some());
    assert_eq!(
        header(&refused, "anthropic-ratelimit-requests-remaining"),
        Some("0")
    );
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
}

/// The reservation is the input estimate plus the output cap; it is settled to the real usage
/// when the request ends, so the next request sees exactly the tokens really used.
#[tokio::test]
async fn token_reservations_settle_to_real_usage() {
    let mut s =
        Sluice::start_with(|c| c.acme_org = r#"limits = { tokens = "10_000/day" }"#.into()).await;
    let mut body = chat("mock-gpt", false);
    body["max_tokens"] = 1000.into();
    let estimate = (serde_json::to_vec(&body).unwrap().len() as u64).div_ceil(4);
    let reserve = estimate + 1000;

    let first = s.post_chat(&[], &body).await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-ratelimit-limit-tokens"), Some("10000"));
    assert_eq!(
        header_num(&first, "x-ratelimit-remaining-tokens"),
        10_000 - reserve
    );
    let _ = first.bytes().await.unwrap();
    let rec = s.next_record().await;
    let used = rec["input_tokens"].as_u64().unwrap() + rec["output_tokens"].as_u64().unwrap();
    assert!(used > 0 && used < reserve, "{rec}");

    let second = s.post_chat(&[], &body).await;
    assert_eq!(
        header_num(&second, "x-ratelimit-remaining-tokens"),
        10_000 - used - reserve,
        "the first reservation was settled to its real usage"
    );
    let _ = second.bytes().await.unwrap();
    let _ = s.next_record().await;

    // A request reserving more than the whole quota is admitted only from a full bucket.
    body["max_tokens"] = 50_000.into();
    let big = s.post_chat(&[], &body).await;
    let refusal = assert_openai_429(big, "tokens", "rate_limit_exceeded").await;
    assert!(refusal["error"]["message"]
        .as_str()
        .unwrap()
        .contains("10000/day"));
}

/// An admitted request that asks for more than the quota holds is let in from a full bucket,
/// reserving at most the whole bucket, until settlement refunds what was not used.
#[tokio::test]
async fn a_reservation_beyond_the_quota_goes_into_debt_then_refunds() {
    let mut s =
        Sluice::start_with(|c| c.acme_org = r#"limits = { tokens = "1000/day" }"#.into()).await;
    let mut body = chat("mock-gpt", false);
    body["max_tokens"] = 5000.into();
    let r = s.post_chat(&[], &body).await;
    assert_eq!(r.status(), 200, "a full bucket admits any single request");
    assert_eq!(
        header_num(&r, "x-ratelimit-remaining-tokens"),
        0,
        "all reserved"
    );
    let _ = r.bytes().await.unwrap();
    let rec = s.next_record().await;
    let used = rec["input_tokens"].as_u64().unwrap() + rec["output_tokens"].as_u64().unwrap();

    body["max_tokens"] = 10.into();
    let r = s.post_chat(&[], &body).await;
    assert_eq!(r.status(), 200, "the unused reservation came back");
    let estimate = (serde_json::to_vec(&body).unwrap().len() as u64).div_ceil(4);
    assert_eq!(
        header_num(&r, "x-ratelimit-remaining-tokens"),
        1000 - used - (estimate + 10)
    );
}

/// Starts a stream that plays `chunks` chunks `gap_ms` apart, and reads it to the end.
async fn slow_stream(s: &Sluice, key: &str, chunks: u32, gap_ms: u32) -> (u16, usize) {
    let r = s
        .post_chat_as(
            key,
            &[
                ("x-mock-chunks", &chunks.to_string()),
                ("x-mock-gap-ms", &gap_ms.to_string()),
            ],
            &chat("mock-gpt", true),
        )
        .await;
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (status, text.matches("data: ").count())
}

#[tokio::test]
async fn a_concurrency_cap_holds_under_a_burst_of_streams() {
    let mut s = Sluice::start_with(|c| c.acme_org = "limits = { concurrent = 3 }".into()).await;
    let key = s.cfg.keys.acme.clone();
    let running = join_all((0..3).map(|_| slow_stream(&s, &key, 4, 700)));
    let burst = async {
        // Once the three streams are in progress at the provider, every further one is refused.
        s.mock.wait_for_requests(3).await;
        let body = chat("mock-gpt", true);
        join_all((0..10).map(|_| s.post_chat_as(&key, &[], &body))).await
    };
    let (streams, refused) = tokio::time::timeout(WAIT, futures_util::future::join(running, burst))
        .await
        .expect("streams finish");
    for (status, events) in streams {
        assert_eq!(status, 200);
        assert!(events >= 4, "every chunk arrived ({events} events)");
    }
    for r in refused {
        let body = assert_openai_429(r, "requests", "rate_limit_exceeded").await;
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("concurrent"));
    }
    for _ in 0..13 {
        let _ = s.next_record().await;
    }
    // The slots came back: three at once are admitted again.
    let again = join_all((0..3).map(|_| slow_stream(&s, &key, 2, 10))).await;
    assert!(again.iter().all(|(st, _)| *st == 200), "{again:?}");
}

/// Every way a request can end releases its concurrency slot: after a thousand mixed outcomes
/// the org can still run exactly its cap in parallel.
#[tokio::test]
async fn concurrency_slots_never_leak_across_mixed_failures() {
    let mut s = Sluice::start_with(|c| c.acme_org = "limits = { concurrent = 4 }".into()).await;
    let key = s.cfg.keys.acme.clone();
    // One connection per request: a pooled connection that sluice closed after a refusal could
    // fail a later request before it reaches sluice, which would leave it without a record.
    let client = reqwest::Client::builder()
        .timeout(WAIT)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let url = s.url("/v1/chat/completions");
    let total = 1000usize;
    let statuses: Vec<u16> = stream::iter(0..total)
        .map(|i| {
            let req = client.post(&url).bearer_auth(&key);
            let (req, model, stream) = match i % 6 {
                0 => (req, "mock-gpt", false),
                1 => (req.header("x-mock-status", "500"), "mock-gpt", false),
                2 => (req.header("x-mock-drop-after", "2"), "mock-gpt", true),
                3 => (req, "dead-gpt", false),
                // The client leaves after the headers.
                4 => (
                    req.header("x-mock-chunks", "50")
                        .header("x-mock-gap-ms", "2"),
                    "mock-gpt",
                    true,
                ),
                _ => (req, "mock-gpt", true),
            };
            async move {
                let r = req.json(&chat(model, stream)).send().await;
                match r {
                    Ok(r) if i % 6 == 4 => r.status().as_u16(),
                    Ok(r) => {
                        let st = r.status().as_u16();
                        let _ = r.bytes().await;
                        st
                    }
                    Err(_) => 0,
                }
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert_eq!(statuses.len(), total);
    assert!(!statuses.contains(&0), "every request got an answer");
    assert!(
        statuses.contains(&429),
        "the cap was reached during the mix"
    );
    for _ in 0..total {
        let _ = s.next_record().await;
    }
    s.mock.reset();
    let held = join_all((0..4).map(|_| slow_stream(&s, &key, 3, 300)));
    let extra = async {
        s.mock.wait_for_requests(4).await;
        s.post_chat_as(&key, &[], &chat("mock-gpt", false))
            .await
            .status()
    };
    let (held, extra) = futures_util::future::join(held, extra).await;
    assert!(
        held.iter().all(|(st, _)| *st == 200),
        "all four slots are free: {held:?}"
    );
    assert_eq!(extra, 429, "and the cap still holds");
    assert!(s
        .mock
        .requests()
        .iter()
        .all(|r| r.outcome == Outcome::Completed));
}

#[tokio::test]
async fn a_budget_stops_an_org_at_its_cap_and_not_before() {
    let mut s = Sluice::start_with(|c| {
        c.acme_org = "budget = { daily_usd = 0.1 }".into();
        c.extra = r#"
[[models]]
name = "priced-gpt"
provider = "mock-openai"
upstream_model = "mock-gpt"
price = { input = 1000, output = 2000 }
"#
        .into();
    })
    .await;
    let body = chat("priced-gpt", false);
    let mut spent = 0u64;
    let mut admitted = 0u64;
    let refusal = loop {
        let r = s.post_chat(&[], &body).await;
        if r.status() == 429 {
            break r;
        }
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await.unwrap();
        admitted += 1;
        // Spend is charged when a request ends; its record is written right after.
        let rec = s.next_record().await;
        let cost = rec["cost_micro_usd"].as_u64().unwrap();
        let (i, o) = (
            rec["input_tokens"].as_u64().unwrap(),
            rec["output_tokens"].as_u64().unwrap(),
        );
        assert_eq!(cost, i * 1000 + o * 2000, "{rec}");
        assert!(spent < 100_000, "admitted only while under the cap");
        spent += cost;
        assert!(admitted < 1000, "the budget never stopped the org");
    };
    assert!(
        spent >= 100_000,
        "stopped only once the cap was reached ({spent})"
    );
    let body = assert_openai_429(refusal, "insufficient_quota", "insufficient_quota").await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("daily budget"));

    // Another org is not affected; the Anthropic surface answers in its own shape.
    assert_eq!(
        s.post_chat_as(&s.cfg.keys.beta, &[], &chat("mock-gpt", false))
            .await
            .status(),
        200
    );
    let r = s
        .client()
        .post(s.url("/v1/messages"))
        .header("x-api-key", &s.cfg.keys.acme)
        .json(&serde_json::json!({"model": "mock-claude", "max_tokens": 5,
            "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["type"], "rate_limit_error", "{b}");
}

/// Rewrites org acme's settings and reloads with SIGHUP; returns once sluice reports it.
async fn reload_acme(s: &mut Sluice, acme_org: String, generation: u32) {
    let mut cfg = s.cfg.clone();
    cfg.acme_org = acme_org;
    s.write_config(&cfg.render());
    s.proc.signal(Signal::SIGHUP);
    let done = format!("(generation {generation})");
    s.proc
        .wait_stderr("the reload", |t| t.contains(&done))
        .await;
}

/// Operators change limits by reloading: the used amount carries over (no refill, no burst),
/// the new quota applies to the next admission, and streams admitted before run to their end.
#[tokio::test]
async fn reloaded_limits_apply_at_once_without_refilling() {
    let limits = |requests: &str| format!(r#"limits = {{ requests = "{requests}" }}"#);
    let mut s = Sluice::start_with(|c| {
        c.server = "watch = false".into();
        c.acme_org = limits("3/hour");
    })
    .await;
    let key = s.cfg.keys.acme.clone();
    // Two slow streams take two of the three requests and stay open across both reloads.
    let streams = tokio::spawn({
        let client = s.client();
        let url = s.url("/v1/chat/completions");
        let key = key.clone();
        async move {
            let one = |client: reqwest::Client| {
                let (url, key) = (url.clone(), key.clone());
                async move {
                    let r = send_chat(
                        &client,
                        &url,
                        &key,
                        &[("x-mock-chunks", "6"), ("x-mock-gap-ms", "400")],
                        &chat("mock-gpt", true),
                    )
                    .await
                    .unwrap();
                    (
                        r.status().as_u16(),
                        r.text().await.unwrap().matches("data: ").count(),
                    )
                }
            };
            join_all([one(client.clone()), one(client)]).await
        }
    });
    s.mock.wait_for_requests(2).await;
    let body = chat("mock-gpt", false);
    assert_eq!(
        s.post_chat_as(&key, &[], &body).await.status(),
        200,
        "the third"
    );
    assert_eq!(
        s.post_chat_as(&key, &[], &body).await.status(),
        429,
        "the fourth"
    );

    reload_acme(&mut s, limits("5/hour"), 2).await;
    // Three were used; the bigger quota gives only the difference.
    let answers = join_all((0..4).map(|_| s.post_chat_as(&key, &[], &body))).await;
    let admitted = answers.iter().filter(|r| r.status() == 200).count();
    assert_eq!(admitted, 2, "no refill on reload");
    assert!(answers
        .iter()
        .all(|r| header(r, "x-ratelimit-limit-requests") == Some("5")));

    reload_acme(&mut s, limits("1/hour"), 3).await;
    let r = s.post_chat_as(&key, &[], &body).await;
    assert_eq!(header(&r, "x-ratelimit-limit-requests"), Some("1"));
    assert_openai_429(r, "requests", "rate_limit_exceeded").await;

    for (status, events) in tokio::time::timeout(WAIT, streams).await.unwrap().unwrap() {
        assert_eq!(status, 200);
        assert!(
            events >= 6,
            "the streams ran to their end ({events} events)"
        );
    }
}

/// A `max_tokens` far beyond any model is a 400 in the caller's shape (as the providers answer),
/// and reserves nothing: the org's next ordinary request is admitted.
#[tokio::test]
async fn an_absurd_max_tokens_is_refused_and_reserves_nothing() {
    let mut s = Sluice::start_with(|c| {
        c.acme_org = r#"limits = { tokens = "1000/day" }"#.into();
        c.extra = "[[models]]\nname = \"capped-gpt\"\nprovider = \"mock-openai\"\n\
                   upstream_model = \"mock-gpt\"\nmax_output_tokens = 100\n"
            .into();
    })
    .await;
    let mut body = chat("mock-gpt", false);
    body["max_tokens"] = u64::MAX.into();
    let r = s.post_chat(&[], &body).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    assert_eq!(v["error"]["param"], "max_tokens", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("131072"),
        "{v}"
    );
    let rec = s.next_record().await;
    assert_eq!(rec["status"], 400);

    let r = s
        .client()
        .post(s.url("/v1/messages"))
        .header("x-api-key", &s.cfg.keys.acme)
        .json(
            &serde_json::json!({"model": "mock-claude", "max_tokens": 10_000_000u64,
            "messages": [{"role": "user", "content": "x"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error", "Anthropic shape: {v}");
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    let _ = s.next_record().await;

    // A model's own max_output_tokens is its ceiling.
    let mut capped = chat("capped-gpt", false);
    capped["max_completion_tokens"] = 101.into();
    assert_eq!(s.post_chat(&[], &capped).await.status(), 400);
    let _ = s.next_record().await;
    capped["max_completion_tokens"] = 100.into();
    let r = s.post_chat(&[], &capped).await;
    assert_eq!(r.status(), 200, "at the ceiling is fine");
    assert!(
        header_num(&r, "x-ratelimit-remaining-tokens") > 0,
        "nothing was left reserved"
    );
}
