//! Ingest: exactly once by id (repeats, overlaps, concurrent duplicates, restarts after a
//! crash), and per-record rejection.

use crate::both_backends;
use crate::harness::{now_ms, record, Db, Ledger};
use sluice_wire::UsageRecord;
use std::collections::HashSet;
use std::sync::Arc;

fn batch(org: &str, n: u64) -> Vec<UsageRecord> {
    let t = now_ms();
    (0..n)
        .map(|i| record(org, t, 10 + i, 1 + i % 7, 3 * i))
        .collect()
}

fn sums(records: &[UsageRecord]) -> (u64, u64, u64, u64) {
    records.iter().fold((0, 0, 0, 0), |(n, i, o, c), r| {
        (
            n + 1,
            i + r.input_tokens,
            o + r.output_tokens,
            c + r.cost_micro_usd,
        )
    })
}

async fn assert_totals(ledger: &Ledger, org: &str, expected: &[UsageRecord]) {
    let answer = ledger.usage(&format!("org={org}")).await;
    let t = answer.total;
    assert_eq!(
        (
            t.requests,
            t.input_tokens,
            t.output_tokens,
            t.cost_micro_usd
        ),
        sums(expected),
        "totals of {org}"
    );
}

async fn repeated_and_overlapping_batches_count_once(db: Db) {
    let ledger = Ledger::start(Arc::new(db));
    let first = batch("acme", 100);
    let a = ledger.ingest(&first).await;
    assert_eq!((a.accepted, a.duplicates, a.rejected.len()), (100, 0, 0));

    let again = ledger.ingest(&first).await;
    assert_eq!((again.accepted, again.duplicates), (0, 100));

    // Half old, half new, and one record repeated within the batch.
    let new = batch("acme", 50);
    let mut overlap: Vec<UsageRecord> = first[50..].to_vec();
    overlap.extend(new.iter().cloned());
    overlap.push(new[0].clone());
    let o = ledger.ingest(&overlap).await;
    assert_eq!((o.accepted, o.duplicates), (50, 51));

    let mut all = first.clone();
    all.extend(new);
    assert_totals(&ledger, "acme", &all).await;
}
both_backends!(repeated_and_overlapping_batches_count_once);

async fn concurrent_duplicate_batches_count_once(db: Db) {
    let ledger = Arc::new(Ledger::start(Arc::new(db)));
    let records = batch("race", 300);
    // Eight senders deliver overlapping windows of the same records at the same time.
    let mut tasks = Vec::new();
    for k in 0..8usize {
        let ledger = ledger.clone();
        let window: Vec<UsageRecord> = records
            .iter()
            .cycle()
            .skip(k * 37)
            .take(200)
            .cloned()
            .collect();
        tasks.push(tokio::spawn(async move { ledger.ingest(&window).await }));
    }
    let mut accepted = 0;
    let mut delivered = 0;
    for t in tasks {
        let a = t.await.expect("sender task");
        assert!(a.rejected.is_empty());
        accepted += a.accepted;
        delivered += a.accepted + a.duplicates;
    }
    assert_eq!(delivered, 8 * 200, "every delivery is acknowledged");
    let distinct: HashSet<_> = (0..8usize)
        .flat_map(|k| (0..200).map(move |i| (k * 37 + i) % 300))
        .collect();
    assert_eq!(accepted, distinct.len() as u64, "each record stored once");
    let stored: Vec<UsageRecord> = distinct.iter().map(|i| records[*i].clone()).collect();
    assert_totals(&ledger, "race", &stored).await;
}
both_backends!(concurrent_duplicate_batches_count_once);

async fn a_ledger_killed_and_restarted_still_deduplicates(db: Db) {
    let ledger = Ledger::start(Arc::new(db));
    let records = batch("crash", 120);
    assert_eq!(ledger.ingest(&records[..80]).await.accepted, 80);
    let db = ledger.kill();
    // Migrations run again at start and must find the schema in place.
    let ledger = Ledger::start(db);
    let a = ledger.ingest(&records).await;
    assert_eq!((a.accepted, a.duplicates), (40, 80));
    assert_totals(&ledger, "crash", &records).await;
}
both_backends!(a_ledger_killed_and_restarted_still_deduplicates);

