//! The validated, immutable configuration snapshot the request path reads.

use super::file::{FileConfig, KeySection};
use super::governance::{self, ModelLimits};
use super::providers::{Provider, Timeouts};
use super::{ConfigError, Env};
use crate::credentials::crypto::MasterKeys;
use crate::credentials::keys::{KeyDigest, KeyId, ModelScope};
use crate::governance::budgets::Budget;
use crate::governance::limits::Limits;
use crate::metering::pricing::Price;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Settings read once at start (changing them needs a restart or a graceful upgrade).
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: Vec<String>,
    pub threads: usize,
    pub max_body_bytes: usize,
    /// Address of the admin listener (metrics, health), if any.
    pub admin_listen: Option<String>,
    /// Explicit upgrade socket; `None` means derived from the config path at start.
    pub upgrade_sock: Option<PathBuf>,
    /// Explicit pid file; `None` means derived from the config path at start.
    pub pid_file: Option<PathBuf>,
    /// Time in-flight requests get to finish once the process stops accepting.
    pub grace_period: Duration,
    /// Time the runtimes get to stop after the grace period.
    pub shutdown_timeout: Duration,
    /// Whether file changes trigger a reload.
    pub watch: bool,
    /// Master key file named by the config (watched for changes when set).
    pub master_key_file: Option<PathBuf>,
    /// Client connection deadlines and cap (`[server.connections]`).
    pub connections: super::ConnectionSettings,
}

/// Long enough for any stream the default timeouts allow (`total` = 15 minutes) to finish.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(15 * 60);
/// Pingora's own default.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkKind {
    Stdout,
    File(PathBuf),
    None,
}

#[derive(Debug, Clone)]
pub struct UsageSettings {
    pub sink: SinkKind,
    pub queue_capacity: usize,
    /// Delivery to the ledger, besides the local sink (`[ledger]`).
    pub ledger: Option<super::LedgerSettings>,
}

/// A model name's destination.
#[derive(Debug)]
pub struct Route {
    /// The model entry's name as configured (an exact name or a glob): the route's label in
    /// metrics, never a client's string.
    pub name: Arc<str>,
    /// Where its requests may go, and how one destination is chosen.
    pub pool: crate::routing::Pool,
    /// Output tokens reserved when a request does not cap its output.
    pub max_output_tokens: u64,
    /// The most output a request may ask for (more is answered 400): the model's configured
    /// `max_output_tokens`, else [`DEFAULT_OUTPUT_CEILING`].
    pub output_ceiling: u64,
    /// `None`: no price configured, so requests cost 0.
    pub price: Option<Price>,
}

#[derive(Debug)]
pub struct Org {
    pub id: Arc<str>,
    /// The data regions its requests must stay in; `None`: any.
    pub regions: Option<Vec<Arc<str>>>,
    /// Provider name → sealed credential text, opened per request.
    pub sealed_keys: HashMap<String, String>,
    pub limits: Limits,
    /// Org × model overrides: exact names first, then globs.
    pub model_limits: Vec<ModelLimits>,
    pub budget: Budget,
    /// What its requests get while the shared limits (Redis) cannot be reached.
    pub unreachable: super::Unreachable,
}

impl Org {
    /// The org × model entry that applies to `model`, if any.
    pub fn limits_for_model(&self, model: &str) -> Option<&ModelLimits> {
        self.model_limits.iter().find(|m| m.matches(model))
    }
}

/// What a virtual key grants. The key itself is never stored, only its digest.
#[derive(Debug)]
pub struct VirtualKey {
    pub id: KeyId,
    pub org: Arc<str>,
    pub scope: ModelScope,
    pub expires: Option<SystemTime>,
    pub limits: Limits,
    /// The digest text (`sha256:…`): the key's unique name for its limiter state. Not a secret.
    pub limiter_id: Arc<str>,
}

