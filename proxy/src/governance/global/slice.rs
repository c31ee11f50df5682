//! One scope's leased slice of a requests or tokens quota: cells Redis granted this replica for
//! one window, taken lock-free on the request path.
//!
//! A [`Grant`] belongs to one window and is valid until a conservative local deadline (the time
//! the lease was *sent* plus what Redis said was left of the window), so a cell is never used
//! after its window ended on Redis's clock. A later lease in the same window adds to the grant;
//! a lease in a new window replaces it, and the old grant's leftover cells die with their
//! window. Hand-written rather than the local buckets: a slice is a plain counter of cells
//! already paid for in Redis, and one atomic decrement is all the request path needs.

use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

use super::store::Leased;

/// How far ahead a slice is sized: the cells this replica used over the last refill interval,
/// scaled to this horizon.
const HORIZON_NS: u64 = 250_000_000;
/// After Redis said a window is spent, how long the slice refuses without asking again (capped
/// at the window's end): slices given back by idle replicas are found this late at most.
const RECHECK_NS: u64 = 500_000_000;

/// Cells of one window.
#[derive(Debug)]
pub struct Grant {
    pub window: u64,
    /// Monotonic ns after which the cells are void.
    pub valid_until: u64,
    pub cells: AtomicI64,
}

impl Grant {
    /// Takes `n` cells if there are that many and the grant is still valid at `now`.
    fn take(&self, n: u64, now: u64) -> bool {
        if now >= self.valid_until {
            return false;
        }
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.cells
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                (c >= n).then_some(c - n)
            })
            .is_ok()
    }
}

/// A slice of one scope's requests or tokens quota.
#[derive(Debug)]
pub struct Slice {
    /// The Redis key of the scope's window (`…:r:60000`).
    pub key: String,
    pub period: Duration,
    /// The quota's amount, as the latest request's configuration says.
    pub amount: AtomicU64,
    pub grant: ArcSwap<Grant>,
    /// A lease (refill or give-back) is on its way; at most one at a time.
    pub busy: AtomicBool,
    /// Redis said the window is spent: refuse without asking until then (monotonic ns).
    spent_until: AtomicU64,
    /// The window's pool at the last reply (the quota minus what all replicas leased).
    pub pool: AtomicI64,
    /// Cells taken since the last refill, and when that was: the demand that sizes the next one.
    taken: AtomicU64,
    last_refill: AtomicU64,
    /// The size the last refill aimed at; below half of it the next one starts.
    target: AtomicU64,
    /// The largest take that found the slice short since the last refill.
    short_of: AtomicU64,
    pub last_used: AtomicU64,
    /// Tokens used beyond what was reserved, to charge to the window with the next lease.
    pub debt: AtomicU64,
    pub changed: Arc<Notify>,
}

/// Why a take did not succeed.
#[derive(Debug, PartialEq, Eq)]
pub enum Short {
    /// The window is spent; it may have cells again after this long.
    Spent(Duration),
    /// Not enough cells here; a lease may bring them.
    Empty,
}

impl Slice {
    pub fn new(key: String, period: Duration, amount: u64) -> Self {
        Self {
            key,
            period,
            amount: AtomicU64::new(amount),
            grant: ArcSwap::from_pointee(Grant {
                window: 0,
                valid_until: 0,
                cells: AtomicI64::new(0),
            }),
            busy: AtomicBool::new(false),
            spent_until: AtomicU64::new(0),
            pool: AtomicI64::new(i64::try_from(amount).unwrap_or(i64::MAX)),
            taken: AtomicU64::new(0),
            last_refill: AtomicU64::new(0),
            target: AtomicU64::new(1),
            short_of: AtomicU64::new(0),
            last_used: AtomicU64::new(0),
            debt: AtomicU64::new(0),
            changed: Arc::new(Notify::new()),
        }
    }

