//! Micro-benchmark of the authentication path: `KeyDigest::of` (SHA-256 of the presented key)
//! and the digest lookup in a configuration snapshot holding 10 or 100 000 keys, nanoseconds per
//! lookup.
//!
//! The snapshot is built by `config::parse` from generated `[[keys]]` entries, as a reload
//! builds it. Lookups rotate over many different keys so that a large table is measured with the
//! cache misses real traffic from many keys causes, not one hot entry. Times are thread CPU
//! time (see `common::timed`).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(clippy::panic, reason = "test code: a panic fails the test")]

use std::hint::black_box;

use criterion::Criterion;
use sluice_proxy::config::{self, NoEnv, Snapshot};
use sluice_proxy::credentials::keys::{self, KeyDigest};
use sluice_test_support::config::ONE_ROUTE;

mod common;

/// Keys presented in turn; with 100 000 keys these spread over the whole table.
const PRESENTED: usize = 1024;

/// A snapshot with `n` virtual keys of one org, and (up to `PRESENTED` of) the keys themselves.
fn snapshot(n: usize) -> (Snapshot, Vec<String>) {
    let mut text = format!("{ONE_ROUTE}\n[[orgs]]\nid = \"acme\"\n");
    let step = (n / PRESENTED).max(1);
    let mut presented = Vec::new();
    for i in 0..n {
        let key = keys::generate().expect("the system random generator works");
        let digest = KeyDigest::of(&key).to_config_string();
        text.push_str(&format!(
            "\n[[keys]]\ndigest = \"{digest}\"\norg = \"acme\"\n"
        ));
        if i % step == 0 && presented.len() < PRESENTED {
            presented.push(key.to_string());
        }
    }
    let snap = config::parse(&text, "bench.toml", &NoEnv).expect("the generated config is valid");
    assert_eq!(snap.keys.len(), n, "every generated key is in the snapshot");
    (snap, presented)
}

/// What `auth::authenticate` does after reading the header: the syntax check, the digest and
/// the table lookup (expiry is a field comparison on the found key).
fn lookup(snap: &Snapshot, presented: &str) -> bool {
    keys::looks_like_virtual_key(presented) && snap.keys.contains_key(&KeyDigest::of(presented))
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("keys");
    let key = keys::generate().expect("the system random generator works");
    group.bench_function("KeyDigest::of", |b| {
        b.iter_custom(|iters| common::timed(iters, || KeyDigest::of(black_box(&key))))
    });
    for n in [10, 100_000] {
        let (snap, presented) = snapshot(n);
        let mut next = presented.iter().cycle();
        group.bench_function(format!("authenticate/{n} keys"), |b| {
            b.iter_custom(|iters| {
                common::timed(iters, || {
                    let key = next.next().expect("cycle over a non-empty list");
                    assert!(lookup(&snap, black_box(key)));
                })
            })
        });
        let unknown = keys::generate().expect("the system random generator works");
        group.bench_function(format!("unknown key/{n} keys"), |b| {
            b.iter_custom(|iters| common::timed(iters, || lookup(&snap, black_box(&unknown))))
        });
    }
    group.finish();
}

common::bench_main!(bench);
