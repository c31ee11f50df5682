//! One endpoint's live state: load (requests and tokens in flight, latency), and passive health
//! (ejection with growing backoff, the half-open probe, a provider's cool-down).
//!
//! All of it is atomics, so the request path never takes a lock; the state is shared by every
//! snapshot that lists the endpoint and survives reloads (see [`super::Registry`]). Times are
//! the gateway clock's monotonic readings in milliseconds, so tests can fake them.

use crate::config::HealthPolicy;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Peak-EWMA decay time: how fast a latency spike is forgotten (linkerd uses 10 s).
const DECAY_MS: f64 = 10_000.0;
/// The latency assumed for an endpoint that has answered nothing yet: high enough that a
/// measured endpoint is not swamped, low enough that a new one gets tried.
const INITIAL_LATENCY_MS: f64 = 100.0;

/// Whether an endpoint may take a request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    Healthy,
    /// Ejected, its backoff over: one request may probe it.
    Probe,
    /// Ejected or cooling down until this monotonic time (ms).
    Down {
        until_ms: u64,
    },
}

#[derive(Debug, Default)]
pub struct EndpointState {
    /// Requests sent to it and not finished.
    outstanding: AtomicU32,
    /// Token reservations of those requests.
    tokens: AtomicU64,
    /// Peak-EWMA of the time to response headers, as `f64` bits; 0 means "no sample".
    ewma_bits: AtomicU64,
    /// When the EWMA was last updated (ms).
    ewma_at: AtomicU64,
    consecutive_failures: AtomicU32,
    /// Ejections in a row without a success in between (they lengthen the backoff).
    ejections: AtomicU32,
    /// Ejected until (ms); 0: not ejected.
    ejected_until: AtomicU64,
    /// A half-open probe is in flight.
    probing: AtomicBool,
    /// A provider asked (429 + `retry-after`) not to be called before this time (ms).
    cooling_until: AtomicU64,
}

impl EndpointState {
    pub fn availability(&self, now_ms: u64) -> Availability {
        let cooling = self.cooling_until.load(Relaxed);
        if cooling > now_ms {
            return Availability::Down { until_ms: cooling };
        }
        match self.ejected_until.load(Relaxed) {
            0 => Availability::Healthy,
            until if until > now_ms => Availability::Down { until_ms: until },
            _ if self.probing.load(Relaxed) => Availability::Down {
                // The probe's own outcome decides; another try in a backoff's time at most.
                until_ms: now_ms + 1000,
            },
            _ => Availability::Probe,
        }
    }

    /// Claims the half-open probe; `false` when another request took it first.
    pub fn claim_probe(&self) -> bool {
        self.probing
            .compare_exchange(false, true, Relaxed, Relaxed)
            .is_ok()
    }

    pub fn outstanding(&self) -> u32 {
        self.outstanding.load(Relaxed)
    }

    pub fn outstanding_tokens(&self) -> u64 {
        self.tokens.load(Relaxed)
    }

    /// Peak-EWMA load: latency × (requests in flight + 1), as linkerd and Finagle weigh it.
    pub fn load_cost(&self, now_ms: u64) -> f64 {
        self.latency_ms(now_ms) * f64::from(self.outstanding() + 1)
    }

    /// The decayed latency estimate.
    fn latency_ms(&self, now_ms: u64) -> f64 {
        let bits = self.ewma_bits.load(Relaxed);
        if bits == 0 {
            return INITIAL_LATENCY_MS;
        }
        let age = now_ms.saturating_sub(self.ewma_at.load(Relaxed)) as f64;
        f64::from_bits(bits) * (-age / DECAY_MS).exp()
    }

    /// A request starts on this endpoint.
    pub fn begin(&self, tokens: u64) {
        self.outstanding.fetch_add(1, Relaxed);
        self.tokens.fetch_add(tokens, Relaxed);
    }

    /// The request that [`begin`](Self::begin) counted ends.
    pub fn end(&self, tokens: u64) {
        self.outstanding.fetch_sub(1, Relaxed);
        self.tokens.fetch_sub(tokens, Relaxed);
    }

