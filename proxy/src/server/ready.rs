//! Announcing the addresses actually listened on, once they are.
//!
//! Pingora binds inside its service runtime and does not report the port it got for
//! `127.0.0.1:0`, so we read it back from the kernel: our own listening sockets are the `LISTEN`
//! rows of `/proc/self/net/tcp{,6}` whose inode is one of our file descriptors (the `procfs`
//! crate parses them). This makes port 0 race-free for tests and gives scripts a readiness line
//! (`sluice-proxy listening on http://…` on stderr) instead of guessing with sleeps. Linux only,
//! as is Pingora's graceful upgrade.

use procfs::net::TcpState;
use procfs::process::{FDTarget, Process};
use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// How long the listeners get to come up before a warning.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Prints one line per listening address once all of `listen` and `admin` listen (gives up after
/// 30 s): `sluice-proxy listening on http://…` for the proxy, `sluice-proxy admin on http://…`
/// for the admin listener. Runs on the lifecycle's background runtime.
pub async fn announce_when_listening(listen: Vec<String>, admin: Option<String>) {
    let expected = listen.len() + usize::from(admin.is_some());
    let mut wait = Duration::from_millis(1);
    let found = tokio::time::timeout(READY_WITHIN, async {
        loop {
            let found = listening();
            if found.len() >= expected {
                return found;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(50));
        }
    })
    .await;
    let Ok(found) = found else {
        tracing::warn!("listeners did not come up within 30 s");
        return;
    };
    let admin_addr = admin
        .as_deref()
        .and_then(|a| pick_admin(&found, &listen, a));
    for addr in found {
        if Some(addr) == admin_addr {
            eprintln!("sluice-proxy admin on http://{addr}");
        } else {
            eprintln!("sluice-proxy listening on http://{addr}");
        }
    }
}

/// This process's listening TCP sockets: the `LISTEN` rows of the kernel's TCP tables whose
/// inode is one of our file descriptors (read with procfs; Pingora binds inside its service
/// runtime and does not report the address it got).
fn listening() -> Vec<SocketAddr> {
    let Ok(me) = Process::myself() else {
        return Vec::new();
    };
    let ours: HashSet<u64> = match me.fd() {
        Ok(fds) => fds
            .filter_map(|fd| match fd.ok()?.target {
                FDTarget::Socket(inode) => Some(inode),
                _ => None,
            })
            .collect(),
        Err(_) => return Vec::new(),
    };
    [me.tcp(), me.tcp6()]
        .into_iter()
        .flat_map(Result::unwrap_or_default)
        .filter(|e| e.state == TcpState::Listen && ours.contains(&e.inode))
        .map(|e| e.local_address)
        .collect()
}

/// Refuses listener sets the announcement (and Pingora's socket hand-over, which keys sockets by
/// their address text) cannot tell apart: the same text twice, or the admin listener and a proxy
/// listener both on port 0 of the same address.
pub fn check_distinct(listen: &[String], admin: Option<&str>) -> Result<(), String> {
    let Some(admin) = admin else { return Ok(()) };
    if listen.iter().any(|l| l == admin) {
        return Err(format!(
            "admin listener {admin} is also a proxy listen address; give it its own address"
        ));
    }
    let Some(a) = resolve(admin) else {
        return Err(format!("admin listen address {admin:?} does not resolve"));
    };
    let clash = a.port() == 0
        && listen
            .iter()
            .filter_map(|l| resolve(l))
            .any(|l| l.port() == 0 && l.ip() == a.ip());
    if clash {
        return Err(format!(
            "admin listener {admin} and a proxy listener are both port 0 on {}: use another \
             address (e.g. 127.0.0.2:0) or a fixed port for one of them",
            a.ip()
        ));
    }
    Ok(())
}

fn resolve(addr: &str) -> Option<SocketAddr> {
    addr.to_socket_addrs().ok()?.next()
}

/// Which of `found` is the admin listener: the one on the admin address (and port, unless 0)
/// that is not a fixed proxy address. [`check_distinct`] rules out the ambiguous cases.
fn pick_admin(found: &[SocketAddr], listen: &[String], admin: &str) -> Option<SocketAddr> {
    let a = resolve(admin)?;
    let fixed: Vec<SocketAddr> = listen
        .iter()
        .filter_map(|l| resolve(l))
        .filter(|l| l.port() != 0)
        .collect();
    let mut candidates = found
        .iter()
        .filter(|f| f.ip() == a.ip() && (a.port() == 0 || f.port() == a.port()))
        .filter(|f| !fixed.contains(f));
    match (candidates.next(), candidates.next()) {
        (Some(one), None) => Some(*one),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_listener_of_this_process() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        assert!(listening().contains(&addr));
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let (accepted, _) = l.accept().unwrap();
        // An accepted connection shares the listener's address but is not listening.
        let found = listening();
        assert_eq!(found.iter().filter(|a| **a == addr).count(), 1);
        assert!(!found.contains(&accepted.peer_addr().unwrap()));
    }

    #[test]
    fn tells_the_admin_listener_apart() {
        let found: Vec<SocketAddr> = vec![
            "127.0.0.1:4000".parse().unwrap(),
            "127.0.0.2:5000".parse().unwrap(),
        ];
        let listen = vec!["127.0.0.1:0".to_string()];
        assert_eq!(pick_admin(&found, &listen, "127.0.0.2:0"), Some(found[1]));
        let fixed = vec!["127.0.0.1:4000".to_string()];
        let both: Vec<SocketAddr> = vec![found[0], "127.0.0.1:6000".parse().unwrap()];
        assert_eq!(pick_admin(&both, &fixed, "127.0.0.1:0"), Some(both[1]));
        assert!(check_distinct(&listen, Some("127.0.0.1:0")).is_err());
        assert!(check_distinct(&listen, Some("127.0.0.2:0")).is_ok());
        assert!(check_distinct(&fixed, Some("127.0.0.1:0")).is_ok());
        assert!(check_distinct(&listen, None).is_ok());
    }
}
