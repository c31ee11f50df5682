//! Per-request series, recorded once per finished request (from `logging`) through handles that
//! a cache keyed by the request's label values resolves once and then reuses: a warm request
//! formats no metric key and allocates nothing.
//!
//! Every label value comes from the configuration (org ids, model entry names, provider names)
//! or from a closed set (surface, status class, outcome); a client's string never becomes a
//! label, so the number of series is bounded by the config (see ARCHITECTURE.md, "Metrics").

use super::names;
use crate::api::{Api, Family};
use crate::ctx::Ctx;
use crate::errors::GatewayError;
use crate::governance::limits::{LimitKind, ScopeKind};
use crate::metering::record::{Outcome, UsageRecord};
use dashmap::DashMap;
use metrics::{Counter, Histogram, Label};
use std::sync::{Arc, LazyLock, OnceLock};

/// The label value for what a request never got (an org, a route, a provider).
const UNKNOWN: &str = "unknown";

/// The label values of one finished request; every per-request series is named by a subset.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    /// `None` when `[metrics] org_label = false`; `Some("unknown")` before authentication.
    org: Option<Arc<str>>,
    route: Option<Arc<str>>,
    response_model: Option<Arc<str>>,
    provider: Option<Arc<str>>,
    family: Family,
    api: Option<Api>,
    status_class: &'static str,
    outcome: Outcome,
}

/// The handles one [`Key`] records through. Series a request of this kind may never record
/// (time to first token of an embedding, say) are registered on first use, so a scrape shows
/// no empty histograms for them.
#[derive(Debug)]
struct Handles {
    org_route: Vec<Label>,
    gen_ai: Vec<Label>,
    provider: Option<Arc<str>>,
    api: &'static str,
    requests: Counter,
    server_duration: OnceLock<Histogram>,
    ttft: OnceLock<Histogram>,
    time_per_token: OnceLock<Histogram>,
    client_duration: OnceLock<Histogram>,
    token_usage: [OnceLock<Histogram>; 2],
    tokens: [OnceLock<Counter>; 5],
    cost: OnceLock<Counter>,
    overhead: OnceLock<Histogram>,
    upstream: OnceLock<Histogram>,
    upstream_errors: OnceLock<Counter>,
}

/// The `gen_ai.token.type` values, in the order of `Handles::token_usage`.
const GEN_AI_TOKEN_TYPES: [&str; 2] = ["input", "output"];
/// The `type` values of `sluice_tokens_total`, in the order of `Handles::tokens`.
const TOKEN_TYPES: [&str; 5] = ["input", "output", "cached", "cache_write", "reasoning"];

/// The per-request series of one process, shared by every worker thread.
#[derive(Debug, Default)]
pub struct RequestMetrics {
    handles: DashMap<Key, Arc<Handles>>,
    rejections: OnceLock<Vec<((LimitKind, ScopeKind), Counter)>>,
    budget_rejections: OnceLock<Counter>,
}

impl RequestMetrics {
    /// Records a finished request (its record is final: counts, timings, outcome).
    pub fn finished(&self, ctx: &Ctx, record: &UsageRecord) {
        let settings = ctx.snapshot.metrics;
        if !settings.requests {
            return;
        }
        if let Some(rejected) = &ctx.rejected {
            self.count_rejection(rejected);
        }
        let key = key(ctx, record, settings.org_label);
        let handles = match self.handles.get(&key) {
            Some(found) => found.clone(),
            None => self
                .handles
                .entry(key.clone())
                .or_insert_with(|| Arc::new(Handles::new(&key)))
                .clone(),
        };
        handles.record(ctx, record);
    }

    fn count_rejection(&self, rejected: &GatewayError) {
        match rejected {
            GatewayError::RateLimited {
                kind, scope_kind, ..
            } => {
                let all = self.rejections.get_or_init(rejection_counters);
                if let Some((_, counter)) = all.iter().find(|(k, _)| *k == (*kind, *scope_kind)) {
                    counter.increment(1);
                }
            }
            GatewayError::OverBudget { .. } => self
                .budget_rejections
                .get_or_init(budget_counter)
                .increment(1),
            _ => {}
        }
    }
}

