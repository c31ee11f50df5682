//! Heap allocations per forwarded chunk on sluice's own response path: the very call
//! `response_body_filter` makes per chunk (`ResponseMeter::on_chunk`: first-chunk timestamp,
//! `UsageObserver::filter`, the input-known check, byte counting, the total-timeout check, plus
//! the clock reading), over real-format streams of every observed shape, split one event per
//! chunk and into 1–4 KiB reads. Target: 0.
//!
//! Counting uses dhat's global allocator (the workspace forbids `unsafe`, which a hand-written
//! `GlobalAlloc` would need). Only the chunks between the observer's construction and the
//! end-of-stream call are counted: construction and the final flush happen once per response.
//! Reused buffers grow to the stream's largest carried line or event early on, so the table also
//! shows the second half of each stream alone: the steady state. Streams are long (2048 content
//! events) so that 1–4 KiB reads still give a few hundred chunks.
//! With `ALLOC_TRACE=1` the run writes `dhat-heap.json` (open it in dhat's viewer, or read the
//! `fs`/`ftbl` frames) to find where any allocation comes from.
//!
//! Run: `cargo bench -p sluice-bench --bench alloc_per_chunk`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(clippy::panic, reason = "test code: a panic fails the test")]

mod common;

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use common::{Split, Stream};
use sluice_proxy::clock::{Clock, SystemClock};
use sluice_proxy::metering::response::ResponseMeter;
use sluice_proxy::usage::UsageObserver;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Content events per stream.
const CONTENT_CHUNKS: usize = 2048;

/// Allocation counts for one stream, split one way.
struct Counted {
    chunks: usize,
    /// Heap blocks allocated during the non-final chunks.
    allocs: u64,
    /// The same over the second half of the non-final chunks only.
    steady: u64,
    /// Indices of the chunks that allocated, for a first look at where it happens.
    allocating: Vec<usize>,
}

fn blocks() -> u64 {
    dhat::HeapStats::get().total_blocks
}

fn count(stream: &Stream, chunks: &[Bytes]) -> Counted {
    let clock = SystemClock;
    let total = Some(Duration::from_secs(900));
    let mut meter = ResponseMeter {
        observer: Some(UsageObserver::new(stream.shape, true, stream.strip)),
        upstream_started: Some(clock.monotonic()),
        ..ResponseMeter::default()
    };
    let mut allocs = 0;
    let mut steady = 0;
    let mut allocating = Vec::with_capacity(chunks.len());
    let (last, middle) = chunks.split_last().expect("a stream has chunks");
    for (i, chunk) in middle.iter().enumerate() {
        let before = blocks();
        let mut body = Some(chunk.clone());
        // What `response_body_filter` does per chunk: one clock reading and the meter's call. A
        // request without token limits holds no reservation to re-settle (`None`).
        let ok = meter.on_chunk(&mut body, false, clock.monotonic(), total, None);
        drop(black_box(body));
        let n = blocks() - before;
        assert!(ok.is_ok(), "the total timeout is far away");
        if n > 0 {
            allocs += n;
            allocating.push(i);
            if i >= middle.len() / 2 {
                steady += n;
            }
        }
    }
    let mut body = Some(last.clone());
    let _ = meter.on_chunk(&mut body, true, clock.monotonic(), total, None);
    let forwarded = meter.bytes_out;
    let report = meter
        .observer
        .as_ref()
        .map(UsageObserver::report)
        .unwrap_or_default();
    assert!(
        report.final_usage_seen || stream.name == "chat",
        "{}: the stream's usage was found",
        stream.name
    );
    if !stream.strip {
        assert_eq!(forwarded, stream.body.len() as u64, "every byte forwarded");
    }
    Counted {
        chunks: middle.len(),
        allocs,
        steady,
        allocating,
    }
}

fn main() {
    // Criterion-style flags (`--bench`) are passed by `cargo bench`; there is nothing to parse.
    let streams = common::streams(CONTENT_CHUNKS);
    let chunked: Vec<(&Stream, Split, Vec<Bytes>)> = streams
        .iter()
        .flat_map(|s| Split::ALL.map(|split| (s, split, split.chunks(&s.body))))
        .collect();
    let trace = std::env::var_os("ALLOC_TRACE").is_some();
    let _profiler = if trace {
        dhat::Profiler::builder().trim_backtraces(Some(12)).build()
    } else {
        dhat::Profiler::builder().testing().build()
    };
    println!(
        "{:<12} {:<10} {:>7} {:>7} {:>10} {:>13}  allocating chunks",
        "stream", "split", "chunks", "allocs", "per chunk", "2nd half"
    );
    let mut total = 0;
    let mut total_steady = 0;
    for (stream, split, chunks) in &chunked {
        let c = count(stream, chunks);
        total += c.allocs;
        total_steady += c.steady;
        let shown: Vec<String> = c.allocating.iter().take(8).map(usize::to_string).collect();
        println!(
            "{:<12} {:<10} {:>7} {:>7} {:>10.4} {:>13}  [{}{}]",
            stream.name,
            split.name(),
            c.chunks,
            c.allocs,
            c.allocs as f64 / c.chunks as f64,
            c.steady,
            shown.join(","),
            if c.allocating.len() > 8 { ",..." } else { "" },
        );
    }
    println!(
        "allocations on non-final chunks: {total} in all, {total_steady} in the second halves"
    );
    // Reported, not enforced: a failing bench would stop `cargo bench` before the others run.
    println!(
        "verdict: {}",
        if total_steady == 0 {
            "0 allocations per chunk in steady state"
        } else {
            "allocations in steady state (see the allocating chunks above)"
        }
    );
}
