//! Accounting for the SSE events of each streaming shape: which events carry usage, which count
//! as content deltas, and which one is the OpenAI usage-only chunk that strip mode removes.
//!
//! Most events are content deltas that never need JSON parsing: they are recognised by their
//! event type or by a `memmem` probe of the data, and only the few events that can carry usage
//! are parsed, with small lenient structs that skip everything else.

use std::sync::OnceLock;

use memchr::memmem::Finder;
use serde::Deserialize;

use super::counts::{AnthropicAcc, Lenient, RawUsage, SeqLen};
use super::failure;
use super::responses::ResponsesUsage;
use super::Observed;
use crate::api::Api;
use crate::sse::SseEvent;

/// Any object with a `usage` member: an OpenAI chunk, an Anthropic `message` or
/// `message_delta`. `choices` is only present in OpenAI chunks.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WithUsage {
    usage: Lenient<RawUsage>,
    choices: SeqLen,
}

/// The envelope of Anthropic `message_start` (`message`) events.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Envelope {
    message: Lenient<WithUsage>,
}

/// The JSON keys the event scanners look for (here and in [`failure`]), built once per process;
/// `memmem` setup is not free and events are many.
pub(super) struct Keys {
    pub(super) delta: Finder<'static>,
    pub(super) content: Finder<'static>,
    pub(super) text: Finder<'static>,
    pub(super) kind: Finder<'static>,
    pub(super) error: Finder<'static>,
    pub(super) code: Finder<'static>,
}

pub(super) fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        delta: Finder::new(b"\"delta\""),
        content: Finder::new(b"\"content\""),
        text: Finder::new(b"\"text\""),
        kind: Finder::new(b"\"type\""),
        error: Finder::new(b"\"error\""),
        code: Finder::new(b"\"code\""),
    })
}

pub(crate) fn skip_ws(bytes: &[u8]) -> &[u8] {
    let n = bytes
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .count();
    bytes.get(n..).unwrap_or_default()
}

/// The raw text following each `"key":` in `data`, whitespace skipped. Unescaped `"key"` followed
/// by a colon can only be an object key in JSON, so this never looks inside string values.
fn values<'d>(key: &'d Finder<'static>, data: &'d [u8]) -> impl Iterator<Item = &'d [u8]> + 'd {
    key.find_iter(data).filter_map(move |at| {
        let rest = data.get(at + key.needle().len()..)?;
        Some(skip_ws(skip_ws(rest).strip_prefix(b":")?))
    })
}

/// Whether `data` has a `"usage"` key holding an object (as opposed to `null` on every chunk).
fn has_usage_object(data: &[u8]) -> bool {
    values(super::json::finder(), data).any(|v| v.first() == Some(&b'{'))
}

/// The first `"type"` string of the data, used when the SSE `event:` line is missing.
fn json_type(data: &[u8]) -> &[u8] {
    let Some(v) = values(&keys().kind, data)
        .next()
        .and_then(|v| v.strip_prefix(b"\""))
    else {
        return b"";
    };
    v.get(..memchr::memchr(b'"', v).unwrap_or(0))
        .unwrap_or_default()
}

/// The final Responses events, which carry usage.
fn responses_final(event: &[u8]) -> bool {
    matches!(
        event,
        b"response.completed" | b"response.incomplete" | b"response.failed"
    )
}

fn parse<'d, T: Deserialize<'d> + Default>(data: &'d [u8]) -> T {
    serde_json::from_slice(data).unwrap_or_default()
}

