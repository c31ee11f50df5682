//! The smallest route a proxy configuration can serve: provider `p` (OpenAI-shaped, at a port
//! nobody listens on, no upstream credential) and its model `m`. Configuration tests and
//! benchmarks add the tables they are about to it.

/// Provider `p` at `http://127.0.0.1:9/v1` and model `m` on it, as TOML tables.
pub const ONE_ROUTE: &str = r#"
[[providers]]
name = "p"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
auth = "none"

[[models]]
name = "m"
provider = "p"
"#;
