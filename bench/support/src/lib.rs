//! What the tests of every sluice crate share, in one place: a child process that announces its
//! readiness on stderr ([`Process`]), the path of a workspace binary ([`binary`]), the throwaway
//! Postgres cluster ([`postgres`]), a throwaway Prometheus server (`prometheus`, behind the feature
//! of that name), a throwaway Redis server (`redis`, behind its feature), bounded polls ([`wait_for`], [`eventually`]), the fake clock
//! ([`FakeClock`]), a usage record to start from ([`usage_record`]) and the smallest servable
//! proxy configuration ([`config::ONE_ROUTE`]).
//!
//! It is a dev-dependency only and stays light (no Pingora, no HTTP stack unless the `prometheus`
//! feature asks for its API client): each harness
//! (`proxy/tests/common`, `control/tests/ledger/harness.rs`, `load-tests/src`, the proxy's
//! delivery tests) wraps these with its own binary, environment and client.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(clippy::panic, reason = "test code: a panic fails the test")]
#![expect(
    clippy::expect_used,
    reason = "test support: a failed expectation is a failed test, said with its cause"
)]
#![expect(
    clippy::panic,
    reason = "test support: a failed wait is a failed test, said with its cause"
)]

mod clock;
pub mod config;
mod poll;
pub mod postgres;
mod process;
#[cfg(feature = "prometheus")]
pub mod prometheus;
mod record;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(any(feature = "prometheus", feature = "redis"))]
mod tools;

pub use clock::FakeClock;
pub use nix::sys::signal::Signal;
pub use poll::{eventually, wait_for};
pub use process::{binary, Process};
pub use record::usage_record;
