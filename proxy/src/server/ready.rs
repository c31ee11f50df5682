//! Announcing the addresses actually listened on, once they are.
//!
//! Pingora binds inside its service runtime and does not report the port it got for
//! `127.0.0.1:0`, so we read it back from the kernel: our own listening sockets are the `LISTEN`
//! rows of `/proc/self/net/tcp{,6}` whose inode is one of our file descriptors. This makes port 0
//! race-free for tests and gives scripts a readiness line (`sluice-proxy listening on http://…`
//! on stderr) instead of guessing with sleeps. Linux only, as is Pingora's graceful upgrade (see
//! `procnet`).

use super::procnet::listening;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The proxy addresses announced, for the drain check at shutdown. The admin listener is left
/// out: a scraper's idle keep-alive connection must not hold a stopping process back.
static ANNOUNCED: OnceLock<Vec<SocketAddr>> = OnceLock::new();

/// The proxy addresses announced as listening (empty until they are).
pub fn announced() -> Vec<SocketAddr> {
    ANNOUNCED.get().cloned().unwrap_or_default()
}

/// Prints one line per listening address once all of `listen` and `admin` listen (gives up after
/// 30 s): `sluice-proxy listening on http://…` for the proxy, `sluice-proxy admin on http://…`
/// for the admin listener.
pub fn announce_when_listening(listen: Vec<String>, admin: Option<String>) {
    let expected = listen.len() + usize::from(admin.is_some());
    let spawned = std::thread::Builder::new()
        .name("sluice-ready".into())
        .spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut wait = Duration::from_millis(1);
            while Instant::now() < deadline {
                let found = listening();
                if found.len() >= expected {
                    let admin_addr = admin
                        .as_deref()
                        .and_then(|a| pick_admin(&found, &listen, a));
                    let proxy = found.iter().filter(|a| Some(**a) != admin_addr);
                    let _ = ANNOUNCED.set(proxy.copied().collect());
                    for addr in found {
                        if Some(addr) == admin_addr {
                            eprintln!("sluice-proxy admin on http://{addr}");
                        } else {
                            eprintln!("sluice-proxy listening on http://{addr}");
                        }
                    }
                    return;
                }
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_millis(50));
            }
            tracing::warn!("listeners did not come up within 30 s");
        });
    if spawned.is_err() {
        tracing::warn!("cannot start the readiness thread");
    }
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
