//! Spawning the workspace's release binaries and reading their readiness lines.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a process may take to report that it listens.
const START: Duration = Duration::from_secs(60);

/// `target/release/<name>`, next to this test binary's `deps/` directory. The workspace's
/// `cargo test --release --workspace` builds every binary before any test runs.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/release");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (cargo build --release --workspace)",
        path.display()
    );
    path
}

/// A child process whose stderr is collected, with the address it announced.
pub struct Spawned {
    pub child: Child,
    pub addr: String,
    pub log: Arc<Mutex<String>>,
}

/// Starts `cmd` and waits for a stderr line starting with `ready` followed by the address.
pub fn spawn(mut cmd: Command, name: &str, ready: &'static str) -> Spawned {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
    let stderr = child.stderr.take().expect("stderr");
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = mpsc::channel();
    let sink = log.clone();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.split(ready).nth(1) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
            let mut s = sink.lock().expect("log");
            s.push_str(&line);
            s.push('\n');
        }
    });
    match rx.recv_timeout(START) {
        Ok(addr) => Spawned { child, addr, log },
        Err(_) => {
            let _ = child.kill();
            panic!("{name} did not start:\n{}", log.lock().expect("log"));
        }
    }
}

/// The text after `marker` on the first log line containing it (e.g. a second address).
pub fn announced(proc: &Spawned, marker: &str) -> Option<String> {
    proc.log()
        .lines()
        .find_map(|l| l.split(marker).nth(1).map(|a| a.trim().to_string()))
}

impl Spawned {
    pub fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }

    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{name} failed");
    }

    /// SIGKILL, as a crash would, and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits (bounded) for the process to exit on its own; returns whether it exited cleanly.
    pub fn wait_exit(&mut self, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "process did not exit:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.kill();
    }
}
