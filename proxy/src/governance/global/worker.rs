//! The one background task of the shared limits: runs the leases the request path asks for,
//! and every tick gives back idle slices, renews and shrinks concurrency leases, flushes token
//! debt, adds settled spend to Redis and, while Redis is down, probes it.

use super::{Global, Job, Slice, SlotLease};
use crate::governance::budgets::Period;
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

const TICK: Duration = Duration::from_millis(250);
/// Idle slices and leases are dropped every this many ticks (10 s): `retain` write-locks each
/// shard of the maps the request path reads.
const EVICT_EVERY: u32 = 40;

type Call = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs until the [`Global`] is gone. The lifecycle runs it on its background runtime.
pub async fn run(global: Weak<Global>) {
    let Some(mut inbox) = global
        .upgrade()
        .and_then(|g| g.inbox.lock().ok().and_then(|mut i| i.take()))
    else {
        return;
    };
    crate::telemetry::limits::publish();
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Calls run concurrently (one per slice at most, by its `busy` flag) on the one connection.
    let mut calls: FuturesUnordered<Call> = FuturesUnordered::new();
    let mut tick = 0u32;
    loop {
        tokio::select! {
            job = inbox.recv() => {
                let (Some(job), Some(g)) = (job, global.upgrade()) else { return };
                calls.push(match job {
                    Job::Refill(s) => Box::pin(async move { refill(&g, &s, None).await }),
                    Job::GiveBack(s, back) => Box::pin(async move { give_back(&g, &s, back).await }),
                    Job::Renew(l) => Box::pin(async move { renew(&g, &l, false).await }),
                });
            }
            _ = ticks.tick() => {
                let Some(g) = global.upgrade() else { return };
                tick = tick.wrapping_add(1);
                if tick % EVICT_EVERY == 0 {
                    evict(&g);
                }
                for call in housekeeping(g) {
                    calls.push(call);
                }
            }
            Some(()) = calls.next(), if !calls.is_empty() => {}
        }
    }
}

/// Drops the slices and leases nobody holds and that hold nothing.
fn evict(g: &Global) {
    let now = g.now();
    g.slices
        .retain(|_, s| Arc::strong_count(s) > 1 || !s.is_idle(now));
    g.leases
        .retain(|_, l| Arc::strong_count(l) > 1 || !l.is_idle());
}

/// The calls one tick starts.
fn housekeeping(g: Arc<Global>) -> Vec<Call> {
    let mut calls: Vec<Call> = Vec::new();
    if !g.is_up() {
        let g = g.clone();
        calls.push(Box::pin(async move {
            let result = tokio::time::timeout(g.settings.timeout, g.store.ping()).await;
            match result {
                Ok(Ok(())) => g.mark(true, None),
                Ok(Err(e)) => g.mark(false, Some(&e)),
                Err(_) => g.mark(
                    false,
                    Some(&super::store::StoreError::Timeout(g.settings.timeout)),
                ),
            }
        }));
        return calls;
    }
    let now = g.now();
    let idle = crate::clock::duration_nanos(g.settings.idle_return);
    let renew_every = crate::clock::duration_nanos(g.settings.lease_ttl / 3).min(idle);
    g.slices
        .retain(|_, s| Arc::strong_count(s) > 1 || !s.is_idle(now));
    g.leases
        .retain(|_, l| Arc::strong_count(l) > 1 || !l.is_idle());
    for s in g.slices.iter() {
        let idle_for = now.saturating_sub(s.last_used.load(Ordering::Relaxed));
        let has_cells = s.grant.load().cells.load(Ordering::Relaxed) > 0;
        let owes = s.debt.load(Ordering::Relaxed) > 0;
        if (idle_for >= idle && has_cells) || owes {
            if s.busy.swap(true, Ordering::AcqRel) {
                continue;
            }
            let (g, s) = (g.clone(), s.clone());
            calls.push(Box::pin(async move {
                let back = if idle_for >= idle {
                    Some(s.drain())
                } else {
                    None
                };
                refill(&g, &s, back).await;
            }));
        }
    }
    for l in g.leases.iter() {
        let held = l.held.load(Ordering::Acquire);
        let stale = now.saturating_sub(l.renewed.load(Ordering::Relaxed)) >= renew_every;
        if held > 0 && stale && !l.busy.swap(true, Ordering::AcqRel) {
            let (g, l) = (g.clone(), l.clone());
            calls.push(Box::pin(async move { renew(&g, &l, false).await }));
        }
    }
    if !g.unsent.is_empty() {
        calls.push(Box::pin(async move { sync_spend(&g).await }));
    }
    calls
}

