//! Unit and property tests of the SSE scanner.

use super::*;
use proptest::prelude::*;

/// An owned copy of a dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ev {
    event: Vec<u8>,
    data: Vec<u8>,
    start: u64,
    end: u64,
    truncated: bool,
}

fn scan_with(mut scanner: SseScanner, chunks: &[&[u8]]) -> Vec<Ev> {
    let mut out = Vec::new();
    let mut push = |e: &SseEvent<'_>| {
        out.push(Ev {
            event: e.event.to_vec(),
            data: e.data.to_vec(),
            start: e.start,
            end: e.end,
            truncated: e.truncated,
        })
    };
    for chunk in chunks {
        scanner.feed(chunk, &mut push);
    }
    scanner.finish(&mut push);
    out
}

fn scan(chunks: &[&[u8]]) -> Vec<Ev> {
    scan_with(SseScanner::new(), chunks)
}

#[test]
fn carry_buffers_grow_once_for_typical_lines() {
    // Reads that cut every line of 200-byte-ish events: the carried line and the event's data
    // keep one allocation each for the whole stream instead of doubling from a few bytes.
    let mut scanner = SseScanner::new();
    let mut events = 0;
    for i in 0..64 {
        let event = format!("data: {{\"i\":{i},\"pad\":\"{}\"}}\n\n", "x".repeat(i * 3));
        let (head, tail) = event.as_bytes().split_at(event.len() - 3);
        scanner.feed(head, |_| events += 1);
        assert!(scanner.line.capacity() >= MIN_CARRY);
        assert!(scanner.line.capacity() <= 2 * MIN_CARRY);
        scanner.feed(tail, |e| {
            assert!(e.data.ends_with(b"\"}"));
            events += 1;
        });
        assert!(scanner.data_buf.capacity() <= 2 * MIN_CARRY);
    }
    assert_eq!(events, 64);
}

fn ev(event: &str, data: &str, start: u64, end: u64) -> Ev {
    Ev {
        event: event.into(),
        data: data.into(),
        start,
        end,
        truncated: false,
    }
}

#[test]
fn fields_comments_and_defaults() {
    let stream =
        b": hi\nevent: add\ndata:  two spaces\ndata\nid: 7\nretry: 10\nbogus\n\ndata:x\n\n";
    assert_eq!(
        scan(&[stream]),
        vec![
            ev("add", " two spaces\n", 0, 62),
            ev("message", "x", 62, 70)
        ]
    );
}

#[test]
fn blocks_without_data_are_not_dispatched_but_end_the_block() {
    let stream = b"event: ping\n\n: keep-alive\n\n\n\ndata: x\n\n";
    assert_eq!(scan(&[stream]), vec![ev("message", "x", 29, 38)]);
    assert_eq!(scan(&[b"data:\n\n"]), vec![ev("message", "", 0, 7)]);
}

#[test]
fn crlf_split_across_chunks_is_one_line_end() {
    let expected = vec![ev("message", "a", 0, 11), ev("message", "b", 11, 22)];
    assert_eq!(scan(&[b"data: a\r\n\r", b"\ndata: b\r\n\r\n"]), expected);
    assert_eq!(
        scan(&[b"data: a\r", b"\n\r\ndata: b\r\n\r", b"\n"]),
        expected
    );
    // A CR-only blank line at the very end dispatches at end of stream.
    assert_eq!(scan(&[b"data: a\r\r"]), vec![ev("message", "a", 0, 9)]);
}

#[test]
fn unterminated_event_is_dropped_at_end() {
    assert_eq!(
        scan(&[b"data: a\n\ndata: b\n"]),
        vec![ev("message", "a", 0, 9)]
    );
}

#[test]
fn bom_is_skipped_only_at_stream_start() {
    assert_eq!(
        scan(&[b"\xEF\xBB", b"\xBFdata: a\n\n"]),
        vec![ev("message", "a", 0, 12)]
    );
    assert_eq!(scan(&[b"\n\xEF\xBB\xBFdata: a\n\n"]), vec![]);
}

