//! Micro-benchmark of usage-record encoding: `serde_json` of one `UsageRecord` into a reused
//! buffer, as the sink's writer thread does per request; reports ns per record and prints the
//! encoded size. Times are thread CPU time (see `common::timed`).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(clippy::panic, reason = "test code: a panic fails the test")]

use std::hint::black_box;

use criterion::{Criterion, Throughput};
use sluice_proxy::metering::record::UsageRecord;

mod common;

/// A typical successful streamed chat record with caller tags. Built from JSON so the benchmark
/// needs no UUID or wire-type constructors of its own.
fn record() -> UsageRecord {
    let text = r#"{
        "v": 1, "id": "01936f2e-7b1c-7d4a-9a51-2f1e8c0b6d3a", "time_ms": 1732320000123,
        "org": "acme", "key_id": "key_3f9a1c2b7d4e5f60", "provider": "openai",
        "model": "fast", "upstream_model": "gpt-4o-mini", "api": "chat.completions",
        "stream": true, "status": 200, "outcome": "ok",
        "input_tokens": 1234, "output_tokens": 567, "cached_tokens": 1024,
        "cache_write_tokens": 0, "reasoning_tokens": 0, "estimated": false,
        "cost_micro_usd": 1234, "ttft_ms": 312.5, "total_ms": 4821.25, "upstream_ms": 4819.75,
        "bytes_in": 2048, "bytes_out": 65536,
        "user": "user-1234", "feature": "chat",
        "meta": {"team": "search", "env": "prod"}
    }"#;
    serde_json::from_str(text).expect("the sample record is valid")
}

fn bench(c: &mut Criterion) {
    let record = record();
    let mut buf = Vec::with_capacity(1024);
    serde_json::to_writer(&mut buf, &record).expect("a record serialises");
    let size = buf.len();
    println!("usage record: {size} bytes of JSON (plus the newline)");
    let mut group = c.benchmark_group("record");
    group.throughput(Throughput::Bytes(size as u64));
    group.bench_function("serde_json reused buffer", |b| {
        b.iter_custom(|iters| {
            common::timed(iters, || {
                buf.clear();
                serde_json::to_writer(&mut buf, black_box(&record)).expect("a record serialises");
                buf.len()
            })
        })
    });
    group.bench_function("serde_json::to_vec", |b| {
        b.iter_custom(|iters| {
            common::timed(iters, || {
                serde_json::to_vec(black_box(&record)).expect("a record serialises")
            })
        })
    });
    group.finish();
}

common::bench_main!(bench);
