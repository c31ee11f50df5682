//! Hot configuration reload: a fallible prepare (`config::load`) followed by an infallible swap.
//!
//! Requests already running keep the snapshot they took in `new_ctx` (their `Ctx` holds an
//! `Arc`), so a swap never changes a request half-way. Reloads are serialized by one process-wide
//! lock that also guards the generation number, so a SIGHUP and a file event arriving together
//! run one after the other and the generations they report are distinct and increasing.

use crate::config::{self, ConfigError, Env, Snapshot};
use crate::telemetry;
use arc_swap::ArcSwap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Generation of the snapshot being served: 1 for the one loaded at start, +1 per successful
/// reload. Holding this lock is what serializes reloads.
static GENERATION: Mutex<u64> = Mutex::new(1);

/// The generation currently served.
pub fn generation() -> u64 {
    *GENERATION.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reloads `path` into `current`: on success the new snapshot is served from the next request on
/// and its generation is returned; on failure `current` is untouched. Either way the outcome is
/// logged (file and error, never a secret) and counted in `sluice_config_reloads_total`.
pub fn reload(path: &Path, env: &dyn Env, current: &ArcSwap<Snapshot>) -> Result<u64, ConfigError> {
    // A panic while loading (a bug) must not disable reloads for good: the guarded value is a
    // plain counter that is never left half-updated, so a poisoned lock is safe to reuse.
    let mut generation = GENERATION.lock().unwrap_or_else(|e| e.into_inner());
    match config::load(path, env) {
        Ok(next) => {
            let old = current.load();
            for field in start_only_changes(&old, &next) {
                tracing::warn!(
                    "config reload from {}: {field} changed but applies only at start \
                     (restart or upgrade to apply it); the running value stays",
                    path.display()
                );
            }
            current.store(Arc::new(next));
            *generation += 1;
            telemetry::set_generation(*generation);
            telemetry::count_reload(true);
            tracing::info!(
                "config reloaded from {} (generation {})",
                path.display(),
                *generation
            );
            Ok(*generation)
        }
        Err(e) => {
            telemetry::count_reload(false);
            // `ConfigError` messages name files and entries, never secrets.
            tracing::warn!(
                "config reload from {} failed, keeping generation {}: {e}",
                path.display(),
                *generation
            );
            Err(e)
        }
    }
}

/// Settings that are read once at start, named as in the file, whose values differ.
pub fn start_only_changes(old: &Snapshot, new: &Snapshot) -> Vec<&'static str> {
    let (o, n) = (&old.server, &new.server);
    let mut changed = Vec::new();
    let mut check = |differs: bool, name: &'static str| {
        if differs {
            changed.push(name);
        }
    };
    check(o.listen != n.listen, "server.listen");
    check(o.threads != n.threads, "server.threads");
    check(o.admin_listen != n.admin_listen, "server.admin_listen");
    check(o.upgrade_sock != n.upgrade_sock, "server.upgrade_sock");
    check(o.pid_file != n.pid_file, "server.pid_file");
    check(o.grace_period != n.grace_period, "server.grace_period");
    check(
        o.shutdown_timeout != n.shutdown_timeout,
        "server.shutdown_timeout",
    );
    check(o.watch != n.watch, "server.watch");
    // body_timeout is read per request, from the request's snapshot; the rest are Pingora's.
    let (oc, nc) = (&o.connections, &n.connections);
    check(
        oc.header_timeout != nc.header_timeout,
        "server.connections.header_timeout",
    );
    check(
        oc.idle_timeout_secs != nc.idle_timeout_secs,
        "server.connections.idle_timeout",
    );
    check(oc.max != nc.max, "server.connections.max");
    check(old.usage.sink != new.usage.sink, "usage.sink");
    check(
        old.usage.queue_capacity != new.usage.queue_capacity,
        "usage.queue_capacity",
    );
    check(old.usage.ledger != new.usage.ledger, "ledger");
    // The connection and its leases are built once; quotas, the policy, `replicas` and `wait`
    // follow reloads.
    check(
        old.limits.redis != new.limits.redis,
        "limits (backend, url, username, password, timeout, lease_ttl, idle_return)",
    );
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NoEnv;
    use sluice_test_support::config::ONE_ROUTE;

    const KEY_A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const KEY_B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn text(digest: &str, extra_server: &str) -> String {
        format!(
            "[server]\nlisten = [\"127.0.0.1:1\"]\n{extra_server}\n\
             [usage]\nsink = \"none\"\n\
             {ONE_ROUTE}[[orgs]]\nid = \"o\"\n\
             [[keys]]\ndigest = \"{digest}\"\norg = \"o\"\n"
        )
    }

    fn digests(s: &Snapshot) -> Vec<String> {
        let mut v: Vec<String> = s.keys.values().map(|k| k.id.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn reload_swaps_on_success_and_keeps_the_old_snapshot_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text(KEY_A, "")).unwrap();
        let swap = ArcSwap::from_pointee(config::load(&path, &NoEnv).unwrap());
        let held = swap.load_full();
        let before = digests(&held);

        std::fs::write(&path, text(KEY_B, "")).unwrap();
        let g1 = reload(&path, &NoEnv, &swap).unwrap();
        assert_ne!(digests(&swap.load()), before, "new keys served");
        // A request that took the old snapshot still sees it.
        assert_eq!(digests(&held), before);

        std::fs::write(&path, "[server\n").unwrap();
        let served = swap.load_full();
        assert!(matches!(
            reload(&path, &NoEnv, &swap),
            Err(ConfigError::Parse { .. })
        ));
        std::fs::write(&path, text(KEY_A, "bogus = 1")).unwrap();
        assert!(
            reload(&path, &NoEnv, &swap).is_err(),
            "unknown field refused"
        );
        assert!(Arc::ptr_eq(&served, &swap.load_full()), "old snapshot kept");

        std::fs::write(&path, text(KEY_A, "")).unwrap();
        let g2 = reload(&path, &NoEnv, &swap).unwrap();
        assert!(g2 > g1, "generations increase ({g1} then {g2})");
        assert_eq!(digests(&swap.load()), before);
    }

    #[test]
    fn start_only_settings_are_reported() {
        let a = config::parse(&text(KEY_A, ""), "a", &NoEnv).unwrap();
        let b = config::parse(
            &text(KEY_A, "threads = 7\nmax_body_bytes = 10"),
            "b",
            &NoEnv,
        )
        .unwrap();
        // max_body_bytes is read per request: a reload applies it, so it is not reported.
        assert_eq!(start_only_changes(&a, &b), vec!["server.threads"]);
        assert!(start_only_changes(&a, &a).is_empty());
    }
}
