//! The retry budget of a route: extra attempts are allowed only while they stay under a
//! fraction of the requests over a sliding window (as Envoy's and linkerd's budgets bound
//! retries), with a small floor, so a dying fleet is not hammered by its own failover.
//!
//! Hand-written rather than a crate: it is ten pairs of atomic counters on the request path,
//! and the limiter crates in use (governor) bound rates, not ratios.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

/// Seconds in the window, one bucket each.
const WINDOW_SECS: u64 = 10;
/// Retries allowed per second whatever the traffic, so a quiet route can still fail over.
const MIN_RETRIES_PER_SEC: u32 = 10;

#[derive(Debug, Default)]
struct Bucket {
    /// The second (monotonic) this bucket counts; another second reuses it after a reset.
    second: AtomicU64,
    requests: AtomicU32,
    retries: AtomicU32,
}

#[derive(Debug, Default)]
pub struct RetryBudget {
    buckets: [Bucket; WINDOW_SECS as usize],
}

impl RetryBudget {
    fn bucket(&self, now_ms: u64) -> &Bucket {
        let second = now_ms / 1000 + 1; // + 1: zero marks a bucket never used
        let b = &self.buckets[(second % WINDOW_SECS) as usize];
        let seen = b.second.load(Relaxed);
        if seen != second
            && b.second
                .compare_exchange(seen, second, Relaxed, Relaxed)
                .is_ok()
        {
            // A count racing with this reset may be lost: an estimate can afford it.
            b.requests.store(0, Relaxed);
            b.retries.store(0, Relaxed);
        }
        b
    }

    fn window(&self, now_ms: u64) -> (u64, u64) {
        let second = now_ms / 1000 + 1;
        self.buckets
            .iter()
            .filter(|b| second.saturating_sub(b.second.load(Relaxed)) < WINDOW_SECS)
            .fold((0, 0), |(q, r), b| {
                (
                    q + u64::from(b.requests.load(Relaxed)),
                    r + u64::from(b.retries.load(Relaxed)),
                )
            })
    }

    /// A request (its first attempt) was sent.
    pub fn request(&self, now_ms: u64) {
        self.bucket(now_ms).requests.fetch_add(1, Relaxed);
    }

    /// Takes one retry from the budget if `ratio` of the window's requests (or the floor)
    /// allows it.
    pub fn try_retry(&self, ratio: f64, now_ms: u64) -> bool {
        let (requests, retries) = self.window(now_ms);
        let floor = u64::from(MIN_RETRIES_PER_SEC) * WINDOW_SECS;
        let allowed = ((requests as f64 * ratio) as u64).max(floor);
        if retries >= allowed {
            return false;
        }
        self.bucket(now_ms).retries.fetch_add(1, Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_then_the_ratio_bound_retries() {
        let b = RetryBudget::default();
        let granted = (0..500).filter(|_| b.try_retry(0.2, 0)).count();
        assert_eq!(granted, 100, "the floor: 10 per second over 10 seconds");
        for _ in 0..1000 {
            b.request(0);
        }
        let more = (0..500).filter(|_| b.try_retry(0.2, 0)).count();
        assert_eq!(more, 100, "20 % of 1000 requests = 200 in all");
    }

    #[test]
    fn the_window_slides() {
        let b = RetryBudget::default();
        while b.try_retry(0.2, 0) {}
        assert!(!b.try_retry(0.2, 9_999));
        assert!(b.try_retry(0.2, 10_000), "second 0 has left the window");
    }
}
