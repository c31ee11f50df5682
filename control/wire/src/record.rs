//! The usage record: one per proxied request, success or failure, holding ids, counts, timings
//! and bounded caller tags — never prompt or response content, never a key.

use crate::spelling::spelled;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use uuid::Uuid;

/// The record version this crate writes and the highest one it understands.
pub const RECORD_VERSION: u16 = 1;

fn version_one() -> u16 {
    1
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The provider answered 2xx and the answer reached the client whole.
    Ok,
    /// Sluice refused the request itself (auth, validation, routing, limits).
    Rejected,
    /// The provider answered with an error status (passed through unchanged).
    ProviderError,
    /// The client went away before the answer was complete.
    ClientDisconnected,
    /// The provider connection broke after the answer started.
    UpstreamDropped,
    /// The provider took longer than a configured timeout.
    UpstreamTimeout,
    /// The provider could not be reached (connect or TLS failure).
    UpstreamUnreachable,
    /// Anything else that went wrong inside sluice.
    Error,
    /// The provider answered 2xx, then reported a failure inside the stream (an Anthropic
    /// `error` event, a Responses `error` or `response.failed` event); `error_type` says which.
    StreamError,
}

spelled!(Outcome {
    Ok => "ok",
    Rejected => "rejected",
    ProviderError => "provider_error",
    ClientDisconnected => "client_disconnected",
    UpstreamDropped => "upstream_dropped",
    UpstreamTimeout => "upstream_timeout",
    UpstreamUnreachable => "upstream_unreachable",
    Error => "error",
    StreamError => "stream_error",
} unknown(s) -> RecordError {
    RecordError::UnknownOutcome(s.to_string())
});

/// A usage record as the proxy emits it (one JSON object per record).
///
/// Field types are chosen so the proxy can fill the struct on its request path without copying
/// what it already shares (`Arc<str>` names from its configuration, a `'static` API name), and so
/// the ledger can deserialize it owned. Counts are normalised as the proxy's `usage` module
/// documents: `input_tokens` include cache reads and writes, `output_tokens` include reasoning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// Record format version; absent means 1 (records written before the field existed).
    #[serde(default = "version_one")]
    pub v: u16,
    /// UUIDv7: unique, and ordered by time, so the ledger deduplicates and indexes by it.
    pub id: Uuid,
    /// Milliseconds since the Unix epoch when the request arrived.
    pub time_ms: u64,
    /// Absent when the request was refused before its key was known.
    pub org: Option<Arc<str>>,
    /// The virtual key's non-reversible id (`key_…`), never the key.
    pub key_id: Option<Arc<str>>,
    pub provider: Option<Arc<str>>,
    /// The provider endpoint that served the request (`scheme://host/path`, no credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Arc<str>>,
    /// The data region of the provider that served it, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<Arc<str>>,
    /// Upstream attempts made (0: answered by sluice itself; above 1: failed over).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: u32,
    /// The model the client asked for.
    pub model: Option<String>,
    /// The model sent to the provider after routing.
    pub upstream_model: Option<String>,
    /// The inbound surface, e.g. `chat.completions`.
    pub api: Cow<'static, str>,
    pub stream: bool,
    /// HTTP status returned to the client.
    pub status: u16,
    pub outcome: Outcome,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
    /// Counts were not (all) reported by the provider and were estimated.
    pub estimated: bool,
    /// Price of the request in micro-USD; absent (records from before pricing) means 0.
    #[serde(default)]
    pub cost_micro_usd: u64,
    pub ttft_ms: Option<f64>,
    pub total_ms: f64,
    pub upstream_ms: Option<f64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Caller attribution from `x-sluice-user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Caller attribution from `x-sluice-session`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Caller attribution from `x-sluice-feature`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
    /// Caller attribution from `x-sluice-meta-<name>` headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    /// The client's address, only when a deployment chooses to record it; the ledger purges it
    /// after a shorter retention than the rest of the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    /// What the provider reported when it failed inside a successful stream (outcome
    /// `stream_error`): its error type or code, e.g. `overloaded_error`; at most 48 characters of
    /// `[A-Za-z0-9_.:-]`. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
}

/// Why a well-formed JSON record is still not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// `v` is 0 or newer than this build understands.
    UnsupportedVersion(u16),
    /// `id` is not a UUIDv7.
    NotUuidV7(Uuid),
    /// An outcome name this build does not know.
    UnknownOutcome(String),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::UnsupportedVersion(v) => write!(
                f,
                "record version {v} is not supported (this ledger understands 1..={RECORD_VERSION})"
            ),
            RecordError::NotUuidV7(id) => write!(f, "id {id} is not a UUIDv7"),
            RecordError::UnknownOutcome(s) => write!(f, "unknown outcome {s:?}"),
        }
    }
}

impl std::error::Error for RecordError {}

impl UsageRecord {
    /// Checks what serde cannot: a version this build understands and a time-ordered id.
    pub fn validate(&self) -> Result<(), RecordError> {
        if self.v == 0 || self.v > RECORD_VERSION {
            return Err(RecordError::UnsupportedVersion(self.v));
        }
        if self.id.get_version_num() != 7 {
            return Err(RecordError::NotUuidV7(self.id));
        }
        Ok(())
    }
}

/// Serde's `skip_serializing_if` for counts that are usually zero.
fn is_zero(n: &u32) -> bool {
    *n == 0
}
