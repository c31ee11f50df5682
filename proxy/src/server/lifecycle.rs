//! The process's lifecycle: what runs beside Pingora's services, who starts it, and the one
//! shutdown sequence every piece joins. This is the only module that starts a thread or a
//! runtime (see ARCHITECTURE.md, Decisions, Lifecycle).
//!
//! The story, in order:
//! 1. **Start** ([`Lifecycle::start`], before Pingora's bootstrap): the background runtime, the
//!    SIGHUP handler (its default action kills, and an upgrade's bootstrap waits for the old
//!    process), the file watch and the reload thread, the usage sink's intake thread and the
//!    ledger delivery thread (a spool that cannot be written refuses the start here).
//! 2. **Serve** ([`Lifecycle::serve`], after bootstrap): governance maintenance, the spend feed,
//!    the readiness announcement and the drain marker go onto the background runtime; then
//!    Pingora's `Server::run` serves until a signal.
//! 3. **Drain** (SIGTERM, or SIGQUIT after the sockets went to a new process): from the first
//!    signal every answer says `Connection: close`; during the grace period Pingora waits for
//!    [`drained`], which completes once no client connection is open (the connection cap's
//!    count), so `run` returns early (a vendored pingora-core patch, `RunArgs::grace_period_end`).
//!    SIGINT, or a grace period that ran out, returns from `run` the same way.
//! 4. **Stop** ([`Lifecycle::stop`], once `run` returned, so no request is left): the usage sink
//!    closes (the intake flushes, delivery drains to the ledger for up to `drain_timeout` and
//!    spools the rest; both threads joined), the pid file goes if it is still ours, the
//!    background runtime stops (its tasks end), and the reload thread, whose triggers lived on
//!    that runtime, is joined. `main` then returns.
//!
//! Why not Pingora background services: Pingora stops every service runtime at the same moment,
//! after the grace period, with `shutdown_timeout` (zero on SIGINT). Delivery must outlive the
//! proxy service (the last requests log their records while it stops) and may need the whole
//! `drain_timeout`, so it cannot be one of them; one runtime owned here, stopped after the sink,
//! keeps that order explicit.

use super::conn;
use super::{ready, triggers, upgrade};
use crate::metering::sink::UsageSink;
use crate::proxy::Gateway;
use pingora::apps::ConnectionLimit;
use pingora::server::{ExecutionPhase, GracePeriodEnd, RunArgs, Server};
use std::future::Future;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::RecvError;

/// How often the open-connection count is read during the grace period.
const DRAIN_POLL: Duration = Duration::from_millis(100);

/// Time the background runtime's tasks get to end at stop (they only wait on timers and
/// sockets, so dropping them is immediate).
const BACKGROUND_STOP: Duration = Duration::from_secs(1);

/// Time a reload in progress at stop gets to finish (it may be resolving DNS).
const RELOAD_STOP: Duration = Duration::from_secs(5);
/// Longest wait at shutdown for the shared limits to give their leases back.
const RELEASE_STOP: Duration = Duration::from_secs(2);

/// The one runtime for sluice's own asynchronous background work: timers, the spend feed's and
/// the ledger client's sockets, the SIGHUP stream. One worker thread: none of it is busy.
#[derive(Debug)]
pub struct Background {
    runtime: tokio::runtime::Runtime,
}

impl Background {
    pub fn new() -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            // Blocking-pool threads only resolve the ledger's host name (hyper's resolver).
            .max_blocking_threads(4)
            .thread_name("sluice-background")
            .enable_all()
            .build()
            .map_err(|e| format!("background runtime: {e}"))?;
        Ok(Self { runtime })
    }

    /// The runtime's handle: for a [`Dedicated`] thread that drives a future (delivery), or to
    /// create what must be made inside the runtime (the SIGHUP stream).
    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime.handle()
    }

    /// Runs `task` on the background runtime until it ends or the runtime stops.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.runtime.spawn(task);
    }

    fn stop(self) {
        self.runtime.shutdown_timeout(BACKGROUND_STOP);
    }
}

