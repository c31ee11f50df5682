//! Virtual-key authentication: find the presented key, look its digest up, check expiry.

use crate::config::{Snapshot, VirtualKey};
use crate::credentials::keys::{self, KeyDigest};
use crate::errors::GatewayError;
use pingora::http::RequestHeader;
use std::sync::Arc;
use std::time::SystemTime;

/// The key the client presented: `Authorization: Bearer …` (OpenAI SDKs) or `x-api-key`
/// (Anthropic SDKs).
pub fn presented_key(req: &RequestHeader) -> Option<&str> {
    let bearer = req
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    bearer
        .or_else(|| {
            req.headers
                .get(crate::upstream::request::X_API_KEY)
                .and_then(|v| v.to_str().ok())
        })
        .filter(|k| !k.is_empty())
}

/// Resolves the request's virtual key in `snapshot`, as of `now`.
pub fn authenticate(
    snapshot: &Snapshot,
    req: &RequestHeader,
    now: SystemTime,
) -> Result<Arc<VirtualKey>, GatewayError> {
    let presented = presented_key(req).ok_or(GatewayError::MissingKey)?;
    // Garbage is refused before hashing: no work for random strings.
    if !keys::looks_like_virtual_key(presented) {
        return Err(GatewayError::InvalidKey);
    }
    let key = snapshot
        .keys
        .get(&KeyDigest::of(presented))
        .ok_or(GatewayError::InvalidKey)?;
    if key.expires.is_some_and(|t| now >= t) {
        return Err(GatewayError::KeyExpired);
    }
    Ok(key.clone())
}
