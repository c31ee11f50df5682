//! Usage records of requests that end without a provider usage report: a request that failed
//! at the provider is an estimate, and `count_tokens` records the count it answered; and the
//! client address each record names (`[client_ip]`).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(clippy::panic, reason = "test code: a panic fails the test")]

mod common;
use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn a_request_that_timed_out_at_the_provider_is_estimated() {
    let mut s = Sluice::start().await;
    let body = chat("slow-gpt", false);
    let resp = s
        .post_chat(&[("x-mock-header-delay-ms", "3000")], &body)
        .await;
    assert_eq!(resp.status().as_u16(), 504);
    let rec = s.next_record().await;
    assert_eq!(rec["outcome"], "upstream_timeout", "{rec}");
    assert_eq!(rec["estimated"], true, "{rec}");
    let bytes_in = rec["bytes_in"].as_u64().unwrap();
    assert_eq!(rec["input_tokens"], bytes_in.div_ceil(4), "{rec}");
    assert_eq!(rec["output_tokens"], 0, "{rec}");
}

#[tokio::test]
async fn count_tokens_records_the_counted_input_at_no_cost() {
    let mut s = Sluice::start().await;
    let resp = s
        .anthropic_post("/v1/messages/count_tokens")
        .json(&json!({"model": "mock-claude",
                      "messages": [{"role": "user", "content": "one two three four"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let answer: Value = resp.json().await.unwrap();
    let counted = answer["input_tokens"].as_u64().unwrap();
    assert!(counted > 0);
    let rec = s.next_record().await;
    assert_eq!(rec["api"], "messages.count_tokens", "{rec}");
    assert_eq!(rec["input_tokens"], counted, "{rec}");
    assert_eq!(rec["estimated"], false, "{rec}");
    assert_eq!(rec["cost_micro_usd"], 0, "{rec}");
}

/// The record names the socket peer; a forwarding header counts only from a trusted proxy, read
/// from the right past the proxies, and the address is kept in the configured form. Also for a
/// request refused before it reached a provider (a bad key), which abuse review needs most.
#[tokio::test]
async fn the_client_ip_is_the_peer_unless_a_trusted_proxy_forwards_it() {
    let forged = [("x-forwarded-for", "1.1.1.1, 203.0.113.77")];
    let mut s = Sluice::start().await;
    let resp = s.post_chat(&forged, &chat("mock-gpt", false)).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(s.next_record().await["client_ip"], "127.0.0.1");

    let mut s = Sluice::start_with(|c| {
        c.extra = "[client_ip]\ntrusted_proxies = [\"10.0.0.0/8\"]\n".into();
    })
    .await;
    s.post_chat(&forged, &chat("mock-gpt", false)).await;
    assert_eq!(
        s.next_record().await["client_ip"],
        "127.0.0.1",
        "untrusted peer"
    );

    let mut s = Sluice::start_with(|c| {
        c.extra = "[client_ip]\ntrusted_proxies = [\"127.0.0.1\"]\n".into();
    })
    .await;
    s.post_chat(&forged, &chat("mock-gpt", false)).await;
    assert_eq!(s.next_record().await["client_ip"], "203.0.113.77");
    let resp = s
        .post_chat_as(
            "sk-not-a-key-of-this-gateway",
            &forged,
            &chat("mock-gpt", false),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 401);
    let rec = s.next_record().await;
    assert_eq!(
        (rec["status"].as_u64(), &rec["client_ip"]),
        (Some(401), &json!("203.0.113.77"))
    );

    let mut s = Sluice::start_with(|c| {
        c.extra =
            "[client_ip]\ntrusted_proxies = [\"127.0.0.0/8\"]\nrecord = \"truncate\"\n".into();
    })
    .await;
    s.post_chat(&forged, &chat("mock-gpt", false)).await;
    assert_eq!(s.next_record().await["client_ip"], "203.0.113.0/24");
}
