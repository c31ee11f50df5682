//! Unit tests of the limiter, all driven by a `FakeClock`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::clock::FakeClock;

pub(super) fn setup() -> (Arc<FakeClock>, Limiter) {
    let clock = FakeClock::shared();
    // Start away from the origin so nothing depends on time zero.
    clock.advance(Duration::from_secs(1000));
    let limiter = Limiter::new(clock.clone());
    (clock, limiter)
}

pub(super) fn org(name: &str) -> Scope {
    Scope::Org(name.into())
}

fn key(name: &str) -> Scope {
    Scope::Key(name.into())
}

pub(super) fn limits(
    requests: Option<&str>,
    tokens: Option<&str>,
    concurrent: Option<u32>,
) -> Limits {
    Limits {
        requests: requests.map(|q| Quota::parse(q).unwrap()),
        tokens: tokens.map(|q| Quota::parse(q).unwrap()),
        concurrent,
    }
}

/// The whole tokens a scope's bucket holds now (negative in debt).
pub(super) fn token_level(limiter: &Limiter, scope: &Scope) -> i128 {
    let entry = limiter.entries.get(scope).unwrap().clone();
    let now = entry.now_ns();
    let guard = entry.tokens.load();
    guard.as_deref().unwrap().level(now).unwrap()
}

fn request_window(limiter: &Limiter, scope: &Scope, l: &Limits) -> Window {
    limiter.peek(&[(scope.clone(), l)]).requests.unwrap()
}

pub(super) fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn public_types_are_send_and_sync_where_needed() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync + std::fmt::Debug>() {}
    send::<Admitted>();
    send::<Reservation>();
    send::<Slots>();
    send_sync::<Limiter>();
}

#[test]
fn no_limits_admits_everything_and_tracks_nothing() {
    let (_, limiter) = setup();
    let none = Limits::default();
    for _ in 0..100 {
        let a = limiter.admit(&[(org("a"), &none)], 1_000_000).unwrap();
        assert_eq!(a.info, RateInfo::default());
    }
    assert_eq!(limiter.tracked(), 0);
}

#[test]
fn request_burst_of_five_times_quota_admits_exactly_quota() {
    let (_, limiter) = setup();
    let l = limits(Some("10/min"), None, None);
    let admitted = (0..50)
        .filter(|_| limiter.admit(&[(org("a"), &l)], 0).is_ok())
        .count();
    assert_eq!(admitted, 10);
}

/// After the initial burst, under saturating demand, every window of one period admits
/// amount ± 1 (the GCRA property documented in `requests.rs`).
fn saturating_windows(quota: &str, period: Duration, step: Duration, run: Duration) {
    let (clock, limiter) = setup();
    let l = limits(Some(quota), None, None);
    let amount = Quota::parse(quota).unwrap().amount as usize;
    let mut times = Vec::new();
    let mut t = Duration::ZERO;
    while t <= run {
        while limiter.admit(&[(org("a"), &l)], 0).is_ok() {
            times.push(t);
        }
        clock.advance(step);
        t += step;
    }
    assert_eq!(times.iter().filter(|x| x.is_zero()).count(), amount);
    let mut start = step;
    while start + period <= run {
        let n = times
            .iter()
            .filter(|x| **x >= start && **x < start + period)
            .count();
        assert!(
            n + 1 >= amount && n <= amount + 1,
            "{n} admitted in [{start:?}, +{period:?})"
        );
        start += step;
    }
}

#[test]
fn saturating_demand_admits_quota_plus_minus_one_per_window() {
    saturating_windows("10/s", secs(1), Duration::from_millis(7), secs(12));
    saturating_windows("7/s", secs(1), Duration::from_millis(3), secs(6));
    saturating_windows("60/min", secs(60), Duration::from_millis(250), secs(240));
}

