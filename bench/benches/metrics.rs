//! Micro-benchmark of the per-request metrics: nanoseconds per `RequestMetrics::finished`, the
//! one call `logging` makes per request, against the installed Prometheus recorder.
//!
//! "warm" is the steady state (the label set seen before: a map lookup, then increments and
//! histogram records on cached handles); "1 000 label sets" cycles through 100 orgs × 10 routes
//! so the lookup misses the CPU cache more often; "off" is `[metrics] requests = false`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(clippy::panic, reason = "test code: a panic fails the test")]

use criterion::{criterion_group, criterion_main, Criterion};
use sluice_proxy::api::Api;
use sluice_proxy::clock::SystemClock;
use sluice_proxy::config::{self, NoEnv, Snapshot};
use sluice_proxy::ctx::Ctx;
use sluice_proxy::metering::record::UsageRecord;
use sluice_proxy::telemetry::{self, requests::RequestMetrics};
use std::hint::black_box;
use std::sync::Arc;

const ORGS: usize = 100;
const ROUTES: usize = 10;

/// A config of `ROUTES` models and `ORGS` orgs, with the per-request series `on` or off.
fn snapshot(on: bool) -> Arc<Snapshot> {
    let mut text = format!(
        "allow_no_keys = true\n[metrics]\nrequests = {on}\n\n[[providers]]\nname = \"p\"\n\
         kind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nauth = \"none\"\n"
    );
    for r in 0..ROUTES {
        text.push_str(&format!(
            "\n[[models]]\nname = \"m{r}\"\nprovider = \"p\"\n"
        ));
    }
    for o in 0..ORGS {
        text.push_str(&format!("\n[[orgs]]\nid = \"org{o}\"\n"));
    }
    Arc::new(config::parse(&text, "bench.toml", &NoEnv).expect("the generated config is valid"))
}

/// A finished streamed chat request of `org` to `route`, as `logging` sees it.
fn finished(snap: &Arc<Snapshot>, org: usize, route: usize) -> (Ctx, UsageRecord) {
    let mut ctx = Ctx::new(snap.clone(), &SystemClock);
    ctx.api = Some(Api::ChatCompletions);
    ctx.route = snap.route(&format!("m{route}")).cloned();
    ctx.stream = true;
    ctx.status = 200;
    let record = serde_json::json!({
        "id": uuid::Uuid::now_v7(), "time_ms": 1_760_000_000_000u64, "org": format!("org{org}"),
        "key_id": null, "provider": "p", "model": null, "upstream_model": null,
        "api": "chat.completions", "stream": true, "status": 200, "outcome": "ok",
        "input_tokens": 1200, "output_tokens": 350, "cached_tokens": 200, "cache_write_tokens": 0, "reasoning_tokens": 0,
        "estimated": false, "cost_micro_usd": 390,
        "ttft_ms": 210.5, "total_ms": 1830.25, "upstream_ms": 1829.0,
        "bytes_in": 4800, "bytes_out": 21000, "user": null, "session": null, "feature": null,
        "meta": {}, "client_ip": null, "error_type": null
    });
    (
        ctx,
        serde_json::from_value(record).expect("a valid usage record"),
    )
}

fn bench(c: &mut Criterion) {
    let _ = telemetry::install();
    let mut group = c.benchmark_group("metrics");
    let on = snapshot(true);
    let metrics = RequestMetrics::default();

    let (ctx, record) = finished(&on, 0, 0);
    group.bench_function("warm", |b| {
        b.iter(|| metrics.finished(black_box(&ctx), black_box(&record)))
    });

    let many: Vec<_> = (0..ORGS * ROUTES)
        .map(|i| finished(&on, i % ORGS, i / ORGS))
        .collect();
    let mut next = 0;
    group.bench_function("1 000 label sets", |b| {
        b.iter(|| {
            let (ctx, record) = &many[next % many.len()];
            next += 1;
            metrics.finished(black_box(ctx), black_box(record));
        })
    });

    let (off_ctx, off_record) = finished(&snapshot(false), 0, 0);
    group.bench_function("off", |b| {
        b.iter(|| metrics.finished(black_box(&off_ctx), black_box(&off_record)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
