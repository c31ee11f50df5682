//! `[client_ip]`: which address a usage record names as the client, and in what form.
//!
//! The socket peer is the client unless it is one of the operator's own proxies
//! (`trusted_proxies`); only then are `Forwarded` / `X-Forwarded-For` read, since anyone else can
//! write those headers. The address is recorded whole, truncated to a network, as a keyed hash,
//! or not at all. Part of the snapshot: a reload may change it.

use super::{ConfigError, Env};
use ipnet::IpNet;
use serde::Deserialize;

/// `[client_ip]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientIpSection {
    /// Networks of the load balancers and proxies in front of sluice (`10.0.0.0/8`,
    /// `192.0.2.7`); a request from one of them names its client in a forwarding header.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// `full` (default), `truncate`, `hash` or `off`.
    pub record: Option<String>,
    /// Prefix kept by `truncate` for IPv4 (default 24) and IPv6 (default 48).
    pub ipv4_prefix: Option<u8>,
    pub ipv6_prefix: Option<u8>,
    /// The HMAC key of `hash`, as `env:VAR` (a literal key is refused).
    pub hash_key: Option<String>,
}

/// How a resolved client address is written into the record.
#[derive(Clone)]
pub enum IpRecord {
    Full,
    /// The network of the address (`203.0.113.0/24`).
    Truncate {
        v4: u8,
        v6: u8,
    },
    /// `h:` and the first 16 bytes of HMAC-SHA256(key, address), in hex: the same address
    /// always gives the same value (so abuse statistics still group by it) and the address
    /// cannot be read back without the key.
    Hash(ring::hmac::Key),
    Off,
}

impl std::fmt::Debug for IpRecord {
    // Written by hand so that the key can never be printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Full => f.write_str("Full"),
            Self::Truncate { v4, v6 } => write!(f, "Truncate(/{v4}, /{v6})"),
            Self::Hash(_) => f.write_str("Hash(<key>)"),
            Self::Off => f.write_str("Off"),
        }
    }
}

/// The validated `[client_ip]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientIpPolicy {
    pub trusted: Vec<IpNet>,
    pub record: IpRecord,
}

impl Default for ClientIpPolicy {
    fn default() -> Self {
        Self {
            trusted: Vec::new(),
            record: IpRecord::Full,
        }
    }
}

/// Two hash modes never compare equal: a key cannot be read back to compare.
impl PartialEq for IpRecord {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Full, Self::Full) | (Self::Off, Self::Off) => true,
            (Self::Truncate { v4, v6 }, Self::Truncate { v4: w4, v6: w6 }) => v4 == w4 && v6 == w6,
            _ => false,
        }
    }
}

