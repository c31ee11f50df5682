//! Streams cut short: a client that goes away, a provider that drops or stalls. Each yields one
//! record with what is known, flagged estimated, and the upstream is closed promptly.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(clippy::panic, reason = "test code: a panic fails the test")]

mod common;
use common::*;
use futures_util::StreamExt;
use sluice_bench::mock::Outcome as MockOutcome;

#[tokio::test]
async fn client_disconnect_closes_upstream_and_records_estimate() {
    let mut s = Sluice::start().await;
    // The provider sends 3 events then stalls: the client reads them and hangs up.
    let resp = s
        .anthropic_post("/v1/messages")
        .header("x-mock-stall-after", "4")
        .json(
            &serde_json::json!({"model": "mock-claude", "max_tokens": 50, "stream": true,
            "messages": [{"role": "user", "content": "a b"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("content_block_delta") {
        seen.push_str(&String::from_utf8_lossy(
            &stream.next().await.unwrap().unwrap(),
        ));
    }
    drop(stream);
    // sluice notices the client is gone and closes the upstream: the mock sees its client leave.
    let reqs = tokio::time::timeout(
        WAIT,
        s.mock
            .wait_until(|r| r.iter().any(|x| x.outcome == MockOutcome::ClientGone)),
    )
    .await
    .expect("upstream closed after the client left");
    let truth_input = reqs[0].usage.unwrap().input_tokens;
    let rec = s.next_record().await;
    assert_eq!(rec["outcome"], "client_disconnected", "{rec}");
    assert_eq!(rec["estimated"], true);
    // Anthropic reported input at message_start; output is estimated from the deltas seen.
    assert_eq!(rec["input_tokens"], truth_input);
    assert_eq!(rec["output_tokens"], 1, "{rec}");
}

#[tokio::test]
async fn upstream_drop_mid_stream_is_recorded_and_visible_to_the_client() {
    let mut s = Sluice::start().await;
    let resp = s
        .post_chat(&[("x-mock-drop-after", "4")], &chat("mock-gpt", true))
        .await;
    assert_eq!(resp.status(), 200);
    // The client must see an incomplete stream, not a clean end.
    assert!(
        body_chunks(resp).await.is_err(),
        "a dropped upstream must not look like a complete stream"
    );
    let rec = s.next_record().await;
    assert_eq!(rec["outcome"], "upstream_dropped", "{rec}");
    assert_eq!(rec["estimated"], true);
    // Role chunk + 3 content chunks were sent before the drop: 3 output tokens estimated.
    assert_eq!(rec["output_tokens"], 3, "{rec}");
    assert!(rec["input_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn stalled_stream_times_out_on_idle() {
    let mut s = Sluice::start().await;
    // The slow provider's idle timeout is 300 ms; the mock stalls forever after 2 events.
    let resp = s
        .post_chat(&[("x-mock-stall-after", "2")], &chat("slow-gpt", true))
        .await;
    assert_eq!(resp.status(), 200);
    assert!(body_chunks(resp).await.is_err());
    let rec = s.next_record().await;
    assert_eq!(rec["outcome"], "upstream_timeout", "{rec}");
    assert_eq!(rec["estimated"], true);
}

#[tokio::test]
async fn many_mixed_failures_each_yield_exactly_one_record() {
    let mut s = Sluice::start().await;
    let mut handles = Vec::new();
    for i in 0..60u32 {
        let client = s.client();
        let url = s.url("/v1/chat/completions");
        let key = s.cfg.keys.acme.clone();
        handles.push(tokio::spawn(async move {
            let mut r = client.post(url).bearer_auth(key).json(&chat(
                if i % 5 == 4 { "dead-gpt" } else { "mock-gpt" },
                i % 2 == 0,
            ));
            r = match i % 5 {
                1 => r.header("x-mock-drop-after", "3"),
                2 => r.header("x-mock-status", "500"),
                3 => r.header("x-mock-fragment", "3"),
                _ => r,
            };
            if let Ok(resp) = r.send().await {
                let _ = resp.bytes().await;
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let mut ids = std::collections::HashSet::new();
    let (mut input, mut output) = (0u64, 0u64);
    for _ in 0..60 {
        let rec = s.next_record().await;
        assert!(
            ids.insert(rec["id"].as_str().unwrap().to_string()),
            "duplicate record id"
        );
        if rec["outcome"] == "ok" {
            assert_eq!(rec["estimated"], false, "{rec}");
            input += rec["input_tokens"].as_u64().unwrap();
            output += rec["output_tokens"].as_u64().unwrap();
        }
    }
    // Every request the provider completed is metered exactly once, to the token.
    let done: Vec<_> = s
        .mock
        .requests()
        .into_iter()
        .filter(|r| r.outcome == MockOutcome::Completed)
        .collect();
    assert_eq!(done.len(), 24, "plain and fragmented requests complete");
    assert_eq!(
        input,
        done.iter()
            .map(|r| r.usage.unwrap().input_tokens)
            .sum::<u64>()
    );
    assert_eq!(
        output,
        done.iter()
            .map(|r| r.usage.unwrap().output_tokens)
            .sum::<u64>()
    );
}
