//! Governance of admitted traffic: budgets and limits at admission, token settlement while the
//! answer streams, and charging at the end. State lives here, outside the configuration
//! snapshot, so it survives reloads; the quotas themselves come from the request's snapshot.

pub mod budgets;
pub mod global;
pub mod headers;
pub mod limits;
pub mod suspensions;

use crate::clock::Clock;
use crate::config::{LimitsSettings, Org, RedisSettings, Route, Unreachable, VirtualKey};
use crate::errors::GatewayError;
use budgets::Spend;
use global::{Global, Outcome, Shared};
use limits::{LimitKind, Limiter, Limits, RateInfo, Scope};
use smallvec::SmallVec;
use std::sync::{Arc, Weak};
use std::time::Duration;
use suspensions::Suspensions;

/// How often idle limiter entries and past budget periods are dropped.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(10);

/// The retry hint of a `fail_closed` refusal while Redis is unreachable.
const UNREACHABLE_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The scopes of one request with their limits (org, org × model, key: at most three, kept
/// inline so admitting a request allocates nothing).
type Scopes<'a> = SmallVec<[(Scope, &'a Limits); 3]>;

#[derive(Debug)]
pub struct Governance {
    pub limiter: Limiter,
    /// Shared with the ledger's spend feed, which raises it to the global figures.
    pub spend: Arc<Spend>,
    /// Shared with the spend feed too, which lists the suspended keys and orgs.
    pub suspensions: Arc<Suspensions>,
    /// The limits shared by every replica (`[limits] backend = "redis"`); `None`: local.
    pub global: Option<Arc<Global>>,
    clock: Arc<dyn Clock>,
}

/// What one admitted request holds until it ends: its concurrency slots (released on drop) and
/// its token reservation, in the local limiter or in the shared one.
#[derive(Debug)]
pub struct Held {
    admitted: Option<crate::governance::limits::Admitted>,
    shared: Option<Shared>,
    /// Output tokens reserved (the request's cap, or the route's default).
    max_output: u64,
    input_settled: bool,
    /// Estimated input plus the output cap: the request's work in tokens, whether or not a
    /// limit charges it.
    tokens: u64,
}

impl Held {
    /// Whether the real input count would still change the reservation.
    pub fn wants_input(&self) -> bool {
        (self.admitted.is_some() || self.shared.is_some()) && !self.input_settled
    }

    /// The request's work in tokens (estimated input + output cap), uncapped by any quota.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }
}

/// What the admission check needs to know about one request.
#[derive(Debug)]
pub struct Request<'a> {
    pub key: &'a VirtualKey,
    pub org: Option<&'a Org>,
    pub model: &'a str,
    pub route: &'a Route,
    /// Input estimate (see [`estimate_input`]).
    pub input_estimate: u64,
    /// The request's own output cap, if it set one.
    pub max_output: Option<u64>,
    /// Whether the call produces output tokens at all (embeddings and token counts do not).
    pub generates: bool,
}

/// The hot-path input estimate: about four bytes of request JSON per token. Counting the whole
/// body (keys, punctuation, any images as base64) overestimates text prompts, which is the safe
/// side for a reservation; the real count replaces it as soon as the provider reports one. A
/// tokenizer would be exact but costs microseconds per kilobyte and a model-specific vocabulary.
pub fn estimate_input(body_bytes: u64) -> u64 {
    body_bytes.div_ceil(4)
}

