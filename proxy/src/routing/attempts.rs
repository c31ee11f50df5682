//! One request's attempts: which targets it may use and has tried, the one in flight (counted
//! on its endpoint until the attempt ends), and the decisions after a failure.

use super::balance::{self, NoTarget};
use super::endpoint::EndpointState;
use super::{Pool, Registry, Target};
use std::sync::Arc;
use std::time::Duration;

/// The attempt in flight: its load stays counted on the endpoint until this is dropped.
#[derive(Debug)]
struct Current {
    index: usize,
    state: Arc<EndpointState>,
    probe: bool,
    tokens: u64,
    /// When it was sent (ms), for the latency estimate.
    sent_ms: u64,
}

impl Drop for Current {
    fn drop(&mut self) {
        self.state.end(self.tokens);
    }
}

#[derive(Debug, Default)]
pub struct Attempts {
    /// Targets this request may use (its org's region and credentials).
    pub allowed: u64,
    tried: u64,
    /// Attempts made so far.
    pub count: u32,
    /// The request's token reservation (estimated input + output cap), counted on the
    /// endpoint of each attempt while it runs.
    pub tokens: u64,
    current: Option<Current>,
    /// The session's hash, when the route keeps sessions on one endpoint.
    pub affinity: Option<u64>,
    /// The model name the upstream body carries now (`None`: the requested one).
    pub body_model: Option<Arc<str>>,
    /// The response being answered is a failover (a retryable status), not a relay.
    pub failing_over: bool,
}

impl Attempts {
    /// Picks the target of the next attempt and counts it in flight there; the previous
    /// attempt's load is released first.
    pub fn next(
        &mut self,
        pool: &Pool,
        registry: &Registry,
        route: &str,
        now_ms: u64,
    ) -> Result<usize, NoTarget> {
        self.current = None;
        let picked = balance::pick(
            pool,
            self.allowed & !self.tried,
            registry,
            now_ms,
            self.affinity,
        )?;
        self.tried |= 1 << picked.index;
        self.count += 1;
        if self.count == 1 {
            pool.budget(registry, route).request(now_ms);
        }
        let state = pool.targets[picked.index].state(registry).clone();
        state.begin(self.tokens);
        self.current = Some(Current {
            index: picked.index,
            state,
            probe: picked.probe,
            tokens: self.tokens,
            sent_ms: now_ms,
        });
        self.failing_over = false;
        Ok(picked.index)
    }

    /// The target of the attempt in flight (or of the last one).
    pub fn target<'p>(&self, pool: &'p Pool) -> Option<&'p Target> {
        self.current.as_ref().map(|c| &pool.targets[c.index])
    }

    /// Response headers arrived and are not a failure: the endpoint is healthy. Returns
    /// whether that ended its ejection.
    pub fn answered(&self, now_ms: u64) -> bool {
        self.current.as_ref().is_some_and(|c| {
            c.state.observe_latency(
                Duration::from_millis(now_ms.saturating_sub(c.sent_ms)),
                now_ms,
            );
            c.state.succeeded()
        })
    }

    /// The attempt failed on the endpoint's side; returns whether that ejected the endpoint.
    pub fn failed(&mut self, pool: &Pool, now_ms: u64) -> bool {
        match &mut self.current {
            Some(c) => {
                let policy = &pool.targets[c.index].provider.health;
                let probe = std::mem::take(&mut c.probe);
                c.state.failed(policy, now_ms, probe)
            }
            None => false,
        }
    }

    /// The provider asked not to be called for `wait`.
    pub fn cool_down(&self, wait: Duration, now_ms: u64) {
        if let Some(c) = &self.current {
            c.state.cool_down(wait, now_ms);
        }
    }

    /// Whether the request may go to another target: attempts remain, one is available, and
    /// the route's retry budget grants it. `started`: bytes already reached the client, after
    /// which a failure is never retried.
    pub fn may_retry(
        &self,
        pool: &Pool,
        registry: &Registry,
        route: &str,
        now_ms: u64,
        started: bool,
    ) -> bool {
        !started
            && self.count < pool.policy.max_attempts
            && balance::available(pool, self.allowed & !self.tried, registry, now_ms).is_ok()
            && pool
                .budget(registry, route)
                .try_retry(pool.policy.retry_ratio, now_ms)
    }
}