async fn malformed_records_are_rejected_alone(db: Db) {
    let ledger = Ledger::start(Arc::new(db));
    let good = batch("mixed", 3);
    let mut elements: Vec<serde_json::Value> = good
        .iter()
        .map(|r| serde_json::to_value(r).expect("value"))
        .collect();

    let mut missing = serde_json::to_value(record("mixed", now_ms(), 1, 1, 1)).expect("v");
    missing.as_object_mut().expect("object").remove("status");
    let missing_id = missing["id"].as_str().expect("id").to_string();
    let mut bad_outcome = serde_json::to_value(record("mixed", now_ms(), 1, 1, 1)).expect("v");
    bad_outcome["outcome"] = "fine".into();
    let mut newer = serde_json::to_value(record("mixed", now_ms(), 1, 1, 1)).expect("v");
    newer["v"] = 9.into();
    let mut v4 = serde_json::to_value(record("mixed", now_ms(), 1, 1, 1)).expect("v");
    v4["id"] = "6f1c1d8e-3a3b-4c2d-8e9f-0123456789ab".into();
    let mut huge = serde_json::to_value(record("mixed", now_ms(), 1, 1, 1)).expect("v");
    huge["input_tokens"] = u64::MAX.into();

    elements.insert(1, missing);
    elements.insert(2, serde_json::json!("not a record"));
    elements.push(bad_outcome);
    elements.push(newer);
    elements.push(v4);
    elements.push(huge);
    let body = serde_json::json!({ "records": elements }).to_string();
    let resp = ledger.post_raw(body).await;
    assert_eq!(resp.status(), 200);
    let a: sluice_wire::IngestAnswer = resp.json().await.expect("answer");
    assert_eq!((a.accepted, a.duplicates), (3, 0));
    let by_index: Vec<(usize, &str)> = a
        .rejected
        .iter()
        .map(|r| (r.index, r.message.as_str()))
        .collect();
    assert_eq!(
        by_index.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        vec![1, 2, 5, 6, 7, 8]
    );
    let message = |i: usize| by_index.iter().find(|(j, _)| *j == i).expect("index").1;
    assert!(
        message(1).contains("missing field `status`"),
        "{}",
        message(1)
    );
    assert_eq!(a.rejected[0].id.as_deref(), Some(missing_id.as_str()));
    assert!(a.rejected[1].id.is_none());
    assert!(message(5).contains("fine"), "{}", message(5));
    assert!(message(6).contains("version 9"), "{}", message(6));
    assert!(message(7).contains("UUIDv7"), "{}", message(7));
    assert!(message(8).contains("input_tokens"), "{}", message(8));
    assert_totals(&ledger, "mixed", &good).await;

    // Bodies that are not a batch at all.
    for body in ["", "[]", "{\"records\": 5}", "{\"records\": [", "not json"] {
        let resp = ledger.post_raw(body).await;
        assert_eq!(resp.status(), 400, "body {body:?}");
        let err: serde_json::Value = resp.json().await.expect("error body");
        assert!(err["error"]
            .as_str()
            .expect("message")
            .contains("not a batch"));
    }
}
both_backends!(malformed_records_are_rejected_alone);

async fn oversized_batches_are_refused(db: Db) {
    let ledger = Ledger::start_with(Arc::new(db), &["--max-body-bytes", "65536"]);
    let body = format!("{{\"records\": [\"{}\"]}}", "x".repeat(70_000));
    assert_eq!(ledger.post_raw(body).await.status(), 413);
    // Within the byte cap but over the record cap.
    let body = format!("{{\"records\": [{}0]}}", "0,".repeat(10_000));
    assert_eq!(ledger.post_raw(body).await.status(), 413);
    // The cap leaves ordinary batches alone.
    assert_eq!(ledger.ingest(&batch("small", 5)).await.accepted, 5);
}
both_backends!(oversized_batches_are_refused);

