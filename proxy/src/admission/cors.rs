//! Cross-origin requests from browsers: an optional, per-listener allow-list of origins, the
//! preflight (`OPTIONS`) answered by sluice itself, and the CORS headers on every answer.
//!
//! Off by default: without a `[cors]` table no CORS header is ever sent and `OPTIONS` stays a
//! 405, so a browser page cannot read any answer. Credentials travel in `Authorization` /
//! `x-api-key`, never in cookies, so `Access-Control-Allow-Credentials` is never sent.

use crate::config::file::CorsSection;
use crate::config::ConfigError;
use crate::ctx::Ctx;
use http::header::{self, HeaderName, HeaderValue};
use http::Method;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use std::net::SocketAddr;
use std::time::Duration;

/// The headers sluice itself sets that a browser client may read.
const EXPOSED: &str = "x-request-id, retry-after, retry-after-ms, \
     x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests, \
     x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens, \
     anthropic-ratelimit-requests-limit, anthropic-ratelimit-requests-remaining, \
     anthropic-ratelimit-requests-reset, anthropic-ratelimit-tokens-limit, \
     anthropic-ratelimit-tokens-remaining, anthropic-ratelimit-tokens-reset";
/// The longest `Access-Control-Request-Headers` echoed back (browsers send a short list).
const MAX_REQUESTED_HEADERS: usize = 1024;
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(600);

/// The validated `[cors]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsPolicy {
    /// Allowed origins as browsers send them (`https://app.example.com`); empty with `any`.
    origins: Vec<String>,
    /// `origins = ["*"]`: every origin (the origin is still echoed, never `*`).
    any: bool,
    /// The proxy listeners this applies to (`None`: all of them).
    listeners: Option<Vec<SocketAddr>>,
    max_age: Duration,
}

impl CorsPolicy {
    pub(crate) fn build(s: &CorsSection) -> Result<Self, ConfigError> {
        let any = s.origins.iter().any(|o| o == "*");
        for o in s.origins.iter().filter(|o| *o != "*") {
            let ok = (o.starts_with("https://") || o.starts_with("http://"))
                && !o.ends_with('/')
                && HeaderValue::from_str(o).is_ok();
            if !ok {
                return Err(ConfigError::invalid(format!(
                    "cors.origins: {o:?} is not an origin like \"https://app.example.com\" \
                     (scheme and host, no path)"
                )));
            }
        }
        if s.origins.is_empty() {
            return Err(ConfigError::invalid(
                "cors.origins must name at least one origin",
            ));
        }
        let listeners = match &s.listeners {
            None => None,
            Some(list) => Some(
                list.iter()
                    .map(|l| match l.parse::<SocketAddr>() {
                        Ok(a) if a.port() != 0 => Ok(a),
                        _ => Err(ConfigError::invalid(format!(
                            "cors.listeners: {l:?} must be a listen address with its port \
                             (e.g. \"0.0.0.0:8080\")"
                        ))),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        Ok(Self {
            origins: if any { Vec::new() } else { s.origins.clone() },
            any,
            listeners,
            max_age: crate::config::optional_duration(&s.max_age, DEFAULT_MAX_AGE, "cors.max_age")?,
        })
    }

    fn applies_to(&self, local: Option<&SocketAddr>) -> bool {
        let Some(list) = &self.listeners else {
            return true;
        };
        local.is_some_and(|l| {
            list.iter()
                .any(|a| a.port() == l.port() && (a.ip().is_unspecified() || a.ip() == l.ip()))
        })
    }

    fn allows(&self, origin: &str) -> bool {
        self.any || self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }
}

/// The request's `Origin` when the snapshot's policy allows it on the listener it came in on.
pub fn allowed_origin(session: &Session, ctx: &Ctx) -> Option<HeaderValue> {
    let policy = ctx.snapshot.cors.as_ref()?;
    let origin = session.req_header().headers.get(header::ORIGIN)?;
    let local = session.server_addr().and_then(|a| a.as_inet());
    (policy.applies_to(local) && policy.allows(origin.to_str().ok()?)).then(|| origin.clone())
}

/// A CORS preflight: `OPTIONS` with the method the browser wants to use.
pub fn is_preflight(req: &RequestHeader) -> bool {
    req.method == Method::OPTIONS
        && req
            .headers
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Answers an allowed preflight: 204 with what the browser asked for (methods sluice serves,
/// the requested headers), cacheable for `max_age`.
pub async fn answer_preflight(session: &mut Session, ctx: &mut Ctx) {
    let Some(policy) = ctx.snapshot.cors.clone() else {
        return;
    };
    let requested = session
        .req_header()
        .headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .filter(|v| v.len() <= MAX_REQUESTED_HEADERS)
        .cloned();
    let Ok(mut resp) = ResponseHeader::build(204, Some(8)) else {
        return;
    };
    let mut set = |name: HeaderName, value: HeaderValue| {
        let _ = resp.insert_header(name, value);
    };
    set(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    if let Some(requested) = requested {
        set(header::ACCESS_CONTROL_ALLOW_HEADERS, requested);
    }
    set(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from(policy.max_age.as_secs()),
    );
    set(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    let _ = resp.insert_header(crate::respond::REQUEST_ID, ctx.id.to_string());
    add_headers(&mut resp, ctx);
    ctx.status = 204;
    let _ = session.write_response_header(Box::new(resp), true).await;
}

/// The provider's own CORS grants, never passed on: whether a browser may read an answer is
/// sluice's policy, not the provider's (which may say `*`).
const UPSTREAM_GRANTS: [HeaderName; 3] = [
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
    header::ACCESS_CONTROL_EXPOSE_HEADERS,
];

/// A provider's answer: its CORS grants removed, sluice's added for an allowed origin.
pub fn replace_upstream_headers(resp: &mut ResponseHeader, ctx: &Ctx) {
    for name in &UPSTREAM_GRANTS {
        resp.remove_header(name);
    }
    add_headers(resp, ctx);
}

/// The CORS headers of an answer to an allowed origin (none otherwise).
pub fn add_headers(resp: &mut ResponseHeader, ctx: &Ctx) {
    let Some(origin) = &ctx.cors_origin else {
        return;
    };
    let _ = resp.insert_header(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    let _ = resp.insert_header(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED),
    );
    // The answer depends on the Origin header: caches must not serve it to another origin.
    let _ = resp.append_header(header::VARY, HeaderValue::from_static("Origin"));
}
