//! Sealed provider credentials: an org's own provider API key (BYOM) kept in config under AES-256-GCM.
//!
//! # Format
//!
//! A sealed value is `sealed:v<version>:<base64url-no-pad of nonce(12) || ciphertext || tag(16)>`.
//! `<version>` names the master key that sealed it, so the master key can be rotated: several
//! master keys are loaded at once, the newest (highest version) seals, and every loaded one opens.
//!
//! The associated data is `b"sluice/provider-key/v1\0" || org || b"\0" || provider`, so a sealed
//! value copied to another org or another provider fails to open instead of leaking one tenant's
//! credential to another. Org and provider names may not contain NUL, which keeps that encoding
//! unambiguous.
//!
//! # Failures
//!
//! * A version that is not loaded is reported as [`CryptoError::UnknownVersion`], naming only the
//!   version, so an operator who dropped an old master key too early sees exactly which one.
//! * Anything that does not parse (wrong prefix, bad base64url, too short to hold a nonce and tag)
//!   is [`CryptoError::Malformed`], which never repeats the value.
//! * A value that parses but fails authentication (wrong org, wrong provider, altered bytes, or a
//!   different master key under the same version number) is [`CryptoError::CannotOpen`], which
//!   names the org and provider (they are not secrets) and nothing else.
//!
//! Nonces are 96 random bits per seal; with random nonces one key is safe for about 2^32 seals,
//! far beyond how often operators seal credentials.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use data_encoding::{BASE64, BASE64URL_NOPAD, BASE64_NOPAD};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

#[cfg(test)]
mod tests;

/// Every sealed value starts with this, which lets config loaders tell sealed from plain text.
pub const SEALED_PREFIX: &str = "sealed:";

/// Domain separation for the associated data; bump the suffix if the AAD layout ever changes.
const AAD_DOMAIN: &[u8] = b"sluice/provider-key/v1\0";
const MASTER_KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;

/// Upper bound on a sealed secret. Provider credentials are short (a service-account JSON is a few
/// KiB); the bound exists so garbage config cannot make `open` decode megabytes per request.
pub const MAX_SECRET_LEN: usize = 64 * 1024;

/// Longest base64url payload `open` will decode: nonce, the largest secret and the tag.
const MAX_PAYLOAD_CHARS: usize = (NONCE_LEN + MAX_SECRET_LEN + TAG_LEN).div_ceil(3) * 4;

/// Errors from loading master keys and sealing or opening credentials.
///
/// No variant carries key material, plaintext or the sealed text, so these are safe to log.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("no master key configured: set SLUICE_MASTER_KEY or point to a master key file")]
    NoMasterKey,
    #[error("master key spec contains no keys")]
    EmptySpec,
    #[error("master key entry {entry}: {reason}")]
    BadEntry { entry: usize, reason: &'static str },
    #[error("master key version {0} appears more than once")]
    DuplicateVersion(u8),
    #[error("master key version must be between 1 and 255")]
    InvalidVersion,
    #[error("cannot read master key file {}: {source}", .path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("system random number generator failed")]
    Random,
    #[error("org and provider names must be non-empty and must not contain NUL bytes")]
    InvalidName,
    #[error("secret to seal is empty")]
    EmptySecret,
    #[error("secret to seal is longer than {MAX_SECRET_LEN} bytes")]
    SecretTooLong,
    #[error("sealed value is malformed (expected sealed:v<version>:<base64url>)")]
    Malformed,
    #[error("sealed value uses master key version {0}, which is not loaded")]
    UnknownVersion(u8),
    #[error(
        "cannot open sealed value for org {org:?} provider {provider:?} (sealed for another org \
         or provider, with a different master key, or altered)"
    )]
    CannotOpen { org: String, provider: String },
    #[error("encryption failed")]
    Seal,
}

/// A decrypted credential. The buffer is zeroed on drop and `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Wraps plaintext that arrived some other way (e.g. from the environment); the vector is
    /// moved, not copied, so no unzeroed copy is left behind.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The plaintext. Callers should copy it only into places that are themselves short-lived.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The loaded master keys, ready to seal and open.
///
/// The AES key schedules are built once here because `open` runs while building every upstream
/// request. ring does not zero its expanded keys on drop; the raw key bytes we handle are zeroed.
#[derive(Clone)]
pub struct MasterKeys {
    keys: BTreeMap<u8, LessSafeKey>,
    newest: u8,
    rng: SystemRandom,
}

