//! Harness for the bounded end-to-end scenarios in `tests/`: the real `sluice-proxy` and
//! `sluice-control` binaries of this workspace's release build, a throwaway Postgres, and a load
//! driver. Each process reports readiness on stderr; nothing here waits by sleeping, except the
//! bounded polls of an observable figure in [`wait_for`].
#![allow(clippy::unwrap_used, clippy::expect_used)] // test harness: a panic is a failed test

pub mod ledger;
pub mod load;
pub mod pg;
pub mod process;
pub mod proxy;

use std::future::Future;
use std::time::{Duration, Instant};

/// Bound for anything a scenario waits on; reaching it fails the scenario.
pub const WAIT: Duration = Duration::from_secs(60);

/// Polls `probe` until it yields a value, at most [`WAIT`]; `what` names it in the failure.
pub async fn wait_for<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        // A poll interval, not a synchronisation: the condition is re-checked each time.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
