//! Per-org spend caps per calendar period (UTC day, UTC month), in integer micro-USD.
//!
//! Spend is counted here, locally, as requests finish (their cost from the pricing table). An org
//! is admitted while its spend in the current period is below its cap, so it is stopped at its cap
//! and not before; requests already running when the cap is reached finish and are counted, so the
//! overshoot is bounded by what was in flight. Spend is keyed by `(org, period, period index)` in
//! a lock-free map, so a new day starts from zero without any reset step racing the charges;
//! finished periods are evicted. The ledger (control plane) later feeds the global figure back
//! through [`Spend::raise_to`] so budgets hold across replicas.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// An org's caps in micro-USD; `None` means no cap for that period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budget {
    pub daily: Option<u64>,
    pub monthly: Option<u64>,
}

impl Budget {
    pub fn is_empty(&self) -> bool {
        self.daily.is_none() && self.monthly.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    Day,
    Month,
}

impl Period {
    pub fn name(self) -> &'static str {
        match self {
            Period::Day => "daily",
            Period::Month => "monthly",
        }
    }

    /// The index of the period containing `t` (days or months since 1970-01, UTC), and how long
    /// until the next one starts.
    pub fn index(self, t: SystemTime) -> (u32, Duration) {
        let now: DateTime<Utc> = t.into();
        let date = now.date_naive();
        let (index, next) = match self {
            Period::Day => (
                date.num_days_from_ce() - EPOCH_DAYS_FROM_CE,
                date.succ_opt(),
            ),
            Period::Month => {
                let months = (date.year() - 1970) * 12 + date.month0() as i32;
                let (y, m) = if date.month() == 12 {
                    (date.year() + 1, 1)
                } else {
                    (date.year(), date.month() + 1)
                };
                (months, NaiveDate::from_ymd_opt(y, m, 1))
            }
        };
        let until = next
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|n| n.and_utc() - now)
            .and_then(|d| d.to_std().ok())
            .unwrap_or_default();
        (u32::try_from(index).unwrap_or(0), until)
    }
}

/// `num_days_from_ce` of 1970-01-01.
const EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// Why an org is refused: which cap, how much was spent, and when the period resets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverBudget {
    pub period: Period,
    pub cap: u64,
    pub spent: u64,
    pub resets_in: Duration,
}

/// Spend per org and period, shared by all worker threads and kept across reloads.
#[derive(Debug, Default)]
pub struct Spend {
    map: DashMap<(Arc<str>, Period, u32), AtomicU64>,
}

impl Spend {
    pub fn new() -> Self {
        Self::default()
    }

    fn caps(budget: &Budget) -> impl Iterator<Item = (Period, u64)> {
        [(Period::Day, budget.daily), (Period::Month, budget.monthly)]
            .into_iter()
            .filter_map(|(p, cap)| cap.map(|c| (p, c)))
    }

    /// Refuses when the org's spend in a capped period has reached the cap.
    pub fn check(
        &self,
        org: &Arc<str>,
        budget: &Budget,
        now: SystemTime,
    ) -> Result<(), OverBudget> {
        for (period, cap) in Self::caps(budget) {
            let (index, resets_in) = period.index(now);
            let spent = self.spent_in(org, period, index);
            if spent >= cap {
                return Err(OverBudget {
                    period,
                    cap,
                    spent,
                    resets_in,
                });
            }
        }
        Ok(())
    }

    /// Adds a finished request's cost to the current day and month.
    pub fn charge(&self, org: &Arc<str>, micro_usd: u64, now: SystemTime) {
        if micro_usd == 0 {
            return;
        }
        for period in [Period::Day, Period::Month] {
            let (index, _) = period.index(now);
            self.map
                .entry((org.clone(), period, index))
                .or_default()
                .fetch_add(micro_usd, Ordering::Relaxed);
        }
    }

    /// Spend of `org` in the period containing `now`.
    pub fn spent(&self, org: &Arc<str>, period: Period, now: SystemTime) -> u64 {
        self.spent_in(org, period, period.index(now).0)
    }

    fn spent_in(&self, org: &Arc<str>, period: Period, index: u32) -> u64 {
        self.map
            .get(&(org.clone(), period, index))
            .map_or(0, |v| v.load(Ordering::Relaxed))
    }

