//! Harness for the bounded end-to-end scenarios in `tests/`: the real `sluice-proxy` and
//! `sluice-control` binaries of this workspace's release build, a throwaway Postgres, a load
//! driver, a PromQL scanner for the dashboard and alert checks, and the declarative scenario
//! suite (`scenario`, files under `load-tests/scenarios/`). Each process reports
//! readiness on stderr; nothing here waits by sleeping, except the bounded polls of an observable
//! figure in [`wait_for`]. Processes, Postgres and polls are `sluice_test_support`'s.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(clippy::panic, reason = "test code: a panic fails the test")]

pub mod ledger;
pub mod load;
pub mod promql;
pub mod proxy;
pub mod scenario;

use std::future::Future;
use std::time::Duration;

/// Bound for anything a scenario waits on; reaching it fails the scenario.
pub const WAIT: Duration = Duration::from_secs(60);

/// Polls `probe` until it yields a value, at most [`WAIT`]; `what` names it in the failure.
pub async fn wait_for<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    sluice_test_support::wait_for(what, WAIT, probe).await
}

/// A fresh database on the test Postgres server, or `None` when it is unavailable (and allowed
/// to be).
pub async fn fresh_postgres() -> Option<String> {
    sluice_test_support::postgres::fresh_database("e2e").await
}
