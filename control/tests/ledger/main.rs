//! Integration tests of the ledger: the real `sluice-control` binary over HTTP, each case run
//! against SQLite and against a real Postgres server.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(clippy::panic, reason = "test code: a panic fails the test")]

mod harness;

mod auth;
mod export;
mod ingest;
mod lifecycle;
mod metrics;
mod queries;
mod retention;
mod review;
mod tokens;
