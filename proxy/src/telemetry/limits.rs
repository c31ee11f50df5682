//! Series about the shared limits (Redis): whether it is reachable, its lease calls, and the
//! requests its unreachability handed to an org's policy. All are rare or background events.

use super::names::{
    LIMITS_BACKEND_TRANSITIONS, LIMITS_BACKEND_UP, LIMITS_FALLBACKS, LIMITS_LEASES,
};

/// Redis is reachable (`true`) or not.
pub fn backend(up: bool) {
    metrics::gauge!(LIMITS_BACKEND_UP).set(if up { 1.0 } else { 0.0 });
}

/// Redis became reachable (`true`) or unreachable: counted, and the gauge follows.
pub fn transition(up: bool) {
    let to = if up { "up" } else { "down" };
    metrics::counter!(LIMITS_BACKEND_TRANSITIONS, "to" => to).increment(1);
    backend(up);
}

/// One lease call ended (`ok` or failed).
pub fn lease(ok: bool) {
    let result = if ok { "ok" } else { "error" };
    metrics::counter!(LIMITS_LEASES, "result" => result).increment(1);
}

/// A request was decided by the org's `when_limits_unreachable` policy.
pub fn fallback(policy: &'static str) {
    metrics::counter!(LIMITS_FALLBACKS, "policy" => policy).increment(1);
}

/// Publishes every series at its starting value when the Redis backend starts, so dashboards
/// and alerts see them before the first event.
pub fn publish() {
    backend(true);
    for result in ["ok", "error"] {
        metrics::counter!(LIMITS_LEASES, "result" => result).increment(0);
    }
    for policy in ["fail_open", "fail_closed"] {
        metrics::counter!(LIMITS_FALLBACKS, "policy" => policy).increment(0);
    }
}

pub fn describe() {
    metrics::describe_gauge!(
        LIMITS_BACKEND_UP,
        "1 while the shared limits' Redis answers, 0 while it is unreachable (backend = redis only)."
    );
    metrics::describe_counter!(
        LIMITS_BACKEND_TRANSITIONS,
        "Times the shared limits' Redis became unreachable (to=down) or reachable again (to=up)."
    );
    metrics::describe_counter!(
        LIMITS_LEASES,
        "Lease calls to Redis (window slices, concurrency leases), by result."
    );
    metrics::describe_counter!(
        LIMITS_FALLBACKS,
        "Requests decided by an org's when_limits_unreachable policy while Redis was unreachable, by policy."
    );
}
