//! Where usage records go: a bounded, non-blocking queue from the request path to a writer
//! thread that appends JSON lines to stdout or a file.
//!
//! The request path only ever calls `try_send`: it never waits on the writer. A full queue drops
//! the record and counts it (the ledger issue replaces dropping with a disk spool).

use crate::config::SinkKind;
use crate::record::UsageRecord;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct UsageSink {
    tx: Option<SyncSender<UsageRecord>>,
    dropped: Arc<AtomicU64>,
}

impl UsageSink {
    /// Starts the writer thread for `kind`.
    pub fn start(kind: &SinkKind, capacity: usize) -> std::io::Result<Self> {
        let out: Box<dyn Write + Send> = match kind {
            SinkKind::None => {
                return Ok(Self {
                    tx: None,
                    dropped: Arc::default(),
                })
            }
            SinkKind::Stdout => Box::new(std::io::stdout()),
            SinkKind::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let (tx, rx) = sync_channel(capacity);
        std::thread::Builder::new()
            .name("sluice-usage-sink".into())
            .spawn(move || write_loop(rx, out))?;
        Ok(Self {
            tx: Some(tx),
            dropped: Arc::default(),
        })
    }

    /// Hands a record to the writer without blocking.
    pub fn emit(&self, record: UsageRecord) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                // Warn on the 1st, 2nd, 4th, 8th… drop: a full queue under load must not turn
                // every request into a log write.
                let before = self.dropped.fetch_add(1, Ordering::Relaxed);
                if (before + 1).is_power_of_two() {
                    tracing::warn!(
                        dropped = before + 1,
                        "usage queue full or closed; records dropped"
                    );
                }
            }
        }
    }
}

/// Writes records as JSON lines, flushing whenever the queue runs empty so a reader sees each
/// record promptly without a flush per record under load.
fn write_loop(rx: Receiver<UsageRecord>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::new(out);
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(record) = next {
            if serde_json::to_writer(&mut out, &record).is_err() || out.write_all(b"\n").is_err() {
                tracing::error!("usage sink write failed");
            }
            next = rx.try_recv().ok();
        }
        if out.flush().is_err() {
            tracing::error!("usage sink flush failed");
        }
    }
}
