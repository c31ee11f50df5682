//! Fuzzing harness: compiles the proxy's pure parsing modules under their real module names (so
//! their `crate::` paths resolve) and adds helpers shared by the fuzz targets.

/// The API vocabulary (surfaces and families): the usage observer is keyed by surface.
#[path = "../../src/api.rs"]
pub mod api;
#[path = "../../src/sse.rs"]
pub mod sse;
#[path = "../../src/usage/mod.rs"]
pub mod usage;
/// The spool's format and reader (pure: no I/O, no Pingora).
#[path = "../../src/delivery/format.rs"]
pub mod spool_format;

use bytes::Bytes;
use api::Api;
use usage::{Observed, UsageObserver};

pub const SHAPES: [Api; 6] = Api::REPORTING_USAGE;

/// Splits fuzz input into a payload and cut points: the first byte says how many cuts (0..16)
/// follow as little-endian u16 offsets, so the fuzzer controls the chunking as well as the bytes.
pub fn split_input(data: &[u8]) -> (&[u8], Vec<usize>) {
    let Some((&n, rest)) = data.split_first() else {
        return (data, Vec::new());
    };
    let n = usize::from(n % 16).min(rest.len() / 2);
    let (cuts, payload) = rest.split_at(n * 2);
    let mut at: Vec<usize> = cuts
        .chunks_exact(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (payload.len() + 1))
        .collect();
    at.sort_unstable();
    (payload, at)
}

/// The pieces of `payload` between sorted cut points.
pub fn pieces<'a>(payload: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut from = 0;
    for &to in cuts.iter().chain([&payload.len()]) {
        out.push(&payload[from..to]);
        from = to;
    }
    out
}

/// Drives an observer over the chunks the way Pingora does and returns what it reported and
/// forwarded, checking that outside strip mode every `Bytes` is forwarded untouched.
pub fn observe(
    shape: Api,
    stream: bool,
    strip: bool,
    chunks: &[&[u8]],
    eos_with_last: bool,
) -> (Observed, Vec<u8>) {
    let mut observer = UsageObserver::new(shape, stream, strip);
    let mut out = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let original = Bytes::copy_from_slice(chunk);
        let mut body = Some(original.clone());
        let last = eos_with_last && i + 1 == chunks.len();
        observer.filter(&mut body, last);
        let body = body.expect("a chunk in must yield Some");
        if !strip {
            assert_eq!(
                (body.as_ptr(), body.len()),
                (original.as_ptr(), original.len())
            );
        }
        out.extend_from_slice(&body);
    }
    if !eos_with_last || chunks.is_empty() {
        let mut body = None;
        observer.filter(&mut body, true);
        out.extend_from_slice(body.as_deref().unwrap_or_default());
    }
    (observer.report(), out)
}
