//! The HTTP API: routes, shared state, bearer-token checks and JSON errors.

mod handlers;
mod ingest;
mod review;
mod tokens;

use crate::clock::Clock;
use crate::db::review::AuditAction;
use crate::db::Store;
use crate::telemetry::{self, DbOp};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use ring::digest::{digest, SHA256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

pub use ingest::MAX_RECORDS_PER_BATCH;

/// A token kept only as its SHA-256 digest, compared in constant time. Hashing first makes the
/// comparison independent of the presented token's length too.
#[derive(Clone)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub fn new(token: &str) -> Self {
        let mut out = [0u8; 32];
        out.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
        Self(out)
    }

    fn matches(&self, presented: &str) -> bool {
        Self::new(presented).0.ct_eq(&self.0).into()
    }

    /// The digest in lowercase hex, as org-admin tokens are stored.
    pub fn hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.0)
    }
}

impl std::fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenDigest(..)")
    }
}

/// What every handler shares.
pub struct AppState {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub ingest_token: TokenDigest,
    pub admin_token: TokenDigest,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.store)
            .finish()
    }
}

/// Who the bearer token says is calling (set by the token gate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    /// The admin token: every org, every action.
    Operator,
    /// An org-admin token: reads its own org's usage and export, nothing else.
    OrgAdmin { org: String, name: String },
    /// The ingest token: the proxies.
    Proxy,
}

/// Who is calling, for access checks and the audit log: the token's viewer, and the peer
/// address (when the server was started with it).
#[derive(Debug, Clone)]
pub struct Caller {
    pub viewer: Viewer,
    pub ip: Option<std::net::IpAddr>,
}

impl Caller {
    /// Refuses an org-admin reading another org than its own.
    fn may_read(&self, org: &str) -> Result<(), ApiError> {
        match &self.viewer {
            Viewer::OrgAdmin { org: own, .. } if own != org => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("this token reads org {own} only"),
            )),
            _ => Ok(()),
        }
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let info = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>();
        let viewer =
            parts.extensions.get::<Viewer>().cloned().ok_or_else(|| {
                ApiError::internal("a route without the token gate asked who called")
            })?;
        Ok(Self {
            viewer,
            ip: info.map(|c| c.0.ip().to_canonical()),
        })
    }
}

impl Caller {
    /// The audit action `action` by this caller: `operator` (the admin token), or
    /// `org-admin ORG/NAME`.
    pub(crate) fn action(
        &self,
        action: &'static str,
        subject: Option<String>,
        detail: Option<&str>,
    ) -> AuditAction {
        let actor = match &self.viewer {
            Viewer::Operator => "operator".to_string(),
            Viewer::OrgAdmin { org, name } => format!("org-admin {org}/{name}"),
            Viewer::Proxy => "proxy".to_string(),
        };
        AuditAction {
            actor,
            action,
            subject,
            detail: detail.map(str::to_string),
            source_ip: self.ip.map(|ip| ip.to_string()),
        }
    }
}

/// Refuses `text` unless it is 1 to `max` ASCII letters, digits and characters of `extra`: the
/// ids and names the API stores, audits and shows.
fn identifier(what: &str, text: &str, max: usize, extra: &str) -> Result<(), ApiError> {
    let ok = !text.is_empty()
        && text.len() <= max
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.as_bytes().contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{what} must be 1 to {max} characters of [A-Za-z0-9{extra}]"
        )))
    }
}

/// Which token a route accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Ingest,
    Admin,
    /// The spend feed: proxies poll it with their ingest token, operators with the admin one.
    IngestOrAdmin,
    /// Usage and export: operators, or an org-admin token for its own org.
    AdminOrOrg,
}