impl fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Versions are not secret and help when diagnosing rotation; the keys are.
        f.debug_struct("MasterKeys")
            .field("versions", &self.keys.keys().collect::<Vec<_>>())
            .field("newest", &self.newest)
            .finish_non_exhaustive()
    }
}

impl MasterKeys {
    /// Parses one or more `<version>:<base64 of 32 bytes>` entries separated by commas or
    /// newlines, e.g. `"1:AAAA…=,2:BBBB…="`. Versions are 1..=255 and must be distinct. Lines whose
    /// first non-blank character is `#` and empty entries are ignored. Padding on the base64 is
    /// optional. Errors name the entry by position (1-based), never by content.
    pub fn parse(spec: &str) -> Result<Self, CryptoError> {
        let mut keys = BTreeMap::new();
        let entries = spec
            .lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .flat_map(|line| line.split(','))
            .map(str::trim)
            .filter(|entry| !entry.is_empty());
        for (index, entry) in entries.enumerate() {
            let (version, key) = parse_entry(index + 1, entry)?;
            if keys.insert(version, key).is_some() {
                return Err(CryptoError::DuplicateVersion(version));
            }
        }
        let newest = match keys.last_key_value() {
            Some((version, _)) => *version,
            None => return Err(CryptoError::EmptySpec),
        };
        Ok(Self {
            keys,
            newest,
            rng: SystemRandom::new(),
        })
    }

    /// Loads from the value of `SLUICE_MASTER_KEY` if it is set and non-blank, else from `file`
    /// (same syntax, so comments work there). The key must never come from the config file it
    /// protects: whoever can read that file would then hold both lock and key.
    pub fn load(env_value: Option<&str>, file: Option<&Path>) -> Result<Self, CryptoError> {
        if let Some(spec) = env_value.filter(|value| !value.trim().is_empty()) {
            return Self::parse(spec);
        }
        let Some(path) = file else {
            return Err(CryptoError::NoMasterKey);
        };
        let text = std::fs::read_to_string(path).map_err(|source| CryptoError::ReadFile {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&Zeroizing::new(text))
    }

    /// A fresh `<version>:<base64>` entry for operators to add to their master key spec.
    pub fn generate_entry(version: u8) -> Result<String, CryptoError> {
        if version == 0 {
            return Err(CryptoError::InvalidVersion);
        }
        let mut bytes = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        SystemRandom::new()
            .fill(bytes.as_mut())
            .map_err(|_| CryptoError::Random)?;
        let encoded = Zeroizing::new(BASE64.encode(bytes.as_ref()));
        Ok(format!("{version}:{}", encoded.as_str()))
    }

    /// The version new seals use.
    pub fn newest_version(&self) -> u8 {
        self.newest
    }

    /// All loaded versions, oldest first.
    pub fn versions(&self) -> impl Iterator<Item = u8> + '_ {
        self.keys.keys().copied()
    }

