//! Usage delivery to the ledger (`[ledger]`): batching by count and time ([`batcher`]), posting
//! with retry and backoff ([`client`], [`backoff`], [`sender`]), a checksummed, fsync'd disk
//! spool for whatever cannot be delivered now ([`spool`], [`format`]), replay in order, drain at
//! shutdown, the dead-letter file for what the ledger will not take ([`dead_letter`]), and the
//! spend feed ([`spend`]).
//!
//! Threads: the request path only `try_send`s into the sink's bounded queue. The intake thread
//! (in [`batcher`]) writes the local sink and builds batches; the delivery worker (in [`sender`])
//! runs on a thread of its own, driving its future on the lifecycle's background runtime
//! (`server::lifecycle`), and owns the spools. Neither is ever awaited by a request.

pub mod backoff;
pub mod batcher;
pub mod client;
pub mod dead_letter;
pub mod format;
pub mod job;
pub mod sender;
pub mod spend;
pub mod spool;

#[cfg(test)]
mod tests;

use crate::config::LedgerSettings;
use crate::server::lifecycle::{Background, Dedicated};
use batcher::Batch;
use client::LedgerClient;
use spool::{Recovery, Spool};
use std::path::Path;
use tokio::sync::mpsc::UnboundedSender;

/// A started delivery worker: where the intake sends batches, and the thread to join.
#[derive(Debug)]
pub struct Started {
    pub to_worker: UnboundedSender<Batch>,
    pub thread: Dedicated,
    pub client: LedgerClient,
}

/// Logs what opening a spool found.
pub fn log_recovery(path: &Path, r: &Recovery) {
    match r.stop {
        format::Stop::Clean => {}
        format::Stop::Torn => tracing::warn!(
            spool = %path.display(),
            dropped_bytes = r.dropped_bytes,
            "spool had a torn tail (a write cut short by a crash); it was cut off"
        ),
        format::Stop::Corrupt => tracing::warn!(
            spool = %path.display(),
            dropped_bytes = r.dropped_bytes,
            kept_at = %r.quarantined.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
            "spool had a corrupt entry; it and everything after it were set aside, not replayed"
        ),
    }
    if r.entries > 0 {
        tracing::info!(
            spool = %path.display(),
            batches = r.entries,
            records = r.records,
            "spool holds undelivered records; replaying them before new ones"
        );
    }
}

/// Opens (and locks) a free slot of the spool directory and starts the delivery worker thread.
/// Fails when the directory cannot be written or every slot is held by a live process.
pub fn start(settings: &LedgerSettings, background: &Background) -> Result<Started, String> {
    let (own, recovery) = spool::open_own(&settings.spool_dir).map_err(|e| e.to_string())?;
    log_recovery(own.path(), &recovery);
    start_with_spool(settings, own, background)
}

/// Starts the worker on an already opened spool: a [`Dedicated`] thread that drives the worker
/// on the background runtime (its sockets and timers are that runtime's; its spool appends
/// block this thread only).
pub fn start_with_spool(
    settings: &LedgerSettings,
    own: Spool,
    background: &Background,
) -> Result<Started, String> {
    let client = LedgerClient::new(settings)?;
    let (to_worker, rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = sender::Worker::new(
        client.clone(),
        rx,
        settings.spool_dir.clone(),
        own,
        settings.request_timeout,
        settings.drain_timeout,
        settings.dead_letter_after,
    );
    let runtime = background.handle().clone();
    let thread = Dedicated::spawn("sluice-ledger", move || runtime.block_on(worker.run()))?;
    Ok(Started {
        to_worker,
        thread,
        client,
    })
}