/// Validates `[client_ip]`; absent: the socket peer, recorded whole.
pub fn build(raw: Option<&ClientIpSection>, env: &dyn Env) -> Result<ClientIpPolicy, ConfigError> {
    let Some(raw) = raw else {
        return Ok(ClientIpPolicy::default());
    };
    let trusted = raw
        .trusted_proxies
        .iter()
        .map(|t| network(t.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    let mode = raw.record.as_deref().unwrap_or("full");
    let prefixes_set = raw.ipv4_prefix.is_some() || raw.ipv6_prefix.is_some();
    if prefixes_set && mode != "truncate" {
        return Err(ConfigError::invalid(
            "client_ip.ipv4_prefix / ipv6_prefix only apply with record = \"truncate\"",
        ));
    }
    if raw.hash_key.is_some() && mode != "hash" {
        return Err(ConfigError::invalid(
            "client_ip.hash_key only applies with record = \"hash\"",
        ));
    }
    let record = match mode {
        "full" => IpRecord::Full,
        "off" => IpRecord::Off,
        "truncate" => {
            let v4 = raw.ipv4_prefix.unwrap_or(24);
            let v6 = raw.ipv6_prefix.unwrap_or(48);
            if v4 > 32 || v6 > 128 {
                return Err(ConfigError::invalid(format!(
                    "client_ip prefixes must be at most /32 (IPv4) and /128 (IPv6), got /{v4} and /{v6}"
                )));
            }
            IpRecord::Truncate { v4, v6 }
        }
        "hash" => IpRecord::Hash(hash_key(raw.hash_key.as_deref(), env)?),
        other => {
            return Err(ConfigError::invalid(format!(
                "client_ip.record {other:?} must be \"full\", \"truncate\", \"hash\" or \"off\""
            )))
        }
    };
    Ok(ClientIpPolicy { trusted, record })
}

/// `10.0.0.0/8`, or a single address (a /32 or /128).
fn network(text: &str) -> Result<IpNet, ConfigError> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map(|n| n.trunc())
        .map_err(|_| {
            ConfigError::invalid(format!(
                "client_ip.trusted_proxies entry {text:?} is not an address or a network \
                 (e.g. \"10.0.0.0/8\", \"192.0.2.7\", \"2001:db8::/32\")"
            ))
        })
}

/// At least 16 bytes from `env:VAR`: a short key would let anyone hash the whole IPv4 space
/// and read the addresses back.
fn hash_key(reference: Option<&str>, env: &dyn Env) -> Result<ring::hmac::Key, ConfigError> {
    let reference = reference.ok_or_else(|| {
        ConfigError::invalid("client_ip.record = \"hash\" needs hash_key = \"env:VAR\"")
    })?;
    let var = reference.strip_prefix("env:").ok_or_else(|| {
        // Never echo the value: it may be the key itself.
        ConfigError::invalid("client_ip.hash_key must be \"env:VAR\" (a literal key is refused)")
    })?;
    let key = env.var(var).ok_or_else(|| {
        ConfigError::invalid(format!(
            "client_ip.hash_key: environment variable {var} is not set"
        ))
    })?;
    if key.len() < 16 {
        return Err(ConfigError::invalid(format!(
            "client_ip.hash_key: {var} must hold at least 16 bytes"
        )));
    }
    Ok(ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        key.as_bytes(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Vars(HashMap<&'static str, &'static str>);
    impl Env for Vars {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|v| v.to_string())
        }
    }

    fn parse(text: &str) -> Result<ClientIpPolicy, String> {
        let raw: ClientIpSection = toml::from_str(text).map_err(|e| e.to_string())?;
        let env = Vars(HashMap::from([
            ("IPKEY", "0123456789abcdef0123"),
            ("SHORT", "abc"),
        ]));
        build(Some(&raw), &env).map_err(|e| e.to_string())
    }

    #[test]
    fn absent_records_the_peer_whole_and_trusts_nobody() {
        let p = build(None, &super::super::NoEnv).unwrap();
        assert_eq!(p, ClientIpPolicy::default());
        assert!(p.trusted.is_empty());
    }

    #[test]
    fn networks_and_single_addresses_are_trusted() {
        let p =
            parse("trusted_proxies = [\"10.1.2.3/8\", \"192.0.2.7\", \"2001:db8::/32\"]").unwrap();
        let shown: Vec<String> = p.trusted.iter().map(|n| n.to_string()).collect();
        assert_eq!(shown, ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]);
        let err = parse("trusted_proxies = [\"10.0.0.0/40\"]").unwrap_err();
        assert!(err.contains("10.0.0.0/40"), "{err}");
    }

    #[test]
    fn modes_are_validated() {
        assert_eq!(
            parse("record = \"truncate\"").unwrap().record,
            IpRecord::Truncate { v4: 24, v6: 48 }
        );
        assert_eq!(
            parse("record = \"truncate\"\nipv4_prefix = 16\nipv6_prefix = 64")
                .unwrap()
                .record,
            IpRecord::Truncate { v4: 16, v6: 64 }
        );
        assert_eq!(parse("record = \"off\"").unwrap().record, IpRecord::Off);
        for (text, expect) in [
            ("record = \"truncate\"\nipv4_prefix = 33", "at most /32"),
            ("ipv4_prefix = 16", "only apply with record = \"truncate\""),
            ("record = \"hash\"", "needs hash_key"),
            (
                "record = \"hash\"\nhash_key = \"env:NOPE\"",
                "NOPE is not set",
            ),
            (
                "record = \"hash\"\nhash_key = \"env:SHORT\"",
                "at least 16 bytes",
            ),
            (
                "hash_key = \"env:IPKEY\"",
                "only applies with record = \"hash\"",
            ),
            ("record = \"sometimes\"", "must be \"full\""),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(expect), "{text}: {err}");
        }
    }

    #[test]
    fn a_literal_hash_key_is_refused_without_echoing_it() {
        let err = parse("record = \"hash\"\nhash_key = \"my-secret-ip-key-123\"").unwrap_err();
        assert!(
            err.contains("env:VAR") && !err.contains("my-secret"),
            "{err}"
        );
        let p = parse("record = \"hash\"\nhash_key = \"env:IPKEY\"").unwrap();
        assert_eq!(format!("{:?}", p.record), "Hash(<key>)");
    }
}
