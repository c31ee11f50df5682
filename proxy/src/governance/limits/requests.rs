//! Requests per period: governor's GCRA over a state cell sluice can read.
//!
//! Each scope entry owns a direct `governor::RateLimiter` with quota `amount` per `period` and a
//! burst of `amount`, so a full bucket admits exactly `amount` at once, then one request every
//! `period / amount` (OpenAI's behaviour). GCRA property, stated honestly: after the initial
//! burst, under saturating demand, any window of one period admits `amount` ± 1 (the window's
//! edges cut the regular emission schedule at arbitrary phases). governor works in whole
//! nanoseconds: the emission interval is `period / amount` rounded down (at least 1 ns), so a
//! quota like `7/s` runs a few nanoseconds per period fast, and the burst is clamped to
//! `u32::MAX`; both are far below anything observable.
//!
//! The limiter's state store is [`SharedTat`], an `AtomicU64` behind an `Arc` that the bucket
//! also holds. governor updates it with its own CAS loop exactly like its `InMemoryState`; sluice
//! only *reads* it to report `reset`, to tell when the bucket is full again (eviction), to carry
//! the usage over to a limiter with a new quota, and to give back the cell of a request that
//! another scope refused (subtracting one emission interval from the TAT is exactly the inverse
//! of GCRA's admission step).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock as _;
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::{NotKeyed, StateStore};
use governor::RateLimiter;

use super::quota::Quota;
use super::tokens::RETIRED;
use super::window::Window;
use crate::clock::{duration_nanos, GovernorClock};

/// governor's GCRA state (TAT in ns since the limiter's start; 0 = never used) in a cell that
/// sluice can read too. `RETIRED` marks a cell replaced by a converted limiter: governor then
/// refuses (the TAT lies centuries ahead) and sluice retries on the current limiter.
#[derive(Debug, Clone, Default)]
pub(super) struct SharedTat(Arc<AtomicU64>);

impl StateStore for SharedTat {
    type Key = NotKeyed;

    fn measure_and_replace<T, F, E>(&self, _key: &NotKeyed, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let read = |v: u64| (v != 0).then(|| Nanos::new(v));
        let mut prev = self.0.load(Ordering::Acquire);
        loop {
            let (result, next) = f(read(prev))?;
            match self.0.compare_exchange_weak(
                prev,
                next.as_u64(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(result),
                Err(seen) => prev = seen,
            }
        }
    }
}

type Gcra = RateLimiter<NotKeyed, SharedTat, GovernorClock, StateInformationMiddleware>;

/// The largest TAT a conversion may leave (about 146 years of debt): governor adds its start to
/// the TAT when it reports a wait, and that sum must not overflow.
const MAX_TAT: u64 = u64::MAX / 4;

#[derive(Debug)]
pub(super) struct RequestBucket {
    quota: Quota,
    /// Burst and amount per period as governor applies it (clamped to `u32::MAX`).
    amount: u64,
    /// Emission interval in ns (`period / amount`, at least 1 ns).
    t: u64,
    limiter: Gcra,
    cell: SharedTat,
    /// Monotonic ns read just after governor read its own start: never earlier than governor's
    /// start, so "full" judged with it is conservative (by nanoseconds on a real clock, exactly
    /// with `FakeClock`).
    start: u64,
    clock: GovernorClock,
}

/// Why the limiter refused a request.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refused {
    Wait(Duration),
    Retired,
}

impl RequestBucket {
    /// A full bucket.
    #[expect(
        clippy::expect_used,
        reason = "governor refuses only a zero period, and `t` is at least 1 ns"
    )]
    pub(super) fn new(quota: Quota, clock: &GovernorClock) -> Self {
        let amount = quota.amount.clamp(1, u64::from(u32::MAX));
        let t = (duration_nanos(quota.period) / amount).max(1);
        let burst = std::num::NonZeroU32::new(u32::try_from(amount).unwrap_or(u32::MAX))
            .unwrap_or(std::num::NonZeroU32::MIN);
        let gov_quota = governor::Quota::with_period(Duration::from_nanos(t))
            .expect("t is at least 1 ns")
            .allow_burst(burst);
        let cell = SharedTat::default();
        let limiter: Gcra = RateLimiter::new(gov_quota, cell.clone(), clock.clone());
        let start = clock.now().as_u64();
        Self {
            quota,
            amount,
            t,
            limiter,
            cell,
            start,
            clock: clock.clone(),
        }
    }

    /// A bucket for `quota` carrying over the requests `old` had used (or owed) at `now`, given
    /// `old`'s final TAT (returned by `retire`). Rounds up: a conversion never frees a fraction.
    pub(super) fn converted(old: &RequestBucket, old_tat: u64, quota: Quota) -> Self {
        let fresh = Self::new(quota, &old.clock);
        let now = fresh.clock.now().as_u64();
        let used_old = u128::from(old_tat.saturating_sub(old.rel(now)));
        let used_new = (used_old * u128::from(fresh.t)).div_ceil(u128::from(old.t));
        let tat = if used_new == 0 {
            0
        } else {
            let used = u64::try_from(used_new).unwrap_or(u64::MAX);
            fresh.rel(now).saturating_add(used).min(MAX_TAT)
        };
        fresh.cell.0.store(tat, Ordering::Release);
        fresh
    }

    pub(super) fn quota(&self) -> Quota {
        self.quota
    }

    /// `now` as ns since this limiter's start.
    fn rel(&self, now: u64) -> u64 {
        now.saturating_sub(self.start)
    }

    /// Takes one request; on success returns the remaining burst capacity governor reports.
    pub(super) fn check(&self) -> Result<u64, Refused> {
        match self.limiter.check() {
            Ok(snapshot) => Ok(u64::from(snapshot.remaining_burst_capacity())),
            Err(_) if self.cell.0.load(Ordering::Acquire) == RETIRED => Err(Refused::Retired),
            Err(not_until) => Err(Refused::Wait(not_until.wait_time_from(self.clock.now()))),
        }
    }

    /// Gives back one request taken by `check`. `Err(())` means the cell was retired.
    pub(super) fn give_back(&self) -> Result<(), ()> {
        let mut cur = self.cell.0.load(Ordering::Acquire);
        loop {
            if cur == RETIRED {
                return Err(());
            }
            let next = cur.saturating_sub(self.t);
            match self
                .cell
                .0
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(()),
                Err(seen) => cur = seen,
            }
        }
    }

    /// Marks the bucket replaced and returns its last TAT; `None` if already retired.
    pub(super) fn retire(&self) -> Option<u64> {
        let tat = self.cell.0.swap(RETIRED, Ordering::AcqRel);
        (tat != RETIRED).then_some(tat)
    }

    /// True when full again: indistinguishable from a fresh bucket.
    pub(super) fn is_full(&self, now: u64) -> bool {
        let tat = self.cell.0.load(Ordering::Acquire);
        tat != RETIRED && tat <= self.rel(now)
    }

    /// Limit, remaining requests and time until full, or `None` when retired.
    pub(super) fn window(&self, now: u64) -> Option<Window> {
        let tat = self.cell.0.load(Ordering::Acquire);
        if tat == RETIRED {
            return None;
        }
        let now = self.rel(now);
        let tat = if tat == 0 { now } else { tat };
        let capacity = self.amount.saturating_mul(self.t);
        let free = now
            .saturating_add(capacity)
            .saturating_sub(tat)
            .min(capacity);
        Some(Window {
            limit: self.amount,
            remaining: free / self.t,
            reset: Duration::from_nanos(tat.saturating_sub(now)),
        })
    }
}
