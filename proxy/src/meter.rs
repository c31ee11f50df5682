//! Turning a finished request's context into its usage record: outcome, and exact or estimated
//! token counts.

use crate::ctx::Ctx;
use crate::errors::GatewayError;
use crate::record::{Outcome, UsageRecord, RECORD_VERSION};
use crate::usage::Usage;
use pingora::{Error, ErrorSource};
use std::borrow::Cow;
use std::time::{Instant, UNIX_EPOCH};

/// How a request ended, from who answered and what error (if any) ended it.
pub fn outcome(ctx: &Ctx, error: Option<&Error>) -> Outcome {
    if ctx.rejected.is_some() {
        return Outcome::Rejected;
    }
    if let Some(e) = error {
        // The error kinds are classified once, by the same mapping that picks the error status.
        return match (e.esource(), GatewayError::from_proxy_error(e)) {
            (ErrorSource::Downstream, _) => Outcome::ClientDisconnected,
            (_, GatewayError::UpstreamTimeout) => Outcome::UpstreamTimeout,
            (ErrorSource::Upstream, GatewayError::UpstreamConnect) => Outcome::UpstreamUnreachable,
            (ErrorSource::Upstream, _) if ctx.status != 0 => Outcome::UpstreamDropped,
            (ErrorSource::Upstream, _) => Outcome::UpstreamUnreachable,
            _ => Outcome::Error,
        };
    }
    match ctx.status {
        200..=299 => Outcome::Ok,
        0 => Outcome::Error,
        _ => Outcome::ProviderError,
    }
}

/// Exact counts when the provider reported them; otherwise what is known plus estimates.
fn counts(ctx: &Ctx) -> (Usage, bool) {
    let Some(observer) = &ctx.observer else {
        return (Usage::default(), false);
    };
    let seen = observer.report();
    if seen.final_usage_seen {
        return (seen.usage, false);
    }
    let mut usage = seen.usage;
    if !seen.input_known {
        usage.input_tokens = crate::govern::estimate_input(ctx.bytes_in);
    }
    // Providers emit about one token per content delta.
    usage.output_tokens = usage.output_tokens.max(seen.delta_events);
    (usage, true)
}

/// Builds the record at the end of the request; the request's own strings move into it (this is
/// the last phase), so nothing is copied.
pub fn record(ctx: &mut Ctx, error: Option<&Error>, status: u16) -> UsageRecord {
    let now = Instant::now();
    let ms = |from: Instant, to: Instant| to.saturating_duration_since(from).as_secs_f64() * 1e3;
    let (usage, estimated) = counts(ctx);
    let outcome = outcome(ctx, error);
    let cost_micro_usd = ctx
        .route
        .as_ref()
        .and_then(|r| r.price)
        .map_or(0, |p| p.cost(&usage));
    let tags = std::mem::take(&mut ctx.tags);
    // Text fields come from the client (model, tags): cleaned once, here, for every consumer.
    crate::record::sanitized(UsageRecord {
        v: RECORD_VERSION,
        id: ctx.id,
        time_ms: ctx
            .arrived_wall
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        org: ctx.key.as_ref().map(|k| k.org.clone()),
        key_id: ctx.key.as_ref().map(|k| k.id.as_arc()),
        provider: ctx.route.as_ref().map(|r| r.provider.name.clone()),
        model: ctx.model.take(),
        upstream_model: ctx.upstream_model.take(),
        api: Cow::Borrowed(ctx.api.map_or("unknown", |a| a.name())),
        stream: ctx.stream,
        status,
        outcome,
        input_tokens: usage.input_tokens,
        output_tokens: usage.output_tokens,
        cached_tokens: usage.cached_tokens,
        cache_write_tokens: usage.cache_write_tokens,
        reasoning_tokens: usage.reasoning_tokens,
        estimated,
        cost_micro_usd,
        ttft_ms: ctx.first_chunk_at.map(|t| ms(ctx.arrived, t)),
        total_ms: ms(ctx.arrived, now),
        upstream_ms: ctx.upstream_started.map(|t| ms(t, now)),
        bytes_in: ctx.bytes_in,
        bytes_out: ctx.bytes_out,
        user: tags.user,
        session: tags.session,
        feature: tags.feature,
        meta: tags.meta,
        client_ip: None,
    })
}
