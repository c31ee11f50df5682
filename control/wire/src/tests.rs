//! Tests of the wire format: today's proxy lines parse, versions and ids are checked, and what
//! is written reads back the same.

use super::*;
use std::sync::Arc;

/// A line exactly as `sluice-proxy` wrote it before the wire crate existed (no `v`, no cost),
/// with tags and meta flattened in.
const PROXY_LINE: &str = r#"{"id":"019a4f2e-8c1b-7d2e-9f00-0123456789ab","time_ms":1763856000123,"org":"acme","key_id":"key_0123456789abcdef","provider":"openai","model":"gpt-4o-mini","upstream_model":"gpt-4o-mini-2024-07-18","api":"chat.completions","stream":true,"status":200,"outcome":"ok","input_tokens":120,"output_tokens":45,"cached_tokens":100,"cache_write_tokens":0,"reasoning_tokens":7,"estimated":false,"ttft_ms":12.5,"total_ms":80.25,"upstream_ms":70.0,"bytes_in":512,"bytes_out":2048,"user":"u-1","feature":"search","meta":{"team":"core"}}"#;

/// A refused request: no key, so no org, key, provider or model, and null timings.
const REJECTED_LINE: &str = r#"{"id":"019a4f2e-8c1b-7d2e-9f00-0123456789ac","time_ms":1763856000999,"org":null,"key_id":null,"provider":null,"model":null,"upstream_model":null,"api":"unknown","stream":false,"status":401,"outcome":"rejected","input_tokens":0,"output_tokens":0,"cached_tokens":0,"cache_write_tokens":0,"reasoning_tokens":0,"estimated":false,"ttft_ms":null,"total_ms":0.1,"upstream_ms":null,"bytes_in":0,"bytes_out":90}"#;

#[test]
fn todays_proxy_line_parses_as_version_one() {
    let r: UsageRecord = serde_json::from_str(PROXY_LINE).expect("proxy line");
    assert_eq!(r.v, 1);
    assert_eq!(r.org.as_deref(), Some("acme"));
    assert_eq!(r.key_id.as_deref(), Some("key_0123456789abcdef"));
    assert_eq!(r.api, "chat.completions");
    assert_eq!(r.outcome, Outcome::Ok);
    assert_eq!(
        (
            r.input_tokens,
            r.output_tokens,
            r.cached_tokens,
            r.reasoning_tokens
        ),
        (120, 45, 100, 7)
    );
    assert_eq!(r.cost_micro_usd, 0);
    assert_eq!(r.ttft_ms, Some(12.5));
    assert_eq!(r.user.as_deref(), Some("u-1"));
    assert_eq!(r.session, None);
    assert_eq!(r.meta.get("team").map(String::as_str), Some("core"));
    assert_eq!(r.validate(), Ok(()));

    let rejected: UsageRecord = serde_json::from_str(REJECTED_LINE).expect("rejected line");
    assert_eq!(rejected.org, None);
    assert_eq!(rejected.outcome, Outcome::Rejected);
    assert_eq!(rejected.status, 401);
}