    /// Takes `n` cells from the current grant; returns it (a token reservation settles
    /// against it) and whether the slice now wants a refill.
    pub fn take(&self, n: u64, now: u64) -> Result<(Arc<Grant>, bool), Short> {
        let grant = self.grant.load_full();
        if grant.take(n, now) {
            self.taken.fetch_add(n, Ordering::Relaxed);
            self.last_used.store(now, Ordering::Relaxed);
            let left = grant.cells.load(Ordering::Relaxed).max(0) as u64;
            let low = left.saturating_mul(2) < self.target.load(Ordering::Relaxed);
            return Ok((grant, low));
        }
        let spent = self.spent_until.load(Ordering::Acquire);
        if now < spent {
            return Err(Short::Spent(Duration::from_nanos(spent - now)));
        }
        self.short_of.fetch_max(n, Ordering::Relaxed);
        self.last_used.store(now, Ordering::Relaxed);
        Err(Short::Empty)
    }

    /// Puts back cells a refused request took; only into the grant they came from, so a cell
    /// never moves to another window.
    pub fn give_back(grant: &Grant, n: u64) {
        grant
            .cells
            .fetch_add(i64::try_from(n).unwrap_or(i64::MAX), Ordering::AcqRel);
    }

    /// Charges `n` more tokens to a reservation taken from `grant`: from the current grant's
    /// cells when it is still that grant and has them, else as debt for the next lease.
    /// Returns whether debt was added.
    pub fn charge_more(&self, grant: &Grant, n: u64, now: u64) -> bool {
        let current = self.grant.load();
        if std::ptr::eq(&**current, grant) && grant.take(n, now) {
            return false;
        }
        self.debt.fetch_add(n, Ordering::AcqRel);
        true
    }

    /// How many cells the next refill asks for: the recent demand over [`HORIZON_NS`], at
    /// least one and at most `max`, and never less than the largest take that found it short.
    pub fn want(&self, now: u64, max: u64) -> u64 {
        let since = now
            .saturating_sub(self.last_refill.load(Ordering::Relaxed))
            .max(1_000_000);
        let taken = self.taken.load(Ordering::Relaxed);
        let rate = u128::from(taken) * u128::from(HORIZON_NS) / u128::from(since);
        let target = u64::try_from(rate).unwrap_or(u64::MAX).clamp(1, max.max(1));
        let target = target.max(self.short_of.load(Ordering::Relaxed));
        self.target.store(target, Ordering::Relaxed);
        target
    }

    /// Applies a lease reply: adds to the grant of the same window or starts the new window's.
    /// `sent_at`: when the lease was sent (monotonic ns), the conservative start of the
    /// window's remaining time.
    pub fn apply(&self, reply: &Leased, asked: u64, sent_at: u64, now: u64) {
        let valid_until = sent_at.saturating_add(reply.left_in_window.as_nanos() as u64);
        let current = self.grant.load();
        let granted = i64::try_from(reply.granted).unwrap_or(i64::MAX);
        if current.window == reply.window && current.valid_until != 0 {
            current.cells.fetch_add(granted, Ordering::AcqRel);
        } else if reply.window > current.window || current.valid_until == 0 {
            self.grant.store(Arc::new(Grant {
                window: reply.window,
                valid_until,
                cells: AtomicI64::new(granted),
            }));
        }
        // A reply for an older window (it crossed a newer one) brings nothing usable.
        self.pool.store(reply.pool, Ordering::Relaxed);
        let spent = if reply.granted < asked {
            valid_until.min(now.saturating_add(RECHECK_NS))
        } else {
            0
        };
        self.spent_until.store(spent, Ordering::Release);
        self.taken.store(0, Ordering::Relaxed);
        self.short_of.store(0, Ordering::Relaxed);
        self.last_refill.store(now, Ordering::Relaxed);
    }

    /// Takes every cell of the current grant out for a give-back; returns them and the window.
    pub fn drain(&self) -> (u64, u64) {
        let grant = self.grant.load();
        let cells = grant.cells.swap(0, Ordering::AcqRel).max(0) as u64;
        (cells, grant.window)
    }

