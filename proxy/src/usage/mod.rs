//! Token usage extraction from provider responses, streamed or not, without touching the bytes
//! forwarded to the client (except in strip mode, see below).
//!
//! # Normalisation
//! Every shape is reduced to one [`Usage`]:
//! - `input_tokens`: all prompt tokens, cached and cache writes included. OpenAI `prompt_tokens`
//!   and Responses `input_tokens` already include cached tokens; for Anthropic it is
//!   `input_tokens + cache_creation_input_tokens + cache_read_input_tokens`.
//! - `cached_tokens`: cache reads: `prompt_tokens_details.cached_tokens` (chat, completions),
//!   `input_tokens_details.cached_tokens` (Responses), `cache_read_input_tokens` (Anthropic).
//! - `cache_write_tokens`: Anthropic `cache_creation_input_tokens`, Responses
//!   `input_tokens_details.cache_write_tokens` (part of its `input_tokens`); zero elsewhere.
//! - `output_tokens`: all generated tokens, reasoning included (`completion_tokens`,
//!   Responses/Anthropic `output_tokens`).
//! - `reasoning_tokens`: `completion_tokens_details.reasoning_tokens`,
//!   `output_tokens_details.reasoning_tokens`, or Anthropic's
//!   `output_tokens_details.thinking_tokens` (newer responses only).
//! - Anthropic `usage.iterations[]` (compaction): the billed usage is the sum over the
//!   iterations, so input, cache and output counts are the sums (see [`iterations`]); the
//!   top-level counts of such a report cover only the last iteration.
//!
//! Counts are read leniently: a negative, non-numeric or null count is absent, a float or an
//! integer beyond `u64` saturates, sums saturate, and a `"usage"` object without any top-level
//! count is not a usage report. An OpenAI-family object using the other family's names
//! (`input_tokens` on a chat completion) is accepted as a fallback.
//!
//! # Where usage is found
//! - Streams are scanned with [`SseScanner`]: OpenAI chat/completions take the chunk whose
//!   `usage` is an object; Responses take the usage object inside `response.completed|incomplete|
//!   failed`, found in the raw stream by the same incremental finder as non-streamed bodies, so
//!   the final event (which repeats the whole output) is never buffered (see [`responses`]);
//!   Anthropic merges `message_start` (input and cache counts) with the latest cumulative
//!   `message_delta`. An event over the scanner's bound (1 MiB) is observed only partially: it
//!   still counts as a delta but yields no usage. Responses events are counted by type, so the
//!   scanner keeps just the start of their data.
//! - Non-streamed bodies go through an incremental `"usage": {...}` finder that never buffers
//!   the body; the last object carrying counts wins. `count_tokens` bodies (a few bytes) are
//!   buffered up to 4 KiB; they cost nothing, so usage stays zero and the count is reported
//!   separately in [`Observed::counted_input_tokens`].
//!
//! # Failures and encodings
//! A failure the provider reports inside a 200 stream (Anthropic `event: error`, Responses
//! `error` / `response.failed`) is kept as [`Observed::stream_error`] (see [`failure`]). A
//! gzip-encoded response is observed through a bounded streaming decoder on the side (see
//! [`gzip`]); the forwarded bytes stay the provider's.
//!
//! # Strip mode
//! When sluice itself added `stream_options.include_usage`, the usage-only chunk (usage object,
//! empty or absent `choices`) is cut from OpenAI chat/completions streams by its exact byte
//! range; a chunk that also carries content is kept. Complete events are forwarded at once; an
//! unfinished one is held (as zero-copy `Bytes` slices) until it ends, or until it exceeds about
//! 1 MiB, when it is forwarded as is since it cannot be a parseable usage chunk. Everything held
//! is flushed at end of stream.

mod counts;
mod failure;
mod gzip;
mod iterations;
mod json;
mod responses;
mod stream;
mod strip;

#[cfg(test)]
mod fidelity_tests;
#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use bytes::Bytes;
use serde::Deserialize;

use crate::api::Api;
use crate::sse::{SseEvent, SseScanner, DEFAULT_MAX_EVENT_BYTES};
use counts::{AnthropicAcc, Count, RawUsage};
use gzip::GzipObserver;
use json::JsonUsage;
use responses::ResponsesUsage;
use strip::Stripper;

