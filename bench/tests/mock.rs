//! Integration tests of the mock provider over real TCP: each endpoint's wire format and
//! usage, streamed and not.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(clippy::panic, reason = "test code: a panic fails the test")]

mod common;

use common::*;
use serde_json::{json, Value};
use sluice_bench::mock::{MockUsage, Outcome};

#[tokio::test]
async fn chat_non_stream_reports_usage() {
    let mock = Mock::start().await;
    let headers = [
        ("x-mock-chunks", "5"),
        ("x-mock-cached-tokens", "4"),
        ("x-mock-reasoning-tokens", "7"),
    ];
    let (status, body) = mock.chat_json(false, &headers).await;
    assert_eq!(status, 200);
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "gpt-4o");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "tok0 tok1 tok2 tok3 tok4 "
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let usage = &body["usage"];
    assert_eq!(usage["prompt_tokens"], CHAT_INPUT);
    assert_eq!(usage["completion_tokens"], 12);
    assert_eq!(usage["total_tokens"], CHAT_INPUT + 12);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 4);
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 7);

    let record = only_record(&mock).await;
    assert_eq!(record.outcome, Outcome::Completed);
    assert_eq!(record.model.as_deref(), Some("gpt-4o"));
    assert!(!record.stream);
    assert_eq!(
        record.usage,
        Some(MockUsage {
            input_tokens: CHAT_INPUT,
            output_tokens: 12,
            cached_tokens: 4,
            cache_write_tokens: 0,
            reasoning_tokens: 7,
        })
    );
}

#[tokio::test]
async fn chat_stream_with_include_usage() {
    let mock = Mock::start().await;
    let mut body = chat_body(true);
    body["stream_options"] = json!({"include_usage": true});
    let (_, events) = mock.post_sse(CHAT, &body, &[("x-mock-chunks", "3")]).await;
    // Role chunk, 3 content chunks, finish chunk, usage chunk, [DONE].
    assert_eq!(events.len(), 7);
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let chunks: Vec<Value> = events[..6].iter().map(Event::json).collect();
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], chunks[0]["id"]);
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks[1..4]
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, "tok0 tok1 tok2 ");
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "stop");
    for c in &chunks[..5] {
        assert!(c["usage"].is_null() && c.get("usage").is_some(), "{c}");
    }
    let last = &chunks[5];
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens"], CHAT_INPUT);
    assert_eq!(last["usage"]["completion_tokens"], 3);
    assert_eq!(last["usage"]["total_tokens"], CHAT_INPUT + 3);

    let record = only_record(&mock).await;
    assert!(record.stream);
    assert_eq!(record.outcome, Outcome::Completed);
    assert_eq!(record.chunks_sent, 7);
}

#[tokio::test]
async fn chat_stream_without_include_usage() {
    let mock = Mock::start().await;
    let (_, events) = mock.chat_sse(&[]).await;
    // Role chunk, 8 default content chunks, finish chunk, [DONE].
    assert_eq!(events.len(), 11);
    for e in &events[..10] {
        let c = e.json();
        assert!(c.get("usage").is_none(), "{c}");
        assert_eq!(c["choices"].as_array().unwrap().len(), 1);
    }
    // The record still knows what the stream would have reported.
    let record = only_record(&mock).await;
    assert_eq!(record.usage.unwrap().output_tokens, 8);
}

#[tokio::test]
async fn input_tokens_ignore_non_content_fields() {
    let mock = Mock::start().await;
    let mut body = chat_body(false);
    let (_, plain) = mock.post_json(CHAT, &body, &[]).await;
    body["stream_options"] = json!({"include_usage": true});
    body["temperature"] = json!(0.5);
    body["stream"] = json!(true);
    let (_, events) = mock.post_sse(CHAT, &body, &[]).await;
    let usage_chunk = events[events.len() - 2].json();
    assert_eq!(
        usage_chunk["usage"]["prompt_tokens"],
        plain["usage"]["prompt_tokens"]
    );
}

