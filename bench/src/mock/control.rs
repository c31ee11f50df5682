//! Parsing of the per-request `x-mock-*` control headers.
//!
//! A malformed control header is answered with a provider-style 400 rather than silently
//! ignored, because a typo in a test would otherwise test something else than intended.

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};

/// Content chunks produced when `x-mock-chunks` is absent.
pub const DEFAULT_CHUNKS: usize = 8;
/// Embedding width when neither `x-mock-dims` nor `dimensions` is given.
pub const DEFAULT_DIMS: usize = 8;

/// Upper bounds that keep a single request from exhausting memory; they are far above what
/// any test or benchmark needs.
const MAX_CHUNKS: usize = 1_000_000;
const MAX_CHUNK_BYTES: usize = 1 << 20;
const MAX_STREAM_BYTES: usize = 1 << 28;
const MAX_DIMS: usize = 1 << 16;

/// How SSE lines are terminated; all three are legal per the SSE specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LineEnding {
    #[default]
    Lf,
    CrLf,
    Cr,
}

impl LineEnding {
    pub fn as_str(self) -> &'static str {
        match self {
            LineEnding::Lf => "\n",
            LineEnding::CrLf => "\r\n",
            LineEnding::Cr => "\r",
        }
    }
}

/// Everything a request asked of the mock through headers.
#[derive(Debug, Clone, Default)]
pub struct Controls {
    pub chunks: usize,
    pub chunk_bytes: Option<usize>,
    pub ttft: Option<Duration>,
    pub gap: Option<Duration>,
    pub line_ending: LineEnding,
    pub fragment: Option<usize>,
    pub status: Option<StatusCode>,
    pub drop_after: Option<usize>,
    pub stall_after: Option<usize>,
    pub header_delay: Option<Duration>,
    pub cached_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
    pub dims: Option<usize>,
}

/// Why a control header was rejected; the message goes into the error body.
#[derive(Debug, Clone)]
pub struct ControlError(pub String);

fn raw<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ControlError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| ControlError(format!("header {name} is not visible ASCII"))),
    }
}

fn number(headers: &HeaderMap, name: &str) -> Result<Option<u64>, ControlError> {
    raw(headers, name)?
        .map(|s| {
            s.parse::<u64>()
                .map_err(|_| ControlError(format!("header {name} must be a non-negative integer")))
        })
        .transpose()
}

fn count(headers: &HeaderMap, name: &str, max: usize) -> Result<Option<usize>, ControlError> {
    match number(headers, name)? {
        None => Ok(None),
        Some(n) => match usize::try_from(n) {
            Ok(n) if n <= max => Ok(Some(n)),
            _ => Err(ControlError(format!("header {name} must be at most {max}"))),
        },
    }
}

fn millis(headers: &HeaderMap, name: &str) -> Result<Option<Duration>, ControlError> {
    Ok(number(headers, name)?.map(Duration::from_millis))
}

impl Controls {
    pub fn parse(headers: &HeaderMap) -> Result<Self, ControlError> {
        let chunks = count(headers, "x-mock-chunks", MAX_CHUNKS)?.unwrap_or(DEFAULT_CHUNKS);
        let chunk_bytes = count(headers, "x-mock-chunk-bytes", MAX_CHUNK_BYTES)?;
        if chunks.saturating_mul(chunk_bytes.unwrap_or(16)) > MAX_STREAM_BYTES {
            return Err(ControlError(format!(
                "x-mock-chunks times x-mock-chunk-bytes must stay under {MAX_STREAM_BYTES} bytes"
            )));
        }
        let line_ending = match raw(headers, "x-mock-line-ending")? {
            None => LineEnding::Lf,
            Some(s) if s.eq_ignore_ascii_case("lf") => LineEnding::Lf,
            Some(s) if s.eq_ignore_ascii_case("crlf") => LineEnding::CrLf,
            Some(s) if s.eq_ignore_ascii_case("cr") => LineEnding::Cr,
            Some(_) => {
                return Err(ControlError(
                    "header x-mock-line-ending must be lf, crlf or cr".to_owned(),
                ))
            }
        };
        let fragment = match count(headers, "x-mock-fragment", usize::MAX)? {
            Some(0) => {
                return Err(ControlError(
                    "header x-mock-fragment must be at least 1".to_owned(),
                ))
            }
            other => other,
        };
        let status = match number(headers, "x-mock-status")? {
            None => None,
            Some(code) => match u16::try_from(code)
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
            {
                Some(s) if s.is_client_error() || s.is_server_error() => Some(s),
                _ => {
                    return Err(ControlError(
                        "header x-mock-status must be an error status (400-599)".to_owned(),
                    ))
                }
            },
        };
        Ok(Self {
            chunks,
            chunk_bytes,
            ttft: millis(headers, "x-mock-ttft-ms")?,
            gap: millis(headers, "x-mock-gap-ms")?,
            line_ending,
            fragment,
            status,
            drop_after: count(headers, "x-mock-drop-after", usize::MAX)?,
            stall_after: count(headers, "x-mock-stall-after", usize::MAX)?,
            header_delay: millis(headers, "x-mock-header-delay-ms")?,
            cached_tokens: number(headers, "x-mock-cached-tokens")?.unwrap_or(0),
            cache_write_tokens: number(headers, "x-mock-cache-write-tokens")?.unwrap_or(0),
            reasoning_tokens: number(headers, "x-mock-reasoning-tokens")?.unwrap_or(0),
            dims: count(headers, "x-mock-dims", MAX_DIMS)?,
        })
    }

    /// Content chunks to produce, capped by the request's token limit. Returns the chunk
    /// count and whether the cap cut the answer short.
    pub fn content_chunks(&self, cap: Option<u64>) -> (usize, bool) {
        match cap {
            Some(cap) if (cap as u128) < self.chunks as u128 => {
                (usize::try_from(cap).unwrap_or(self.chunks), true)
            }
            _ => (self.chunks, false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn defaults_and_bad_values() {
        let mut h = HeaderMap::new();
        let c = Controls::parse(&h).unwrap();
        assert_eq!(c.chunks, DEFAULT_CHUNKS);
        assert_eq!(c.line_ending, LineEnding::Lf);
        h.insert("x-mock-chunks", HeaderValue::from_static("abc"));
        assert!(Controls::parse(&h).is_err());
        h.insert("x-mock-chunks", HeaderValue::from_static("3"));
        h.insert("x-mock-status", HeaderValue::from_static("200"));
        assert!(Controls::parse(&h).is_err());
        h.insert("x-mock-status", HeaderValue::from_static("529"));
        assert_eq!(Controls::parse(&h).unwrap().status.unwrap().as_u16(), 529);
    }

    #[test]
    fn cap_limits_chunks() {
        let c = Controls {
            chunks: 8,
            ..Controls::default()
        };
        assert_eq!(c.content_chunks(None), (8, false));
        assert_eq!(c.content_chunks(Some(8)), (8, false));
        assert_eq!(c.content_chunks(Some(3)), (3, true));
        assert_eq!(c.content_chunks(Some(0)), (0, true));
    }
}
