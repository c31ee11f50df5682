//! The TOML schema of `sluice.toml`, exactly as operators write it (before validation).
//!
//! Every table denies unknown fields: a typo in a limit or a key entry must fail the load (and a
//! reload keeps the old snapshot) rather than be silently ignored.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Serve with no `[[keys]]` at all (every request then gets 401). Without it, a config with
    /// no key is refused, so an emptied or truncated file cannot lock every client out; an
    /// operator revoking every key on purpose says so here.
    #[serde(default)]
    pub allow_no_keys: bool,
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub usage: UsageSection,
    #[serde(default)]
    pub timeouts: TimeoutSection,
    #[serde(default)]
    pub providers: Vec<ProviderSection>,
    #[serde(default)]
    pub models: Vec<ModelSection>,
    #[serde(default)]
    pub orgs: Vec<OrgSection>,
    #[serde(default)]
    pub keys: Vec<KeySection>,
    /// Usage delivery to the ledger (absent: the local sink only).
    pub ledger: Option<super::ledger::LedgerSection>,
    /// Browser access (absent: none; `OPTIONS` is a 405 and no CORS header is sent).
    pub cors: Option<CorsSection>,
    /// Per-request metrics and their labels (absent: all on).
    pub metrics: Option<super::observe::MetricsSection>,
    /// Log format and level, and the access log (absent: text logs at `info`, no access log).
    pub log: Option<super::observe::LogSection>,
    /// Where limit state lives (absent: in this process).
    pub limits: Option<super::limits::LimitsBackendSection>,
    /// Which address usage records name as the client (absent: the socket peer, whole).
    pub client_ip: Option<super::client_ip::ClientIpSection>,
}

/// `[cors]`: which web origins may call sluice from a browser, on which listeners.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSection {
    /// `https://app.example.com` (scheme and host, as browsers send `Origin`), or `"*"`.
    pub origins: Vec<String>,
    /// Proxy listen addresses (with their port) this applies to; absent: every listener.
    pub listeners: Option<Vec<String>>,
    /// How long a browser may cache a preflight answer (humantime, default 10m).
    pub max_age: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Listening addresses; `127.0.0.1:0` picks a free port (reported on stdout when ready).
    pub listen: Option<Vec<String>>,
    /// Pingora worker threads.
    pub threads: Option<usize>,
    /// Largest accepted request body, in bytes (default 16 MiB).
    pub max_body_bytes: Option<usize>,
    /// File holding the master key(s), used when `SLUICE_MASTER_KEY` is not set.
    pub master_key_file: Option<PathBuf>,
    /// Admin listener (`GET /metrics`, `GET /healthz`); absent = none.
    pub admin_listen: Option<String>,
    /// Unix socket over which a graceful upgrade hands the listening sockets to the new process
    /// (default: derived from the config path, in the temp directory).
    pub upgrade_sock: Option<PathBuf>,
    /// File holding this process's pid (default: derived from the config path, like
    /// `upgrade_sock`).
    pub pid_file: Option<PathBuf>,
    /// How long a stopping process keeps serving its in-flight requests (humantime, default 15m).
    pub grace_period: Option<String>,
    /// How long the runtimes get to stop after the grace period (humantime, default 5s).
    pub shutdown_timeout: Option<String>,
    /// Reload when the config file or `master_key_file` changes (default true; SIGHUP always
    /// reloads).
    pub watch: Option<bool>,
    /// Client connection deadlines and cap (`[server.connections]`).
    #[serde(default)]
    pub connections: super::conn::ConnectionsSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageSection {
    /// `stdout`, `file` or `none`.
    pub sink: Option<String>,
    /// JSON-lines file for `sink = "file"`.
    pub path: Option<PathBuf>,
    /// Bound of the queue between the request path and the sink.
    pub queue_capacity: Option<usize>,
}

/// Durations in humantime syntax (`"5s"`, `"2m"`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutSection {
    pub connect: Option<String>,
    pub first_byte: Option<String>,
    pub idle: Option<String>,
    pub total: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSection {
    pub name: String,
    /// `openai` (any OpenAI-compatible API) or `anthropic`.
    pub kind: String,
    /// The URL the request path is appended to, without the inbound `/v1`: e.g.
    /// `https://api.openai.com/v1`, `https://api.anthropic.com/v1`, or an Azure deployment URL
    /// containing `{model}`. Exactly one of `base_url` and `endpoints` is set.
    pub base_url: Option<String>,
    /// Several base URLs serving the same API with the same credentials (a fleet of GPU
    /// workers, the regions of one deployment): each is an endpoint of its own for balancing
    /// and health.
    pub endpoints: Option<Vec<String>>,
    /// The data region the provider's endpoints are in (`"us"`, `"eu"`); orgs with a region
    /// only ever reach providers of that region.
    pub region: Option<String>,
    /// Passive health: when an endpoint is ejected and for how long.
    #[serde(default)]
    pub health: HealthSection,
    /// Extra query string for every upstream request (Azure's `api-version=…`).
    pub query: Option<String>,
    /// How the credential is sent: `bearer` (default for openai), `x-api-key` (default for
    /// anthropic), `api-key` (Azure), or `none`.
    pub auth: Option<String>,
    /// The operator's shared credential, as `env:VAR`. Orgs may bring their own (sealed).
    pub key: Option<String>,
    #[serde(default)]
    pub timeouts: TimeoutSection,
}

