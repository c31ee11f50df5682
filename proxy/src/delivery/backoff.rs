//! Exponential backoff with jitter between delivery attempts.
//!
//! The delay doubles from [`BASE`] up to [`CAP`]; each wait is drawn uniformly from the upper half
//! of the current delay ("equal jitter"), so replicas that lost the ledger at the same moment do
//! not retry in lockstep, while every wait still grows with the failure count.

use std::time::Duration;

pub const BASE: Duration = Duration::from_millis(100);
pub const CAP: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// Forgets past failures (after a success).
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records a failure and returns how long to wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = Self::ceiling(self.failures);
        self.failures = self.failures.saturating_add(1);
        let half = ceiling / 2;
        let jitter_ms = fastrand::u64(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter_ms)
    }

    /// The delay before jitter after `failures` earlier failures.
    fn ceiling(failures: u32) -> Duration {
        BASE.checked_mul(1u32 << failures.min(16))
            .map_or(CAP, |d| d.min(CAP))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_and_stay_within_the_jitter_band() {
        let mut b = Backoff::default();
        let mut ceilings = Vec::new();
        for _ in 0..40 {
            let ceiling = Backoff::ceiling(b.failures());
            let d = b.next_delay();
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "{d:?} outside [{ceiling:?}/2, {ceiling:?}]"
            );
            ceilings.push(ceiling);
        }
        assert_eq!(ceilings[0], BASE);
        assert_eq!(ceilings[1], BASE * 2);
        assert!(ceilings.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*ceilings.last().unwrap(), CAP);
        b.reset();
        assert_eq!(b.failures(), 0);
        assert!(b.next_delay() <= BASE);
    }
}