#[test]
fn boundary_and_offset_track_complete_blocks() {
    let mut scanner = SseScanner::new();
    scanner.feed(b"data: a\n\ndata: b", |_| {});
    assert_eq!((scanner.boundary(), scanner.offset()), (9, 16));
    scanner.feed(b"\r\n\r", |_| {});
    assert_eq!(
        scanner.boundary(),
        9,
        "a trailing CR might be followed by its LF"
    );
    scanner.feed(b"\n", |_| {});
    assert_eq!(scanner.boundary(), 20);
}

#[test]
fn oversized_events_are_truncated_consistently() {
    // The long event type is a regression found by fuzzing: a carried line was once cut at
    // the data bound, shorter than the event type kept when the line is not carried.
    let stream = format!(
        "event: {}\ndata: {}\ndata: {}\n\ndata: ok\n\n",
        "e".repeat(200),
        "a".repeat(40),
        "b".repeat(40)
    );
    let bytes = stream.as_bytes();
    let whole = scan_with(SseScanner::with_max_event_bytes(50), &[bytes]);
    assert_eq!(whole.len(), 2);
    assert!(whole[0].truncated && !whole[1].truncated);
    assert_eq!(whole[0].data.len(), 50);
    for at in 0..=bytes.len() {
        let (head, tail) = bytes.split_at(at);
        assert_eq!(
            scan_with(SseScanner::with_max_event_bytes(50), &[head, tail]),
            whole,
            "split at {at}"
        );
    }
}

/// Serialises events as a conforming server might, with the given line ending.
fn serialise(events: &[(Option<String>, Vec<String>)], comments: bool, eol: &str) -> String {
    let mut out = String::new();
    for (event, data) in events {
        if comments {
            out.push_str(&format!(": c{eol}"));
        }
        if let Some(event) = event {
            out.push_str(&format!("event: {event}{eol}"));
        }
        for line in data {
            out.push_str(&format!("data: {line}{eol}"));
        }
        out.push_str(eol);
    }
    out
}

fn events() -> impl Strategy<Value = Vec<(Option<String>, Vec<String>)>> {
    let line = "[ a-z{}\":\u{e9}]{0,12}";
    prop::collection::vec(
        (
            prop::option::of("[a-z_.]{1,10}"),
            prop::collection::vec(line, 1..4),
        ),
        0..8,
    )
}

fn split<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    at.sort_unstable();
    let mut from = 0;
    let mut pieces = Vec::new();
    for to in at.into_iter().chain([bytes.len()]) {
        pieces.push(&bytes[from..to]);
        from = to;
    }
    pieces
}

proptest! {
    #[test]
    fn matches_the_model_whatever_the_splits_and_line_endings(
        model in events(),
        comments in any::<bool>(),
        eol in prop_oneof![Just("\n"), Just("\r\n"), Just("\r")],
        cuts in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        let stream = serialise(&model, comments, eol);
        let got = scan(&split(stream.as_bytes(), &cuts));
        prop_assert_eq!(got.len(), model.len());
        let mut at = 0;
        for (got, (event, data)) in got.iter().zip(&model) {
            prop_assert_eq!(&got.event, event.as_deref().unwrap_or("message").as_bytes());
            let joined = data.join("\n");
            prop_assert_eq!(&got.data, joined.as_bytes());
            prop_assert_eq!(got.start, at);
            // The event's own bytes scanned alone give the same event back.
            let own = &stream.as_bytes()[got.start as usize..got.end as usize];
            let again = scan(&[own]);
            prop_assert_eq!((&again[0].event, &again[0].data), (&got.event, &got.data));
            at = got.end;
        }
        prop_assert_eq!(at, stream.len() as u64);
    }

    #[test]
    fn arbitrary_bytes_are_split_invariant(
        bytes in prop::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b':'), Just(b' '), any::<u8>()], 0..512),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        let small = |chunks: &[&[u8]]| scan_with(SseScanner::with_max_event_bytes(64), chunks);
        prop_assert_eq!(small(&split(&bytes, &cuts)), small(&[&bytes]));
        prop_assert_eq!(scan(&split(&bytes, &cuts)), scan(&[&bytes]));
    }
}
