//! Time behind a trait, so tests can fake expiry and durations (as governor's fake clock does).

use std::time::SystemTime;

pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Wall-clock time: key expiry and record timestamps.
    fn now(&self) -> SystemTime;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}