/// A NUL anywhere in a record's text (the model a client sent, a tag, a meta name) made
/// Postgres fail the whole batch with 500, forever. Such a record is now rejected alone, the
/// good ones around it are stored, and the next batch is stored as usual.
async fn records_with_nul_are_rejected_alone(db: Db) {
    let ledger = Ledger::start(Arc::new(db));
    let t = now_ms();
    let good: Vec<UsageRecord> = (0..4).map(|i| record("poison", t, 10 + i, 1, 1)).collect();
    let mut bad_model = record("poison", t, 1000, 1000, 1000);
    bad_model.model = Some("x\u{0}".into());
    bad_model.status = 404;
    let mut bad_user = record("poison", t, 1000, 1000, 1000);
    bad_user.user = Some("u\u{0}".into());
    let mut bad_meta = record("poison", t, 1000, 1000, 1000);
    bad_meta.meta.insert("k\u{0}".into(), "v".into());
    let batch = vec![
        good[0].clone(),
        bad_model.clone(),
        good[1].clone(),
        bad_user.clone(),
        good[2].clone(),
        bad_meta.clone(),
        good[3].clone(),
    ];
    let a = ledger.ingest(&batch).await;
    assert_eq!((a.accepted, a.duplicates), (4, 0));
    let rejected: Vec<(usize, Option<String>)> =
        a.rejected.iter().map(|r| (r.index, r.id.clone())).collect();
    assert_eq!(
        rejected,
        vec![
            (1, Some(bad_model.id.to_string())),
            (3, Some(bad_user.id.to_string())),
            (5, Some(bad_meta.id.to_string())),
        ]
    );
    for r in &a.rejected {
        assert!(r.message.contains("NUL"), "{}", r.message);
    }
    assert_totals(&ledger, "poison", &good).await;

    // Delivery keeps flowing: the next batch is stored.
    let next = batch_of("poison", t, 3);
    assert_eq!(ledger.ingest(&next).await.accepted, 3);
    let mut all = good.clone();
    all.extend(next);
    assert_totals(&ledger, "poison", &all).await;
}
both_backends!(records_with_nul_are_rejected_alone);

fn batch_of(org: &str, t: u64, n: u64) -> Vec<UsageRecord> {
    (0..n).map(|i| record(org, t, 1 + i, 1, 1)).collect()
}

/// A record that passes every check but that the database still refuses (here: its tokens
/// would overflow a BIGINT aggregate, which Postgres refuses and SQLite would silently turn
/// into a REAL) is isolated and rejected alone; the rest of its batch is stored.
async fn a_record_the_database_refuses_is_isolated(db: Db) {
    let ledger = Ledger::start(Arc::new(db));
    let t = now_ms();
    let huge = u64::try_from(i64::MAX).expect("fits") - 5;
    let first = record("full", t, huge, 0, 0);
    assert_eq!(
        ledger.ingest(std::slice::from_ref(&first)).await.accepted,
        1
    );

    // Same org, hour and dimensions as `first`: its aggregate row would overflow.
    let overflowing = record("full", t, 10, 0, 0);
    // Two records whose sum alone is out of range: the first stored is kept.
    let half = huge / 2 + 10;
    let (mut pair_a, mut pair_b) = (record("pair", t, half, 0, 0), record("pair", t, half, 0, 0));
    // Records are stored in id order, so the lower id is the one kept.
    if pair_b.id < pair_a.id {
        std::mem::swap(&mut pair_a, &mut pair_b);
    }
    let good = batch_of("fine", t, 6);
    let batch = vec![
        good[0].clone(),
        good[1].clone(),
        overflowing.clone(),
        good[2].clone(),
        pair_a.clone(),
        good[3].clone(),
        pair_b.clone(),
        good[4].clone(),
        good[5].clone(),
    ];
    let a = ledger.ingest(&batch).await;
    assert_eq!(a.accepted, 7, "{a:?}");
    let rejected: Vec<usize> = a.rejected.iter().map(|r| r.index).collect();
    assert_eq!(rejected, vec![2, 6], "{a:?}");
    assert_eq!(
        a.rejected[0].id.as_deref(),
        Some(overflowing.id.to_string().as_str())
    );
    assert_totals(&ledger, "fine", &good).await;
    assert_totals(&ledger, "full", &[first]).await;
    assert_totals(&ledger, "pair", &[pair_a]).await;
    // A repeat of the batch: the stored ones are duplicates, the refused ones refused again.
    let again = ledger.ingest(&batch).await;
    assert_eq!(
        (again.accepted, again.duplicates, again.rejected.len()),
        (0, 7, 2)
    );
}
both_backends!(a_record_the_database_refuses_is_isolated);
