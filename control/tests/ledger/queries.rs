//! Usage queries grouped by every dimension, with totals and ranges, and the spend feed.

use crate::both_backends;
use crate::harness::{now_ms, record, Db, Ledger};
use sluice_control::time::{day_start, DAY_MS, HOUR_MS};
use sluice_wire::{Outcome, UsageGroup, UsageRecord};
use std::sync::Arc;

/// (model, key, user, session, feature, status, hour offset from the base day, input, cost)
type Row = (
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    u16,
    u64,
    u64,
    u64,
);

fn build(org: &str, base: u64, rows: &[Row]) -> Vec<UsageRecord> {
    rows.iter()
        .map(
            |&(model, key, user, session, feature, status, hour, input, cost)| {
                let mut r = record(org, base + hour * HOUR_MS + 59_000, input, input / 10, cost);
                r.model = Some(model.into());
                r.key_id = Some(Arc::from(key));
                r.user = user.map(Into::into);
                r.session = session.map(Into::into);
                r.feature = feature.map(Into::into);
                r.status = status;
                if status != 200 {
                    r.outcome = Outcome::Rejected;
                }
                r
            },
        )
        .collect()
}

/// The groups as (label, requests, input tokens, cost) for compact assertions.
fn summary(
    groups: &[UsageGroup],
    label: impl Fn(&UsageGroup) -> String,
) -> Vec<(String, u64, u64, u64)> {
    groups
        .iter()
        .map(|g| {
            (
                label(g),
                g.totals.requests,
                g.totals.input_tokens,
                g.totals.cost_micro_usd,
            )
        })
        .collect()
}

fn s(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("-")
}

/// The label of a group by two text dimensions: `a/b`, `-` for an absent one.
fn pair(a: &Option<String>, b: &Option<String>) -> String {
    format!("{}/{}", s(a), s(b))
}

async fn usage_is_grouped_by_any_dimension_with_totals(db: Db) {
    let ledger = Ledger::start(Arc::new(db));
    let base = day_start(now_ms()) - 2 * DAY_MS;
    let rows: [Row; 4] = [
        (
            "a",
            "k1",
            Some("u1"),
            Some("s1"),
            Some("f1"),
            200,
            1,
            10,
            100,
        ),
        ("a", "k2", Some("u2"), None, None, 200, 1, 20, 200),
        ("b", "k1", Some("u1"), None, Some("f2"), 429, 2, 0, 0),
        ("b", "k1", None, None, None, 200, 25, 40, 400),
    ];
    let records = build("g", base, &rows);
    ledger.ingest(&records).await;
    ledger
        .ingest(&build(
            "other",
            base,
            &[("a", "k9", None, None, None, 200, 1, 1000, 5)],
        ))
        .await;

    let by_model = ledger.usage("org=g&group_by=model").await;
    assert_eq!(
        summary(&by_model.groups, |g| s(&g.model).into()),
        vec![("a".into(), 2, 30, 300), ("b".into(), 2, 40, 400)]
    );
    assert_eq!(by_model.total.requests, 4);
    assert_eq!(by_model.total.input_tokens, 70);
    assert_eq!(by_model.total.output_tokens, 1 + 2 + 4);
    assert_eq!(by_model.total.cost_micro_usd, 700);
    assert!(by_model
        .groups
        .iter()
        .all(|g| g.day.is_none() && g.user.is_none()));

    let by_day = ledger.usage("org=g&group_by=day").await;
    let day0 = sluice_control::time::day_label(base);
    let day1 = sluice_control::time::day_label(base + DAY_MS);
    assert_eq!(
        summary(&by_day.groups, |g| s(&g.day).into()),
        vec![(day0.clone(), 3, 30, 300), (day1.clone(), 1, 40, 400)]
    );

    let by_hour = ledger.usage("org=g&group_by=hour").await;
    assert_eq!(
        summary(&by_hour.groups, |g| s(&g.hour).into()),
        vec![
            (format!("{day0}T01:00:00Z"), 2, 30, 300),
            (format!("{day0}T02:00:00Z"), 1, 0, 0),
            (format!("{day1}T01:00:00Z"), 1, 40, 400),
        ]
    );

    let by_key_user = ledger.usage("org=g&group_by=key,user").await;
    assert_eq!(
        summary(&by_key_user.groups, |g| pair(&g.key, &g.user)),
        vec![
            ("k1/-".into(), 1, 40, 400),
            ("k1/u1".into(), 2, 10, 100),
            ("k2/u2".into(), 1, 20, 200),
        ]
    );

    let by_status = ledger.usage("org=g&group_by=status").await;
    assert_eq!(
        summary(&by_status.groups, |g| g
            .status
            .map(|s| s.to_string())
            .unwrap_or_default()),
        vec![("200".into(), 3, 70, 700), ("429".into(), 1, 0, 0)]
    );

    let by_tags = ledger.usage("org=g&group_by=session,feature").await;
    assert_eq!(
        summary(&by_tags.groups, |g| pair(&g.session, &g.feature)),
        vec![
            ("-/-".into(), 2, 60, 600),
            ("-/f2".into(), 1, 0, 0),
            ("s1/f1".into(), 1, 10, 100)
        ]
    );

    // Ranges: hours whose start is in [from, to).
    let later = ledger
        .usage(&format!(
            "org=g&from={}",
            sluice_control::time::day_label(base + DAY_MS)
        ))
        .await;
    assert_eq!((later.total.requests, later.total.input_tokens), (1, 40));
    assert!(later.groups.len() == 1 && later.group_by.is_empty());
    let earlier = ledger
        .usage(&format!("org=g&to={}", base + 2 * HOUR_MS))
        .await;
    assert_eq!(
        (earlier.total.requests, earlier.total.input_tokens),
        (2, 30)
    );
    let empty = ledger
        .usage(&format!("org=g&from={}", base + 3 * DAY_MS))
        .await;
    assert!(empty.groups.is_empty());
    assert_eq!(empty.total.requests, 0);

    // Without an org, every org counts.
    let all = ledger.usage("group_by=model").await;
    assert_eq!(all.total.requests, 5);
    assert_eq!(all.total.input_tokens, 1070);

    for bad in [
        "group_by=colour",
        "from=yesterday",
        "grouping=model",
        "from=5&to=4",
    ] {
        let resp = ledger.admin_get(&format!("/v1/usage?{bad}")).await;
        assert_eq!(resp.status(), 400, "{bad}");
    }
}
both_backends!(usage_is_grouped_by_any_dimension_with_totals);

