//! One scope's concurrency lease: the slots this replica holds in Redis and the requests it runs
//! in them. A request takes a slot only below what Redis granted, so the fleet never runs more
//! than the cap while the leases are live; a lease not renewed within its TTL (a crashed
//! replica) is dropped by the next replica's call.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

/// After Redis refused more slots, how long the lease refuses without asking again.
const RECHECK_NS: u64 = 100_000_000;

#[derive(Debug)]
pub struct SlotLease {
    pub key: String,
    /// The cap, as the latest request's configuration says.
    pub cap: AtomicU32,
    /// Slots Redis granted this replica.
    pub held: AtomicU32,
    pub in_flight: AtomicU32,
    /// The most in flight since the last renewal: a renewal shrinks the lease to it.
    peak: AtomicU32,
    /// Requests waiting for a slot here (see [`Waiting`]).
    waiting: AtomicU32,
    spent_until: AtomicU64,
    /// When the lease was last renewed (monotonic ns).
    pub renewed: AtomicU64,
    pub busy: AtomicBool,
    pub changed: Arc<Notify>,
}

/// Why no slot was taken.
#[derive(Debug, PartialEq, Eq)]
pub enum Full {
    /// Redis has no slot for this replica right now.
    Spent,
    /// None held here; a lease may bring one.
    Empty,
}

impl SlotLease {
    pub fn new(key: String, cap: u32) -> Self {
        Self {
            key,
            cap: AtomicU32::new(cap),
            held: AtomicU32::new(0),
            in_flight: AtomicU32::new(0),
            peak: AtomicU32::new(0),
            waiting: AtomicU32::new(0),
            spent_until: AtomicU64::new(0),
            renewed: AtomicU64::new(0),
            busy: AtomicBool::new(false),
            changed: Arc::new(Notify::new()),
        }
    }

    /// Takes a slot below both the held lease and the configured cap.
    pub fn acquire(&self, cap: u32, now: u64) -> Result<(), Full> {
        if self.cap.load(Ordering::Relaxed) != cap {
            self.cap.store(cap, Ordering::Relaxed);
        }
        let limit = self.held.load(Ordering::Acquire).min(cap);
        let taken = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            });
        match taken {
            Ok(n) => {
                self.peak.fetch_max(n + 1, Ordering::Relaxed);
                Ok(())
            }
            Err(_) if now < self.spent_until.load(Ordering::Acquire) => Err(Full::Spent),
            Err(_) => Err(Full::Empty),
        }
    }

    pub fn release(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// The demand the next renewal serves: the recent peak plus the requests waiting for a slot
    /// (it asks for that, capped at the cap), and the slots in use it must keep. Resets the peak
    /// to what runs now.
    pub fn want(&self) -> (u32, u32) {
        let running = self.in_flight.load(Ordering::Acquire);
        let peak = self.peak.swap(running, Ordering::Relaxed);
        let waiting = self.waiting.load(Ordering::Acquire);
        (peak.max(running).saturating_add(waiting), running)
    }

    /// Counts one request as waiting here until the guard is dropped. A request counts once
    /// however often it retries, so the demand a renewal asks for is exactly what waits (an
    /// overcount would hold slots nobody uses, an undercount would not ask for them).
    pub fn wait(self: &Arc<Self>) -> Waiting {
        self.waiting.fetch_add(1, Ordering::AcqRel);
        Waiting(self.clone())
    }

    /// Applies a renewal: the slots now held. Fewer than the demand means no slot is to be had
    /// (Redis has none to spare, or the cap is reached), so the next requests are refused
    /// without asking for a moment.
    pub fn apply(&self, held: u32, demand: u32, now: u64) {
        self.held.store(held, Ordering::Release);
        let spent = if held < demand {
            now.saturating_add(RECHECK_NS)
        } else {
            0
        };
        self.spent_until.store(spent, Ordering::Release);
        self.renewed.store(now, Ordering::Relaxed);
    }

    /// Nothing running and nothing held: dropping it loses nothing.
    pub fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
            && self.held.load(Ordering::Acquire) == 0
            && !self.busy.load(Ordering::Relaxed)
    }
}

/// A request waiting for a slot of one lease (see [`SlotLease::wait`]).
#[derive(Debug)]
pub struct Waiting(Arc<SlotLease>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_taken_within_the_lease_and_the_lease_shrinks_to_its_peak() {
        let l = Arc::new(SlotLease::new("k".into(), 10));
        assert_eq!(l.acquire(10, 0), Err(Full::Empty));
        let first = l.wait();
        assert_eq!(l.want(), (1, 0));
        l.apply(3, 1, 0);
        assert_eq!(l.acquire(10, 0), Ok(()));
        drop(first);
        l.release();
        for _ in 0..3 {
            l.acquire(10, 0).unwrap();
        }
        assert_eq!(l.acquire(10, 0), Err(Full::Empty));
        let a = l.wait();
        // A cap lowered by a reload applies at once, whatever is held.
        l.release();
        assert_eq!(l.acquire(2, 0), Err(Full::Empty));
        let b = l.wait();
        assert_eq!(l.want(), (5, 2), "peak 3 plus the two waiting");
        drop((a, b));
        l.apply(2, 5, 0);
        assert_eq!(l.acquire(2, 1), Err(Full::Spent));
        l.release();
        l.release();
        assert_eq!(l.want(), (2, 0), "the last interval's peak");
        assert_eq!(
            l.want(),
            (0, 0),
            "idle for an interval: the lease shrinks to nothing"
        );
    }
}
