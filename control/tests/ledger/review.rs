//! Abuse review: suspensions over the HTTP API (listed in the spend feed the proxies poll),
//! the audit log of every operator action and its purge with a fake clock, and abuse flags:
//! raised by a threshold and reviewed into a suspension, and judged against a subject's own
//! week with a fake clock.

use crate::both_backends;
use crate::harness::{Db, Ledger, ADMIN};
use sluice_control::db::review::AuditAction;
use sluice_control::db::{Retention, Store};
use sluice_control::time::DAY_MS;
use sluice_test_support::wait_for;
use sluice_test_support::FakeClock;
use sluice_wire::{
    AuditAnswer, Flag, FlagKind, FlagMetric, FlagStatus, FlagsAnswer, SpendAnswer, SubjectKind,
    Suspension, SuspensionsAnswer,
};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

async fn suspensions_are_listed_in_the_feed_and_every_change_is_audited(db: Db) {
    let ledger = Ledger::start(Arc::new(db));
    let put = |path: &str, body: serde_json::Value| {
        ledger
            .http
            .put(ledger.url(path))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
    };
    let reason = serde_json::json!({"reason": "burst from 203.0.113.7"});
    let resp = put("/v1/suspensions/key/key_abc123", reason.clone())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let s: Suspension = resp.json().await.unwrap();
    assert_eq!(
        (s.kind, s.subject.as_str()),
        (SubjectKind::Key, "key_abc123")
    );
    assert_eq!(
        put("/v1/suspensions/org/acme", reason.clone())
            .await
            .unwrap()
            .status(),
        200
    );
    // Suspending again updates the reason and keeps the start.
    let again: Suspension = put(
        "/v1/suspensions/key/key_abc123",
        serde_json::json!({"reason": "still"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        (again.reason.as_str(), again.since_ms),
        ("still", s.since_ms)
    );

    // Refusals: a bad kind, a subject with spaces, an empty reason, no token.
    for (path, body) in [
        ("/v1/suspensions/team/x", reason.clone()),
        ("/v1/suspensions/key/a%20b", reason.clone()),
        (
            "/v1/suspensions/key/key_x",
            serde_json::json!({"reason": "  "}),
        ),
    ] {
        assert_eq!(put(path, body).await.unwrap().status(), 400, "{path}");
    }
    let anonymous = ledger
        .http
        .put(ledger.url("/v1/suspensions/key/key_x"))
        .json(&reason)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    let listed: SuspensionsAnswer = ledger.admin_json("/v1/suspensions").await;
    let subjects: Vec<_> = listed
        .suspensions
        .iter()
        .map(|s| (s.kind, s.subject.as_str()))
        .collect();
    assert_eq!(
        subjects,
        [(SubjectKind::Key, "key_abc123"), (SubjectKind::Org, "acme")]
    );
    let feed: SpendAnswer = ledger.admin_json("/v1/spend").await;
    assert_eq!(feed.suspended, listed.suspensions);

    let delete = |path: &str| {
        ledger
            .http
            .delete(ledger.url(path))
            .bearer_auth(ADMIN)
            .send()
    };
    assert_eq!(
        delete("/v1/suspensions/org/acme").await.unwrap().status(),
        204
    );
    assert_eq!(
        delete("/v1/suspensions/org/acme").await.unwrap().status(),
        404
    );
    let feed: SpendAnswer = ledger.admin_json("/v1/spend").await;
    assert_eq!(feed.suspended.len(), 1);

    // An export and an erasure are audited too.
    assert_eq!(
        ledger
            .admin_get("/v1/orgs/acme/export?format=csv")
            .await
            .status(),
        200
    );
    assert_eq!(delete("/v1/orgs/gone").await.unwrap().status(), 200);

    let audit: AuditAnswer = ledger.admin_json("/v1/audit").await;
    let actions: Vec<(&str, Option<&str>)> = audit
        .entries
        .iter()
        .map(|e| (e.action.as_str(), e.subject.as_deref()))
        .collect();
    assert_eq!(
        actions,
        [
            ("suspension.set", Some("key key_abc123")),
            ("suspension.set", Some("org acme")),
            ("suspension.set", Some("key key_abc123")),
            ("suspension.lifted", Some("org acme")),
            ("org.export", Some("acme")),
            ("org.erase", Some("gone")),
        ]
    );
    assert!(audit
        .entries
        .iter()
        .all(|e| e.actor == "operator" && e.source_ip.as_deref() == Some("127.0.0.1")));
    assert_eq!(
        audit.entries[0].detail.as_deref(),
        Some("burst from 203.0.113.7")
    );
    let limited: AuditAnswer = ledger.admin_json("/v1/audit?limit=2").await;
    assert_eq!(limited.entries, audit.entries[..2]);
    assert_eq!(ledger.admin_get("/v1/audit?limit=0").await.status(), 400);
    assert_eq!(ledger.admin_get("/v1/audit?org=x").await.status(), 400);
}
both_backends!(suspensions_are_listed_in_the_feed_and_every_change_is_audited);

async fn the_audit_log_is_purged_after_its_retention(db: Db) {
    let store = Store::open(&db.url(), 4).await.expect("open store");
    let now = 400 * DAY_MS;
    let clock = FakeClock::at_ms(now);
    let action = |what: &'static str| AuditAction {
        actor: "operator".into(),
        action: what,
        ..Default::default()
    };
    for days in [0, 89, 91] {
        store
            .audit(now - days * DAY_MS, action("org.export"))
            .await
            .unwrap();
    }
    let report = store.purge(&clock, Retention::default()).await.unwrap();
    assert_eq!(report.audit_deleted, 1, "older than 90 days");
    clock.advance(std::time::Duration::from_millis(2 * DAY_MS));
    let report = store.purge(&clock, Retention::default()).await.unwrap();
    assert_eq!(report.audit_deleted, 1, "the one 89 days old is now 91");
    let left = store.audit_log(0, u64::MAX >> 1, 100).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].time_ms, now);
    store.close().await;
}
both_backends!(the_audit_log_is_purged_after_its_retention);

