//! Fuzz target: non-streamed usage extraction is chunking-invariant and never alters the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_proxy_fuzz::{observe, pieces, split_input, SHAPES};

fuzz_target!(|data: &[u8]| {
    let (payload, cuts) = split_input(data);
    let chunks = pieces(payload, &cuts);
    for shape in SHAPES {
        let whole = observe(shape, false, false, &[payload], false);
        assert_eq!(whole.1, payload);
        assert_eq!(
            observe(shape, false, false, &chunks, cuts.len() % 2 == 0),
            whole
        );
    }
});
