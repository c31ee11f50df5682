//! Micro-benchmark of `Limiter::admit`: nanoseconds per admission check; and of the shared
//! limits' `Global::admit` (`backend = "redis"`) when the replica's slices cover the request,
//! against a real throwaway redis-server (skipped, loudly, when none is installed).
//!
//! Quotas are large enough that nothing is refused while measuring the admitted path; the
//! refused path is measured on its own. Each admitted iteration also drops the `Admitted`
//! (releasing its slots), since every real request pays for both.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(clippy::panic, reason = "test code: a panic fails the test")]

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::Criterion;
use sluice_proxy::clock::SystemClock;
use sluice_proxy::governance::limits::{Limiter, Limits, Quota, Scope};

mod common;

fn quota(text: &str) -> Option<Quota> {
    Some(Quota::parse(text).expect("benchmark quotas are valid"))
}

/// Requests, tokens and concurrency limits that a benchmark cannot exhaust.
fn roomy() -> Limits {
    Limits {
        requests: quota("4_000_000_000/s"),
        tokens: quota("1_000_000_000/s"),
        concurrent: Some(1_000_000),
    }
}

fn limiter() -> Limiter {
    Limiter::new(Arc::new(SystemClock))
}

fn single_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("admit");

    let limits = roomy();
    let one = limiter();
    let org = [(Scope::Org("acme".into()), &limits)];
    group.bench_function("1 scope", |b| {
        b.iter(|| black_box(one.admit(black_box(&org), 1)).is_ok())
    });

    let three = limiter();
    let scopes = [
        (Scope::Org("acme".into()), &limits),
        (Scope::Key("key_0123456789abcdef".into()), &limits),
        (
            Scope::OrgModel("acme".into(), "gpt-4o-mini".into()),
            &limits,
        ),
    ];
    group.bench_function("3 scopes (org, key, org x model)", |b| {
        b.iter(|| black_box(three.admit(black_box(&scopes), 1)).is_ok())
    });

    let tight = Limits {
        requests: quota("1/day"),
        tokens: None,
        concurrent: None,
    };
    let refusing = limiter();
    let refused = [(Scope::Org("acme".into()), &tight)];
    let _ = refusing.admit(&refused, 0);
    group.bench_function("1 scope, refused", |b| {
        b.iter(|| black_box(refusing.admit(black_box(&refused), 1)).is_err())
    });
    group.finish();
}

/// Two threads admitting on the same org scope; reports the time per admission per thread.
fn contended(c: &mut Criterion) {
    let mut group = c.benchmark_group("admit contended");
    let limits = roomy();
    let shared = limiter();
    group.bench_function("2 threads, 1 shared org scope", |b| {
        b.iter_custom(|iters| {
            let start = Barrier::new(3);
            std::thread::scope(|s| {
                for _ in 0..2 {
                    let (shared, limits, start) = (&shared, &limits, &start);
                    s.spawn(move || {
                        let org = [(Scope::Org("acme".into()), limits)];
                        start.wait();
                        for _ in 0..iters {
                            let _ = black_box(shared.admit(black_box(&org), 1));
                        }
                    });
                }
                start.wait();
                let begun = Instant::now();
                // Leaving the scope joins both threads.
                begun
            })
            .elapsed()
        })
    });
    group.finish();
}

/// The shared limits with the slices filled: the same scopes as "3 scopes", admitted from this
/// replica's leases (the background task refills them from a real Redis as they run low).
fn shared(c: &mut Criterion) {
    use sluice_proxy::config::RedisSettings;
    use sluice_proxy::governance::budgets::Spend;
    use sluice_proxy::governance::global::{self, Global, Outcome};
    let Some(redis) = sluice_test_support::redis::Redis::start() else {
        return;
    };
    let settings = RedisSettings {
        url: redis.url(),
        username: None,
        password: None,
        ca_pem: None,
        timeout: Duration::from_secs(1),
        lease_ttl: Duration::from_secs(10),
        idle_return: Duration::from_secs(2),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let g =
        Arc::new(Global::new(&settings, Arc::new(Spend::new()), Arc::new(SystemClock)).unwrap());
    runtime.spawn(global::run(Arc::downgrade(&g)));
    // A day's windows of a trillion: nothing runs out while measuring.
    let limits = Limits {
        requests: quota("1_000_000_000_000/day"),
        tokens: quota("1_000_000_000_000/day"),
        concurrent: Some(1_000_000),
    };
    let scopes = [
        (Scope::Org("acme".into()), &limits),
        (Scope::Key("key_0123456789abcdef".into()), &limits),
        (
            Scope::OrgModel("acme".into(), "gpt-4o-mini".into()),
            &limits,
        ),
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches!(g.admit(&scopes, 1, 1, &mut None), Outcome::Admitted(_)) {
        assert!(Instant::now() < deadline, "the first leases never came");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut short = 0u64;
    let mut group = c.benchmark_group("admit shared");
    group.bench_function(
        "3 scopes, slices cover the request (backend = redis)",
        |b| {
            b.iter(
                || match black_box(g.admit(black_box(&scopes), 1, 1, &mut None)) {
                    Outcome::Admitted(held) => drop(held),
                    _ => short += 1,
                },
            )
        },
    );
    group.finish();
    // Reported, not asserted: admissions that found a slice empty (waiting for a refill).
    eprintln!("admit shared: {short} admissions found a slice empty");
}

common::bench_main!(
    config = common::settings(Duration::from_secs(3), Duration::from_secs(1), 20);
    single_thread, contended, shared
);
