//! The usage record: one per request, success or failure, with counts and ids only — never
//! prompt or response content, never a key. Its wire format is `sluice_wire::UsageRecord`, the one
//! definition the proxy and the ledger share; this module adds the caller tags read from headers
//! and [`sanitized`], the one place a record's text is made safe to store.

use crate::text::bounded;
use http::header::HeaderName;
use pingora::http::RequestHeader;
use serde::Serialize;

pub use sluice_wire::{Outcome, UsageRecord, RECORD_VERSION};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

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

/// Longest model name (asked for, or sent upstream) a record keeps, in bytes.
pub const MAX_MODEL: usize = 256;
/// Longest configured name (org, key id, provider) or client address a record keeps, in bytes.
pub const MAX_NAME: usize = 256;

/// Text as a record stores it: every control character (C0 including NUL, DEL, C1) replaced by
/// U+FFFD, then cut to at most `max` bytes on a character boundary. A client's model name or tag
/// with a NUL made the Postgres ledger refuse whole batches; U+FFFD (rather than a space or
/// nothing) keeps the tampering visible and never merges a hostile value with a real one.
/// Clean text, the usual case, is returned borrowed after one scan.
pub fn clean_text(s: &str, max: usize) -> Cow<'_, str> {
    if !s.contains(char::is_control) {
        return Cow::Borrowed(bounded(s, max));
    }
    let replaced: String = s
        .chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect();
    Cow::Owned(bounded(&replaced, max).to_string())
}

fn clean_string(s: &mut Option<String>, max: usize) {
    if let Some(v) = s {
        if let Cow::Owned(clean) = clean_text(v, max) {
            *v = clean;
        } else if v.len() > max {
            v.truncate(bounded(v, max).len());
        }
    }
}

fn clean_arc(s: &mut Option<Arc<str>>, max: usize) {
    if let Some(v) = s {
        let clean = clean_text(v, max);
        if clean.len() != v.len() || matches!(clean, Cow::Owned(_)) {
            *v = Arc::from(clean.as_ref());
        }
    }
}

/// The record with every text field cleaned ([`clean_text`]) and bounded: model names to
/// [`MAX_MODEL`], tags to [`MAX_TAG_VALUE`], meta to [`MAX_META_TAGS`] entries with names of at
/// most [`MAX_TAG_NAME`] bytes. Applied once, where a record is built ([`crate::metering`]), so
/// nothing downstream (the local sink, the spool, the ledger) ever sees a control character.
pub fn sanitized(mut r: UsageRecord) -> UsageRecord {
    clean_arc(&mut r.org, MAX_NAME);
    clean_arc(&mut r.key_id, MAX_NAME);
    clean_arc(&mut r.provider, MAX_NAME);
    clean_string(&mut r.model, MAX_MODEL);
    clean_string(&mut r.upstream_model, MAX_MODEL);
    clean_string(&mut r.user, MAX_TAG_VALUE);
    clean_string(&mut r.session, MAX_TAG_VALUE);
    clean_string(&mut r.feature, MAX_TAG_VALUE);
    clean_string(&mut r.client_ip, MAX_NAME);
    let dirty = |k: &str, v: &str| {
        k.len() > MAX_TAG_NAME
            || v.len() > MAX_TAG_VALUE
            || k.contains(char::is_control)
            || v.contains(char::is_control)
    };
    if r.meta.len() > MAX_META_TAGS || r.meta.iter().any(|(k, v)| dirty(k, v)) {
        r.meta = std::mem::take(&mut r.meta)
            .into_iter()
            .take(MAX_META_TAGS)
            .map(|(k, v)| {
                (
                    clean_text(&k, MAX_TAG_NAME).into_owned(),
                    clean_text(&v, MAX_TAG_VALUE).into_owned(),
                )
            })
            .collect();
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_replaced_and_lengths_bounded() {
        assert!(matches!(clean_text("gpt-4o", 256), Cow::Borrowed("gpt-4o")));
        assert_eq!(
            clean_text("x\u{0}y\u{1b}[0m\u{7f}\u{85}", 256),
            "x\u{FFFD}y\u{FFFD}[0m\u{FFFD}\u{FFFD}"
        );
        assert_eq!(
            clean_text("tab\tcr\rlf\n", 256),
            "tab\u{FFFD}cr\u{FFFD}lf\u{FFFD}"
        );
        assert_eq!(clean_text(&"é".repeat(200), 255).len(), 254);
        // A replacement is three bytes: the bound applies to the result.
        assert_eq!(clean_text(&"\u{0}".repeat(100), 10), "\u{FFFD}".repeat(3));
    }

    #[test]
    fn every_text_field_of_a_record_is_sanitized() {
        let mut r: UsageRecord = serde_json::from_str(
            r#"{"id":"019a4f2e-8c1b-7d2e-9f00-0123456789ab","time_ms":1,"org":"o\u0000",
            "key_id":"key_1","provider":"p\u0001","model":"x\u0000","upstream_model":"y\u0000",
            "api":"chat.completions","stream":false,"status":404,"outcome":"provider_error",
            "input_tokens":0,"output_tokens":0,"cached_tokens":0,"cache_write_tokens":0,
            "reasoning_tokens":0,"estimated":false,"ttft_ms":null,"total_ms":1.0,
            "upstream_ms":null,"bytes_in":0,"bytes_out":0,"user":"u\u0000","session":"s\n",
            "feature":"f"}"#,
        )
        .unwrap();
        r.meta.insert("k\u{0}".into(), "v\u{0}".into());
        r.model = Some(format!("{}\u{0}", "m".repeat(300)));
        let r = sanitized(r);
        assert_eq!(r.org.as_deref(), Some("o\u{FFFD}"));
        assert_eq!(r.key_id.as_deref(), Some("key_1"));
        assert_eq!(r.provider.as_deref(), Some("p\u{FFFD}"));
        assert_eq!(r.model.as_deref(), Some("m".repeat(MAX_MODEL).as_str()));
        assert_eq!(r.upstream_model.as_deref(), Some("y\u{FFFD}"));
        assert_eq!(r.user.as_deref(), Some("u\u{FFFD}"));
        assert_eq!(r.session.as_deref(), Some("s\u{FFFD}"));
        assert_eq!(r.feature.as_deref(), Some("f"));
        assert_eq!(
            r.meta.into_iter().collect::<Vec<_>>(),
            vec![("k\u{FFFD}".to_string(), "v\u{FFFD}".to_string())]
        );
    }
}
