//! Unit tests of usage extraction against recorded provider responses and edge cases.

use bytes::Bytes;

use super::fixtures::*;
use super::{Observed, Usage, UsageObserver};
use crate::api::Api;

/// Feeds `chunks` through a fresh observer, ending with an empty end-of-stream call, and returns
/// what it reported and the bytes it forwarded.
pub(crate) fn run(shape: Api, stream: bool, strip: bool, chunks: &[&[u8]]) -> (Observed, Vec<u8>) {
    let mut observer = UsageObserver::new(shape, stream, strip);
    let mut out = Vec::new();
    for chunk in chunks {
        let mut body = Some(Bytes::copy_from_slice(chunk));
        observer.filter(&mut body, false);
        out.extend_from_slice(&body.expect("a chunk in always yields Some"));
    }
    let mut body = None;
    observer.filter(&mut body, true);
    out.extend_from_slice(body.as_deref().unwrap_or_default());
    (observer.report(), out)
}

fn whole(shape: Api, stream: bool, text: &str) -> Observed {
    run(shape, stream, false, &[text.as_bytes()]).0
}

/// A usage from its five counts, in field order.
pub(crate) fn usage(
    input: u64,
    output: u64,
    cached: u64,
    cache_write: u64,
    reasoning: u64,
) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        cached_tokens: cached,
        cache_write_tokens: cache_write,
        reasoning_tokens: reasoning,
    }
}

fn done(usage: Usage, delta_events: u64) -> Observed {
    Observed {
        usage,
        final_usage_seen: true,
        delta_events,
        input_known: true,
        counted_input_tokens: None,
        stream_error: None,
    }
}

#[test]
fn openai_chat_stream() {
    let obs = whole(Api::ChatCompletions, true, OPENAI_CHAT_STREAM);
    assert_eq!(obs, done(usage(1117, 46, 1024, 0, 0), 4));
}

#[test]
fn openai_completions_stream() {
    let obs = whole(Api::Completions, true, OPENAI_COMPLETIONS_STREAM);
    assert_eq!(obs, done(usage(5, 7, 0, 0, 0), 3));
}

#[test]
fn openai_responses_stream() {
    let obs = whole(Api::Responses, true, OPENAI_RESPONSES_STREAM);
    assert_eq!(obs, done(usage(1536, 210, 1280, 0, 192), 3));
}

#[test]
fn anthropic_stream_with_cache() {
    let obs = whole(Api::Messages, true, ANTHROPIC_STREAM);
    assert_eq!(obs, done(usage(12 + 2048 + 4096, 15, 4096, 2048, 0), 3));
}

#[test]
fn anthropic_stream_cut_before_message_delta_keeps_input() {
    let cut = ANTHROPIC_STREAM
        .find("event: content_block_stop")
        .expect("fixture has it");
    let obs = whole(Api::Messages, true, &ANTHROPIC_STREAM[..cut]);
    assert!(!obs.final_usage_seen && obs.input_known);
    assert_eq!(
        (
            obs.usage.input_tokens,
            obs.usage.output_tokens,
            obs.delta_events
        ),
        (6156, 1, 3)
    );
}

#[test]
fn anthropic_message_delta_revising_input_wins() {
    let stream = ANTHROPIC_STREAM.replace(
        "\"usage\":{\"output_tokens\":15}",
        "\"usage\":{\"input_tokens\":20,\"cache_creation_input_tokens\":2048,\"cache_read_input_tokens\":4096,\"output_tokens\":15,\"server_tool_use\":{\"web_search_requests\":1}}",
    );
    let obs = whole(Api::Messages, true, &stream);
    assert_eq!(obs.usage, usage(20 + 2048 + 4096, 15, 4096, 2048, 0));
}

#[test]
fn openai_stream_cut_short_counts_deltas_only() {
    let cut = OPENAI_CHAT_STREAM
        .find(OPENAI_CHAT_USAGE_EVENT)
        .expect("fixture has it");
    let obs = whole(Api::ChatCompletions, true, &OPENAI_CHAT_STREAM[..cut]);
    assert_eq!(
        obs,
        Observed {
            delta_events: 4,
            ..Observed::default()
        }
    );
}

#[test]
fn responses_incomplete_carries_usage() {
    let stream = OPENAI_RESPONSES_STREAM
        .replace("event: response.completed", "event: response.incomplete")
        .replace(
            "\"type\":\"response.completed\"",
            "\"type\":\"response.incomplete\"",
        );
    assert_eq!(
        whole(Api::Responses, true, &stream).usage,
        usage(1536, 210, 1280, 0, 192)
    );
}