impl Governance {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            limiter: Limiter::new(clock.clone()),
            spend: Arc::new(Spend::new()),
            suspensions: Arc::default(),
            global: None,
            clock,
        }
    }

    /// Governance whose limits are shared through Redis.
    pub fn shared(
        clock: Arc<dyn Clock>,
        redis: &RedisSettings,
    ) -> Result<Self, global::store::StoreError> {
        let mut gov = Self::new(clock.clone());
        gov.global = Some(Arc::new(Global::new(redis, gov.spend.clone(), clock)?));
        Ok(gov)
    }

    /// Drops idle limiter state and ended budget periods every [`MAINTENANCE_EVERY`], so that
    /// keys seen once do not grow memory forever; ends once the governance is gone. The
    /// lifecycle runs it on its background runtime.
    pub async fn maintain(gov: Weak<Self>) {
        let mut ticks = tokio::time::interval(MAINTENANCE_EVERY);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let Some(gov) = gov.upgrade() else { return };
            gov.limiter.evict_idle();
            gov.spend.evict_past(gov.clock.now());
        }
    }

    /// The budget check, then the request's scopes, its holdings so far and the tokens to
    /// reserve.
    fn prepare<'a>(&self, req: &Request<'a>) -> Result<(Scopes<'a>, Held, u64), GatewayError> {
        let org_id = &req.key.org;
        if let Some(org) = req.org.filter(|o| !o.budget.is_empty()) {
            if let Err(over) = self.spend.check(org_id, &org.budget, self.clock.now()) {
                return Err(GatewayError::OverBudget {
                    org: org_id.to_string(),
                    period: over.period.name(),
                    cap: format!("${:.2}", over.cap as f64 / 1e6),
                    retry_after: over.resets_in,
                });
            }
        }
        let mut scopes = Scopes::new();
        if let Some(org) = req.org {
            if !org.limits.is_empty() {
                scopes.push((Scope::Org(org_id.clone()), &org.limits));
            }
            if let Some(m) = org.limits_for_model(req.model) {
                if !m.limits.is_empty() {
                    scopes.push((Scope::OrgModel(org_id.clone(), m.name.clone()), &m.limits));
                }
            }
        }
        if !req.key.limits.is_empty() {
            scopes.push((Scope::Key(req.key.limiter_id.clone()), &req.key.limits));
        }
        let max_output = if req.generates {
            req.max_output.unwrap_or(req.route.max_output_tokens)
        } else {
            0
        };
        let held = Held {
            admitted: None,
            shared: None,
            max_output,
            input_settled: false,
            tokens: req.input_estimate.saturating_add(max_output),
        };
        // A reservation never exceeds the smallest token bucket it is charged to: a bigger one
        // would only push the buckets into debt before anything was used (settlement charges
        // what the request really used, debt included).
        let capacity = scopes
            .iter()
            .filter_map(|(_, l)| l.tokens.map(|q| q.amount))
            .min()
            .unwrap_or(u64::MAX);
        let reserve = held.tokens.min(capacity);
        Ok((scopes, held, reserve))
    }

    /// Budget first (a spent org needs no limiter work), then every scope's limits in this
    /// process. On success the returned [`Held`] must live as long as the request.
    pub fn admit(&self, req: &Request<'_>, shown: &mut RateInfo) -> Result<Held, GatewayError> {
        let (scopes, held, reserve) = self.prepare(req)?;
        self.admit_local(&scopes, reserve, req.key, held, shown)
    }

    fn admit_local(
        &self,
        scopes: &[(Scope, &Limits)],
        reserve: u64,
        key: &VirtualKey,
        mut held: Held,
        shown: &mut RateInfo,
    ) -> Result<Held, GatewayError> {
        if scopes.is_empty() {
            return Ok(held);
        }
        match self.limiter.admit(scopes, reserve) {
            Ok(admitted) => {
                *shown = admitted.info;
                held.admitted = Some(admitted);
                Ok(held)
            }
            Err(refusal) => {
                *shown = refusal.info;
                let limits = scopes
                    .iter()
                    .find(|(s, _)| *s == refusal.scope)
                    .map(|(_, l)| *l);
                Err(refused(
                    refusal.kind,
                    &refusal.scope,
                    key,
                    limits,
                    refusal.retry_after,
                ))
            }
        }
    }

    /// [`Governance::admit`] with the backend `settings` name: the shared limits when Redis
    /// backs them. A request whose lease is empty waits at most `settings.wait` for it; past
    /// that, or while Redis is unreachable, the org's `when_limits_unreachable` policy decides.
    pub async fn admit_with(
        &self,
        req: &Request<'_>,
        shown: &mut RateInfo,
        settings: &LimitsSettings,
    ) -> Result<Held, GatewayError> {
        let Some(global) = &self.global else {
            return self.admit(req, shown);
        };
        let (scopes, mut held, reserve) = self.prepare(req)?;
        if let Some(org) = req.org.filter(|o| !o.budget.is_empty()) {
            global.watch_budget(&org.id);
        }
        if scopes.is_empty() {
            return Ok(held);
        }
        let deadline = tokio::time::Instant::now() + settings.wait;
        let mut waiting = None;
        let outcome = loop {
            let notify = match global.admit(&scopes, reserve, settings.replicas, &mut waiting) {
                Outcome::Pending(notify) => notify,
                other => break other,
            };
            // Registered before the next try, so a lease landing in between is not missed.
            let landed = notify.notified();
            tokio::pin!(landed);
            landed.as_mut().enable();
            match global.admit(&scopes, reserve, settings.replicas, &mut waiting) {
                Outcome::Pending(_) => {}
                other => break other,
            }
            if tokio::time::timeout_at(deadline, landed).await.is_err() {
                break Outcome::Down;
            }
        };
        drop(waiting);
        match outcome {
            Outcome::Admitted(shared) => {
                *shown = shared.info;
                held.shared = Some(shared);
                Ok(held)
            }
            Outcome::Refused {
                kind,
                scope,
                retry_after,
                info,
            } => {
                *shown = info;
                let (scope, limits) = &scopes[scope];
                Err(refused(kind, scope, req.key, Some(limits), retry_after))
            }
            // No lease within the wait is treated as Redis being unreachable.
            Outcome::Pending(_) | Outcome::Down => {
                let policy = req.org.map_or(settings.when_unreachable, |o| o.unreachable);
                crate::telemetry::limits::fallback(policy.label());
                match policy {
                    Unreachable::FailClosed => Err(GatewayError::LimitsUnavailable {
                        retry_after: UNREACHABLE_RETRY_AFTER,
                    }),
                    Unreachable::FailOpen => {
                        let shares: SmallVec<[(Scope, Limits); 3]> = scopes
                            .iter()
                            .map(|(s, l)| (s.clone(), global::local_share(l, settings.replicas)))
                            .collect();
                        let scopes: Scopes<'_> =
                            shares.iter().map(|(s, l)| (s.clone(), l)).collect();
                        self.admit_local(&scopes, reserve, req.key, held, shown)
                    }
                }
            }
        }
    }

    /// Once the provider has reported the input (Anthropic's `message_start`), the estimate is
    /// replaced by the real count; the output stays reserved at its cap until the end. `now`:
    /// the monotonic clock's reading.
    pub fn input_known(held: &mut Held, input_tokens: u64, now: Duration) {
        if held.input_settled {
            return;
        }
        held.input_settled = true;
        let total = input_tokens.saturating_add(held.max_output);
        if let Some(a) = held.admitted.as_mut() {
            a.reservation.settle(total);
        }
        if let Some(s) = held.shared.as_mut() {
            s.settle(total, now);
        }
    }

    /// Settles the reservation with what the request really used and charges its cost.
    /// `used`: input + output tokens of the finished request.
    pub fn finish(&self, held: &mut Held, org: &Arc<str>, used: u64, cost_micro_usd: u64) {
        if let Some(a) = held.admitted.as_mut() {
            a.reservation.settle(used);
        }
        if let Some(s) = held.shared.as_mut() {
            s.settle(used, self.clock.monotonic());
        }
        self.spend.charge(org, cost_micro_usd, self.clock.now());
        if let Some(global) = &self.global {
            global.add_spend(org, cost_micro_usd);
        }
    }
}