    /// Seals `secret` for `org` and `provider` with the newest master key.
    pub fn seal(&self, org: &str, provider: &str, secret: &[u8]) -> Result<String, CryptoError> {
        let aad = associated_data(org, provider)?;
        if secret.is_empty() {
            return Err(CryptoError::EmptySecret);
        }
        if secret.len() > MAX_SECRET_LEN {
            return Err(CryptoError::SecretTooLong);
        }
        let key = self
            .keys
            .get(&self.newest)
            .ok_or(CryptoError::NoMasterKey)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| CryptoError::Random)?;
        // Full capacity up front: a reallocation would leave an unzeroed plaintext copy behind.
        let mut buf = Zeroizing::new(Vec::with_capacity(NONCE_LEN + secret.len() + TAG_LEN));
        buf.extend_from_slice(&nonce);
        buf.extend_from_slice(secret);
        let body = buf.get_mut(NONCE_LEN..).ok_or(CryptoError::Seal)?;
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_slice()),
                body,
            )
            .map_err(|_| CryptoError::Seal)?;
        buf.extend_from_slice(tag.as_ref());
        Ok(format!(
            "{SEALED_PREFIX}v{}:{}",
            self.newest,
            BASE64URL_NOPAD.encode(&buf)
        ))
    }

    /// Opens a value sealed for `org` and `provider`. Surrounding whitespace is ignored.
    pub fn open(&self, org: &str, provider: &str, sealed: &str) -> Result<Secret, CryptoError> {
        let (version, payload) = split_sealed(sealed.trim())?;
        let key = self
            .keys
            .get(&version)
            .ok_or(CryptoError::UnknownVersion(version))?;
        if payload.len() > MAX_PAYLOAD_CHARS {
            return Err(CryptoError::Malformed);
        }
        let cannot_open = || CryptoError::CannotOpen {
            org: org.to_owned(),
            provider: provider.to_owned(),
        };
        // A name that could never have been sealed cannot open anything.
        let aad = associated_data(org, provider).map_err(|_| cannot_open())?;
        // Decrypted in place, so the plaintext only ever lives in this zeroizing buffer.
        let mut buf = Zeroizing::new(
            BASE64URL_NOPAD
                .decode(payload.as_bytes())
                .map_err(|_| CryptoError::Malformed)?,
        );
        if buf.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Malformed);
        }
        let nonce = buf
            .get(..NONCE_LEN)
            .and_then(|bytes| Nonce::try_assume_unique_for_key(bytes).ok())
            .ok_or(CryptoError::Malformed)?;
        let plaintext_len = key
            .open_within(nonce, Aad::from(aad.as_slice()), &mut buf, NONCE_LEN..)
            .map_err(|_| cannot_open())?
            .len();
        buf.truncate(plaintext_len);
        Ok(Secret(buf))
    }
}

/// Whether a config value is sealed (as opposed to a plain value or an env reference).
pub fn is_sealed(value: &str) -> bool {
    value.trim_start().starts_with(SEALED_PREFIX)
}

fn parse_entry(entry: usize, text: &str) -> Result<(u8, LessSafeKey), CryptoError> {
    let bad = |reason| CryptoError::BadEntry { entry, reason };
    let (version, encoded) = text
        .split_once(':')
        .ok_or_else(|| bad("expected <version>:<base64 key>"))?;
    let version = parse_version(version.trim()).ok_or_else(|| bad("version must be 1..=255"))?;
    let encoded = encoded.trim().as_bytes();
    let bytes = Zeroizing::new(
        BASE64
            .decode(encoded)
            .or_else(|_| BASE64_NOPAD.decode(encoded))
            .map_err(|_| bad("key is not valid base64"))?,
    );
    if bytes.len() != MASTER_KEY_LEN {
        return Err(bad("key must decode to exactly 32 bytes"));
    }
    let unbound =
        UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| bad("key is not a valid AES-256 key"))?;
    Ok((version, LessSafeKey::new(unbound)))
}

/// Decimal 1..=255 without sign or leading zeros, so each version has exactly one spelling.
fn parse_version(text: &str) -> Option<u8> {
    let canonical = !text.is_empty()
        && text.len() <= 3
        && text.bytes().all(|b| b.is_ascii_digit())
        && !text.starts_with('0');
    if !canonical {
        return None;
    }
    text.parse().ok()
}

/// Splits `sealed:v<version>:<payload>` into the version and the (not yet decoded) payload.
fn split_sealed(sealed: &str) -> Result<(u8, &str), CryptoError> {
    let rest = sealed
        .strip_prefix(SEALED_PREFIX)
        .and_then(|rest| rest.strip_prefix('v'))
        .ok_or(CryptoError::Malformed)?;
    let (version, payload) = rest.split_once(':').ok_or(CryptoError::Malformed)?;
    let version = parse_version(version).ok_or(CryptoError::Malformed)?;
    Ok((version, payload))
}

fn associated_data(org: &str, provider: &str) -> Result<Vec<u8>, CryptoError> {
    let valid = |name: &str| !name.is_empty() && !name.contains('\0');
    if !valid(org) || !valid(provider) {
        return Err(CryptoError::InvalidName);
    }
    let mut aad = Vec::with_capacity(AAD_DOMAIN.len() + org.len() + 1 + provider.len());
    aad.extend_from_slice(AAD_DOMAIN);
    aad.extend_from_slice(org.as_bytes());
    aad.push(0);
    aad.extend_from_slice(provider.as_bytes());
    Ok(aad)
}
