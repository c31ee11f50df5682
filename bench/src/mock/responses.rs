//! The OpenAI Responses API (`POST /v1/responses`), streamed and not.
//!
//! The stream follows the documented event order for a single text message, and every
//! event carries `type` and a `sequence_number` counting from zero, which the SDKs use to
//! rebuild the response snapshot. A reply cut short by `max_output_tokens` ends with
//! `response.incomplete`, as the real API does, instead of `response.completed`.

use std::fmt::Write as _;
use std::time::Duration;

use bytes::BufMut;
use serde_json::{json, Map, Value};

use super::record::MockUsage;
use super::reply::{require_model, wants_stream, Ctx, HandlerResult, Reply};
use super::stream::SseBuilder;
use super::tokens;

/// The Responses usage object.
pub fn usage_json(u: &MockUsage) -> Value {
    json!({
        "input_tokens": u.input_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.input_tokens.saturating_add(u.output_tokens),
    })
}

/// Request fields the real API echoes back, with its defaults when absent.
/// Builds the value a field takes when the request leaves it out.
type DefaultValue = fn() -> Value;

const ECHOED: &[(&str, DefaultValue)] = &[
    ("instructions", || Value::Null),
    ("max_output_tokens", || Value::Null),
    ("metadata", || json!({})),
    ("parallel_tool_calls", || json!(true)),
    ("previous_response_id", || Value::Null),
    ("reasoning", || json!({"effort": null, "summary": null})),
    ("store", || json!(true)),
    ("temperature", || json!(1.0)),
    ("text", || json!({"format": {"type": "text"}})),
    ("tool_choice", || json!("auto")),
    ("tools", || json!([])),
    ("top_p", || json!(1.0)),
    ("truncation", || json!("disabled")),
    ("user", || Value::Null),
];

struct Shape<'a> {
    id: String,
    msg_id: String,
    model: &'a str,
    created: u64,
    echoed: Map<String, Value>,
}

impl Shape<'_> {
    /// The response object in a given state; `output` and `usage` are empty until the end.
    fn response(
        &self,
        status: &str,
        output: Value,
        usage: Option<&MockUsage>,
        capped: bool,
    ) -> Value {
        let mut obj = Map::new();
        obj.insert("id".into(), json!(self.id));
        obj.insert("object".into(), json!("response"));
        obj.insert("created_at".into(), json!(self.created));
        obj.insert("status".into(), json!(status));
        obj.insert("background".into(), json!(false));
        obj.insert("error".into(), Value::Null);
        let incomplete = if capped && status == "incomplete" {
            json!({"reason": "max_output_tokens"})
        } else {
            Value::Null
        };
        obj.insert("incomplete_details".into(), incomplete);
        obj.insert("model".into(), json!(self.model));
        obj.insert("output".into(), output);
        obj.insert("service_tier".into(), json!("default"));
        obj.extend(self.echoed.clone());
        obj.insert("usage".into(), usage.map_or(Value::Null, usage_json));
        Value::Object(obj)
    }

    fn part(text: &str) -> Value {
        json!({"type": "output_text", "annotations": [], "logprobs": [], "text": text})
    }

    fn message(&self, status: &str, content: Value) -> Value {
        json!({"id": self.msg_id, "type": "message", "status": status, "role": "assistant", "content": content})
    }
}

/// `POST /v1/responses`.
pub fn responses(ctx: &Ctx, body: &Value) -> HandlerResult {
    let model = require_model(body, "you must provide a model parameter")?;
    let input = tokens::responses_input(body);
    let (chunks, capped) = ctx
        .controls
        .content_chunks(tokens::cap(body, &["max_output_tokens"]));
    let usage = ctx.openai_usage(input, chunks);
    let echoed = ECHOED
        .iter()
        .map(|(k, default)| {
            (
                (*k).to_owned(),
                body.get(*k).cloned().unwrap_or_else(default),
            )
        })
        .collect();
    let shape = Shape {
        id: format!("resp_mock{}", ctx.seq),
        msg_id: format!("msg_mock{}", ctx.seq),
        model: &model,
        created: ctx.created,
        echoed,
    };
    let (status, item_status) = if capped {
        ("incomplete", "incomplete")
    } else {
        ("completed", "completed")
    };
    let text = tokens::full_text(chunks, ctx.controls.chunk_bytes);
    let final_message = shape.message(item_status, json!([Shape::part(&text)]));
    if !wants_stream(body) {
        let body = shape.response(status, json!([final_message]), Some(&usage), capped);
        return Ok(Reply::Json {
            body,
            usage: Some(usage),
        });
    }

    let mut out = Emitter {
        sse: ctx.sse(chunks + 10, 160 + shape.msg_id.len()),
        seq: 0,
    };
    let in_progress = shape.response("in_progress", json!([]), None, false);
    out.emit(
        "response.created",
        ctx.first_delay(),
        json!({"response": in_progress}),
    );
    out.emit(
        "response.in_progress",
        None,
        json!({"response": in_progress}),
    );
    let item = shape.message("in_progress", json!([]));
    out.emit(
        "response.output_item.added",
        None,
        json!({"output_index": 0, "item": item}),
    );
    let at = |extra: Value| {
        let mut v = json!({"item_id": shape.msg_id, "output_index": 0, "content_index": 0});
        if let (Some(obj), Value::Object(extra)) = (v.as_object_mut(), extra) {
            obj.extend(extra);
        }
        v
    };
    out.emit(
        "response.content_part.added",
        None,
        at(json!({"part": Shape::part("")})),
    );
    for i in 0..chunks {
        out.text_delta(
            &shape.msg_id,
            i,
            ctx.chunk_delay(i),
            ctx.controls.chunk_bytes,
        );
    }
    out.emit(
        "response.output_text.done",
        None,
        at(json!({"text": text, "logprobs": []})),
    );
    out.emit(
        "response.content_part.done",
        None,
        at(json!({"part": Shape::part(&text)})),
    );
    out.emit(
        "response.output_item.done",
        None,
        json!({"output_index": 0, "item": final_message}),
    );
    let done = shape.response(status, json!([final_message]), Some(&usage), capped);
    let last = if capped {
        "response.incomplete"
    } else {
        "response.completed"
    };
    out.emit(last, None, json!({"response": done}));
    Ok(Reply::Stream {
        rendered: out.sse.finish(),
        usage,
    })
}

/// Writes events and numbers them.
struct Emitter {
    sse: SseBuilder,
    seq: u64,
}

impl Emitter {
    fn emit(&mut self, name: &str, delay: Option<Duration>, mut data: Value) {
        if let Some(obj) = data.as_object_mut() {
            obj.insert("type".into(), json!(name));
            obj.insert("sequence_number".into(), json!(self.seq));
        }
        self.seq += 1;
        self.sse.event(Some(name), delay, &data);
    }

    /// Text deltas are the repeated part of the stream, so they are written by hand; the
    /// item id and chunk text are plain ASCII and need no escaping.
    fn text_delta(
        &mut self,
        item_id: &str,
        i: usize,
        delay: Option<Duration>,
        bytes: Option<usize>,
    ) {
        const NAME: &str = "response.output_text.delta";
        let buf = self.sse.begin(Some(NAME), delay).buf();
        let _ = write!(
            buf,
            r#"{{"type":"{NAME}","sequence_number":{},"item_id":"{item_id}","output_index":0,"content_index":0,"delta":""#,
            self.seq
        );
        tokens::write_chunk_text(buf, i, bytes);
        buf.put_slice(br#"","logprobs":[]}"#);
        self.sse.end();
        self.seq += 1;
    }
}