#[derive(Debug)]
pub struct Snapshot {
    pub server: ServerSettings,
    pub usage: UsageSettings,
    /// Exact model names, in config order (what `GET /v1/models` lists).
    pub models: Vec<(Arc<str>, Arc<Route>)>,
    exact: HashMap<Arc<str>, Arc<Route>>,
    globs: Vec<(glob::Pattern, Arc<Route>)>,
    pub orgs: HashMap<Arc<str>, Arc<Org>>,
    pub keys: HashMap<KeyDigest, Arc<VirtualKey>>,
    pub master: Option<Arc<MasterKeys>>,
    /// Browser access (`[cors]`), if enabled.
    pub cors: Option<crate::admission::cors::CorsPolicy>,
    /// When this snapshot was loaded: the `created` date the model list shows (sluice cannot
    /// know a model's release date).
    pub loaded_at: SystemTime,
    /// Which per-request series to record (`[metrics]`; follows reloads).
    pub metrics: super::MetricsSettings,
    /// Log format, level and access log (`[log]`; read once at start).
    pub log: super::LogSettings,
    /// Where limit state lives (`[limits]`; the backend is read once at start).
    pub limits: super::LimitsSettings,
    /// Which address is the client's, and how records keep it (`[client_ip]`; follows reloads).
    pub client_ip: super::client_ip::ClientIpPolicy,
}

impl Snapshot {
    /// The route for a requested model: exact names first, then globs in config order.
    pub fn route(&self, model: &str) -> Option<&Arc<Route>> {
        self.exact.get(model).or_else(|| {
            self.globs
                .iter()
                .find(|(p, _)| p.matches(model))
                .map(|(_, r)| r)
        })
    }

    /// The glob routes (`claude-*`), in config order, with their patterns as written.
    pub fn glob_routes(&self) -> impl Iterator<Item = (&str, &Arc<Route>)> + '_ {
        self.globs.iter().map(|(p, r)| (p.as_str(), r))
    }

    pub fn org(&self, id: &str) -> Option<&Arc<Org>> {
        self.orgs.get(id)
    }

    /// The targets of `route` that `org` may reach (region and credentials).
    pub fn reach(&self, org: &str, route: &Route) -> crate::routing::Reach {
        let regions = self.org(org).and_then(|o| o.regions.as_deref());
        route.pool.reach(regions, |p| self.org_can_use(org, p))
    }

    /// Whether `org` has a credential for `provider` (its own sealed one or the shared one).
    pub fn org_can_use(&self, org: &str, provider: &Provider) -> bool {
        !provider.needs_key()
            || provider.shared_key.is_some()
            || self
                .org(org)
                .is_some_and(|o| o.sealed_keys.contains_key(&*provider.name))
    }
}

const DEFAULT_MAX_BODY: usize = 16 * 1024 * 1024;
/// Reserved output when neither the request nor the model entry caps it.
const DEFAULT_MAX_OUTPUT: u64 = 4096;
/// The most output a request may ask for when its model entry sets no `max_output_tokens`:
/// 128 Ki tokens, above every current model's documented output limit, so no real request is
/// refused, while `max_tokens: 18446744073709551615` is.
pub const DEFAULT_OUTPUT_CEILING: u64 = 131_072;

