//! The client's address: the socket peer, or the address a trusted proxy forwarded for it, and
//! the form the usage record keeps it in (`[client_ip]`).
//!
//! A forwarding header is believed only when the direct peer is a trusted proxy; then its hops
//! are walked from the right (the one nearest sluice, appended by the trusted peer itself) and
//! the first address that is not itself a trusted proxy is the client. Anything to the left of
//! that was written by the client and may be forged, so it is never read. `Forwarded` (RFC 7239)
//! wins over `X-Forwarded-For` when both are present.

use crate::config::client_ip::{ClientIpPolicy, IpRecord};
use http::HeaderMap;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// The address to record for a request from `peer` (`None`: a Unix-socket peer, which has no
/// address, and then no forwarding header is read either).
pub fn resolve(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    policy: &ClientIpPolicy,
) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    if matches!(policy.record, IpRecord::Off) || !trusted(&policy.trusted, peer) {
        return Some(peer);
    }
    let hops = if headers.contains_key(http::header::FORWARDED) {
        forwarded_for(headers)
    } else {
        x_forwarded_for(headers)
    };
    let mut client = peer;
    for hop in hops.iter().rev() {
        // An unreadable hop (`unknown`, an obfuscated name, garbage) ends the walk: the last
        // address read is the nearest one known, and everything beyond it is unverifiable.
        let Some(ip) = hop else { break };
        client = ip.to_canonical();
        if !trusted(&policy.trusted, client) {
            break;
        }
    }
    Some(client)
}

/// The record's `client_ip` for `ip`, as the policy says (`None` with `record = "off"`).
pub fn render(ip: IpAddr, record: &IpRecord) -> Option<String> {
    match record {
        IpRecord::Full => Some(ip.to_string()),
        IpRecord::Off => None,
        IpRecord::Truncate { v4, v6 } => {
            let prefix = if ip.is_ipv4() { *v4 } else { *v6 };
            // The prefixes are validated against the address width, so this cannot fail.
            IpNet::new(ip, prefix).ok().map(|n| n.trunc().to_string())
        }
        IpRecord::Hash(key) => {
            let tag = ring::hmac::sign(key, ip.to_string().as_bytes());
            Some(format!(
                "h:{}",
                data_encoding::HEXLOWER.encode(&tag.as_ref()[..16])
            ))
        }
    }
}

fn trusted(nets: &[IpNet], ip: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(&ip))
}

/// The hops of every `X-Forwarded-For` line, in order; an entry that is no address is `None`.
fn x_forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .map(address)
        .collect()
}

/// The `for=` of every element of every `Forwarded` line, in order. Parsed by hand: the crates
/// for RFC 7239 are little used, and only `for` is needed. An element without `for` is an
/// unreadable hop.
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all(http::header::FORWARDED)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .map(|element| {
            element.split(';').find_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| address(value.trim().trim_matches('"')))
            })?
        })
        .collect()
}

/// `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]` or `[2001:db8::1]:4711`.
fn address(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sock) = text.parse::<SocketAddr>() {
        return Some(sock.ip());
    }
    text.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(trusted: &[&str]) -> ClientIpPolicy {
        ClientIpPolicy {
            trusted: trusted.iter().map(|t| t.parse().unwrap()).collect(),
            record: IpRecord::Full,
        }
    }

    fn headers(lines: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in lines {
            h.append(*name, value.parse().unwrap());
        }
        h
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    const LB: &str = "10.0.0.5";

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.9"),
            ("forwarded", "for=198.51.100.9"),
        ]);
        let p = policy(&["10.0.0.0/8"]);
        assert_eq!(resolve(ip("203.0.113.7"), &h, &p), ip("203.0.113.7"));
        assert_eq!(
            resolve(ip("203.0.113.7"), &h, &policy(&[])),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn a_trusted_peer_names_the_client_and_a_forged_prefix_is_not_read() {
        // The client wrote "1.1.1.1" itself; the load balancer appended the address it saw.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.7")]);
        let p = policy(&["10.0.0.0/8"]);
        assert_eq!(resolve(ip(LB), &h, &p), ip("203.0.113.7"));
        // Two trusted hops (CDN edge, then the load balancer), over two header lines.
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1, 203.0.113.7"),
            ("x-forwarded-for", "10.9.9.9"),
        ]);
        assert_eq!(resolve(ip(LB), &h, &p), ip("203.0.113.7"));
    }

    #[test]
    fn forwarded_wins_and_its_forms_are_read() {
        let p = policy(&["10.0.0.0/8"]);
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.1"),
            (
                "forwarded",
                "for=1.1.1.1, for=\"[2001:db8:cafe::17]:4711\";proto=https;by=10.0.0.5",
            ),
        ]);
        assert_eq!(resolve(ip(LB), &h, &p), ip("2001:db8:cafe::17"));
        let h = headers(&[("forwarded", "proto=https;For=\"203.0.113.43:47011\"")]);
        assert_eq!(resolve(ip(LB), &h, &p), ip("203.0.113.43"));
    }

    #[test]
    fn an_unreadable_hop_stops_at_the_nearest_known_address() {
        let p = policy(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "203.0.113.7, garbage, 10.1.1.1")]);
        assert_eq!(resolve(ip(LB), &h, &p), ip("10.1.1.1"));
        let h = headers(&[("forwarded", "for=203.0.113.7, for=unknown")]);
        assert_eq!(resolve(ip(LB), &h, &p), ip(LB));
        // No header at all from a trusted peer: the peer.
        assert_eq!(resolve(ip(LB), &HeaderMap::new(), &p), ip(LB));
    }

    #[test]
    fn mapped_ipv6_peers_are_ipv4_and_unix_peers_have_no_address() {
        let p = policy(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "203.0.113.7")]);
        assert_eq!(resolve(ip("::ffff:10.0.0.5"), &h, &p), ip("203.0.113.7"));
        assert_eq!(resolve(None, &h, &p), None);
    }

    #[test]
    fn records_are_whole_truncated_hashed_or_absent() {
        let v4: IpAddr = "203.0.113.77".parse().unwrap();
        let v6: IpAddr = "2001:db8:cafe:1::17".parse().unwrap();
        assert_eq!(render(v4, &IpRecord::Full).unwrap(), "203.0.113.77");
        let t = IpRecord::Truncate { v4: 24, v6: 48 };
        assert_eq!(render(v4, &t).unwrap(), "203.0.113.0/24");
        assert_eq!(render(v6, &t).unwrap(), "2001:db8:cafe::/48");
        assert_eq!(render(v4, &IpRecord::Off), None);
        let key = |k: &[u8]| IpRecord::Hash(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, k));
        let a = render(v4, &key(b"0123456789abcdef")).unwrap();
        assert_eq!(a, render(v4, &key(b"0123456789abcdef")).unwrap());
        assert!(
            a.starts_with("h:") && a.len() == 34 && !a.contains("203"),
            "{a}"
        );
        assert_ne!(a, render(v4, &key(b"another key 0123")).unwrap());
        assert_ne!(a, render(v6, &key(b"0123456789abcdef")).unwrap());
    }
}
