//! The delivery worker: posts batches to the ledger, spools what cannot be delivered now, replays
//! the spool in order, and drains at shutdown.
//!
//! One future, driven on a thread of its own (started by `server::lifecycle`), owns everything
//! here (the memory queue and the spools), so there is no lock. While a request to the ledger is in flight the worker keeps
//! taking batches from the intake thread, so a slow ledger never backs up the request path's
//! queue: batches beyond a small memory bound go to the spool.
//!
//! Order: spools left by earlier processes first, then this process's spool, then the memory
//! queue. Once anything is spooled, every later batch is spooled behind it until the spool has
//! been replayed and emptied, so records reach the ledger in the order they were batched. The
//! spool is emptied only when every entry in it was acknowledged; a crash in between replays
//! entries the ledger already has, which it counts as duplicates (at-least-once delivery,
//! exactly-once storage).
//!
//! What the ledger will not take never blocks the queue: records it rejects in its answer go to
//! the dead-letter file at once (the ledger says they can never be stored as they are), and a
//! batch it refuses as a whole (a 4xx) is retried with backoff and dead-lettered after
//! `dead_letter_after` refusals; delivery then continues with the next batch. A transient
//! failure (unreachable, timeout, 5xx, 429, 401/403/404) is an outage, not a verdict on the
//! batch: it is retried with backoff, from the spool, for as long as it takes.

use super::backoff::Backoff;
use super::batcher::Batch;
use super::client::{LedgerClient, Sent};
use super::dead_letter::DeadLetter;
use super::job::{Job, Replay};
use super::spool::{self, Spool};
use crate::clock::Clock;
use crate::telemetry;
use std::collections::HashMap;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

/// Batches kept in memory while the ledger answers; more are spooled.
pub const MEMORY_BATCHES: usize = 8;
/// Attempts for a batch in memory before it is spooled (the ledger is then considered down).
const LIVE_ATTEMPTS: u32 = 3;
/// How often other slots are checked for spools to adopt.
const ADOPT_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct Worker {
    client: LedgerClient,
    rx: UnboundedReceiver<Batch>,
    dir: PathBuf,
    own: Replay,
    adopted: Vec<Replay>,
    queue: VecDeque<Batch>,
    /// Failed attempts of the memory queue's front batch.
    live_failures: u32,
    /// Whether the last request to the ledger got an answer (for logs and the gauge).
    up: bool,
    backoff: Backoff,
    request_timeout: Duration,
    drain_timeout: Duration,
    /// Set once the intake closed its channel: deliver what is left until then.
    drain_deadline: Option<Instant>,
    last_adopt: Option<Instant>,
    dead_letter: DeadLetter,
    /// Refusals of one batch before it is dead-lettered.
    dead_letter_after: u32,
    /// The batch being refused (its checksum) and how often it was, so the count never carries
    /// over to another batch.
    refusals: Option<(u32, u32)>,
    /// Delay between retries of a refused batch (the ledger is up; `backoff` is for outages).
    refusal_backoff: Backoff,
}

impl Worker {
    pub fn new(
        client: LedgerClient,
        rx: UnboundedReceiver<Batch>,
        dir: PathBuf,
        own: Spool,
        request_timeout: Duration,
        drain_timeout: Duration,
        dead_letter_after: u32,
    ) -> Self {
        let worker = Self {
            dead_letter: DeadLetter::new(&dir),
            dead_letter_after: dead_letter_after.max(1),
            refusals: None,
            refusal_backoff: Backoff::default(),
            client,
            rx,
            dir,
            own: Replay::new(own),
            adopted: Vec::new(),
            queue: VecDeque::new(),
            live_failures: 0,
            up: true,
            backoff: Backoff::default(),
            request_timeout,
            drain_timeout,
            drain_deadline: None,
            last_adopt: None,
        };
        telemetry::record_delivery_start();
        worker.publish_spool_bytes();
        metrics::gauge!(telemetry::LEDGER_UP).set(1.0);
        worker
    }

