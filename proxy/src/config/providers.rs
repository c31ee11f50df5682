//! Validated providers: where a route's requests go (their endpoints), how they authenticate,
//! and their timeouts.

use super::endpoints::{Endpoint, HealthPolicy};
use super::file::{ProviderSection, TimeoutSection};
use super::{ConfigError, Env};
use crate::api::Family;
use crate::credentials::crypto::Secret;
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
    /// Its base URLs (at least one), sharing its credentials, timeouts and health policy.
    pub endpoints: Vec<Endpoint>,
    /// The data region its endpoints are in, if configured.
    pub region: Option<Arc<str>>,
    pub health: HealthPolicy,
    pub query: Option<String>,
    /// The operator's shared credential (`key = "env:VAR"`), if set in the environment.
    pub shared_key: Option<Secret>,
    /// The variable the shared credential was expected in, for "not configured" messages.
    pub shared_key_var: Option<String>,
    pub timeouts: Timeouts,
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
        // A provider nobody has a credential for is not offered, so not resolved either.
        let usable = auth == AuthStyle::None || shared_key.is_some() || org_keys;
        let urls: Vec<&String> = match (&s.base_url, &s.endpoints) {
            (Some(url), None) => vec![url],
            (None, Some(list)) if !list.is_empty() => list.iter().collect(),
            _ => {
                return Err(ConfigError::invalid(format!(
                    "{ctx}: set exactly one of base_url and endpoints (a non-empty list)"
                )))
            }
        };
        let mut endpoints: Vec<Endpoint> = Vec::with_capacity(urls.len());
        for url in urls {
            let e = Endpoint::build(url, &timeouts, usable, &ctx)?;
            if endpoints.iter().any(|o| o.id == e.id) {
                return Err(ConfigError::invalid(format!(
                    "{ctx}: endpoint {:?} is listed twice",
                    e.id
                )));
            }
            endpoints.push(e);
        }
        let region = match s.region.as_deref().map(str::trim) {
            Some("") => {
                return Err(ConfigError::invalid(format!(
                    "{ctx}: region must not be empty"
                )))
            }
            r => r.map(Arc::from),
        };
        Ok(Self {
            name: s.name.as_str().into(),
            kind,
            auth,
            endpoints,
            region,
            health: HealthPolicy::build(&s.health, &ctx)?,
            query: s.query.clone(),
            shared_key,
            shared_key_var,
            timeouts,
        })
    }

    /// Whether requests to this provider carry a credential.
    pub fn needs_key(&self) -> bool {
        self.auth != AuthStyle::None
    }
}
