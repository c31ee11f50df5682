//! A throwaway Redis server for a test: Debian's `redis-server` on a free loopback port with its
//! own temporary directory and no persistence, killed on drop. It can be stopped and started
//! again on the same port (an outage), and read with `redis-cli`.
//!
//! Like [`crate::postgres`], a test skips, loudly, only when no Redis installation is found
//! (`.ci/deps.sh --test` installs `redis-server`); `SLUICE_TEST_REQUIRE_REDIS=1` (CI sets it)
//! makes that a failure.

use crate::Process;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Bound on the server's start.
const START: Duration = Duration::from_secs(20);
/// Ports tried when the free port found is taken before Redis binds it.
const TRIES: usize = 5;

fn tool(name: &str) -> Option<PathBuf> {
    crate::tools::system_tool(
        name,
        "this Redis test",
        "`.ci/deps.sh --test` (Debian's redis-server package)",
        "SLUICE_TEST_REQUIRE_REDIS",
    )
}

/// A running (or stopped) throwaway Redis server.
#[derive(Debug)]
pub struct Redis {
    // Declared before `dir`: the process is killed before its directory is removed.
    /// Behind a lock so a test can stop and restart it while other tasks use it.
    proc: std::sync::Mutex<Option<Process>>,
    port: u16,
    /// Extra `redis-server` arguments (e.g. `--requirepass`).
    args: Vec<String>,
    binary: PathBuf,
    dir: tempfile::TempDir,
}

impl Redis {
    /// Starts a server and waits until it accepts connections; `None` when Redis is not
    /// installed (see the module's notes).
    pub fn start() -> Option<Self> {
        Self::start_with(&[])
    }

    /// [`Redis::start`] with extra `redis-server` arguments.
    pub fn start_with(args: &[&str]) -> Option<Self> {
        let binary = tool("redis-server")?;
        let mut dir = tempfile::tempdir().expect("redis temp dir");
        for _ in 0..TRIES {
            let port = free_port();
            let redis = Self {
                proc: std::sync::Mutex::new(None),
                port,
                args: args.iter().map(ToString::to_string).collect(),
                binary: binary.clone(),
                dir,
            };
            if redis.run() {
                return Some(redis);
            }
            dir = redis.dir;
        }
        panic!("redis-server did not start on any of {TRIES} free ports");
    }

    /// Starts the server on its port; false when the port was taken meanwhile.
    fn run(&self) -> bool {
        let mut cmd = Command::new(&self.binary);
        cmd.args(["--bind", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .arg("--dir")
            .arg(self.dir.path())
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                "/dev/stderr",
            ])
            .args(&self.args);
        let proc = Process::spawn("redis-server", cmd);
        let text = proc.wait_stderr("redis to accept connections", START, |t| {
            t.contains("Ready to accept connections") || t.contains("Address already in use")
        });
        if text.contains("Address already in use") {
            return false;
        }
        *self.lock() = Some(proc);
        true
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Process>> {
        self.proc.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Kills the server (its data is gone: nothing persists), as an outage would.
    pub fn stop(&self) {
        if let Some(mut p) = self.lock().take() {
            p.kill();
        }
    }

    /// Starts the server again on the same port, empty.
    pub fn restart(&self) {
        assert!(self.lock().is_none(), "restart a stopped server");
        assert!(
            self.run(),
            "port {} was taken while Redis was down",
            self.port
        );
    }

    /// Runs `redis-cli` against the server and returns its output, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let cli = tool("redis-cli").expect("redis-cli comes with redis-server");
        let out = Command::new(cli)
            .args(["-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