#[tokio::test]
async fn max_tokens_caps_every_shape() {
    let mock = Mock::start().await;
    let chunks = [("x-mock-chunks", "6")];

    let mut chat = chat_body(false);
    chat["max_completion_tokens"] = json!(2);
    let (_, body) = mock.post_json(CHAT, &chat, &chunks).await;
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["usage"]["completion_tokens"], 2);

    let comp = json!({"model": "m", "prompt": "a b c", "max_tokens": 3, "stream": true});
    let (_, events) = mock.post_sse("/v1/completions", &comp, &chunks).await;
    // 3 content chunks, finish chunk, [DONE].
    assert_eq!(events.len(), 5);
    assert_eq!(events[3].json()["choices"][0]["finish_reason"], "length");

    let msg =
        json!({"model": "c", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]});
    let (_, body) = mock.post_json("/v1/messages", &msg, &chunks).await;
    assert_eq!(body["stop_reason"], "max_tokens");
    assert_eq!(body["usage"]["output_tokens"], 4);

    let resp = json!({"model": "m", "input": "hi", "max_output_tokens": 1, "stream": true});
    let (_, events) = mock.post_sse("/v1/responses", &resp, &chunks).await;
    let last = events.last().unwrap();
    assert_eq!(last.name.as_deref(), Some("response.incomplete"));
    let last = last.json();
    assert_eq!(last["response"]["status"], "incomplete");
    assert_eq!(
        last["response"]["incomplete_details"]["reason"],
        "max_output_tokens"
    );
    assert_eq!(last["response"]["usage"]["output_tokens"], 1);
}

#[tokio::test]
async fn legacy_completions_stream_and_non_stream() {
    let mock = Mock::start().await;
    let body = json!({"model": "gpt-3.5-turbo-instruct", "prompt": "one two three"});
    let (status, plain) = mock.post_json("/v1/completions", &body, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(plain["object"], "text_completion");
    assert_eq!(plain["choices"][0]["finish_reason"], "stop");
    assert_eq!(plain["usage"]["prompt_tokens"], 3);
    assert_eq!(plain["usage"]["completion_tokens"], 8);

    let body = json!({"model": "m", "prompt": "one two three", "stream": true,
        "stream_options": {"include_usage": true}});
    let (_, events) = mock
        .post_sse("/v1/completions", &body, &[("x-mock-chunks", "2")])
        .await;
    // 2 content chunks, finish chunk, usage chunk, [DONE].
    assert_eq!(events.len(), 5);
    let first = events[0].json();
    assert_eq!(first["object"], "text_completion");
    assert_eq!(first["choices"][0]["text"], "tok0 ");
    assert!(first["usage"].is_null());
    let usage = events[3].json();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 3);
    assert_eq!(usage["usage"]["completion_tokens"], 2);
    assert_eq!(events[4].data, "[DONE]");
}