/// Applies one event to the running tally. Returns true for an OpenAI usage-only chunk (usage
/// present, no choices), the one that strip mode removes.
pub(crate) fn on_event(
    shape: Api,
    ev: &SseEvent<'_>,
    obs: &mut Observed,
    anthropic: &mut AnthropicAcc,
    responses: Option<&mut ResponsesUsage>,
) -> bool {
    // A truncated event's JSON is cut short and cannot parse; it still counts as a delta below.
    let data = if ev.truncated {
        b"".as_slice()
    } else {
        ev.data
    };
    // Only the typed APIs need the type; without an `event:` line it is the JSON `type`, which
    // comes first and so survives truncation.
    let kind = || {
        if ev.event == b"message" {
            json_type(ev.data)
        } else {
            ev.event
        }
    };
    match shape {
        Api::ChatCompletions | Api::Completions => openai(shape, ev.data, data, obs),
        Api::Responses => {
            let kind = kind();
            if kind.ends_with(b".delta") {
                obs.delta_events = obs.delta_events.saturating_add(1);
            }
            if kind == b"error" || kind == b"response.failed" {
                // The error event comes first and names the failure best; keep it.
                let fallback: &[u8] = kind;
                obs.stream_error = obs
                    .stream_error
                    .or_else(|| Some(failure::reported(ev.data, fallback)));
            }
            let is_final = responses_final(kind);
            if let Some(usage) = responses.and_then(|r| r.on_event(ev.start, ev.end, is_final)) {
                obs.usage = usage;
                obs.final_usage_seen = true;
                obs.input_known = true;
            }
            false
        }
        Api::Messages => {
            match kind() {
                b"content_block_delta" => obs.delta_events = obs.delta_events.saturating_add(1),
                b"message_start" => {
                    let envelope: Envelope = parse(data);
                    if let Some(raw) = envelope.message.0.and_then(|m| m.usage.0) {
                        *anthropic = anthropic.merged(&raw);
                    }
                }
                b"message_delta" => {
                    let delta: WithUsage = parse(data);
                    if let Some(raw) = delta.usage.0.filter(RawUsage::has_counts) {
                        *anthropic = anthropic.merged(&raw);
                        obs.final_usage_seen = true;
                    }
                }
                b"error" => {
                    obs.stream_error = obs
                        .stream_error
                        .or_else(|| Some(failure::reported(ev.data, b"error")));
                }
                _ => {}
            }
            obs.input_known = anthropic.input_known();
            obs.usage = anthropic.usage();
            false
        }
        Api::Embeddings | Api::CountTokens | Api::Models => false,
    }
}

/// OpenAI chat and completions chunks: usage is in the chunk with a non-null `usage` (normally
/// the last one before `[DONE]`, with `"choices":[]`; some servers put it on the final content
/// chunk instead); everything with non-empty content counts as a delta.
fn openai(shape: Api, raw_data: &[u8], data: &[u8], obs: &mut Observed) -> bool {
    if data == b"[DONE]" {
        return false;
    }
    if has_usage_object(data) {
        let chunk: WithUsage = parse(data);
        if let Some(raw) = chunk.usage.0.filter(RawUsage::has_counts) {
            obs.usage = raw.normalise(shape);
            obs.final_usage_seen = true;
            obs.input_known = true;
            if chunk.choices.0.unwrap_or(0) == 0 {
                return true;
            }
        }
    }
    let k = keys();
    let content_bearing = if shape == Api::ChatCompletions {
        // The role-only first chunk has `"content":""` and the last has `"delta":{}`.
        // Only the first `"content"` after the delta matters, which keeps this to short scans.
        k.delta.find(raw_data).is_some_and(|at| {
            let delta = raw_data.get(at..).unwrap_or_default();
            let non_empty = values(&k.delta, delta).next().is_some_and(|v| {
                v.first() == Some(&b'{')
                    && skip_ws(v.get(1..).unwrap_or_default()).first() != Some(&b'}')
            });
            non_empty
                && !values(&k.content, delta)
                    .next()
                    .is_some_and(|v| v.starts_with(b"\"\""))
        })
    } else {
        values(&k.text, raw_data)
            .next()
            .is_some_and(|v| v.first() == Some(&b'"') && v.get(1) != Some(&b'"'))
    };
    if content_bearing {
        obs.delta_events = obs.delta_events.saturating_add(1);
    }
    false
}
