//! Ending the grace period early once every client connection is gone.
//!
//! Pingora's graceful shutdown (after SIGQUIT hands the sockets over, or on SIGTERM) sleeps the
//! whole `grace_period` before stopping its runtimes, even when nothing is left to finish. The
//! default grace period is long (15 minutes, so the longest stream the default timeouts allow can
//! finish), which would keep an idle old process around that long after every upgrade. From the
//! first signal on, this thread marks the process as draining (every answer then says
//! `Connection: close`); idle keep-alive connections end by their idle timeout (see
//! ARCHITECTURE.md, Connections), so once no connection accepted on our listeners remains, every
//! request has finished, been logged, and had its usage record queued: the process exits then, after closing the usage sink, which delivers (or spools) every
//! queued record. Pingora's own exit path (`run` returning) closes the sink too, in `server::run`;
//! this early exit is the one place that ends the process without returning there.

use super::{conn, procnet, ready, upgrade};
use crate::metering::sink::UsageSink;
use pingora::server::ExecutionPhase;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;

/// How often the connection count is read during the grace period.
const POLL: Duration = Duration::from_millis(100);

/// Watches the server's phases; during the grace period, exits the process as soon as no client
/// connection remains (removing the pid file if it is still ours).
pub fn exit_when_drained(mut phases: Receiver<ExecutionPhase>, pid_file: PathBuf, sink: UsageSink) {
    let spawned = std::thread::Builder::new()
        .name("sluice-drain".into())
        .spawn(move || {
            loop {
                match phases.blocking_recv() {
                    // From the first sign of a stop, answers say `Connection: close`.
                    Ok(
                        ExecutionPhase::GracefulUpgradeTransferringFds
                        | ExecutionPhase::GracefulTerminate,
                    ) => conn::set_draining(),
                    Ok(ExecutionPhase::ShutdownGracePeriod) => break,
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                }
            }
            let listeners = ready::announced();
            if listeners.is_empty() {
                // Never announced: we cannot tell our connections apart, keep the full grace.
                return;
            }
            loop {
                let open = procnet::connections_to(&listeners);
                if open == 0 {
                    tracing::info!(
                        "all client connections closed; exiting before the grace period ends"
                    );
                    sink.shutdown();
                    upgrade::remove_pid_file(&pid_file);
                    std::process::exit(0);
                }
                std::thread::sleep(POLL);
            }
        });
    if spawned.is_err() {
        tracing::warn!("cannot start the drain thread; shutdowns take the full grace period");
    }
}
