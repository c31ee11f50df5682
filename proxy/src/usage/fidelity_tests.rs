//! Unit tests of the metering fidelity fixes found with real recordings: compaction iterations,
//! Anthropic thinking and Responses cache-write counts, failures inside a 200 stream, and usage
//! of gzip-encoded responses.

use std::io::Write;

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;

use super::tests::{run, usage};
use super::{Observed, Usage, UsageObserver};
use crate::api::Api;

/// The compaction stream's usage events, as recorded (pydantic-ai cassette).
const COMPACTION: &str = concat!(
    "event: message_start\n",
    "data: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-4-6\",\"id\":\"msg_011\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"usage\":{\"input_tokens\":100,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":55096,\"output_tokens\":7}}  }\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
    "event: message_delta\n",
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"input_tokens\":181,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":8,\"iterations\":[{\"input_tokens\":100,\"output_tokens\":83,\"cache_read_input_tokens\":55096,\"cache_creation_input_tokens\":0,\"cache_creation\":{\"ephemeral_5m_input_tokens\":0},\"type\":\"compaction\"},{\"input_tokens\":181,\"output_tokens\":8,\"cache_read_input_tokens\":0,\"cache_creation_input_tokens\":0,\"type\":\"message\"}]},\"context_management\":{\"applied_edits\":[]} }\n\n",
    "event: message_stop\n",
    "data: {\"type\":\"message_stop\"}\n\n",
);

/// What [`COMPACTION`] bills, however it arrives: input 100 + 181, cache read 55096, output
/// 83 + 8, with its final usage seen.
fn assert_compaction_billed(seen: &Observed, split: usize) {
    assert_eq!(
        seen.usage,
        usage(281 + 55096, 91, 55096, 0, 0),
        "split {split}"
    );
    assert!(seen.final_usage_seen, "split {split}");
}

fn split_run(shape: Api, stream: bool, text: &[u8], split: usize) -> Observed {
    let chunks: Vec<&[u8]> = text.chunks(split).collect();
    run(shape, stream, false, &chunks).0
}

/// [`split_run`] over `text`, which must report exactly `expected`.
fn assert_usage(shape: Api, stream: bool, text: &str, split: usize, expected: Usage) {
    let seen = split_run(shape, stream, text.as_bytes(), split);
    assert_eq!(
        seen.usage, expected,
        "{shape:?} stream={stream} split {split}"
    );
}

#[test]
fn compaction_bills_the_sum_of_the_iterations() {
    for split in [1, 7, 100, COMPACTION.len()] {
        let seen = split_run(Api::Messages, true, COMPACTION.as_bytes(), split);
        assert_compaction_billed(&seen, split);
    }
}

#[test]
fn compaction_in_a_non_stream_body_is_summed_too() {
    let body = r#"{"id":"msg_1","type":"message","usage":{"input_tokens":181,"cache_read_input_tokens":0,"output_tokens":8,"iterations":[{"input_tokens":100,"output_tokens":83,"cache_read_input_tokens":55096,"type":"compaction"},{"input_tokens":181,"output_tokens":8,"type":"message"}]}}"#;
    assert_usage(
        Api::Messages,
        false,
        body,
        5,
        usage(281 + 55096, 91, 55096, 0, 0),
    );
}

#[test]
fn empty_or_garbage_iterations_keep_the_top_level_counts() {
    for iterations in [r#"[]"#, r#""x""#, r#"[1,null,{"type":"message"}]"#, "null"] {
        let body = format!(
            r#"{{"usage":{{"input_tokens":5,"output_tokens":2,"iterations":{iterations}}}}}"#
        );
        let seen = split_run(Api::Messages, false, body.as_bytes(), 3);
        assert_eq!(seen.usage, usage(5, 2, 0, 0, 0), "{iterations}");
    }
}

#[test]
fn anthropic_thinking_tokens_are_reasoning() {
    let stream = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":598,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":8}}             }\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"input_tokens\":598,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":92,\"output_tokens_details\":{\"thinking_tokens\":53}}}\n\n",
    );
    assert_usage(Api::Messages, true, stream, 11, usage(598, 92, 0, 0, 53));
    let body = r#"{"usage":{"input_tokens":4,"output_tokens":30,"output_tokens_details":{"thinking_tokens":20}}}"#;
    assert_usage(Api::Messages, false, body, 4, usage(4, 30, 0, 0, 20));
}

#[test]
fn responses_cache_write_tokens_are_read() {
    let stream = concat!(
        "event: response.completed\n",
        "data: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":130,\"input_tokens_details\":{\"cache_write_tokens\":100,\"cached_tokens\":20},\"output_tokens\":284,\"output_tokens_details\":{\"reasoning_tokens\":256},\"total_tokens\":414}}}\n\n",
    );
    assert_usage(
        Api::Responses,
        true,
        stream,
        9,
        usage(130, 284, 20, 100, 256),
    );
    let body = r#"{"usage":{"input_tokens":130,"input_tokens_details":{"cache_write_tokens":100,"cached_tokens":20},"output_tokens":4}}"#;
    assert_usage(Api::Responses, false, body, 9, usage(130, 4, 20, 100, 0));
}

