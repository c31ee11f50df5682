//! Integration tests of the mock provider's fault injection, SSE framing and recording.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(clippy::panic, reason = "test code: a panic fails the test")]

mod common;

use common::*;
use serde_json::{json, Value};
use sluice_bench::mock::{Outcome, RecordedRequest};

#[tokio::test]
async fn status_faults_use_provider_error_bodies() {
    let mock = Mock::start().await;
    let (status, body) = mock.chat_json(true, &[("x-mock-status", "429")]).await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert!(body["error"]["message"].is_string());
    assert!(body["error"].get("param").is_some());

    let msg = json!({"model": "c", "max_tokens": 1, "messages": []});
    let (status, body) = mock
        .post_json("/v1/messages", &msg, &[("x-mock-status", "529")])
        .await;
    assert_eq!(status, 529);
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "overloaded_error");

    let records = within(mock.wait_for_settled(2)).await;
    assert_eq!(records[0].outcome, Outcome::Error(429));
    assert_eq!(records[1].outcome, Outcome::Error(529));
    assert_eq!(records[0].usage, None);
}

#[tokio::test]
async fn bad_input_gets_a_400_not_a_panic() {
    let mock = Mock::start().await;
    let cases: [(&str, &[u8]); 4] = [
        (CHAT, b"{not json"),
        (CHAT, b"[1,2]"),
        ("/v1/embeddings", b"{\"model\":\"m\"}"),
        ("/v1/messages", b"\xff\xfe"),
    ];
    for (path, body) in cases {
        let resp = within(mock.client.post(mock.url(path)).body(body.to_vec()).send())
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{path}");
        let v: Value = resp.json().await.unwrap();
        if path == "/v1/messages" {
            assert_eq!(v["error"]["type"], "invalid_request_error");
        } else {
            assert_eq!(v["error"]["type"], "invalid_request_error");
            assert!(v["error"]["message"].is_string());
        }
    }
    let (status, _) = mock.chat_json(false, &[("x-mock-chunks", "lots")]).await;
    assert_eq!(status, 400);
    let resp = within(mock.client.get(mock.url("/v2/nothing")).send())
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn drop_after_cuts_the_connection() {
    let mock = Mock::start().await;
    let mut resp = mock.chat(true, &[("x-mock-drop-after", "3")]).await;
    assert_eq!(resp.status(), 200);
    let mut received = Vec::new();
    let error = loop {
        match within(resp.chunk()).await {
            Ok(Some(chunk)) => received.extend_from_slice(&chunk),
            Ok(None) => panic!("the body ended cleanly"),
            Err(err) => break err,
        }
    };
    assert!(error.is_body() || error.is_decode(), "{error:?}");
    let events = parse_sse(&String::from_utf8(received).unwrap());
    assert_eq!(events.len(), 3);
    let record =
        within(mock.wait_until(|r| r.first().is_some_and(|x| x.outcome == Outcome::Dropped))).await;
    assert_eq!(record[0].chunks_sent, 3);
}

#[tokio::test]
async fn drop_after_on_non_stream_truncates_the_body() {
    let mock = Mock::start().await;
    let resp = mock.chat(false, &[("x-mock-drop-after", "1")]).await;
    assert!(within(resp.bytes()).await.is_err());
    let records = within(mock.wait_for_settled(1)).await;
    assert_eq!(records[0].outcome, Outcome::Dropped);
}

#[tokio::test]
async fn stall_then_client_disconnect_is_recorded() {
    let mock = Mock::start().await;
    let mut resp = mock
        .post(
            "/v1/messages",
            &json!({"model": "c", "max_tokens": 50, "messages": [], "stream": true}),
            &[("x-mock-stall-after", "4")],
        )
        .await;
    let mut received = String::new();
    while parse_sse(&received).len() < 4 {
        let chunk = within(resp.chunk()).await.unwrap().unwrap();
        received.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let records = within(mock.wait_until(|r| r[0].outcome == Outcome::Stalled)).await;
    assert_eq!(records[0].chunks_sent, 4);
    drop(resp);
    let records = within(mock.wait_until(|r| r[0].outcome == Outcome::ClientGone)).await;
    assert_eq!(records[0].chunks_sent, 4);
}

#[tokio::test]
async fn header_delay_then_client_disconnect_is_recorded() {
    let mock = Mock::start().await;
    let req = mock
        .client
        .post(mock.url(CHAT))
        .header("x-mock-header-delay-ms", "600000")
        .json(&chat_body(false))
        .send();
    let task = tokio::spawn(req);
    within(mock.wait_for_requests(1)).await;
    task.abort();
    let records = within(mock.wait_until(|r| r[0].outcome == Outcome::ClientGone)).await;
    assert_eq!(records[0].chunks_sent, 0);
}

#[tokio::test]
async fn line_endings() {
    let mock = Mock::start().await;
    let body = json!({"model": "c", "max_tokens": 50, "messages": [], "stream": true});
    for (name, sep) in [("crlf", "\r\n\r\n"), ("cr", "\r\r"), ("lf", "\n\n")] {
        let (text, events) = mock
            .post_sse(
                "/v1/messages",
                &body,
                &[("x-mock-line-ending", name), ("x-mock-chunks", "2")],
            )
            .await;
        assert_eq!(text.matches(sep).count(), 8, "{name}");
        assert!(text.starts_with(&format!(
            "event: message_start{}data: ",
            &sep[..sep.len() / 2]
        )));
        assert_eq!(events.len(), 8, "{name}");
        if name != "crlf" {
            assert!(!text.contains("\r\n"), "{name}");
        }
    }
}

#[tokio::test]
async fn fragments_split_events_across_frames() {
    let mock = Mock::start().await;
    let body = chat_body(true);
    let (whole, _) = mock.post_sse(CHAT, &body, &[]).await;
    let mut resp = mock.post(CHAT, &body, &[("x-mock-fragment", "7")]).await;
    let mut frames = 0usize;
    let mut text = Vec::new();
    while let Some(chunk) = within(resp.chunk()).await.unwrap() {
        assert!(chunk.len() <= 7);
        frames += 1;
        text.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(text).unwrap();
    let events = parse_sse(&text);
    assert_eq!(events.len(), 11);
    assert!(frames > events.len() * 10);
    // Only ids and timestamps differ, and they keep their width.
    assert_eq!(text.len(), whole.len());
}

#[tokio::test]
async fn records_headers_path_and_reset() {
    let mock = Mock::start().await;
    let resp = mock
        .client
        .post(mock.url("/v1/chat/completions?api-version=1"))
        .header("authorization", "Bearer sk-upstream")
        .header("x-custom", "a")
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    let record = only_record(&mock).await;
    assert_eq!(record.method, "POST");
    assert_eq!(record.path, "/v1/chat/completions?api-version=1");
    assert_eq!(record.header("Authorization"), Some("Bearer sk-upstream"));
    let names: Vec<&str> = record.headers.iter().map(|(k, _)| k.as_str()).collect();
    let auth = names.iter().position(|n| *n == "authorization").unwrap();
    let custom = names.iter().position(|n| *n == "x-custom").unwrap();
    assert!(auth < custom);
    assert_eq!(record.json().unwrap(), chat_body(false));

    // The control endpoints expose the same records to out-of-process tests.
    let listed: Vec<RecordedRequest> = mock.get_json("/mock/requests", &[]).await;
    assert_eq!(listed, vec![record]);
    let reset = mock
        .client
        .post(mock.url("/mock/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 204);
    assert!(mock.requests().is_empty());
    mock.post_json("/v1/embeddings", &json!({"model": "m", "input": "x"}), &[])
        .await;
    assert_eq!(within(mock.wait_for_requests(1)).await.len(), 1);
    mock.reset();
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn chunk_bytes_pads_content() {
    let mock = Mock::start().await;
    let (_, events) = mock
        .chat_sse(&[("x-mock-chunk-bytes", "64"), ("x-mock-chunks", "2")])
        .await;
    let content = events[1].json()["choices"][0]["delta"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(content.len(), 64);
    assert!(content.starts_with("tok0 x"));
}

#[tokio::test]
async fn delays_still_deliver_everything() {
    // Only checks that paced streams complete intact; timings are not asserted.
    let mock = Mock::start().await;
    let (_, events) = mock
        .chat_sse(&[
            ("x-mock-ttft-ms", "5"),
            ("x-mock-gap-ms", "1"),
            ("x-mock-chunks", "4"),
        ])
        .await;
    assert_eq!(events.len(), 7);
}

#[tokio::test]
async fn max_records_evicts_oldest() {
    let mock = Mock::start().await;
    mock.set_max_records(2);
    for model in ["a", "b", "c"] {
        let body = json!({"model": model, "input": "x"});
        mock.post_json("/v1/embeddings", &body, &[]).await;
    }
    let models: Vec<Option<String>> = mock.requests().into_iter().map(|r| r.model).collect();
    assert_eq!(models, [Some("b".to_owned()), Some("c".to_owned())]);
    mock.set_max_records(0);
    mock.post_json("/v1/embeddings", &json!({"model": "d", "input": "x"}), &[])
        .await;
    assert!(mock.requests().is_empty());
}

/// The peak counts exchanges open at the same time, from their start to their final outcome;
/// a stall stays open until the client leaves.
#[tokio::test]
async fn the_in_progress_peak_counts_exchanges_open_at_once() {
    let mock = Mock::start().await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(mock.chat(true, &[("x-mock-stall-after", "1")]).await);
    }
    within(mock.wait_until(|r| r.len() == 3 && r.iter().all(|x| x.outcome == Outcome::Stalled)))
        .await;
    assert_eq!(mock.take_peak_in_progress(), 3);
    drop(held);
    within(mock.wait_until(|r| r.iter().all(|x| x.outcome == Outcome::ClientGone))).await;
    // The window that began with three open saw three; the next starts from nothing open.
    assert_eq!(mock.take_peak_in_progress(), 3);
    for _ in 0..4 {
        let (status, _) = mock.chat_json(false, &[]).await;
        assert_eq!(status, 200);
    }
    assert_eq!(mock.take_peak_in_progress(), 1);
}