/// The 429 for a refusal, naming the scope and limit for people (never a secret: keys appear by
/// their public id).
fn refused(
    kind: LimitKind,
    scope: &Scope,
    key: &VirtualKey,
    limits: Option<&Limits>,
    retry_after: Duration,
) -> GatewayError {
    let scope_text = match scope {
        Scope::Org(org) => format!("org {org}"),
        Scope::Key(_) => format!("key {}", key.id),
        Scope::OrgModel(org, model) => format!("org {org} on {model}"),
    };
    // A bucket deep in debt (real usage far above its quota) could name a wait of many periods;
    // the hint is capped at one period, after which the client asks again and is told anew.
    let period = match kind {
        LimitKind::Requests => limits.and_then(|l| l.requests).map(|q| q.period),
        LimitKind::Tokens => limits.and_then(|l| l.tokens).map(|q| q.period),
        LimitKind::Concurrency => None,
    };
    let retry_after = period.map_or(retry_after, |p| retry_after.min(p));
    let limit = match kind {
        LimitKind::Requests => limits.and_then(|l| l.requests).map(|q| q.to_string()),
        LimitKind::Tokens => limits.and_then(|l| l.tokens).map(|q| q.to_string()),
        LimitKind::Concurrency => limits
            .and_then(|l| l.concurrent)
            .map(|n| format!("{n} at once")),
    };
    GatewayError::RateLimited {
        kind,
        scope_kind: scope.kind(),
        scope: scope_text,
        limit: limit.unwrap_or_default(),
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;
    use crate::config::{self, NoEnv, Snapshot};
    use sluice_test_support::config::ONE_ROUTE;

    /// One org with a 1000-tokens-a-day limit and one key.
    fn snapshot() -> Snapshot {
        let text = format!(
            "{ONE_ROUTE}[[orgs]]\nid = \"acme\"\nlimits = {{ tokens = \"1000/day\" }}\n\
             [[keys]]\ndigest = \"sha256:{}\"\norg = \"acme\"\n",
            "ab".repeat(32)
        );
        config::parse(&text, "t.toml", &NoEnv).unwrap()
    }

    fn admit(gov: &Governance, snap: &Snapshot, max_output: u64) -> Result<Held, GatewayError> {
        let key = snap.keys.values().next().unwrap();
        gov.admit(
            &Request {
                key,
                org: snap.org("acme").map(|o| &**o),
                model: "m",
                route: snap.route("m").unwrap(),
                input_estimate: 10,
                max_output: Some(max_output),
                generates: true,
            },
            &mut RateInfo::default(),
        )
    }

    #[test]
    fn a_reservation_is_capped_at_the_bucket_and_a_retry_hint_at_the_period() {
        let clock = FakeClock::shared();
        let gov = Governance::new(clock.clone());
        let snap = snapshot();
        let org: Arc<str> = "acme".into();
        // Asking for 100 000 output tokens of a 1000-token bucket takes the bucket, not 100 times it.
        let mut held = admit(&gov, &snap, 100_000).unwrap();
        let scope = Scope::Org(org.clone());
        let limits = &snap.org("acme").unwrap().limits;
        let level = |gov: &Governance| gov.limiter.peek(&[(scope.clone(), limits)]).tokens;
        assert_eq!(level(&gov).map(|w| w.remaining), Some(0));
        assert!(level(&gov).unwrap().reset <= Duration::from_secs(86_400));
        // Real usage far above the quota leaves the bucket days in debt; the hint stays one day.
        gov.finish(&mut held, &org, 5_000, 0);
        drop(held);
        let Err(GatewayError::RateLimited { retry_after, .. }) = admit(&gov, &snap, 10) else {
            panic!("a bucket in debt refuses");
        };
        assert_eq!(retry_after, Duration::from_secs(86_400));
        clock.advance(Duration::from_secs(5 * 86_400));
        assert!(
            admit(&gov, &snap, 10).is_ok(),
            "the debt was real and is paid off"
        );
    }
}