#[test]
fn anthropic_error_event_mid_stream_is_reported() {
    let stream = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
        "event: error\n",
        "data: {\"type\":\"error\",\"error\":{\"details\":null,\"type\":\"overloaded_error\",\"message\":\"Overloaded\"} }\n\n",
    );
    for split in [1, 13, stream.len()] {
        let seen = split_run(Api::Messages, true, stream.as_bytes(), split);
        assert_eq!(
            seen.stream_error.map(|e| e.as_str().to_string()).as_deref(),
            Some("overloaded_error"),
            "split {split}"
        );
        assert!(!seen.final_usage_seen, "split {split}");
        assert_eq!(seen.usage.input_tokens, 12);
    }
}

#[test]
fn responses_error_and_failed_events_are_reported() {
    let stream = concat!(
        "event: response.created\n",
        "data: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"status\":\"in_progress\",\"error\":null,\"usage\":null}}\n\n",
        "event: error\n",
        "data: {\"type\":\"error\",\"sequence_number\":2,\"error\":{\"type\":\"insufficient_quota\",\"code\":\"insufficient_quota\",\"message\":\"You exceeded your current quota.\",\"param\":null}}\n\n",
        "event: response.failed\n",
        "data: {\"type\":\"response.failed\",\"sequence_number\":3,\"response\":{\"status\":\"failed\",\"error\":{\"code\":\"insufficient_quota\",\"message\":\"m\"},\"usage\":null}}\n\n",
    );
    let seen = split_run(Api::Responses, true, stream.as_bytes(), 17);
    assert_eq!(
        seen.stream_error.map(|e| e.as_str().to_string()).as_deref(),
        Some("insufficient_quota")
    );
    // `response.failed` alone (no `error` event first), with usage: counts are still exact.
    let failed = "event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"status\":\"failed\",\"error\":{\"code\":\"server_error\",\"message\":\"m\"},\"usage\":{\"input_tokens\":9,\"output_tokens\":3}}}\n\n";
    let seen = split_run(Api::Responses, true, failed.as_bytes(), 5);
    assert_eq!(
        seen.stream_error.map(|e| e.as_str().to_string()).as_deref(),
        Some("server_error")
    );
    assert_eq!(seen.usage, usage(9, 3, 0, 0, 0));
    assert!(seen.final_usage_seen);
}

#[test]
fn an_ordinary_stream_reports_no_error() {
    let seen = split_run(Api::Messages, true, COMPACTION.as_bytes(), 64);
    assert_eq!(seen.stream_error, None);
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

/// Feeds gzip bytes through a gzip observer in `split`-byte chunks; returns what it saw and
/// what it forwarded.
fn run_gzip(observer: &mut UsageObserver, wire: &[u8], split: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in wire.chunks(split) {
        let mut body = Some(Bytes::copy_from_slice(chunk));
        observer.filter(&mut body, false);
        out.extend_from_slice(&body.expect("forwarded"));
    }
    let mut end = None;
    observer.filter(&mut end, true);
    assert!(end.is_none());
    out
}

#[test]
fn gzip_stream_usage_is_read_and_bytes_are_untouched() {
    let wire = gzip(COMPACTION.as_bytes());
    for split in [1, 3, 50, wire.len()] {
        let mut observer = UsageObserver::gzip(Api::Messages, true);
        let out = run_gzip(&mut observer, &wire, split);
        assert_eq!(out, wire, "split {split}");
        assert_compaction_billed(&observer.report(), split);
    }
}

#[test]
fn gzip_json_body_usage_is_read() {
    let body = r#"{"id":"chatcmpl-1","usage":{"prompt_tokens":146,"completion_tokens":3,"total_tokens":149}}"#;
    let wire = gzip(body.as_bytes());
    let mut observer = UsageObserver::gzip(Api::ChatCompletions, false);
    assert_eq!(run_gzip(&mut observer, &wire, 10), wire);
    assert_eq!(observer.report().usage, usage(146, 3, 0, 0, 0));
}

#[test]
fn a_decompression_bomb_stops_observation_at_the_cap() {
    // 4 MiB of zeros compresses to a few KiB; with a 1 MiB cap the usage after it is never read.
    let mut plain = vec![b' '; 4 << 20];
    plain.extend_from_slice(br#"{"usage":{"prompt_tokens":1,"completion_tokens":1}}"#);
    let wire = gzip(&plain);
    assert!(wire.len() < 64 << 10);
    let mut observer = UsageObserver::gzip_capped(Api::ChatCompletions, false, 1 << 20);
    assert_eq!(run_gzip(&mut observer, &wire, 4096), wire);
    assert!(!observer.report().final_usage_seen);
    // Under the cap the same body is read.
    let mut observer = UsageObserver::gzip_capped(Api::ChatCompletions, false, 8 << 20);
    run_gzip(&mut observer, &wire, 4096);
    assert_eq!(observer.report().usage, usage(1, 1, 0, 0, 0));
}

#[test]
fn corrupt_gzip_is_forwarded_and_yields_no_usage() {
    let mut wire = gzip(COMPACTION.as_bytes());
    wire.truncate(40);
    wire.extend_from_slice(b"not gzip at all");
    let mut observer = UsageObserver::gzip(Api::Messages, true);
    assert_eq!(run_gzip(&mut observer, &wire, 7), wire);
    assert!(!observer.report().final_usage_seen);
}
