//! The declarative load-test suite: one scenario per file under `load-tests/scenarios/`
//! ([`spec`]), run end to end by [`run::run`] against real processes on loopback
//! ([`fleet`]), bounded in time and count. Timings are reported, never asserted; what is
//! asserted is correctness under load: errors by kind, one record per request, the ledger
//! against the mock, nothing left in flight, memory back near where it was.

pub mod fleet;
pub mod run;
pub mod slow;
pub mod spec;

pub use run::{load_dir, run, Scale};
pub use spec::Scenario;
