//! Fuzz target: streamed observation (strip mode included) is chunking-invariant, forwards the
//! input untouched outside strip mode, and in strip mode only ever removes whole events.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_proxy_fuzz::sse::SseScanner;
use sluice_proxy_fuzz::{observe, pieces, split_input, SHAPES};

fuzz_target!(|data: &[u8]| {
    let (payload, cuts) = split_input(data);
    let chunks = pieces(payload, &cuts);
    let eos_with_last = cuts.len() % 2 == 1;
    for shape in SHAPES {
        for strip in [false, true] {
            let whole = observe(shape, true, strip, &[payload], false);
            assert_eq!(observe(shape, true, strip, &chunks, eos_with_last), whole);
            if !strip {
                assert_eq!(whole.1, payload);
            } else {
                // The output must be the input with some dispatched events' ranges removed.
                let mut ranges = Vec::new();
                let mut scanner = SseScanner::new();
                scanner.feed(payload, |e| ranges.push((e.start as usize, e.end as usize)));
                scanner.finish(|e| ranges.push((e.start as usize, e.end as usize)));
                let mut rest = whole.1.as_slice();
                let mut at = 0;
                for (start, end) in ranges.into_iter().chain([(payload.len(), payload.len())]) {
                    let kept = &payload[at..start];
                    assert!(rest.starts_with(kept));
                    rest = &rest[kept.len()..];
                    let event = &payload[start..end];
                    if rest.starts_with(event) && !event.is_empty() {
                        rest = &rest[event.len()..];
                    }
                    at = end;
                }
                assert!(rest.is_empty());
            }
        }
    }
});
