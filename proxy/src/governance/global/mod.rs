//! Limits shared by every replica through Redis, with local leases so the request path does not
//! wait on Redis in the common case (`[limits] backend = "redis"`).
//!
//! Requests and tokens are counted in fixed windows of the quota's period on Redis's clock. A
//! replica leases a slice of cells from the scope's window with one atomic script, admits from it
//! with one atomic decrement ([`slice`]), and refills in the background when it runs below half
//! of its target, which follows its recent demand. Cells are charged to the window when leased,
//! so the fleet never admits more than the quota in a window; what it can leave unused is the
//! cells replicas hold when the window ends (at most `replicas × max slice`, see
//! ARCHITECTURE.md). Unused cells go back when a slice idles and at shutdown; a crashed
//! replica's die with their window. Concurrency is a lease of slots per replica with a TTL
//! ([`slots`]). Budgets: settled spend is added to a per-org counter in Redis by the same
//! background task, whose totals raise the local spend figures.
//!
//! The request path only reads atomics here; a request whose slice is empty returns
//! [`Outcome::Pending`] and waits at most `limits.wait` for the lease (in `Governance`).

pub mod slice;
pub mod slots;
pub mod store;
mod worker;

use crate::clock::{duration_nanos, Clock};
use crate::config::RedisSettings;
use crate::governance::budgets::Spend;
use crate::governance::limits::{
    LimitKind, Limits, Quota, RateInfo, Scope, Window, CONCURRENCY_RETRY_AFTER,
};
use dashmap::DashMap;
use slice::{Grant, Short, Slice};
use slots::{Full, SlotLease};
use smallvec::SmallVec;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::Store;
use tokio::sync::{mpsc, Notify};

pub use worker::run;

/// A slice never exceeds this share of a window per replica: `amount / (SHARE × replicas)`.
/// Smaller slices leave less unused when a window ends, larger ones need fewer leases.
const SHARE: u64 = 8;

/// Background work the request path asks for.
#[derive(Debug)]
enum Job {
    Refill(Arc<Slice>),
    /// Unused cells of a window (count, window) to return.
    GiveBack(Arc<Slice>, (u64, u64)),
    Renew(Arc<SlotLease>),
}

/// The Redis-backed limit state of this replica.
#[derive(Debug)]
pub struct Global {
    /// This replica's name in concurrency leases (random per process).
    replica: String,
    store: Store,
    settings: RedisSettings,
    slices: DashMap<(Scope, char, Duration), Arc<Slice>>,
    leases: DashMap<Scope, Arc<SlotLease>>,
    /// Spend settled here and not yet added to Redis, per org with a budget.
    unsent: DashMap<Arc<str>, AtomicU64>,
    spend: Arc<Spend>,
    up: AtomicBool,
    /// The configured replicas (follows reloads): sizes the largest slice.
    replicas: AtomicU32,
    jobs: mpsc::UnboundedSender<Job>,
    /// Taken once by the worker.
    inbox: Mutex<Option<mpsc::UnboundedReceiver<Job>>>,
    clock: Arc<dyn Clock>,
}

/// The outcome of [`Global::admit`].
#[derive(Debug)]
pub enum Outcome {
    Admitted(Shared),
    Refused {
        kind: LimitKind,
        /// Index of the refusing scope.
        scope: usize,
        retry_after: Duration,
        info: RateInfo,
    },
    /// A slice or lease was empty; a refill is on its way and signals this.
    Pending(Arc<Notify>),
    /// Redis is unreachable: the org's policy decides.
    Down,
}

/// What an admitted request holds in the shared limits: its concurrency slots (released on
/// drop) and its token reservation with the grants it came from.
#[derive(Debug, Default)]
pub struct Shared {
    pub info: RateInfo,
    tokens: SmallVec<[(Arc<Slice>, Arc<Grant>); 3]>,
    requests: SmallVec<[(Arc<Slice>, Arc<Grant>); 3]>,
    slots: SmallVec<[Arc<SlotLease>; 3]>,
    charged: u64,
}

impl Drop for Shared {
    fn drop(&mut self) {
        for lease in &self.slots {
            lease.release();
        }
    }
}

impl Shared {
    /// Sets what the request is charged in total: a refund goes back to the grant it came from,
    /// more is taken from the current grant or becomes debt charged to Redis with the next lease.
    pub fn settle(&mut self, total: u64, now: Duration) {
        let now = duration_nanos(now);
        if total < self.charged {
            for (_, grant) in &self.tokens {
                Slice::give_back(grant, self.charged - total);
            }
        } else if total > self.charged {
            for (slice, grant) in &self.tokens {
                slice.charge_more(grant, total - self.charged, now);
            }
        }
        self.charged = total;
    }

