//! Client connections as a whole: the Pingora server options that bound them (header deadline,
//! keep-alive idle timeout, connection cap), the answers Pingora writes before sluice sees a
//! request, and the draining state of a stopping process.
//!
//! Per-request rules (Host, Expect, whether an answer keeps the connection) are in
//! [`super::http1`].

use crate::api::Family;
use crate::config::ConnectionSettings;
use crate::errors::GatewayError;
use crate::governance::headers::retry_after_headers;
use crate::respond::REQUEST_ID;
use bytes::Bytes;
use pingora::apps::{ConnectionLimit, EarlyResponse, HttpServerOptions};
use pingora::http::ResponseHeader;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// File descriptors kept back from the connection cap for everything that is not a client
/// connection: listeners, the admin listener, log and spool files, DNS, the ledger client.
const FD_RESERVE: u64 = 128;

/// Set once the process starts to stop (SIGTERM, or SIGQUIT handing its sockets to a new
/// process): from then on every answer says `Connection: close`.
static DRAINING: AtomicBool = AtomicBool::new(false);

/// Marks the process as draining.
pub fn set_draining() {
    DRAINING.store(true, Ordering::Release);
}

/// Whether the process is draining (see [`set_draining`]).
pub fn draining() -> bool {
    DRAINING.load(Ordering::Acquire)
}

/// Pingora's server options for the proxy listeners, and the connection cap they count against.
pub fn server_options(settings: &ConnectionSettings) -> (HttpServerOptions, Arc<ConnectionLimit>) {
    let max = settings.max.unwrap_or_else(default_max_connections);
    let limit = ConnectionLimit::new(max);
    tracing::info!(
        max_connections = max,
        header_timeout = ?settings.header_timeout,
        idle_timeout_s = settings.idle_timeout_secs,
        "client connection limits"
    );
    let mut opts = HttpServerOptions::default();
    opts.h1_header_timeout = Some(settings.header_timeout);
    opts.h1_keepalive_timeout = Some(settings.idle_timeout_secs);
    opts.connection_limit = Some(limit.clone());
    opts.early_response = Some(Arc::new(EarlyAnswers));
    // Idle connections outlive the start of a shutdown until their idle timeout, answering any
    // request that still comes with `Connection: close` (see ARCHITECTURE.md, Connections).
    opts.h1_keep_idle_on_shutdown = true;
    (opts, limit)
}

/// Raises the soft file-descriptor limit to the hard one (as nginx's `worker_rlimit_nofile` and
/// Go's runtime do) and derives the connection cap from it: each proxied request holds a client
/// and an upstream socket, so half of what is left after a reserve. The cap makes sluice answer
/// 503 before `accept` starts failing with EMFILE.
fn default_max_connections() -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let soft = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if hard > soft => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(_) => soft,
        },
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    };
    let soft: u64 = soft;
    let usable = soft.saturating_sub(FD_RESERVE) / 2;
    usize::try_from(usable).unwrap_or(usize::MAX).max(1)
}

/// Pingora's own answers (a request it cannot parse, a header deadline, the connection cap) in
/// the OpenAI shape — the path, and so the caller's shape, is not known yet — with a request id.
#[derive(Debug)]
pub struct EarlyAnswers;

impl EarlyResponse for EarlyAnswers {
    fn response(&self, status: u16, message: &str) -> (ResponseHeader, Bytes) {
        let err = match status {
            408 => GatewayError::HeaderTimeout,
            503 => GatewayError::Overloaded("too many open connections"),
            _ => GatewayError::MalformedRequest(malformed_text(message)),
        };
        render_early(&err)
    }
}

/// Pingora's reason in words fit for a client (its own texts may quote what was sent).
fn malformed_text(_pingora_message: &str) -> &'static str {
    "the request is not valid HTTP/1.1 (bad framing, conflicting Content-Length, folded or \
     oversized headers)"
}

/// The unreachable case of [`render_early`]: a 500 built from a constant status.
#[expect(
    clippy::expect_used,
    reason = "a constant status always builds a header"
)]
fn early_fallback(body: Bytes) -> (ResponseHeader, Bytes) {
    let resp = ResponseHeader::build(http::StatusCode::INTERNAL_SERVER_ERROR, None)
        .expect("a constant status is valid");
    (resp, body)
}

/// A complete answer for `err` in the OpenAI shape, with a fresh request id.
pub fn render_early(err: &GatewayError) -> (ResponseHeader, Bytes) {
    let (status, body) = err.render(Family::OpenAi);
    // Every status `render` gives is a valid one, so the fallback is never taken.
    let Ok(mut resp) = ResponseHeader::build(status, Some(6))
        .or_else(|_| ResponseHeader::build(http::StatusCode::INTERNAL_SERVER_ERROR, Some(6)))
    else {
        return early_fallback(body);
    };
    let _ = resp.insert_header(http::header::CONTENT_TYPE, "application/json");
    let _ = resp.insert_header(http::header::CONTENT_LENGTH, body.len());
    let _ = resp.insert_header(REQUEST_ID, uuid::Uuid::now_v7().to_string());
    if let Some(wait) = err.retry_after() {
        retry_after_headers(wait, |name, value| {
            let _ = resp.insert_header(name, value);
        });
    }
    (resp, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_answers_are_openai_shaped_with_an_id() {
        for (status, retry) in [(400, false), (408, false), (503, true)] {
            let (h, body) = EarlyAnswers.response(status, "buf: secret-bytes");
            assert_eq!(h.status.as_u16(), status);
            assert!(h.headers.contains_key(REQUEST_ID));
            assert_eq!(h.headers.contains_key("retry-after"), retry);
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert!(v["error"]["message"].is_string(), "{v}");
            assert!(
                !body.windows(6).any(|w| w == b"secret"),
                "never echoes input"
            );
            assert_eq!(
                h.headers[http::header::CONTENT_LENGTH],
                body.len().to_string().as_str()
            );
        }
    }

    #[test]
    fn the_default_cap_leaves_room_below_the_descriptor_limit() {
        let max = default_max_connections() as u64;
        let (soft, _) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        assert!(max >= 1 && max * 2 + FD_RESERVE <= soft.max(FD_RESERVE + 2));
    }
}