/// An error answer: a status and a JSON `{"error": message}` body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// A failed store call of `op`: counted under `sluice_control_db_errors_total{op}`, logged,
    /// and answered as an internal error.
    fn db(op: DbOp) -> impl FnOnce(crate::db::DbError) -> Self {
        move |e| {
            telemetry::count_db_error(op);
            Self::internal(e)
        }
    }

    fn internal(e: impl std::fmt::Display) -> Self {
        // The detail goes to the log, not to the caller.
        tracing::error!("internal error: {e}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error (see the ledger's log)",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.message }));
        if self.status == StatusCode::UNAUTHORIZED {
            (self.status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
        } else {
            (self.status, body).into_response()
        }
    }
}

/// Prefix of org-admin tokens: only such a token is looked up in the database.
pub const ORG_TOKEN_PREFIX: &str = "slc_org_";

async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    access: Access,
) -> Result<Viewer, ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(presented) = presented else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing bearer token (Authorization: Bearer …)",
        ));
    };
    // Both comparisons always run, so timing does not tell which token a guess was close to.
    let ingest = state.ingest_token.matches(presented);
    let admin = state.admin_token.matches(presented);
    let viewer = match access {
        Access::Ingest => ingest.then_some(Viewer::Proxy),
        Access::Admin | Access::AdminOrOrg if admin => Some(Viewer::Operator),
        Access::Admin => None,
        Access::IngestOrAdmin if admin => Some(Viewer::Operator),
        Access::IngestOrAdmin => ingest.then_some(Viewer::Proxy),
        Access::AdminOrOrg if presented.starts_with(ORG_TOKEN_PREFIX) => {
            // Looked up by digest: a guess cannot be timed against a stored value.
            let digest = TokenDigest::new(presented).hex();
            state
                .store
                .org_token_by_digest(&digest)
                .await
                .map_err(ApiError::db(DbOp::Review))?
                .map(|t| Viewer::OrgAdmin {
                    org: t.org,
                    name: t.name,
                })
        }
        Access::AdminOrOrg => None,
    };
    viewer.ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "invalid token for this endpoint"))
}

/// Checks the token before any extractor runs, so an unauthenticated body is never read, and
/// hands the caller's [`Viewer`] to the handler.
async fn gate(
    State((state, access)): State<(Arc<AppState>, Access)>,
    mut request: Request,
    next: Next,
) -> Response {
    match authorize(&state, request.headers(), access).await {
        Ok(viewer) => {
            request.extensions_mut().insert(viewer);
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}

/// The ledger's routes. `max_body_bytes` caps an ingest body (413 beyond).
pub fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    let guard = |access| middleware::from_fn_with_state((state.clone(), access), gate);
    let ingest = Router::new()
        .route("/v1/events", post(ingest::ingest))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .route_layer(guard(Access::Ingest));
    let spend = Router::new()
        .route("/v1/spend", get(handlers::spend))
        .route_layer(guard(Access::IngestOrAdmin));
    let org_readable = Router::new()
        .route("/v1/usage", get(handlers::usage))
        .route("/v1/orgs/{org}/export", get(handlers::export))
        .route_layer(guard(Access::AdminOrOrg));
    let admin = Router::new()
        .route("/v1/orgs/{org}", delete(handlers::erase))
        .route("/v1/org-tokens", post(tokens::create).get(tokens::list))
        .route("/v1/org-tokens/{id}", delete(tokens::revoke))
        .route("/v1/suspensions", get(review::list))
        .route(
            "/v1/suspensions/{kind}/{subject}",
            put(review::suspend).delete(review::lift),
        )
        .route("/v1/audit", get(review::audit))
        .route("/v1/flags", get(review::flags))
        .route("/v1/flags/{id}/review", post(review::review_flag))
        .route_layer(guard(Access::Admin));
    Router::new()
        .merge(ingest)
        .merge(spend)
        .merge(org_readable)
        .merge(admin)
        .route("/healthz", get(handlers::healthz))
        // No token, like /healthz: both are operational endpoints for the operator's probes and
        // scraper (the proxy's admin /metrics is open too). The page holds no tenant data (its
        // labels are fixed enumerations, never an org, key or record content), and the listener
        // is loopback unless the operator binds it wider.
        .route("/metrics", get(handlers::metrics))
        .with_state(state)
}