/// Records of `key` from `ip` at `time_ms`.
fn burst(n: usize, key: &str, ip: &str, time_ms: u64) -> Vec<sluice_wire::UsageRecord> {
    (0..n)
        .map(|_| {
            let mut r = crate::harness::record("acme", time_ms, 10, 5, 1);
            r.key_id = Some(key.into());
            r.client_ip = Some(ip.into());
            r
        })
        .collect()
}

async fn a_burst_from_one_ip_is_flagged_and_reviewed_into_a_suspension(db: Db) {
    let ledger = Ledger::start_with(
        Arc::new(db),
        &[
            "--abuse-threshold",
            "ip:requests=20",
            "--abuse-interval-secs",
            "1",
        ],
    );
    let now = crate::harness::now_ms();
    ledger
        .ingest(&burst(5, "key_calm", "198.51.100.1", now))
        .await;
    ledger
        .ingest(&burst(30, "key_noisy", "203.0.113.9", now))
        .await;
    let flag = wait_for("a flag for the bursting IP", WAIT, || async {
        let answer: FlagsAnswer = ledger.admin_json("/v1/flags").await;
        answer.flags.into_iter().find(|f| f.kind == FlagKind::Ip)
    })
    .await;
    assert_eq!(
        (
            flag.subject.as_str(),
            flag.metric,
            flag.value,
            flag.by_threshold,
            flag.bar
        ),
        ("203.0.113.9", FlagMetric::Requests, 30, true, 20.0)
    );
    let text = ledger.admin_get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains("sluice_control_abuse_flags_open{kind=\"ip\"} 1"),
        "{text}"
    );

    let review = |body: serde_json::Value| {
        ledger
            .http
            .post(ledger.url(&format!("/v1/flags/{}/review", flag.id)))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
    };
    // An IP flag must say which key or org to suspend.
    let resp = review(serde_json::json!({"action": "suspend"}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = review(serde_json::json!({
        "action": "suspend",
        "note": "one client, thirty requests in a minute",
        "suspend": {"kind": "key", "subject": "key_noisy"}
    }))
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let reviewed: Flag = resp.json().await.unwrap();
    assert_eq!(reviewed.status, FlagStatus::Suspended);
    assert_eq!(
        reviewed.note.as_deref(),
        Some("one client, thirty requests in a minute")
    );
    assert_eq!(
        review(serde_json::json!({"action": "dismiss"}))
            .await
            .unwrap()
            .status(),
        409
    );

    let listed: SuspensionsAnswer = ledger.admin_json("/v1/suspensions").await;
    assert_eq!(listed.suspensions.len(), 1);
    assert_eq!(listed.suspensions[0].subject, "key_noisy");
    assert!(
        listed.suspensions[0].reason.contains("30 requests ip"),
        "{:?}",
        listed.suspensions[0]
    );
    let open: FlagsAnswer = ledger.admin_json("/v1/flags").await;
    assert!(open.flags.is_empty(), "{open:?}");
    let all: FlagsAnswer = ledger.admin_json("/v1/flags?status=all").await;
    assert_eq!(all.flags.len(), 1);
    // The next passes keep the reviewed flag as it is.
    let audit: AuditAnswer = ledger.admin_json("/v1/audit").await;
    let actions: Vec<&str> = audit.entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["suspension.set", "flag.reviewed"]);
    assert_eq!(
        ledger.admin_get("/v1/flags?status=maybe").await.status(),
        400
    );
}
both_backends!(a_burst_from_one_ip_is_flagged_and_reviewed_into_a_suspension);

