//! Time behind one trait, shared by the proxy and the ledger, so tests can drive expiry,
//! durations, rate-limit refills, retention and spend periods with a fake clock.
//!
//! Two readings exist: wall-clock time (`now`, for key expiry, record timestamps and the ledger's
//! periods) and a monotonic reading (`monotonic`, for rate limiting), because a wall clock may
//! step backwards and a token bucket must never see time run backwards. The fake clock lives in
//! the test-support crate (`sluice-test-support`), so no test code ships in the binaries.
//!
//! It lives here, in the crate both sides already depend on, and uses `std` only, so the wire
//! crate stays as light as the proxy's request path needs.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Wall-clock time: key expiry, record timestamps, the ledger's periods.
    fn now(&self) -> SystemTime;

    /// Time elapsed since an arbitrary origin fixed for the life of the clock; never decreases.
    fn monotonic(&self) -> Duration;

    /// Wall-clock milliseconds since the Unix epoch (the ledger's unit).
    fn now_ms(&self) -> u64 {
        // A clock before 1970 is a broken host; treating it as the epoch keeps the ledger up,
        // and retention then purges nothing, which is the safe direction.
        self.now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// The system's clocks: `SystemTime` for the wall, `Instant` for the monotonic reading.
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn now_ms_is_the_wall_clock_in_milliseconds() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let ms = u128::from(SystemClock.now_ms());
        let after = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis();
        assert!(before <= ms && ms <= after, "{before} <= {ms} <= {after}");
    }
}
