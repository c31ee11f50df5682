//! Answers sluice writes itself: errors in the caller's shape (the model list is in `models`).

use crate::ctx::Ctx;
use crate::errors::GatewayError;
use crate::governance::headers::{rate_limit_headers, retry_after_headers};
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

pub const REQUEST_ID: &str = "x-request-id";

/// Writes a complete JSON answer; returns whether it was written whole (failures mean the client
/// is gone; there is no one to tell). The connection stays open after it only when the request
/// body was fully read and the process is not draining (`server::http1`).
pub async fn json(session: &mut Session, ctx: &Ctx, status: u16, body: Bytes) -> bool {
    crate::server::http1::before_own_answer(session, ctx.snapshot.server.connections.body_timeout)
        .await;
    let Ok(mut resp) = ResponseHeader::build(status, Some(4)) else {
        return false;
    };
    let _ = resp.insert_header(http::header::CONTENT_TYPE, "application/json");
    let _ = resp.insert_header(http::header::CONTENT_LENGTH, body.len());
    let _ = resp.insert_header(REQUEST_ID, ctx.id.to_string());
    add_rate_headers(&mut resp, ctx);
    crate::admission::cors::add_headers(&mut resp, ctx);
    if let Some(wait) = ctx.rejected.as_ref().and_then(GatewayError::retry_after) {
        retry_after_headers(wait, |name, value| {
            let _ = resp.insert_header(name, value);
        });
    }
    session
        .write_response_header(Box::new(resp), false)
        .await
        .is_ok()
        && session.write_response_body(Some(body), true).await.is_ok()
}

/// Renders `err` in the request's shape.
pub async fn error(session: &mut Session, ctx: &mut Ctx, err: GatewayError) {
    let (status, body) = err.render(ctx.family);
    ctx.status = status;
    ctx.rejected = Some(err);
    json(session, ctx, status, body).await;
}

/// The rate-limit headers of the tightest limits that applied to this request (replacing the
/// provider's own of the same name: the client's limits are sluice's).
pub fn add_rate_headers(resp: &mut ResponseHeader, ctx: &Ctx) {
    let rate = &ctx.rate;
    if rate.requests.is_none() && rate.tokens.is_none() {
        return;
    }
    rate_limit_headers(
        ctx.family,
        rate.requests,
        rate.tokens,
        ctx.arrived_wall,
        |name, value| {
            let _ = resp.insert_header(name, value);
        },
    );
}