    /// Runs until the intake closed the channel and everything was delivered or spooled (or the
    /// drain deadline passed).
    pub async fn run(mut self) {
        loop {
            self.adopt_orphans();
            if self.drain_deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            // Draining while the ledger fails: once everything is on disk, waiting on for the
            // ledger only delays the exit; the next start replays the spool.
            if self.drain_deadline.is_some() && !self.up && self.queue.is_empty() {
                break;
            }
            let Some(job) = self.next_job() else {
                if self.drain_deadline.is_some() {
                    break;
                }
                self.idle().await;
                continue;
            };
            let (records, body) = match &job {
                Job::Live(b) => (b.records, b.body.clone()),
                Job::Spooled {
                    records, payload, ..
                } => (*records, payload.clone()),
            };
            let timeout = match self.drain_deadline {
                Some(d) => self
                    .request_timeout
                    .min(d.saturating_duration_since(Instant::now()))
                    .max(Duration::from_millis(1)),
                None => self.request_timeout,
            };
            let client = self.client.clone();
            let attempt = client.post_events(body, timeout);
            tokio::pin!(attempt);
            let sent = loop {
                tokio::select! {
                    biased;
                    sent = &mut attempt => break sent,
                    batch = self.rx.recv(), if self.drain_deadline.is_none() => self.received(batch),
                }
            };
            self.settle(job, records, sent).await;
        }
        self.finish();
    }

    /// Waits for the next batch (checking for orphaned spools now and then).
    async fn idle(&mut self) {
        tokio::select! {
            batch = self.rx.recv() => self.received(batch),
            () = tokio::time::sleep(ADOPT_EVERY) => {}
        }
    }

    fn received(&mut self, batch: Option<Batch>) {
        match batch {
            Some(batch) => self.accept(batch),
            None => {
                if self.drain_deadline.is_none() {
                    tracing::info!(
                        queued_batches = self.queue.len(),
                        spooled_records = self.spooled_records(),
                        "usage delivery draining"
                    );
                    self.drain_deadline = Some(Instant::now() + self.drain_timeout);
                }
            }
        }
    }

    fn spooled_records(&self) -> u64 {
        self.own.spool.records() + self.adopted.iter().map(|r| r.spool.records()).sum::<u64>()
    }

    /// Queues a new batch in memory, or spools it (with the queue ahead of it, to keep the
    /// order) when the spool already holds batches (the ledger is down or being caught up) or
    /// memory is full. Only in that last case can a batch in flight end up behind newer ones
    /// (if it then fails), which the ledger does not mind: records are stored by id.
    fn accept(&mut self, batch: Batch) {
        if self.own.spool.is_empty() && self.queue.len() < MEMORY_BATCHES {
            self.queue.push_back(batch);
            return;
        }
        self.queue.push_back(batch);
        self.spool_queue();
    }

    /// Moves the whole memory queue to our spool, oldest first.
    fn spool_queue(&mut self) {
        while let Some(batch) = self.queue.front() {
            match self.own.spool.append(batch.records, &batch.body) {
                Ok(()) => {
                    metrics::counter!(telemetry::RECORDS_SPOOLED)
                        .increment(u64::from(batch.records));
                    self.queue.pop_front();
                    self.live_failures = 0;
                }
                Err(e) => {
                    // The disk refuses: keep the queue in memory (bounded) and try again later.
                    tracing::error!("cannot spool usage records: {e}");
                    while self.queue.len() > MEMORY_BATCHES * 16 {
                        if let Some(lost) = self.queue.pop_back() {
                            telemetry::count_dropped("spool_error", u64::from(lost.records));
                        }
                    }
                    break;
                }
            }
        }
        self.publish_spool_bytes();
    }

    fn next_job(&mut self) -> Option<Job> {
        let pick = self
            .adopted
            .iter()
            .position(Replay::pending)
            .map(Some)
            .or_else(|| self.own.pending().then_some(None));
        if let Some(which) = pick {
            let replay = match which {
                Some(i) => self.adopted.get(i)?,
                None => &self.own,
            };
            match replay.spool.read(replay.pos) {
                Ok(Some(entry)) => {
                    return Some(Job::Spooled {
                        spool: which,
                        next: entry.next,
                        records: entry.records,
                        payload: entry.payload,
                    })
                }
                Ok(None) => {}
                Err(e) => {
                    // The file changed under us since it was validated: never send what does
                    // not check out. The whole file is copied aside for an operator (entries
                    // already acknowledged included) and the spool starts over.
                    tracing::error!("spool unreadable, set aside and not replayed: {e}");
                    let replay = match which {
                        Some(i) => self.adopted.get_mut(i)?,
                        None => &mut self.own,
                    };
                    telemetry::count_dropped("spool_error", replay.spool.records());
                    match replay.spool.set_aside() {
                        Ok(kept) => tracing::warn!(kept_at = %kept.display(), "spool set aside"),
                        Err(e) => tracing::error!("cannot set the spool aside: {e}"),
                    }
                    replay.pos = replay.spool.len();
                    self.clear_done(which);
                }
            }
            return self.next_job_memory();
        }
        self.next_job_memory()
    }