async fn spend_feed_reports_current_day_and_month(db: Db) {
    let ledger = Ledger::start(Arc::new(db));
    let now = now_ms();
    let yesterday = day_start(now) - HOUR_MS;
    let last_month = sluice_control::time::month_start(now) - HOUR_MS;
    let mut records = vec![
        record("s1", now, 1, 1, 100),
        record("s1", yesterday, 1, 1, 10),
        record("s1", last_month, 1, 1, 1),
        record("s2", now, 1, 1, 5),
        record("s3", last_month, 1, 1, 7),
    ];
    let mut anonymous = record("x", now, 0, 0, 0);
    anonymous.org = None;
    anonymous.status = 401;
    anonymous.outcome = Outcome::Rejected;
    records.push(anonymous);
    assert_eq!(ledger.ingest(&records).await.accepted, 6);

    let resp = ledger.admin_get("/v1/spend").await;
    assert_eq!(resp.status(), 200);
    let spend: sluice_wire::SpendAnswer = resp.json().await.expect("spend");
    // Expectations follow the ledger's own period boundaries, so a test run across midnight
    // still checks the right thing.
    let in_day = |t: u64| t >= spend.day_start_ms;
    let in_month = |t: u64| t >= spend.month_start_ms;
    let expected = |org: &str| {
        let mine = records.iter().filter(|r| r.org.as_deref() == Some(org));
        mine.fold((0, 0), |(d, m), r| {
            (
                d + if in_day(r.time_ms) {
                    r.cost_micro_usd
                } else {
                    0
                },
                m + if in_month(r.time_ms) {
                    r.cost_micro_usd
                } else {
                    0
                },
            )
        })
    };
    let got: Vec<(String, u64, u64)> = spend
        .orgs
        .iter()
        .map(|o| (o.org.clone(), o.day_micro_usd, o.month_micro_usd))
        .collect();
    let mut want = Vec::new();
    for org in ["s1", "s2", "s3"] {
        let (d, m) = expected(org);
        if m > 0 {
            want.push((org.to_string(), d, m));
        }
    }
    assert_eq!(got, want);
    assert!(spend.month_start_ms <= spend.day_start_ms && spend.day_start_ms <= spend.as_of_ms);
    assert_eq!(got[0].1, 100, "today's spend of s1");
}
both_backends!(spend_feed_reports_current_day_and_month);
