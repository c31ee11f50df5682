//! Every API surface, streaming and not, through sluice: the client gets the provider's answer,
//! and the usage record equals the mock's counts exactly.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(clippy::panic, reason = "test code: a panic fails the test")]

mod common;
use common::*;
use serde_json::{json, Value};

/// Posts `body` to `path` as org acme and returns the raw response bytes.
async fn post(s: &Sluice, path: &str, body: Value, headers: &[(&str, &str)]) -> (u16, Vec<u8>) {
    let mut req = s.client().post(s.url(path)).json(&body);
    req = if path.starts_with("/v1/messages") {
        req.header("x-api-key", &s.cfg.keys.acme)
            .header("anthropic-version", "2023-06-01")
    } else {
        req.bearer_auth(&s.cfg.keys.acme)
    };
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.bytes().await.unwrap().to_vec())
}

/// Asserts the last record equals the mock's ground truth for the last request.
async fn assert_exact(s: &mut Sluice, api: &str, stream: bool) -> Value {
    let rec = s.next_record().await;
    let truth = s.mock.requests().last().unwrap().usage.unwrap();
    assert_eq!(rec["api"], api, "{rec}");
    assert_eq!(rec["stream"], stream, "{rec}");
    assert_eq!(rec["status"], 200, "{rec}");
    assert_eq!(rec["outcome"], "ok", "{rec}");
    assert_eq!(rec["estimated"], false, "{rec}");
    assert_eq!(rec["input_tokens"], truth.input_tokens, "{rec}");
    assert_eq!(rec["output_tokens"], truth.output_tokens, "{rec}");
    assert_eq!(rec["cached_tokens"], truth.cached_tokens, "{rec}");
    assert_eq!(rec["reasoning_tokens"], truth.reasoning_tokens, "{rec}");
    assert_eq!(rec["org"], "acme");
    assert!(rec["key_id"].as_str().unwrap().starts_with("key_"));
    rec
}

fn sse_data(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|l| l.strip_prefix("data: ").map(str::to_string))
        .collect()
}

#[tokio::test]
async fn openai_surfaces_non_stream() {
    let mut s = Sluice::start().await;
    let extra = [
        ("x-mock-cached-tokens", "2"),
        ("x-mock-reasoning-tokens", "3"),
    ];
    let (st, _) = post(&s, "/v1/chat/completions", chat("mock-gpt", false), &extra).await;
    assert_eq!(st, 200);
    let rec = assert_exact(&mut s, "chat.completions", false).await;
    assert_eq!(rec["cached_tokens"], 2);
    assert_eq!(rec["reasoning_tokens"], 3);

    let (st, _) = post(
        &s,
        "/v1/completions",
        json!({"model": "mock-gpt", "prompt": "a b c"}),
        &[],
    )
    .await;
    assert_eq!(st, 200);
    assert_exact(&mut s, "completions", false).await;

    // Embeddings bodies can be large: 4096 dims, sent in small fragments.
    let (st, body) = post(
        &s,
        "/v1/embeddings",
        json!({"model": "mock-gpt", "input": ["a b", "c d e"]}),
        &[("x-mock-dims", "4096"), ("x-mock-fragment", "1000")],
    )
    .await;
    assert_eq!(st, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 4096);
    assert_exact(&mut s, "embeddings", false).await;

    let (st, _) = post(
        &s,
        "/v1/responses",
        json!({"model": "mock-gpt", "input": "hello there"}),
        &extra,
    )
    .await;
    assert_eq!(st, 200);
    assert_exact(&mut s, "responses", false).await;
}

