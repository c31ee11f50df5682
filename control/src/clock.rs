//! Wall-clock time behind a trait, so retention, the spend feed's periods and the `received_ms`
//! stamp can be driven by a fake clock in tests. The trait (read through its `now_ms`) and the
//! system clock are `sluice_wire::clock`'s, shared with the proxy; the fake clock is
//! `sluice_test_support::FakeClock`, a dev-dependency.

pub use sluice_wire::clock::{Clock, SystemClock};