    fn next_job_memory(&mut self) -> Option<Job> {
        self.queue.pop_front().map(Job::Live)
    }

    async fn settle(&mut self, job: Job, records: u32, sent: Sent) {
        match sent {
            Sent::Acked(answer) => {
                telemetry::count_batch("ok");
                self.mark_up();
                metrics::counter!(telemetry::RECORDS_DELIVERED)
                    .increment(answer.accepted + answer.duplicates);
                if !answer.rejected.is_empty() {
                    for r in answer.rejected.iter().take(20) {
                        tracing::warn!(
                            id = r.id.as_deref().unwrap_or("?"),
                            "ledger rejected a usage record (dead-lettered): {}",
                            crate::text::bounded(&r.message, 200)
                        );
                    }
                    let reasons: HashMap<usize, &str> = answer
                        .rejected
                        .iter()
                        .map(|r| (r.index, r.message.as_str()))
                        .collect();
                    self.dead_letter(&job, reasons.len() as u64, "rejected", |i| {
                        reasons
                            .get(&i)
                            .map(|m| format!("rejected: {}", crate::text::bounded(m, 500)))
                    });
                }
                self.advance(job);
            }
            Sent::Refused(message) => {
                telemetry::count_batch("refused");
                self.mark_up();
                let body = job_body(&job);
                let fingerprint = super::format::checksum(records, body);
                let refusals = match self.refusals {
                    Some((f, n)) if f == fingerprint => n + 1,
                    _ => 1,
                };
                if refusals >= self.dead_letter_after {
                    tracing::error!(
                        records,
                        refusals,
                        "ledger keeps refusing a usage batch; dead-lettered: {message}"
                    );
                    let reason = format!("refused {refusals} times: {message}");
                    self.dead_letter(&job, u64::from(records), "refused", |_| {
                        Some(reason.clone())
                    });
                    self.advance(job);
                } else {
                    tracing::warn!(
                        records,
                        refusals,
                        "ledger refused a usage batch; retrying it (dead-lettered after {}): {message}",
                        self.dead_letter_after
                    );
                    self.refusals = Some((fingerprint, refusals));
                    if let Job::Live(batch) = job {
                        self.queue.push_front(batch);
                    }
                    let delay = self.refusal_backoff.next_delay();
                    self.wait(delay).await;
                }
            }
            Sent::Transient(message) => {
                telemetry::count_batch("error");
                if self.up {
                    tracing::warn!("ledger unavailable, retrying with backoff: {message}");
                } else if self.backoff.failures() % 20 == 19 {
                    tracing::warn!(
                        failures = self.backoff.failures() + 1,
                        "ledger still unavailable: {message}"
                    );
                }
                self.up = false;
                metrics::gauge!(telemetry::LEDGER_UP).set(0.0);
                match job {
                    Job::Live(batch) => {
                        // Back to the front, so the order holds whether it is retried from
                        // memory or spooled ahead of the rest of the queue.
                        self.queue.push_front(batch);
                        self.live_failures += 1;
                        if self.live_failures >= LIVE_ATTEMPTS || self.drain_deadline.is_some() {
                            self.spool_queue();
                        }
                    }
                    Job::Spooled { .. } => {}
                }
                let delay = self.backoff.next_delay();
                self.wait(delay).await;
            }
        }
    }

