//! Fuzz target: the SSE scanner gives the same events whatever the chunking, with sane ranges.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_proxy_fuzz::sse::{SseEvent, SseScanner};
use sluice_proxy_fuzz::{pieces, split_input};

type Event = (Vec<u8>, Vec<u8>, u64, u64, bool);

/// An owned copy of what the scanner reported, to compare runs.
fn owned(e: &SseEvent<'_>) -> Event {
    (e.event.to_vec(), e.data.to_vec(), e.start, e.end, e.truncated)
}

fn scan(max_event: usize, chunks: &[&[u8]]) -> Vec<Event> {
    let mut scanner = SseScanner::with_max_event_bytes(max_event);
    let mut events: Vec<Event> = Vec::new();
    let mut fed = 0u64;
    for chunk in chunks {
        fed += chunk.len() as u64;
        scanner.feed(chunk, |e| events.push(owned(e)));
        assert_eq!(scanner.offset(), fed);
        assert!(scanner.boundary() <= scanner.offset());
    }
    scanner.finish(|e| events.push(owned(e)));
    let mut last_end = 0;
    for (_, data, start, end, _) in &events {
        assert!(last_end <= *start && start < end && *end <= fed);
        assert!(data.len() <= max_event);
        last_end = *end;
    }
    events
}

fuzz_target!(|data: &[u8]| {
    let (payload, cuts) = split_input(data);
    let chunks = pieces(payload, &cuts);
    for max_event in [16, 1 << 20] {
        assert_eq!(scan(max_event, &chunks), scan(max_event, &[payload]));
    }
});
