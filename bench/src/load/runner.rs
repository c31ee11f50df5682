//! The two arrival models: closed loop (clients that wait for their previous answer) and
//! open loop (a fixed schedule of intended send times, independent of the answers).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Semaphore};

use super::conn::{Shared, Slot};
use super::plan::{Mode, Plan, PlanError};
use super::report::Report;
use super::request::Template;
use super::stats::Shards;

/// Why a run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("could not build the request: {0}")]
    Request(#[from] http::Error),
    #[error("a load task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("the outstanding-request semaphore was closed")]
    Semaphore,
    #[error("could not start the pacer thread: {0}")]
    Pacer(#[from] std::io::Error),
}

/// Arrivals the pacer may run ahead of the dispatcher.
const PACER_QUEUE: usize = 4096;

/// Counts that only the driver knows.
struct Driven {
    planned: u64,
    dropped: u64,
    started: Instant,
}

/// Runs the plan on the current tokio runtime and returns the report. Fails only when the
/// plan is invalid or a task panicked; failed requests are counted in the report.
pub async fn run(plan: &Plan) -> Result<Report, LoadError> {
    plan.validate()?;
    // One shard per runtime worker keeps lock contention negligible.
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    let shared = Arc::new(Shared {
        addr: plan.target.addr(),
        template: Template::new(plan)?,
        api: plan.api,
        stream: plan.stream,
        timeout: plan.timeout,
        shards: Shards::new(workers),
    });
    let driven = match plan.mode {
        Mode::Closed { clients } => closed(plan, clients, &shared).await?,
        Mode::Open { rate } => open(plan, rate, &shared).await?,
    };
    let elapsed = driven.started.elapsed();
    Ok(Report::new(
        plan,
        elapsed,
        driven.planned,
        driven.dropped,
        shared.shards.merge(),
    ))
}

async fn closed(plan: &Plan, clients: usize, shared: &Arc<Shared>) -> Result<Driven, LoadError> {
    let started = Instant::now();
    let deadline = plan.duration.map(|d| started + d);
    let limit = plan.requests.unwrap_or(u64::MAX);
    let issued = Arc::new(AtomicU64::new(0));
    let shards = shared.shards.len();
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let shared = Arc::clone(shared);
            let issued = Arc::clone(&issued);
            tokio::spawn(async move {
                let mut slot = Slot::new(i % shards);
                loop {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                    // Claim a request number first so exactly `limit` are sent in total.
                    if issued.fetch_add(1, Ordering::Relaxed) >= limit {
                        break;
                    }
                    slot.exchange(&shared, None).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    let claimed = issued.load(Ordering::Relaxed);
    Ok(Driven {
        // Each client's last claim may have been refused by the limit or the deadline;
        // the shards' `sent` is the exact count, so `planned` is filled in from it.
        planned: claimed.min(limit),
        dropped: 0,
        started,
    })
}

/// The intended send time of arrival `i`: computed from the start, not by adding periods,
/// so rounding never drifts the rate.
fn intended(start: Instant, i: u64, rate: f64) -> Instant {
    start + Duration::from_secs_f64(i as f64 / rate)
}

/// The pacer: a plain thread that sleeps until each intended send time and hands it to the
/// async dispatcher. tokio's timer wheel has millisecond resolution and rounds up, which
/// would add about 1 ms of the generator's own lateness to every latency measured from the
/// intended time; a thread's `sleep` on Linux wakes within tens of microseconds.
fn pace(start: Instant, rate: f64, limit: u64, end: Option<Instant>, tx: mpsc::Sender<Instant>) {
    let mut i = 0;
    while i < limit {
        let at = intended(start, i, rate);
        if end.is_some_and(|e| at >= e) {
            break;
        }
        let now = Instant::now();
        if at > now {
            std::thread::sleep(at - now);
        }
        // A full channel means the dispatcher is behind; waiting here loses nothing, since
        // each arrival carries its intended time and its lateness is measured.
        if tx.blocking_send(at).is_err() {
            break;
        }
        i += 1;
    }
}

async fn open(plan: &Plan, rate: f64, shared: &Arc<Shared>) -> Result<Driven, LoadError> {
    let permits = plan.max_outstanding;
    let outstanding = Arc::new(Semaphore::new(permits));
    // Idle slots; a request takes one (or makes one when none is idle) and puts it back.
    let pool: Arc<Mutex<Vec<Slot>>> = Arc::new(Mutex::new(Vec::new()));
    let shards = shared.shards.len();
    let mut slots_made = 0usize;
    let started = Instant::now();
    let end = plan.duration.map(|d| started + d);
    let limit = plan.requests.unwrap_or(u64::MAX);
    let (tx, mut arrivals) = mpsc::channel(PACER_QUEUE);
    std::thread::Builder::new()
        .name("sluice-load-pacer".to_owned())
        .spawn(move || pace(started, rate, limit, end, tx))?;
    let mut planned = 0u64;
    let mut dropped = 0u64;
    while let Some(at) = arrivals.recv().await {
        planned += 1;
        let Ok(permit) = Arc::clone(&outstanding).try_acquire_owned() else {
            dropped += 1;
            continue;
        };
        let slot = pool.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let mut slot = slot.unwrap_or_else(|| {
            slots_made += 1;
            Slot::new(slots_made % shards)
        });
        let shared = Arc::clone(shared);
        let pool = Arc::clone(&pool);
        tokio::spawn(async move {
            slot.exchange(&shared, Some(at)).await;
            pool.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(slot);
            // The permit goes last: once all permits are back, every request is recorded.
            drop(permit);
        });
    }
    // Every request holds a permit until it is recorded, so holding all permits means all
    // requests have ended (each is bounded by the per-request timeout).
    let all = u32::try_from(permits).map_err(|_| LoadError::Semaphore)?;
    let _all = outstanding
        .acquire_many(all)
        .await
        .map_err(|_| LoadError::Semaphore)?;
    // The slots (and with them the connections) close here, after the last request.
    drop(pool);
    Ok(Driven {
        planned,
        dropped,
        started,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_does_not_drift() {
        let start = Instant::now();
        let rate = 3.0;
        assert_eq!(intended(start, 0, rate), start);
        let d = intended(start, 3_000_000, rate) - start;
        assert_eq!(d, Duration::from_secs(1_000_000));
    }
}
