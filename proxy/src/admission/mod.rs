//! Admission: everything decided before a request may go upstream — surface, key, body, route.

pub mod auth;
pub mod body;
pub mod client_ip;
pub mod cors;
pub mod models;
pub mod surface;

use crate::api::{Api, Family};
use crate::ctx::Ctx;
use crate::errors::GatewayError;
use crate::governance::{self, Governance};
use crate::metering::record::{Tags, MAX_TAG_VALUE};
use crate::text::{bounded, truncate};
use body::RequestFields;
use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;
use std::time::SystemTime;

/// What to do with an admitted request.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Forward to the provider.
    Proxy,
    /// Sluice answers itself (`GET /v1/models`).
    ListModels,
    /// A CORS preflight from an allowed origin, answered by sluice before any authentication
    /// (browsers send no credentials with it).
    Preflight,
}

pub async fn admit(
    session: &mut Session,
    ctx: &mut Ctx,
    now: SystemTime,
    gov: &Governance,
    routes: &crate::routing::Registry,
) -> Result<Admission, GatewayError> {
    let req = session.req_header();
    ctx.family = Family::of_path(req.uri.path());
    // First, so that a refused request (a bad key, a malformed header) is recorded with it too.
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    ctx.client_ip = client_ip::resolve(peer, &req.headers, &ctx.snapshot.client_ip);
    crate::server::http1::check_request(req)?;
    ctx.cors_origin = crate::admission::cors::allowed_origin(session, ctx);
    let req = session.req_header();
    if ctx.cors_origin.is_some() && crate::admission::cors::is_preflight(req) {
        return Ok(Admission::Preflight);
    }
    let api = surface::classify(&req.method, req.uri.path())?;
    ctx.api = Some(api);
    ctx.family = api.family();
    let key = auth::authenticate(&ctx.snapshot, req, now)?;
    ctx.key = Some(key.clone());
    gov.suspensions.check(&key)?;
    ctx.tags = Tags::from_headers(req);
    if api == Api::Models {
        return Ok(Admission::ListModels);
    }

    let server = &ctx.snapshot.server;
    let raw = read_body(
        session,
        server.max_body_bytes,
        server.connections.body_timeout,
    )
    .await?;
    ctx.bytes_in = raw.len() as u64;
    let fields = RequestFields::parse(&raw)?;
    let model = fields.model().ok_or_else(|| {
        GatewayError::InvalidBody("you must provide a model parameter".to_string())
    })?;
    // The name as recorded and echoed in errors: bounded, since the client chose it.
    let shown = truncate(model, 256);
    ctx.model = Some(shown.clone());
    let route = ctx
        .snapshot
        .route(model)
        .ok_or_else(|| GatewayError::UnknownModel(shown.clone()))?
        .clone();
    let reach = ctx.snapshot.reach(&key.org, &route);
    if reach.mask == 0 && !reach.out_of_region {
        // No credential for any target: to this org the model does not exist.
        return Err(GatewayError::UnknownModel(shown));
    }
    if !key.scope.allows(model) {
        return Err(GatewayError::ModelNotAllowed(shown));
    }
    if reach.mask == 0 {
        let regions = ctx
            .snapshot
            .org(&key.org)
            .and_then(|o| o.regions.as_ref())
            .map(|r| r.join(", "))
            .unwrap_or_default();
        return Err(GatewayError::OutsideRegion {
            model: shown,
            regions,
        });
    }
    if route.pool.family != api.family() {
        return Err(GatewayError::WrongSurface {
            model: shown,
            wanted: match api.family() {
                Family::OpenAi => "the Anthropic Messages API (POST /v1/messages)",
                Family::Anthropic => "the OpenAI API (POST /v1/chat/completions)",
            },
        });
    }
    let generates = !matches!(api, Api::Embeddings | Api::CountTokens);
    if let Some(asked) = fields
        .max_output()
        .filter(|n| generates && *n > route.output_ceiling)
    {
        return Err(GatewayError::OutputTooLarge {
            model: shown,
            asked,
            max: route.output_ceiling,
        });
    }
    if ctx.tags.user.is_none() {
        ctx.tags.user = fields
            .user
            .as_deref()
            .map(|u| bounded(u, MAX_TAG_VALUE).to_string());
    }
    let org = ctx.snapshot.org(&key.org).cloned();
    // Known before the limits: a refused request still counts under its route in the metrics.
    ctx.route = Some(route.clone());
    // Every reachable target down: refused before it takes from the limits.
    let now_ms = ctx.arrived.as_millis() as u64;
    if let Err(crate::routing::NoTarget::AllDown { retry_after }) =
        crate::routing::balance::available(&route.pool, reach.mask, routes, now_ms)
    {
        return Err(GatewayError::NoUpstream {
            model: shown,
            retry_after,
        });
    }
    let held = gov
        .admit_with(
            &governance::Request {
                key: &key,
                org: org.as_deref(),
                model,
                route: &route,
                input_estimate: if api == Api::CountTokens {
                    0
                } else {
                    governance::estimate_input(ctx.bytes_in)
                },
                max_output: fields.max_output(),
                generates,
            },
            &mut ctx.rate,
            &ctx.snapshot.limits,
        )
        .await?;
    ctx.held = Some(held);
    ctx.stream = fields.is_stream();
    ctx.strip_usage_chunk = ctx.stream && api.usage_needs_opt_in() && !fields.client_wants_usage();
    // The body is rewritten for the model name the targets share (else the first's); an
    // attempt on a target with another name rewrites it again.
    let body_model = route
        .pool
        .common_model
        .clone()
        .unwrap_or_else(|| route.pool.primary().upstream_model.clone());
    let alias = body_model.as_deref().filter(|m| *m != model);
    ctx.upstream_model = Some(alias.unwrap_or(model).to_string());
    ctx.upstream.allowed = reach.mask;
    if route.pool.policy.affinity {
        let session = ctx.tags.session.as_deref().or(ctx.tags.user.as_deref());
        ctx.upstream.affinity = session.map(|s| crate::routing::hash::of(s.as_bytes()));
    }
    ctx.upstream.tokens = ctx.held.as_ref().map_or(0, governance::Held::tokens);
    ctx.upstream.body_model = body_model.clone();
    ctx.client_body = raw.clone();
    ctx.upstream_body = Some(
        body::rewrite(&raw, &fields, alias, ctx.strip_usage_chunk).unwrap_or_else(|| {
            // Without the rewrite the provider will not report streamed usage; record it as
            // estimated rather than strip a chunk that will not come.
            ctx.strip_usage_chunk = false;
            raw.clone()
        }),
    );
    Ok(Admission::Proxy)
}

