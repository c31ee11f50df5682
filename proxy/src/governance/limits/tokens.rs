//! A lock-free token bucket that can refund and go into debt.
//!
//! governor's GCRA only ever takes cells: it cannot give back what a request reserved but did not
//! use, nor charge more than the burst, so token limits (reserved up front, settled once the real
//! usage is known) need their own bucket. This one keeps GCRA's idea of a *theoretical arrival
//! time* (TAT) in a single `AtomicU64`, updated with a CAS loop, read from the same `Clock` as
//! governor: the bucket is full when `tat <= now`, and `tat - now` is what is used (or owed).
//!
//! Time is counted in *units*: one token is `unit` units (an integer, so charges and refunds of
//! whole tokens add up exactly), and `now` in units is `floor(now_ns * amount * unit /
//! period_ns)`, computed in `u128`, so a period refills exactly `amount` tokens with no drift.
//! `unit = max(1, period_ns / amount)` keeps the unit clock at most one unit per nanosecond, so
//! a `u64` lasts centuries (a quota above 10⁹ tokens per second shortens that proportionally;
//! arithmetic saturates rather than wraps).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::quota::Quota;
use super::window::Window;
use crate::clock::duration_nanos;

/// The TAT of a bucket replaced by a converted one (quota change): updates seeing it retry on
/// the entry's current bucket, so nothing is lost while the conversion happens.
pub(super) const RETIRED: u64 = u64::MAX;
/// The largest live TAT; debt saturates here instead of reaching `RETIRED`.
const MAX_TAT: u64 = u64::MAX - 1;

#[derive(Debug)]
pub(super) struct TokenBucket {
    quota: Quota,
    amount: u64,
    period_ns: u64,
    /// Units per token.
    unit: u64,
    /// `amount * unit`: a full bucket, in units.
    capacity: u64,
    /// `capacity == period_ns` (e.g. `1000/min`): one unit per nanosecond, no division needed.
    exact: bool,
    /// Theoretical arrival time in units since the clock's origin.
    tat: AtomicU64,
}

/// Why a bucket did not take a reservation.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Short {
    /// Not enough tokens; they will be there after this long.
    Wait(Duration),
    /// The bucket was replaced by a converted one; retry on the current bucket.
    Retired,
}

