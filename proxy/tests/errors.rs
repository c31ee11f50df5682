//! Every error sluice answers itself, in the caller's API shape, with the right status — and a
//! usage record for each.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(clippy::panic, reason = "test code: a panic fails the test")]

mod common;
use common::*;
use serde_json::{json, Value};

async fn call(
    s: &Sluice,
    method: reqwest::Method,
    path: &str,
    key: Option<&str>,
    body: Option<String>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = s.client().request(method, s.url(path));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body, headers)
}

fn assert_openai_error(body: &Value, code: Option<&str>) {
    let e = &body["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(e["type"].is_string(), "{body}");
    assert!(
        e.get("param").is_some() && e.get("code").is_some(),
        "{body}"
    );
    if let Some(c) = code {
        assert_eq!(e["code"], c, "{body}");
    }
}

fn assert_anthropic_error(body: &Value, kind: &str) {
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], kind, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn openai_shaped_errors_have_the_right_status() {
    let mut s = Sluice::start().await;
    let keys = s.cfg.keys.clone();
    let acme = keys.acme.clone();
    let good = chat("mock-gpt", false).to_string();
    // (status, path, key, body, expected error code)
    type Case<'a> = (
        u16,
        &'a str,
        Option<&'a str>,
        Option<String>,
        Option<&'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            400,
            "/v1/chat/completions",
            Some(&acme),
            Some("{not json".into()),
            None,
        ),
        (
            400,
            "/v1/chat/completions",
            Some(&acme),
            Some(json!({"messages": []}).to_string()),
            None,
        ),
        (
            400,
            "/v1/chat/completions",
            Some(&acme),
            Some(json!({"model": 5}).to_string()),
            None,
        ),
        (
            401,
            "/v1/chat/completions",
            None,
            Some(good.clone()),
            Some("missing_api_key"),
        ),
        (
            401,
            "/v1/chat/completions",
            Some("sk-sluice-notarealkeyatallnotarealkeyatall000"),
            Some(good.clone()),
            Some("invalid_api_key"),
        ),
        (
            401,
            "/v1/chat/completions",
            Some("garbage"),
            Some(good.clone()),
            Some("invalid_api_key"),
        ),
        (
            403,
            "/v1/chat/completions",
            Some(&keys.expired),
            Some(good.clone()),
            Some("api_key_expired"),
        ),
        (
            403,
            "/v1/chat/completions",
            Some(&keys.acme_claude_only),
            Some(good.clone()),
            Some("model_not_allowed"),
        ),
        (
            404,
            "/v1/chat/completions",
            Some(&acme),
            Some(chat("no-such-model", false).to_string()),
            Some("model_not_found"),
        ),
        (404, "/v1/nope", Some(&acme), None, Some("unknown_url")),
        (
            400,
            "/v1/chat/completions",
            Some(&acme),
            Some(chat("mock-claude", false).to_string()),
            None,
        ),
    ];
    for (status, path, key, body, code) in cases {
        let (got, b, h) = call(&s, reqwest::Method::POST, path, key, body.clone()).await;
        assert_eq!(got, status, "{path} {body:?}: {b}");
        assert_openai_error(&b, code);
        assert!(h.contains_key("x-request-id"));
        let rec = s.next_record().await;
        assert_eq!(rec["status"], status);
        assert_eq!(rec["outcome"], "rejected");
        assert_eq!(rec["input_tokens"], 0);
    }
    let (got, b, _) = call(
        &s,
        reqwest::Method::GET,
        "/v1/chat/completions",
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(got, 405, "{b}");
    assert_openai_error(&b, Some("method_not_allowed"));
    // Nothing sluice refused reached the provider.
    assert!(s.mock.requests().is_empty());
}

