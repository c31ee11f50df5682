//! OpenAI chat completions and legacy completions, streamed and not.
//!
//! Stream chunks are written by hand from a pre-escaped prefix because they are the hot,
//! repeated part of every streaming benchmark; one-off bodies go through `serde_json`.

use bytes::BufMut;
use serde_json::{json, Value};

use super::faults::MockError;
use super::record::MockUsage;
use super::reply::{require_model, wants_stream, Ctx, HandlerResult, Reply};
use super::stream::Rendered;
use super::tokens;

/// Reported as `system_fingerprint`, which SDKs expose but nothing interprets.
pub const FINGERPRINT: &str = "fp_mock";

const MISSING_MODEL: &str = "you must provide a model parameter";

/// The chat/completions usage object, with both detail objects that current models send.
pub fn usage_json(u: &MockUsage) -> Value {
    json!({
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens.saturating_add(u.output_tokens),
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": u.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    })
}

fn include_usage(body: &Value) -> bool {
    body.pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true)
}

/// How one OpenAI answer differs from the other: the id prefix, the chunk object name and the
/// choice shapes.
struct ChunkShape {
    /// The answer id before the request's sequence number.
    id_prefix: &'static str,
    object: &'static str,
    /// A choice sent before any content (chat's role announcement), if the shape has one.
    opening: Option<&'static str>,
    /// The choice JSON before and after the chunk text.
    content_open: &'static str,
    content_close: &'static str,
    /// The choice JSON of the finish chunk, before and after the finish reason.
    finish_open: &'static str,
    finish_close: &'static str,
}

const CHAT_SHAPE: ChunkShape = ChunkShape {
    id_prefix: "chatcmpl-mock",
    object: "chat.completion.chunk",
    opening: Some(
        r#"{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}"#,
    ),
    content_open: r#"{"index":0,"delta":{"content":""#,
    content_close: r#""},"logprobs":null,"finish_reason":null}"#,
    finish_open: r#"{"index":0,"delta":{},"logprobs":null,"finish_reason":""#,
    finish_close: r#""}"#,
};

const COMPLETION_SHAPE: ChunkShape = ChunkShape {
    id_prefix: "cmpl-mock",
    object: "text_completion",
    opening: None,
    content_open: r#"{"text":""#,
    content_close: r#"","index":0,"logprobs":null,"finish_reason":null}"#,
    finish_open: r#"{"text":"","index":0,"logprobs":null,"finish_reason":""#,
    finish_close: r#""}"#,
};

/// Everything a chunk stream needs besides its shape.
struct StreamPlan<'a> {
    id: &'a str,
    model: &'a str,
    chunks: usize,
    finish: &'static str,
    include_usage: bool,
    usage: &'a MockUsage,
}