#[test]
fn request_retry_after_is_exact() {
    let (clock, limiter) = setup();
    let l = limits(Some("3/min"), None, None);
    for _ in 0..3 {
        limiter.admit(&[(org("a"), &l)], 0).unwrap();
    }
    let refusal = limiter.admit(&[(org("a"), &l)], 0).unwrap_err();
    assert_eq!(refusal.kind, LimitKind::Requests);
    assert_eq!(refusal.scope, org("a"));
    assert_eq!(refusal.retry_after, secs(20));
    clock.advance(refusal.retry_after - Duration::from_nanos(1));
    let again = limiter.admit(&[(org("a"), &l)], 0).unwrap_err();
    assert_eq!(again.retry_after, Duration::from_nanos(1));
    clock.advance(Duration::from_nanos(1));
    limiter.admit(&[(org("a"), &l)], 0).unwrap();
}

#[test]
fn token_retry_after_is_exact_and_large_requests_pass_a_full_bucket() {
    let (clock, limiter) = setup();
    let l = limits(None, Some("1000/min"), None);
    let s = [(org("a"), &l)];
    // Bigger than the whole quota: admitted from a full bucket, which is then in debt.
    limiter.admit(&s, 1500).unwrap();
    assert_eq!(token_level(&limiter, &org("a")), -500);
    let refusal = limiter.admit(&s, 10).unwrap_err();
    assert_eq!(refusal.kind, LimitKind::Tokens);
    // 510 tokens at 1000/min = 30.6 s.
    assert_eq!(refusal.retry_after, Duration::from_millis(30_600));
    clock.advance(refusal.retry_after - Duration::from_nanos(1));
    assert!(limiter.admit(&s, 10).is_err());
    clock.advance(Duration::from_nanos(1));
    limiter.admit(&s, 10).unwrap();
}

#[test]
fn zero_token_reservation_is_refused_only_in_debt() {
    let (clock, limiter) = setup();
    let l = limits(None, Some("100/s"), None);
    let s = [(org("a"), &l)];
    let mut a = limiter.admit(&s, 100).unwrap().reservation;
    limiter.admit(&s, 0).unwrap();
    a.settle(101);
    assert_eq!(
        limiter.admit(&s, 0).unwrap_err().retry_after,
        Duration::from_millis(10)
    );
    clock.advance(Duration::from_millis(10));
    limiter.admit(&s, 0).unwrap();
}

#[test]
fn settle_refunds_debits_and_is_idempotent() {
    let (clock, limiter) = setup();
    let l = limits(None, Some("1000/min"), None);
    let s = [(org("a"), &l)];
    let mut r = limiter.admit(&s, 400).unwrap().reservation;
    assert_eq!(r.charged(), 400);
    r.settle(150);
    r.settle(150);
    assert_eq!(r.charged(), 150);
    assert_eq!(token_level(&limiter, &org("a")), 850);
    r.settle(1200);
    assert_eq!(token_level(&limiter, &org("a")), -200);
    drop(r);
    // Dropping keeps the charge.
    assert_eq!(token_level(&limiter, &org("a")), -200);
    clock.advance(secs(60));
    assert_eq!(token_level(&limiter, &org("a")), 800);
    clock.advance(secs(60));
    assert_eq!(token_level(&limiter, &org("a")), 1000);
}

#[test]
fn a_refund_never_fills_beyond_capacity() {
    let (clock, limiter) = setup();
    let l = limits(None, Some("1000/min"), None);
    let s = [(org("a"), &l)];
    let mut r = limiter.admit(&s, 600).unwrap().reservation;
    clock.advance(secs(60));
    r.settle(0);
    assert_eq!(token_level(&limiter, &org("a")), 1000);
}

