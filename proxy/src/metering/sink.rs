//! Where usage records go: a bounded, non-blocking queue from the request path to the intake
//! thread (a dedicated thread of the lifecycle, `server::lifecycle`), which appends JSON lines to stdout or a file and, with `[ledger]`, batches records for
//! the delivery worker (see [`crate::delivery`]).
//!
//! The request path only ever calls `try_send`: it never waits. A full queue drops the record and
//! counts it. At shutdown, once the last request has been logged, [`UsageSink::shutdown`] closes
//! the queue and waits (bounded) until the local sink is flushed and the worker has delivered or
//! spooled everything.

use crate::config::observe::AccessLogSettings;
use crate::config::{LedgerSettings, SinkKind, UsageSettings};
use crate::delivery::batcher::{Batching, Intake, Msg};
use crate::delivery::{self, client::LedgerClient};
use crate::governance::budgets::Spend;
use crate::metering::record::UsageRecord;
use crate::server::lifecycle::{Background, Dedicated, Joined};
use crate::telemetry::{self, access::AccessLog};
use std::future::Future;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Time the intake thread gets at shutdown to flush the local sink, beyond the drain timeout.
const SHUTDOWN_SLACK: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct UsageSink {
    tx: Option<SyncSender<Msg>>,
    dropped: Arc<AtomicU64>,
    closed: Arc<AtomicBool>,
    workers: Arc<Mutex<Option<Workers>>>,
    ledger: Option<(LedgerClient, Option<Duration>)>,
}

#[derive(Debug)]
struct Workers {
    intake: Dedicated,
    delivery: Option<Dedicated>,
    drain_timeout: Duration,
}

impl UsageSink {
    /// Starts the local sink only (no ledger).
    pub fn start(kind: &SinkKind, capacity: usize) -> std::io::Result<Self> {
        Self::start_with(kind, capacity, None, None).map_err(std::io::Error::other)
    }

    /// Starts the sink for the `[usage]` and `[ledger]` settings. The ledger's spool takes the
    /// first free slot, so a process that still drains its own keeps it.
    /// Delivery runs on `background`, which must outlive [`Self::shutdown`].
    pub fn from_settings(usage: &UsageSettings, background: &Background) -> Result<Self, String> {
        Self::serving(usage, None, background)
    }

    /// [`Self::from_settings`], and the access log (`[log.access]`) written from the same
    /// records by the same thread.
    pub fn serving(
        usage: &UsageSettings,
        access: Option<&AccessLogSettings>,
        background: &Background,
    ) -> Result<Self, String> {
        let ledger = usage.ledger.as_ref().map(|l| (l, background));
        let access = access
            .map(|a| AccessLog::open(a).map_err(|e| format!("access log: {e}")))
            .transpose()?;
        Self::start_with(&usage.sink, usage.queue_capacity, ledger, access)
    }

    fn start_with(
        kind: &SinkKind,
        capacity: usize,
        ledger: Option<(&LedgerSettings, &Background)>,
        access: Option<AccessLog>,
    ) -> Result<Self, String> {
        let out: Option<Box<dyn Write + Send>> = match kind {
            SinkKind::None => None,
            SinkKind::Stdout => Some(Box::new(std::io::stdout())),
            SinkKind::File(path) => Some(Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("usage sink {}: {e}", path.display()))?,
            )),
        };
        let mut sink = Self {
            tx: None,
            dropped: Arc::default(),
            closed: Arc::default(),
            workers: Arc::default(),
            ledger: None,
        };
        if out.is_none() && ledger.is_none() && access.is_none() {
            return Ok(sink);
        }
        let (batching, delivery, drain_timeout) = match ledger {
            None => (None, None, Duration::ZERO),
            Some((settings, background)) => {
                let started = delivery::start(settings, background)?;
                sink.ledger = Some((started.client.clone(), settings.spend_poll));
                let batching = Batching {
                    max_records: settings.batch_records,
                    interval: settings.batch_interval,
                    to_worker: started.to_worker,
                };
                (Some(batching), Some(started.thread), settings.drain_timeout)
            }
        };
        let (tx, rx) = sync_channel(capacity);
        let intake = Intake::new(rx, out, batching).with_access_log(access);
        // Blocking work (a blocking queue, stdout or file writes): a thread of its own.
        let intake = Dedicated::spawn("sluice-usage-sink", move || intake.run())?;
        sink.tx = Some(tx);
        sink.workers = Arc::new(Mutex::new(Some(Workers {
            intake,
            delivery,
            drain_timeout,
        })));
        Ok(sink)
    }

    /// The poller of the ledger's spend feed into `spend`, for the lifecycle to run (`None`
    /// without `[ledger]` or with `spend_poll = "0s"`).
    pub fn spend_feed(
        &self,
        spend: Arc<Spend>,
        suspensions: Arc<crate::governance::suspensions::Suspensions>,
    ) -> Option<impl Future<Output = ()> + Send> {
        let (client, Some(period)) = self.ledger.as_ref()? else {
            return None;
        };
        Some(delivery::spend::poll(
            client.clone(),
            *period,
            spend,
            suspensions,
        ))
    }

    /// Hands a record to the intake thread without blocking.
    pub fn emit(&self, record: UsageRecord) {
        let Some(tx) = &self.tx else { return };
        if self.closed.load(Ordering::Relaxed) {
            self.count_drop("closed");
            return;
        }
        // Counted before the send: the intake thread may take the record (and uncount it)
        // before `try_send` even returns, and the depth gauge must never read below zero.
        telemetry::live::usage_queued();
        let refused = match tx.try_send(Msg::Record(record)) {
            Ok(()) => return,
            Err(TrySendError::Full(_)) => "queue_full",
            Err(TrySendError::Disconnected(_)) => "closed",
        };
        telemetry::live::usage_dequeued();
        self.count_drop(refused);
    }

    fn count_drop(&self, reason: &'static str) {
        telemetry::count_dropped(reason, 1);
        // Warn on the 1st, 2nd, 4th, 8th… drop: a full queue under load must not turn every
        // request into a log write.
        let before = self.dropped.fetch_add(1, Ordering::Relaxed);
        if (before + 1).is_power_of_two() {
            tracing::warn!(
                dropped = before + 1,
                reason,
                "usage queue full or closed; records dropped"
            );
        }
    }

    /// Records dropped on the request path so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Closes the queue and waits until the local sink is flushed and the delivery worker has
    /// delivered or spooled every record (bounded by the drain timeout plus a few seconds).
    /// Call it after the last request was logged; later records are dropped and counted. Only
    /// the first call does the work; a concurrent one waits for it.
    pub fn shutdown(&self) {
        let mut guard = match self.workers.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let Some(workers) = guard.take() else { return };
        self.closed.store(true, Ordering::Relaxed);
        if let Some(tx) = &self.tx {
            // Blocks only while the queue is full, which the intake thread is emptying.
            let _ = tx.send(Msg::Close);
        }
        let bound = workers.drain_timeout + SHUTDOWN_SLACK;
        let deadline = Instant::now() + bound;
        // The intake first: it hands its last batch to delivery as it ends.
        let intake = workers.intake.join_by(deadline);
        let delivery = workers
            .delivery
            .map_or(Joined::Finished, |d| d.join_by(deadline));
        match (intake, delivery) {
            (Joined::Finished, Joined::Finished) => tracing::info!("usage sink closed"),
            (Joined::TimedOut, _) | (_, Joined::TimedOut) => tracing::error!(
                "usage sink did not finish within {bound:?}; records still in memory are lost"
            ),
            _ => tracing::error!("a usage sink thread panicked during shutdown"),
        }
    }
}
