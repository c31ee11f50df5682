//! Failures a provider reports inside a successful (HTTP 200) stream: Anthropic `event: error`
//! (`overloaded_error` mid-stream, say) and the Responses `error` and `response.failed` events.
//!
//! The response status was already sent to the client, so such a request would otherwise be
//! recorded as a success. What the provider said is kept as a short error name (its error
//! `type`, or `code`), copied into a fixed inline buffer so an ordinary stream pays nothing for
//! it; the message is never kept (it can quote the request).

use memchr::memmem::Finder;

/// Longest error name kept; real ones (`overloaded_error`, `insufficient_quota`) are far shorter.
pub const MAX_ERROR_NAME: usize = 48;

/// The error name a provider reported in a stream, bounded and restricted to `[A-Za-z0-9_.:-]`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ReportedError {
    name: [u8; MAX_ERROR_NAME],
    len: u8,
}

impl ReportedError {
    /// A name from raw JSON string bytes; characters outside the allowed set become `_`, so a
    /// hostile provider cannot put control characters or markup into the ledger.
    pub fn new(raw: &[u8]) -> Self {
        let mut name = [0u8; MAX_ERROR_NAME];
        let mut len = 0;
        for (dst, &b) in name.iter_mut().zip(raw) {
            *dst = if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-') {
                b
            } else {
                b'_'
            };
            len += 1;
        }
        Self {
            name,
            len: u8::try_from(len).unwrap_or(u8::MAX),
        }
    }

    pub fn as_str(&self) -> &str {
        let bytes = self.name.get(..usize::from(self.len)).unwrap_or_default();
        // Only ASCII is ever stored, so this cannot fail.
        std::str::from_utf8(bytes).unwrap_or("error")
    }
}

impl std::fmt::Debug for ReportedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON string value following the first `"key":` of `data` (escapes are not decoded; a
/// name never has any). Works on a truncated event, which is all the Responses scanner keeps.
fn string_value<'d>(key: &Finder<'static>, data: &'d [u8]) -> Option<(usize, &'d [u8])> {
    key.find_iter(data).find_map(|at| {
        let rest = data.get(at + key.needle().len()..)?;
        let rest = super::stream::skip_ws(rest).strip_prefix(b":")?;
        let rest = super::stream::skip_ws(rest);
        let value = rest.strip_prefix(b"\"")?;
        let end = memchr::memchr(b'"', value)?;
        Some((at, value.get(..end)?))
    })
}

/// What an error or failed event reports: the first `type` or `code` inside its `"error":{…}`
/// object (Anthropic and Responses `error` events, `response.failed`), else a top-level `code`
/// (the Responses `error` event as documented), else `fallback`.
pub(crate) fn reported(data: &[u8], fallback: &[u8]) -> ReportedError {
    let k = super::stream::keys();
    let object = k.error.find_iter(data).find_map(|at| {
        let rest = data.get(at + k.error.needle().len()..)?;
        let rest = super::stream::skip_ws(super::stream::skip_ws(rest).strip_prefix(b":")?);
        rest.starts_with(b"{").then_some(rest)
    });
    let inner = object.and_then(|o| {
        let kind = string_value(&k.kind, o);
        let code = string_value(&k.code, o);
        match (kind, code) {
            (Some(a), Some(b)) => Some(if a.0 <= b.0 { a.1 } else { b.1 }),
            (a, b) => a.or(b).map(|v| v.1),
        }
    });
    let name = inner
        .or_else(|| string_value(&k.code, data).map(|v| v.1))
        .filter(|n| !n.is_empty())
        .unwrap_or(fallback);
    ReportedError::new(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_each_shape() {
        let anthropic = br#"{"type":"error","error":{"details":null,"type":"overloaded_error","message":"Overloaded"} }"#;
        assert_eq!(reported(anthropic, b"x").as_str(), "overloaded_error");
        let responses = br#"{"type":"error","sequence_number":2,"error":{"type":"insufficient_quota","code":"insufficient_quota","message":"m"}}"#;
        assert_eq!(reported(responses, b"x").as_str(), "insufficient_quota");
        let documented = br#"{"type":"error","code":"ERR_SOMETHING","message":"m","param":null}"#;
        assert_eq!(reported(documented, b"x").as_str(), "ERR_SOMETHING");
        let failed = br#"{"type":"response.failed","response":{"status":"failed","error":{"code":"server_error","message":"m"}"#;
        assert_eq!(reported(failed, b"x").as_str(), "server_error");
        let failed_null = br#"{"type":"response.failed","response":{"error":null,"#;
        assert_eq!(
            reported(failed_null, b"response.failed").as_str(),
            "response.failed"
        );
    }

    #[test]
    fn names_are_bounded_and_sanitised() {
        let long = "a".repeat(200);
        assert_eq!(
            ReportedError::new(long.as_bytes()).as_str().len(),
            MAX_ERROR_NAME
        );
        assert_eq!(ReportedError::new(b"bad\x00<x>").as_str(), "bad__x_");
    }
}
