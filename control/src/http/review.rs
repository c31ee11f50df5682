//! Abuse review over HTTP (operators, admin token): flags listed and reviewed (dismissed, or a
//! key or org suspended for them), suspensions set, lifted and listed, and the audit log. Every
//! change is audited.

use super::{ApiError, AppState, Caller};
use crate::telemetry::DbOp;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use sluice_wire::{
    AuditAnswer, Flag, FlagKind, FlagReview, FlagStatus, FlagsAnswer, ReviewAction, SubjectKind,
    SuspendRequest, SuspendTarget, Suspension, SuspensionsAnswer,
};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The most audit entries one answer holds; page with `from` (the last entry's `time_ms`).
const MAX_AUDIT_ENTRIES: u32 = 10_000;

fn subject(kind: &str, subject: &str) -> Result<SubjectKind, ApiError> {
    let kind: SubjectKind = kind.parse().map_err(ApiError::bad_request)?;
    super::identifier("subject (a key id or an org id)", subject, 128, "_.:-")?;
    Ok(kind)
}

pub(super) async fn suspend(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((kind, id)): Path<(String, String)>,
    Json(body): Json<SuspendRequest>,
) -> Result<Json<Suspension>, ApiError> {
    let kind = subject(&kind, &id)?;
    if body.reason.trim().is_empty() {
        return Err(ApiError::bad_request("reason must say why (it is audited)"));
    }
    let audit = caller.action(
        "suspension.set",
        Some(format!("{kind} {id}")),
        Some(&body.reason),
    );
    let s = state
        .store
        .suspend(kind, &id, body.reason.trim(), state.clock.now_ms(), audit)
        .await
        .map_err(ApiError::db(DbOp::Review))?;
    tracing::info!(kind = %kind, subject = %id, "suspended");
    Ok(Json(s))
}

pub(super) async fn lift(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((kind, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let kind = subject(&kind, &id)?;
    let audit = caller.action("suspension.lifted", Some(format!("{kind} {id}")), None);
    let lifted = state
        .store
        .lift(kind, &id, state.clock.now_ms(), audit)
        .await
        .map_err(ApiError::db(DbOp::Review))?;
    if lifted {
        tracing::info!(kind = %kind, subject = %id, "suspension lifted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("{kind} {id} is not suspended"),
        ))
    }
}

pub(super) async fn list(
    State(state): State<Arc<AppState>>,
) -> Result<Json<SuspensionsAnswer>, ApiError> {
    let suspensions = state
        .store
        .suspensions()
        .await
        .map_err(ApiError::db(DbOp::Review))?;
    Ok(Json(SuspensionsAnswer { suspensions }))
}

pub(super) async fn audit(
    State(state): State<Arc<AppState>>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Json<AuditAnswer>, ApiError> {
    super::handlers::only(&params, &["from", "to", "limit"])?;
    let (from_ms, to_ms) = super::handlers::range(&params)?;
    let limit = match params.get("limit") {
        None => MAX_AUDIT_ENTRIES,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_AUDIT_ENTRIES).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!("limit must be 1 to {MAX_AUDIT_ENTRIES}"))
            })?,
    };
    let entries = state
        .store
        .audit_log(from_ms, to_ms, limit)
        .await
        .map_err(ApiError::db(DbOp::Review))?;
    Ok(Json(AuditAnswer { entries }))
}

/// The most flags one answer holds.
const MAX_FLAGS: u32 = 1_000;

pub(super) async fn flags(
    State(state): State<Arc<AppState>>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Json<FlagsAnswer>, ApiError> {
    super::handlers::only(&params, &["status"])?;
    let status = match params.get("status").map(String::as_str) {
        None => Some(FlagStatus::Open),
        Some("all") => None,
        Some(s) => Some(s.parse().map_err(ApiError::bad_request)?),
    };
    let flags = state
        .store
        .flags(status, MAX_FLAGS)
        .await
        .map_err(ApiError::db(DbOp::Review))?;
    Ok(Json(FlagsAnswer { flags }))
}

/// Dismisses a flag, or suspends its key or org (an IP flag names which one), and audits it.
pub(super) async fn review_flag(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(review): Json<FlagReview>,
) -> Result<Json<Flag>, ApiError> {
    let flag = load_flag(&state, &id).await?;
    if flag.status != FlagStatus::Open {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("flag {id} was already reviewed ({})", flag.status),
        ));
    }
    let now = state.clock.now_ms();
    let note = review
        .note
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    let status = match review.action {
        ReviewAction::Dismiss => {
            if review.suspend.is_some() {
                return Err(ApiError::bad_request("a dismissal suspends nothing"));
            }
            FlagStatus::Dismissed
        }
        ReviewAction::Suspend => {
            let target = match (review.suspend, flag.kind) {
                (Some(t), _) => t,
                (None, FlagKind::Key) => SuspendTarget { kind: SubjectKind::Key, subject: flag.subject.clone() },
                (None, FlagKind::Org) => SuspendTarget { kind: SubjectKind::Org, subject: flag.subject.clone() },
                (None, FlagKind::Ip) => {
                    return Err(ApiError::bad_request(
                        "an IP flag names the key or org to suspend: \"suspend\": {\"kind\", \"subject\"}",
                    ))
                }
            };
            let kind = subject(target.kind.as_str(), &target.subject)?;
            let reason = format!(
                "flag {id}: {} {} {} in the hour from {} (bar {:.0}){}",
                flag.value,
                flag.metric,
                flag.kind,
                flag.hour_ms,
                flag.bar,
                note.map(|n| format!("; {n}")).unwrap_or_default()
            );
            let audit = caller.action(
                "suspension.set",
                Some(format!("{kind} {}", target.subject)),
                Some(&reason),
            );
            state
                .store
                .suspend(kind, &target.subject, &reason, now, audit)
                .await
                .map_err(ApiError::db(DbOp::Review))?;
            FlagStatus::Suspended
        }
    };
    let closed = state
        .store
        .close_flag(&id, status, note, now)
        .await
        .map_err(ApiError::db(DbOp::Review))?;
    if !closed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("flag {id} was reviewed meanwhile"),
        ));
    }
    let detail = format!(
        "{status}{}",
        note.map(|n| format!(": {n}")).unwrap_or_default()
    );
    state
        .store
        .audit(
            now,
            caller.action(
                "flag.reviewed",
                Some(format!("{} {}", flag.kind, flag.subject)),
                Some(&detail),
            ),
        )
        .await
        .map_err(ApiError::db(DbOp::Review))?;
    let _ = crate::abuse::publish_open(&state.store).await;
    Ok(Json(load_flag(&state, &id).await?))
}

async fn load_flag(state: &AppState, id: &str) -> Result<Flag, ApiError> {
    state
        .store
        .flag(id)
        .await
        .map_err(ApiError::db(DbOp::Review))?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no flag {id}")))
}
