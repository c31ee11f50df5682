//! Per-scope rate, token and concurrency limits, checked once per request before proxying.
//!
//! A request names its scopes (org, key, org × model) with the `Limits` of each from the current
//! configuration snapshot; [`Limiter::admit`] checks all of them and takes one request, the
//! reserved tokens and one in-flight slot in every scope that limits that kind:
//!
//! - **requests** per period: governor's GCRA (see `requests.rs` for its exact properties);
//! - **tokens** per period: a lock-free token bucket that can refund and go into debt
//!   (`tokens.rs`), reserved at admission and settled with [`Reservation::settle`];
//! - **concurrency**: an atomic in-flight counter released when [`Admitted`] is dropped.
//!
//! State lives in a `DashMap<Scope, Arc<Entry>>` independent of the configuration: the quota to
//! apply comes with each call, and a changed quota converts the state without refilling it
//! (`entry.rs`). [`Limiter::evict_idle`] drops entries that are indistinguishable from fresh
//! ones. Everything reads one [`Clock`], so [`crate::clock::FakeClock`] drives it all in tests.

mod admission;
mod entry;
mod quota;
mod requests;
mod tokens;
mod window;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_props;
#[cfg(test)]
mod tests_state;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;

pub use admission::{Admitted, LimitKind, Refusal, Reservation, Slots};
pub use quota::Quota;
pub use window::{RateInfo, Window};

use crate::clock::{duration_nanos, Clock};
use entry::Entry;

/// The entries of one request's scopes (org, key, org × model: at most three today), kept inline
/// so admitting a request allocates nothing.
type Entries = smallvec::SmallVec<[Arc<Entry>; 3]>;
use requests::Refused;
use tokens::Short;

/// The limits of one scope; the default is no limit at all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub requests: Option<Quota>,
    pub tokens: Option<Quota>,
    pub concurrent: Option<u32>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.requests.is_none() && self.tokens.is_none() && self.concurrent.is_none()
    }
}

/// What a limit applies to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Org(Arc<str>),
    /// A virtual key by its `key_…` id (never the secret).
    Key(Arc<str>),
    OrgModel(Arc<str>, Arc<str>),
}

/// Which kind of scope a limit applies to, without whose it is (the `scope=` label in metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScopeKind {
    Org,
    Key,
    OrgModel,
}

impl ScopeKind {
    pub const ALL: [ScopeKind; 3] = [ScopeKind::Org, ScopeKind::Key, ScopeKind::OrgModel];

    pub fn label(self) -> &'static str {
        match self {
            ScopeKind::Org => "org",
            ScopeKind::Key => "key",
            ScopeKind::OrgModel => "org_model",
        }
    }
}

impl Scope {
    pub fn kind(&self) -> ScopeKind {
        match self {
            Scope::Org(_) => ScopeKind::Org,
            Scope::Key(_) => ScopeKind::Key,
            Scope::OrgModel(..) => ScopeKind::OrgModel,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Org(org) => write!(f, "org {org}"),
            Scope::Key(key) => write!(f, "key {key}"),
            Scope::OrgModel(org, model) => write!(f, "org {org} model {model}"),
        }
    }
}

/// The retry hint of a concurrency refusal (see [`Refusal::retry_after`]).
pub const CONCURRENCY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// All scopes' limiter state; shared by every worker thread.
///
/// Scopes hash with the standard library's SipHash: slower than a non-keyed hash, but model
/// names come from requests and a keyed hash keeps the map safe from collision flooding.
/// Call [`Limiter::evict_idle`] periodically (e.g. once a minute); it write-locks each shard
/// of the map in turn, briefly.
#[derive(Debug)]
pub struct Limiter {
    entries: DashMap<Scope, Arc<Entry>>,
    clock: Arc<dyn Clock>,
}