pub use failure::{ReportedError, MAX_ERROR_NAME};

/// Normalised token usage of one response (see the module documentation for the rules).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
}

/// What a response revealed about its cost so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Observed {
    pub usage: Usage,
    /// The provider's final usage report arrived (for Anthropic: a `message_delta` with usage).
    pub final_usage_seen: bool,
    /// Content-bearing delta events, to estimate output when a stream is cut short.
    pub delta_events: u64,
    /// `usage.input_tokens` comes from the provider rather than being unknown (zero).
    pub input_known: bool,
    /// The `input_tokens` answer of a `count_tokens` call, which is not itself billed.
    pub counted_input_tokens: Option<u64>,
    /// A failure the provider reported inside a successful stream (see [`failure`]).
    pub stream_error: Option<ReportedError>,
}

/// `count_tokens` answers are tiny; anything larger is not one and is ignored.
const MAX_COUNT_TOKENS_BODY: usize = 4096;

/// Data kept of each Responses event: the start, where the JSON `type` is (for streams without
/// `event:` lines). Usage is found in the raw stream instead (see [`responses`]), so the final
/// event, which repeats the whole output, is never buffered.
const RESPONSES_EVENT_PREFIX: usize = 256;

/// Strip mode holds back an unfinished event; one this big (data bound plus room for comment
/// lines) is no usage chunk, so it is forwarded instead of held.
const MAX_STRIP_HELD: u64 = DEFAULT_MAX_EVENT_BYTES as u64 + (64 << 10);

#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "one per request, held in place for its whole life; boxing the SSE variant would add an allocation to every stream"
)]
enum Body {
    Sse {
        scanner: SseScanner,
        strip: Option<Stripper>,
        /// Responses streams only.
        responses: Option<ResponsesUsage>,
    },
    Json(JsonUsage),
    CountTokens(Vec<u8>),
    /// A gzip-encoded response: an observer of the decoded body, fed on the side.
    Gzip(Box<GzipObserver>),
}

/// Observes one response body as Pingora's body filter hands it over, chunk by chunk.
#[derive(Debug)]
pub struct UsageObserver {
    shape: Api,
    observed: Observed,
    anthropic: AnthropicAcc,
    body: Body,
}

impl UsageObserver {
    /// `stream`: the response is SSE; `strip_usage_chunk`: sluice injected
    /// `stream_options.include_usage` upstream, so the usage-only chunk must be removed from what
    /// the client gets. Strip mode only applies to OpenAI chat and completions streams.
    pub fn new(shape: Api, stream: bool, strip_usage_chunk: bool) -> Self {
        let body = match shape {
            Api::CountTokens => Body::CountTokens(Vec::new()),
            Api::Embeddings => Body::Json(JsonUsage::new()),
            _ if !stream => Body::Json(JsonUsage::new()),
            _ => {
                let openai = matches!(shape, Api::ChatCompletions | Api::Completions);
                let responses = shape == Api::Responses;
                let max = if responses {
                    RESPONSES_EVENT_PREFIX
                } else {
                    DEFAULT_MAX_EVENT_BYTES
                };
                Body::Sse {
                    scanner: SseScanner::with_max_event_bytes(max),
                    strip: (openai && strip_usage_chunk).then(|| Stripper::new(MAX_STRIP_HELD)),
                    responses: responses.then(ResponsesUsage::new),
                }
            }
        };
        Self {
            shape,
            observed: Observed::default(),
            anthropic: AnthropicAcc::default(),
            body,
        }
    }

    /// An observer for a response whose `content-encoding` is gzip: usage is read through a
    /// streaming decoder on the side and the forwarded bytes are never changed, so strip mode
    /// is off (an event cannot be cut out of a compressed stream).
    pub fn gzip(shape: Api, stream: bool) -> Self {
        Self::gzip_capped(shape, stream, gzip::MAX_DECODED)
    }

    /// [`UsageObserver::gzip`] observing at most `cap` decoded bytes.
    fn gzip_capped(shape: Api, stream: bool, cap: u64) -> Self {
        let inner = Self::new(shape, stream, false);
        Self {
            shape,
            observed: Observed::default(),
            anthropic: AnthropicAcc::default(),
            body: Body::Gzip(Box::new(GzipObserver::with_cap(inner, cap))),
        }
    }

