//! Gateway errors, and their one mapping to HTTP answers in the caller's API shape.
//!
//! Every refusal sluice itself makes is a [`GatewayError`]; [`GatewayError::render`] is the only
//! place that turns one into a status and a body (the "rescue" edge). Messages never contain a
//! secret: only model names, paths and limits.

use crate::api::Family;
use crate::governance::limits::{LimitKind, ScopeKind};
use bytes::Bytes;
use pingora::{Error as PError, ErrorType};
use std::fmt;
use std::time::Duration;

/// OpenAI's `error.type` for rate limits names the limited resource.
fn openai_limit_type(kind: LimitKind) -> &'static str {
    match kind {
        LimitKind::Requests | LimitKind::Concurrency => "requests",
        LimitKind::Tokens => "tokens",
    }
}

/// A wait as people read it: `20ms`, `6s`, `1m30s`, `5h0m0s`.
struct RetryText(Duration);

impl fmt::Display for RetryText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::text::go_duration(self.0))
    }
}

/// Says what is suspended and what to do, never why (the reason is for operators).
fn suspended_text(kind: sluice_wire::SubjectKind) -> &'static str {
    match kind {
        sluice_wire::SubjectKind::Key => {
            "this API key is suspended pending review; contact the operator of this gateway"
        }
        sluice_wire::SubjectKind::Org => {
            "this API key's organization is suspended pending review; contact the operator of \
             this gateway"
        }
    }
}

