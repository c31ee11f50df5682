//! Retention with a fake clock (through the library, against the same databases) and erasure
//! through the HTTP API.

use crate::both_backends;
use crate::harness::{now_ms, record, Db, Ledger};
use sluice_control::db::{Retention, Store};
use sluice_control::time::DAY_MS;
use sluice_test_support::FakeClock;
use sluice_wire::{ErasureAnswer, GroupBy};
use std::sync::Arc;

async fn retention_purges_raw_records_and_ips_but_keeps_aggregates(db: Db) {
    let store = Store::open(&db.url(), 4).await.expect("open store");
    let now = 400 * DAY_MS + 12_345;
    let clock = FakeClock::at_ms(now);
    let aged = |days: u64, ip: bool| {
        let mut r = record("keep", now - days * DAY_MS, 10, 1, 100);
        if ip {
            r.client_ip = Some("192.0.2.7".into());
        }
        r
    };
    let records = vec![
        aged(0, true),
        aged(10, true),
        aged(31, true),
        aged(60, false),
        aged(89, true),
        aged(91, true),
        aged(200, false),
    ];
    let counts = store.ingest(&records, now).await.expect("ingest");
    assert_eq!(counts.accepted, 7);

    let report = store
        .purge(&clock, Retention::default())
        .await
        .expect("purge");
    assert_eq!(report.records_deleted, 2, "older than 90 days");
    assert_eq!(
        report.client_ips_cleared, 2,
        "IPs of records 31 and 89 days old"
    );

    let export = |store: &Store| {
        let mut rx = store.export(
            "keep".into(),
            0,
            u64::MAX >> 1,
            sluice_control::db::ExportFormat::Jsonl,
        );
        async move {
            let mut out = Vec::new();
            while let Some(chunk) = rx.recv().await {
                out.extend_from_slice(&chunk.expect("chunk"));
            }
            String::from_utf8(out)
                .expect("utf-8")
                .lines()
                .map(|l| serde_json::from_str::<sluice_wire::UsageRecord>(l).expect("record"))
                .collect::<Vec<_>>()
        }
    };
    let left = export(&store).await;
    let ages: Vec<(u64, bool)> = left
        .iter()
        .map(|r| ((now - r.time_ms) / DAY_MS, r.client_ip.is_some()))
        .collect();
    assert_eq!(
        ages,
        vec![(89, false), (60, false), (31, false), (10, true), (0, true)]
    );

    // Aggregates are billing records: all seven requests are still counted.
    let usage = store
        .usage(Some("keep"), 0, i64::MAX as u64, &[GroupBy::Day])
        .await
        .expect("usage");
    assert_eq!(usage.iter().map(|g| g.totals.requests).sum::<u64>(), 7);
    assert_eq!(
        usage.iter().map(|g| g.totals.cost_micro_usd).sum::<u64>(),
        700
    );

    // A second pass at the same time finds nothing; 31 days later the records then 89 and 60
    // days old age out, and the IPs of the records then 10 and 0 days old pass their limit.
    assert_eq!(
        store
            .purge(&clock, Retention::default())
            .await
            .expect("purge"),
        Default::default()
    );
    clock.advance(std::time::Duration::from_millis(31 * DAY_MS));
    let report = store
        .purge(&clock, Retention::default())
        .await
        .expect("purge");
    assert_eq!((report.records_deleted, report.client_ips_cleared), (2, 2));

    // Retention is configurable.
    let report = store
        .purge(
            &clock,
            Retention {
                records_days: 1,
                client_ip_days: 1,
                audit_days: 1,
            },
        )
        .await
        .expect("purge");
    assert_eq!((report.records_deleted, report.client_ips_cleared), (3, 0));
    assert!(export(&store).await.is_empty());
    store.close().await;
}
both_backends!(retention_purges_raw_records_and_ips_but_keeps_aggregates);

async fn erasure_removes_an_org_and_says_how_much(db: Db) {
    let ledger = Ledger::start(Arc::new(db));
    let t = now_ms();
    let mut gone = vec![
        record("gone", t, 1, 1, 1),
        record("gone", t, 2, 2, 2),
        record("gone", t - DAY_MS, 3, 3, 3),
    ];
    gone[1].model = Some("other-model".into());
    ledger.ingest(&gone).await;
    ledger.ingest(&[record("stays", t, 5, 5, 5)]).await;

    let resp = ledger
        .http
        .delete(ledger.url("/v1/orgs/gone"))
        .bearer_auth(crate::harness::ADMIN)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(resp.status(), 200);
    let answer: ErasureAnswer = resp.json().await.expect("answer");
    assert_eq!(answer.org, "gone");
    assert_eq!(answer.records, 3);
    // Two models in this hour and one record a day earlier: three hourly rows over two days.
    assert_eq!(answer.hourly_aggregates, 3);
    assert_eq!(answer.daily_aggregates, 2);

    assert_eq!(ledger.usage("org=gone").await.total.requests, 0);
    assert_eq!(ledger.usage("org=stays").await.total.requests, 1);
    let export = ledger
        .admin_get("/v1/orgs/gone/export")
        .await
        .text()
        .await
        .expect("body");
    assert!(export.is_empty());
    let spend: sluice_wire::SpendAnswer = ledger
        .admin_get("/v1/spend")
        .await
        .json()
        .await
        .expect("spend");
    assert!(spend.orgs.iter().all(|o| o.org != "gone"));

    // Erasing again finds nothing.
    let again: ErasureAnswer = ledger
        .http
        .delete(ledger.url("/v1/orgs/gone"))
        .bearer_auth(crate::harness::ADMIN)
        .send()
        .await
        .expect("DELETE")
        .json()
        .await
        .expect("answer");
    assert_eq!(
        (
            again.records,
            again.hourly_aggregates,
            again.daily_aggregates
        ),
        (0, 0, 0)
    );
}
both_backends!(erasure_removes_an_org_and_says_how_much);
