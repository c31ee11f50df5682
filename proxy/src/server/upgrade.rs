//! Graceful binary upgrade: the Pingora settings it needs and the pid file.
//!
//! A new process started with `--upgrade` waits (Pingora allows about 5 s) on `upgrade_sock` for
//! the old process's listening sockets; the old one sends them when it gets SIGQUIT, keeps
//! accepting for 5 more seconds (Pingora's close timeout), then stops accepting and lets its
//! in-flight requests run for `grace_period` before its runtimes get `shutdown_timeout` to stop.
//!
//! Both paths must be the same for the old and the new process and different for unrelated
//! instances. Unless the config sets them, they are derived from the canonical config path, with
//! a stable hash (SHA-256, not `DefaultHasher`, whose output may change between Rust releases —
//! the old and the new binary may be built by different compilers).

use crate::config::ServerSettings;
use pingora::server::configuration::ServerConf;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the pid file and the upgrade socket are for this config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradePaths {
    pub pid_file: PathBuf,
    pub upgrade_sock: PathBuf,
}

impl UpgradePaths {
    /// The configured paths, or defaults derived from `config` in the temp directory.
    pub fn resolve(config: &Path, server: &ServerSettings) -> Self {
        let tag = config_tag(config);
        let tmp = std::env::temp_dir();
        Self {
            pid_file: server
                .pid_file
                .clone()
                .unwrap_or_else(|| tmp.join(format!("sluice-{tag}.pid"))),
            upgrade_sock: server
                .upgrade_sock
                .clone()
                .unwrap_or_else(|| tmp.join(format!("sluice-{tag}-upgrade.sock"))),
        }
    }
}

/// 12 hex digits of the SHA-256 of the canonical config path (the path as given if it cannot be
/// canonicalized). Short, because a Unix socket path is limited to 107 bytes.
fn config_tag(config: &Path) -> String {
    let canonical = config
        .canonicalize()
        .unwrap_or_else(|_| config.to_path_buf());
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        canonical.as_os_str().as_encoded_bytes(),
    );
    data_encoding::HEXLOWER.encode(digest.as_ref().get(..6).unwrap_or_default())
}

/// Idle upstream connections kept for reuse (per process, all providers).
pub const UPSTREAM_KEEPALIVE_POOL: usize = 2048;

/// Pingora's server settings from ours.
pub fn server_conf(server: &ServerSettings, paths: &UpgradePaths) -> ServerConf {
    ServerConf {
        threads: server.threads,
        pid_file: paths.pid_file.display().to_string(),
        upgrade_sock: paths.upgrade_sock.display().to_string(),
        grace_period_seconds: Some(whole_seconds(server.grace_period)),
        graceful_shutdown_timeout_seconds: Some(whole_seconds(server.shutdown_timeout)),
        // Pingora keeps 128 idle upstream connections by default; beyond 128 requests in flight
        // every extra connection was closed after use and reopened, and open-loop latency
        // collapsed at half the closed-loop capacity (BENCHMARKS.md, "keep-alive pool").
        upstream_keepalive_pool_size: UPSTREAM_KEEPALIVE_POOL,
        ..ServerConf::default()
    }
}

/// Pingora counts in whole seconds: round up, so a configured grace is never shortened.
fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Writes this process's pid (Pingora only writes it when it daemonizes). Written after the
/// sockets are ours, so during an upgrade the file names the old process until the new one has
/// taken over.
pub fn write_pid_file(path: &Path) {
    let tmp = path.with_extension("pid.tmp");
    let written = std::fs::write(&tmp, format!("{}\n", std::process::id()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        tracing::warn!(file = %path.display(), "cannot write the pid file: {e}");
    }
}

/// Removes the pid file on exit, unless it already names another (the new) process.
pub fn remove_pid_file(path: &Path) {
    let ours = std::fs::read_to_string(path)
        .is_ok_and(|text| text.trim() == std::process::id().to_string());
    if ours {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, NoEnv};

    fn settings(extra: &str) -> ServerSettings {
        config::parse(&config::serving(&format!("[server]\n{extra}")), "t", &NoEnv)
            .unwrap()
            .server
    }

    #[test]
    fn default_paths_follow_the_config_path() {
        let s = settings("");
        let a = UpgradePaths::resolve(Path::new("/etc/sluice/a.toml"), &s);
        let b = UpgradePaths::resolve(Path::new("/etc/sluice/b.toml"), &s);
        assert_eq!(
            a,
            UpgradePaths::resolve(Path::new("/etc/sluice/a.toml"), &s)
        );
        assert_ne!(a.pid_file, b.pid_file);
        assert_ne!(a.upgrade_sock, b.upgrade_sock);
        assert!(a.upgrade_sock.as_os_str().len() < 100);
    }

    #[test]
    fn explicit_paths_and_durations_reach_pingora() {
        let s = settings(
            "pid_file = \"/run/s.pid\"\nupgrade_sock = \"/run/s.sock\"\n\
             grace_period = \"1500ms\"\nshutdown_timeout = \"2s\"\nthreads = 3",
        );
        let paths = UpgradePaths::resolve(Path::new("x.toml"), &s);
        let conf = server_conf(&s, &paths);
        assert_eq!(conf.pid_file, "/run/s.pid");
        assert_eq!(conf.upgrade_sock, "/run/s.sock");
        assert_eq!(conf.grace_period_seconds, Some(2));
        assert_eq!(conf.graceful_shutdown_timeout_seconds, Some(2));
        assert_eq!(conf.threads, 3);
        let d = server_conf(&settings(""), &paths);
        assert_eq!(d.grace_period_seconds, Some(15 * 60));
        assert_eq!(d.graceful_shutdown_timeout_seconds, Some(5));
    }

    #[test]
    fn bad_durations_are_refused() {
        let text = config::serving("[server]\ngrace_period = \"soon\"");
        let e = config::parse(&text, "t", &NoEnv).unwrap_err();
        assert!(e.to_string().contains("server.grace_period"), "{e}");
    }

    #[test]
    fn pid_file_is_removed_only_while_it_is_ours() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.pid");
        write_pid_file(&path);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().trim(),
            std::process::id().to_string()
        );
        std::fs::write(&path, "1\n").unwrap();
        remove_pid_file(&path);
        assert!(path.exists(), "another process's pid file is left alone");
        write_pid_file(&path);
        remove_pid_file(&path);
        assert!(!path.exists());
    }
}
