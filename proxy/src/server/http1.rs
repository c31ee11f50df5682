//! HTTP/1.1 rules applied per request: a Host header is required, `Expect` is answered, and
//! every answer says truthfully whether the connection stays open (`Connection: keep-alive` only
//! when the request body was fully read and the process is not draining).

use super::conn;
use crate::errors::GatewayError;
use crate::text::truncate;
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use std::time::Duration;

/// An unread request body up to this size is read and dropped before sluice answers an error,
/// so the connection can be reused (a client that was refused usually retries); a larger one,
/// or one of unknown length, closes the connection instead.
const DRAINABLE_BODY: u64 = 64 * 1024;

/// The header rules checked before admission: HTTP/1.1 needs `Host` (RFC 9112 §3.2), and the only
/// expectation sluice meets is `100-continue` (RFC 9110 §10.1.1: others get 417).
pub fn check_request(req: &RequestHeader) -> Result<(), GatewayError> {
    if req.version == http::Version::HTTP_11 && !req.headers.contains_key(http::header::HOST) {
        return Err(GatewayError::MissingHost);
    }
    match req.headers.get(http::header::EXPECT) {
        Some(v) if !v.as_bytes().eq_ignore_ascii_case(b"100-continue") => Err(
            GatewayError::ExpectationFailed(truncate(&String::from_utf8_lossy(v.as_bytes()), 64)),
        ),
        _ => Ok(()),
    }
}

/// Sends `100 Continue` when the client waits for it before sending its body (curl does, for
/// a second, on bodies over 1 KiB), and drops the expectation so it is not forwarded upstream:
/// the provider gets the body sluice already holds.
pub async fn continue_if_expected(session: &mut Session) {
    let expects = session
        .req_header()
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if !expects {
        return;
    }
    session
        .req_header_mut()
        .remove_header(&http::header::EXPECT);
    if !session.is_body_done() {
        // Writing a response header while the body is unread makes Pingora give up the
        // connection; the 100 is interim, the body is about to be read, so the connection's
        // keep-alive is restored after it.
        let keepalive = session.get_keepalive();
        // A failure means the client is gone; reading the body reports it.
        let _ = session.write_continue_response().await;
        session.set_keepalive(keepalive);
    }
}

/// Before sluice writes an answer itself: the connection stays open only when the request body
/// was fully read (a small unread one is read and dropped, within `body_timeout`) and the process
/// is not draining; otherwise the answer says `Connection: close`.
pub async fn before_own_answer(session: &mut Session, body_timeout: Duration) {
    if conn::draining() {
        session.set_keepalive(None);
        return;
    }
    if session.is_body_done() {
        return;
    }
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let chunked = session
        .req_header()
        .headers
        .contains_key(http::header::TRANSFER_ENCODING);
    let drained = !chunked
        && declared.is_some_and(|n| n <= DRAINABLE_BODY)
        && tokio::time::timeout(body_timeout, session.drain_request_body())
            .await
            .is_ok_and(|r| r.is_ok());
    if !drained || !session.is_body_done() {
        session.set_keepalive(None);
    }
}

/// Before a provider's response header goes to the client: a draining process closes the
/// connection after it.
pub fn before_proxied_response(session: &mut Session) {
    if conn::draining() {
        session.set_keepalive(None);
    }
}

/// Whether the connection may serve another request after the answer just written.
pub fn reusable(session: &Session) -> bool {
    session.get_keepalive().is_some()
}