    /// Waits `delay` (cut short by the drain deadline), taking new batches meanwhile.
    async fn wait(&mut self, delay: Duration) {
        let mut until = Instant::now() + delay;
        if let Some(d) = self.drain_deadline {
            until = until.min(d);
        }
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => return,
                batch = self.rx.recv(), if self.drain_deadline.is_none() => {
                    self.received(batch);
                    if let Some(d) = self.drain_deadline {
                        until = until.min(d);
                    }
                }
            }
        }
    }

    fn mark_up(&mut self) {
        if !self.up {
            tracing::info!("ledger reachable again");
        }
        self.up = true;
        self.backoff.reset();
        metrics::gauge!(telemetry::LEDGER_UP).set(1.0);
    }

    /// Appends the records of `job` that `reason_of` picks to the dead-letter file, counted
    /// under `label`; if the file cannot be written they are lost, and counted as dropped.
    fn dead_letter(
        &self,
        job: &Job,
        records: u64,
        label: &'static str,
        reason_of: impl FnMut(usize) -> Option<String>,
    ) {
        let now = crate::clock::SystemClock.now();
        match self.dead_letter.append(now, job_body(job), reason_of) {
            Ok(written) => {
                metrics::counter!(telemetry::RECORDS_DEAD_LETTERED, "reason" => label)
                    .increment(written);
                tracing::warn!(
                    records = written,
                    file = %self.dead_letter.path().display(),
                    "usage records set aside in the dead-letter file"
                );
            }
            Err(e) => {
                telemetry::count_dropped("dead_letter_error", records);
                tracing::error!(
                    records,
                    file = %self.dead_letter.path().display(),
                    "cannot write the dead-letter file; the records are lost: {e}"
                );
            }
        }
    }

    /// Forgets a delivered (or dead-lettered) batch.
    fn advance(&mut self, job: Job) {
        self.refusals = None;
        self.refusal_backoff.reset();
        match job {
            Job::Live(_) => self.live_failures = 0,
            Job::Spooled { spool, next, .. } => {
                let replay = match spool {
                    Some(i) => self.adopted.get_mut(i),
                    None => Some(&mut self.own),
                };
                if let Some(replay) = replay {
                    replay.pos = next;
                }
                self.clear_done(spool);
            }
        }
    }

    /// Empties a spool whose every entry was acknowledged (and lets go of an adopted one).
    fn clear_done(&mut self, which: Option<usize>) {
        let replay = match which {
            Some(i) => self.adopted.get_mut(i),
            None => Some(&mut self.own),
        };
        let Some(replay) = replay else { return };
        if replay.pending() {
            return;
        }
        match replay.spool.clear() {
            Ok(()) => {
                replay.pos = replay.spool.start();
                if let Some(i) = which {
                    let done = self.adopted.remove(i);
                    tracing::info!(spool = %done.spool.path().display(), "adopted spool delivered");
                }
            }
            Err(e) => tracing::error!("cannot empty the delivered spool: {e}"),
        }
        self.publish_spool_bytes();
    }

    fn adopt_orphans(&mut self) {
        if self.last_adopt.is_some_and(|t| t.elapsed() < ADOPT_EVERY) {
            return;
        }
        self.last_adopt = Some(Instant::now());
        for (spool, recovery) in spool::adopt_orphans(&self.dir, self.own.spool.path()) {
            super::log_recovery(spool.path(), &recovery);
            self.adopted.push(Replay::new(spool));
        }
        self.publish_spool_bytes();
    }

    fn publish_spool_bytes(&self) {
        let bytes: u64 = std::iter::once(&self.own)
            .chain(&self.adopted)
            .map(|r| r.spool.len().saturating_sub(r.spool.start()))
            .sum();
        metrics::gauge!(telemetry::SPOOL_BYTES).set(bytes as f64);
    }

    /// At the end of the drain: whatever is still in memory goes to the spool.
    fn finish(mut self) {
        while let Ok(batch) = self.rx.try_recv() {
            self.queue.push_back(batch);
        }
        if !self.queue.is_empty() {
            self.spool_queue();
        }
        let left = self.spooled_records();
        if left > 0 {
            tracing::warn!(
                records = left,
                "usage delivery stopped with records in the spool; they are replayed at the next start"
            );
        } else {
            tracing::info!("usage delivery drained");
        }
    }
}

/// The `POST /v1/events` body a job sends.
fn job_body(job: &Job) -> &[u8] {
    match job {
        Job::Live(b) => &b.body,
        Job::Spooled { payload, .. } => payload,
    }
}