    /// Undoes the takes of a request that another scope refused.
    fn undo(mut self) {
        for (_, grant) in self.tokens.drain(..) {
            Slice::give_back(&grant, self.charged);
        }
        for (_, grant) in self.requests.drain(..) {
            Slice::give_back(&grant, 1);
        }
        // Dropping releases the slots.
    }
}

impl Global {
    pub fn new(
        settings: &RedisSettings,
        spend: Arc<Spend>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, store::StoreError> {
        let (jobs, inbox) = mpsc::unbounded_channel();
        Ok(Self {
            replica: uuid::Uuid::now_v7().to_string(),
            store: Store::new(settings)?,
            settings: settings.clone(),
            slices: DashMap::new(),
            leases: DashMap::new(),
            unsent: DashMap::new(),
            spend,
            up: AtomicBool::new(true),
            replicas: AtomicU32::new(1),
            jobs,
            inbox: Mutex::new(Some(inbox)),
            clock,
        })
    }

    fn now(&self) -> u64 {
        duration_nanos(self.clock.monotonic())
    }

    /// Whether Redis answered the last call.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    fn slice(&self, scope: &Scope, kind: char, quota: Quota) -> Arc<Slice> {
        let key = (scope.clone(), kind, quota.period);
        if let Some(s) = self.slices.get(&key) {
            // Read first: a swap on every request would write a cache line all threads share.
            if s.amount.load(Ordering::Relaxed) != quota.amount
                && s.amount.swap(quota.amount, Ordering::AcqRel) != quota.amount
            {
                // A reload changed the quota: cells leased under the old one go back, so the
                // new quota applies from the next request on, on every replica.
                let back = s.drain();
                if back.0 > 0 {
                    let _ = self.jobs.send(Job::GiveBack(s.clone(), back));
                }
            }
            return s.clone();
        }
        self.slices
            .entry(key)
            .or_insert_with(|| {
                let name = store::window_key(scope, kind, quota.period);
                Arc::new(Slice::new(name, quota.period, quota.amount))
            })
            .clone()
    }

    fn lease(&self, scope: &Scope, cap: u32) -> Arc<SlotLease> {
        if let Some(l) = self.leases.get(scope) {
            return l.clone();
        }
        self.leases
            .entry(scope.clone())
            .or_insert_with(|| Arc::new(SlotLease::new(store::slots_key(scope), cap)))
            .clone()
    }

    /// Asks the worker for a refill unless one is on its way.
    fn refill(&self, slice: &Arc<Slice>) {
        if !slice.busy.swap(true, Ordering::AcqRel) {
            let _ = self.jobs.send(Job::Refill(slice.clone()));
        }
    }

    fn renew(&self, lease: &Arc<SlotLease>) {
        if !lease.busy.swap(true, Ordering::AcqRel) {
            let _ = self.jobs.send(Job::Renew(lease.clone()));
        }
    }

    /// Checks every scope's limits against this replica's leases; on success takes one
    /// request, `reserve` tokens and one slot in every scope limiting that kind. Order as the
    /// local limiter: concurrency and tokens first, requests last; on refusal nothing stays
    /// taken.
    /// `waiting` holds the request's place in a concurrency lease's queue across its retries.
    pub fn admit(
        &self,
        scopes: &[(Scope, &Limits)],
        reserve: u64,
        replicas: u32,
        waiting: &mut Option<slots::Waiting>,
    ) -> Outcome {
        if !self.is_up() {
            return Outcome::Down;
        }
        if self.replicas.load(Ordering::Relaxed) != replicas {
            self.replicas.store(replicas, Ordering::Relaxed);
        }
        let now = self.now();
        let mut shared = Shared::default();
        shared.charged = reserve;
        let refuse = |shared: Shared, kind, scope, retry_after: Duration| {
            let info = shared.info;
            shared.undo();
            Outcome::Refused {
                kind,
                scope,
                retry_after,
                info,
            }
        };
        for (i, (scope, limits)) in scopes.iter().enumerate() {
            if let Some(cap) = limits.concurrent {
                let lease = self.lease(scope, cap);
                match lease.acquire(cap, now) {
                    Ok(()) => shared.slots.push(lease),
                    Err(Full::Spent) => {
                        return refuse(shared, LimitKind::Concurrency, i, CONCURRENCY_RETRY_AFTER)
                    }
                    Err(Full::Empty) => {
                        if waiting.is_none() {
                            *waiting = Some(lease.wait());
                        }
                        self.renew(&lease);
                        shared.undo();
                        return Outcome::Pending(lease.changed.clone());
                    }
                }
            }
            if let Some(quota) = limits.tokens {
                let slice = self.slice(scope, 't', quota);
                let taken = slice.take(reserve, now);
                shared.info.merge_tokens(window_of(&slice, now));
                match taken {
                    Ok((grant, low)) => {
                        if low {
                            self.refill(&slice);
                        }
                        shared.tokens.push((slice, grant));
                    }
                    Err(Short::Spent(wait)) => {
                        let wait = wait.min(quota.period);
                        return refuse(shared, LimitKind::Tokens, i, wait);
                    }
                    Err(Short::Empty) => {
                        self.refill(&slice);
                        shared.undo();
                        return Outcome::Pending(slice.changed.clone());
                    }
                }
            }
        }
        for (i, (scope, limits)) in scopes.iter().enumerate() {
            let Some(quota) = limits.requests else {
                continue;
            };
            let slice = self.slice(scope, 'r', quota);
            let taken = slice.take(1, now);
            shared.info.merge_requests(window_of(&slice, now));
            match taken {
                Ok((grant, low)) => {
                    if low {
                        self.refill(&slice);
                    }
                    shared.requests.push((slice, grant));
                }
                Err(Short::Spent(wait)) => {
                    return refuse(shared, LimitKind::Requests, i, wait.min(quota.period))
                }
                Err(Short::Empty) => {
                    self.refill(&slice);
                    shared.undo();
                    return Outcome::Pending(slice.changed.clone());
                }
            }
        }
        // Admitted: the request cells are spent for good.
        shared.requests.clear();
        Outcome::Admitted(shared)
    }