    /// Raises the local figure to a global one (from the ledger), never lowering it: local
    /// charges the ledger has not seen yet must not be forgotten.
    pub fn raise_to(&self, org: &Arc<str>, period: Period, now: SystemTime, micro_usd: u64) {
        let (index, _) = period.index(now);
        self.map
            .entry((org.clone(), period, index))
            .or_default()
            .fetch_max(micro_usd, Ordering::Relaxed);
    }

    /// Drops the figures of periods that have ended; returns how many.
    pub fn evict_past(&self, now: SystemTime) -> usize {
        let day = Period::Day.index(now).0;
        let month = Period::Month.index(now).0;
        let before = self.map.len();
        self.map.retain(|(_, period, index), _| match period {
            Period::Day => *index >= day,
            Period::Month => *index >= month,
        });
        before - self.map.len()
    }

    pub fn tracked(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> SystemTime {
        humantime::parse_rfc3339(rfc3339).unwrap()
    }

    #[test]
    fn periods_follow_the_utc_calendar() {
        let (d0, left) = Period::Day.index(at("1970-01-01T00:00:00Z"));
        assert_eq!((d0, left), (0, Duration::from_secs(86_400)));
        let (d, left) = Period::Day.index(at("2026-11-23T23:59:30Z"));
        assert_eq!(left, Duration::from_secs(30));
        assert_eq!(Period::Day.index(at("2026-11-24T00:00:00Z")).0, d + 1);
        let (m, left) = Period::Month.index(at("2026-12-31T23:00:00Z"));
        assert_eq!(m, 56 * 12 + 11);
        assert_eq!(left, Duration::from_secs(3600));
        assert_eq!(Period::Month.index(at("2027-01-01T00:00:00Z")).0, m + 1);
        // February of a leap year ends on the 29th.
        let (_, left) = Period::Month.index(at("2028-02-28T00:00:00Z"));
        assert_eq!(left, Duration::from_secs(2 * 86_400));
    }

    #[test]
    fn an_org_is_stopped_at_its_cap_and_not_before() {
        let spend = Spend::new();
        let org: Arc<str> = "acme".into();
        let budget = Budget {
            daily: Some(1_000),
            monthly: None,
        };
        let now = at("2026-11-23T12:00:00Z");
        spend.charge(&org, 999, now);
        assert!(spend.check(&org, &budget, now).is_ok(), "999 < 1000");
        spend.charge(&org, 1, now);
        let over = spend.check(&org, &budget, now).unwrap_err();
        assert_eq!(over.period, Period::Day);
        assert_eq!((over.cap, over.spent), (1_000, 1_000));
        assert_eq!(over.resets_in, Duration::from_secs(12 * 3600));
        // A new day starts from zero; the month still counts everything.
        let tomorrow = at("2026-11-24T00:00:01Z");
        assert!(spend.check(&org, &budget, tomorrow).is_ok());
        assert_eq!(spend.spent(&org, Period::Month, tomorrow), 1_000);
        let monthly = Budget {
            daily: None,
            monthly: Some(1_000),
        };
        assert_eq!(
            spend.check(&org, &monthly, tomorrow).unwrap_err().period,
            Period::Month
        );
        // Other orgs are unaffected.
        assert!(spend.check(&"beta".into(), &budget, now).is_ok());
    }

    #[test]
    fn global_figures_only_raise_and_past_periods_are_evicted() {
        let spend = Spend::new();
        let org: Arc<str> = "acme".into();
        let now = at("2026-11-23T12:00:00Z");
        spend.charge(&org, 500, now);
        spend.raise_to(&org, Period::Day, now, 300);
        assert_eq!(spend.spent(&org, Period::Day, now), 500, "never lowered");
        spend.raise_to(&org, Period::Day, now, 800);
        assert_eq!(spend.spent(&org, Period::Day, now), 800);
        assert_eq!(spend.tracked(), 2);
        assert_eq!(spend.evict_past(at("2026-11-24T00:00:00Z")), 1, "the day");
        assert_eq!(spend.evict_past(at("2026-12-01T00:00:00Z")), 1, "the month");
        assert_eq!(spend.tracked(), 0);
    }
}
