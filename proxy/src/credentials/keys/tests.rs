//! Tests for virtual keys: generation, digests, ids, model scopes, expiry parsing and CLI text.

use super::*;
use proptest::prelude::*;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn generated_keys_have_the_format_and_differ() {
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        let key = generate().unwrap();
        let body = key.strip_prefix(KEY_PREFIX).expect("prefix");
        assert!(body.len() >= 43, "{}", body.len());
        assert!(body.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(looks_like_virtual_key(&key));
        assert!(seen.insert(key.to_string()));
    }
}

#[test]
fn generated_characters_cover_the_alphabet() {
    // 200 keys × 43 characters: every one of 62 symbols should appear if sampling is uniform.
    let mut counts = [0usize; 128];
    for _ in 0..200 {
        for b in generate().unwrap().bytes().skip(KEY_PREFIX.len()) {
            counts[usize::from(b)] += 1;
        }
    }
    for &symbol in BASE62 {
        assert!(counts[usize::from(symbol)] > 0, "{}", char::from(symbol));
    }
}

#[test]
fn body_length_carries_256_bits() {
    assert!(BODY_LEN as f64 * 62f64.log2() >= 256.0);
    assert!(((BODY_LEN - 1) as f64) * 62f64.log2() < 256.0);
    assert_eq!(usize::from(REJECT_FROM) % 62, 0);
}

