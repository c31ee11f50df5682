//! The usage record: one per request, success or failure, with counts and ids only — never
//! prompt or response content, never a key.

use crate::api::bounded;
use crate::keys::KeyId;
use crate::usage::Usage;
use pingora::http::RequestHeader;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The provider answered 2xx and the answer reached the client whole.
    Ok,
    /// Sluice refused the request itself (auth, validation, routing).
    Rejected,
    /// The provider answered with an error status (passed through unchanged).
    ProviderError,
    /// The client went away before the answer was complete.
    ClientDisconnected,
    /// The provider connection broke after the answer started.
    UpstreamDropped,
    UpstreamTimeout,
    /// The provider could not be reached (connect or TLS failure).
    UpstreamUnreachable,
    /// Anything else that went wrong inside sluice.
    Error,
}

/// Caller-supplied attribution from `x-sluice-user`, `x-sluice-session`, `x-sluice-feature` and
/// `x-sluice-meta-<name>` headers, bounded so a client cannot bloat records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tags {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

pub const MAX_META_TAGS: usize = 16;
pub const MAX_TAG_NAME: usize = 64;
pub const MAX_TAG_VALUE: usize = 256;

impl Tags {
    pub fn from_headers(req: &RequestHeader) -> Self {
        let value = |name: &str| {
            req.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| bounded(v, MAX_TAG_VALUE).to_string())
        };
        let mut meta = BTreeMap::new();
        for (name, v) in req.headers.iter() {
            if meta.len() >= MAX_META_TAGS {
                break;
            }
            let Some(key) = name.as_str().strip_prefix("x-sluice-meta-") else {
                continue;
            };
            if key.is_empty() || key.len() > MAX_TAG_NAME {
                continue;
            }
            if let Ok(v) = v.to_str() {
                meta.insert(key.to_string(), bounded(v, MAX_TAG_VALUE).to_string());
            }
        }
        Self {
            user: value("x-sluice-user"),
            session: value("x-sluice-session"),
            feature: value("x-sluice-feature"),
            meta,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct UsageRecord {
    /// UUIDv7: unique, and ordered by time, so the ledger can deduplicate and index by it.
    pub id: uuid::Uuid,
    /// Milliseconds since the Unix epoch when the request arrived.
    pub time_ms: u64,
    pub org: Option<Arc<str>>,
    pub key_id: Option<KeyId>,
    pub provider: Option<Arc<str>>,
    pub model: Option<String>,
    pub upstream_model: Option<String>,
    pub api: &'static str,
    pub stream: bool,
    pub status: u16,
    pub outcome: Outcome,
    #[serde(flatten)]
    pub usage: Usage,
    /// Counts were not (all) reported by the provider and were estimated.
    pub estimated: bool,
    /// Cost from the model's configured price, in micro-USD (0 when it has none).
    pub cost_micro_usd: u64,
    pub ttft_ms: Option<f64>,
    pub total_ms: f64,
    pub upstream_ms: Option<f64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    #[serde(flatten)]
    pub tags: Tags,
}
