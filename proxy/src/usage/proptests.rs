//! Property tests: usage extraction and strip mode do not depend on how the body is chunked or
//! which SSE line endings are used, never alter forwarded bytes outside strip mode, and never
//! panic on arbitrary input.

use bytes::Bytes;
use proptest::prelude::*;

use super::fixtures::*;
use super::tests::{embeddings_body, run};
use super::UsageObserver;
use crate::api::Api;

/// Every recorded response with the shape and mode it belongs to.
fn recorded() -> Vec<(Api, bool, String)> {
    vec![
        (Api::ChatCompletions, true, OPENAI_CHAT_STREAM.to_owned()),
        (Api::Completions, true, OPENAI_COMPLETIONS_STREAM.to_owned()),
        (Api::Responses, true, OPENAI_RESPONSES_STREAM.to_owned()),
        (Api::Messages, true, ANTHROPIC_STREAM.to_owned()),
        (Api::ChatCompletions, false, OPENAI_CHAT_BODY.to_owned()),
        (Api::Completions, false, OPENAI_COMPLETIONS_BODY.to_owned()),
        (Api::Responses, false, OPENAI_RESPONSES_BODY.to_owned()),
        (Api::Messages, false, ANTHROPIC_BODY.to_owned()),
        (
            Api::CountTokens,
            false,
            ANTHROPIC_COUNT_TOKENS_BODY.to_owned(),
        ),
        (
            Api::Embeddings,
            false,
            format!("{OPENAI_EMBEDDINGS_HEAD}{OPENAI_EMBEDDINGS_TAIL}"),
        ),
    ]
}

/// Cuts `bytes` at the given offsets (taken modulo its length, in any order).
fn split<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    at.sort_unstable();
    let mut pieces = Vec::new();
    let mut from = 0;
    for to in at.into_iter().chain([bytes.len()]) {
        pieces.push(&bytes[from..to]);
        from = to;
    }
    pieces
}

fn with_line_ending(text: &str, ending: &str) -> String {
    text.replace('\n', ending)
}

#[test]
fn every_single_split_gives_the_same_result() {
    for (shape, stream, text) in recorded() {
        let bytes = text.as_bytes();
        let expected = run(shape, stream, false, &[bytes]);
        for at in 0..=bytes.len() {
            let (head, tail) = bytes.split_at(at);
            assert_eq!(
                run(shape, stream, false, &[head, tail]),
                expected,
                "{shape:?} split at {at}"
            );
        }
    }
}

#[test]
fn line_endings_do_not_matter() {
    for (shape, stream, text) in recorded().into_iter().filter(|r| r.1) {
        let expected = run(shape, stream, false, &[text.as_bytes()]).0;
        for ending in ["\r\n", "\r"] {
            let other = with_line_ending(&text, ending);
            let bytes = other.as_bytes();
            for at in 0..=bytes.len() {
                let (head, tail) = bytes.split_at(at);
                assert_eq!(
                    run(shape, stream, false, &[head, tail]).0,
                    expected,
                    "{shape:?} {ending:?} at {at}"
                );
            }
        }
    }
}

#[test]
fn strip_at_every_single_split_removes_only_the_usage_event() {
    for ending in ["\n", "\r\n", "\r"] {
        let text = with_line_ending(OPENAI_CHAT_STREAM, ending);
        let expected = text.replace(&with_line_ending(OPENAI_CHAT_USAGE_EVENT, ending), "");
        assert_ne!(expected, text);
        let bytes = text.as_bytes();
        for at in 0..=bytes.len() {
            let (head, tail) = bytes.split_at(at);
            let (obs, out) = run(Api::ChatCompletions, true, true, &[head, tail]);
            assert_eq!(out, expected.as_bytes(), "{ending:?} split at {at}");
            assert!(obs.final_usage_seen);
        }
    }
}

fn line_ending() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("\n"), Just("\r\n"), Just("\r")]
}