#[tokio::test]
async fn openai_surfaces_stream() {
    let mut s = Sluice::start().await;
    let (st, body) = post(
        &s,
        "/v1/chat/completions",
        chat("mock-gpt", true),
        &[("x-mock-chunks", "5")],
    )
    .await;
    assert_eq!(st, 200);
    // The client did not ask for usage: sluice asked upstream and stripped the usage chunk.
    let data = sse_data(&body);
    assert_eq!(data.last().unwrap(), "[DONE]");
    for d in &data[..data.len() - 1] {
        let v: Value = serde_json::from_str(d).unwrap();
        assert!(
            !v["choices"].as_array().unwrap().is_empty(),
            "usage-only chunk leaked: {d}"
        );
        assert!(v.get("usage").is_none_or(Value::is_null));
    }
    let sent = s.mock.requests().last().unwrap().json().unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    let rec = assert_exact(&mut s, "chat.completions", true).await;
    assert_eq!(rec["output_tokens"], 5);

    // The client asked: the usage chunk passes through, and the body went upstream unchanged.
    let mut body_in = chat("mock-gpt", true);
    body_in["stream_options"] = json!({"include_usage": true});
    let (st, body) = post(&s, "/v1/chat/completions", body_in.clone(), &[]).await;
    assert_eq!(st, 200);
    let data = sse_data(&body);
    let usage_chunk: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert!(usage_chunk["usage"]["completion_tokens"].is_number());
    assert_eq!(s.mock.requests().last().unwrap().json().unwrap(), body_in);
    assert_exact(&mut s, "chat.completions", true).await;

    let (st, _) = post(
        &s,
        "/v1/completions",
        json!({"model": "mock-gpt", "prompt": "a b", "stream": true}),
        &[],
    )
    .await;
    assert_eq!(st, 200);
    assert_exact(&mut s, "completions", true).await;

    let (st, body) = post(
        &s,
        "/v1/responses",
        json!({"model": "mock-gpt", "input": "hi", "stream": true}),
        &[("x-mock-reasoning-tokens", "4")],
    )
    .await;
    assert_eq!(st, 200);
    assert!(String::from_utf8_lossy(&body).contains("response.completed"));
    let rec = assert_exact(&mut s, "responses", true).await;
    assert_eq!(rec["reasoning_tokens"], 4);
}

#[tokio::test]
async fn anthropic_surfaces() {
    let mut s = Sluice::start().await;
    let msg = |stream: bool| json!({"model": "mock-claude", "max_tokens": 100, "stream": stream, "messages": [{"role": "user", "content": "hello world"}]});
    let cache = [
        ("x-mock-cached-tokens", "7"),
        ("x-mock-cache-write-tokens", "5"),
    ];
    let (st, _) = post(&s, "/v1/messages", msg(false), &cache).await;
    assert_eq!(st, 200);
    let rec = s.next_record().await;
    let truth = s.mock.requests().last().unwrap().usage.unwrap();
    // Anthropic reports cache reads and writes beside input_tokens; the record's input is all
    // prompt tokens, with the cache parts broken out.
    assert_eq!(rec["input_tokens"], truth.input_tokens + 7 + 5, "{rec}");
    assert_eq!(rec["cached_tokens"], 7);
    assert_eq!(rec["cache_write_tokens"], 5);
    assert_eq!(rec["output_tokens"], truth.output_tokens);
    assert_eq!(rec["estimated"], false);

    let (st, body) = post(&s, "/v1/messages", msg(true), &cache).await;
    assert_eq!(st, 200);
    assert!(String::from_utf8_lossy(&body).contains("event: message_stop"));
    let rec = s.next_record().await;
    let truth = s.mock.requests().last().unwrap().usage.unwrap();
    assert_eq!(rec["api"], "messages");
    assert_eq!(rec["stream"], true);
    assert_eq!(rec["input_tokens"], truth.input_tokens + 12, "{rec}");
    assert_eq!(rec["output_tokens"], truth.output_tokens, "{rec}");
    assert_eq!(rec["estimated"], false);

    let (st, body) = post(
        &s,
        "/v1/messages/count_tokens",
        json!({"model": "mock-claude", "messages": [{"role": "user", "content": "a b c"}]}),
        &[],
    )
    .await;
    assert_eq!(st, 200);
    assert!(serde_json::from_slice::<Value>(&body).unwrap()["input_tokens"].is_number());
    let counted = serde_json::from_slice::<Value>(&body).unwrap()["input_tokens"].clone();
    let rec = s.next_record().await;
    assert_eq!(rec["api"], "messages.count_tokens");
    assert_eq!(rec["input_tokens"], counted, "the record carries the count");
    assert_eq!(rec["cost_micro_usd"], 0, "counting tokens is free");

    // A glob route sends the requested name unchanged.
    let mut m = msg(false);
    m["model"] = json!("claude-sonnet-9");
    let (st, _) = post(&s, "/v1/messages", m, &[]).await;
    assert_eq!(st, 200);
    assert_eq!(
        s.mock.requests().last().unwrap().model.as_deref(),
        Some("claude-sonnet-9")
    );
    assert_eq!(s.next_record().await["provider"], "mock-anthropic");
}