/// How long an overloaded proxy asks clients to wait: connections free up within seconds (the
/// header and idle deadlines bound them), so a short wait spreads the retries.
pub const OVERLOAD_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    InvalidBody(String),
    #[error("you must provide an API key, in 'Authorization: Bearer <key>' or 'x-api-key'")]
    MissingKey,
    #[error("incorrect API key provided")]
    InvalidKey,
    #[error("this API key has expired")]
    KeyExpired,
    /// An operator suspended the key, or its org, pending review (the ledger's feed says so).
    #[error("{}", suspended_text(*.0))]
    Suspended(sluice_wire::SubjectKind),
    #[error("this API key may not use the model `{0}`")]
    ModelNotAllowed(String),
    #[error("the model `{0}` does not exist or you do not have access to it")]
    UnknownModel(String),
    #[error("the model `{model}` is served through {wanted}, not this endpoint")]
    WrongSurface { model: String, wanted: &'static str },
    #[error("unknown path {0}")]
    UnknownPath(String),
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("request body is larger than the limit of {0} bytes")]
    BodyTooLarge(usize),
    /// The request asks for more output than its model allows (`max_tokens` and its aliases).
    #[error("max_tokens is too large: {asked}. The model `{model}` supports at most {max} output tokens")]
    OutputTooLarge { model: String, asked: u64, max: u64 },
    /// The request body did not arrive within `server.connections.body_timeout`.
    #[error("the request body did not arrive within {}", RetryText(*.0))]
    BodyTimeout(Duration),
    /// The request header did not arrive within `server.connections.header_timeout`.
    #[error("the request header did not arrive in time")]
    HeaderTimeout,
    /// A request Pingora could not parse (bad framing, a header too large, …); the text says
    /// which rule, never what was sent.
    #[error("{0}")]
    MalformedRequest(&'static str),
    #[error("an HTTP/1.1 request must carry a Host header")]
    MissingHost,
    #[error("the expectation {0:?} is not supported (only 100-continue is)")]
    ExpectationFailed(String),
    /// Too many open client connections: the answer before resources run out.
    #[error("sluice is overloaded ({0}); please retry shortly")]
    Overloaded(&'static str),
    /// A rate or concurrency limit refused the request; `scope` and `limit` are for people
    /// (`org acme`, `600/min`), `retry_after` becomes the retry headers.
    #[error("rate limit reached for {kind} ({scope}: limit {limit}); please retry after {}", RetryText(*retry_after))]
    RateLimited {
        kind: LimitKind,
        /// Which kind of scope refused (for metrics; `scope` names it for people).
        scope_kind: ScopeKind,
        scope: String,
        limit: String,
        retry_after: Duration,
    },
    #[error("org {org} has reached its {period} budget of {cap}; it resets in {}", RetryText(*retry_after))]
    OverBudget {
        org: String,
        period: &'static str,
        cap: String,
        retry_after: Duration,
    },
    /// The org's region has no target for the model: refused, never served elsewhere.
    #[error("the model `{model}` is not served in your data region ({regions})")]
    OutsideRegion { model: String, regions: String },
    /// Every target the request may use is ejected or cooling down.
    #[error("no upstream for the model `{model}` is available right now; please retry after {}", RetryText(*retry_after))]
    NoUpstream {
        model: String,
        retry_after: Duration,
    },
    /// The shared limits (Redis) cannot be reached and the org's policy is `fail_closed`.
    #[error("rate limits cannot be checked right now; please retry after {}", RetryText(*retry_after))]
    LimitsUnavailable { retry_after: Duration },
    #[error("the upstream provider could not be reached")]
    UpstreamConnect,
    #[error("the upstream provider did not answer in time")]
    UpstreamTimeout,
    #[error("the upstream provider sent an invalid response")]
    UpstreamProtocol,
    #[error("internal gateway error")]
    Internal,
}

impl GatewayError {
    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidBody(_)
            | Self::WrongSurface { .. }
            | Self::MalformedRequest(_)
            | Self::MissingHost
            | Self::OutputTooLarge { .. } => 400,
            Self::BodyTimeout(_) | Self::HeaderTimeout => 408,
            Self::ExpectationFailed(_) => 417,
            Self::Overloaded(_) => 503,
            Self::MissingKey | Self::InvalidKey => 401,
            Self::KeyExpired
            | Self::Suspended(_)
            | Self::ModelNotAllowed(_)
            | Self::OutsideRegion { .. } => 403,
            Self::NoUpstream { .. } | Self::LimitsUnavailable { .. } => 503,
            Self::UnknownModel(_) | Self::UnknownPath(_) => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::BodyTooLarge(_) => 413,
            Self::RateLimited { .. } | Self::OverBudget { .. } => 429,
            Self::UpstreamConnect | Self::UpstreamProtocol => 502,
            Self::UpstreamTimeout => 504,
            Self::Internal => 500,
        }
    }

    /// OpenAI's `error.type` and `error.code`.
    fn openai_kind(&self) -> (&'static str, Option<&'static str>) {
        match self {
            Self::InvalidBody(_) | Self::WrongSurface { .. } => ("invalid_request_error", None),
            Self::OutputTooLarge { .. } => ("invalid_request_error", Some("invalid_value")),
            Self::MissingKey => ("invalid_request_error", Some("missing_api_key")),
            Self::InvalidKey => ("invalid_request_error", Some("invalid_api_key")),
            Self::KeyExpired => ("invalid_request_error", Some("api_key_expired")),
            Self::Suspended(sluice_wire::SubjectKind::Key) => {
                ("permission_error", Some("api_key_suspended"))
            }
            Self::Suspended(sluice_wire::SubjectKind::Org) => {
                ("permission_error", Some("organization_suspended"))
            }
            Self::ModelNotAllowed(_) => ("invalid_request_error", Some("model_not_allowed")),
            Self::UnknownModel(_) => ("invalid_request_error", Some("model_not_found")),
            Self::UnknownPath(_) => ("invalid_request_error", Some("unknown_url")),
            Self::MethodNotAllowed { .. } => ("invalid_request_error", Some("method_not_allowed")),
            Self::BodyTooLarge(_) => ("invalid_request_error", Some("request_too_large")),
            Self::BodyTimeout(_) | Self::HeaderTimeout => {
                ("invalid_request_error", Some("request_timeout"))
            }
            Self::MalformedRequest(_) => ("invalid_request_error", Some("malformed_request")),
            Self::MissingHost => ("invalid_request_error", Some("missing_host")),
            Self::ExpectationFailed(_) => ("invalid_request_error", Some("expectation_failed")),
            Self::Overloaded(_) => ("server_error", Some("overloaded")),
            Self::RateLimited { kind, .. } => {
                (openai_limit_type(*kind), Some("rate_limit_exceeded"))
            }
            Self::OverBudget { .. } => ("insufficient_quota", Some("insufficient_quota")),
            Self::OutsideRegion { .. } => ("invalid_request_error", Some("model_not_in_region")),
            Self::NoUpstream { .. } => ("server_error", Some("upstream_unavailable")),
            Self::LimitsUnavailable { .. } => ("server_error", Some("limits_unavailable")),
            Self::UpstreamConnect => ("api_error", Some("upstream_unreachable")),
            Self::UpstreamTimeout => ("api_error", Some("upstream_timeout")),
            Self::UpstreamProtocol => ("api_error", Some("upstream_invalid_response")),
            Self::Internal => ("api_error", Some("internal_error")),
        }
    }

    /// Anthropic's `error.type`.
    fn anthropic_type(&self) -> &'static str {
        match self.status() {
            400 | 405 | 417 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            408 | 504 => "timeout_error",
            503 => "overloaded_error",
            _ => "api_error",
        }
    }

    /// How long the client should wait before retrying, for `retry-after`.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::OverBudget { retry_after, .. } => {
                Some(*retry_after)
            }
            Self::Overloaded(_) => Some(OVERLOAD_RETRY),
            Self::NoUpstream { retry_after, .. } | Self::LimitsUnavailable { retry_after } => {
                Some(*retry_after)
            }
            _ => None,
        }
    }

    fn param(&self) -> Option<&'static str> {
        match self {
            Self::UnknownModel(_)
            | Self::ModelNotAllowed(_)
            | Self::WrongSurface { .. }
            | Self::OutsideRegion { .. } => Some("model"),
            Self::OutputTooLarge { .. } => Some("max_tokens"),
            _ => None,
        }
    }

    /// Status and JSON body in the caller's shape.
    pub fn render(&self, family: Family) -> (u16, Bytes) {
        let message = self.to_string();
        let body = match family {
            Family::OpenAi => {
                let (kind, code) = self.openai_kind();
                serde_json::json!({"error": {
                    "message": message, "type": kind, "param": self.param(), "code": code
                }})
            }
            Family::Anthropic => serde_json::json!({
                "type": "error",
                "error": {"type": self.anthropic_type(), "message": message}
            }),
        };
        (self.status(), Bytes::from(body.to_string()))
    }

    /// Maps a Pingora proxying failure (before any response byte reached the client).
    pub fn from_proxy_error(e: &PError) -> Self {
        match e.etype() {
            ErrorType::ConnectTimedout
            | ErrorType::TLSHandshakeTimedout
            | ErrorType::ReadTimedout
            | ErrorType::WriteTimedout => Self::UpstreamTimeout,
            ErrorType::ConnectRefused
            | ErrorType::ConnectNoRoute
            | ErrorType::ConnectError
            | ErrorType::ConnectProxyFailure
            | ErrorType::TLSHandshakeFailure
            | ErrorType::InvalidCert
            | ErrorType::HandshakeError
            | ErrorType::SocketError
            | ErrorType::BindError => Self::UpstreamConnect,
            ErrorType::InvalidHTTPHeader
            | ErrorType::H1Error
            | ErrorType::H2Error
            | ErrorType::ReadError
            | ErrorType::ConnectionClosed => Self::UpstreamProtocol,
            _ => Self::Internal,
        }
    }
}
