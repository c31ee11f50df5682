//! The one fake clock of the workspace: it implements [`sluice_wire::clock::Clock`], the trait
//! the proxy (limits, budgets, expiry) and the ledger (retention, periods, `received_ms`) read.

use sluice_wire::clock::Clock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A clock that moves only when told to; shareable across threads (all state is atomic).
///
/// The monotonic reading starts at zero; the wall clock starts at a fixed instant
/// (2026-01-01T00:00:00Z, or the one given to [`FakeClock::at_ms`]) so tests are reproducible.
/// `advance` moves both readings.
#[derive(Debug)]
pub struct FakeClock {
    /// Nanoseconds since the monotonic origin.
    mono_nanos: AtomicU64,
    /// Nanoseconds since the Unix epoch (u64 nanoseconds last until the year 2554).
    wall_nanos: AtomicU64,
    /// Nanoseconds every monotonic reading moves the clock on (0: it stands still), to mimic a
    /// real clock that never reads the same twice.
    tick_nanos: AtomicU64,
}

/// 2026-01-01T00:00:00Z in seconds since the Unix epoch.
const FAKE_WALL_START_SECS: u64 = 1_767_225_600;

impl FakeClock {
    pub fn new() -> Self {
        Self::at_nanos(FAKE_WALL_START_SECS * 1_000_000_000)
    }

    /// A fake clock whose wall reading is `now_ms` milliseconds since the Unix epoch.
    pub fn at_ms(now_ms: u64) -> Self {
        Self::at_nanos(now_ms.saturating_mul(1_000_000))
    }

    fn at_nanos(wall: u64) -> Self {
        Self {
            mono_nanos: AtomicU64::new(0),
            wall_nanos: AtomicU64::new(wall),
            tick_nanos: AtomicU64::new(0),
        }
    }

    /// A new fake clock already behind an `Arc<dyn Clock>`-compatible `Arc`.
    pub fn shared() -> Arc<Self> {
        Arc::new(Self::new())
    }

    /// Moves both the monotonic and the wall reading forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = nanos(by);
        // Saturating so that an absurd advance in a test cannot wrap time back to the origin.
        let add = |n: u64| Some(n.saturating_add(by));
        // fetch_update with a closure that always returns Some cannot fail.
        let _ = self
            .mono_nanos
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, add);
        let _ = self
            .wall_nanos
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, add);
    }

    /// Makes every later monotonic reading advance the clock by `by` first, as time passes
    /// between two readings of a real clock.
    pub fn set_tick(&self, by: Duration) {
        self.tick_nanos.store(nanos(by), Ordering::Release);
    }

    /// Sets the wall-clock reading; the monotonic reading is untouched (a wall clock may jump).
    /// Times before the Unix epoch are clamped to the epoch.
    pub fn set_now(&self, now: SystemTime) {
        let wall = now.duration_since(UNIX_EPOCH).map(nanos).unwrap_or(0);
        self.wall_nanos.store(wall, Ordering::Release);
    }

    /// [`FakeClock::set_now`] in the ledger's unit, milliseconds since the Unix epoch.
    pub fn set_now_ms(&self, now_ms: u64) {
        self.set_now(UNIX_EPOCH + Duration::from_millis(now_ms));
    }
}

impl Default for FakeClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for FakeClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.wall_nanos.load(Ordering::Acquire))
    }

    fn monotonic(&self) -> Duration {
        let tick = self.tick_nanos.load(Ordering::Acquire);
        if tick == 0 {
            return Duration::from_nanos(self.mono_nanos.load(Ordering::Acquire));
        }
        let before = self.mono_nanos.fetch_add(tick, Ordering::AcqRel);
        Duration::from_nanos(before.saturating_add(tick))
    }
}

/// A duration in whole nanoseconds, saturating at `u64::MAX` (about 584 years).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advances_both_readings() {
        let clock = FakeClock::new();
        assert_eq!(clock.monotonic(), Duration::ZERO);
        let wall = clock.now();
        clock.advance(Duration::from_millis(1500));
        assert_eq!(clock.monotonic(), Duration::from_millis(1500));
        assert_eq!(
            clock.now().duration_since(wall).unwrap(),
            Duration::from_millis(1500)
        );
    }

    #[test]
    fn wall_time_is_settable_without_moving_monotonic() {
        let clock = FakeClock::new();
        clock.advance(Duration::from_secs(3));
        let t = UNIX_EPOCH + Duration::from_secs(1_000);
        clock.set_now(t);
        assert_eq!(clock.now(), t);
        assert_eq!(clock.monotonic(), Duration::from_secs(3));
        clock.set_now(UNIX_EPOCH - Duration::from_secs(5));
        assert_eq!(clock.now(), UNIX_EPOCH);
    }

    #[test]
    fn milliseconds_for_the_ledger() {
        let clock = FakeClock::at_ms(400 * 86_400_000 + 12_345);
        assert_eq!(clock.now_ms(), 400 * 86_400_000 + 12_345);
        clock.advance(Duration::from_millis(5));
        assert_eq!(clock.now_ms(), 400 * 86_400_000 + 12_350);
        clock.set_now_ms(7);
        assert_eq!(clock.now_ms(), 7);
    }

    #[test]
    fn a_tick_moves_every_monotonic_reading() {
        let clock = FakeClock::new();
        clock.set_tick(Duration::from_nanos(5));
        assert_eq!(clock.monotonic(), Duration::from_nanos(5));
        assert_eq!(clock.monotonic(), Duration::from_nanos(10));
    }

    #[test]
    fn is_shared_across_threads() {
        let clock = FakeClock::shared();
        std::thread::scope(|s| {
            for _ in 0..4 {
                let clock = &clock;
                s.spawn(move || {
                    for _ in 0..1000 {
                        clock.advance(Duration::from_nanos(1));
                    }
                });
            }
        });
        assert_eq!(clock.monotonic(), Duration::from_nanos(4000));
    }
}
