//! Time behind a trait, so tests can fake expiry, durations and rate-limit refills.
//!
//! Two readings exist: wall-clock time (`now`, for key expiry and record timestamps) and a
//! monotonic reading (`monotonic`, for rate limiting), because a wall clock may step backwards
//! and a token bucket must never see time run backwards.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Wall-clock time: key expiry and record timestamps.
    fn now(&self) -> SystemTime;

    /// Time elapsed since an arbitrary origin fixed for the life of the clock; never decreases.
    fn monotonic(&self) -> Duration;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

/// The process-wide origin of `SystemClock::monotonic`, set by its first reading, so every
/// `SystemClock` value (they are zero-sized and freely created) agrees on the same origin.
static ORIGIN: OnceLock<Instant> = OnceLock::new();

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn monotonic(&self) -> Duration {
        ORIGIN.get_or_init(Instant::now).elapsed()
    }
}

/// A clock that moves only when told to; shareable across threads (all state is atomic).
///
/// It is not test-only on purpose: integration code and benchmarks drive the limiter with it.
/// The monotonic reading starts at zero; the wall clock starts at a fixed instant
/// (2026-01-01T00:00:00Z) so tests are reproducible. `advance` moves both readings.
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
        Self {
            mono_nanos: AtomicU64::new(0),
            wall_nanos: AtomicU64::new(FAKE_WALL_START_SECS * 1_000_000_000),
            tick_nanos: AtomicU64::new(0),
        }
    }

    /// A new fake clock already behind an `Arc<dyn Clock>`-compatible `Arc`.
    pub fn shared() -> Arc<Self> {
        Arc::new(Self::new())
    }

    /// Moves both the monotonic and the wall reading forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = duration_nanos(by);
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
        self.tick_nanos.store(duration_nanos(by), Ordering::Release);
    }

    /// Sets the wall-clock reading; the monotonic reading is untouched (a wall clock may jump).
    /// Times before the Unix epoch are clamped to the epoch.
    pub fn set_now(&self, now: SystemTime) {
        let nanos = now
            .duration_since(UNIX_EPOCH)
            .map(duration_nanos)
            .unwrap_or(0);
        self.wall_nanos.store(nanos, Ordering::Release);
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
pub fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Lets governor's rate limiters read the same monotonic time as the rest of sluice, so a
/// `FakeClock` drives governor's GCRA and sluice's token buckets alike.
#[derive(Debug, Clone)]
pub struct GovernorClock(Arc<dyn Clock>);

impl GovernorClock {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self(clock)
    }
}

impl governor::clock::Clock for GovernorClock {
    type Instant = governor::nanos::Nanos;

    fn now(&self) -> Self::Instant {
        governor::nanos::Nanos::new(duration_nanos(self.0.monotonic()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::Clock as _;

    #[test]
    fn system_clock_monotonic_never_goes_back() {
        let clock = SystemClock;
        let mut last = clock.monotonic();
        for _ in 0..1000 {
            let now = SystemClock.monotonic();
            assert!(now >= last);
            last = now;
        }
    }

    #[test]
    fn fake_clock_advances_both_readings() {
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
    fn fake_clock_wall_time_is_settable_without_moving_monotonic() {
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
    fn fake_clock_is_shared_across_threads() {
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

    #[test]
    fn governor_adapter_reads_the_monotonic_clock() {
        let fake = FakeClock::shared();
        let gov = GovernorClock::new(fake.clone());
        assert_eq!(gov.now().as_u64(), 0);
        fake.advance(Duration::from_micros(7));
        assert_eq!(gov.now().as_u64(), 7_000);
    }
}
