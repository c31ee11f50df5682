//! This process's own TCP sockets, read from `/proc/self/net/tcp{,6}`: the rows whose inode is
//! one of our file descriptors. Used to learn the ports Pingora bound (port 0) and, at shutdown,
//! whether any client connection is still open. Linux only, as is Pingora's graceful upgrade.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The kernel's state code for a listening socket.
const LISTEN: &str = "0A";

/// Local address and state code of each TCP socket this process holds.
fn own_sockets() -> Vec<(SocketAddr, String)> {
    let ours = socket_inodes();
    let mut found = Vec::new();
    for (table, v6) in [("/proc/self/net/tcp", false), ("/proc/self/net/tcp6", true)] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9))
            else {
                continue;
            };
            if !inode.parse::<u64>().is_ok_and(|i| ours.contains(&i)) {
                continue;
            }
            if let Some(addr) = parse_addr(local, v6) {
                found.push((addr, (*state).to_string()));
            }
        }
    }
    found
}

/// This process's listening TCP sockets.
pub fn listening() -> Vec<SocketAddr> {
    own_sockets()
        .into_iter()
        .filter(|(_, state)| state == LISTEN)
        .map(|(addr, _)| addr)
        .collect()
}

/// How many of our non-listening sockets were accepted on one of `listeners` (same local port,
/// and same address unless the listener is on the unspecified address). Upstream connections
/// have ephemeral local ports, which cannot be a port we listen on.
pub fn connections_to(listeners: &[SocketAddr]) -> usize {
    own_sockets()
        .iter()
        .filter(|(addr, state)| {
            state != LISTEN
                && listeners.iter().any(|l| {
                    l.port() == addr.port() && (l.ip().is_unspecified() || l.ip() == addr.ip())
                })
        })
        .count()
}

fn socket_inodes() -> HashSet<u64> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return HashSet::new();
    };
    dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_str()?;
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// `0100007F:1F90` (IPv4, little-endian words) or the 32-hex-digit IPv6 form.
fn parse_addr(text: &str, v6: bool) -> Option<SocketAddr> {
    let (ip_hex, port_hex) = text.split_once(':')?;
    let port = u16::from_str_radix(port_hex, 16).ok()?;
    let ip = if v6 {
        let mut bytes = [0u8; 16];
        for (i, word) in bytes.chunks_mut(4).enumerate() {
            let w = u32::from_str_radix(ip_hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
            word.copy_from_slice(&w.to_le_bytes());
        }
        IpAddr::V6(Ipv6Addr::from(bytes))
    } else {
        let w = u32::from_str_radix(ip_hex, 16).ok()?;
        IpAddr::V4(Ipv4Addr::from(w.to_le_bytes()))
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_addresses() {
        assert_eq!(
            parse_addr("0100007F:1F90", false),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            parse_addr("00000000000000000000000001000000:0050", true),
            Some("[::1]:80".parse().unwrap())
        );
        assert_eq!(parse_addr("zz:1", false), None);
    }

    #[test]
    fn finds_a_listener_of_this_process() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        assert!(listening().contains(&addr));
    }

    #[test]
    fn counts_connections_accepted_on_a_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        assert_eq!(connections_to(&[addr]), 0);
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let (_server, _) = l.accept().unwrap();
        // The accepted side has the listener's port; the client side does not.
        assert_eq!(connections_to(&[addr]), 1);
    }
}