async fn a_subject_is_judged_against_its_own_week(db: Db) {
    let store = Store::open(&db.url(), 4).await.expect("open store");
    let hour = sluice_control::time::HOUR_MS;
    let now = 400 * DAY_MS + 30 * 60_000;
    let clock = FakeClock::at_ms(now);
    // Eight earlier hours of 10 requests each, then 150 in the current hour (all from one IP).
    let mut records = Vec::new();
    for h in 1..=8 {
        records.extend(burst(10, "key_k", "192.0.2.5", now - h * hour));
    }
    records.extend(burst(150, "key_k", "192.0.2.5", now));
    store.ingest(&records, now).await.unwrap();
    let raised = sluice_control::abuse::pass(&store, &clock, &Default::default())
        .await
        .unwrap();
    let seen: Vec<_> = raised
        .iter()
        .map(|f| {
            (
                f.kind,
                f.subject.as_str(),
                f.metric,
                f.value,
                f.median,
                f.by_threshold,
            )
        })
        .collect();
    // The key, its org and its IP each went from 10 to 150 requests; tokens (2,250) stay under
    // the token floor.
    assert_eq!(
        seen,
        [
            (
                FlagKind::Key,
                "key_k",
                FlagMetric::Requests,
                150,
                10.0,
                false
            ),
            (
                FlagKind::Org,
                "acme",
                FlagMetric::Requests,
                150,
                10.0,
                false
            ),
            (
                FlagKind::Ip,
                "192.0.2.5",
                FlagMetric::Requests,
                150,
                10.0,
                false
            ),
        ]
    );
    // A pass an hour later judges that hour as the previous one: still one flag per subject.
    clock.advance(std::time::Duration::from_millis(hour));
    sluice_control::abuse::pass(&store, &clock, &Default::default())
        .await
        .unwrap();
    assert_eq!(store.flags(None, 100).await.unwrap().len(), 3);
    store.close().await;
}
both_backends!(a_subject_is_judged_against_its_own_week);
