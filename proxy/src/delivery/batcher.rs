//! The intake thread: takes records off the request path's queue, writes them to the local sink
//! (JSON lines) and, with a ledger configured, groups them into batches by count and by time and
//! hands each batch, serialized once, to the delivery worker.

use crate::metering::record::UsageRecord;
use crate::telemetry::access::AccessLog;
use sluice_wire::IngestBatchRef;
use std::io::Write;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// What the request path and the shutdown hook put on the queue.
#[expect(
    clippy::large_enum_variant,
    reason = "boxing the record would cost an allocation per request; every queue slot holds a \
              record-sized message either way, since nearly all messages are records"
)]
#[derive(Debug)]
pub enum Msg {
    Record(UsageRecord),
    /// Sent once at shutdown, after the last request: everything before it is processed.
    Close,
}

/// One batch ready to post: its record count and its `POST /v1/events` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub records: u32,
    pub body: Vec<u8>,
}

impl Batch {
    /// Serializes records into a batch body.
    pub fn encode(records: &[UsageRecord]) -> Result<Self, serde_json::Error> {
        let body = serde_json::to_vec(&IngestBatchRef { records })?;
        Ok(Self {
            records: u32::try_from(records.len()).unwrap_or(u32::MAX),
            body,
        })
    }
}

/// Batching towards the ledger.
#[derive(Debug)]
pub struct Batching {
    pub max_records: usize,
    pub interval: Duration,
    pub to_worker: UnboundedSender<Batch>,
}

pub struct Intake {
    rx: Receiver<Msg>,
    out: Option<std::io::BufWriter<Box<dyn Write + Send>>>,
    batching: Option<Batching>,
    pending: Vec<UsageRecord>,
    first_pending: Option<Instant>,
    access: Option<AccessLog>,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake")
            .field("local", &self.out.is_some())
            .field("batching", &self.batching)
            .field("pending", &self.pending.len())
            .field("access_log", &self.access.is_some())
            .finish()
    }
}

/// Pause between drains of the queue (see `Intake::run`); records wait at most this long more.
const COALESCE: Duration = Duration::from_millis(2);

impl Intake {
    pub fn new(
        rx: Receiver<Msg>,
        out: Option<Box<dyn Write + Send>>,
        batching: Option<Batching>,
    ) -> Self {
        Self {
            rx,
            out: out.map(std::io::BufWriter::new),
            pending: Vec::with_capacity(batching.as_ref().map_or(0, |b| b.max_records)),
            batching,
            first_pending: None,
            access: None,
        }
    }

    /// Runs until `Close` (or until every sender is gone), then hands over the last batch and
    /// flushes the local sink. Dropping `self` at the end closes the worker's channel, which
    /// is the worker's signal to drain.
    pub fn run(mut self) {
        loop {
            let first = match self.deadline() {
                Some(deadline) => {
                    let wait = deadline.saturating_duration_since(Instant::now());
                    match self.rx.recv_timeout(wait) {
                        Ok(m) => m,
                        Err(RecvTimeoutError::Timeout) => {
                            self.send_pending();
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                None => match self.rx.recv() {
                    Ok(m) => m,
                    Err(_) => break,
                },
            };
            // Take whatever is queued without waiting, then flush the local sink once: a reader
            // sees each record promptly, without a flush per record under load.
            let mut next = Some(first);
            let mut closing = false;
            while let Some(msg) = next {
                match msg {
                    Msg::Record(record) => {
                        crate::telemetry::live::usage_dequeued();
                        self.take(record);
                    }
                    Msg::Close => {
                        closing = true;
                        break;
                    }
                }
                if self.deadline().is_some_and(|d| d <= Instant::now()) {
                    self.send_pending();
                }
                next = self.rx.try_recv().ok();
            }
            self.flush_local();
            if closing {
                break;
            }
            // Coalesce: a receiver blocked in `recv` must be woken (a futex call, then a context
            // switch) by every request's `try_send`; one that rests a moment between drains is
            // never blocked under load, so the request path sends without waking anybody. The
            // queue holds far more than a pause's worth of records.
            std::thread::sleep(COALESCE);
        }
        self.send_pending();
        self.flush_local();
    }

    fn deadline(&self) -> Option<Instant> {
        let batching = self.batching.as_ref()?;
        self.first_pending.map(|t| t + batching.interval)
    }

    /// Also writes the access log, from the same records.
    pub fn with_access_log(mut self, access: Option<AccessLog>) -> Self {
        self.access = access;
        self
    }

    fn take(&mut self, record: UsageRecord) {
        if let Some(access) = &mut self.access {
            if access.write(&record).is_err() {
                tracing::error!("access log write failed");
            }
        }
        if let Some(out) = &mut self.out {
            if serde_json::to_writer(&mut *out, &record).is_err() || out.write_all(b"\n").is_err() {
                tracing::error!("usage sink write failed");
            }
        }
        let Some(batching) = &self.batching else {
            return;
        };
        let max = batching.max_records;
        if self.pending.is_empty() {
            self.first_pending = Some(Instant::now());
        }
        self.pending.push(record);
        if self.pending.len() >= max {
            self.send_pending();
        }
    }

    fn send_pending(&mut self) {
        self.first_pending = None;
        let Some(batching) = &self.batching else {
            return;
        };
        if self.pending.is_empty() {
            return;
        }
        let count = self.pending.len() as u64;
        match Batch::encode(&self.pending) {
            Ok(batch) => {
                if batching.to_worker.send(batch).is_err() {
                    tracing::error!(
                        records = count,
                        "usage delivery worker is gone; records dropped"
                    );
                    crate::telemetry::count_dropped("closed", count);
                }
            }
            Err(e) => {
                tracing::error!(records = count, "cannot serialize a usage batch: {e}");
                crate::telemetry::count_dropped("spool_error", count);
            }
        }
        self.pending.clear();
    }

    fn flush_local(&mut self) {
        if let Some(out) = &mut self.out {
            if out.flush().is_err() {
                tracing::error!("usage sink flush failed");
            }
        }
        if let Some(access) = &mut self.access {
            if access.flush().is_err() {
                tracing::error!("access log flush failed");
            }
        }
    }
}
