//! Active health checks: every endpoint of a provider with `health.check_path` is fetched
//! every `check_interval`, off the request path, on the lifecycle's background runtime. A
//! wrong status or no answer counts as a failure (ejecting past `eject_after`, as passive
//! failures do); a right one ends an ejection at once, without waiting for a probe.
//!
//! The endpoints come from the snapshot being served at each tick, so a reload adds and
//! removes checks by itself. Endpoints of one-target routes are not checked: a lone target is
//! never ejected (see ARCHITECTURE.md, "Upstream pools").

use crate::clock::Clock;
use crate::config::{ActiveCheck, Snapshot};
use crate::routing::{Registry, Target};
use crate::telemetry::upstream as series;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How often due checks are looked for; the finest `check_interval` that means anything.
const TICK: Duration = Duration::from_millis(50);

/// Runs until the registry (the gateway) is gone.
pub async fn run(config: Arc<ArcSwap<Snapshot>>, registry: Weak<Registry>, clock: Arc<dyn Clock>) {
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("active health checks are off: no HTTP client ({e})");
            return;
        }
    };
    // When each endpoint (by `provider|endpoint`) is next due, in monotonic milliseconds.
    let mut due: HashMap<String, u64> = HashMap::new();
    let mut ticks = tokio::time::interval(TICK);
    loop {
        ticks.tick().await;
        let Some(registry) = registry.upgrade() else {
            return;
        };
        let snapshot = config.load_full();
        let now = clock.monotonic().as_millis() as u64;
        let mut checks = Vec::new();
        let routes = snapshot.models.iter().map(|(_, r)| r);
        for route in routes.chain(snapshot.glob_routes().map(|(_, r)| r)) {
            if route.pool.targets.len() < 2 {
                continue;
            }
            for t in &route.pool.targets {
                let Some(check) = t.provider.health.check.as_ref() else {
                    continue;
                };
                let key = format!("{}|{}", t.provider.name, t.endpoint().id);
                let next = due.entry(key).or_insert(now);
                if *next <= now {
                    *next = now + check.interval.as_millis() as u64;
                    checks.push(probe(&client, t, check, &registry, &*clock));
                }
            }
        }
        futures_util::future::join_all(checks).await;
        let now = clock.monotonic().as_millis() as u64;
        // Forget endpoints no longer configured: an active one is never an hour overdue.
        due.retain(|_, next| *next + 3_600_000 > now);
    }
}

/// One check of one endpoint, and what it tells the endpoint's health.
async fn probe(
    client: &reqwest::Client,
    t: &Target,
    check: &ActiveCheck,
    registry: &Registry,
    clock: &dyn Clock,
) {
    let base = &t.endpoint().id;
    if base.contains("{model}") {
        return; // a per-model URL has no one path to check
    }
    let url = format!("{base}{}", check.path);
    // No answer within the interval (or the connect timeout, if shorter) is a failure.
    let timeout = check
        .interval
        .min(t.provider.timeouts.connect.max(Duration::from_millis(100)));
    let healthy = match client.get(&url).timeout(timeout).send().await {
        Ok(resp) => resp.status().as_u16() == check.status,
        Err(_) => false,
    };
    let state = t.state(registry);
    if healthy {
        if state.succeeded() {
            series::up(t);
        }
    } else {
        series::failed_attempt(t, "check");
        let now = clock.monotonic().as_millis() as u64;
        if state.failed(&t.provider.health, now, false) {
            series::ejected(t);
        }
    }
}