/// Reads the whole request body, refusing (413) anything over `limit` — by its declared length
/// before reading, or by what actually arrives — and (408) a body still incomplete after
/// `deadline` (a per-read timeout alone would let a client trickle bytes forever).
async fn read_body(
    session: &mut Session,
    limit: usize,
    deadline: std::time::Duration,
) -> Result<Bytes, GatewayError> {
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(GatewayError::BodyTooLarge(limit));
    }
    crate::server::http1::continue_if_expected(session).await;
    tokio::time::timeout(deadline, read_all(session, limit, declared))
        .await
        .map_err(|_| GatewayError::BodyTimeout(deadline))?
}

async fn read_all(
    session: &mut Session,
    limit: usize,
    declared: Option<u64>,
) -> Result<Bytes, GatewayError> {
    let mut first: Option<Bytes> = None;
    let mut rest: Option<BytesMut> = None;
    let mut total = 0usize;
    loop {
        let chunk = session
            .read_request_body()
            .await
            .map_err(|_| GatewayError::InvalidBody("the request body could not be read".into()))?;
        let Some(chunk) = chunk else { break };
        total = total.saturating_add(chunk.len());
        if total > limit {
            return Err(GatewayError::BodyTooLarge(limit));
        }
        // The common case is one chunk: keep it as is; copy only when there are several.
        match (&first, &mut rest) {
            (None, _) => first = Some(chunk),
            (Some(f), None) => {
                let mut buf = BytesMut::with_capacity(declared.map_or(f.len() * 2, |n| n as usize));
                buf.extend_from_slice(f);
                buf.extend_from_slice(&chunk);
                rest = Some(buf);
            }
            (Some(_), Some(buf)) => buf.extend_from_slice(&chunk),
        }
    }
    Ok(match rest {
        Some(buf) => buf.freeze(),
        None => first.unwrap_or_default(),
    })
}