/// Publishes the limit-rejection series at zero, so a dashboard's 429 panel has every kind
/// before the first refusal.
pub fn publish_rejections_at_zero() {
    for (_, counter) in rejection_counters() {
        counter.increment(0);
    }
    budget_counter().increment(0);
}

fn rejection_counters() -> Vec<((LimitKind, ScopeKind), Counter)> {
    let mut all = Vec::new();
    for kind in LimitKind::ALL {
        for scope in ScopeKind::ALL {
            let counter = metrics::counter!(
                names::LIMIT_REJECTIONS,
                "kind" => kind.label(),
                "scope" => scope.label()
            );
            all.push(((kind, scope), counter));
        }
    }
    all
}

fn budget_counter() -> Counter {
    metrics::counter!(names::LIMIT_REJECTIONS, "kind" => "budget", "scope" => "org")
}

static UNKNOWN_ARC: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(UNKNOWN));

fn key(ctx: &Ctx, record: &UsageRecord, org_label: bool) -> Key {
    let route = ctx.route.as_deref();
    // The target that served (or the route's first, when none was tried): config names only.
    let target = route.map(|r| ctx.upstream.target(&r.pool).unwrap_or(r.pool.primary()));
    Key {
        org: org_label.then(|| record.org.clone().unwrap_or_else(|| UNKNOWN_ARC.clone())),
        route: route.map(|r| r.name.clone()),
        response_model: route
            .zip(target)
            .map(|(r, t)| t.upstream_model.clone().unwrap_or_else(|| r.name.clone())),
        provider: target.map(|t| t.provider.name.clone()),
        family: route.map_or(ctx.family, |r| r.pool.family),
        api: ctx.api,
        status_class: status_class(record.status),
        outcome: record.outcome,
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "none",
    }
}

/// `gen_ai.operation.name` of a surface; `None` for what is not a model operation (the model
/// list, which sluice answers itself).
fn operation(api: Api) -> Option<&'static str> {
    match api {
        Api::ChatCompletions | Api::Responses | Api::Messages => Some("chat"),
        Api::Completions => Some("text_completion"),
        Api::Embeddings => Some("embeddings"),
        Api::CountTokens => Some("count_tokens"),
        Api::Models => None,
    }
}

fn provider_name(family: Family) -> &'static str {
    match family {
        Family::OpenAi => "openai",
        Family::Anthropic => "anthropic",
    }
}

fn label(name: &'static str, value: &str) -> Label {
    Label::new(name, value.to_string())
}

impl Handles {
    fn new(key: &Key) -> Self {
        let route = key.route.as_deref().unwrap_or(UNKNOWN);
        let api = key.api.map_or(UNKNOWN, Api::name);
        let mut org_route = Vec::with_capacity(2);
        if let Some(org) = &key.org {
            org_route.push(label("org", org));
        }
        org_route.push(label("route", route));
        let mut own = org_route.clone();
        own.push(label("provider", key.provider.as_deref().unwrap_or("none")));
        own.push(label("api", api));
        own.push(Label::from_static_parts("status_class", key.status_class));
        own.push(Label::from_static_parts("outcome", key.outcome.as_str()));
        let mut gen_ai = Vec::new();
        if let Some(operation) = key.api.and_then(operation) {
            gen_ai.push(Label::from_static_parts("gen_ai_operation_name", operation));
            gen_ai.push(Label::from_static_parts(
                "gen_ai_provider_name",
                provider_name(key.family),
            ));
            gen_ai.push(label("gen_ai_request_model", route));
            gen_ai.push(label(
                "gen_ai_response_model",
                key.response_model.as_deref().unwrap_or(UNKNOWN),
            ));
            if key.outcome != Outcome::Ok {
                gen_ai.push(Label::from_static_parts("error_type", key.outcome.as_str()));
            }
        }
        Self {
            requests: metrics::counter!(names::REQUESTS, own),
            org_route,
            gen_ai,
            provider: key.provider.clone(),
            api,
            server_duration: OnceLock::new(),
            ttft: OnceLock::new(),
            time_per_token: OnceLock::new(),
            client_duration: OnceLock::new(),
            token_usage: Default::default(),
            tokens: Default::default(),
            cost: OnceLock::new(),
            overhead: OnceLock::new(),
            upstream: OnceLock::new(),
            upstream_errors: OnceLock::new(),
        }
    }