#[test]
fn digest_round_trip() {
    let key = generate().unwrap();
    let digest = KeyDigest::of(&key);
    let text = digest.to_config_string();
    assert!(text.starts_with("sha256:"));
    assert_eq!(text.len(), 7 + 64);
    assert!(text[7..]
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_eq!(KeyDigest::parse(&text).unwrap(), digest);
    assert_eq!(
        KeyDigest::parse(&text.to_uppercase().replacen("SHA256", "sha256", 1)).unwrap(),
        digest
    );
    assert_eq!(format!(" {text}\n").parse::<KeyDigest>().unwrap(), digest);
    assert_ne!(KeyDigest::of("sk-sluice-a"), KeyDigest::of("sk-sluice-b"));
}

#[test]
fn known_digest() {
    // SHA-256("abc"), a published test vector.
    assert_eq!(
        KeyDigest::of("abc").to_config_string(),
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn digest_parse_errors() {
    let good = KeyDigest::of("x").to_config_string();
    for bad in [
        "",
        "sha256:",
        "sha256:abc",
        &good[..good.len() - 1],
        format!("{good}0").as_str(),
        good.replacen("sha256:", "sha512:", 1).as_str(),
        good.replacen("sha256:", "", 1).as_str(),
        format!("sha256:{}", "g".repeat(64)).as_str(),
        format!("sha256:{}", "é".repeat(32)).as_str(),
    ] {
        assert_eq!(KeyDigest::parse(bad), Err(KeyError::BadDigest), "{bad:?}");
    }
    let key = generate().unwrap();
    let err = KeyDigest::parse(&key).unwrap_err();
    assert_eq!(err, KeyError::PlaintextKey);
    assert!(!err.to_string().contains(key.as_str()));
}

#[test]
fn digest_serde_uses_config_string() {
    #[derive(serde::Deserialize)]
    struct Entry {
        digest: KeyDigest,
    }
    let digest = KeyDigest::of("sk-sluice-x");
    let toml_text = format!("digest = \"{}\"", digest.to_config_string());
    let entry: Entry = toml::from_str(&toml_text).unwrap();
    assert_eq!(entry.digest, digest);
    assert_eq!(
        serde_json::to_string(&digest).unwrap(),
        format!("\"{}\"", digest.to_config_string())
    );
    // Our message never echoes the value (toml itself may quote the offending line).
    let err = serde_json::from_str::<KeyDigest>("\"sk-sluice-secretsecret\"")
        .unwrap_err()
        .to_string();
    assert!(!err.contains("secretsecret"), "{err}");
}

#[test]
fn key_id_is_stable_short_and_not_the_digest() {
    let digest = KeyDigest::of("sk-sluice-example");
    let id = digest.key_id();
    assert_eq!(id, KeyDigest::of("sk-sluice-example").key_id());
    let text = id.to_string();
    assert_eq!(text.len(), 16);
    assert!(text.starts_with("key_"));
    assert!(text[4..]
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    let hex = &digest.to_config_string()[7..];
    assert!(!hex.starts_with(&text[4..]));
    assert!(!hex.contains(&text[4..]));
    assert_ne!(id, KeyDigest::of("sk-sluice-other").key_id());
    assert_eq!(id.as_str(), text);
    assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{text}\""));
}

#[test]
fn digest_debug_shows_only_the_id() {
    let digest = KeyDigest::of("sk-sluice-example");
    let debug = format!("{digest:?}");
    assert_eq!(debug, format!("KeyDigest({})", digest.key_id()));
    assert!(!debug.contains(&digest.to_config_string()[7..20]));
}

#[test]
fn looks_like_virtual_key_edge_cases() {
    let body43 = "a".repeat(43);
    assert!(looks_like_virtual_key(&format!("sk-sluice-{body43}")));
    assert!(looks_like_virtual_key(&format!(
        "sk-sluice-{}",
        "Z9".repeat(64)
    )));
    for bad in [
        String::new(),
        "sk-sluice-".into(),
        format!("sk-sluice-{}", "a".repeat(42)),
        format!("sk-sluice-{}", "a".repeat(129)),
        format!("SK-SLUICE-{body43}"),
        format!("sk-sluic-{body43}"),
        format!("sk-{body43}"),
        format!(" sk-sluice-{body43}"),
        format!("sk-sluice-{body43} "),
        format!("sk-sluice-{}-", "a".repeat(43)),
        format!("sk-sluice-{}_x", "a".repeat(43)),
        format!("sk-sluice-{}é", "a".repeat(42)),
        format!("Bearer sk-sluice-{body43}"),
    ] {
        assert!(!looks_like_virtual_key(&bad), "{bad:?}");
    }
}

#[test]
fn model_scope_globs() {
    let scope = ModelScope::parse(&strings(&["gpt-4o*", "mock-*", "claude-3-5-sonnet"])).unwrap();
    assert!(!scope.is_all());
    assert!(scope.allows("gpt-4o"));
    assert!(scope.allows("gpt-4o-mini"));
    assert!(scope.allows("mock-echo"));
    assert!(scope.allows("claude-3-5-sonnet"));
    assert!(!scope.allows("claude-3-5-sonnet-latest"));
    assert!(!scope.allows("gpt-4"));
    assert!(!scope.allows("GPT-4o"));
    assert!(!scope.allows(""));
    assert_eq!(
        scope.patterns().collect::<Vec<_>>(),
        vec!["gpt-4o*", "mock-*", "claude-3-5-sonnet"]
    );
    let slashed = ModelScope::parse(&strings(&["openai/*", "gpt-?"])).unwrap();
    assert!(slashed.allows("openai/gpt-4o"));
    assert!(slashed.allows("gpt-5"));
    assert!(!slashed.allows("gpt-10"));
}

#[test]
fn model_scope_all_and_errors() {
    let empty = ModelScope::parse(&[]).unwrap();
    assert!(empty.is_all());
    assert!(empty.allows("anything"));
    let star = ModelScope::parse(&strings(&["gpt-4o", "*"])).unwrap();
    assert!(star.is_all());
    assert!(star.allows("claude"));
    assert!(ModelScope::default().is_all());

    assert_eq!(
        ModelScope::parse(&strings(&["gpt-4o", "  "])).unwrap_err(),
        KeyError::EmptyModelPattern { index: 2 }
    );
    let err = ModelScope::parse(&strings(&["*", "gpt-[4"])).unwrap_err();
    assert!(matches!(err, KeyError::BadModelPattern { ref pattern, .. } if pattern == "gpt-[4"));
    assert!(err.to_string().contains("gpt-[4"));
}

#[test]
fn expiry_rfc3339() {
    let now = at(1_700_000_000);
    let jan_2027 = at(1_798_761_600);
    assert_eq!(parse_expiry("2027-01-01T00:00:00Z", now).unwrap(), jan_2027);
    assert_eq!(
        parse_expiry(" 2027-01-01T00:00:00+00:00 ", now).unwrap(),
        jan_2027
    );
    assert_eq!(parse_expiry("2027-01-01", now).unwrap(), jan_2027);
    assert_eq!(
        parse_expiry("2027-01-01T00:00:00.5Z", now).unwrap(),
        jan_2027 + Duration::from_millis(500)
    );
    // Past timestamps are allowed: config may list keys that already expired.
    assert_eq!(
        parse_expiry("2020-01-01T00:00:00Z", now).unwrap(),
        at(1_577_836_800)
    );
    assert_eq!(
        parse_expiry("2027-01-01T00:00:00+02:00", now),
        Err(KeyError::ExpiryNotUtc)
    );
    assert_eq!(
        parse_expiry("2027-01-01T00:00:00-05:00", now),
        Err(KeyError::ExpiryNotUtc)
    );
    for bad in [
        "2027-01-01T00:00:00",
        "2027-13-01T00:00:00Z",
        "2027-02-30",
        "2027-01-01 00:00:00Z",
        "1969-12-31T23:59:59Z",
        "2027-01-01T25:00:00Z",
        "2027-1-1",
    ] {
        assert_eq!(parse_expiry(bad, now), Err(KeyError::BadExpiry), "{bad}");
    }
}

#[test]
fn expiry_durations() {
    let now = at(1_700_000_000);
    assert_eq!(
        parse_expiry("30d", now).unwrap(),
        at(1_700_000_000 + 30 * 86_400)
    );
    assert_eq!(
        parse_expiry("12h", now).unwrap(),
        at(1_700_000_000 + 12 * 3_600)
    );
    assert_eq!(
        parse_expiry("1h 30m", now).unwrap(),
        at(1_700_000_000 + 5_400)
    );
    assert_eq!(parse_expiry("0s", now), Err(KeyError::ZeroDuration));
    assert_eq!(parse_expiry("20000y", now), Err(KeyError::ExpiryOutOfRange));
    for bad in [
        "",
        "  ",
        "soon",
        "30",
        "-5d",
        "30 parsecs",
        "d30",
        "tomorrow",
    ] {
        assert_eq!(parse_expiry(bad, now), Err(KeyError::BadExpiry), "{bad:?}");
    }
}

#[test]
fn new_key_text_has_key_once_and_a_toml_snippet() {
    let key = generate().unwrap();
    let expires = parse_expiry("2027-01-01T00:00:00Z", at(0)).unwrap();
    let text = new_key_text(
        &key,
        "acme",
        &strings(&["gpt-4o*", "mock-*"]),
        Some(expires),
    );
    assert_eq!(text.matches(key.as_str()).count(), 1);
    assert!(text.contains("shown only once"));
    let digest = KeyDigest::of(&key);
    let snippet = &text[text.find("[[keys]]").unwrap()..];
    let parsed: toml::Value = toml::from_str(snippet).unwrap();
    let entry = &parsed["keys"][0];
    assert_eq!(
        entry["digest"].as_str(),
        Some(digest.to_config_string().as_str())
    );
    assert_eq!(entry["id"].as_str(), Some(digest.key_id().as_str()));
    assert_eq!(entry["org"].as_str(), Some("acme"));
    assert_eq!(entry["models"].as_array().unwrap().len(), 2);
    assert_eq!(entry["expires"].as_str(), Some("2027-01-01T00:00:00Z"));
    assert!(!snippet.contains(key.as_str()));
}

#[test]
fn new_key_text_minimal_and_escaped() {
    let key = generate().unwrap();
    let text = new_key_text(&key, "ac\"me\\\n\u{7f}", &[], None);
    let snippet = &text[text.find("[[keys]]").unwrap()..];
    assert!(!snippet.contains("models"));
    assert!(!snippet.contains("expires"));
    let parsed: toml::Value = toml::from_str(snippet).unwrap();
    assert_eq!(parsed["keys"][0]["org"].as_str(), Some("ac\"me\\\n\u{7f}"));

    // A time RFC 3339 cannot express must not panic the formatter.
    let text = new_key_text(&key, "acme", &[], Some(at(MAX_EXPIRY_SECS + 1)));
    assert!(text.contains("# expires:"));
    let before_epoch = UNIX_EPOCH - Duration::from_secs(1);
    let text = new_key_text(&key, "acme", &[], Some(before_epoch));
    assert!(text.contains("# expires:"));
}

proptest! {
    #[test]
    fn prop_parse_expiry_never_panics(text in "\\PC{0,40}", secs in 0u64..4_000_000_000) {
        let _ = parse_expiry(&text, at(secs));
    }

    #[test]
    fn prop_parse_expiry_date_shaped(text in "[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9:.]{0,15}[Z+0-9:-]{0,7})?") {
        if let Ok(when) = parse_expiry(&text, at(0)) {
            prop_assert!(rfc3339_seconds(when).is_some());
        }
    }

    #[test]
    fn prop_parse_expiry_durations(text in "[0-9]{1,25} ?(s|m|h|d|w|y|ms|us|ns|days|months)") {
        let _ = parse_expiry(&text, at(1_700_000_000));
    }

    #[test]
    fn prop_digest_and_key_checks_never_panic(text in "\\PC{0,100}") {
        let _ = KeyDigest::parse(&text);
        let _ = looks_like_virtual_key(&text);
        let _ = KeyDigest::of(&text).key_id();
        let prefixed = format!("sk-sluice-{text}");
        let _ = looks_like_virtual_key(&prefixed);
        let sha = format!("sha256:{text}");
        let _ = KeyDigest::parse(&sha);
    }

    #[test]
    fn prop_digest_round_trip(key in "\\PC{0,80}") {
        let digest = KeyDigest::of(&key);
        prop_assert_eq!(KeyDigest::parse(&digest.to_config_string()).unwrap(), digest);
    }

    #[test]
    fn prop_model_scope_never_panics(patterns in proptest::collection::vec("\\PC{0,12}", 0..4), model in "\\PC{0,20}") {
        if let Ok(scope) = ModelScope::parse(&patterns) {
            let _ = scope.allows(&model);
        }
    }

    #[test]
    fn prop_new_key_text_is_valid_toml(org in "\\PC{1,20}", models in proptest::collection::vec("\\PC{1,12}", 0..3), secs in 0u64..MAX_EXPIRY_SECS) {
        let key = format!("sk-sluice-{}", "a".repeat(43));
        let text = new_key_text(&key, &org, &models, Some(at(secs)));
        let snippet = &text[text.find("[[keys]]").unwrap()..];
        let parsed: toml::Value = toml::from_str(snippet).unwrap();
        prop_assert_eq!(parsed["keys"][0]["org"].as_str(), Some(org.as_str()));
        let listed = parsed["keys"][0].get("models").and_then(|m| m.as_array()).map_or(0, Vec::len);
        prop_assert_eq!(listed, models.len());
    }
}
