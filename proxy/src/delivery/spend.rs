//! The spend feed: polls the ledger's `GET /v1/spend` and raises the local per-org spend figures
//! to the global ones, so an org's budget holds across every replica, not just per process; the
//! same answer lists the suspended keys and orgs, which every replica then refuses.
//!
//! Figures are only ever raised ([`Spend::raise_to`]): local charges the ledger has not seen yet
//! must not be forgotten. The ledger's own clock (`as_of_ms`) picks the day and month, so both
//! sides agree on the period even around midnight.

use super::client::LedgerClient;
use crate::governance::budgets::{Period, Spend};
use crate::governance::suspensions::Suspensions;
use crate::telemetry;
use sluice_wire::SpendAnswer;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

/// Applies one answer of the feed: spend figures, and the suspensions in force.
pub fn apply(spend: &Spend, suspensions: &Suspensions, answer: &SpendAnswer) {
    suspensions.replace(&answer.suspended);
    let as_of = UNIX_EPOCH + Duration::from_millis(answer.as_of_ms);
    for org in &answer.orgs {
        let id: Arc<str> = org.org.as_str().into();
        spend.raise_to(&id, Period::Day, as_of, org.day_micro_usd);
        spend.raise_to(&id, Period::Month, as_of, org.month_micro_usd);
    }
}

/// Polls the feed every `period` for as long as it runs (the lifecycle's background runtime
/// runs it until the process stops).
pub async fn poll(
    client: LedgerClient,
    period: Duration,
    spend: Arc<Spend>,
    suspensions: Arc<Suspensions>,
) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticks.tick().await;
        match client.spend().await {
            Ok(answer) => {
                apply(&spend, &suspensions, &answer);
                metrics::counter!(telemetry::SPEND_POLLS, "result" => "ok").increment(1);
                if failing {
                    tracing::info!("spend feed answering again");
                }
                failing = false;
            }
            Err(e) => {
                metrics::counter!(telemetry::SPEND_POLLS, "result" => "error").increment(1);
                if !failing {
                    tracing::warn!("spend feed failed (budgets use local spend): {e}");
                }
                failing = true;
            }
        }
    }
}
