//! `sluice-proxy check`'s account of a valid configuration: each route's targets in the order
//! they are tried, their regions, and which orgs can reach the route (and why not).

use super::{Route, Snapshot};
use std::fmt::Write as _;

impl Snapshot {
    /// A human-readable explanation of every route, for operators reading `check`'s output.
    pub fn explain(&self) -> String {
        let mut out = String::new();
        let routes = self
            .models
            .iter()
            .map(|(name, r)| (&**name, r))
            .chain(self.glob_routes());
        let mut orgs: Vec<&str> = self.orgs.keys().map(|o| &**o).collect();
        orgs.sort_unstable();
        for (name, route) in routes {
            explain_route(&mut out, self, name, route, &orgs);
        }
        out
    }
}

fn explain_route(out: &mut String, snap: &Snapshot, name: &str, route: &Route, orgs: &[&str]) {
    let p = &route.pool.policy;
    let _ = writeln!(
        out,
        "model {name:?}: {} targets, balance {}{}, up to {} attempts, fails over on {:?}",
        route.pool.targets.len(),
        p.balance.as_str(),
        if p.affinity {
            " with session affinity"
        } else {
            ""
        },
        p.max_attempts,
        p.retry_on,
    );
    for t in &route.pool.targets {
        let _ = writeln!(
            out,
            "  priority {} weight {}: {} {} (region {}, model {})",
            t.priority,
            t.weight,
            t.provider.name,
            t.endpoint().id,
            t.provider.region.as_deref().unwrap_or("none"),
            t.upstream_model.as_deref().unwrap_or("as requested"),
        );
    }
    let mut reachable = Vec::new();
    let mut refused = Vec::new();
    for org in orgs {
        let reach = snap.reach(org, route);
        if reach.mask != 0 {
            reachable.push(format!("{org} ({} targets)", reach.mask.count_ones()));
        } else if reach.out_of_region {
            refused.push(format!("{org} (no target in its region)"));
        } else {
            refused.push(format!("{org} (no credential)"));
        }
    }
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    let _ = writeln!(out, "  reachable by: {}", list(&reachable));
    if !refused.is_empty() {
        let _ = writeln!(out, "  not reachable by: {}", list(&refused));
    }
}
