//! The usage record: one per request, success or failure, with counts and ids only — never
//! prompt or response content, never a key. Its wire format is `sluice_wire::UsageRecord`, the one
//! definition the proxy and the ledger share; this module adds the caller tags read from headers.

use crate::api::bounded;
use http::header::HeaderName;
use pingora::http::RequestHeader;
use serde::Serialize;

pub use sluice_wire::{Outcome, UsageRecord, RECORD_VERSION};
use std::collections::BTreeMap;

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
        // Names parsed at compile time: a string would be parsed into a name on every lookup.
        const USER: HeaderName = HeaderName::from_static("x-sluice-user");
        const SESSION: HeaderName = HeaderName::from_static("x-sluice-session");
        const FEATURE: HeaderName = HeaderName::from_static("x-sluice-feature");
        let value = |name: HeaderName| {
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
            user: value(USER),
            session: value(SESSION),
            feature: value(FEATURE),
            meta,
        }
    }
}
