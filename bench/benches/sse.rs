//! Micro-benchmark of the response path's stream parsing: the bare `SseScanner` and the full
//! `UsageObserver::filter` per shape (strip mode too), in bytes per second over real-format
//! streams from the mock provider, split one event per chunk and into 1–4 KiB reads.
//!
//! One iteration is one whole response: a fresh scanner or observer fed every chunk and then the
//! end of stream, so per-response setup is included, as every real response pays it.
//! Times are thread CPU time (see `common::timed`; `SLUICE_BENCH_WALL=1` for wall-clock time).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(clippy::panic, reason = "test code: a panic fails the test")]

mod common;

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use sluice_proxy::sse::SseScanner;
use sluice_proxy::usage::UsageObserver;

use common::{Split, Stream};

fn scan(chunks: &[Bytes]) -> u64 {
    let mut scanner = SseScanner::new();
    let mut events = 0u64;
    for chunk in chunks {
        scanner.feed(chunk, |ev| {
            black_box(ev);
            events += 1;
        });
    }
    scanner.finish(|_| events += 1);
    events
}

fn observe(stream: &Stream, chunks: &[Bytes]) -> u64 {
    let mut observer = UsageObserver::new(stream.shape, true, stream.strip);
    let mut forwarded = 0u64;
    let last = chunks.len().saturating_sub(1);
    for (i, chunk) in chunks.iter().enumerate() {
        // Pingora hands each chunk over as an owned `Bytes`; cloning one is a reference count.
        let mut body = Some(chunk.clone());
        observer.filter(&mut body, i == last);
        forwarded += body.map_or(0, |b| b.len() as u64);
    }
    black_box(observer.report());
    forwarded
}

fn bench(c: &mut Criterion) {
    let streams = common::streams(common::CONTENT_CHUNKS);
    let mut group = c.benchmark_group("sse");
    for stream in &streams {
        group.throughput(Throughput::Bytes(stream.body.len() as u64));
        for split in Split::ALL {
            let chunks = split.chunks(&stream.body);
            // The scanner does not know about strip mode; it is measured once per stream.
            if !stream.strip {
                group.bench_function(format!("scanner/{}/{}", stream.name, split.name()), |b| {
                    b.iter_custom(|iters| common::timed(iters, || scan(black_box(&chunks))))
                });
            }
            group.bench_function(format!("observer/{}/{}", stream.name, split.name()), |b| {
                b.iter_custom(|iters| common::timed(iters, || observe(stream, black_box(&chunks))))
            });
        }
    }
    group.finish();
}

common::bench_main!(bench);