    /// Gives back every unused slice, ends every concurrency lease and sends the last spend
    /// (at shutdown, once requests have ended).
    pub async fn release(&self) {
        worker::release_all(self).await;
    }

    /// Remembers an org with a budget, so its global spend is read back even while this
    /// replica spends nothing.
    pub fn watch_budget(&self, org: &Arc<str>) {
        if !self.unsent.contains_key(org) {
            self.unsent.entry(org.clone()).or_default();
        }
    }

    /// Adds settled spend, sent to Redis by the worker.
    pub fn add_spend(&self, org: &Arc<str>, micro_usd: u64) {
        if micro_usd == 0 {
            return;
        }
        if let Some(v) = self.unsent.get(org) {
            v.fetch_add(micro_usd, Ordering::Relaxed);
            return;
        }
        self.unsent
            .entry(org.clone())
            .or_default()
            .fetch_add(micro_usd, Ordering::Relaxed);
    }

    /// The largest slice of a window of `amount` for one replica.
    fn max_slice(&self, amount: u64) -> u64 {
        let replicas = u64::from(self.replicas.load(Ordering::Relaxed).max(1));
        (amount / (SHARE * replicas)).max(1)
    }

    fn mark(&self, ok: bool, error: Option<&store::StoreError>) {
        let was = self.up.swap(ok, Ordering::AcqRel);
        if was != ok {
            crate::telemetry::limits::transition(ok);
            if ok {
                tracing::info!("shared limits: redis reachable again; leases resume");
            } else {
                let why = error.map(ToString::to_string).unwrap_or_default();
                tracing::warn!(
                    "shared limits: redis unreachable ({why}); each org's \
                     when_limits_unreachable policy applies until it is back"
                );
            }
        }
    }
}

/// What a slice knows of its window, for the rate-limit headers.
fn window_of(slice: &Slice, now: u64) -> Window {
    let (remaining, reset) = slice.window(now);
    Window {
        limit: slice.amount.load(Ordering::Relaxed),
        remaining,
        reset,
    }
}

/// A scope's limits as this replica's share while Redis is unreachable (`fail_open`): each
/// quota and cap divided by the replicas, rounded up, at least 1.
pub fn local_share(limits: &Limits, replicas: u32) -> Limits {
    let n = u64::from(replicas.max(1));
    let quota = |q: Quota| Quota {
        amount: q.amount.div_ceil(n).max(1),
        period: q.period,
    };
    Limits {
        requests: limits.requests.map(quota),
        tokens: limits.tokens.map(quota),
        concurrent: limits
            .concurrent
            .map(|c| c.div_ceil(replicas.max(1)).max(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_share_divides_every_limit_rounding_up() {
        let limits = Limits {
            requests: Some(Quota::parse("300/min").unwrap()),
            tokens: Some(Quota::parse("1000/min").unwrap()),
            concurrent: Some(10),
        };
        let share = local_share(&limits, 3);
        assert_eq!(share.requests.unwrap().amount, 100);
        assert_eq!(share.tokens.unwrap().amount, 334);
        assert_eq!(share.concurrent, Some(4));
        assert_eq!(local_share(&limits, 1), limits);
    }
}
