//! Virtual keys: the `sk-sluice-…` bearer tokens apps hold, their stored digests and loggable ids.
//!
//! A key is `sk-sluice-` followed by 43 uniformly random base62 characters (62^43 ≈ 2^256.03, so
//! at least 256 bits of randomness). Config stores only `sha256:<64 lowercase hex>` of the whole
//! key and requests are matched by digest, so a leaked config does not leak usable keys. What logs,
//! metrics and usage records carry is the [`KeyId`], a short hash of the digest that identifies
//! the key to operators but cannot be turned back into the digest or the key.
//!
//! Digests are compared with ordinary (not constant-time) equality in hash maps: timing could at
//! most reveal bytes of a stored SHA-256 digest, and knowing a digest does not help forge a key.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use data_encoding::{HEXLOWER, HEXLOWER_PERMISSIVE};
use ring::digest::SHA256;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

#[cfg(test)]
mod tests;

/// Every virtual key starts with this.
pub const KEY_PREFIX: &str = "sk-sluice-";
/// Random characters in a generated key: the fewest base62 characters carrying 256 bits.
const BODY_LEN: usize = 43;
/// Longest body `looks_like_virtual_key` accepts, leaving room for longer keys later.
const MAX_BODY_LEN: usize = 128;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Random bytes at or above this are discarded so `byte % 62` is uniform (248 = 4 × 62).
const REJECT_FROM: u8 = 248;
const DIGEST_PREFIX: &str = "sha256:";
const KEY_ID_DOMAIN: &[u8] = b"sluice/key-id\0";
/// Bytes of the id hash shown: 48 bits tell keys apart in logs without being an index into them.
const KEY_ID_BYTES: usize = 6;
/// RFC 3339 cannot express year 10000 or later (253402300800 s is 10000-01-01T00:00:00Z).
const MAX_EXPIRY_SECS: u64 = 253_402_300_800;

/// Errors about virtual keys. No variant carries a key or anything the user typed as a digest,
/// because a confused operator may paste the key itself where the digest belongs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("system random number generator failed")]
    Random,
    #[error("key digest must be written as sha256:<64 hex digits>")]
    BadDigest,
    #[error(
        "a virtual key was given where its digest belongs; config stores only the digest \
         (`sluice-proxy keys new` prints it)"
    )]
    PlaintextKey,
    #[error("model pattern #{index} is empty")]
    EmptyModelPattern { index: usize },
    #[error("model pattern {pattern:?} is invalid: {reason}")]
    BadModelPattern {
        pattern: String,
        reason: &'static str,
    },
    #[error(
        "invalid expiry: expected an RFC 3339 UTC timestamp such as 2027-01-01T00:00:00Z, a date \
         such as 2027-01-01, or a duration such as 30d or 12h"
    )]
    BadExpiry,
    #[error("expiry timestamps must be in UTC (end in Z or +00:00)")]
    ExpiryNotUtc,
    #[error("expiry duration must be greater than zero")]
    ZeroDuration,
    #[error("expiry is out of range (must be before the year 10000)")]
    ExpiryOutOfRange,
}

/// SHA-256 of a presented virtual key: what config stores and what lookups use.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    /// Hashes a presented key. Cheap enough per request; call [`looks_like_virtual_key`] first
    /// so garbage never costs a hash.
    pub fn of(presented_key: &str) -> Self {
        Self(sha256(&[presented_key.as_bytes()]))
    }

    /// Parses `sha256:<64 hex digits>` (hex in either case; surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        if text.starts_with(KEY_PREFIX) {
            return Err(KeyError::PlaintextKey);
        }
        let hex = text
            .strip_prefix(DIGEST_PREFIX)
            .filter(|hex| hex.len() == 64)
            .ok_or(KeyError::BadDigest)?;
        let bytes = HEXLOWER_PERMISSIVE
            .decode(hex.as_bytes())
            .map_err(|_| KeyError::BadDigest)?;
        let bytes = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| KeyError::BadDigest)?;
        Ok(Self(bytes))
    }

    /// `sha256:<64 lowercase hex>`, the form config stores.
    pub fn to_config_string(&self) -> String {
        format!("{DIGEST_PREFIX}{}", HEXLOWER.encode(&self.0))
    }

    /// The loggable id of this key.
    pub fn key_id(&self) -> KeyId {
        let hash = sha256(&[KEY_ID_DOMAIN, &self.0]);
        let shown = hash.get(..KEY_ID_BYTES).unwrap_or(&hash);
        KeyId(format!("key_{}", HEXLOWER.encode(shown)).into())
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The id is what humans correlate on; the raw digest has no business in debug logs.
        write!(f, "KeyDigest({})", self.key_id())
    }
}

