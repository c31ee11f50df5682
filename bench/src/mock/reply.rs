//! What an endpoint handler returns, and the per-request context handlers share.

use std::time::Duration;

use serde_json::Value;

use super::control::Controls;
use super::faults::MockError;
use super::record::MockUsage;
use super::stream::{Rendered, SseBuilder};

/// Per-request inputs every handler needs besides the body.
pub struct Ctx {
    pub controls: Controls,
    /// The record id; used to build unique, stable response ids.
    pub seq: u64,
    /// Unix seconds for `created` fields.
    pub created: u64,
}

impl Ctx {
    /// A builder sized for `events` events of roughly `per_event` bytes.
    pub fn sse(&self, events: usize, per_event: usize) -> SseBuilder {
        let text = self.controls.chunk_bytes.unwrap_or(8);
        SseBuilder::new(
            self.controls.line_ending,
            events.saturating_mul(per_event.saturating_add(text)),
        )
    }

    /// The pause before the first event of a stream (`x-mock-ttft-ms`).
    pub fn first_delay(&self) -> Option<Duration> {
        self.controls.ttft
    }

    /// The pause before content chunk `i`: `x-mock-gap-ms` between chunks, none before the
    /// first one (its wait is the time to first token).
    pub fn chunk_delay(&self, i: usize) -> Option<Duration> {
        if i == 0 {
            None
        } else {
            self.controls.gap
        }
    }

    /// OpenAI-style usage: cached tokens are a subset of the prompt, reasoning tokens are
    /// part of the completion.
    pub fn openai_usage(&self, input: u64, content_chunks: usize) -> MockUsage {
        let c = &self.controls;
        MockUsage {
            input_tokens: input,
            output_tokens: (content_chunks as u64).saturating_add(c.reasoning_tokens),
            cached_tokens: c.cached_tokens.min(input),
            cache_write_tokens: 0,
            reasoning_tokens: c.reasoning_tokens,
        }
    }
}

/// A successful reply before it becomes an HTTP response.
pub enum Reply {
    /// A JSON body with status 200.
    Json {
        body: Value,
        usage: Option<MockUsage>,
    },
    /// An SSE stream.
    Stream {
        rendered: Rendered,
        usage: MockUsage,
    },
}

pub type HandlerResult = Result<Reply, MockError>;

/// The `model` field, required by both providers.
pub fn require_model(body: &Value, flavor_message: &str) -> Result<String, MockError> {
    body.get("model")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| MockError::bad_request(flavor_message, Some("model")))
}

/// Whether the body asks for `"stream": true`.
pub fn wants_stream(body: &Value) -> bool {
    body.get("stream").and_then(Value::as_bool) == Some(true)
}
