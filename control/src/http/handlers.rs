//! The read and admin endpoints: usage queries, export, spend feed, erasure, health, metrics.

use super::{ApiError, AppState, Caller, Viewer};
use crate::db::{query::add_totals, ExportFormat};
use crate::telemetry::{self, DbOp};
use crate::time::{day_start, month_start, parse_time};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use sluice_wire::{ErasureAnswer, GroupBy, SpendAnswer, UsageAnswer, UsageTotals};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio_stream::wrappers::ReceiverStream;

type Params = Query<BTreeMap<String, String>>;

/// Refuses parameters an endpoint does not know, so a typo (`group=`) is an error rather than
/// a silently different answer.
pub(super) fn only(params: &BTreeMap<String, String>, known: &[&str]) -> Result<(), ApiError> {
    match params.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(ApiError::bad_request(format!(
            "unknown parameter {k:?} (known: {})",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

/// `from`/`to` with their defaults: everything from the epoch to the end of time.
pub(super) fn range(params: &BTreeMap<String, String>) -> Result<(u64, u64), ApiError> {
    let get = |name: &str, default: u64| {
        params.get(name).map_or(Ok(default), |v| {
            parse_time(v).map_err(|e| ApiError::bad_request(format!("{name}: {e}")))
        })
    };
    let from = get("from", 0)?;
    let to = get("to", i64::MAX as u64)?.min(i64::MAX as u64);
    if from > to {
        return Err(ApiError::bad_request("from is after to"));
    }
    Ok((from, to))
}

pub(super) async fn usage(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(params): Params,
) -> Result<Json<UsageAnswer>, ApiError> {
    only(&params, &["org", "from", "to", "group_by"])?;
    let (from_ms, to_ms) = range(&params)?;
    let mut group_by: Vec<GroupBy> = Vec::new();
    for name in params
        .get("group_by")
        .map(String::as_str)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let g: GroupBy = name.parse().map_err(ApiError::bad_request)?;
        if !group_by.contains(&g) {
            group_by.push(g);
        }
    }
    let mut org = params.get("org").filter(|o| !o.is_empty()).cloned();
    // An org-admin reads its own org, whether or not it names it.
    if let Viewer::OrgAdmin { org: own, .. } = &caller.viewer {
        caller.may_read(org.as_deref().unwrap_or(own))?;
        org = Some(own.clone());
    }
    let groups = state
        .store
        .usage(org.as_deref(), from_ms, to_ms, &group_by)
        .await
        .map_err(ApiError::db(DbOp::Usage))?;
    let mut total = UsageTotals::default();
    for g in &groups {
        add_totals(&mut total, &g.totals);
    }
    Ok(Json(UsageAnswer {
        org,
        from_ms,
        to_ms,
        group_by,
        groups,
        total,
    }))
}

pub(super) async fn export(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(org): Path<String>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    caller.may_read(&org)?;
    only(&params, &["format", "from", "to"])?;
    let (from_ms, to_ms) = range(&params)?;
    let format = match params.get("format").map(String::as_str) {
        None => ExportFormat::Jsonl,
        Some(f) => ExportFormat::parse(f)
            .ok_or_else(|| ApiError::bad_request(format!("format {f:?} is not csv or jsonl")))?,
    };
    let detail = format!("{} from {from_ms} to {to_ms}", format.name());
    let audit = caller.action("org.export", Some(org.clone()), Some(&detail));
    state
        .store
        .audit(state.clock.now_ms(), audit)
        .await
        .map_err(ApiError::db(DbOp::Review))?;
    let chunks = state.store.export(org, from_ms, to_ms, format);
    Ok((
        [(header::CONTENT_TYPE, format.content_type())],
        Body::from_stream(ReceiverStream::new(chunks)),
    )
        .into_response())
}

pub(super) async fn spend(
    State(state): State<Arc<AppState>>,
) -> Result<Json<SpendAnswer>, ApiError> {
    let now = state.clock.now_ms();
    let (day, month) = (day_start(now), month_start(now));
    let orgs = state
        .store
        .spend(day, month)
        .await
        .map_err(ApiError::db(DbOp::Spend))?;
    let suspended = state
        .store
        .suspensions()
        .await
        .map_err(ApiError::db(DbOp::Spend))?;
    Ok(Json(SpendAnswer {
        as_of_ms: now,
        day_start_ms: day,
        month_start_ms: month,
        orgs,
        suspended,
    }))
}

pub(super) async fn erase(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(org): Path<String>,
) -> Result<Json<ErasureAnswer>, ApiError> {
    // Audited first: an erasure that then fails was still attempted.
    state
        .store
        .audit(
            state.clock.now_ms(),
            caller.action("org.erase", Some(org.clone()), None),
        )
        .await
        .map_err(ApiError::db(DbOp::Review))?;
    let answer = state
        .store
        .erase_org(&org)
        .await
        .map_err(ApiError::db(DbOp::Erase))?;
    telemetry::count_erasure();
    tracing::info!(
        org = %answer.org,
        records = answer.records,
        hourly = answer.hourly_aggregates,
        daily = answer.daily_aggregates,
        "org erased"
    );
    Ok(Json(answer))
}

pub(super) async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => {
            telemetry::count_db_error(DbOp::Health);
            tracing::warn!("health check failed: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
        }
    }
}

/// The Prometheus text exposition format.
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(super) async fn metrics() -> Response {
    match telemetry::render() {
        Some(text) => ([(header::CONTENT_TYPE, PROMETHEUS)], text).into_response(),
        // Only a server started without `server::run` (the in-process benchmark) has none.
        None => (StatusCode::SERVICE_UNAVAILABLE, "no metrics recorder\n").into_response(),
    }
}
