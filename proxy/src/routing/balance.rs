//! The pick: among the reachable, untried targets of the best priority that has a healthy
//! one, by the route's balancing rule. A target whose ejection has run out is given its
//! half-open probe first, so a recovered endpoint comes back without waiting for a lull.

use super::endpoint::Availability;
use super::{Pool, Registry};
use std::time::Duration;

/// How a target is chosen among the healthy ones of one priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// At random, in proportion to the weights.
    Weighted,
    /// Power of two choices on peak-EWMA latency × (requests in flight + 1), per weight.
    LeastOutstanding,
    /// The fewest reserved tokens in flight per weight: suits GPU workers, whose cost per
    /// request varies by orders of magnitude.
    LeastTokens,
}

impl Balance {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "weighted" => Some(Self::Weighted),
            "least_outstanding" => Some(Self::LeastOutstanding),
            "least_tokens" => Some(Self::LeastTokens),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Weighted => "weighted",
            Self::LeastOutstanding => "least_outstanding",
            Self::LeastTokens => "least_tokens",
        }
    }
}

/// Why no target can take the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoTarget {
    /// Every candidate is ejected or cooling down; the soonest is back after this long.
    AllDown { retry_after: Duration },
    /// No candidate is left (all tried, or none reachable).
    Exhausted,
}

/// The chosen target: its index in the pool, and whether the request is its probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Picked {
    pub index: usize,
    pub probe: bool,
}

/// Picks among the targets in `mask`. Allocation-free: a route has at most 64 targets, whose
/// indices fit a stack array.
/// `affinity`: the request's session hash, when the route keeps sessions on one endpoint.
pub fn pick(
    pool: &Pool,
    mask: u64,
    registry: &Registry,
    now_ms: u64,
    affinity: Option<u64>,
) -> Result<Picked, NoTarget> {
    let mut soonest: Option<u64> = None;
    let targets = &pool.targets;
    let mut at = 0;
    while at < targets.len() {
        let priority = targets[at].priority;
        let end = at + targets[at..].partition_point(|t| t.priority == priority);
        let mut healthy = [0usize; super::MAX_TARGETS];
        let mut n = 0;
        for i in (at..end).filter(|i| mask & (1 << i) != 0) {
            let state = targets[i].state(registry);
            match state.availability(now_ms) {
                Availability::Probe if state.claim_probe() => {
                    return Ok(Picked {
                        index: i,
                        probe: true,
                    })
                }
                Availability::Probe => {}
                Availability::Healthy => {
                    healthy[n] = i;
                    n += 1;
                }
                Availability::Down { until_ms } => {
                    soonest = Some(soonest.map_or(until_ms, |s| s.min(until_ms)));
                }
            }
        }
        if n > 0 {
            let healthy = &healthy[..n];
            let index = affinity
                .and_then(|key| sticky(pool, healthy, registry, key))
                .unwrap_or_else(|| choose(pool, healthy, registry, now_ms));
            return Ok(Picked {
                index,
                probe: false,
            });
        }
        at = end;
    }
    Err(none_available(soonest, now_ms))
}

/// Why nothing was found: every candidate down (`soonest`: the first back), or none left.
fn none_available(soonest: Option<u64>, now_ms: u64) -> NoTarget {
    match soonest {
        Some(until) => NoTarget::AllDown {
            retry_after: Duration::from_millis(until.saturating_sub(now_ms).max(1)),
        },
        None => NoTarget::Exhausted,
    }
}

/// Whether [`pick`] would find a target, without claiming a probe: admission's check.
pub fn available(pool: &Pool, mask: u64, registry: &Registry, now_ms: u64) -> Result<(), NoTarget> {
    let mut soonest: Option<u64> = None;
    for (i, t) in pool.targets.iter().enumerate() {
        if mask & (1 << i) == 0 {
            continue;
        }
        match t.state(registry).availability(now_ms) {
            Availability::Healthy | Availability::Probe => return Ok(()),
            Availability::Down { until_ms } => {
                soonest = Some(soonest.map_or(until_ms, |s| s.min(until_ms)));
            }
        }
    }
    Err(none_available(soonest, now_ms))
}

/// Load bound of session affinity: an endpoint keeps its sessions while it has at most this
/// factor times the average requests in flight (consistent hashing with bounded loads,
/// Mirrokni, Thorup and Zadimoghaddam, 2018).
const AFFINITY_LOAD_FACTOR: f64 = 1.25;

/// The session's endpoint: highest rendezvous score among the healthy ones (so a session moves
/// only when its endpoint leaves, and only its sessions move), skipping any over the load
/// bound. `None` only when every endpoint is over it, which the bound makes impossible.
fn sticky(pool: &Pool, healthy: &[usize], registry: &Registry, key: u64) -> Option<usize> {
    let targets = &pool.targets;
    let load = |i: usize| f64::from(targets[i].state(registry).outstanding());
    let total: f64 = healthy.iter().map(|&i| load(i)).sum();
    let bound = (AFFINITY_LOAD_FACTOR * (total + 1.0) / healthy.len() as f64).ceil();
    let mut ranked = [(0u64, 0usize); super::MAX_TARGETS];
    for (slot, &i) in ranked.iter_mut().zip(healthy) {
        *slot = (super::hash::mix(key, targets[i].hash), i);
    }
    let ranked = &mut ranked[..healthy.len()];
    ranked.sort_unstable_by_key(|r| std::cmp::Reverse(r.0));
    ranked.iter().map(|&(_, i)| i).find(|&i| load(i) < bound)
}

fn choose(pool: &Pool, healthy: &[usize], registry: &Registry, now_ms: u64) -> usize {
    if healthy.len() == 1 {
        return healthy[0];
    }
    let targets = &pool.targets;
    let weight = |i: usize| f64::from(targets[i].weight.max(1));
    match pool.policy.balance {
        Balance::Weighted => {
            let total: u64 = healthy.iter().map(|&i| u64::from(targets[i].weight)).sum();
            let mut r = fastrand::u64(0..total.max(1));
            for &i in healthy {
                let w = u64::from(targets[i].weight);
                if r < w {
                    return i;
                }
                r -= w;
            }
            healthy[healthy.len() - 1]
        }
        Balance::LeastOutstanding => {
            let a = fastrand::usize(0..healthy.len());
            let mut b = fastrand::usize(0..healthy.len() - 1);
            if b >= a {
                b += 1;
            }
            let cost = |i: usize| targets[i].state(registry).load_cost(now_ms) / weight(i);
            let (a, b) = (healthy[a], healthy[b]);
            if cost(b) < cost(a) {
                b
            } else {
                a
            }
        }
        Balance::LeastTokens => {
            // Ties go to a random one, so equal endpoints share the load.
            let start = fastrand::usize(0..healthy.len());
            let cost =
                |i: usize| targets[i].state(registry).outstanding_tokens() as f64 / weight(i);
            (0..healthy.len())
                .map(|k| healthy[(start + k) % healthy.len()])
                .min_by(|&x, &y| cost(x).total_cmp(&cost(y)))
                .unwrap_or(healthy[0])
        }
    }
}
