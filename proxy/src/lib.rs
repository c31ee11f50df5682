//! sluice data plane: an OpenAI/Anthropic-compatible LLM gateway built on Pingora.
//!
//! The `ProxyHttp` implementation in [`proxy`] only orchestrates Pingora's phases; every concern
//! lives in its own module (see ARCHITECTURE.md for the code map).

pub mod admit;
pub mod api;
pub mod auth;
pub mod body;
pub mod budgets;
pub mod clock;
pub mod config;
pub mod cors;
pub mod crypto;
pub mod ctx;
pub mod delivery;
pub mod errors;
pub mod govern;
pub mod keys;
pub mod limits;
pub mod meter;
pub mod metrics;
pub mod models;
pub mod pricing;
pub mod providers;
pub mod proxy;
pub mod rate_headers;
pub mod record;
pub mod respond;
pub mod server;
pub mod sink;
pub mod sse;
pub mod usage;
