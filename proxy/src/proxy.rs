//! The Pingora `ProxyHttp` implementation. It only orchestrates the phases; every decision lives
//! in its own module (admit, providers, usage, meter, respond).

use crate::admission::{self, Admission};
use crate::clock::Clock;
use crate::config::Snapshot;
use crate::ctx::Ctx;
use crate::errors::GatewayError;
use crate::governance::Governance;
use crate::metering::sink::UsageSink;
use crate::metering::{self, response::TotalTimeExceeded};
use crate::respond::{self, REQUEST_ID};
use crate::routing::Registry;
use crate::server::http1;
use crate::telemetry::live::StreamInFlight;
use crate::telemetry::requests::RequestMetrics;
use crate::upstream::{failover, request};
use crate::usage::{self, UsageObserver};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{ErrorSource, ErrorType};
use std::sync::Arc;
use std::time::Duration;

/// The gateway: current configuration, governance state (limits, spend), usage sink, clock.
#[derive(Debug, Clone)]
pub struct Gateway {
    config: Arc<ArcSwap<Snapshot>>,
    gov: Arc<Governance>,
    sink: UsageSink,
    clock: Arc<dyn Clock>,
    metrics: Arc<RequestMetrics>,
    /// Endpoint health and load, and route retry budgets: outside the snapshot, so they
    /// survive reloads.
    routes: Arc<Registry>,
}

impl Gateway {
    /// Fails only when the shared limits' Redis settings cannot make a client.
    pub fn new(
        config: Arc<ArcSwap<Snapshot>>,
        sink: UsageSink,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, String> {
        let gov = match &config.load().limits.redis {
            None => Governance::new(clock.clone()),
            Some(redis) => {
                Governance::shared(clock.clone(), redis).map_err(|e| format!("limits: {e}"))?
            }
        };
        Ok(Self {
            config,
            gov: Arc::new(gov),
            sink,
            clock,
            metrics: Arc::default(),
            routes: Arc::default(),
        })
    }

    /// The shared limits' background task (leases, give-backs, spend), for the lifecycle to
    /// run; `None` on the local backend.
    pub fn shared_limits(&self) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let global = self.gov.global.as_ref()?;
        Some(crate::governance::global::run(Arc::downgrade(global)))
    }

    /// At shutdown: gives the shared limits' unused leases back (`None` on the local backend).
    pub fn release_limits(&self) -> Option<impl std::future::Future<Output = ()> + Send + '_> {
        let global = self.gov.global.as_ref()?;
        Some(global.release())
    }

    /// Governance maintenance (idle limiter state, ended budget periods), for the lifecycle to
    /// run; it ends once the gateway is gone.
    pub fn maintenance(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        Governance::maintain(Arc::downgrade(&self.gov))
    }

    /// Active health checks of pooled endpoints, for the lifecycle to run; they end once the
    /// gateway is gone.
    pub fn health_checks(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        crate::upstream::checks::run(
            self.config.clone(),
            Arc::downgrade(&self.routes),
            self.clock.clone(),
        )
    }

    /// The per-org spend figures, shared with the ledger's spend feed.
    pub fn spend(&self) -> Arc<crate::governance::budgets::Spend> {
        self.gov.spend.clone()
    }

    /// The suspended keys and orgs, which the spend feed updates.
    pub fn suspensions(&self) -> Arc<crate::governance::suspensions::Suspensions> {
        self.gov.suspensions.clone()
    }
}

