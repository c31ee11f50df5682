//! What starts a reload: SIGHUP, and changes to the config file or the master key file.
//!
//! Both triggers (tasks on the lifecycle's background runtime) only post to one channel; a
//! single reload thread performs the reloads, so they are serialized by construction (and
//! [`reload`](super::reload::reload) locks as well, for callers outside this module). Triggers that pile up while a reload runs are coalesced: the
//! reload that follows reads the files as they are by then, which covers all of them.
//!
//! Files are watched through their directory, not their inode: editors and configuration
//! management replace a file by renaming a new one over it, which an inode watch would miss
//! after the first change. Events are filtered to the watched file names and debounced, so one
//! save (often several events) is one reload.

use super::lifecycle::{Background, Dedicated};
use super::reload;
use crate::config::{Env, Snapshot};
use arc_swap::ArcSwap;
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// Quiet time after the last file event before a reload starts.
const DEBOUNCE: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Signal,
    FileChange,
}

/// Everything the reload worker needs.
pub struct ReloadSetup {
    pub config: PathBuf,
    pub env: Box<dyn Env + Send>,
    pub current: Arc<ArcSwap<Snapshot>>,
}

/// Installs the SIGHUP handler (at once, so a SIGHUP from here on reloads instead of killing the
/// process), starts the file watch when the snapshot asks for it, and the reload thread, which
/// ends once both triggers are gone (when the background runtime stops).
pub fn start(setup: ReloadSetup, background: &Background) -> Result<Dedicated, String> {
    let (tx, rx) = channel();
    let mut hangups = {
        // The signal stream registers with the runtime's driver; the handler is installed here.
        let _inside = background.handle().enter();
        signal(SignalKind::hangup())
            .map_err(|e| format!("cannot install the SIGHUP handler: {e}"))?
    };
    let signal_tx = tx.clone();
    background.spawn(async move {
        while hangups.recv().await.is_some() {
            if signal_tx.send(Trigger::Signal).is_err() {
                return;
            }
        }
    });

    let watch = if setup.current.load().server.watch {
        // Without a watch (e.g. the inotify limit is reached) SIGHUP still reloads: serve anyway.
        Watch::start(tx, background)
            .inspect_err(|e| tracing::warn!("{e}; reload with SIGHUP instead"))
            .ok()
    } else {
        None
    };
    let worker = Worker { setup, watch };
    if let Some(w) = &worker.watch {
        w.follow(&worker.targets());
    }
    // A thread of its own: a reload reads files and resolves DNS, blocking work.
    Dedicated::spawn("sluice-reload", move || worker.run(rx))
}

struct Worker {
    setup: ReloadSetup,
    watch: Option<Watch>,
}

impl Worker {
    fn run(self, rx: Receiver<Trigger>) {
        while let Ok(first) = rx.recv() {
            let mut signalled = first == Trigger::Signal;
            for more in rx.try_iter() {
                signalled |= more == Trigger::Signal;
            }
            let why = if signalled { "SIGHUP" } else { "file change" };
            tracing::info!("reloading the configuration ({why})");
            let done = reload::reload(
                &self.setup.config,
                self.setup.env.as_ref(),
                &self.setup.current,
            );
            // A new master_key_file may live elsewhere: follow it from now on.
            if let (Ok(_), Some(w)) = (done, &self.watch) {
                w.follow(&self.targets());
            }
        }
    }

    /// The files whose changes trigger a reload: the config and the master key file, if any.
    fn targets(&self) -> Vec<PathBuf> {
        let mut files = vec![self.setup.config.clone()];
        if let Some(m) = &self.setup.current.load().server.master_key_file {
            files.push(m.clone());
        }
        files
    }
}

/// A watch on the directories of the target files, filtered to those files and debounced.
///
/// notify-debouncer-mini is not used: its events carry no kind, and the inotify backend always
/// reports opens, so the reload's own read of the file would trigger the next reload, forever.
/// Here access events (open, read, close without writing) are dropped before debouncing.
struct Watch {
    watcher: Mutex<RecommendedWatcher>,
    targets: Arc<Mutex<HashSet<PathBuf>>>,
    dirs: Mutex<HashSet<PathBuf>>,
}