/// Bytes that look enough like SSE and JSON usage to reach the deep paths.
fn sse_soup() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"data: ".to_vec()),
        Just(b"data:".to_vec()),
        Just(b"event: message_delta\n".to_vec()),
        Just(b"event: response.completed\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b": keep-alive\n\n".to_vec()),
        Just(b"{\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":".to_vec()),
        Just(b"{\"response\":{\"usage\":{\"input_tokens\":".to_vec()),
        Just(b"\"usage\"".to_vec()),
        Just(b":{".to_vec()),
        Just(b"}".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"\\".to_vec()),
        Just(b"[DONE]".to_vec()),
        Just(b"-1".to_vec()),
        Just(b"18446744073709551616".to_vec()),
        Just(b"\xEF\xBB\xBF".to_vec()),
        prop::collection::vec(any::<u8>(), 0..8),
    ];
    prop::collection::vec(token, 0..64).prop_map(|t| t.concat())
}

const SHAPES: [Api; 6] = Api::REPORTING_USAGE;

proptest! {
    #[test]
    fn random_splits_give_the_same_result(
        pick in 0usize..10,
        ending in line_ending(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let (shape, stream, text) = recorded().swap_remove(pick);
        let expected = run(shape, stream, false, &[text.as_bytes()]);
        let text = if stream { with_line_ending(&text, ending) } else { text };
        let (obs, out) = run(shape, stream, false, &split(text.as_bytes(), &cuts));
        prop_assert_eq!(obs, expected.0);
        prop_assert_eq!(out, text.as_bytes());
    }

    #[test]
    fn non_strip_forwards_each_bytes_unchanged(
        pick in 0usize..10,
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        end_with_data in any::<bool>(),
    ) {
        let (shape, stream, text) = recorded().swap_remove(pick);
        let mut observer = UsageObserver::new(shape, stream, false);
        let pieces = split(text.as_bytes(), &cuts);
        let mut out = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            let original = Bytes::copy_from_slice(piece);
            let mut body = Some(original.clone());
            let last = end_with_data && i + 1 == pieces.len();
            observer.filter(&mut body, last);
            let body = body.expect("kept");
            prop_assert_eq!((body.as_ptr(), body.len()), (original.as_ptr(), original.len()));
            out.extend_from_slice(&body);
        }
        if !end_with_data {
            let mut end = None;
            observer.filter(&mut end, true);
            prop_assert!(end.is_none());
        }
        prop_assert_eq!(out, text.as_bytes());
        prop_assert_eq!(observer.report(), run(shape, stream, false, &[text.as_bytes()]).0);
    }

    #[test]
    fn strip_removes_only_the_usage_event_whatever_the_splits(
        ending in line_ending(),
        completions in any::<bool>(),
        cuts in prop::collection::vec(any::<usize>(), 0..16),
    ) {
        let (shape, stream) = if completions {
            (Api::Completions, OPENAI_COMPLETIONS_STREAM)
        } else {
            (Api::ChatCompletions, OPENAI_CHAT_STREAM)
        };
        let text = with_line_ending(stream, ending);
        let usage_event = text
            .split_inclusive(&format!("{ending}{ending}"))
            .find(|e| e.contains("\"usage\":{"))
            .expect("fixture has a usage event")
            .to_owned();
        let expected = text.replace(&usage_event, "");
        let (obs, out) = run(shape, true, true, &split(text.as_bytes(), &cuts));
        prop_assert_eq!(out, expected.as_bytes());
        prop_assert!(obs.final_usage_seen);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..1024),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        for shape in SHAPES {
            for (stream, strip) in [(false, false), (true, false), (true, true)] {
                let (_, out) = run(shape, stream, strip, &split(&bytes, &cuts));
                if !strip {
                    prop_assert_eq!(&out, &bytes);
                }
            }
        }
    }

    #[test]
    fn sse_like_soup_is_split_invariant(
        bytes in sse_soup(),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        for shape in SHAPES {
            for (stream, strip) in [(false, false), (true, false), (true, true)] {
                let whole = run(shape, stream, strip, &[&bytes]);
                prop_assert_eq!(run(shape, stream, strip, &split(&bytes, &cuts)), whole);
            }
        }
    }
}

#[test]
fn embeddings_split_everywhere_near_the_usage_key() {
    let body = embeddings_body();
    let bytes = body.as_bytes();
    let expected = run(Api::Embeddings, false, false, &[bytes]).0;
    let key = body.rfind("\"usage\"").expect("has usage");
    for at in key.saturating_sub(4)..bytes.len() {
        let (head, tail) = bytes.split_at(at);
        assert_eq!(
            run(Api::Embeddings, false, false, &[head, tail]).0,
            expected,
            "split at {at}"
        );
    }
}