#[tokio::test]
async fn embeddings_float_and_base64() {
    let mock = Mock::start().await;
    let body = json!({"model": "text-embedding-3-small", "input": ["a b", "c"]});
    let (_, floats) = mock.post_json("/v1/embeddings", &body, &[]).await;
    assert_eq!(floats["object"], "list");
    assert_eq!(
        floats["usage"],
        json!({"prompt_tokens": 3, "total_tokens": 3})
    );
    let data = floats["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["index"], 1);
    assert_eq!(data[0]["object"], "embedding");
    let v0: Vec<f64> = serde_json::from_value(data[0]["embedding"].clone()).unwrap();
    assert_eq!(v0.len(), 8);

    let mut b64 = body.clone();
    b64["encoding_format"] = json!("base64");
    let (_, encoded) = mock
        .post_json("/v1/embeddings", &b64, &[("x-mock-dims", "8")])
        .await;
    let s = encoded["data"][0]["embedding"].as_str().unwrap();
    // 8 little-endian f32 values are 32 bytes, which base64 turns into 44 characters.
    assert_eq!(s.len(), 44);
    let again = mock.post_json("/v1/embeddings", &b64, &[]).await;
    assert_eq!(again.1["data"][0]["embedding"], s);

    let (_, wide) = mock
        .post_json(
            "/v1/embeddings",
            &json!({"model": "m", "input": "x"}),
            &[("x-mock-dims", "3")],
        )
        .await;
    assert_eq!(wide["data"][0]["embedding"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn responses_stream_event_sequence() {
    let mock = Mock::start().await;
    let body = json!({"model": "gpt-4.1", "instructions": "be nice", "input": "hello world", "stream": true});
    let headers = [
        ("x-mock-chunks", "2"),
        ("x-mock-cached-tokens", "3"),
        ("x-mock-reasoning-tokens", "4"),
    ];
    let (_, events) = mock.post_sse("/v1/responses", &body, &headers).await;
    let names: Vec<&str> = events.iter().map(|e| e.name.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (i, e) in events.iter().enumerate() {
        let v = e.json();
        assert_eq!(v["type"], names[i]);
        assert_eq!(v["sequence_number"], i);
    }
    assert_eq!(events[4].json()["delta"], "tok0 ");
    assert_eq!(events[6].json()["text"], "tok0 tok1 ");
    let done = events[9].json();
    assert_eq!(done["response"]["status"], "completed");
    // "be nice" and "hello world" are two messages of 2 words each.
    assert_eq!(
        done["response"]["usage"],
        json!({
            "input_tokens": 10,
            "input_tokens_details": {"cached_tokens": 3},
            "output_tokens": 6,
            "output_tokens_details": {"reasoning_tokens": 4},
            "total_tokens": 16,
        })
    );
    assert_eq!(
        done["response"]["output"][0]["content"][0]["text"],
        "tok0 tok1 "
    );
}

#[tokio::test]
async fn responses_non_stream() {
    let mock = Mock::start().await;
    let body = json!({"model": "gpt-4.1", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "a b c"}]}
    ]});
    let (status, resp) = mock.post_json("/v1/responses", &body, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(resp["object"], "response");
    assert_eq!(resp["status"], "completed");
    assert_eq!(resp["output"][0]["type"], "message");
    assert_eq!(resp["usage"]["input_tokens"], 6);
    assert_eq!(resp["usage"]["output_tokens"], 8);
    assert_eq!(resp["usage"]["total_tokens"], 14);
}

#[tokio::test]
async fn anthropic_stream_event_sequence() {
    let mock = Mock::start().await;
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "system": "be brief",
        "messages": [{"role": "user", "content": "hello"}], "stream": true});
    let headers = [
        ("x-mock-chunks", "3"),
        ("x-mock-cached-tokens", "5"),
        ("x-mock-cache-write-tokens", "6"),
    ];
    let (_, events) = mock.post_sse("/v1/messages", &body, &headers).await;
    let names: Vec<&str> = events.iter().map(|e| e.name.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    for e in &events {
        assert_eq!(e.json()["type"].as_str(), e.name.as_deref());
    }
    let start = events[0].json();
    assert_eq!(
        start["message"]["usage"],
        json!({"input_tokens": 9, "cache_creation_input_tokens": 6,
            "cache_read_input_tokens": 5, "output_tokens": 1})
    );
    assert_eq!(
        events[3].json()["delta"],
        json!({"type": "text_delta", "text": "tok0 "})
    );
    let delta = events[7].json();
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 3);

    let record = only_record(&mock).await;
    assert_eq!(record.usage.unwrap().cache_write_tokens, 6);
    assert_eq!(record.chunks_sent, 9);
}

#[tokio::test]
async fn anthropic_non_stream_and_count_tokens() {
    let mock = Mock::start().await;
    let body = json!({"model": "claude", "max_tokens": 100,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "one two"}]}]});
    let (_, msg) = mock.post_json("/v1/messages", &body, &[]).await;
    assert_eq!(msg["type"], "message");
    assert_eq!(msg["content"][0]["type"], "text");
    assert_eq!(msg["stop_reason"], "end_turn");
    assert_eq!(
        msg["usage"],
        json!({"input_tokens": 5, "output_tokens": 8,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0})
    );
    let (_, count) = mock
        .post_json("/v1/messages/count_tokens", &body, &[])
        .await;
    assert_eq!(count, json!({"input_tokens": 5}));
}

#[tokio::test]
async fn models_in_both_shapes() {
    let mock = Mock::start().await;
    let openai: Value = mock.get_json("/v1/models", &[]).await;
    assert_eq!(openai["object"], "list");
    assert_eq!(openai["data"][0]["object"], "model");
    let anthropic: Value = mock
        .get_json("/v1/models", &[("anthropic-version", "2023-06-01")])
        .await;
    assert_eq!(anthropic["data"][0]["type"], "model");
    assert_eq!(anthropic["has_more"], false);
}
