//! Tests for sealed provider credentials: round trips, binding to org/provider, rotation, parsing.

use super::*;
use proptest::prelude::*;

/// A deterministic master key entry, so tests can build several distinct keys.
fn entry(version: u8, fill: u8) -> String {
    format!("{version}:{}", BASE64.encode(&[fill; 32]))
}

fn keys(spec: &str) -> MasterKeys {
    MasterKeys::parse(spec).expect("test spec parses")
}

fn v1() -> MasterKeys {
    keys(&entry(1, 0x11))
}

/// Whether opening failed because the value does not open under these keys and names.
fn cannot_open(opened: Result<Secret, CryptoError>) -> bool {
    matches!(opened, Err(CryptoError::CannotOpen { .. }))
}

/// Re-encodes a sealed value after letting `edit` change its decoded payload.
fn edit_payload(sealed: &str, edit: impl FnOnce(&mut Vec<u8>)) -> String {
    let (head, payload) = sealed.rsplit_once(':').unwrap();
    let mut bytes = BASE64URL_NOPAD.decode(payload.as_bytes()).unwrap();
    edit(&mut bytes);
    format!("{head}:{}", BASE64URL_NOPAD.encode(&bytes))
}

#[test]
fn tag_len_matches_ring() {
    assert_eq!(TAG_LEN, AES_256_GCM.tag_len());
}

#[test]
fn round_trip() {
    let k = v1();
    let sealed = k.seal("acme", "openai", b"sk-provider-secret").unwrap();
    assert!(sealed.starts_with("sealed:v1:"));
    assert!(is_sealed(&sealed));
    let secret = k.open("acme", "openai", &sealed).unwrap();
    assert_eq!(secret.expose(), b"sk-provider-secret");
    // Pasted values often carry a trailing newline.
    let secret = k.open("acme", "openai", &format!(" {sealed}\n")).unwrap();
    assert_eq!(secret.expose(), b"sk-provider-secret");
}

#[test]
fn seals_use_fresh_nonces() {
    let k = v1();
    let a = k.seal("acme", "openai", b"same").unwrap();
    let b = k.seal("acme", "openai", b"same").unwrap();
    assert_ne!(a, b);
}

#[test]
fn wrong_org_fails() {
    let k = v1();
    let sealed = k.seal("acme", "openai", b"secret-value").unwrap();
    let err = k.open("globex", "openai", &sealed).unwrap_err();
    assert!(matches!(err, CryptoError::CannotOpen { .. }));
    let text = err.to_string();
    assert!(
        text.contains("\"globex\"") && text.contains("\"openai\""),
        "{text}"
    );
}

#[test]
fn wrong_provider_fails() {
    let k = v1();
    let sealed = k.seal("acme", "openai", b"secret-value").unwrap();
    let err = k.open("acme", "anthropic", &sealed).unwrap_err();
    assert!(matches!(err, CryptoError::CannotOpen { .. }));
}

#[test]
fn nul_cannot_shift_the_org_provider_boundary() {
    let k = v1();
    for (org, provider) in [("a\0b", "c"), ("", "c"), ("a", "")] {
        assert!(
            matches!(k.seal(org, provider, b"x"), Err(CryptoError::InvalidName)),
            "{org:?}/{provider:?}"
        );
    }
    let sealed = k.seal("a", "b\0c", b"x");
    assert!(sealed.is_err());
    let sealed = k.seal("a", "b", b"x").unwrap();
    assert!(cannot_open(k.open("a\0", "b", &sealed)));
}

#[test]
fn every_tampered_byte_fails() {
    let k = v1();
    let sealed = k.seal("acme", "openai", b"secret-value").unwrap();
    let len = BASE64URL_NOPAD
        .decode(sealed.rsplit_once(':').unwrap().1.as_bytes())
        .unwrap()
        .len();
    assert_eq!(len, NONCE_LEN + b"secret-value".len() + TAG_LEN);
    for i in 0..len {
        let tampered = edit_payload(&sealed, |bytes| bytes[i] ^= 0x01);
        assert!(cannot_open(k.open("acme", "openai", &tampered)), "byte {i}");
    }
    // Truncating or extending the payload must fail too.
    let shorter = edit_payload(&sealed, |bytes| {
        bytes.pop();
    });
    assert!(k.open("acme", "openai", &shorter).is_err());
    let longer = edit_payload(&sealed, |bytes| bytes.push(0));
    assert!(k.open("acme", "openai", &longer).is_err());
}

