//! Series about the upstream pool: failed attempts, ejections and each endpoint's health.
//!
//! These are rare events (a failure, an ejection, a recovery), so the handles are looked up
//! when they happen rather than cached per endpoint.

use super::names::{UPSTREAM_EJECTIONS, UPSTREAM_ENDPOINT_UP, UPSTREAM_FAILED_ATTEMPTS};
use crate::routing::Target;

fn labels(t: &Target) -> Vec<metrics::Label> {
    vec![
        metrics::Label::new("provider", t.provider.name.to_string()),
        metrics::Label::new("endpoint", t.endpoint().id.to_string()),
    ]
}

/// An attempt on `t` failed; `reason`: connect, status, timeout or error.
pub fn failed_attempt(t: &Target, reason: &'static str) {
    let mut l = labels(t);
    l.push(metrics::Label::new("reason", reason));
    metrics::counter!(UPSTREAM_FAILED_ATTEMPTS, l).increment(1);
}

/// `t` was ejected (or re-ejected after a failed probe).
pub fn ejected(t: &Target) {
    metrics::counter!(UPSTREAM_EJECTIONS, labels(t)).increment(1);
    metrics::gauge!(UPSTREAM_ENDPOINT_UP, labels(t)).set(0.0);
}

/// `t` is taking traffic: first used by this process, or back from an ejection.
pub fn up(t: &Target) {
    metrics::gauge!(UPSTREAM_ENDPOINT_UP, labels(t)).set(1.0);
}

pub fn describe() {
    metrics::describe_counter!(
        UPSTREAM_FAILED_ATTEMPTS,
        "Upstream attempts that failed, by provider, endpoint and reason (connect, status, timeout, error)."
    );
    metrics::describe_counter!(
        UPSTREAM_EJECTIONS,
        "Endpoints ejected by passive health checks, by provider and endpoint."
    );
    metrics::describe_gauge!(
        UPSTREAM_ENDPOINT_UP,
        "1 while an endpoint takes traffic, 0 while it is ejected."
    );
}
