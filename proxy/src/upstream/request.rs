//! Preparing the upstream request for a provider: path, query, headers, and the credential swap.
//!
//! Client credentials, hop-by-hop headers and sluice's own `x-sluice-*` headers never reach the
//! provider. The provider credential is opened here, per request, into memory that is zeroed when
//! the request's copy is dropped.

use crate::api::Family;
use crate::config::{AuthStyle, Endpoint, Org, Provider, Snapshot};
use crate::credentials::crypto::Secret;
use crate::errors::GatewayError;
use crate::routing::Target;
use http::header::{self, HeaderName, HeaderValue};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use pingora::http::RequestHeader;
use zeroize::Zeroizing;

/// Headers that are the client's credentials, connection-level, or ours. Names parsed at compile
/// time: a string would be parsed into a name again on each of these 23 lookups per request.
static STRIP: [HeaderName; 23] = [
    header::AUTHORIZATION,
    X_API_KEY,
    API_KEY,
    header::PROXY_AUTHORIZATION,
    header::COOKIE,
    HeaderName::from_static("openai-organization"),
    HeaderName::from_static("openai-project"),
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
    header::CONTENT_LENGTH,
    header::ACCEPT_ENCODING,
    header::EXPECT,
    header::FORWARDED,
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-real-ip"),
];

/// The Anthropic SDKs' key header (and Anthropic's).
pub const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
/// Azure OpenAI's key header.
const API_KEY: HeaderName = HeaderName::from_static("api-key");
/// Anthropic's API version header.
pub const ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");

/// Anthropic requires a version header; the SDKs send one, curl users often do not.
const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

/// The credential for `org` at `provider`: the org's own sealed key if it has one (opened now),
/// else the operator's shared key, else none.
pub fn credential(
    snapshot: &Snapshot,
    org: Option<&Org>,
    provider: &Provider,
) -> Result<Option<Secret>, GatewayError> {
    if provider.auth == AuthStyle::None {
        return Ok(None);
    }
    if let Some(sealed) = org.and_then(|o| o.sealed_keys.get(&*provider.name).map(|s| (o, s))) {
        let (org, sealed) = sealed;
        let master = snapshot.master.as_ref().ok_or(GatewayError::Internal)?;
        // Validated at load; failing now means the master key changed underneath us.
        return master
            .open(&org.id, &provider.name, sealed)
            .map(Some)
            .map_err(|_| GatewayError::Internal);
    }
    Ok(provider.shared_key.clone())
}

/// Rewrites `req` (a copy of the client's request header) into the provider's request.
pub fn prepare_request(
    req: &mut RequestHeader,
    target: &Target,
    model: &str,
    body_len: usize,
    credential: Option<&Secret>,
) -> Result<(), GatewayError> {
    let provider = &*target.provider;
    let endpoint = target.endpoint();
    let uri = upstream_uri(req, provider, endpoint, model)?;
    req.set_uri(uri);

    // Headers named by `Connection` are hop-by-hop too.
    let named: Vec<String> = req
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    for name in &STRIP {
        req.remove_header(name);
    }
    for name in &named {
        req.remove_header(name.as_str());
    }
    let ours: Vec<HeaderName> = req
        .headers
        .keys()
        .filter(|k| k.as_str().starts_with("x-sluice-"))
        .cloned()
        .collect();
    for name in ours {
        req.remove_header(&name);
    }

    let set = |req: &mut RequestHeader, name: HeaderName, value: HeaderValue| {
        req.insert_header(name, value)
            .map_err(|_| GatewayError::Internal)
    };
    set(req, header::HOST, value(&endpoint.host_header)?)?;
    set(req, header::CONTENT_LENGTH, HeaderValue::from(body_len))?;
    // Usage is read from the body as it passes; a compressed body could not be read.
    set(
        req,
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    )?;
    if provider.kind == Family::Anthropic && !req.headers.contains_key(ANTHROPIC_VERSION) {
        set(
            req,
            ANTHROPIC_VERSION,
            HeaderValue::from_static(DEFAULT_ANTHROPIC_VERSION),
        )?;
    }
    if let Some(secret) = credential {
        let (name, prefix): (HeaderName, &[u8]) = match provider.auth {
            AuthStyle::Bearer => (header::AUTHORIZATION, b"Bearer "),
            AuthStyle::XApiKey => (X_API_KEY, b""),
            AuthStyle::ApiKey => (API_KEY, b""),
            AuthStyle::None => return Ok(()),
        };
        // The assembled value lives in a zeroed-on-drop buffer; the header keeps its own copy
        // (marked sensitive, so it is never printed) until the request is done.
        let mut raw = Zeroizing::new(Vec::with_capacity(prefix.len() + secret.expose().len()));
        raw.extend_from_slice(prefix);
        raw.extend_from_slice(secret.expose());
        let mut v = HeaderValue::from_bytes(&raw).map_err(|_| GatewayError::Internal)?;
        v.set_sensitive(true);
        set(req, name, v)?;
    }
    Ok(())
}

/// Base path + inbound path without `/v1` + client query + provider query.
fn upstream_uri(
    req: &RequestHeader,
    provider: &Provider,
    endpoint: &Endpoint,
    model: &str,
) -> Result<http::Uri, GatewayError> {
    let path = req.uri.path();
    let rest = path.strip_prefix("/v1").unwrap_or(path);
    let base = if endpoint.base_path.contains("{model}") {
        endpoint.base_path.replace("{model}", &path_segment(model))
    } else {
        endpoint.base_path.clone()
    };
    let mut target = format!("{base}{rest}");
    // The presented key is looked up only when there is a query to filter.
    let query = req.uri.query();
    let presented = query.and_then(|_| crate::admission::auth::presented_key(req));
    let client = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|pair| !pair.is_empty() && !is_credential(pair, presented));
    let ours = provider.query.as_deref().filter(|q| !q.is_empty());
    for (i, pair) in client.chain(ours).enumerate() {
        target.push(if i == 0 { '?' } else { '&' });
        target.push_str(pair);
    }
    target.parse().map_err(|_| {
        GatewayError::InvalidBody("the model name cannot be used in the provider URL".into())
    })
}

/// Query parameter names that carry an API key by some client's or provider's convention
/// (Google-style `key`, Azure-style `api-key`), compared without regard to case.
const CREDENTIAL_PARAMS: [&str; 5] = ["key", "api-key", "api_key", "x-api-key", "access_token"];

/// Whether one `name=value` query pair carries a credential: a credential parameter name, the
/// key the client presented, or anything that looks like a virtual key. Both halves are
/// compared percent-decoded, so an encoded key is caught too.
fn is_credential(pair: &str, presented: Option<&str>) -> bool {
    let Some((name, value)) = form_urlencoded::parse(pair.as_bytes()).next() else {
        return false;
    };
    CREDENTIAL_PARAMS
        .iter()
        .any(|c| name.eq_ignore_ascii_case(c))
        || presented.is_some_and(|k| value == k || name == k)
        || value.contains(crate::credentials::keys::KEY_PREFIX)
        || name.contains(crate::credentials::keys::KEY_PREFIX)
}

/// RFC 3986's unreserved characters stay as they are; everything else in a path segment (`/`
/// included, so a model name cannot add segments) is percent-encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn path_segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

fn value(s: &str) -> Result<HeaderValue, GatewayError> {
    HeaderValue::from_str(s).map_err(|_| GatewayError::Internal)
}
