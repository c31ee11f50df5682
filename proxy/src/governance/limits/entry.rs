//! One scope's limiter state: a request bucket, a token bucket and an in-flight counter.
//!
//! Buckets are built lazily with the quota of the first `admit` that needs them and live in
//! `ArcSwapOption` slots, because the quota comes from each call (the configuration snapshot the
//! request started with), not from the entry. When a call brings a different quota, the bucket is
//! *converted*: the old one is retired (its TAT swapped for `RETIRED`, which makes every
//! concurrent update on it fail and retry on the current bucket, so nothing is lost), and a new
//! one carrying over the amount already used is published. A bucket is never reset to full.
//! During a reload, requests holding the old and the new snapshot may convert back and forth;
//! each conversion keeps the usage (rounded up), so this costs time, not correctness.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;

use super::quota::Quota;
use super::requests::RequestBucket;
use super::tokens::TokenBucket;
use crate::clock::{duration_nanos, Clock, GovernorClock};

#[derive(Debug)]
pub(super) struct Entry {
    pub(super) requests: ArcSwapOption<RequestBucket>,
    pub(super) tokens: ArcSwapOption<TokenBucket>,
    pub(super) in_flight: AtomicU32,
    clock: Arc<dyn Clock>,
    gov_clock: GovernorClock,
}

/// Runs `f` on the current bucket of `slot` once it has `quota`, building or converting it
/// first. `f` returns `None` when it met a retired bucket; it is then run on the new one.
fn with_current<B, R>(
    slot: &ArcSwapOption<B>,
    quota: Quota,
    quota_of: impl Fn(&B) -> Quota,
    build: impl Fn() -> B,
    convert: impl Fn(&B, u64) -> B,
    retire: impl Fn(&B) -> Option<u64>,
    mut f: impl FnMut(&B) -> Option<R>,
) -> R {
    loop {
        let guard = slot.load();
        match guard.as_deref() {
            Some(bucket) if quota_of(bucket) == quota => {
                if let Some(result) = f(bucket) {
                    return result;
                }
                // Retired under us: a conversion is about to publish its replacement.
                std::thread::yield_now();
            }
            Some(bucket) => match retire(bucket) {
                Some(tat) => slot.store(Some(Arc::new(convert(bucket, tat)))),
                None => std::thread::yield_now(),
            },
            None => {
                // Only the first builder wins; the others use its bucket.
                let _ = slot.compare_and_swap(&guard, Some(Arc::new(build())));
            }
        }
    }
}

/// Runs `f` on whatever bucket `slot` holds (settling does not know the current quota);
/// `None` when there is none.
fn with_any<B, R>(slot: &ArcSwapOption<B>, mut f: impl FnMut(&B) -> Option<R>) -> Option<R> {
    loop {
        let guard = slot.load();
        let bucket = guard.as_deref()?;
        if let Some(result) = f(bucket) {
            return Some(result);
        }
        std::thread::yield_now();
    }
}

impl Entry {
    pub(super) fn new(clock: &Arc<dyn Clock>) -> Self {
        Self {
            requests: ArcSwapOption::empty(),
            tokens: ArcSwapOption::empty(),
            in_flight: AtomicU32::new(0),
            clock: clock.clone(),
            gov_clock: GovernorClock::new(clock.clone()),
        }
    }

    pub(super) fn now_ns(&self) -> u64 {
        duration_nanos(self.clock.monotonic())
    }

    /// Runs `f` on the request bucket for `quota`.
    pub(super) fn with_requests<R>(
        &self,
        quota: Quota,
        f: impl FnMut(&RequestBucket) -> Option<R>,
    ) -> R {
        with_current(
            &self.requests,
            quota,
            RequestBucket::quota,
            || RequestBucket::new(quota, &self.gov_clock),
            |old, tat| RequestBucket::converted(old, tat, quota),
            RequestBucket::retire,
            f,
        )
    }

    /// Runs `f` on the token bucket for `quota`.
    pub(super) fn with_tokens<R>(
        &self,
        quota: Quota,
        f: impl FnMut(&TokenBucket) -> Option<R>,
    ) -> R {
        with_current(
            &self.tokens,
            quota,
            TokenBucket::quota,
            || TokenBucket::new(quota, self.now_ns()),
            |old, tat| TokenBucket::converted(old, tat, quota, self.now_ns()),
            TokenBucket::retire,
            f,
        )
    }

    /// Gives back a request taken from the current request bucket.
    pub(super) fn give_back_request(&self) {
        with_any(&self.requests, |b| b.give_back().ok());
    }

    /// Debits (`delta > 0`) or refunds (`delta < 0`) tokens on the current token bucket.
    pub(super) fn adjust_tokens(&self, delta: i128) {
        if delta != 0 {
            let now = self.now_ns();
            with_any(&self.tokens, |b| b.adjust(delta, now).ok());
        }
    }

    /// Takes an in-flight slot when fewer than `limit` are taken.
    pub(super) fn try_acquire(&self, limit: u32) -> bool {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
    }

    pub(super) fn release(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// Nothing in flight and every bucket full again: dropping it changes nothing.
    pub(super) fn is_idle(&self, now: u64) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
            && self
                .requests
                .load()
                .as_deref()
                .is_none_or(|b| b.is_full(now))
            && self.tokens.load().as_deref().is_none_or(|b| b.is_full(now))
    }
}
