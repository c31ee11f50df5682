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

use criterion::{criterion_group, criterion_main, Criterion};
use sluice_proxy::config::SinkKind;
use sluice_proxy::metering::record::{Outcome, UsageRecord};
use sluice_proxy::metering::sink::UsageSink;
use std::borrow::Cow;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Records per fresh sink: the queue is this large, so it never fills while timed.
const CHUNK: u64 = 65_536;

fn record() -> UsageRecord {
    UsageRecord {
        v: 1,
        id: uuid::Uuid::now_v7(),
        time_ms: 1_760_000_000_000,
        org: Some(Arc::from("org-bench")),
        key_id: Some(Arc::from("key_0000000000000001")),
        provider: Some(Arc::from("mock")),
        endpoint: None,
        region: None,
        attempts: 0,
        model: Some("gpt-4o-mini".into()),
        upstream_model: Some("gpt-4o-mini-2024-07-18".into()),
        api: Cow::Borrowed("chat.completions"),
        stream: true,
        status: 200,
        outcome: Outcome::Ok,
        input_tokens: 1200,
        output_tokens: 350,
        cached_tokens: 0,
        cache_write_tokens: 0,
        reasoning_tokens: 0,
        estimated: false,
        cost_micro_usd: 390,
        ttft_ms: Some(210.5),
        total_ms: 1830.25,
        upstream_ms: Some(1829.0),
        bytes_in: 4800,
        bytes_out: 21000,
        user: Some("user-42".into()),
        session: None,
        feature: Some("chat".into()),
        meta: Default::default(),
        client_ip: None,
        error_type: None,
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

criterion_group! {
    name = benches;
    // The defaults of a standalone run; command-line flags (the harness's shorter times) override
    // these, which per-group settings would not.
    config = Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(10);
    targets = emit
}
criterion_main!(benches);