/// A thread of its own for blocking work: the usage intake (a blocking queue, stdout or file
/// writes), ledger delivery (spool appends fsync'd per batch, which must not stall the
/// background runtime's timers) and reloads (config reads, DNS). Its owner joins it within a
/// bound at stop.
#[derive(Debug)]
pub struct Dedicated {
    name: String,
    thread: JoinHandle<()>,
    /// Disconnects when the thread ends (its sender is dropped then, also by a panic).
    done: mpsc::Receiver<()>,
}

/// How a [`Dedicated`] thread ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    Finished,
    Panicked,
    /// Still running at the deadline; it is left behind.
    TimedOut,
}

impl Dedicated {
    pub fn spawn(name: &str, work: impl FnOnce() + Send + 'static) -> Result<Self, String> {
        let (done_tx, done) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _done = done_tx;
                work();
            })
            .map_err(|e| format!("cannot start thread {name}: {e}"))?;
        Ok(Self {
            name: name.into(),
            thread,
            done,
        })
    }

    /// Waits until the thread ended or `deadline` passed.
    pub fn join_by(self, deadline: Instant) -> Joined {
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.done.recv_timeout(wait) {
            Err(mpsc::RecvTimeoutError::Timeout) => {
                tracing::error!(thread = %self.name, "did not finish in time");
                Joined::TimedOut
            }
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => match self.thread.join() {
                Ok(()) => Joined::Finished,
                Err(_) => Joined::Panicked,
            },
        }
    }
}

/// Everything started beside Pingora, in the order it stops.
#[derive(Debug)]
pub struct Lifecycle {
    background: Background,
    sink: UsageSink,
    reload: Dedicated,
    pid_file: PathBuf,
}

/// What [`Lifecycle::start`] needs.
pub struct Start {
    pub reload: triggers::ReloadSetup,
    pub usage: crate::config::UsageSettings,
    /// `[log.access]`, written by the usage intake thread.
    pub access_log: Option<crate::config::observe::AccessLogSettings>,
    pub pid_file: PathBuf,
}

impl Lifecycle {
    /// Step 1: the background runtime, reload triggers and worker, usage sink.
    pub fn start(start: Start) -> Result<Self, String> {
        let background = Background::new()?;
        // SIGHUP first: from here on it reloads instead of killing the process.
        let reload = triggers::start(start.reload, &background)?;
        let sink = UsageSink::serving(&start.usage, start.access_log.as_ref(), &background)
            .map_err(|e| format!("usage sink: {e}"))?;
        Ok(Self {
            background,
            sink,
            reload,
            pid_file: start.pid_file,
        })
    }

    pub fn sink(&self) -> &UsageSink {
        &self.sink
    }

    /// Steps 2 and 3: starts the background tasks of a bootstrapped server, runs it until it
    /// stops (early once drained), and returns then.
    pub fn serve(
        &self,
        server: Server,
        gateway: &Gateway,
        connections: Arc<ConnectionLimit>,
        listen: Vec<String>,
        admin: Option<String>,
    ) {
        self.background.spawn(gateway.maintenance());
        self.background.spawn(gateway.health_checks());
        if let Some(leases) = gateway.shared_limits() {
            self.background.spawn(leases);
        }
        if let Some(feed) = self.sink.spend_feed(gateway.spend(), gateway.suspensions()) {
            self.background.spawn(feed);
        }
        self.background
            .spawn(ready::announce_when_listening(listen, admin));
        self.background
            .spawn(mark_draining(server.watch_execution_phase()));
        upgrade::write_pid_file(&self.pid_file);
        server.run(RunArgs {
            grace_period_end: Some(drained(connections)),
            ..RunArgs::default()
        });
    }