fn sat_u64(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

impl TokenBucket {
    /// A bucket for `quota` holding `used_units` already used (0 = full) at `now_ns`.
    fn with_used(quota: Quota, now_ns: u64, used_units: u64) -> Self {
        let amount = quota.amount.max(1);
        let period_ns = duration_nanos(quota.period).max(1);
        let unit = (period_ns / amount).max(1);
        let mut bucket = Self {
            quota,
            amount,
            period_ns,
            unit,
            capacity: amount.saturating_mul(unit),
            exact: amount.checked_mul(unit) == Some(period_ns),
            tat: AtomicU64::new(0),
        };
        // A full bucket has TAT 0, full at any reading: the caller's `now` may have been read
        // a moment before this bucket was built, and must still find it full.
        let tat = if used_units == 0 {
            0
        } else {
            bucket
                .units_at(now_ns)
                .saturating_add(used_units)
                .min(MAX_TAT)
        };
        bucket.tat = AtomicU64::new(tat);
        bucket
    }

    /// A full bucket.
    pub(super) fn new(quota: Quota, now_ns: u64) -> Self {
        Self::with_used(quota, now_ns, 0)
    }

    /// A bucket for `quota` carrying over what `old` had used (or owed) at `now_ns`, given
    /// `old`'s final TAT (returned by `retire`). Rounds up: a conversion never frees a fraction.
    pub(super) fn converted(old: &TokenBucket, old_tat: u64, quota: Quota, now_ns: u64) -> Self {
        let used_old = u128::from(old_tat.saturating_sub(old.units_at(now_ns)));
        let fresh = Self::new(quota, now_ns);
        let used_new = (used_old * u128::from(fresh.unit)).div_ceil(u128::from(old.unit));
        Self::with_used(quota, now_ns, sat_u64(used_new))
    }

    pub(super) fn quota(&self) -> Quota {
        self.quota
    }

    /// `now_ns` on the unit clock.
    fn units_at(&self, now_ns: u64) -> u64 {
        if self.exact {
            return now_ns;
        }
        let scaled = u128::from(now_ns) * u128::from(self.amount) * u128::from(self.unit);
        sat_u64(scaled / u128::from(self.period_ns))
    }

    /// The first instant (ns) at which the unit clock reads at least `units`.
    fn instant_of(&self, units: u64) -> u64 {
        if self.exact {
            return units;
        }
        let per = u128::from(self.amount) * u128::from(self.unit);
        sat_u64((u128::from(units) * u128::from(self.period_ns)).div_ceil(per))
    }

    fn tokens_to_units(&self, tokens: u64) -> u64 {
        tokens.saturating_mul(self.unit)
    }

    /// Takes `n` tokens when the bucket holds at least `min(n, amount)`; otherwise says how long
    /// until it will.
    pub(super) fn try_take(&self, n: u64, now_ns: u64) -> Result<(), Short> {
        let now_u = self.units_at(now_ns);
        let need = self.tokens_to_units(n.min(self.amount));
        let slack = self.capacity - need;
        let cost = self.tokens_to_units(n);
        let mut cur = self.tat.load(Ordering::Acquire);
        loop {
            if cur == RETIRED {
                return Err(Short::Retired);
            }
            // Level = capacity - (tat - now); admitted when level >= need.
            let allowed = now_u.saturating_add(slack);
            if cur > allowed {
                let at = self.instant_of(cur - slack);
                return Err(Short::Wait(Duration::from_nanos(
                    at.saturating_sub(now_ns).max(1),
                )));
            }
            let next = cur.max(now_u).saturating_add(cost).min(MAX_TAT);
            match self
                .tat
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(()),
                Err(seen) => cur = seen,
            }
        }
    }

    /// Debits (`delta > 0`, possibly into debt) or refunds (`delta < 0`, never above capacity)
    /// whole tokens. `Err(())` means the bucket was retired: apply it to the current one.
    pub(super) fn adjust(&self, delta: i128, now_ns: u64) -> Result<(), ()> {
        let now_u = self.units_at(now_ns);
        let units = sat_u64(delta.unsigned_abs().saturating_mul(u128::from(self.unit)));
        let mut cur = self.tat.load(Ordering::Acquire);
        loop {
            if cur == RETIRED {
                return Err(());
            }
            let next = if delta >= 0 {
                cur.max(now_u).saturating_add(units).min(MAX_TAT)
            } else {
                cur.saturating_sub(units).max(now_u)
            };
            match self
                .tat
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(()),
                Err(seen) => cur = seen,
            }
        }
    }

    /// Marks the bucket replaced and returns its last TAT; `None` if already retired.
    pub(super) fn retire(&self) -> Option<u64> {
        let tat = self.tat.swap(RETIRED, Ordering::AcqRel);
        (tat != RETIRED).then_some(tat)
    }

    /// Whole tokens available now (negative in debt; rounded down), or `None` when retired.
    pub(super) fn level(&self, now_ns: u64) -> Option<i128> {
        let tat = self.tat.load(Ordering::Acquire);
        if tat == RETIRED {
            return None;
        }
        let used = i128::from(tat.saturating_sub(self.units_at(now_ns)));
        let level = i128::from(self.capacity) - used;
        Some(level.div_euclid(i128::from(self.unit)))
    }

    /// True when full again: indistinguishable from a fresh bucket.
    pub(super) fn is_full(&self, now_ns: u64) -> bool {
        let tat = self.tat.load(Ordering::Acquire);
        tat != RETIRED && tat <= self.units_at(now_ns)
    }

    /// Limit, remaining tokens and time until full, or `None` when retired.
    pub(super) fn window(&self, now_ns: u64) -> Option<Window> {
        let tat = self.tat.load(Ordering::Acquire);
        if tat == RETIRED {
            return None;
        }
        let level = self.level(now_ns)?;
        let now_u = self.units_at(now_ns);
        let reset = if tat <= now_u {
            0
        } else {
            self.instant_of(tat).saturating_sub(now_ns)
        };
        Some(Window {
            limit: self.amount,
            remaining: u64::try_from(level.max(0)).unwrap_or(u64::MAX),
            reset: Duration::from_nanos(reset),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn bucket(text: &str) -> TokenBucket {
        TokenBucket::new(Quota::parse(text).unwrap(), 5 * SEC)
    }

    /// The admission reads the clock before it builds a scope's first bucket; an earlier
    /// reading must still see the new bucket full (it once refused a whole-quota request).
    #[test]
    fn a_new_bucket_is_full_for_readings_taken_before_it_was_built() {
        let b = bucket("100/s");
        assert_eq!(b.level(4 * SEC), Some(100));
        assert_eq!(b.try_take(100, 4 * SEC), Ok(()));
        assert_eq!(b.level(4 * SEC), Some(0));
    }

    #[test]
    fn large_request_is_admitted_from_a_full_bucket_then_owes() {
        let b = bucket("100/s");
        assert_eq!(b.try_take(250, 5 * SEC), Ok(()));
        assert_eq!(b.level(5 * SEC), Some(-150));
        // Needs min(1, 100) = 1 token: 151 tokens of refill = 1.51 s.
        assert_eq!(
            b.try_take(1, 5 * SEC),
            Err(Short::Wait(Duration::from_millis(1510)))
        );
        assert_eq!(b.try_take(1, 5 * SEC + 1_510_000_000), Ok(()));
    }

    #[test]
    fn refill_of_a_non_dividing_quota_is_exact_per_period() {
        let b = bucket("7/s");
        assert_eq!(b.try_take(7, 5 * SEC), Ok(()));
        assert_eq!(b.level(5 * SEC), Some(0));
        assert_eq!(b.level(6 * SEC - 1), Some(6));
        assert_eq!(b.level(6 * SEC), Some(7));
        assert_eq!(b.level(60 * SEC), Some(7));
        assert!(b.is_full(6 * SEC));
        assert!(!b.is_full(6 * SEC - 1));
    }

    #[test]
    fn wait_is_exact_for_a_non_dividing_quota() {
        let b = bucket("7/s");
        assert_eq!(b.try_take(7, 5 * SEC), Ok(()));
        let Err(Short::Wait(wait)) = b.try_take(3, 5 * SEC) else {
            panic!("expected a wait")
        };
        let at = 5 * SEC + duration_nanos(wait);
        assert_eq!(
            b.try_take(3, at - 1),
            Err(Short::Wait(Duration::from_nanos(1)))
        );
        assert_eq!(b.try_take(3, at), Ok(()));
    }

    #[test]
    fn refunds_stop_at_capacity_and_retired_buckets_refuse_updates() {
        let b = bucket("10/min");
        assert_eq!(b.try_take(4, 5 * SEC), Ok(()));
        assert_eq!(b.adjust(-10, 5 * SEC), Ok(()));
        assert_eq!(b.level(5 * SEC), Some(10));
        assert_eq!(b.adjust(3, 5 * SEC), Ok(()));
        assert_eq!(b.level(5 * SEC), Some(7));
        assert!(b.retire().is_some());
        assert_eq!(b.retire(), None);
        assert_eq!(b.adjust(1, 5 * SEC), Err(()));
        assert_eq!(b.try_take(1, 5 * SEC), Err(Short::Retired));
        assert_eq!(b.level(5 * SEC), None);
    }

    #[test]
    fn conversion_keeps_usage_including_debt() {
        let old = bucket("100/min");
        assert_eq!(old.try_take(130, 5 * SEC), Ok(()));
        let tat = old.retire().unwrap();
        let bigger = TokenBucket::converted(&old, tat, Quota::parse("1000/min").unwrap(), 5 * SEC);
        assert_eq!(bigger.level(5 * SEC), Some(870));
        let smaller = TokenBucket::converted(&old, tat, Quota::parse("50/min").unwrap(), 5 * SEC);
        assert_eq!(smaller.level(5 * SEC), Some(-80));
    }
}