#[test]
fn written_records_read_back_equal_and_carry_the_version() {
    let mut r: UsageRecord = serde_json::from_str(PROXY_LINE).expect("proxy line");
    r.cost_micro_usd = 1234;
    r.client_ip = Some("192.0.2.1".into());
    let line = serde_json::to_string(&r).expect("serialize");
    assert!(line.starts_with(r#"{"v":1,"id":"019a4f2e-8c1b-7d2e-9f00-0123456789ab""#));
    let back: UsageRecord = serde_json::from_str(&line).expect("read back");
    assert_eq!(back, r);

    // Empty tags are left out rather than written as null, as the proxy did.
    let rejected: UsageRecord = serde_json::from_str(REJECTED_LINE).expect("rejected line");
    let line = serde_json::to_string(&rejected).expect("serialize");
    for absent in ["\"user\"", "\"meta\"", "\"client_ip\""] {
        assert!(!line.contains(absent), "{absent} written in {line}");
    }
}

#[test]
fn a_proxy_can_build_records_from_shared_strings() {
    let org: Arc<str> = Arc::from("acme");
    let mut r: UsageRecord = serde_json::from_str(REJECTED_LINE).expect("line");
    r.org = Some(org.clone());
    r.api = std::borrow::Cow::Borrowed("messages");
    assert_eq!(Arc::strong_count(&org), 2);
    let json = serde_json::to_value(&r).expect("serialize");
    assert_eq!(json["org"], "acme");
    assert_eq!(json["api"], "messages");
}

#[test]
fn unknown_fields_are_ignored_for_forward_compatibility() {
    let line = PROXY_LINE.replacen('{', r#"{"added_later":{"x":1},"#, 1);
    let r: UsageRecord = serde_json::from_str(&line).expect("extra field");
    assert_eq!(r.validate(), Ok(()));
}

#[test]
fn versions_beyond_the_current_one_and_non_v7_ids_are_refused() {
    let newer = PROXY_LINE.replacen('{', r#"{"v":2,"#, 1);
    let r: UsageRecord = serde_json::from_str(&newer).expect("parses");
    assert_eq!(r.validate(), Err(RecordError::UnsupportedVersion(2)));
    assert!(r
        .validate()
        .expect_err("v2")
        .to_string()
        .contains("version 2"));

    let v4 = PROXY_LINE.replace(
        "019a4f2e-8c1b-7d2e-9f00-0123456789ab",
        "6f1c1d8e-3a3b-4c2d-8e9f-0123456789ab",
    );
    let r: UsageRecord = serde_json::from_str(&v4).expect("parses");
    assert!(matches!(r.validate(), Err(RecordError::NotUuidV7(_))));
}

#[test]
fn malformed_records_fail_with_a_message_naming_the_problem() {
    let missing = PROXY_LINE.replace(r#""status":200,"#, "");
    let err = serde_json::from_str::<UsageRecord>(&missing).expect_err("missing status");
    assert!(err.to_string().contains("status"), "{err}");

    let bad_outcome = PROXY_LINE.replace(r#""outcome":"ok""#, r#""outcome":"fine""#);
    let err = serde_json::from_str::<UsageRecord>(&bad_outcome).expect_err("bad outcome");
    assert!(err.to_string().contains("fine"), "{err}");

    let negative = PROXY_LINE.replace(r#""input_tokens":120"#, r#""input_tokens":-1"#);
    assert!(serde_json::from_str::<UsageRecord>(&negative).is_err());
}

#[test]
fn outcomes_and_group_names_round_trip_through_their_spellings() {
    for o in Outcome::ALL {
        assert_eq!(o.as_str().parse::<Outcome>(), Ok(o));
        assert_eq!(
            serde_json::to_string(&o).expect("serialize"),
            format!("\"{o}\"")
        );
    }
    for g in GroupBy::ALL {
        assert_eq!(g.as_str().parse::<GroupBy>(), Ok(g));
    }
    assert!("colour"
        .parse::<GroupBy>()
        .expect_err("unknown")
        .contains("model"));
}

#[test]
fn answers_serialize_to_the_documented_shapes() {
    let answer = IngestAnswer {
        accepted: 2,
        duplicates: 1,
        rejected: vec![Rejection {
            index: 3,
            id: None,
            message: "missing field `id`".into(),
        }],
    };
    let json = serde_json::to_value(&answer).expect("serialize");
    assert_eq!(json["rejected"][0]["index"], 3);
    assert!(json["rejected"][0]["id"].is_null());

    let group = UsageGroup {
        model: Some("m".into()),
        totals: UsageTotals {
            requests: 2,
            ..UsageTotals::default()
        },
        ..UsageGroup::default()
    };
    let json = serde_json::to_value(&group).expect("serialize");
    assert_eq!(json["model"], "m");
    assert_eq!(json["requests"], 2);
    assert!(json.get("day").is_none());
    let back: UsageGroup = serde_json::from_value(json).expect("read back");
    assert_eq!(back, group);
}

#[test]
fn borrowed_and_owned_batches_serialize_the_same() {
    let r: UsageRecord = serde_json::from_str(PROXY_LINE).expect("line");
    let owned = IngestBatch {
        records: vec![r.clone(), r.clone()],
    };
    let borrowed = IngestBatchRef {
        records: &owned.records,
    };
    let a = serde_json::to_string(&owned).expect("owned");
    assert_eq!(a, serde_json::to_string(&borrowed).expect("borrowed"));
    assert!(a.starts_with(r#"{"records":[{"v":1,"#));
    let back: IngestBatch = serde_json::from_str(&a).expect("read back");
    assert_eq!(back, owned);
}