    /// Step 4: every request has ended (or was cut by Pingora's runtime shutdown).
    pub fn stop(self, gateway: &Gateway) {
        // Unused shared-limit leases go back to Redis for the other replicas (bounded: a Redis
        // that does not answer only leaves them to expire with their window or TTL).
        if let Some(release) = gateway.release_limits() {
            // The timer is made inside the runtime: made here, on the main thread, it panics.
            let bounded = async { tokio::time::timeout(RELEASE_STOP, release).await };
            let _ = self.background.handle().block_on(bounded);
        }
        // Deliver or spool what the usage queue still holds; bounded by the drain timeout.
        self.sink.shutdown();
        upgrade::remove_pid_file(&self.pid_file);
        // Ends the signal and file-watch tasks; their channel closing ends the reload thread.
        self.background.stop();
        if self.reload.join_by(Instant::now() + RELOAD_STOP) == Joined::Panicked {
            tracing::error!("the reload thread panicked");
        }
        tracing::info!("sluice-proxy stopped");
    }
}

/// From the first sign of a stop (SIGQUIT handing the sockets over, or SIGTERM), every answer
/// says `Connection: close`.
async fn mark_draining(mut phases: tokio::sync::broadcast::Receiver<ExecutionPhase>) {
    loop {
        match phases.recv().await {
            Ok(
                ExecutionPhase::GracefulUpgradeTransferringFds | ExecutionPhase::GracefulTerminate,
            ) => {
                conn::set_draining();
                return;
            }
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return,
        }
    }
}

/// Completes once no client connection accepted on the proxy listeners is open. Pingora polls it
/// only during the grace period, when the listeners no longer accept: idle keep-alive
/// connections end by their idle timeout (ARCHITECTURE.md, Connections), so an empty count means
/// every request has finished and queued its usage record. The admin listener is not counted: a
/// scraper's idle connection must not hold a stopping process back.
///
/// Zero must be read twice in a row: a keep-alive connection's permit is released and taken
/// again between two requests on it (Pingora's `handle_event` loop), a moment in which the count
/// can read zero although the connection lives. Both happen within one poll of its task, so two
/// reads a poll interval apart cannot both fall into that moment.
fn drained(connections: Arc<ConnectionLimit>) -> GracePeriodEnd {
    Box::pin(async move {
        let mut zero_before = false;
        loop {
            let zero = connections.open() == 0;
            if zero && zero_before {
                break;
            }
            zero_before = zero;
            tokio::time::sleep(DRAIN_POLL).await;
        }
        tracing::info!("all client connections closed; ending the grace period early");
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dedicated_thread_is_joined_and_a_panic_is_reported() {
        let (tx, rx) = mpsc::channel();
        let t = Dedicated::spawn("test-ok", move || tx.send(7).unwrap()).unwrap();
        assert_eq!(
            t.join_by(Instant::now() + Duration::from_secs(30)),
            Joined::Finished
        );
        assert_eq!(rx.recv().unwrap(), 7);
        let p = Dedicated::spawn("test-panic", || panic!("expected in this test")).unwrap();
        assert_eq!(
            p.join_by(Instant::now() + Duration::from_secs(30)),
            Joined::Panicked
        );
    }

    #[test]
    fn a_dedicated_thread_still_running_at_the_deadline_is_left_behind() {
        let (release, wait) = mpsc::channel::<()>();
        let t = Dedicated::spawn("test-slow", move || {
            let _ = wait.recv();
        })
        .unwrap();
        assert_eq!(t.join_by(Instant::now()), Joined::TimedOut);
        drop(release);
    }

    #[test]
    fn drained_completes_once_the_last_connection_is_gone() {
        let background = Background::new().unwrap();
        let limit = ConnectionLimit::new(4);
        let permit = limit.try_acquire().unwrap();
        let (tx, rx) = mpsc::channel();
        let end = drained(limit.clone());
        background.spawn(async move {
            end.await;
            let _ = tx.send(());
        });
        assert!(
            rx.recv_timeout(DRAIN_POLL * 3).is_err(),
            "an open connection holds it"
        );
        drop(permit);
        rx.recv_timeout(Duration::from_secs(30))
            .expect("drained once no connection is open");
    }
}