    fn gen_ai_histogram<'a>(
        &'a self,
        cell: &'a OnceLock<Histogram>,
        name: &'static str,
    ) -> Option<&'a Histogram> {
        (!self.gen_ai.is_empty())
            .then(|| cell.get_or_init(|| metrics::histogram!(name, self.gen_ai.clone())))
    }

    fn record(&self, ctx: &Ctx, r: &UsageRecord) {
        let secs = |ms: f64| ms.max(0.0) / 1e3;
        self.requests.increment(1);
        if let Some(h) = self.gen_ai_histogram(&self.server_duration, names::SERVER_DURATION) {
            h.record(secs(r.total_ms));
        }
        if let Some(upstream) = r.upstream_ms {
            if let Some(h) = self.gen_ai_histogram(&self.client_duration, names::CLIENT_DURATION) {
                h.record(secs(upstream));
            }
            let provider = self.provider.as_deref().unwrap_or("none").to_string();
            self.upstream
                .get_or_init(
                    || metrics::histogram!(names::UPSTREAM_DURATION, "provider" => provider),
                )
                .record(secs(upstream));
            self.overhead
                .get_or_init(|| metrics::histogram!(names::GATEWAY_OVERHEAD, "api" => self.api))
                .record(secs(r.total_ms - upstream));
        }
        if r.outcome == Outcome::Ok && ctx.stream {
            if let Some(ttft) = r.ttft_ms {
                if let Some(h) = self.gen_ai_histogram(&self.ttft, names::TIME_TO_FIRST_TOKEN) {
                    h.record(secs(ttft));
                }
                if r.output_tokens > 1 {
                    if let Some(h) =
                        self.gen_ai_histogram(&self.time_per_token, names::TIME_PER_OUTPUT_TOKEN)
                    {
                        // Tokens after the first, over the time after the first.
                        h.record(secs(r.total_ms - ttft) / (r.output_tokens - 1) as f64);
                    }
                }
            }
        }
        self.record_usage(ctx, r);
        let error_kind = match r.outcome {
            Outcome::UpstreamUnreachable => Some("connect"),
            Outcome::UpstreamTimeout => Some("timeout"),
            _ => None,
        };
        if let (Some(kind), Some(provider)) = (error_kind, &self.provider) {
            let provider = provider.to_string();
            self.upstream_errors
                .get_or_init(|| {
                    metrics::counter!(names::UPSTREAM_ERRORS, "provider" => provider, "kind" => kind)
                })
                .increment(1);
        }
    }

    /// Tokens and cost, as billed: `count_tokens` measures a prompt but is never billed, so it
    /// adds nothing here (its count is in the usage record).
    fn record_usage(&self, ctx: &Ctx, r: &UsageRecord) {
        if ctx.api == Some(Api::CountTokens) {
            return;
        }
        let counts = [
            r.input_tokens,
            r.output_tokens,
            r.cached_tokens,
            r.cache_write_tokens,
            r.reasoning_tokens,
        ];
        for ((cell, kind), count) in self.tokens.iter().zip(TOKEN_TYPES).zip(counts) {
            if count > 0 {
                cell.get_or_init(|| {
                    let mut labels = self.org_route.clone();
                    labels.push(Label::from_static_parts("type", kind));
                    metrics::counter!(names::TOKENS, labels)
                })
                .increment(count);
            }
        }
        if r.cost_micro_usd > 0 {
            self.cost
                .get_or_init(|| metrics::counter!(names::COST, self.org_route.clone()))
                .increment(r.cost_micro_usd);
        }
        if self.gen_ai.is_empty() || (r.input_tokens == 0 && r.output_tokens == 0) {
            return;
        }
        for ((cell, kind), count) in self
            .token_usage
            .iter()
            .zip(GEN_AI_TOKEN_TYPES)
            .zip([r.input_tokens, r.output_tokens])
        {
            cell.get_or_init(|| {
                let mut labels = self.gen_ai.clone();
                labels.push(Label::from_static_parts("gen_ai_token_type", kind));
                metrics::histogram!(names::TOKEN_USAGE, labels)
            })
            .record(count as f64);
        }
    }
}