impl FromStr for KeyDigest {
    type Err = KeyError;
    fn from_str(text: &str) -> Result<Self, KeyError> {
        Self::parse(text)
    }
}

impl serde::Serialize for KeyDigest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_config_string())
    }
}

impl<'de> serde::Deserialize<'de> for KeyDigest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `key_` + 12 lowercase hex characters: the non-reversible name of a key in logs, metrics and
/// usage records. Not guaranteed unique (48 bits), so it is a label, never a lookup key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct KeyId(Arc<str>);

impl KeyId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as shared text (for usage records: a reference count, not a copy).
    pub fn as_arc(&self) -> Arc<str> {
        self.0.clone()
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut context = ring::digest::Context::new(&SHA256);
    for part in parts {
        context.update(part);
    }
    let mut out = [0u8; 32];
    // SHA-256 output is always 32 bytes; zip keeps this panic-free without relying on that.
    for (o, i) in out.iter_mut().zip(context.finish().as_ref()) {
        *o = *i;
    }
    out
}

/// A new random virtual key, zeroed on drop.
///
/// Base62 rejection sampling is written by hand: it is a few lines, and a crate for it would be
/// overkill next to ring's generator.
pub fn generate() -> Result<Zeroizing<String>, KeyError> {
    let rng = SystemRandom::new();
    // Full capacity up front so growing the string never leaves a partial key in freed memory.
    let mut key = Zeroizing::new(String::with_capacity(KEY_PREFIX.len() + BODY_LEN));
    key.push_str(KEY_PREFIX);
    let mut pool = Zeroizing::new([0u8; 64]);
    let mut produced = 0;
    // 64 bytes yield about 62 accepted characters, so one round nearly always suffices.
    while produced < BODY_LEN {
        rng.fill(pool.as_mut()).map_err(|_| KeyError::Random)?;
        for &byte in pool.iter().filter(|&&byte| byte < REJECT_FROM) {
            if produced == BODY_LEN {
                break;
            }
            key.push(char::from(BASE62[usize::from(byte % 62)]));
            produced += 1;
        }
    }
    Ok(key)
}

