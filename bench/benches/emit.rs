//! Micro-benchmark of the request path's cost of emitting a usage record: nanoseconds per
//! `UsageSink::emit` (one `try_send` into the bounded queue), with and without room in the queue.
//!
//! The record is cloned per iteration (the request path builds one per request anyway); the
//! `clone_only` case measures that clone alone, so `emit − clone_only` is the queue's own cost.
//! What the intake thread does with a record afterwards (JSON line, batching, delivery to the
//! ledger) happens off the request path and is not timed, but it runs concurrently, as it would
//! in production.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(clippy::panic, reason = "test code: a panic fails the test")]

use criterion::Criterion;
use sluice_proxy::config::SinkKind;
use sluice_proxy::metering::record::UsageRecord;
use sluice_proxy::metering::sink::UsageSink;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

mod common;

/// Records per fresh sink: the queue is this large, so it never fills while timed.
const CHUNK: u64 = 65_536;

/// A typical streamed chat record with caller tags, on the shared test record.
fn record() -> UsageRecord {
    UsageRecord {
        time_ms: 1_760_000_000_000,
        model: Some("gpt-4o-mini".into()),
        upstream_model: Some("gpt-4o-mini-2024-07-18".into()),
        input_tokens: 1200,
        output_tokens: 350,
        cost_micro_usd: 390,
        ttft_ms: Some(210.5),
        total_ms: 1830.25,
        upstream_ms: Some(1829.0),
        bytes_in: 4800,
        bytes_out: 21000,
        user: Some("user-42".into()),
        feature: Some("chat".into()),
        ..sluice_test_support::usage_record("org-bench")
    }
}

fn null_sink(capacity: u64) -> UsageSink {
    UsageSink::start(
        &SinkKind::File(PathBuf::from("/dev/null")),
        capacity as usize,
    )
    .expect("a /dev/null sink starts")
}

fn emit(c: &mut Criterion) {
    let mut group = c.benchmark_group("emit");
    let template = record();

    group.bench_function("clone_only", |b| b.iter(|| black_box(template.clone())));

    // A fresh sink per chunk with a queue as large as the chunk: only the room path is timed;
    // draining and closing the sink between chunks is not.
    group.bench_function("queue_with_room", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(CHUNK);
                let sink = null_sink(n);
                let start = Instant::now();
                for _ in 0..n {
                    sink.emit(black_box(template.clone()));
                }
                timed += start.elapsed();
                assert_eq!(sink.dropped(), 0, "the queue had room for the whole chunk");
                sink.shutdown();
                left -= n;
            }
            timed
        })
    });

    // A one-slot queue behind a busy writer: nearly every emit takes the drop path (counted).
    group.bench_function("queue_full_drop", |b| {
        let sink = null_sink(1);
        b.iter(|| sink.emit(black_box(template.clone())));
        sink.shutdown();
    });
    group.finish();
}

common::bench_main!(
    config = common::settings(Duration::from_secs(2), Duration::from_millis(500), 10);
    emit
);