/// Renders an OpenAI chunk stream: optional opening chunk, one chunk per content token, the
/// finish chunk, the usage-only chunk when asked for, then `[DONE]`.
fn render_stream(ctx: &Ctx, shape: &ChunkShape, plan: &StreamPlan<'_>) -> Rendered {
    // Escaping the model once keeps user input from ever breaking the hand-written JSON.
    let model = serde_json::to_string(plan.model).unwrap_or_else(|_| "\"\"".to_owned());
    let prefix = format!(
        r#"{{"id":"{}","object":"{}","created":{},"model":{},"service_tier":"default","system_fingerprint":"{}","choices":["#,
        plan.id, shape.object, ctx.created, model, FINGERPRINT
    );
    let suffix: &[u8] = if plan.include_usage {
        br#"],"usage":null}"#
    } else {
        b"]}"
    };
    let mut sse = ctx.sse(plan.chunks + 4, prefix.len() + 96);
    let mut first = ctx.first_delay();
    if let Some(opening) = shape.opening {
        let buf = sse.begin(None, first.take()).buf();
        buf.put_slice(prefix.as_bytes());
        buf.put_slice(opening.as_bytes());
        buf.put_slice(suffix);
        sse.end();
    }
    for i in 0..plan.chunks {
        let delay = first.take().or(ctx.chunk_delay(i));
        let buf = sse.begin(None, delay).buf();
        buf.put_slice(prefix.as_bytes());
        buf.put_slice(shape.content_open.as_bytes());
        tokens::write_chunk_text(buf, i, ctx.controls.chunk_bytes);
        buf.put_slice(shape.content_close.as_bytes());
        buf.put_slice(suffix);
        sse.end();
    }
    let buf = sse.begin(None, first.take()).buf();
    buf.put_slice(prefix.as_bytes());
    buf.put_slice(shape.finish_open.as_bytes());
    buf.put_slice(plan.finish.as_bytes());
    buf.put_slice(shape.finish_close.as_bytes());
    buf.put_slice(suffix);
    sse.end();
    if plan.include_usage {
        // The prefix ends inside `"choices":[`, so closing it here leaves an empty list.
        let buf = sse.begin(None, None).buf();
        buf.put_slice(prefix.as_bytes());
        buf.put_slice(br#"],"usage":"#);
        sse.json(&usage_json(plan.usage));
        sse.buf().put_slice(b"}");
        sse.end();
    }
    sse.raw(None, None, "[DONE]");
    sse.finish()
}

/// What a chat completion and a legacy completion share once the request is checked: content
/// up to the token cap (`cap_fields`, first present wins), the usage and the id, then either the
/// chunk stream in `shape` or the whole body that `whole` builds from the id, the text, the
/// finish reason and the usage object.
fn answer(
    ctx: &Ctx,
    body: &Value,
    input: u64,
    cap_fields: &[&str],
    shape: &ChunkShape,
    model: &str,
    whole: impl FnOnce(&str, String, &'static str, Value) -> Value,
) -> HandlerResult {
    let (chunks, capped) = ctx.controls.content_chunks(tokens::cap(body, cap_fields));
    let finish = if capped { "length" } else { "stop" };
    let usage = ctx.openai_usage(input, chunks);
    let id = format!("{}{}", shape.id_prefix, ctx.seq);
    if wants_stream(body) {
        let plan = StreamPlan {
            id: &id,
            model,
            chunks,
            finish,
            include_usage: include_usage(body),
            usage: &usage,
        };
        let rendered = render_stream(ctx, shape, &plan);
        return Ok(Reply::Stream { rendered, usage });
    }
    let text = tokens::full_text(chunks, ctx.controls.chunk_bytes);
    let body = whole(&id, text, finish, usage_json(&usage));
    Ok(Reply::Json {
        body,
        usage: Some(usage),
    })
}

/// `POST /v1/chat/completions`.
pub fn chat(ctx: &Ctx, body: &Value) -> HandlerResult {
    let model = require_model(body, MISSING_MODEL)?;
    if !body.get("messages").is_some_and(Value::is_array) {
        return Err(MockError::bad_request(
            "Missing required parameter: 'messages'.",
            Some("messages"),
        ));
    }
    let input = tokens::chat_input(body);
    let caps = ["max_completion_tokens", "max_tokens"];
    answer(
        ctx,
        body,
        input,
        &caps,
        &CHAT_SHAPE,
        &model,
        |id, text, finish, usage| {
            json!({
                "id": id,
                "object": "chat.completion",
                "created": ctx.created,
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": null, "annotations": []},
                    "logprobs": null,
                    "finish_reason": finish,
                }],
                "usage": usage,
                "service_tier": "default",
                "system_fingerprint": FINGERPRINT,
            })
        },
    )
}

/// `POST /v1/completions` (legacy text completions).
pub fn completions(ctx: &Ctx, body: &Value) -> HandlerResult {
    let model = require_model(body, MISSING_MODEL)?;
    if body.get("prompt").is_none() {
        return Err(MockError::bad_request(
            "Missing required parameter: 'prompt'.",
            Some("prompt"),
        ));
    }
    let input = tokens::prompt_items(body.get("prompt")).iter().sum();
    let caps = ["max_tokens"];
    answer(
        ctx,
        body,
        input,
        &caps,
        &COMPLETION_SHAPE,
        &model,
        |id, text, finish, usage| {
            json!({
                "id": id,
                "object": "text_completion",
                "created": ctx.created,
                "model": model,
                "system_fingerprint": FINGERPRINT,
                "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}],
                "usage": usage,
            })
        },
    )
}