/// One window lease for `s`: a refill sized by its demand, or (`back`) a give-back of unused
/// cells asking for none; either way any token debt is charged with it.
async fn refill(g: &Global, s: &Slice, back: Option<(u64, u64)>) {
    let now = g.now();
    let amount = s.amount.load(Ordering::Relaxed);
    let want = if back.is_some() {
        0
    } else {
        s.want(now, g.max_slice(amount))
    };
    let debt = s.debt.swap(0, Ordering::AcqRel);
    let call = g
        .store
        .lease(&s.key, s.period, amount, want, back.unwrap_or((0, 0)), debt);
    match tokio::time::timeout(g.settings.timeout, call).await {
        Ok(Ok(reply)) => {
            s.apply(&reply, want, now, g.now());
            crate::telemetry::limits::lease(true);
            g.mark(true, None);
        }
        failed => {
            // The debt is charged with a later lease; given-back cells are lost (under-admission
            // only, never over).
            s.debt.fetch_add(debt, Ordering::AcqRel);
            crate::telemetry::limits::lease(false);
            let error = match failed {
                Ok(Err(e)) => e,
                _ => super::store::StoreError::Timeout(g.settings.timeout),
            };
            g.mark(false, Some(&error));
        }
    }
    s.busy.store(false, Ordering::Release);
    s.changed.notify_waiters();
}

/// Returns cells drained from a slice outside its lease calls (a quota changed by a reload).
/// Runs beside any lease of the same slice: the script is atomic, and it asks for nothing.
async fn give_back(g: &Global, s: &Slice, back: (u64, u64)) {
    let amount = s.amount.load(Ordering::Relaxed);
    let call = g.store.lease(&s.key, s.period, amount, 0, back, 0);
    let ok = matches!(
        tokio::time::timeout(g.settings.timeout, call).await,
        Ok(Ok(_))
    );
    crate::telemetry::limits::lease(ok);
}

/// Renews (or, `release`, ends) a concurrency lease.
async fn renew(g: &Global, l: &SlotLease, release: bool) {
    let (demand, must) = if release { (0, 0) } else { l.want() };
    let cap = l.cap.load(Ordering::Relaxed);
    let call = g.store.slots(
        &l.key,
        &g.replica,
        demand.min(cap),
        must,
        cap,
        g.settings.lease_ttl,
    );
    match tokio::time::timeout(g.settings.timeout, call).await {
        Ok(Ok(held)) => {
            l.apply(held, demand, g.now());
            crate::telemetry::limits::lease(true);
            g.mark(true, None);
        }
        failed => {
            crate::telemetry::limits::lease(false);
            let error = match failed {
                Ok(Err(e)) => e,
                _ => super::store::StoreError::Timeout(g.settings.timeout),
            };
            g.mark(false, Some(&error));
        }
    }
    l.busy.store(false, Ordering::Release);
    l.changed.notify_waiters();
}

/// Adds every org's unsent spend to its day and month counters and raises the local figures
/// to the fleet's totals.
async fn sync_spend(g: &Global) {
    let now = SystemTime::now();
    let (day, _) = Period::Day.index(now);
    let (month, _) = Period::Month.index(now);
    let mut orgs = Vec::new();
    let mut adds = Vec::new();
    for entry in g.unsent.iter() {
        let delta = entry.value().swap(0, Ordering::AcqRel);
        orgs.push((entry.key().clone(), delta));
        adds.push((super::store::spend_key(entry.key(), 'd', day), delta));
        adds.push((super::store::spend_key(entry.key(), 'm', month), delta));
    }
    // A month and a day: long enough for both counters.
    let ttl = Duration::from_secs(32 * 86_400);
    match tokio::time::timeout(g.settings.timeout, g.store.add_spend(&adds, ttl)).await {
        Ok(Ok(totals)) if totals.len() == adds.len() => {
            for (i, (org, _)) in orgs.iter().enumerate() {
                g.spend.raise_to(org, Period::Day, now, totals[2 * i]);
                g.spend.raise_to(org, Period::Month, now, totals[2 * i + 1]);
            }
        }
        _ => {
            for (org, delta) in orgs {
                g.add_spend(&org, delta);
            }
        }
    }
}

/// At shutdown: gives back every slice's unused cells, ends every concurrency lease and sends
/// the last spend, each bounded by the call timeout.
pub(super) async fn release_all(g: &Global) {
    let mut calls = FuturesUnordered::new();
    for s in g.slices.iter() {
        let s = s.clone();
        calls.push(Box::pin(async move {
            let back = s.drain();
            if back.0 > 0 || s.debt.load(Ordering::Relaxed) > 0 {
                refill(g, &s, Some(back)).await;
            }
        }) as Pin<Box<dyn Future<Output = ()> + Send + '_>>);
    }
    for l in g.leases.iter() {
        let l = l.clone();
        calls.push(Box::pin(async move {
            if l.held.load(Ordering::Acquire) > 0 {
                renew(g, &l, true).await;
            }
        }));
    }
    calls.push(Box::pin(sync_spend(g)));
    while calls.next().await.is_some() {}
}
