//! Heap allocations per forwarded chunk on sluice's own response path: what
//! `response_body_filter` does per chunk (first-chunk timestamp, `UsageObserver::filter`, the
//! input-known check, byte counting, the total-timeout check), over real-format streams of every
//! observed shape, split one event per chunk and into 1–4 KiB reads. Target: 0.
//!
//! Counting uses dhat's global allocator (the workspace forbids `unsafe`, which a hand-written
//! `GlobalAlloc` would need). Only the chunks between the observer's construction and the
//! end-of-stream call are counted: construction and the final flush happen once per response.
//! Reused buffers grow to the stream's largest carried line or event early on, so the table also
//! shows the second half of each stream alone: the steady state. Streams are long (2048 content
//! events) so that 1–4 KiB reads still give a few hundred chunks.
//! Known remainder: a Responses stream's final event repeats the whole output and carries the
//! usage, so when reads split it the scanner must buffer it, growing its buffers a few times at
//! the end of the stream (never per content chunk).
//! With `ALLOC_TRACE=1` the run writes `dhat-heap.json` (open it in dhat's viewer, or read the
//! `fs`/`ftbl` frames) to find where any allocation comes from.
//!
//! Run: `cargo bench -p sluice-bench --bench alloc_per_chunk`.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Split, Stream};
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

/// The per-response state `response_body_filter` keeps in the request's `Ctx`.
struct Ctx {
    first_chunk_at: Option<Instant>,
    observer: UsageObserver,
    input_reported: bool,
    bytes_out: u64,
    upstream_started: Instant,
    total: Duration,
}

impl Ctx {
    /// One call of the body filter, as `proxy.rs` makes it (governance's re-settlement is
    /// reduced to reading the reported input once, which is all it needs from the observer).
    fn filter(&mut self, body: &mut Option<Bytes>, end_of_stream: bool) -> bool {
        if self.first_chunk_at.is_none() && body.as_ref().is_some_and(|b| !b.is_empty()) {
            self.first_chunk_at = Some(Instant::now());
        }
        self.observer.filter(body, end_of_stream);
        if !self.input_reported {
            let seen = self.observer.report();
            if seen.input_known {
                self.input_reported = true;
                black_box(seen.usage.input_tokens);
            }
        }
        self.bytes_out += body.as_ref().map_or(0, |b| b.len() as u64);
        end_of_stream || self.upstream_started.elapsed() <= self.total
    }
}

fn blocks() -> u64 {
    dhat::HeapStats::get().total_blocks
}

fn count(stream: &Stream, chunks: &[Bytes]) -> Counted {
    let mut ctx = Ctx {
        first_chunk_at: None,
        observer: UsageObserver::new(stream.shape, true, stream.strip),
        input_reported: false,
        bytes_out: 0,
        upstream_started: Instant::now(),
        total: Duration::from_secs(900),
    };
    let mut allocs = 0;
    let mut steady = 0;
    let mut allocating = Vec::with_capacity(chunks.len());
    let (last, middle) = chunks.split_last().expect("a stream has chunks");
    for (i, chunk) in middle.iter().enumerate() {
        let before = blocks();
        let mut body = Some(chunk.clone());
        let ok = ctx.filter(&mut body, false);
        drop(black_box(body));
        let n = blocks() - before;
        assert!(ok, "the total timeout is far away");
        if n > 0 {
            allocs += n;
            allocating.push(i);
            if i >= middle.len() / 2 {
                steady += n;
            }
        }
    }
    let mut body = Some(last.clone());
    ctx.filter(&mut body, true);
    let forwarded = ctx.bytes_out;
    let report = ctx.observer.report();
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