/// `[providers.health]`: passive ejection of failing endpoints.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSection {
    /// Consecutive failures (connect errors, timeouts before headers, 5xx) that eject an
    /// endpoint (default 5).
    pub eject_after: Option<u32>,
    /// The first ejection's length (humantime, default 1s); it doubles while the endpoint
    /// keeps failing its probes.
    pub backoff: Option<String>,
    /// The longest ejection (humantime, default 60s).
    pub max_backoff: Option<String>,
    /// Active checks: a `GET` of this path below each endpoint's base URL (e.g. `/models`, or
    /// `/../health` for vLLM's root `/health`), off the request path; absent: passive only.
    pub check_path: Option<String>,
    /// Time between two checks of one endpoint (humantime, default 10s).
    pub check_interval: Option<String>,
    /// The status a healthy endpoint answers (default 200). Checks send no credential, so a
    /// provider that wants one for the path answers 401: set that to check reachability.
    pub check_status: Option<u16>,
}

/// One destination of a model route: a provider (all its endpoints), the model name it knows
/// the model by, and its share and rank.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSection {
    pub provider: String,
    /// Model name sent to this target; defaults to the model entry's `upstream_model`, else the
    /// requested name.
    pub model: Option<String>,
    /// Share of traffic among targets of the same priority (default 1).
    pub weight: Option<u32>,
    /// Lower is tried first; higher priorities are fallbacks (default 0).
    pub priority: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Exact model name, or a glob such as `claude-*`.
    pub name: String,
    /// The one provider of a single-target route; exactly one of `provider` and `targets`.
    pub provider: Option<String>,
    /// The route's targets, for a model served in several places.
    pub targets: Option<Vec<TargetSection>>,
    /// How a target is picked among the healthy ones of the best priority:
    /// `least_outstanding` (default), `weighted` or `least_tokens`.
    pub balance: Option<String>,
    /// Attempts per request, the first included (default 3); failover happens only before the
    /// first byte reaches the client.
    pub max_attempts: Option<u32>,
    /// Provider statuses that move a request to another target (default 429, 500, 502, 503,
    /// 504, 529).
    pub retry_on: Option<Vec<u16>>,
    /// Extra attempts allowed, as a fraction of requests over the last 10 seconds (default
    /// 0.2), besides a floor of 10 per second.
    pub retry_budget: Option<f64>,
    /// Keep requests of one session (`x-sluice-session`, else `x-sluice-user` or the body's
    /// `user`) on one endpoint while it is healthy and not overloaded, so its prompt cache is
    /// reused (default false).
    pub affinity: Option<bool>,
    /// Model name sent upstream; defaults to the requested name.
    pub upstream_model: Option<String>,
    /// Output tokens reserved against token limits when a request sets no `max_tokens`
    /// (default 4096; the difference is settled once the real count is known).
    pub max_output_tokens: Option<u64>,
    /// USD per million tokens; every usage record carries its cost from this table.
    pub price: Option<PriceSection>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceSection {
    pub input: f64,
    pub output: f64,
    /// Cache reads; defaults to `input`.
    pub cached_input: Option<f64>,
    /// Cache writes (Anthropic); defaults to `input`.
    pub cache_write: Option<f64>,
}

/// Limits of one scope. Quotas read `600/min`, `20/s`, `2_000_000/day`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Requests per period.
    pub requests: Option<String>,
    /// Input + output tokens per period.
    pub tokens: Option<String>,
    /// Requests in flight at once.
    pub concurrent: Option<u32>,
}

/// Spend caps in USD per UTC calendar day and month.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSection {
    pub daily_usd: Option<f64>,
    pub monthly_usd: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgSection {
    pub id: String,
    /// The data region(s) the org's traffic must stay in (`"eu"` or `["eu", "uk"]`); absent:
    /// any provider.
    pub region: Option<Regions>,
    /// Provider name → sealed credential (`sealed:v<N>:…`, from `sluice-proxy seal`).
    #[serde(default)]
    pub provider_keys: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: LimitsSection,
    /// Model name or glob → limits for this org on those models (one shared bucket per entry).
    #[serde(default)]
    pub model_limits: BTreeMap<String, LimitsSection>,
    pub budget: Option<BudgetSection>,
    /// `fail_open` or `fail_closed` while the shared limits (Redis) cannot be reached; absent:
    /// `[limits] when_unreachable`.
    pub when_limits_unreachable: Option<String>,
}

/// One region or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Regions {
    One(String),
    Many(Vec<String>),
}

impl Regions {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(r) => vec![r],
            Self::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySection {
    /// `sha256:<hex>` of the virtual key.
    pub digest: String,
    /// Informational copy of the key id; checked against the digest when present.
    pub id: Option<String>,
    pub org: String,
    #[serde(default)]
    pub models: Vec<String>,
    /// RFC 3339 timestamp after which the key is refused.
    pub expires: Option<String>,
    #[serde(default)]
    pub limits: LimitsSection,
}