pub(super) fn build(raw: FileConfig, env: &dyn Env) -> Result<Snapshot, ConfigError> {
    let server = ServerSettings {
        listen: raw
            .server
            .listen
            .clone()
            .unwrap_or_else(|| vec!["127.0.0.1:8080".to_string()]),
        threads: raw.server.threads.unwrap_or(2).max(1),
        max_body_bytes: raw.server.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY),
        admin_listen: raw.server.admin_listen.clone(),
        upgrade_sock: raw.server.upgrade_sock.clone(),
        pid_file: raw.server.pid_file.clone(),
        grace_period: super::optional_duration(
            &raw.server.grace_period,
            DEFAULT_GRACE_PERIOD,
            "server.grace_period",
        )?,
        shutdown_timeout: super::optional_duration(
            &raw.server.shutdown_timeout,
            DEFAULT_SHUTDOWN_TIMEOUT,
            "server.shutdown_timeout",
        )?,
        watch: raw.server.watch.unwrap_or(true),
        master_key_file: raw.server.master_key_file.clone(),
        connections: super::conn::build(&raw.server.connections)?,
    };
    let usage = UsageSettings {
        sink: match (raw.usage.sink.as_deref(), &raw.usage.path) {
            (None | Some("stdout"), _) => SinkKind::Stdout,
            (Some("none"), _) => SinkKind::None,
            (Some("file"), Some(p)) => SinkKind::File(p.clone()),
            (Some("file"), None) => {
                return Err(ConfigError::invalid("usage: sink = \"file\" needs a path"))
            }
            (Some(other), _) => {
                return Err(ConfigError::invalid(format!(
                    "usage: sink {other:?} is not one of stdout, file, none"
                )))
            }
        },
        queue_capacity: raw.usage.queue_capacity.unwrap_or(65_536).max(1),
        ledger: super::ledger::build(raw.ledger.as_ref(), env)?,
    };
    let defaults = Timeouts::default().overlay(&raw.timeouts, "[timeouts]")?;
    let limits = super::limits::build(raw.limits.as_ref(), env)?;

    let mut providers: HashMap<String, Arc<Provider>> = HashMap::new();
    for p in &raw.providers {
        let org_keys = raw
            .orgs
            .iter()
            .any(|o| o.provider_keys.contains_key(&p.name));
        let built = Arc::new(Provider::build(p, defaults, env, org_keys)?);
        if providers.insert(p.name.clone(), built).is_some() {
            return Err(ConfigError::invalid(format!(
                "provider {:?} is defined twice",
                p.name
            )));
        }
    }

    let mut models = Vec::new();
    let mut exact = HashMap::new();
    let mut globs = Vec::new();
    for m in &raw.models {
        let route = Arc::new(Route {
            name: Arc::from(m.name.as_str()),
            pool: super::routes::pool(m, &providers)?,
            max_output_tokens: m.max_output_tokens.unwrap_or(DEFAULT_MAX_OUTPUT),
            output_ceiling: m.max_output_tokens.unwrap_or(DEFAULT_OUTPUT_CEILING),
            price: governance::price(m.price.as_ref(), &m.name)?,
        });
        if m.name.contains(['*', '?', '[']) {
            let pattern = glob::Pattern::new(&m.name)
                .map_err(|e| ConfigError::invalid(format!("model {:?}: {e}", m.name)))?;
            globs.push((pattern, route));
        } else {
            let name: Arc<str> = m.name.as_str().into();
            if exact.insert(name.clone(), route.clone()).is_some() {
                return Err(ConfigError::invalid(format!(
                    "model {:?} is defined twice",
                    m.name
                )));
            }
            models.push((name, route));
        }
    }

    let has_sealed = raw.orgs.iter().any(|o| !o.provider_keys.is_empty());
    let master = load_master(&raw, env, has_sealed)?;
    let mut orgs = HashMap::new();
    for o in &raw.orgs {
        for (provider, sealed) in &o.provider_keys {
            if !providers.contains_key(provider) {
                return Err(ConfigError::invalid(format!(
                    "org {:?}: provider_keys names unknown provider {provider:?}",
                    o.id
                )));
            }
            let master = master.as_ref().ok_or_else(|| {
                ConfigError::invalid(
                    "sealed provider keys need SLUICE_MASTER_KEY or server.master_key_file",
                )
            })?;
            // Prove it opens now, so a bad value fails the load instead of a request; the
            // plaintext is dropped (and zeroed) at once.
            master.open(&o.id, provider, sealed).map_err(|e| {
                ConfigError::invalid(format!("org {:?} provider {provider:?}: {e}", o.id))
            })?;
        }
        let regions = o.region.clone().map(|r| {
            r.into_vec()
                .into_iter()
                .map(|x| Arc::from(x.trim()))
                .collect::<Vec<Arc<str>>>()
        });
        if regions
            .as_ref()
            .is_some_and(|r| r.is_empty() || r.iter().any(|x| x.is_empty()))
        {
            return Err(ConfigError::invalid(format!(
                "org {:?}: region must name at least one region, none empty",
                o.id
            )));
        }
        let org = Arc::new(Org {
            id: o.id.as_str().into(),
            regions,
            sealed_keys: o.provider_keys.clone().into_iter().collect(),
            limits: governance::limits(&o.limits, &format!("org {:?}", o.id))?,
            model_limits: governance::model_limits(&o.model_limits, &o.id)?,
            budget: governance::budget(o.budget.as_ref(), &o.id)?,
            unreachable: match &o.when_limits_unreachable {
                Some(t) => super::Unreachable::parse(
                    t,
                    &format!("org {:?}: when_limits_unreachable", o.id),
                )?,
                None => limits.when_unreachable,
            },
        });
        if orgs.insert(org.id.clone(), org).is_some() {
            return Err(ConfigError::invalid(format!(
                "org {:?} is defined twice",
                o.id
            )));
        }
    }

    let mut keys = HashMap::new();
    for (i, k) in raw.keys.iter().enumerate() {
        let vk = build_key(k, i)?;
        let digest = KeyDigest::parse(&k.digest)
            .map_err(|e| ConfigError::invalid(format!("keys[{i}] (org {:?}): {e}", k.org)))?;
        if keys.insert(digest, Arc::new(vk)).is_some() {
            return Err(ConfigError::invalid(format!(
                "keys[{i}]: the same key digest appears twice"
            )));
        }
    }

    // Last, so an entry's own error (a bad duration, an unknown field's neighbour) is named
    // first and the cross-references are judged between entries that are valid.
    super::references::check(&raw)?;
    Ok(Snapshot {
        server,
        usage,
        models,
        exact,
        globs,
        orgs,
        keys,
        master: master.map(Arc::new),
        cors: raw
            .cors
            .as_ref()
            .map(crate::admission::cors::CorsPolicy::build)
            .transpose()?,
        loaded_at: SystemTime::now(),
        metrics: super::observe::metrics(raw.metrics.as_ref()),
        log: super::observe::log(raw.log.as_ref())?,
        limits,
        client_ip: super::client_ip::build(raw.client_ip.as_ref(), env)?,
    })
}

