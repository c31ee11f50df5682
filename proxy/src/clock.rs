//! Time behind a trait, so tests can fake expiry, durations and rate-limit refills.
//!
//! The trait and the system clock are `sluice_wire::clock`'s, shared with the ledger; the fake
//! clock is the test-support crate's (a dev-dependency), re-exported here for the unit tests.
//! What only the proxy needs stays here: nanosecond arithmetic and governor's adapter.

use std::sync::Arc;
use std::time::Duration;

pub use sluice_wire::clock::{Clock, SystemClock};

#[cfg(test)]
pub use sluice_test_support::FakeClock;

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
    fn governor_adapter_reads_the_monotonic_clock() {
        let fake = FakeClock::shared();
        let gov = GovernorClock::new(fake.clone());
        assert_eq!(gov.now().as_u64(), 0);
        fake.advance(Duration::from_micros(7));
        assert_eq!(gov.now().as_u64(), 7_000);
    }

    #[test]
    fn duration_nanos_saturates() {
        assert_eq!(duration_nanos(Duration::from_micros(3)), 3_000);
        assert_eq!(duration_nanos(Duration::MAX), u64::MAX);
    }
}