    /// Observes (and, only in strip mode, possibly rewrites) one body chunk in place.
    pub fn filter(&mut self, body: &mut Option<Bytes>, end_of_stream: bool) {
        let Self {
            shape,
            observed,
            anthropic,
            body: state,
        } = self;
        let shape = *shape;
        match state {
            Body::Sse {
                scanner,
                strip: None,
                responses,
            } => {
                if let Some(chunk) = body.as_ref() {
                    // The Responses finder is fed in step with the scanner: up to each event's
                    // end before that event is judged, never past it, so an object after the
                    // final event cannot replace the final event's usage, and what is found
                    // does not depend on where chunks end.
                    let base = scanner.offset();
                    let mut fed = 0usize;
                    scanner.feed(chunk, |ev| {
                        if let Some(r) = responses.as_mut() {
                            let upto = usize::try_from(ev.end.saturating_sub(base))
                                .unwrap_or(usize::MAX)
                                .min(chunk.len());
                            if upto > fed {
                                r.feed(&chunk[fed..upto], base + fed as u64);
                                fed = upto;
                            }
                        }
                        stream::on_event(shape, ev, observed, anthropic, responses.as_mut());
                    });
                    if let Some(r) = responses.as_mut().filter(|_| fed < chunk.len()) {
                        r.feed(&chunk[fed..], base + fed as u64);
                    }
                }
                if end_of_stream {
                    scanner.finish(|ev| {
                        stream::on_event(shape, ev, observed, anthropic, responses.as_mut());
                    });
                }
            }
            Body::Sse {
                scanner,
                strip: Some(stripper),
                responses: _,
            } => {
                let chunk = body.take();
                let base = scanner.offset();
                let mut on_event = |ev: &SseEvent<'_>| {
                    // Strip mode is for chat and completions only, never Responses.
                    if stream::on_event(shape, ev, observed, anthropic, None) {
                        stripper.cut(ev.start, ev.end);
                    }
                };
                if let Some(chunk) = chunk.as_ref() {
                    scanner.feed(chunk, &mut on_event);
                }
                if end_of_stream {
                    scanner.finish(&mut on_event);
                }
                let limit = if end_of_stream {
                    scanner.offset()
                } else {
                    scanner.boundary()
                };
                stripper.emit(body, chunk, base, limit, end_of_stream);
            }
            Body::Json(json) => {
                if let Some(chunk) = body.as_ref() {
                    json.feed(chunk, |object, _| {
                        if let Some(usage) = RawUsage::parse_counted(object, shape) {
                            observed.usage = usage;
                            observed.final_usage_seen = true;
                            observed.input_known = true;
                        }
                    });
                }
            }
            Body::Gzip(gzip) => gzip.feed(body.as_ref(), end_of_stream),
            Body::CountTokens(buf) => {
                if let Some(chunk) = body.as_ref() {
                    let room = MAX_COUNT_TOKENS_BODY.saturating_sub(buf.len());
                    buf.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
                }
                if end_of_stream {
                    observed.counted_input_tokens = count_tokens_answer(buf);
                    observed.final_usage_seen = observed.counted_input_tokens.is_some();
                    observed.input_known = observed.final_usage_seen;
                }
            }
        }
    }

    /// What the response revealed so far.
    pub fn report(&self) -> Observed {
        match &self.body {
            Body::Gzip(gzip) => gzip.inner().report(),
            _ => self.observed,
        }
    }
}

/// Whether a `content-encoding` value is gzip, the one encoding observed through a decoder
/// (anything else leaves the body unreadable and the usage estimated).
pub fn is_gzip(content_encoding: &[u8]) -> bool {
    let v = content_encoding.trim_ascii();
    v.eq_ignore_ascii_case(b"gzip") || v.eq_ignore_ascii_case(b"x-gzip")
}

/// Reads `{"input_tokens": N}`; anything else (an error body, say) yields nothing.
fn count_tokens_answer(body: &[u8]) -> Option<u64> {
    #[derive(Default, Deserialize)]
    #[serde(default)]
    struct Answer {
        input_tokens: Count,
    }
    serde_json::from_slice::<Answer>(body).ok()?.input_tokens.0
}