fn load_master(
    raw: &FileConfig,
    env: &dyn Env,
    required: bool,
) -> Result<Option<MasterKeys>, ConfigError> {
    let from_env = env.var("SLUICE_MASTER_KEY");
    let file = raw.server.master_key_file.as_deref();
    if from_env.is_none() && file.is_none() {
        return Ok(None);
    }
    match MasterKeys::load(from_env.as_deref(), file) {
        Ok(m) => Ok(Some(m)),
        Err(e) if required => Err(ConfigError::invalid(format!("master key: {e}"))),
        Err(e) => Err(ConfigError::invalid(format!(
            "master key (unused, but set): {e}"
        ))),
    }
}

fn build_key(k: &KeySection, i: usize) -> Result<VirtualKey, ConfigError> {
    let ctx = format!("keys[{i}] (org {:?})", k.org);
    let digest =
        KeyDigest::parse(&k.digest).map_err(|e| ConfigError::invalid(format!("{ctx}: {e}")))?;
    let id = digest.key_id();
    if let Some(claimed) = &k.id {
        if *claimed != id.to_string() {
            return Err(ConfigError::invalid(format!(
                "{ctx}: id {claimed:?} does not match the digest (expected {id})"
            )));
        }
    }
    let scope =
        ModelScope::parse(&k.models).map_err(|e| ConfigError::invalid(format!("{ctx}: {e}")))?;
    let expires = match &k.expires {
        None => None,
        Some(t) => Some(humantime::parse_rfc3339_weak(t).map_err(|e| {
            ConfigError::invalid(format!("{ctx}: expires {t:?} is not an RFC 3339 time: {e}"))
        })?),
    };
    let limits = governance::limits(&k.limits, &ctx)?;
    Ok(VirtualKey {
        id,
        org: k.org.as_str().into(),
        scope,
        expires,
        limits,
        limiter_id: digest.to_config_string().into(),
    })
}
