//! Turning a finished request's context into its usage record: outcome, and exact or estimated
//! token counts.

pub mod pricing;
pub mod record;
pub mod response;
pub mod sink;

use crate::api::Api;
use crate::ctx::Ctx;
use crate::errors::GatewayError;
use crate::usage::{ReportedError, Usage};
use pingora::{Error, ErrorSource, ErrorType};
use record::{Outcome, UsageRecord, RECORD_VERSION};
use std::borrow::Cow;
use std::time::{Duration, UNIX_EPOCH};

/// How a request ended, from who answered and what error (if any) ended it.
pub fn outcome(ctx: &Ctx, error: Option<&Error>) -> Outcome {
    if ctx.rejected.is_some() {
        return Outcome::Rejected;
    }
    // The provider's own report of a failure names the cause better than whatever followed.
    if stream_error(ctx).is_some() {
        return Outcome::StreamError;
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

/// The failure a provider reported inside a successful stream, if any.
fn stream_error(ctx: &Ctx) -> Option<ReportedError> {
    let seen = ctx.response.observer.as_ref()?.report();
    (200..=299)
        .contains(&ctx.status)
        .then_some(seen.stream_error)?
}

/// Whether the request was sent to the provider and failed before any answer: it timed out,
/// the connection broke, or the client left while the provider was working. A connect-phase
/// failure never reached it.
fn failed_at_provider(ctx: &Ctx, error: Option<&Error>) -> bool {
    let Some(e) = error else { return false };
    ctx.response.upstream_started.is_some()
        && ctx.response.observer.is_none()
        && ctx.rejected.is_none()
        && !matches!(
            e.etype(),
            ErrorType::ConnectTimedout
                | ErrorType::ConnectRefused
                | ErrorType::ConnectNoRoute
                | ErrorType::ConnectError
                | ErrorType::BindError
                | ErrorType::SocketError
                | ErrorType::ConnectProxyFailure
                | ErrorType::TLSHandshakeFailure
                | ErrorType::TLSHandshakeTimedout
                | ErrorType::InvalidCert
                | ErrorType::HandshakeError
        )
}

/// Exact counts when the provider reported them; otherwise what is known plus estimates.
fn counts(ctx: &Ctx, error: Option<&Error>) -> (Usage, bool) {
    let Some(observer) = &ctx.response.observer else {
        // No answer to read, but the provider may well have processed (and billed) the prompt:
        // its input is estimated as at admission, its output (never seen) as zero, and the
        // record says it is an estimate. `count_tokens` is never billed, so it stays exact zero.
        if failed_at_provider(ctx, error) && ctx.api != Some(Api::CountTokens) {
            let usage = Usage {
                input_tokens: crate::governance::estimate_input(ctx.bytes_in),
                ..Usage::default()
            };
            return (usage, true);
        }
        return (Usage::default(), false);
    };
    let seen = observer.report();
    if let Some(counted) = seen.counted_input_tokens {
        // The size of the prompt the provider counted; the call itself costs nothing.
        let usage = Usage {
            input_tokens: counted,
            ..Usage::default()
        };
        return (usage, false);
    }
    if seen.final_usage_seen {
        return (seen.usage, false);
    }
    let mut usage = seen.usage;
    if !seen.input_known {
        usage.input_tokens = crate::governance::estimate_input(ctx.bytes_in);
    }
    // Providers emit about one token per content delta.
    usage.output_tokens = usage.output_tokens.max(seen.delta_events);
    (usage, true)
}

/// Tokens a finished request charges to token rate limits: `count_tokens` records the size of
/// the prompt it counted, but it generates nothing and the provider does not bill it.
pub fn charged_tokens(ctx: &Ctx, record: &UsageRecord) -> u64 {
    if ctx.api == Some(Api::CountTokens) {
        return 0;
    }
    record.input_tokens.saturating_add(record.output_tokens)
}

/// Builds the record at the end of the request (`now`: the gateway clock's monotonic reading);
/// the request's own strings move into it (this is the last phase), so nothing is copied.
pub fn record(ctx: &mut Ctx, error: Option<&Error>, status: u16, now: Duration) -> UsageRecord {
    let ms = |from: Duration, to: Duration| to.saturating_sub(from).as_secs_f64() * 1e3;
    let (usage, estimated) = counts(ctx, error);
    let outcome = outcome(ctx, error);
    let error_type = stream_error(ctx).map(|e| e.as_str().to_string());
    let cost_micro_usd = ctx
        .route
        .as_ref()
        .and_then(|r| r.price)
        .filter(|_| ctx.api != Some(Api::CountTokens))
        .map_or(0, |p| p.cost(&usage));
    let tags = std::mem::take(&mut ctx.tags);
    let route = ctx.route.as_deref();
    let served = route.and_then(|r| ctx.upstream.target(&r.pool));
    // Text fields come from the client (model, tags): cleaned once, here, for every consumer.
    crate::metering::record::sanitized(UsageRecord {
        v: RECORD_VERSION,
        id: ctx.id,
        time_ms: ctx
            .arrived_wall
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        org: ctx.key.as_ref().map(|k| k.org.clone()),
        key_id: ctx.key.as_ref().map(|k| k.id.as_arc()),
        provider: served
            .or(route.map(|r| r.pool.primary()))
            .map(|t| t.provider.name.clone()),
        endpoint: served.map(|t| t.endpoint().id.clone()),
        region: served.and_then(|t| t.provider.region.clone()),
        attempts: ctx.upstream.count,
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
        ttft_ms: ctx.response.first_chunk_at.map(|t| ms(ctx.arrived, t)),
        total_ms: ms(ctx.arrived, now),
        upstream_ms: ctx.response.upstream_started.map(|t| ms(t, now)),
        bytes_in: ctx.bytes_in,
        bytes_out: ctx.response.bytes_out,
        user: tags.user,
        session: tags.session,
        feature: tags.feature,
        meta: tags.meta,
        client_ip: ctx
            .client_ip
            .and_then(|ip| crate::admission::client_ip::render(ip, &ctx.snapshot.client_ip.record)),
        error_type,
    })
}