#[test]
fn concurrency_slots_are_released_on_drop() {
    let (_, limiter) = setup();
    let l = limits(None, None, Some(2));
    let s = [(org("a"), &l)];
    let a = limiter.admit(&s, 0).unwrap();
    let b = limiter.admit(&s, 0).unwrap();
    let refusal = limiter.admit(&s, 0).unwrap_err();
    assert_eq!(refusal.kind, LimitKind::Concurrency);
    assert_eq!(refusal.retry_after, CONCURRENCY_RETRY_AFTER);
    assert_eq!(limiter.in_flight(&org("a")), 2);
    drop(a);
    let c = limiter.admit(&s, 0).unwrap();
    // Splitting keeps the slot with the `Slots` part.
    let (_, reservation, slots) = c.into_parts();
    drop(reservation);
    assert_eq!(limiter.in_flight(&org("a")), 2);
    drop(slots);
    drop(b);
    assert_eq!(limiter.in_flight(&org("a")), 0);
}

#[test]
fn concurrency_slots_are_released_when_the_holder_panics() {
    let (_, limiter) = setup();
    let l = limits(None, None, Some(1));
    let s = [(org("a"), &l)];
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _held = limiter.admit(&s, 0).unwrap();
        assert_eq!(limiter.in_flight(&org("a")), 1);
        panic!("the request handler failed");
    }));
    assert!(outcome.is_err());
    assert_eq!(limiter.in_flight(&org("a")), 0);

    let limiter = Arc::new(limiter);
    let held_by_thread = limiter.clone();
    let joined = std::thread::spawn(move || {
        let l = limits(None, None, Some(1));
        let _held = held_by_thread.admit(&[(org("a"), &l)], 0).unwrap();
        panic!("a task holding a slot panicked");
    })
    .join();
    assert!(joined.is_err());
    assert_eq!(limiter.in_flight(&org("a")), 0);
    limiter.admit(&s, 0).unwrap();
}

#[test]
fn concurrency_returns_to_zero_after_mixed_threads() {
    let (_, limiter) = setup();
    const LIMIT: u32 = 3;
    let holders = AtomicU32::new(0);
    std::thread::scope(|scope| {
        for t in 0..4u32 {
            let (limiter, holders) = (&limiter, &holders);
            scope.spawn(move || {
                let org_l = limits(None, Some("1_000_000/s"), Some(LIMIT));
                let key_l = limits(None, None, Some(2));
                let mut held = Vec::new();
                let mut refused = 0;
                for i in 0..5000u32 {
                    let k = key(&format!("k{}", (i + t) % 3));
                    match limiter.admit(&[(org("a"), &org_l), (k, &key_l)], 1) {
                        Ok(a) => {
                            let now = holders.fetch_add(1, Ordering::AcqRel) + 1;
                            assert!(now <= LIMIT, "{now} holders over a limit of {LIMIT}");
                            held.push(a);
                        }
                        Err(_) => refused += 1,
                    }
                    if (i + t) % 3 != 0 && !held.is_empty() {
                        holders.fetch_sub(1, Ordering::AcqRel);
                        held.swap_remove(0);
                    }
                }
                holders.fetch_sub(held.len() as u32, Ordering::AcqRel);
                drop(held);
                refused
            });
        }
    });
    assert_eq!(limiter.in_flight(&org("a")), 0);
    for k in 0..3 {
        assert_eq!(limiter.in_flight(&key(&format!("k{k}"))), 0);
    }
}

#[test]
fn a_refusal_in_one_scope_leaves_the_others_as_they_were() {
    let (_, limiter) = setup();
    let org_l = limits(Some("100/min"), Some("10_000/min"), Some(10));
    let key_l = limits(Some("100/min"), Some("500/min"), Some(10));
    let model_l = limits(Some("1/min"), Some("10_000/min"), Some(10));
    let scopes = |m: &str| {
        [
            (org("a"), &org_l),
            (key("k"), &key_l),
            (Scope::OrgModel("a".into(), m.into()), &model_l),
        ]
    };
    let _first = limiter.admit(&scopes("gpt"), 100).unwrap();
    let before = limiter.peek(&scopes("gpt")[..2]);
    let org_req = request_window(&limiter, &org("a"), &org_l);

    // Refused by the key's tokens (checked before any request cell is taken).
    let refusal = limiter.admit(&scopes("other"), 450).unwrap_err();
    assert_eq!(
        (refusal.kind, refusal.scope.clone()),
        (LimitKind::Tokens, key("k"))
    );
    // Refused by the model scope's requests, last: the org's and key's cells are given back.
    let refusal = limiter.admit(&scopes("gpt"), 10).unwrap_err();
    assert_eq!(refusal.kind, LimitKind::Requests);
    assert_eq!(refusal.scope, Scope::OrgModel("a".into(), "gpt".into()));

    assert_eq!(limiter.peek(&scopes("gpt")[..2]), before);
    assert_eq!(request_window(&limiter, &org("a"), &org_l), org_req);
    assert_eq!(token_level(&limiter, &org("a")), 9_900);
    assert_eq!(token_level(&limiter, &key("k")), 400);
    assert_eq!(limiter.in_flight(&org("a")), 1);
    assert_eq!(limiter.in_flight(&key("k")), 1);
}