#[tokio::test]
async fn anthropic_shaped_errors_on_messages_paths() {
    let s = Sluice::start().await;
    let msg = json!({"model": "mock-claude", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let keys = &s.cfg.keys;
    // (key, body, status, error type)
    let cases: [(Option<&str>, String, u16, &str); 5] = [
        (None, msg.to_string(), 401, "authentication_error"),
        (
            Some(&keys.expired),
            msg.to_string(),
            403,
            "permission_error",
        ),
        (Some(&keys.acme), "{]".into(), 400, "invalid_request_error"),
        (
            Some(&keys.acme),
            json!({"model": "gpt-x"}).to_string(),
            404,
            "not_found_error",
        ),
        // An OpenAI-shape model on the Anthropic surface: no translation, a clear 400.
        (
            Some(&keys.acme),
            json!({"model": "mock-gpt"}).to_string(),
            400,
            "invalid_request_error",
        ),
    ];
    let client = s.client();
    for (key, body, status, kind) in cases {
        let mut r = client.post(s.url("/v1/messages")).body(body);
        if let Some(k) = key {
            r = r.header("x-api-key", k);
        }
        let r = r
            .header("anthropic-version", "2023-06-01")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{key:?}");
        assert_anthropic_error(&r.json().await.unwrap(), kind);
    }
}

#[tokio::test]
async fn oversized_body_gets_413_by_declared_length_and_by_chunked_stream() {
    let mut s = Sluice::start().await;
    // The test config limits bodies to 1 MiB.
    let big = format!(
        "{{\"model\":\"mock-gpt\",\"messages\":[{{\"role\":\"user\",\"content\":\"{}\"}}]}}",
        "x".repeat(1_100_000)
    );
    let (got, b, _) = call(
        &s,
        reqwest::Method::POST,
        "/v1/chat/completions",
        Some(&s.cfg.keys.acme.clone()),
        Some(big.clone()),
    )
    .await;
    assert_eq!(got, 413, "{b}");
    assert_openai_error(&b, Some("request_too_large"));
    assert_eq!(s.next_record().await["status"], 413);
    // Chunked (no Content-Length): refused by what arrives.
    let stream = futures_util::stream::iter(
        big.into_bytes()
            .chunks(64 * 1024)
            .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let resp = s
        .openai_post("/v1/chat/completions")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    // sluice answers 413 as soon as the limit is passed; the client may see the answer or a
    // reset while it is still sending, but never a success.
    if let Ok(r) = resp {
        assert_eq!(r.status(), 413);
    }
    assert_eq!(s.next_record().await["status"], 413);
    assert!(s.mock.requests().is_empty());
}

#[tokio::test]
async fn upstream_connect_failure_is_502_and_timeout_is_504() {
    let mut s = Sluice::start().await;
    let key = s.cfg.keys.acme.clone();
    let (got, b, _) = call(
        &s,
        reqwest::Method::POST,
        "/v1/chat/completions",
        Some(&key),
        Some(chat("dead-gpt", false).to_string()),
    )
    .await;
    assert_eq!(got, 502, "{b}");
    assert_openai_error(&b, Some("upstream_unreachable"));
    let rec = s.next_record().await;
    assert_eq!(rec["status"], 502);
    assert_eq!(rec["outcome"], "upstream_unreachable");

    // The slow provider's first-byte timeout is 300 ms; the mock waits 20 s before its header.
    let resp = s
        .post_chat_as(
            &key,
            &[("x-mock-header-delay-ms", "20000")],
            &chat("slow-gpt", false),
        )
        .await;
    assert_eq!(resp.status(), 504);
    assert_openai_error(&resp.json().await.unwrap(), Some("upstream_timeout"));
    let rec = s.next_record().await;
    assert_eq!(rec["status"], 504);
    assert_eq!(rec["outcome"], "upstream_timeout");
}

#[tokio::test]
async fn provider_errors_pass_through_unchanged() {
    let mut s = Sluice::start().await;
    let resp = s
        .post_chat(&[("x-mock-status", "429")], &chat("mock-gpt", false))
        .await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("x-request-id"));
    let body: Value = resp.json().await.unwrap();
    // The mock's own error body, not one of ours.
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("mock"),
        "{body}"
    );
    let rec = s.next_record().await;
    assert_eq!(rec["status"], 429);
    assert_eq!(rec["outcome"], "provider_error");
    assert_eq!(rec["estimated"], false);
}
