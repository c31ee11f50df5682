//! One child process of a test: stdin closed, stderr read line by line into a log that tests
//! wait on (readiness announcements, log lines) and assert on, signals through nix, a bounded
//! wait for exit, and SIGKILL when the test drops it.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// `target/release/<name>`, beside the `deps/` directory of the running test binary: a binary of
/// another package of the workspace (cargo only builds the binaries of the package under test).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/release");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build --release --workspace)",
        path.display()
    );
    path
}

/// What the process wrote to stderr so far, and whether stderr has ended (the process exited).
#[derive(Default)]
struct Text {
    text: String,
    ended: bool,
}

/// The stderr log, observable from threads (a condition variable) and from async tests (a
/// watch channel bumped on every line, so a wait never blocks a runtime's thread).
struct Log {
    text: Mutex<Text>,
    changed: Condvar,
    bumps: watch::Sender<u64>,
}

impl Log {
    fn lock(&self) -> MutexGuard<'_, Text> {
        // A reader thread that panicked mid-push leaves a readable log; keep reading it.
        self.text.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, line: Option<&str>) {
        {
            let mut t = self.lock();
            match line {
                Some(line) => {
                    t.text.push_str(line);
                    t.text.push('\n');
                }
                None => t.ended = true,
            }
        }
        self.changed.notify_all();
        self.bumps.send_modify(|n| *n += 1);
    }
}

/// A running child process whose stderr is collected; killed (and reaped) on drop.
pub struct Process {
    name: String,
    child: Child,
    log: Arc<Log>,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

impl Process {
    /// Starts `cmd` with stdin and stdout closed and stderr collected; `name` names it in
    /// failures. Does not wait for anything (see [`Process::wait_line`]).
    pub fn spawn(name: &str, mut cmd: Command) -> Self {
        cmd.stdout(Stdio::null());
        Self::start(name, cmd)
    }

    /// [`Process::spawn`] with stdout piped and handed to the caller (e.g. usage records).
    pub fn spawn_with_stdout(name: &str, mut cmd: Command) -> (Self, ChildStdout) {
        cmd.stdout(Stdio::piped());
        let mut p = Self::start(name, cmd);
        let stdout = p.child.stdout.take().expect("piped stdout");
        (p, stdout)
    }

