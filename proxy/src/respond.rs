//! Answers sluice writes itself: errors in the caller's shape, and the model list.

use crate::api::Family;
use crate::ctx::Ctx;
use crate::errors::GatewayError;
use crate::rate_headers::{rate_limit_headers, retry_after_headers};
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use serde_json::json;

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

/// `GET /v1/models` and `GET /v1/models/{id}`: the exact model names this key may use, in the
/// OpenAI list shape, or Anthropic's when the caller is an Anthropic SDK (it sends
/// `anthropic-version`).
pub async fn models(session: &mut Session, ctx: &mut Ctx) {
    let Some(key) = ctx.key.clone() else { return };
    let anthropic = session
        .req_header()
        .headers
        .contains_key(crate::providers::ANTHROPIC_VERSION);
    let wanted = session
        .req_header()
        .uri
        .path()
        .strip_prefix("/v1/models/")
        .map(str::to_string);
    let usable = ctx.snapshot.models.iter().filter(|(name, route)| {
        key.scope.allows(name) && ctx.snapshot.org_can_use(&key.org, &route.provider)
    });
    let entry = |name: &str, owner: &str| {
        if anthropic {
            json!({"type": "model", "id": name, "display_name": name, "created_at": "1970-01-01T00:00:00Z"})
        } else {
            json!({"id": name, "object": "model", "created": 0, "owned_by": owner})
        }
    };
    let body = match wanted {
        Some(id) => match usable.into_iter().find(|(n, _)| **n == *id) {
            Some((n, r)) => entry(n, &r.provider.name),
            None => {
                let id = crate::api::truncate(&id, 256);
                if anthropic {
                    ctx.family = Family::Anthropic;
                }
                return error(session, ctx, GatewayError::UnknownModel(id)).await;
            }
        },
        None => {
            let data: Vec<_> = usable.map(|(n, r)| entry(n, &r.provider.name)).collect();
            if anthropic {
                let first = data.first().map(|d| d["id"].clone());
                let last = data.last().map(|d| d["id"].clone());
                json!({"data": data, "has_more": false, "first_id": first, "last_id": last})
            } else {
                json!({"object": "list", "data": data})
            }
        }
    };
    ctx.status = 200;
    json(session, ctx, 200, Bytes::from(body.to_string())).await;
}
