//! The upstream phases' routing decisions: the target of each attempt (with the body and model
//! it needs), what a failure tells the endpoint's health, and whether the request moves on.
//!
//! Failover uses Pingora's own retry loop: a connect error (`fail_to_connect`) or an error
//! while proxying (`error_while_proxy`) marked retryable makes Pingora call `upstream_peer`
//! again, which picks the next target. A status in the route's `retry_on` is turned into such
//! an error in `upstream_response_filter`, before any byte reaches the client. Nothing is ever
//! retried once the client has received part of an answer.

use crate::admission::body;
use crate::ctx::Ctx;
use crate::errors::GatewayError;
use crate::routing::{NoTarget, Registry, Target};
use crate::telemetry::upstream as series;
use pingora::http::ResponseHeader;
use pingora::upstreams::peer::HttpPeer;
use std::time::Duration;

/// Picks the next attempt's target, readies the body and model name for it, and returns its
/// peer.
pub fn next_peer(
    ctx: &mut Ctx,
    registry: &Registry,
    now_ms: u64,
) -> Result<Box<HttpPeer>, GatewayError> {
    let route = ctx.route.clone().ok_or(GatewayError::Internal)?;
    let pool = &route.pool;
    let index = ctx
        .upstream
        .next(pool, registry, &route.name, now_ms)
        .map_err(|e| match e {
            NoTarget::AllDown { retry_after } => GatewayError::NoUpstream {
                model: ctx.model.clone().unwrap_or_default(),
                retry_after,
            },
            // Admission checked that a target was reachable, and a retry is only decided
            // when one is left; a race with an ejection can still land here.
            NoTarget::Exhausted => GatewayError::NoUpstream {
                model: ctx.model.clone().unwrap_or_default(),
                retry_after: Duration::from_secs(1),
            },
        })?;
    let target = &pool.targets[index];
    if target.upstream_model != ctx.upstream.body_model {
        retarget_body(ctx, target);
    }
    target
        .endpoint()
        .peer(&target.provider.timeouts, ctx.stream)
        .ok_or(GatewayError::Internal)
}

/// Rebuilds the upstream body for a target that knows the model by another name (a failover
/// between, say, OpenAI's and Azure's names for one model).
fn retarget_body(ctx: &mut Ctx, target: &Target) {
    let model = target.upstream_model.as_deref();
    if let Some((rebuilt, sent)) = body::for_target(&ctx.client_body, model, ctx.strip_usage_chunk)
    {
        ctx.upstream_body = Some(rebuilt);
        ctx.upstream_model = Some(sent);
    }
    ctx.upstream.body_model = target.upstream_model.clone();
}

/// Response headers arrived: updates the endpoint's health, and decides whether this answer
/// is replaced by another attempt (`true`: return a retryable error before anything is sent).
pub fn on_status(
    ctx: &mut Ctx,
    registry: &Registry,
    upstream: &ResponseHeader,
    now_ms: u64,
    started: bool,
) -> bool {
    let Some(route) = ctx.route.clone() else {
        return false;
    };
    let pool = &route.pool;
    let status = upstream.status.as_u16();
    let Some(target) = ctx.upstream.target(pool) else {
        return false;
    };
    if pool.targets.len() == 1 {
        // A lone target has nothing to route around: its answer goes to the client as is,
        // and its health is not tracked (ejecting it would only turn that answer into a 503).
        return false;
    }
    if status == 429 {
        if let Some(wait) = retry_after(upstream) {
            ctx.upstream
                .cool_down(wait.min(target.provider.health.max_backoff), now_ms);
        }
    } else if status >= 500 {
        if ctx.upstream.failed(pool, now_ms) {
            series::ejected(target);
        }
    } else if ctx.upstream.answered(now_ms) {
        series::up(target);
    }
    let retry = pool.policy.retry_on.contains(&status)
        && ctx
            .upstream
            .may_retry(pool, registry, &route.name, now_ms, started);
    if retry {
        series::failed_attempt(target, "status");
        ctx.upstream.failing_over = true;
    }
    retry
}

/// An attempt failed with an error (connect, timeout, reset). Updates the endpoint's health
/// when the failure is the upstream's, and decides whether to try another target.
pub fn on_error(
    ctx: &mut Ctx,
    registry: &Registry,
    upstream_fault: bool,
    reason: &'static str,
    now_ms: u64,
    started: bool,
) -> bool {
    if std::mem::take(&mut ctx.upstream.failing_over) {
        // The status failover already decided (and took its budget).
        return true;
    }
    let Some(route) = ctx.route.clone() else {
        return false;
    };
    let pool = &route.pool;
    let Some(target) = ctx.upstream.target(pool) else {
        return false;
    };
    if !upstream_fault || ctx.failure.is_some() || pool.targets.len() == 1 {
        return false;
    }
    if ctx.upstream.failed(pool, now_ms) {
        series::ejected(target);
    }
    let retry = ctx
        .upstream
        .may_retry(pool, registry, &route.name, now_ms, started);
    series::failed_attempt(target, reason);
    retry
}

/// A provider's `retry-after-ms` or `retry-after` (in seconds; an HTTP date is not honoured
/// and means no cool-down).
fn retry_after(h: &ResponseHeader) -> Option<Duration> {
    let get = |name: &str| h.headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok()) {
        return (ms.is_finite() && ms > 0.0).then(|| Duration::from_secs_f64(ms / 1e3));
    }
    get("retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
}
