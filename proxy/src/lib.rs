//! sluice data plane: an OpenAI/Anthropic-compatible LLM gateway built on Pingora.
//!
//! The `ProxyHttp` implementation in [`proxy`] only orchestrates Pingora's phases; every concern
//! lives in its own module, grouped by concern (see ARCHITECTURE.md for the code map).

pub mod admission;
pub mod api;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod ctx;
pub mod delivery;
pub mod errors;
pub mod governance;
pub mod metering;
pub mod proxy;
pub mod respond;
pub mod routing;
pub mod server;
pub mod sse;
pub mod telemetry;
pub mod text;
pub mod upstream;
pub mod usage;