impl Watch {
    fn start(tx: Sender<Trigger>, background: &Background) -> Result<Self, String> {
        let targets: Arc<Mutex<HashSet<PathBuf>>> = Arc::default();
        let wanted = targets.clone();
        let (raw_tx, raw_rx) = unbounded_channel::<()>();
        let watcher = notify::recommended_watcher(move |res: notify::Result<Event>| match res {
            Ok(event) => {
                if matches!(event.kind, EventKind::Access(_)) {
                    return;
                }
                let wanted = wanted.lock().unwrap_or_else(|e| e.into_inner());
                if event.paths.iter().any(|p| wanted.contains(p)) {
                    let _ = raw_tx.send(());
                }
            }
            Err(e) => tracing::warn!("config file watch error: {e}"),
        })
        .map_err(|e| format!("cannot watch the config file: {e}"))?;
        background.spawn(debounce(raw_rx, tx));
        Ok(Self {
            watcher: Mutex::new(watcher),
            targets,
            dirs: Mutex::default(),
        })
    }

    /// Watches the directories of `files` (adding any not yet watched) and filters to `files`.
    fn follow(&self, files: &[PathBuf]) {
        let mut targets = HashSet::new();
        for file in files {
            let Some((dir, path)) = watched_path(file) else {
                tracing::warn!(file = %file.display(), "cannot watch: no such directory");
                continue;
            };
            let mut dirs = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
            if !dirs.contains(&dir) {
                let mut watcher = self.watcher.lock().unwrap_or_else(|e| e.into_inner());
                match watcher.watch(&dir, RecursiveMode::NonRecursive) {
                    Ok(()) => {
                        dirs.insert(dir);
                    }
                    Err(e) => tracing::warn!(dir = %dir.display(), "cannot watch: {e}"),
                }
            }
            targets.insert(path);
        }
        *self.targets.lock().unwrap_or_else(|e| e.into_inner()) = targets;
    }
}

/// Turns bursts of file events into one trigger, sent once no event came for [`DEBOUNCE`]: a
/// save is often several events (truncate, writes, rename), and the reload must see the result.
async fn debounce(mut raw: UnboundedReceiver<()>, tx: Sender<Trigger>) {
    while raw.recv().await.is_some() {
        loop {
            match tokio::time::timeout(DEBOUNCE, raw.recv()).await {
                Ok(Some(())) => {}
                Err(_quiet) => break,
                Ok(None) => return,
            }
        }
        if tx.send(Trigger::FileChange).is_err() {
            return;
        }
    }
}

/// The canonical directory of `file` and the path events will name it by (the watcher reports
/// paths under the directory it was given).
fn watched_path(file: &Path) -> Option<(PathBuf, PathBuf)> {
    let name = file.file_name()?;
    let parent = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = parent.canonicalize().ok()?;
    let path = dir.join(name);
    Some((dir, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watched_paths_are_canonical_directory_plus_name() {
        let dir = tempfile::tempdir().unwrap();
        let canon = dir.path().canonicalize().unwrap();
        std::fs::create_dir(dir.path().join("x")).unwrap();
        let (d, p) = watched_path(&dir.path().join("x/../c.toml")).unwrap();
        assert_eq!(d, canon);
        assert_eq!(p, canon.join("c.toml"));
        assert!(watched_path(&dir.path().join("missing/c.toml")).is_none());
    }

    #[test]
    fn a_burst_of_file_events_is_one_trigger() {
        let background = Background::new().unwrap();
        let (raw_tx, raw_rx) = unbounded_channel();
        let (tx, rx) = channel();
        for _ in 0..5 {
            raw_tx.send(()).unwrap();
        }
        background.spawn(debounce(raw_rx, tx));
        let first = rx.recv_timeout(Duration::from_secs(20)).unwrap();
        assert_eq!(first, Trigger::FileChange);
        // Closing the event source ends the debouncer, which closes the trigger channel: any
        // second trigger would have been queued before that.
        drop(raw_tx);
        assert!(rx.recv().is_err(), "exactly one trigger");
    }
}