#[test]
fn rate_info_reports_limit_remaining_and_reset() {
    let (clock, limiter) = setup();
    let org_l = limits(Some("100/min"), Some("1000/min"), None);
    let key_l = limits(Some("10/min"), Some("100_000/min"), None);
    let s = [(org("a"), &org_l), (key("k"), &key_l)];
    let a = limiter.admit(&s, 100).unwrap();
    let requests = a.info.requests.unwrap();
    assert_eq!(
        requests,
        Window {
            limit: 10,
            remaining: 9,
            reset: secs(6)
        }
    );
    let tokens = a.info.tokens.unwrap();
    assert_eq!(
        tokens,
        Window {
            limit: 1000,
            remaining: 900,
            reset: secs(6)
        }
    );
    clock.advance(secs(3));
    let b = limiter.admit(&s, 0).unwrap();
    // Key: 9 left + half an interval refilled - 1 taken = 8 whole, full in 3 + 6 s.
    assert_eq!(
        b.info.requests.unwrap(),
        Window {
            limit: 10,
            remaining: 8,
            reset: secs(9)
        }
    );
    assert_eq!(
        b.info.tokens.unwrap(),
        Window {
            limit: 1000,
            remaining: 950,
            reset: secs(3)
        }
    );
    // A refusal reports the windows too (and the org's requests window is untouched by it).
    let refusal = limiter.admit(&s, 5000).unwrap_err();
    assert_eq!(refusal.kind, LimitKind::Tokens);
    assert_eq!(refusal.info, limiter.peek(&s));
    assert_eq!(refusal.info.tokens.unwrap().remaining, 950);
    // Never-seen scopes report full windows.
    let fresh = limiter.peek(&[(org("new"), &org_l)]);
    assert_eq!(fresh.requests.unwrap().remaining, 100);
    assert_eq!(fresh.tokens.unwrap().reset, Duration::ZERO);
}

/// On a clock that moves between readings (as a real one does), the first request of a full
/// 10/min bucket leaves 9 and the next 8. Reading the window with the admission's earlier
/// instant once reported 8 and then 8.
#[test]
fn remaining_requests_are_exact_on_a_moving_clock() {
    let (clock, limiter) = setup();
    clock.set_tick(Duration::from_micros(1));
    let l = limits(Some("10/min"), None, None);
    let s = [(org("a"), &l)];
    let first = limiter.admit(&s, 0).unwrap();
    assert_eq!(first.info.requests.unwrap().remaining, 9);
    let second = limiter.admit(&s, 0).unwrap();
    assert_eq!(second.info.requests.unwrap().remaining, 8);
    // A large quota: no drift either (one emission interval is 60 µs here, the tick 1 µs).
    let big = limits(Some("1_000_000/min"), None, None);
    let s = [(org("b"), &big)];
    for taken in 1..=50u64 {
        let a = limiter.admit(&s, 0).unwrap();
        let remaining = a.info.requests.unwrap().remaining;
        assert!(
            (1_000_000 - taken..=1_000_000).contains(&remaining),
            "after {taken}: {remaining}"
        );
    }
}