impl Limiter {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            entries: DashMap::new(),
            clock,
        }
    }

    fn entry(&self, scope: &Scope) -> Arc<Entry> {
        if let Some(entry) = self.entries.get(scope) {
            return entry.clone();
        }
        self.entries
            .entry(scope.clone())
            .or_insert_with(|| Arc::new(Entry::new(&self.clock)))
            .clone()
    }

    /// Checks every scope's limits; on success takes one request, `reserve_tokens` tokens and
    /// one concurrency slot in every scope that has such a limit. On refusal nothing stays taken.
    ///
    /// Order: concurrency and tokens of every scope first (both can be given back), governor's
    /// requests last, so a refusal for concurrency or tokens never spends a request. A request
    /// cell taken in a scope before a later scope refused its request is given back too (an exact
    /// inverse of GCRA's step on our readable state cell); the one residue is that a concurrent
    /// admission in that scope may have been refused in the instant the cell was held.
    /// A token reservation is admitted when the bucket holds at least `min(reserve_tokens,
    /// capacity)`, so a request bigger than the whole quota passes a full bucket and leaves it
    /// in debt; with `reserve_tokens == 0` a scope in debt still refuses. The same reservation
    /// is charged to every token-limited scope. An in-flight slot is counted only in scopes that
    /// had a concurrency limit at admission, so a limit added by a reload does not count
    /// requests already running.
    #[expect(
        clippy::result_large_err,
        reason = "`Admitted` is larger than `Refusal`, so boxing the refusal would not shrink the \
                  `Result`; it would only add an allocation to the refused path"
    )]
    pub fn admit(
        &self,
        scopes: &[(Scope, &Limits)],
        reserve_tokens: u64,
    ) -> Result<Admitted, Refusal> {
        let mut slots = Slots::default();
        let mut reserved = Entries::new();
        // The entries of the scopes that have limits, in order.
        let mut entries = Entries::new();
        let now = duration_nanos(self.clock.monotonic());
        let mut refusal: Option<(LimitKind, usize, Duration)> = None;
        let mut info = RateInfo::default();

        for (i, (scope, limits)) in scopes.iter().enumerate() {
            if limits.is_empty() {
                continue;
            }
            let entry = self.entry(scope);
            if let Some(limit) = limits.concurrent {
                if !entry.try_acquire(limit) {
                    refusal = Some((LimitKind::Concurrency, i, CONCURRENCY_RETRY_AFTER));
                    break;
                }
                slots.entries.push(entry.clone());
            }
            if let Some(quota) = limits.tokens {
                let taken = entry.with_tokens(quota, |b| match b.try_take(reserve_tokens, now) {
                    Ok(()) => Some(Ok(b.window(now))),
                    Err(Short::Wait(wait)) => Some(Err(wait)),
                    Err(Short::Retired) => None,
                });
                match taken {
                    Ok(window) => {
                        if let Some(window) = window {
                            info.merge_tokens(window);
                        }
                        reserved.push(entry.clone());
                    }
                    Err(wait) => {
                        refusal = Some((LimitKind::Tokens, i, wait));
                        break;
                    }
                }
            }
            entries.push(entry);
        }

        // Requests last: governor's cells are the only part that cannot be refunded by
        // construction (see `RequestBucket::give_back` for how we still return them).
        let with_limits = || scopes.iter().enumerate().filter(|(_, s)| !s.1.is_empty());
        let mut taken_requests = 0;
        if refusal.is_none() {
            for ((i, (_, limits)), entry) in with_limits().zip(entries.iter()) {
                let Some(quota) = limits.requests else {
                    continue;
                };
                // The window is read after governor took the cell, on a clock reading at least
                // as late as governor's own: the admission-time `now` is earlier, and a window
                // read with it under-reported the remaining requests by one.
                let checked = entry.with_requests(quota, |b| match b.check() {
                    Ok(remaining) => Some(Ok((remaining, b.window(entry.now_ns())))),
                    Err(Refused::Wait(wait)) => Some(Err(wait)),
                    Err(Refused::Retired) => None,
                });
                match checked {
                    Ok((remaining, window)) => {
                        if let Some(mut window) = window {
                            // governor's own count, measured at the instant it took the cell.
                            window.remaining = remaining;
                            info.merge_requests(window);
                        }
                        taken_requests = i + 1;
                    }
                    Err(wait) => {
                        refusal = Some((LimitKind::Requests, i, wait));
                        break;
                    }
                }
            }
        }

        if let Some((kind, i, retry_after)) = refusal {
            for ((j, (_, limits)), entry) in with_limits().zip(entries.iter()) {
                if j < taken_requests && limits.requests.is_some() {
                    entry.give_back_request();
                }
            }
            for entry in reserved.iter() {
                entry.adjust_tokens(-i128::from(reserve_tokens));
            }
            drop(slots);
            return Err(Refusal {
                kind,
                scope: scopes[i].0.clone(),
                retry_after,
                info: self.peek(scopes),
            });
        }

        Ok(Admitted {
            info,
            reservation: Reservation {
                entries: reserved,
                charged: reserve_tokens,
            },
            slots,
        })
    }

    /// The tightest windows of these scopes now, without taking anything. Scopes never seen
    /// report full windows.
    pub fn peek(&self, scopes: &[(Scope, &Limits)]) -> RateInfo {
        let mut info = RateInfo::default();
        for (scope, limits) in scopes {
            let Some(entry) = self.entries.get(scope).map(|e| e.clone()) else {
                // Never seen (or evicted): indistinguishable from full buckets.
                if let Some(quota) = limits.requests {
                    info.merge_requests(Window::full(quota.amount.min(u64::from(u32::MAX))));
                }
                if let Some(quota) = limits.tokens {
                    info.merge_tokens(Window::full(quota.amount));
                }
                continue;
            };
            let now = entry.now_ns();
            if let Some(quota) = limits.requests {
                if let Some(w) = entry.with_requests(quota, |b| b.window(now).map(Some)) {
                    info.merge_requests(w);
                }
            }
            if let Some(quota) = limits.tokens {
                if let Some(w) = entry.with_tokens(quota, |b| b.window(now).map(Some)) {
                    info.merge_tokens(w);
                }
            }
        }
        info
    }

    /// Drops state that is indistinguishable from a fresh one (buckets full, nothing in flight,
    /// held by nobody else); returns how many entries were dropped.
    pub fn evict_idle(&self) -> usize {
        let now = duration_nanos(self.clock.monotonic());
        let mut dropped = 0;
        // Under the shard's write lock nobody can clone an entry out of the map, so a strong
        // count of 1 cannot grow while we decide.
        self.entries.retain(|_, entry| {
            let keep = Arc::strong_count(entry) > 1 || !entry.is_idle(now);
            dropped += usize::from(!keep);
            keep
        });
        dropped
    }

    /// The number of scope entries held.
    pub fn tracked(&self) -> usize {
        self.entries.len()
    }

    /// Requests in flight in `scope` (0 when it is not tracked).
    pub fn in_flight(&self, scope: &Scope) -> u32 {
        self.entries.get(scope).map_or(0, |e| {
            e.in_flight.load(std::sync::atomic::Ordering::Acquire)
        })
    }
}
