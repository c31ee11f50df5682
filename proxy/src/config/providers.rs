//! Validated providers: where a route's requests go, how they authenticate, and their timeouts.

use super::file::{ProviderSection, TimeoutSection};
use super::{ConfigError, Env};
use crate::api::Family;
use crate::credentials::crypto::Secret;
use http::Uri;
use pingora::upstreams::peer::HttpPeer;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

/// How the provider credential travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStyle {
    Bearer,
    XApiKey,
    /// Azure OpenAI's `api-key` header.
    ApiKey,
    None,
}

/// Upstream deadlines. Pingora has a single read timeout for every upstream read, so a
/// streaming request uses `idle` for it (stream headers arrive at once and the gaps between
/// chunks are what can stall) and a non-streaming one uses `first_byte` (the whole answer is
/// generated before the header). `total` is checked on every response chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub idle: Duration,
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(300),
            idle: Duration::from_secs(120),
            total: Duration::from_secs(900),
        }
    }
}

impl Timeouts {
    pub(crate) fn overlay(self, section: &TimeoutSection, ctx: &str) -> Result<Self, ConfigError> {
        // A zero deadline would fail every request at once (Pingora treats it as "already
        // expired"), so it is refused here rather than discovered in production.
        let get = |v: &Option<String>, d: Duration, field: &str| match v {
            None => Ok(d),
            Some(text) => match humantime::parse_duration(text) {
                Ok(d) if d.is_zero() => Err(ConfigError::invalid(format!(
                    "{ctx}: timeouts.{field} = {text:?} must be above 0"
                ))),
                Ok(d) => Ok(d),
                Err(e) => Err(ConfigError::invalid(format!(
                    "{ctx}: timeouts.{field} = {text:?}: {e}"
                ))),
            },
        };
        Ok(Self {
            connect: get(&section.connect, self.connect, "connect")?,
            first_byte: get(&section.first_byte, self.first_byte, "first_byte")?,
            idle: get(&section.idle, self.idle, "idle")?,
            total: get(&section.total, self.total, "total")?,
        })
    }
}

/// One upstream provider, resolved and ready to build peers from.
#[derive(Debug)]
pub struct Provider {
    pub name: Arc<str>,
    /// The wire protocol it speaks (sluice never translates between them).
    pub kind: Family,
    pub auth: AuthStyle,
    /// Value of the upstream `Host` header (host, plus the port when not the scheme default).
    pub host_header: String,
    /// Path prefix the inbound path (without `/v1`) is appended to; may contain `{model}`.
    pub base_path: String,
    pub query: Option<String>,
    /// The operator's shared credential (`key = "env:VAR"`), if set in the environment.
    pub shared_key: Option<Secret>,
    /// The variable the shared credential was expected in, for "not configured" messages.
    pub shared_key_var: Option<String>,
    pub timeouts: Timeouts,
    /// Template peer with address, TLS/SNI and connect timeouts; cloned per request. `None`
    /// for a provider nobody has a credential for: it is not offered, and not resolved.
    peer: Option<HttpPeer>,
}

impl Provider {
    /// `org_keys`: whether some org brings its own credential for this provider.
    pub(crate) fn build(
        s: &ProviderSection,
        defaults: Timeouts,
        env: &dyn Env,
        org_keys: bool,
    ) -> Result<Self, ConfigError> {
        let ctx = format!("provider {:?}", s.name);
        let kind = match s.kind.as_str() {
            "openai" => Family::OpenAi,
            "anthropic" => Family::Anthropic,
            other => {
                return Err(ConfigError::invalid(format!(
                    "{ctx}: kind {other:?} is not one of \"openai\", \"anthropic\""
                )))
            }
        };
        let auth = match s.auth.as_deref() {
            None if kind == Family::Anthropic => AuthStyle::XApiKey,
            None | Some("bearer") => AuthStyle::Bearer,
            Some("x-api-key") => AuthStyle::XApiKey,
            Some("api-key") => AuthStyle::ApiKey,
            Some("none") => AuthStyle::None,
            Some(other) => {
                return Err(ConfigError::invalid(format!(
                    "{ctx}: auth {other:?} is not one of bearer, x-api-key, api-key, none"
                )))
            }
        };
        // `{model}` is not a valid URI character; swap it out to parse, then back.
        const MARK: &str = "__sluice_model__";
        let uri: Uri = s
            .base_url
            .replace("{model}", MARK)
            .parse()
            .map_err(|e| ConfigError::invalid(format!("{ctx}: base_url: {e}")))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => {
                return Err(ConfigError::invalid(format!(
                    "{ctx}: base_url must start with http:// or https://"
                )))
            }
        };
        let host = uri
            .host()
            .ok_or_else(|| ConfigError::invalid(format!("{ctx}: base_url has no host")))?
            .to_string();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let host_header = match uri.port_u16() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let base_path = uri.path().trim_end_matches('/').replace(MARK, "{model}");
        let (shared_key, shared_key_var) = match s.key.as_deref() {
            None => (None, None),
            Some(r) => match r.strip_prefix("env:") {
                Some(var) if !var.is_empty() => (
                    env.var(var).map(|v| Secret::new(v.into_bytes())),
                    Some(var.to_string()),
                ),
                _ => {
                    return Err(ConfigError::invalid(format!(
                        "{ctx}: key must be \"env:VARIABLE\" (orgs bring sealed keys in [[orgs]])"
                    )))
                }
            },
        };
        let timeouts = defaults.overlay(&s.timeouts, &ctx)?;
        let usable = auth == AuthStyle::None || shared_key.is_some() || org_keys;
        let peer = if usable {
            let addr = resolve(&host, port)
                .map_err(|e| ConfigError::invalid(format!("{ctx}: cannot resolve {host}: {e}")))?;
            let mut peer = HttpPeer::new(addr, tls, host.clone());
            peer.options.connection_timeout = Some(timeouts.connect);
            peer.options.total_connection_timeout = Some(timeouts.connect);
            // Idle upstream connections stay pooled this long for reuse.
            peer.options.idle_timeout = Some(Duration::from_secs(60));
            Some(peer)
        } else {
            None
        };
        Ok(Self {
            name: s.name.as_str().into(),
            kind,
            auth,
            host_header,
            base_path,
            query: s.query.clone(),
            shared_key,
            shared_key_var,
            timeouts,
            peer,
        })
    }

    /// A peer for one request, with the read timeout that fits the request (see [`Timeouts`]).
    /// `None` when the provider has no credential at all (admission never routes there).
    pub fn peer(&self, stream: bool) -> Option<Box<HttpPeer>> {
        let mut peer = Box::new(self.peer.clone()?);
        peer.options.read_timeout = Some(if stream {
            self.timeouts.idle
        } else {
            self.timeouts.first_byte
        });
        peer.options.write_timeout = Some(self.timeouts.idle);
        Some(peer)
    }

    /// Whether requests to this provider carry a credential.
    pub fn needs_key(&self) -> bool {
        self.auth != AuthStyle::None
    }
}

/// Resolves once at load time. Pingora's `HttpPeer::new` would resolve (blocking, and panicking
/// on failure) on every request; a reload re-resolves.
fn resolve(host: &str, port: u16) -> std::io::Result<SocketAddr> {
    (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address for host"))
}