    /// What the replica knows of the window: remaining (its pool plus its own cells) and the
    /// time to the window's end.
    pub fn window(&self, now: u64) -> (u64, Duration) {
        let grant = self.grant.load();
        let own = if now < grant.valid_until {
            grant.cells.load(Ordering::Relaxed).max(0)
        } else {
            0
        };
        let pool = self.pool.load(Ordering::Relaxed).max(0);
        let reset = Duration::from_nanos(grant.valid_until.saturating_sub(now));
        ((pool + own) as u64, reset)
    }

    /// Nothing held, nothing owed, not busy: dropping it loses nothing.
    pub fn is_idle(&self, now: u64) -> bool {
        let grant = self.grant.load();
        (now >= grant.valid_until || grant.cells.load(Ordering::Relaxed) <= 0)
            && self.debt.load(Ordering::Relaxed) == 0
            && !self.busy.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn leased(granted: u64, window: u64, left_ms: u64, pool: i64) -> Leased {
        Leased {
            granted,
            window,
            left_in_window: Duration::from_millis(left_ms),
            pool,
        }
    }

    #[test]
    fn cells_are_taken_until_empty_and_never_after_their_window() {
        let s = Slice::new("k".into(), Duration::from_secs(60), 300);
        assert_eq!(s.take(1, 0).unwrap_err(), Short::Empty);
        s.apply(&leased(3, 7, 1_000, 297), 3, 10 * MS, 11 * MS);
        for _ in 0..3 {
            assert!(s.take(1, 20 * MS).is_ok());
        }
        assert_eq!(s.take(1, 20 * MS).unwrap_err(), Short::Empty);
        // More in the same window adds; the deadline counts from when the lease was sent.
        s.apply(&leased(2, 7, 900, 295), 2, 100 * MS, 101 * MS);
        assert!(s.take(2, 1_009 * MS).is_ok());
        s.apply(&leased(5, 7, 800, 290), 5, 200 * MS, 201 * MS);
        assert!(s.take(1, 1_010 * MS).is_err(), "past the first deadline");
        // A new window replaces the grant; its cells are not the old window's.
        s.apply(&leased(4, 8, 60_000, 296), 4, 1_020 * MS, 1_021 * MS);
        assert!(s.take(4, 1_030 * MS).is_ok());
        assert_eq!(s.grant.load().window, 8);
    }

    #[test]
    fn a_spent_window_refuses_without_asking_until_a_recheck() {
        let s = Slice::new("k".into(), Duration::from_secs(60), 10);
        s.apply(&leased(2, 1, 30_000, 0), 5, 0, 0);
        assert!(s.take(2, MS).is_ok());
        let Err(Short::Spent(wait)) = s.take(1, MS) else {
            panic!("spent")
        };
        assert_eq!(wait, Duration::from_nanos(RECHECK_NS - MS));
        assert_eq!(s.take(1, RECHECK_NS).unwrap_err(), Short::Empty);
    }

    #[test]
    fn slices_follow_demand_within_bounds() {
        let s = Slice::new("k".into(), Duration::from_secs(60), 1_000);
        s.apply(&leased(100, 1, 60_000, 900), 100, 0, 0);
        for _ in 0..40 {
            s.take(1, 100 * MS).unwrap();
        }
        // 40 cells in 100 ms: 100 over the 250 ms horizon, capped at 50.
        assert_eq!(s.want(100 * MS, 50), 50);
        assert_eq!(s.want(100 * MS, 500), 100);
        assert_eq!(s.take(500, 100 * MS).unwrap_err(), Short::Empty);
        assert_eq!(s.want(100 * MS, 50), 500, "a large take is asked for whole");
    }

    #[test]
    fn extra_tokens_come_from_the_grant_or_become_debt() {
        let s = Slice::new("k".into(), Duration::from_secs(60), 1_000);
        s.apply(&leased(100, 1, 60_000, 900), 100, 0, 0);
        let (grant, _) = s.take(60, MS).unwrap();
        assert!(!s.charge_more(&grant, 30, MS));
        assert_eq!(grant.cells.load(Ordering::Relaxed), 10);
        assert!(s.charge_more(&grant, 30, MS));
        assert_eq!(s.debt.load(Ordering::Relaxed), 30);
        Slice::give_back(&grant, 5);
        assert_eq!(s.drain(), (15, 1));
    }
}
