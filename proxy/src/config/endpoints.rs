//! A provider's endpoints (its base URLs, resolved) and the passive-health policy they follow.

use super::file::HealthSection;
use super::providers::Timeouts;
use super::ConfigError;
use http::Uri;
use pingora::upstreams::peer::HttpPeer;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

/// One base URL of a provider, ready to build peers from.
#[derive(Debug)]
pub struct Endpoint {
    /// `scheme://host[:port]/path` as configured, without userinfo or query: the endpoint's
    /// name in records, metrics and its health state. Never holds a credential.
    pub id: Arc<str>,
    /// Value of the upstream `Host` header (host, plus the port when not the scheme default).
    pub host_header: String,
    /// Path prefix the inbound path (without `/v1`) is appended to; may contain `{model}`.
    pub base_path: String,
    /// Template peer with address, TLS/SNI and connect timeouts; cloned per request. `None`
    /// for a provider nobody has a credential for: it is not offered, and not resolved.
    peer: Option<HttpPeer>,
}

impl Endpoint {
    /// Parses and (when `resolve_now`) resolves one base URL.
    pub(crate) fn build(
        url: &str,
        timeouts: &Timeouts,
        resolve_now: bool,
        ctx: &str,
    ) -> Result<Self, ConfigError> {
        // `{model}` is not a valid URI character; swap it out to parse, then back.
        const MARK: &str = "__sluice_model__";
        let uri: Uri = url
            .replace("{model}", MARK)
            .parse()
            .map_err(|e| ConfigError::invalid(format!("{ctx}: base_url {url:?}: {e}")))?;
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
        let scheme = if tls { "https" } else { "http" };
        let id = format!("{scheme}://{host_header}{base_path}").into();
        let peer = if resolve_now {
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
            id,
            host_header,
            base_path,
            peer,
        })
    }

    /// A peer for one request, with the read timeout that fits the request (see [`Timeouts`]).
    pub fn peer(&self, timeouts: &Timeouts, stream: bool) -> Option<Box<HttpPeer>> {
        let mut peer = Box::new(self.peer.clone()?);
        peer.options.read_timeout = Some(if stream {
            timeouts.idle
        } else {
            timeouts.first_byte
        });
        peer.options.write_timeout = Some(timeouts.idle);
        Some(peer)
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

/// When failures eject an endpoint, and for how long (`[providers.health]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthPolicy {
    pub eject_after: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Active checks, when configured.
    pub check: Option<ActiveCheck>,
}

/// An active health check: `GET <base URL><path>` every `interval`, healthy on `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveCheck {
    pub path: String,
    pub interval: Duration,
    pub status: u16,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self {
            eject_after: 5,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            check: None,
        }
    }
}

impl HealthPolicy {
    pub(crate) fn build(s: &HealthSection, ctx: &str) -> Result<Self, ConfigError> {
        let d = Self::default();
        let duration = |v: &Option<String>, default: Duration, field: &str| {
            super::optional_duration(v, default, &format!("{ctx}: health.{field}"))
        };
        let backoff = duration(&s.backoff, d.backoff, "backoff")?;
        // A long backoff alone raises the default cap with it rather than fail the load.
        let policy = Self {
            eject_after: s.eject_after.unwrap_or(d.eject_after),
            backoff,
            max_backoff: duration(&s.max_backoff, d.max_backoff.max(backoff), "max_backoff")?,
            check: match &s.check_path {
                None => None,
                Some(path) if path.starts_with('/') => Some(ActiveCheck {
                    path: path.clone(),
                    interval: duration(
                        &s.check_interval,
                        Duration::from_secs(10),
                        "check_interval",
                    )?,
                    status: s.check_status.unwrap_or(200),
                }),
                Some(path) => {
                    return Err(ConfigError::invalid(format!(
                        "{ctx}: health.check_path {path:?} must start with /"
                    )))
                }
            },
        };
        if policy.check.as_ref().is_some_and(|c| c.interval.is_zero()) {
            return Err(ConfigError::invalid(format!(
                "{ctx}: health.check_interval must be above 0"
            )));
        }
        if policy.eject_after == 0 || policy.backoff.is_zero() {
            return Err(ConfigError::invalid(format!(
                "{ctx}: health.eject_after and health.backoff must be above 0"
            )));
        }
        if policy.max_backoff < policy.backoff {
            return Err(ConfigError::invalid(format!(
                "{ctx}: health.max_backoff must not be below health.backoff"
            )));
        }
        Ok(policy)
    }
}