#[tokio::test]
async fn split_events_and_line_endings_keep_usage_exact() {
    let mut s = Sluice::start().await;
    for ending in ["lf", "crlf", "cr"] {
        for fragment in ["7", "1"] {
            let h = [
                ("x-mock-line-ending", ending),
                ("x-mock-fragment", fragment),
                ("x-mock-chunks", "6"),
            ];
            let (st, body) = post(&s, "/v1/chat/completions", chat("mock-gpt", true), &h).await;
            assert_eq!(st, 200);
            assert!(
                !String::from_utf8_lossy(&body).contains("\"choices\":[]"),
                "usage chunk leaked ({ending}, {fragment})"
            );
            assert_exact(&mut s, "chat.completions", true).await;
            let m = json!({"model": "mock-claude", "max_tokens": 50, "stream": true, "messages": [{"role": "user", "content": "x"}]});
            let (st, _) = post(&s, "/v1/messages", m, &h).await;
            assert_eq!(st, 200);
            let rec = s.next_record().await;
            assert_eq!(rec["output_tokens"], 6, "{ending} {fragment}: {rec}");
            assert_eq!(rec["estimated"], false);
        }
    }
}

/// The ids of a model list.
fn ids(list: &Value) -> Vec<&str> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect()
}

/// Each caller shape lists only the models its API reaches (an Anthropic SDK never sees OpenAI
/// models, nor the reverse), glob routes included by their pattern.
#[tokio::test]
async fn models_list_shows_what_the_key_may_use_in_the_callers_shape() {
    let s = Sluice::start().await;
    let list = |key: String, anthropic: bool| {
        let mut r = s.client().get(s.url("/v1/models")).bearer_auth(key);
        if anthropic {
            r = r.header("anthropic-version", "2023-06-01");
        }
        async move { r.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let openai = list(s.cfg.keys.acme.clone(), false).await;
    assert_eq!(openai["object"], "list");
    assert_eq!(
        ids(&openai),
        ["mock-gpt", "fast", "slow-gpt", "dead-gpt"],
        "OpenAI models only: {openai}"
    );
    assert!(
        openai["data"][0]["created"].as_u64().unwrap() > 1_700_000_000,
        "{openai}"
    );
    let anthropic = list(s.cfg.keys.acme.clone(), true).await;
    assert_eq!(ids(&anthropic), ["mock-claude", "claude-*"], "{anthropic}");
    assert_eq!(
        anthropic["data"][1]["display_name"],
        "any model matching claude-*"
    );
    assert!(
        !anthropic["data"][0]["created_at"]
            .as_str()
            .unwrap()
            .starts_with("1970"),
        "{anthropic}"
    );
    assert_eq!(anthropic["first_id"], "mock-claude");
    assert_eq!(anthropic["last_id"], "claude-*");
    let scoped = list(s.cfg.keys.acme_claude_only.clone(), true).await;
    assert_eq!(ids(&scoped), ["mock-claude"], "{scoped}");
    assert_eq!(scoped["data"][0]["type"], "model");
    assert!(ids(&list(s.cfg.keys.acme_claude_only.clone(), false).await).is_empty());

    let get = |path: &str, anthropic: bool| {
        let mut r = s.client().get(s.url(path)).bearer_auth(&s.cfg.keys.acme);
        if anthropic {
            r = r.header("anthropic-version", "2023-06-01");
        }
        r.send()
    };
    let one = get("/v1/models/mock-gpt", false).await.unwrap();
    assert_eq!(one.json::<Value>().await.unwrap()["id"], "mock-gpt");
    let by_glob = get("/v1/models/claude-3-opus", true).await.unwrap();
    assert_eq!(by_glob.status(), 200, "a name a glob route serves");
    assert_eq!(
        by_glob.json::<Value>().await.unwrap()["id"],
        "claude-3-opus"
    );
    let wrong_shape = get("/v1/models/mock-gpt", true).await.unwrap();
    assert_eq!(wrong_shape.status(), 404);
    assert_eq!(wrong_shape.json::<Value>().await.unwrap()["type"], "error");
    assert_eq!(get("/v1/models/nope", false).await.unwrap().status(), 404);
}

#[tokio::test]
async fn alias_route_rewrites_only_the_model() {
    let mut s = Sluice::start().await;
    let (st, _) = post(&s, "/v1/chat/completions", chat("fast", false), &[]).await;
    assert_eq!(st, 200);
    let sent = s.mock.requests().last().unwrap().json().unwrap();
    let mut expected = chat("fast", false);
    expected["model"] = json!("mock-gpt-4");
    assert_eq!(sent, expected);
    let rec = s.next_record().await;
    assert_eq!(rec["model"], "fast");
    assert_eq!(rec["upstream_model"], "mock-gpt-4");
}

/// CORS is off by default: a preflight is a 405 and no answer grants an origin. With `[cors]`,
/// sluice answers an allowed origin's preflight itself and grants that origin on every answer,
/// its own errors included; other origins and other listeners get nothing.
#[tokio::test]
async fn cors_is_off_by_default_and_grants_only_allowed_origins() {
    let app = "https://app.example.com";
    let preflight = |s: &Sluice, origin: &str| {
        s.client()
            .request(reqwest::Method::OPTIONS, s.url("/v1/chat/completions"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type, x-stainless-os",
            )
            .send()
    };
    let acao = |r: &reqwest::Response| {
        r.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_string())
    };
    let off = Sluice::start().await;
    let r = preflight(&off, app).await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(acao(&r), None);
    let r = off
        .post_chat(&[("origin", app)], &chat("mock-gpt", false))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(acao(&r), None, "no grant without [cors]");
    drop(off);

    let s = Sluice::start_with(|c| {
        c.extra = format!("[cors]\norigins = [\"{app}\"]\nmax_age = \"1h\"\n");
    })
    .await;
    let r = preflight(&s, app).await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(acao(&r).as_deref(), Some(app));
    let h = |name: &str| r.headers().get(name).unwrap().to_str().unwrap().to_string();
    assert_eq!(
        h("access-control-allow-headers"),
        "authorization, content-type, x-stainless-os"
    );
    assert!(h("access-control-allow-methods").contains("POST"));
    assert_eq!(h("access-control-max-age"), "3600");
    assert_eq!(
        s.mock.requests().len(),
        0,
        "the preflight never goes upstream"
    );
    let r = preflight(&s, "https://evil.example").await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(acao(&r), None);

    let call = |origin: &str, key: &str| {
        s.client()
            .post(s.url("/v1/chat/completions"))
            .bearer_auth(key)
            .header("origin", origin)
            .json(&chat("mock-gpt", false))
            .send()
    };
    let r = call(app, &s.cfg.keys.acme).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(acao(&r).as_deref(), Some(app));
    assert!(r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .contains("x-request-id"));
    assert_eq!(r.headers()["vary"], "Origin");
    let r = call(app, "sk-sluice-wrong").await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        acao(&r).as_deref(),
        Some(app),
        "the browser may read the error"
    );
    let r = call("https://evil.example", &s.cfg.keys.acme)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(acao(&r), None);
    drop(s);

    // Restricted to a listener this request did not come in on: nothing is granted.
    let s = Sluice::start_with(|c| {
        c.extra = "[cors]\norigins = [\"*\"]\nlisteners = [\"127.0.0.1:1\"]\n".to_string();
    })
    .await;
    assert_eq!(preflight(&s, app).await.unwrap().status(), 405);
}