#[test]
fn relabelled_version_fails() {
    let both = keys(&format!("{},{}", entry(1, 0x11), entry(2, 0x22)));
    let sealed = both.seal("acme", "openai", b"secret-value").unwrap();
    let relabelled = sealed.replacen("sealed:v2:", "sealed:v1:", 1);
    assert!(cannot_open(both.open("acme", "openai", &relabelled)));
}

#[test]
fn rotation() {
    let old = v1();
    let sealed_v1 = old.seal("acme", "openai", b"secret-value").unwrap();

    let both = keys(&format!("{}\n{}", entry(1, 0x11), entry(2, 0x22)));
    assert_eq!(both.newest_version(), 2);
    assert_eq!(both.versions().collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(
        both.open("acme", "openai", &sealed_v1).unwrap().expose(),
        b"secret-value"
    );
    let sealed_v2 = both.seal("acme", "openai", b"secret-value").unwrap();
    assert!(sealed_v2.starts_with("sealed:v2:"));

    let only_v2 = keys(&entry(2, 0x22));
    assert_eq!(
        only_v2.open("acme", "openai", &sealed_v2).unwrap().expose(),
        b"secret-value"
    );
    let err = only_v2.open("acme", "openai", &sealed_v1).unwrap_err();
    assert!(matches!(err, CryptoError::UnknownVersion(1)));
    assert_eq!(
        err.to_string(),
        "sealed value uses master key version 1, which is not loaded"
    );
}

#[test]
fn different_key_same_version_fails() {
    let sealed = v1().seal("acme", "openai", b"secret-value").unwrap();
    let other = keys(&entry(1, 0x99));
    assert!(cannot_open(other.open("acme", "openai", &sealed)));
}

#[test]
fn parse_accepts_comments_blank_lines_and_mixed_separators() {
    let spec = format!(
        "# master keys\n\n  {} , {}\n   # retired: 9:...\n{}\n",
        entry(1, 1),
        entry(3, 3),
        entry(2, 2)
    );
    let k = keys(&spec);
    assert_eq!(k.versions().collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(k.newest_version(), 3);
    // Unpadded base64 is accepted as well.
    let unpadded = entry(7, 7).trim_end_matches('=').to_owned();
    assert_eq!(keys(&unpadded).newest_version(), 7);
    assert_eq!(keys(&entry(255, 1)).newest_version(), 255);
}

#[test]
fn parse_errors() {
    let bad_entry = |spec: &str| match MasterKeys::parse(spec) {
        Err(CryptoError::BadEntry { entry, reason }) => (entry, reason),
        other => panic!("expected BadEntry for {spec:?}, got {other:?}"),
    };
    assert!(matches!(MasterKeys::parse(""), Err(CryptoError::EmptySpec)));
    assert!(matches!(
        MasterKeys::parse(" \n# only a comment\n,,"),
        Err(CryptoError::EmptySpec)
    ));
    assert_eq!(bad_entry("1:not base64!").1, "key is not valid base64");
    assert_eq!(
        bad_entry(&format!("1:{}", BASE64.encode(&[0; 16]))).1,
        "key must decode to exactly 32 bytes"
    );
    assert_eq!(
        bad_entry(&format!("1:{}", BASE64.encode(&[0; 33]))).1,
        "key must decode to exactly 32 bytes"
    );
    assert_eq!(
        bad_entry(&BASE64.encode(&[0; 32])).1,
        "expected <version>:<base64 key>"
    );
    for version in ["0", "256", "-1", "+1", "01", "x", ""] {
        let spec = format!("{version}:{}", BASE64.encode(&[0; 32]));
        assert_eq!(bad_entry(&spec).1, "version must be 1..=255", "{version}");
    }
    // Entries are numbered by position so the operator can find the bad one.
    assert_eq!(bad_entry(&format!("{},2:AAAA", entry(1, 1))).0, 2);
    assert!(matches!(
        MasterKeys::parse(&format!("{},{}", entry(4, 1), entry(4, 2))),
        Err(CryptoError::DuplicateVersion(4))
    ));
}

#[test]
fn parse_errors_never_echo_the_key() {
    let encoded = BASE64.encode(&[0xAB; 31]);
    for spec in [
        format!("1:{encoded}"),
        format!("1:{encoded}!"),
        encoded.clone(),
        format!("0:{encoded}"),
    ] {
        let text = MasterKeys::parse(&spec).unwrap_err().to_string();
        assert!(!text.contains(&encoded), "{text}");
    }
}

#[test]
fn load_prefers_env_then_file() {
    let dir = std::env::temp_dir().join(format!("sluice-crypto-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("master.keys");
    std::fs::write(&path, format!("# comment\n{}\n", entry(5, 5))).unwrap();

    let env = entry(6, 6);
    let from_env = MasterKeys::load(Some(&env), Some(&path)).unwrap();
    assert_eq!(from_env.newest_version(), 6);
    let from_file = MasterKeys::load(None, Some(&path)).unwrap();
    assert_eq!(from_file.newest_version(), 5);
    let blank_env = MasterKeys::load(Some("  "), Some(&path)).unwrap();
    assert_eq!(blank_env.newest_version(), 5);
    assert!(matches!(
        MasterKeys::load(None, None),
        Err(CryptoError::NoMasterKey)
    ));
    assert!(matches!(
        MasterKeys::load(Some(""), None),
        Err(CryptoError::NoMasterKey)
    ));
    let missing = dir.join("missing.keys");
    let err = MasterKeys::load(None, Some(&missing)).unwrap_err();
    assert!(matches!(err, CryptoError::ReadFile { .. }));
    assert!(err.to_string().contains("missing.keys"));

    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn generated_entries_parse_and_differ() {
    let a = MasterKeys::generate_entry(3).unwrap();
    let b = MasterKeys::generate_entry(3).unwrap();
    assert!(a.starts_with("3:"));
    assert_ne!(a, b);
    let k = keys(&a);
    assert_eq!(k.newest_version(), 3);
    let sealed = k.seal("acme", "openai", b"x").unwrap();
    assert_eq!(k.open("acme", "openai", &sealed).unwrap().expose(), b"x");
    assert!(matches!(
        MasterKeys::generate_entry(0),
        Err(CryptoError::InvalidVersion)
    ));
}

#[test]
fn malformed_values() {
    let k = v1();
    let valid_payload = k
        .seal("acme", "openai", b"x")
        .unwrap()
        .rsplit_once(':')
        .unwrap()
        .1
        .to_owned();
    for text in [
        String::new(),
        "sealed:".into(),
        "sealed:v1".into(),
        "sealed:v1:".into(),
        "sealed:1:AAAA".into(),
        "sealed:v1:!!!!".into(),
        "sealed:v1:AAAA".into(),
        format!("sealed:v01:{valid_payload}"),
        format!("sealed:v0:{valid_payload}"),
        format!("sealed:v256:{valid_payload}"),
        format!("sealed:v1:{valid_payload}="),
        format!("Sealed:v1:{valid_payload}"),
        "sk-plaintext-key".into(),
    ] {
        assert!(
            matches!(k.open("acme", "openai", &text), Err(CryptoError::Malformed)),
            "{text:?}"
        );
    }
    let huge = format!("sealed:v1:{}", "A".repeat(MAX_PAYLOAD_CHARS + 4));
    assert!(matches!(
        k.open("acme", "openai", &huge),
        Err(CryptoError::Malformed)
    ));
}

#[test]
fn seal_rejects_empty_and_oversized_secrets() {
    let k = v1();
    assert!(matches!(
        k.seal("acme", "openai", b""),
        Err(CryptoError::EmptySecret)
    ));
    assert!(matches!(
        k.seal("acme", "openai", &vec![7; MAX_SECRET_LEN + 1]),
        Err(CryptoError::SecretTooLong)
    ));
    // The largest allowed secret still opens, so the payload bound is not too tight.
    let big = vec![7; MAX_SECRET_LEN];
    let sealed = k.seal("acme", "openai", &big).unwrap();
    assert_eq!(
        k.open("acme", "openai", &sealed).unwrap().expose(),
        &big[..]
    );
}

#[test]
fn debug_is_redacted() {
    let spec = entry(1, 0x5A);
    let k = keys(&spec);
    let debug = format!("{k:?}");
    assert!(!debug.contains(spec.split_once(':').unwrap().1), "{debug}");
    assert!(debug.contains("versions"));
    let secret = Secret::new(b"hunter2".to_vec());
    assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
    let sealed = k.seal("acme", "openai", b"hunter2").unwrap();
    let opened = k.open("acme", "openai", &sealed).unwrap();
    assert_eq!(format!("{opened:?}"), "Secret(<redacted>)");
}

#[test]
fn errors_never_contain_secret_or_sealed_text() {
    let secret = "sk-live-0123456789abcdef";
    let k = v1();
    let sealed = k.seal("acme", "openai", secret.as_bytes()).unwrap();
    let payload = sealed.rsplit_once(':').unwrap().1.to_owned();
    let tampered = edit_payload(&sealed, |bytes| bytes[20] ^= 0x80);
    let errors = [
        k.open("globex", "openai", &sealed).unwrap_err(),
        k.open("acme", "anthropic", &sealed).unwrap_err(),
        k.open("acme", "openai", &tampered).unwrap_err(),
        k.open("acme", "openai", &format!("{sealed}!")).unwrap_err(),
        k.open("acme", "openai", &sealed.replacen("v1", "v9", 1))
            .unwrap_err(),
        k.open("acme", "openai", secret).unwrap_err(),
        k.seal("", "openai", secret.as_bytes()).unwrap_err(),
    ];
    for err in errors {
        let text = format!("{err} / {err:?}");
        assert!(!text.contains(secret), "{text}");
        assert!(!text.contains(&payload[..16]), "{text}");
    }
}

proptest! {
    #[test]
    fn prop_round_trip(
        secret in proptest::collection::vec(any::<u8>(), 1..512),
        org in "[^\\x00]{1,24}",
        provider in "[a-z0-9_-]{1,16}",
    ) {
        let k = keys(&format!("{},{}", entry(1, 1), entry(2, 2)));
        let sealed = k.seal(&org, &provider, &secret).unwrap();
        prop_assert!(sealed.starts_with("sealed:v2:"));
        let opened = k.open(&org, &provider, &sealed).unwrap();
        prop_assert_eq!(opened.expose(), &secret[..]);
        let other_org = format!("{org}x");
        prop_assert!(k.open(&other_org, &provider, &sealed).is_err());
    }

    #[test]
    fn prop_open_never_panics(text in "\\PC{0,200}", org in "\\PC{0,10}") {
        let k = v1();
        let _ = k.open(&org, "openai", &text);
        let _ = k.open("acme", "openai", &format!("sealed:v1:{text}"));
    }

    #[test]
    fn prop_open_never_panics_on_base64url(payload in "[A-Za-z0-9_-]{0,120}", version in 0u16..300) {
        let k = v1();
        let _ = k.open("acme", "openai", &format!("sealed:v{version}:{payload}"));
    }

    #[test]
    fn prop_errors_do_not_leak(
        secret in "[A-Za-z0-9]{16,64}",
        org in "[a-z]{1,8}",
    ) {
        let k = v1();
        let sealed = k.seal(&org, "openai", secret.as_bytes()).unwrap();
        let wrong_org = format!("{org}-other");
        let err = k.open(&wrong_org, "openai", &sealed).unwrap_err().to_string();
        prop_assert!(!err.contains(&secret));
        prop_assert!(!err.contains(&sealed));
        let garbled = format!("{sealed}#");
        let err = k.open(&org, "openai", &garbled).unwrap_err().to_string();
        prop_assert!(!err.contains(&secret));
        prop_assert!(!err.contains(&sealed));
    }

    #[test]
    fn prop_parse_never_panics(spec in "\\PC{0,200}") {
        let _ = MasterKeys::parse(&spec);
    }
}
