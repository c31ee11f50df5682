//! Upstream routing: a route's targets (provider endpoints), which of them an org may reach,
//! the pick among the healthy ones, and the failover decisions between attempts.
//!
//! Admission and the proxy phases only ask this module; the per-endpoint state it keeps lives
//! in a [`Registry`] outside the configuration snapshot, so it survives reloads.

pub mod attempts;
pub mod balance;
pub mod budget;
pub mod endpoint;
pub mod hash;

pub use attempts::Attempts;
pub use balance::{Balance, NoTarget};

use crate::config::{Endpoint, Provider};
use budget::RetryBudget;
use dashmap::DashMap;
use endpoint::EndpointState;
use std::sync::{Arc, OnceLock};

/// The most targets (endpoints, over all providers) one route may have: a request's tried and
/// allowed sets are 64-bit masks.
pub const MAX_TARGETS: usize = 64;

/// Provider statuses that move a request to another target by default.
pub const DEFAULT_RETRY_ON: [u16; 6] = [429, 500, 502, 503, 504, 529];

/// One endpoint of one provider, as a route's destination.
#[derive(Debug)]
pub struct Target {
    pub provider: Arc<Provider>,
    endpoint: usize,
    /// The model name this target knows the model by; `None`: the requested name.
    pub upstream_model: Option<Arc<str>>,
    /// Share of traffic among targets of the same priority.
    pub weight: u32,
    /// Lower is tried first.
    pub priority: u32,
    /// Hash of `provider|endpoint`, for session affinity's rendezvous scores.
    pub hash: u64,
    /// Bound to the registry's state on first use (one lookup per target and snapshot).
    state: OnceLock<Arc<EndpointState>>,
}

impl Target {
    pub fn new(
        provider: Arc<Provider>,
        endpoint: usize,
        upstream_model: Option<Arc<str>>,
        weight: u32,
        priority: u32,
    ) -> Self {
        let id = format!("{}|{}", provider.name, provider.endpoints[endpoint].id);
        Self {
            hash: hash::of(id.as_bytes()),
            provider,
            endpoint,
            upstream_model,
            weight,
            priority,
            state: OnceLock::new(),
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.provider.endpoints[self.endpoint]
    }

    pub fn state(&self, registry: &Registry) -> &Arc<EndpointState> {
        self.state
            .get_or_init(|| registry.endpoint(&self.provider.name, &self.endpoint().id))
    }
}

/// How a route fails over (`max_attempts`, `retry_on`, `retry_budget`) and balances.
#[derive(Debug, Clone)]
pub struct Policy {
    pub balance: Balance,
    pub max_attempts: u32,
    pub retry_on: Vec<u16>,
    pub retry_ratio: f64,
    /// Keep a session (`x-sluice-session`, else the user) on one endpoint while it is healthy
    /// and not overloaded.
    pub affinity: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            balance: Balance::LeastOutstanding,
            max_attempts: 3,
            retry_on: DEFAULT_RETRY_ON.to_vec(),
            retry_ratio: 0.2,
            affinity: false,
        }
    }
}

/// A route's destinations and how it chooses among them.
#[derive(Debug)]
pub struct Pool {
    /// Sorted by priority (best first), config order within a priority.
    pub targets: Vec<Target>,
    pub policy: Policy,
    /// The protocol every target speaks (validated to be one).
    pub family: crate::api::Family,
    /// The model name every target shares, when they agree (`Some(None)`: all send the
    /// requested name): the body is then rewritten once at admission, never per attempt.
    pub common_model: Option<Option<Arc<str>>>,
    budget: OnceLock<Arc<RetryBudget>>,
}

impl Pool {
    pub fn new(mut targets: Vec<Target>, policy: Policy, family: crate::api::Family) -> Self {
        targets.sort_by_key(|t| t.priority);
        let first = targets.first().map(|t| t.upstream_model.clone());
        let common_model = first.filter(|m| targets.iter().all(|t| t.upstream_model == *m));
        Self {
            targets,
            policy,
            family,
            common_model,
            budget: OnceLock::new(),
        }
    }

    /// The first target (best priority): what a route is labelled by before one is picked.
    pub fn primary(&self) -> &Target {
        &self.targets[0]
    }

    pub fn budget(&self, registry: &Registry, route: &str) -> &Arc<RetryBudget> {
        self.budget.get_or_init(|| registry.budget(route))
    }

    /// The targets `org` may reach (its region, its credentials), as a mask over `targets`;
    /// and whether some target was left out only for its region.
    pub fn reach(
        &self,
        regions: Option<&[Arc<str>]>,
        has_credential: impl Fn(&Provider) -> bool,
    ) -> Reach {
        let mut reach = Reach::default();
        for (i, t) in self.targets.iter().enumerate() {
            if !has_credential(&t.provider) {
                continue;
            }
            let in_region = regions.is_none_or(|rs| {
                t.provider
                    .region
                    .as_ref()
                    .is_some_and(|r| rs.iter().any(|x| x == r))
            });
            if in_region {
                reach.mask |= 1 << i;
            } else {
                reach.out_of_region = true;
            }
        }
        reach
    }
}

/// Which targets of a pool one org may use.
#[derive(Debug, Default, Clone, Copy)]
pub struct Reach {
    pub mask: u64,
    /// Some target the org has a credential for is outside its region.
    pub out_of_region: bool,
}

/// The state of every endpoint and route budget ever configured, keyed by name, shared by
/// all snapshots. Entries are never removed: they are bounded by the endpoints and routes the
/// configurations named, a few hundred bytes each, and a removed endpoint that comes back
/// resumes its health.
#[derive(Debug, Default)]
pub struct Registry {
    endpoints: DashMap<String, Arc<EndpointState>>,
    budgets: DashMap<String, Arc<RetryBudget>>,
}

impl Registry {
    pub fn endpoint(&self, provider: &str, endpoint: &str) -> Arc<EndpointState> {
        self.endpoints
            .entry(format!("{provider}|{endpoint}"))
            .or_default()
            .clone()
    }

    pub fn budget(&self, route: &str) -> Arc<RetryBudget> {
        self.budgets.entry(route.to_string()).or_default().clone()
    }
}
