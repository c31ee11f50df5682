//! sluice-control: the usage ledger. Proxies deliver usage records at least once; the ledger
//! stores each exactly once by id, keeps hourly and daily aggregates as billing records, and
//! answers usage queries, streamed exports, the spend feed and erasure requests.
//!
//! The binary is a thin wrapper around [`server::run`]; the library is public so tests can
//! drive the store with a fake clock and the benchmark can start a server in process.

pub mod abuse;
pub mod clock;
pub mod config;
pub mod db;
pub mod http;
pub mod server;
pub mod telemetry;
pub mod time;
