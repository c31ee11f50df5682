//! The upstream side of a request: what sluice sends to the provider. The providers themselves
//! (addresses, timeouts, credentials) are configuration, resolved once per snapshot in
//! `config::providers`.

pub mod checks;
pub mod failover;
pub mod request;
