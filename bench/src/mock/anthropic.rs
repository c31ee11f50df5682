//! Anthropic Messages (`POST /v1/messages`) and token counting
//! (`POST /v1/messages/count_tokens`).
//!
//! Anthropic's `input_tokens` excludes cache reads and writes, so the cache headers add to
//! the prompt here instead of being carved out of it as on the OpenAI side.

use std::fmt::Write as _;

use bytes::BufMut;
use serde_json::{json, Value};

use super::faults::MockError;
use super::record::MockUsage;
use super::reply::{require_model, wants_stream, Ctx, HandlerResult, Reply};
use super::tokens;

fn usage_for(ctx: &Ctx, input: u64, chunks: usize) -> MockUsage {
    let c = &ctx.controls;
    MockUsage {
        input_tokens: input,
        output_tokens: (chunks as u64).saturating_add(c.reasoning_tokens),
        cached_tokens: c.cached_tokens,
        cache_write_tokens: c.cache_write_tokens,
        reasoning_tokens: c.reasoning_tokens,
    }
}

fn usage_json(u: &MockUsage, output_tokens: u64) -> Value {
    json!({
        "input_tokens": u.input_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cached_tokens,
        "output_tokens": output_tokens,
    })
}

fn validate(body: &Value) -> Result<String, MockError> {
    let model = require_model(body, "model: Field required")?;
    if !body.get("messages").is_some_and(Value::is_array) {
        return Err(MockError::bad_request(
            "messages: Field required",
            Some("messages"),
        ));
    }
    Ok(model)
}

/// `POST /v1/messages`.
pub fn messages(ctx: &Ctx, body: &Value) -> HandlerResult {
    let model = validate(body)?;
    let input = tokens::anthropic_input(body);
    let (chunks, capped) = ctx
        .controls
        .content_chunks(tokens::cap(body, &["max_tokens"]));
    let stop_reason = if capped { "max_tokens" } else { "end_turn" };
    let usage = usage_for(ctx, input, chunks);
    let id = format!("msg_mock{}", ctx.seq);
    if !wants_stream(body) {
        let text = tokens::full_text(chunks, ctx.controls.chunk_bytes);
        let body = json!({
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": stop_reason,
            "stop_sequence": null,
            "usage": usage_json(&usage, usage.output_tokens),
        });
        return Ok(Reply::Json {
            body,
            usage: Some(usage),
        });
    }

    let mut sse = ctx.sse(chunks + 7, 110);
    // The first output token is already counted in message_start, as the real API does.
    let start = json!({
        "type": "message_start",
        "message": {
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": usage_json(&usage, 1),
        },
    });
    sse.event(Some("message_start"), ctx.first_delay(), &start);
    sse.raw(
        Some("content_block_start"),
        None,
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    );
    sse.raw(Some("ping"), None, r#"{"type": "ping"}"#);
    for i in 0..chunks {
        let buf = sse
            .begin(Some("content_block_delta"), ctx.chunk_delay(i))
            .buf();
        buf.put_slice(
            br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":""#,
        );
        tokens::write_chunk_text(buf, i, ctx.controls.chunk_bytes);
        buf.put_slice(br#""}}"#);
        sse.end();
    }
    sse.raw(
        Some("content_block_stop"),
        None,
        r#"{"type":"content_block_stop","index":0}"#,
    );
    let buf = sse.begin(Some("message_delta"), None).buf();
    let _ = write!(
        buf,
        r#"{{"type":"message_delta","delta":{{"stop_reason":"{stop_reason}","stop_sequence":null}},"usage":{{"output_tokens":{}}}}}"#,
        usage.output_tokens
    );
    sse.end();
    sse.raw(Some("message_stop"), None, r#"{"type":"message_stop"}"#);
    Ok(Reply::Stream {
        rendered: sse.finish(),
        usage,
    })
}

/// `POST /v1/messages/count_tokens`: the same count `messages` would report. Nothing is
/// billed, so no usage is recorded.
pub fn count_tokens(body: &Value) -> HandlerResult {
    validate(body)?;
    Ok(Reply::Json {
        body: json!({"input_tokens": tokens::anthropic_input(body)}),
        usage: None,
    })
}