#[test]
fn event_type_falls_back_to_json_type_without_event_lines() {
    let stream: String = ANTHROPIC_STREAM
        .lines()
        .filter(|l| !l.starts_with("event:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        whole(Api::Messages, true, &stream),
        whole(Api::Messages, true, ANTHROPIC_STREAM)
    );
}

#[test]
fn non_stream_bodies() {
    assert_eq!(
        whole(Api::ChatCompletions, false, OPENAI_CHAT_BODY),
        done(usage(2048, 300, 1920, 0, 256), 0)
    );
    assert_eq!(
        whole(Api::Completions, false, OPENAI_COMPLETIONS_BODY),
        done(usage(5, 7, 0, 0, 0), 0)
    );
    assert_eq!(
        whole(Api::Responses, false, OPENAI_RESPONSES_BODY),
        done(usage(328, 52, 0, 0, 0), 0)
    );
    assert_eq!(
        whole(Api::Messages, false, ANTHROPIC_BODY),
        done(usage(2095 + 1800, 503, 1800, 0, 0), 0)
    );
}

#[test]
fn count_tokens_is_free_but_reported() {
    let obs = whole(Api::CountTokens, false, ANTHROPIC_COUNT_TOKENS_BODY);
    assert_eq!(
        obs,
        Observed {
            counted_input_tokens: Some(2095),
            ..done(Usage::default(), 0)
        }
    );
    assert_eq!(
        whole(Api::CountTokens, false, "{\"type\":\"error\"}"),
        Observed::default()
    );
}

/// A multi-megabyte embeddings body, fed in network-sized chunks.
pub(crate) fn embeddings_body() -> String {
    let mut body = String::from(OPENAI_EMBEDDINGS_HEAD);
    let vector = format!("[{}]", vec!["-0.0123456789"; 1536].join(","));
    for i in 1..200 {
        body.push_str(&format!(
            ",{{\"object\":\"embedding\",\"index\":{i},\"embedding\":{vector}}}"
        ));
    }
    body.push_str(OPENAI_EMBEDDINGS_TAIL);
    body
}

#[test]
fn large_embeddings_body_in_chunks() {
    let body = embeddings_body();
    assert!(body.len() > 2 << 20);
    let chunks: Vec<&[u8]> = body.as_bytes().chunks(16 * 1024 + 7).collect();
    let (obs, out) = run(Api::Embeddings, false, false, &chunks);
    assert_eq!(obs, done(usage(8, 0, 0, 0, 0), 0));
    assert_eq!(out, body.as_bytes());
}

#[test]
fn lenient_numbers_and_garbage() {
    let body = |u: &str| format!("{{\"id\":\"x\",\"usage\":{u}}}");
    let obs = whole(
        Api::ChatCompletions,
        false,
        &body("{\"prompt_tokens\":-5,\"completion_tokens\":1e300,\"prompt_tokens_details\":7}"),
    );
    assert_eq!(obs.usage, usage(0, u64::MAX, 0, 0, 0));
    let obs = whole(
        Api::ChatCompletions,
        false,
        &body("{\"prompt_tokens\":18446744073709551616,\"completion_tokens\":\"3\"}"),
    );
    assert_eq!(obs.usage, usage(u64::MAX, 0, 0, 0, 0));
    let obs = whole(
        Api::Messages,
        false,
        &body("{\"input_tokens\":18446744073709551615,\"cache_read_input_tokens\":5}"),
    );
    assert_eq!(obs.usage.input_tokens, u64::MAX);
    assert_eq!(
        whole(Api::ChatCompletions, false, &body("null")),
        Observed::default()
    );
    assert_eq!(
        whole(Api::ChatCompletions, false, &body("{\"type\":\"string\"}")),
        Observed::default()
    );
    assert_eq!(
        whole(
            Api::ChatCompletions,
            false,
            "\u{0}\u{ff}\"usage\":{\"prompt_tokens\":3}"
        ),
        done(usage(3, 0, 0, 0, 0), 0)
    );
}

#[test]
fn usage_object_with_tricky_strings() {
    let body = r#"{"usage" :	{"note":"}{\"\\","prompt_tokens":3,"nested":{"a":"}"},"completion_tokens":4}}"#;
    assert_eq!(
        whole(Api::ChatCompletions, false, body).usage,
        usage(3, 4, 0, 0, 0)
    );
}

#[test]
fn non_strip_forwards_the_same_bytes_objects() {
    let mut observer = UsageObserver::new(Api::ChatCompletions, true, false);
    for piece in OPENAI_CHAT_STREAM.as_bytes().chunks(100) {
        let original = Bytes::copy_from_slice(piece);
        let mut body = Some(original.clone());
        observer.filter(&mut body, false);
        let body = body.expect("kept");
        assert_eq!(
            (body.as_ptr(), body.len()),
            (original.as_ptr(), original.len())
        );
    }
    let mut end = None;
    observer.filter(&mut end, true);
    assert!(end.is_none());
    assert!(observer.report().final_usage_seen);
}

#[test]
fn strip_removes_exactly_the_usage_event() {
    let expected = OPENAI_CHAT_STREAM.replace(OPENAI_CHAT_USAGE_EVENT, "");
    let (obs, out) = run(
        Api::ChatCompletions,
        true,
        true,
        &[OPENAI_CHAT_STREAM.as_bytes()],
    );
    assert_eq!(obs, done(usage(1117, 46, 1024, 0, 0), 4));
    assert_eq!(String::from_utf8(out).expect("utf8"), expected);
    let (_, out) = run(
        Api::Completions,
        true,
        true,
        &[OPENAI_COMPLETIONS_STREAM.as_bytes()],
    );
    assert!(!String::from_utf8(out)
        .expect("utf8")
        .contains("\"usage\":{"));
}

#[test]
fn strip_forwards_boundary_aligned_chunks_unchanged_and_holds_partial_events() {
    let mut observer = UsageObserver::new(Api::ChatCompletions, true, true);
    let events: Vec<&str> = OPENAI_CHAT_STREAM.split_inclusive("\n\n").collect();
    let first = Bytes::from(events[0]);
    let mut body = Some(first.clone());
    observer.filter(&mut body, false);
    assert_eq!(body.as_ref().map(|b| b.as_ptr()), Some(first.as_ptr()));

    let (head, tail) = events[1].split_at(40);
    let mut body = Some(Bytes::from(head));
    observer.filter(&mut body, false);
    assert_eq!(body, Some(Bytes::new()), "an incomplete event is held");
    let mut body = Some(Bytes::from(tail));
    observer.filter(&mut body, false);
    assert_eq!(body.as_deref(), Some(events[1].as_bytes()));

    let mut body = Some(Bytes::from(
        "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}",
    ));
    observer.filter(&mut body, false);
    assert_eq!(body, Some(Bytes::new()));
    let mut body = None;
    observer.filter(&mut body, true);
    assert_eq!(
        body.as_deref(),
        Some(b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}".as_slice())
    );
}

#[test]
fn strip_keeps_usage_that_rides_on_a_content_chunk() {
    let stream = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n";
    let (obs, out) = run(Api::ChatCompletions, true, true, &[stream.as_bytes()]);
    assert_eq!(out, stream.as_bytes());
    assert_eq!(obs, done(usage(3, 1, 0, 0, 0), 1));
}

#[test]
fn strip_mode_is_ignored_where_it_does_not_apply() {
    let (_, out) = run(Api::Messages, true, true, &[ANTHROPIC_STREAM.as_bytes()]);
    assert_eq!(out, ANTHROPIC_STREAM.as_bytes());
    let (_, out) = run(
        Api::ChatCompletions,
        false,
        true,
        &[OPENAI_CHAT_BODY.as_bytes()],
    );
    assert_eq!(out, OPENAI_CHAT_BODY.as_bytes());
}

#[test]
fn strip_does_not_hold_an_endless_event() {
    let mut observer = UsageObserver::new(Api::ChatCompletions, true, true);
    let chunk = Bytes::from(vec![b'x'; 256 * 1024]);
    let mut forwarded = 0;
    for _ in 0..8 {
        let mut body = Some(chunk.clone());
        observer.filter(&mut body, false);
        forwarded += body.map_or(0, |b| b.len());
    }
    assert!(forwarded + super::MAX_STRIP_HELD as usize >= 8 * chunk.len());
}

/// A Responses stream whose final event is followed, in the same chunk, by another usage
/// object: the finder once ran over the whole chunk before the scanner judged its events, so the
/// later object replaced the final event's and the usage was lost unless a chunk boundary fell
/// between them (found by the strip_observer fuzzer).
#[test]
fn responses_usage_does_not_depend_on_where_chunks_end() {
    let stream: &[u8] = b"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\nevent: response.output_text.delta\ndata: {\"usage\":{\"input_tokens\":5,\"output_tokens\":5}}\n\n";
    let run = |chunks: &[&[u8]]| {
        let mut o = UsageObserver::new(crate::api::Api::Responses, true, false);
        for c in chunks {
            let mut b = Some(bytes::Bytes::copy_from_slice(c));
            o.filter(&mut b, false);
        }
        o.filter(&mut None, true);
        o.report()
    };
    let split = stream.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
    let whole = run(&[stream]);
    assert_eq!(whole, run(&[&stream[..split], &stream[split..]]));
    assert!(whole.final_usage_seen);
    assert_eq!(
        (whole.usage.input_tokens, whole.usage.output_tokens),
        (9, 1)
    );
}