/// Cheap syntactic check before hashing: the prefix, 43..=128 body characters, all ASCII
/// alphanumeric. Runs on untrusted headers, so it looks at each byte at most once.
pub fn looks_like_virtual_key(s: &str) -> bool {
    s.strip_prefix(KEY_PREFIX).is_some_and(|body| {
        (BODY_LEN..=MAX_BODY_LEN).contains(&body.len())
            && body.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// Which models a key may use: exact names or globs (`glob::Pattern`, case-sensitive, `*` also
/// crosses `/`). An empty list, or a `*` entry, allows every model.
#[derive(Debug, Clone, Default)]
pub struct ModelScope {
    /// Empty means every model is allowed.
    patterns: Vec<glob::Pattern>,
}

impl ModelScope {
    pub fn parse(patterns: &[String]) -> Result<Self, KeyError> {
        let mut parsed = Vec::with_capacity(patterns.len());
        let mut all = false;
        for (index, text) in patterns.iter().enumerate() {
            let text = text.trim();
            if text.is_empty() {
                return Err(KeyError::EmptyModelPattern { index: index + 1 });
            }
            // Keep validating after a `*` so a typo elsewhere in the list is still reported.
            all |= text == "*";
            let pattern = glob::Pattern::new(text).map_err(|e| KeyError::BadModelPattern {
                pattern: text.to_owned(),
                reason: e.msg,
            })?;
            parsed.push(pattern);
        }
        if all {
            parsed.clear();
        }
        Ok(Self { patterns: parsed })
    }

    pub fn allows(&self, model: &str) -> bool {
        self.is_all() || self.patterns.iter().any(|p| p.matches(model))
    }

    pub fn is_all(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The patterns as written (trimmed), for listings; empty when all models are allowed.
    pub fn patterns(&self) -> impl Iterator<Item = &str> + '_ {
        self.patterns.iter().map(glob::Pattern::as_str)
    }
}

/// Parses an expiry: an RFC 3339 UTC timestamp (`2027-01-01T00:00:00Z`, `+00:00` also accepted),
/// a bare date meaning midnight UTC (`2027-01-01`), or a humantime duration from `now` (`30d`,
/// `12h`, `1h 30m`). Other offsets are refused rather than guessed. Past timestamps are accepted
/// (config may list keys that already expired); zero durations are refused as a likely typo.
pub fn parse_expiry(text: &str, now: SystemTime) -> Result<SystemTime, KeyError> {
    let text = text.trim();
    let bytes = text.as_bytes();
    let when = if bytes.get(4) == Some(&b'-') && bytes.iter().take(4).all(u8::is_ascii_digit) {
        parse_timestamp(text)?
    } else {
        let duration = humantime::parse_duration(text).map_err(|_| KeyError::BadExpiry)?;
        if duration.is_zero() {
            return Err(KeyError::ZeroDuration);
        }
        now.checked_add(duration)
            .ok_or(KeyError::ExpiryOutOfRange)?
    };
    if rfc3339_seconds(when).is_none() {
        return Err(KeyError::ExpiryOutOfRange);
    }
    Ok(when)
}

fn parse_timestamp(text: &str) -> Result<SystemTime, KeyError> {
    if text.len() == "2027-01-01".len() {
        return humantime::parse_rfc3339(&format!("{text}T00:00:00Z"))
            .map_err(|_| KeyError::BadExpiry);
    }
    let utc = text.ends_with('Z') || text.ends_with('z') || text.ends_with("+00:00");
    let has_offset = text.len() > 19
        && text
            .get(19..)
            .is_some_and(|tail| tail.contains('+') || tail.contains('-'));
    match humantime::parse_rfc3339(text) {
        Ok(when) => Ok(when),
        Err(_) if !utc && has_offset => Err(KeyError::ExpiryNotUtc),
        Err(_) => Err(KeyError::BadExpiry),
    }
}

/// Whole seconds since the epoch if `when` can be written as RFC 3339 (1970 up to year 9999).
fn rfc3339_seconds(when: SystemTime) -> Option<Duration> {
    when.duration_since(UNIX_EPOCH)
        .ok()
        .filter(|since| since.as_secs() < MAX_EXPIRY_SECS)
}

/// The text `sluice-proxy keys new` prints: the key once, a warning that it is shown only once,
/// and a `[[keys]]` TOML snippet to paste into config.
pub fn new_key_text(
    key: &str,
    org: &str,
    models: &[String],
    expires: Option<SystemTime>,
) -> String {
    let digest = KeyDigest::of(key);
    let mut out = String::new();
    out.push_str("New virtual key (shown only once; sluice stores only its digest, so it cannot ");
    out.push_str("be recovered later):\n\n    ");
    out.push_str(key);
    out.push_str("\n\nAdd this to the config:\n\n[[keys]]\n");
    out.push_str(&format!(
        "digest = {}\n",
        toml_string(&digest.to_config_string())
    ));
    out.push_str(&format!(
        "id = {}  # informational: logs and usage records carry this id, never the key\n",
        toml_string(digest.key_id().as_str())
    ));
    out.push_str(&format!("org = {}\n", toml_string(org)));
    if !models.is_empty() {
        let list: Vec<String> = models.iter().map(|m| toml_string(m)).collect();
        out.push_str(&format!("models = [{}]\n", list.join(", ")));
    }
    if let Some(when) = expires {
        // Seconds precision is what operators type; sub-second expiry is noise.
        match rfc3339_seconds(when) {
            Some(_) => out.push_str(&format!(
                "expires = \"{}\"\n",
                humantime::format_rfc3339_seconds(when)
            )),
            None => out.push_str("# expires: not representable as RFC 3339; set it by hand\n"),
        }
    }
    out
}

/// A TOML basic string, escaping what TOML requires so odd org or model names cannot break out.
fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