    /// Response headers arrived `latency` after the request was sent. Peak-EWMA: a slower
    /// sample replaces the estimate at once, a faster one is blended in by its age.
    pub fn observe_latency(&self, latency: Duration, now_ms: u64) {
        let sample = latency.as_secs_f64() * 1e3;
        let old = self.latency_ms(now_ms);
        let bits = self.ewma_bits.load(Relaxed);
        let next = if bits == 0 || sample > old {
            sample
        } else {
            let age = now_ms.saturating_sub(self.ewma_at.load(Relaxed)) as f64;
            let w = (-age / DECAY_MS).exp();
            old * w + sample * (1.0 - w)
        };
        // A lost race between two updates loses one sample, which an estimate can afford.
        self.ewma_bits
            .store(next.max(f64::MIN_POSITIVE).to_bits(), Relaxed);
        self.ewma_at.store(now_ms, Relaxed);
    }

    /// The endpoint answered well: it is healthy again (a successful probe ends an ejection).
    /// Returns whether this ended an ejection.
    pub fn succeeded(&self) -> bool {
        self.consecutive_failures.store(0, Relaxed);
        let was_ejected = self.ejected_until.swap(0, Relaxed) != 0;
        if was_ejected {
            self.ejections.store(0, Relaxed);
        }
        self.probing.store(false, Relaxed);
        was_ejected
    }

    /// The endpoint failed (connect error, timeout before headers, 5xx); `probe`: the request
    /// was its half-open probe. Returns whether this failure ejected it.
    pub fn failed(&self, policy: &HealthPolicy, now_ms: u64, probe: bool) -> bool {
        let failures = self.consecutive_failures.fetch_add(1, Relaxed) + 1;
        let ejected = self.ejected_until.load(Relaxed) != 0;
        // A failed probe re-ejects at once, for longer; otherwise the threshold decides.
        if probe {
            self.probing.store(false, Relaxed);
        }
        if !(probe || (!ejected && failures >= policy.eject_after)) {
            return false;
        }
        let n = self.ejections.fetch_add(1, Relaxed).min(16);
        let backoff = policy
            .backoff
            .saturating_mul(1 << n)
            .min(policy.max_backoff);
        self.ejected_until
            .store(now_ms + backoff.as_millis() as u64, Relaxed);
        true
    }

    /// The provider asked not to be called for `wait` (a 429 with `retry-after`).
    pub fn cool_down(&self, wait: Duration, now_ms: u64) {
        let until = now_ms + wait.as_millis() as u64;
        self.cooling_until.fetch_max(until, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> HealthPolicy {
        HealthPolicy {
            eject_after: 2,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(3),
            check: None,
        }
    }

    #[test]
    fn ejects_after_the_threshold_then_probes_once_and_recovers() {
        let e = EndpointState::default();
        assert!(!e.failed(&policy(), 0, false));
        assert!(e.failed(&policy(), 0, false));
        assert_eq!(e.availability(500), Availability::Down { until_ms: 1000 });
        assert_eq!(e.availability(1000), Availability::Probe);
        assert!(e.claim_probe());
        assert!(!e.claim_probe(), "one probe at a time");
        assert!(matches!(e.availability(1001), Availability::Down { .. }));
        e.succeeded();
        assert_eq!(e.availability(1001), Availability::Healthy);
    }

    #[test]
    fn a_failed_probe_doubles_the_backoff_up_to_the_cap() {
        let e = EndpointState::default();
        e.failed(&policy(), 0, false);
        e.failed(&policy(), 0, false); // ejected until 1000
        let mut now = 1000;
        for expected in [2000, 3000, 3000] {
            assert!(e.claim_probe());
            assert!(e.failed(&policy(), now, true));
            assert_eq!(
                e.availability(now),
                Availability::Down {
                    until_ms: now + expected
                }
            );
            now += expected;
        }
    }

    #[test]
    fn cool_down_holds_until_the_asked_time() {
        let e = EndpointState::default();
        e.cool_down(Duration::from_secs(2), 100);
        assert_eq!(e.availability(2099), Availability::Down { until_ms: 2100 });
        assert_eq!(e.availability(2100), Availability::Healthy);
    }

    #[test]
    fn peak_ewma_takes_a_spike_at_once_and_forgets_it_slowly() {
        let e = EndpointState::default();
        e.observe_latency(Duration::from_millis(10), 0);
        e.observe_latency(Duration::from_millis(500), 1);
        assert!(e.load_cost(1) > 499.0);
        e.observe_latency(Duration::from_millis(10), 20_000);
        let after = e.load_cost(20_000);
        assert!(after < 100.0 && after > 10.0, "{after}");
    }
}
