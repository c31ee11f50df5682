//! Micro-benchmark of request-body extraction: `RequestFields::parse` (the borrowed read of
//! model, stream, caps, stream options and user) and `body::rewrite` (the `include_usage`
//! insertion, and with it an alias model swap) on typical chat bodies of about 1 KiB and 64 KiB.
//! Times are thread CPU time (see `common::timed`).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(clippy::panic, reason = "test code: a panic fails the test")]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use serde_json::json;
use sluice_proxy::admission::body::{self, RequestFields};

mod common;

/// A streaming chat body of about `size` bytes: a system prompt and alternating turns, with a
/// few characters JSON must escape, as pasted text has.
fn chat_body(size: usize) -> Bytes {
    let turn = "Explain how the gate \"holds\" water back,\nand what happens at the spillway. ";
    let mut messages = vec![json!({"role": "system", "content": "You are a helpful assistant."})];
    let mut len = 0;
    let mut i = 0;
    while len < size.saturating_sub(200) {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        let content = turn.repeat(4);
        len += content.len() + 40;
        messages.push(json!({"role": role, "content": content}));
        i += 1;
    }
    let body = json!({
        "model": "fast",
        "messages": messages,
        "temperature": 0.7,
        "max_tokens": 512,
        "stream": true,
        "user": "user-1234",
    });
    Bytes::from(serde_json::to_vec(&body).expect("a JSON value serialises"))
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("body");
    for size in [1 << 10, 64 << 10] {
        let body = chat_body(size);
        let kib = size >> 10;
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(format!("parse/{kib}KiB"), |b| {
            b.iter_custom(|iters| {
                common::timed(iters, || {
                    let fields = RequestFields::parse(black_box(&body)).expect("a valid body");
                    black_box(fields.model().map(str::len))
                })
            })
        });
        group.bench_function(format!("parse+include_usage/{kib}KiB"), |b| {
            b.iter_custom(|iters| {
                common::timed(iters, || {
                    let fields = RequestFields::parse(black_box(&body)).expect("a valid body");
                    body::rewrite(&body, &fields, None, !fields.client_wants_usage())
                })
            })
        });
        group.bench_function(format!("parse+alias+include_usage/{kib}KiB"), |b| {
            b.iter_custom(|iters| {
                common::timed(iters, || {
                    let fields = RequestFields::parse(black_box(&body)).expect("a valid body");
                    body::rewrite(&body, &fields, Some("gpt-4o-mini"), true)
                })
            })
        });
    }
    group.finish();
}

common::bench_main!(bench);