/// Milliseconds of a monotonic clock reading, the unit of the routing state.
fn millis(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// A gateway error raised inside a phase: stored for `fail_to_proxy` to render.
fn fail(ctx: &mut Ctx, e: GatewayError) -> Box<pingora::Error> {
    ctx.failure = Some(e);
    pingora::Error::new(ErrorType::InternalError)
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::new(self.config.load_full(), &*self.clock)
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        match admission::admit(session, ctx, self.clock.now(), &self.gov, &self.routes).await {
            Ok(Admission::Proxy) => Ok(false),
            Ok(Admission::Preflight) => {
                crate::admission::cors::answer_preflight(session, ctx).await;
                Ok(true)
            }
            Ok(Admission::ListModels) => {
                crate::admission::models::answer(session, ctx).await;
                Ok(true)
            }
            Err(e) => {
                respond::error(session, ctx, e).await;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let now = self.clock.monotonic();
        // The first attempt starts the provider's time; a failover's attempts are part of it.
        ctx.response.upstream_started.get_or_insert(now);
        failover::next_peer(ctx, &self.routes, millis(now)).map_err(|e| fail(ctx, e))
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let now = millis(self.clock.monotonic());
        let started = session.response_written().is_some();
        let retry = failover::on_error(ctx, &self.routes, true, "connect", now, started);
        e.set_retry(retry);
        e
    }

    /// Replaces Pingora's default, which never retries a POST: sluice holds the whole body in
    /// memory, so any request may go to another target until its first byte reaches the client.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        _client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        let now = millis(self.clock.monotonic());
        let started = session.response_written().is_some();
        let upstream_fault = e.esource() == &ErrorSource::Upstream;
        let reason = match e.etype() {
            ErrorType::ReadTimedout | ErrorType::WriteTimedout => "timeout",
            _ => "error",
        };
        let retry = failover::on_error(ctx, &self.routes, upstream_fault, reason, now, started);
        e.set_retry(retry);
        e
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let target = ctx
            .route
            .as_ref()
            .and_then(|r| ctx.upstream.target(&r.pool));
        let prepared = match (target, &ctx.upstream_model) {
            (Some(target), Some(model)) => {
                let org = ctx.key.as_ref().and_then(|k| ctx.snapshot.org(&k.org));
                let body_len = ctx.upstream_body.as_ref().map_or(0, Bytes::len);
                request::credential(&ctx.snapshot, org.map(|o| &**o), &target.provider).and_then(
                    |credential| {
                        request::prepare_request(
                            upstream,
                            target,
                            model,
                            body_len,
                            credential.as_ref(),
                        )
                    },
                )
            }
            _ => Err(GatewayError::Internal),
        };
        prepared.map_err(|e| fail(ctx, e))
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // The client's body was read (and maybe rewritten) during admission; the patched Pingora
        // calls this once with end_of_stream so we hand it over. A retry calls it again, so it is
        // cloned (a reference count), not taken.
        if end_of_stream {
            *body = ctx.upstream_body.clone();
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let now = millis(self.clock.monotonic());
        let started = session.response_written().is_some();
        if failover::on_status(ctx, &self.routes, upstream, now, started) {
            let mut e = Error::explain(
                ErrorType::HTTPStatus(upstream.status.as_u16()),
                "failover to another target",
            );
            e.set_retry(true);
            return Err(e);
        }
        ctx.status = upstream.status.as_u16();
        http1::before_proxied_response(session);
        let shape = ctx.api.filter(|a| a.reports_usage());
        if let (true, Some(shape)) = (upstream.status.is_success(), shape) {
            let sse = upstream
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/event-stream"));
            // A provider that ignores `accept-encoding: identity` is still metered, on the side.
            let gzip = upstream
                .headers
                .get(http::header::CONTENT_ENCODING)
                .is_some_and(|v| usage::is_gzip(v.as_bytes()));
            if sse {
                ctx.stream_in_flight = Some(StreamInFlight::start());
            }
            let strip = sse && ctx.strip_usage_chunk && !gzip;
            if strip {
                // One event will be cut out, so the provider's length (if any) would be wrong.
                upstream.remove_header(&http::header::CONTENT_LENGTH);
            }
            ctx.response.observer = Some(if gzip {
                UsageObserver::gzip(shape, sse)
            } else {
                UsageObserver::new(shape, sse, strip)
            });
        }
        respond::add_rate_headers(upstream, ctx);
        crate::admission::cors::replace_upstream_headers(upstream, ctx);
        if let Some(theirs) = upstream.remove_header(REQUEST_ID) {
            let _ = upstream.insert_header("x-upstream-request-id", theirs);
        }
        upstream
            .insert_header(REQUEST_ID, ctx.id.to_string())
            .map_err(|_| fail(ctx, GatewayError::Internal))
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<Duration>> {
        let total = ctx
            .route
            .as_ref()
            .and_then(|r| ctx.upstream.target(&r.pool))
            .map(|t| t.provider.timeouts.total);
        let now = self.clock.monotonic();
        ctx.response
            .on_chunk(body, end_of_stream, now, total, ctx.held.as_mut())
            .or_else(|TotalTimeExceeded| {
                Error::e_explain(ErrorType::ReadTimedout, "total upstream time exceeded")
            })?;
        Ok(None)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let client_gone = e.esource() == &ErrorSource::Downstream;
        let err = ctx
            .failure
            .take()
            .unwrap_or_else(|| GatewayError::from_proxy_error(e));
        let mut code = 0;
        let mut reusable = false;
        if !client_gone && session.response_written().is_none() {
            let (status, body) = err.render(ctx.family);
            if err.retry_after().is_some() {
                // Sluice refused the request itself (no upstream available): the answer
                // carries `retry-after`, and the record says rejected.
                ctx.rejected = Some(err.clone());
            }
            code = status;
            ctx.status = status;
            // A whole answer after a fully read body keeps the connection, as it said it would.
            reusable = respond::json(session, ctx, status, body).await && http1::reusable(session);
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: reusable,
        }
    }

    /// What Pingora's own error lines say about a request. Its default prints the whole URI, and
    /// a client may put its key in the query string; the path and the request id identify the
    /// request without it.
    fn request_summary(&self, session: &Session, ctx: &Ctx) -> String {
        let req = session.req_header();
        format!("{} {} (request {})", req.method, req.uri.path(), ctx.id)
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let status = session
            .response_written()
            .map_or(ctx.status, |r| r.status.as_u16());
        let record = metering::record(ctx, e, status, self.clock.monotonic());
        let used = metering::charged_tokens(ctx, &record);
        if let (Some(held), Some(org)) = (ctx.held.as_mut(), &record.org) {
            self.gov.finish(held, org, used, record.cost_micro_usd);
        }
        // Concurrency slots are released here, before the record is queued.
        ctx.held = None;
        ctx.stream_in_flight = None;
        self.metrics.finished(ctx, &record);
        self.sink.emit(record);
    }
}
