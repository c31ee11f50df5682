//! `GET /v1/models` and `GET /v1/models/{id}`: the models a key may use, in the caller's shape.
//!
//! Each shape lists only the models its API can reach: an OpenAI client sees the routes to
//! OpenAI-protocol providers, an Anthropic SDK (it sends `anthropic-version`) the routes to
//! Anthropic, since a model of the other protocol would only answer "wrong endpoint". Glob
//! routes are listed too, by their pattern, saying that any name matching it is served; asking
//! for one such name by id (`/v1/models/claude-3-opus`) answers for that name.

use crate::api::Family;
use crate::config::{Route, Snapshot, VirtualKey};
use crate::ctx::Ctx;
use crate::errors::GatewayError;
use crate::respond;
use bytes::Bytes;
use pingora::proxy::Session;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

/// One listed model: an exact name, or a glob route's pattern.
struct Listed<'a> {
    id: &'a str,
    route: &'a Arc<Route>,
    pattern: bool,
}

/// The models `key` may use through a `kind` provider: exact names first, then glob routes.
fn usable<'a>(
    snapshot: &'a Snapshot,
    key: &'a VirtualKey,
    kind: Family,
) -> impl Iterator<Item = Listed<'a>> + 'a {
    let exact = snapshot.models.iter().map(|(name, route)| Listed {
        id: name,
        route,
        pattern: false,
    });
    let globs = snapshot.glob_routes().map(|(id, route)| Listed {
        id,
        route,
        pattern: true,
    });
    // A key scope allows a pattern when the pattern text itself matches the scope (`claude-*`
    // under a `claude-*` or `*` scope).
    exact.chain(globs).filter(move |m| {
        m.route.pool.family == kind
            && key.scope.allows(m.id)
            && snapshot.reach(&key.org, m.route).mask != 0
    })
}

fn entry(m: &Listed<'_>, anthropic: bool, created: u64) -> Value {
    let owner = &*m.route.pool.primary().provider.name;
    if anthropic {
        let shown = if m.pattern {
            format!("any model matching {}", m.id)
        } else {
            m.id.to_string()
        };
        let created_at =
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(created))
                .to_string();
        json!({"type": "model", "id": m.id, "display_name": shown, "created_at": created_at})
    } else if m.pattern {
        json!({"id": m.id, "object": "model", "created": created, "owned_by": owner,
               "pattern": true, "description": format!("any model matching {}", m.id)})
    } else {
        json!({"id": m.id, "object": "model", "created": created, "owned_by": owner})
    }
}

/// Answers the model list (or one model) for the request's key.
pub async fn answer(session: &mut Session, ctx: &mut Ctx) {
    let Some(key) = ctx.key.clone() else { return };
    let anthropic = session
        .req_header()
        .headers
        .contains_key(crate::upstream::request::ANTHROPIC_VERSION);
    if anthropic {
        ctx.family = Family::Anthropic;
    }
    let kind = if anthropic {
        Family::Anthropic
    } else {
        Family::OpenAi
    };
    let wanted = session
        .req_header()
        .uri
        .path()
        .strip_prefix("/v1/models/")
        .map(str::to_string);
    let snapshot = ctx.snapshot.clone();
    let created = snapshot
        .loaded_at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let body = match wanted {
        Some(id) => {
            // An exact name, or a name a glob route serves, listed under the name asked for.
            let found = snapshot
                .route(&id)
                .filter(|r| r.pool.family == kind)
                .filter(|r| key.scope.allows(&id) && snapshot.reach(&key.org, r).mask != 0);
            match found {
                Some(route) => entry(
                    &Listed {
                        id: &id,
                        route,
                        pattern: false,
                    },
                    anthropic,
                    created,
                ),
                None => {
                    let id = crate::text::truncate(&id, 256);
                    return respond::error(session, ctx, GatewayError::UnknownModel(id)).await;
                }
            }
        }
        None => {
            let data: Vec<Value> = usable(&snapshot, &key, kind)
                .map(|m| entry(&m, anthropic, created))
                .collect();
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
    respond::json(session, ctx, 200, Bytes::from(body.to_string())).await;
}