    fn start(name: &str, mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Log {
            text: Mutex::default(),
            changed: Condvar::new(),
            bumps: watch::channel(0).0,
        });
        let sink = log.clone();
        // Reads to the end, so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.push(Some(&line));
            }
            sink.push(None);
        });
        Self {
            name: name.to_string(),
            child,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.log.lock().text.clone()
    }

    /// The text after `marker` on the first stderr line holding it, trimmed (does not wait).
    pub fn announced(&self, marker: &str) -> Option<String> {
        after(&self.log.lock().text, marker)
    }

    /// Waits (on this thread, at most `within`) for a stderr line holding `marker`, typically a
    /// readiness line such as `listening on http://`; returns the text after it, trimmed.
    pub fn wait_line(&self, marker: &str, within: Duration) -> String {
        let text = self.wait_stderr(&format!("\"{marker}\""), within, |t| t.contains(marker));
        after(&text, marker).expect("the line just seen")
    }

    /// Waits (on this thread, at most `within`) until the stderr text satisfies `done`; returns
    /// that text. Fails naming `what` if the process exits or the bound passes first.
    pub fn wait_stderr(&self, what: &str, within: Duration, done: impl Fn(&str) -> bool) -> String {
        let seen = self.until(within, |t| t.ended || done(&t.text));
        self.judge(what, seen, done)
    }

    /// [`Process::wait_stderr`] for async tests: the runtime keeps running meanwhile (an
    /// in-process server the child talks to must keep serving).
    pub async fn wait_stderr_async(
        &self,
        what: &str,
        within: Duration,
        done: impl Fn(&str) -> bool,
    ) -> String {
        let seen = self.until_async(within, |t| t.ended || done(&t.text)).await;
        self.judge(what, seen, done)
    }

    /// Waits (on this thread, at most `within`) for the process to exit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        // stderr reaching its end is the observable sign of exit; then `wait` returns at once.
        if self.until(within, |t| t.ended).is_none() {
            self.fail(
                "did not exit within",
                &format!("{within:?}"),
                &self.stderr(),
            );
        }
        self.reap()
    }

    /// [`Process::wait_exit`] for async tests.
    pub async fn wait_exit_async(&mut self, within: Duration) -> ExitStatus {
        if self.until_async(within, |t| t.ended).await.is_none() {
            self.fail(
                "did not exit within",
                &format!("{within:?}"),
                &self.stderr(),
            );
        }
        self.reap()
    }

    fn reap(&mut self) -> ExitStatus {
        self.child
            .wait()
            .unwrap_or_else(|e| panic!("wait for {}: {e}", self.name))
    }

    /// The text once `stop` holds, or `None` when `within` passed first.
    fn until(&self, within: Duration, stop: impl Fn(&Text) -> bool) -> Option<String> {
        let deadline = Instant::now() + within;
        let mut t = self.log.lock();
        loop {
            if stop(&t) {
                return Some(t.text.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            t = self
                .log
                .changed
                .wait_timeout(t, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// [`Process::until`] without blocking the runtime's thread.
    async fn until_async(&self, within: Duration, stop: impl Fn(&Text) -> bool) -> Option<String> {
        let deadline = tokio::time::Instant::now() + within;
        let mut bumps = self.log.bumps.subscribe();
        loop {
            // Marks the current value seen before reading, so no line slips in between.
            bumps.borrow_and_update();
            {
                let t = self.log.lock();
                if stop(&t) {
                    return Some(t.text.clone());
                }
            }
            tokio::time::timeout_at(deadline, bumps.changed())
                .await
                .ok()?
                .ok()?;
        }
    }

    /// The outcome of a wait for `done`: its text, or a failure saying why it never held.
    fn judge(&self, what: &str, seen: Option<String>, done: impl Fn(&str) -> bool) -> String {
        match seen {
            Some(text) if done(&text) => text,
            Some(text) => self.fail("exited while waiting for", what, &text),
            None => self.fail("timed out waiting for", what, &self.stderr()),
        }
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) {
        let pid = i32::try_from(self.child.id()).expect("pid fits an i32");
        kill(Pid::from_raw(pid), signal)
            .unwrap_or_else(|e| panic!("{signal} to {}: {e}", self.name));
    }

    /// SIGKILL, as a crash would, and reap. Does nothing once the process is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn fail(&self, how: &str, what: &str, text: &str) -> ! {
        panic!("{} {how} {what}; its stderr:\n{text}", self.name)
    }
}

/// The text after `marker` on the first line of `text` holding it, trimmed.
fn after(text: &str, marker: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.split(marker).nth(1))
        .map(|a| a.trim().to_string())
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        // A failing test shows the logs of the processes it ran (a passing one stays quiet).
        if std::thread::panicking() {
            eprintln!("--- {} stderr ---\n{}", self.name, self.stderr());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    const WAIT: Duration = Duration::from_secs(20);

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[test]
    fn reads_the_announcement_and_signals_through_nix() {
        let mut p = Process::spawn(
            "sh",
            sh("echo 'x listening on 127.0.0.1:9' >&2; exec sleep 60"),
        );
        assert_eq!(p.wait_line("listening on ", WAIT), "127.0.0.1:9");
        assert_eq!(p.announced("x "), Some("listening on 127.0.0.1:9".into()));
        p.signal(Signal::SIGTERM);
        let status = p.wait_exit(WAIT);
        assert_eq!(status.signal(), Some(Signal::SIGTERM as i32));
    }

    #[test]
    #[should_panic(expected = "sh exited while waiting for \"listening on \"; its stderr:\nboom")]
    fn a_process_that_exits_first_fails_the_wait_with_its_log() {
        let p = Process::spawn("sh", sh("echo boom >&2"));
        p.wait_line("listening on ", WAIT);
    }

    #[tokio::test]
    async fn async_waits_see_lines_and_exit() {
        let (mut p, stdout) =
            Process::spawn_with_stdout("sh", sh("echo out; echo one >&2; echo two >&2"));
        let text = p
            .wait_stderr_async("two lines", WAIT, |t| t.contains("two"))
            .await;
        assert_eq!(text, "one\ntwo\n");
        assert!(p.wait_exit_async(WAIT).await.success());
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert_eq!(line, "out\n");
    }
}
