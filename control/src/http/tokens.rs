//! Org-admin tokens over HTTP (operators, admin token): created (the token is shown once),
//! listed, revoked. Each change is audited with the token's change.

use super::{ApiError, AppState, Caller, TokenDigest, ORG_TOKEN_PREFIX};
use crate::telemetry::DbOp;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use ring::rand::{SecureRandom, SystemRandom};
use sluice_wire::{CreatedOrgToken, NewOrgToken, OrgTokensAnswer};
use std::collections::BTreeMap;
use std::sync::Arc;

/// An org id or a token name: what the audit log and the records can show safely.
fn word(what: &str, text: &str) -> Result<(), ApiError> {
    super::identifier(what, text, 64, "_.@-")
}

/// `slc_org_` and 32 random bytes (256 bits) in unpadded base64url.
fn new_token() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ApiError::internal("the system random generator failed"))?;
    Ok(format!(
        "{ORG_TOKEN_PREFIX}{}",
        data_encoding::BASE64URL_NOPAD.encode(&bytes)
    ))
}

pub(super) async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(body): Json<NewOrgToken>,
) -> Result<Json<CreatedOrgToken>, ApiError> {
    word("org", &body.org)?;
    word("name", &body.name)?;
    let token = new_token()?;
    let audit = caller.action(
        "token.created",
        Some(format!("org {}", body.org)),
        Some(&body.name),
    );
    let info = state
        .store
        .create_org_token(
            &body.org,
            &body.name,
            &TokenDigest::new(&token).hex(),
            state.clock.now_ms(),
            audit,
        )
        .await
        .map_err(ApiError::db(DbOp::Review))?;
    tracing::info!(org = %info.org, id = %info.id, "org-admin token created");
    Ok(Json(CreatedOrgToken { token, info }))
}

pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Json<OrgTokensAnswer>, ApiError> {
    super::handlers::only(&params, &["org"])?;
    let tokens = state
        .store
        .org_tokens(params.get("org").map(String::as_str))
        .await
        .map_err(ApiError::db(DbOp::Review))?;
    Ok(Json(OrgTokensAnswer { tokens }))
}

pub(super) async fn revoke(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let audit = caller.action("token.revoked", Some(id.clone()), None);
    let revoked = state
        .store
        .revoke_org_token(&id, state.clock.now_ms(), audit)
        .await
        .map_err(ApiError::db(DbOp::Review))?;
    if revoked {
        tracing::info!(id = %id, "org-admin token revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no live token {id}"),
        ))
    }
}
