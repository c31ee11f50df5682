//! Streamed export: 200,000 records come back complete, in time order, as JSON lines and CSV.

use crate::both_backends;
use crate::harness::{now_ms, record, Db, Ledger};
use futures_util::StreamExt;
use sluice_wire::UsageRecord;
use std::collections::HashSet;
use std::sync::Arc;

const ROWS: u64 = 200_000;
const BATCH: u64 = 5_000;

/// Reads a streamed body chunk by chunk, calling `line` for each complete line.
async fn for_each_line(resp: reqwest::Response, mut line: impl FnMut(&[u8])) {
    let mut stream = resp.bytes_stream();
    let mut pending: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.next().await {
        pending.extend_from_slice(&chunk.expect("body chunk"));
        let mut start = 0;
        while let Some(pos) = pending[start..].iter().position(|b| *b == b'\n') {
            line(&pending[start..start + pos]);
            start += pos + 1;
        }
        pending.drain(..start);
    }
    assert!(pending.is_empty(), "body ends with a complete line");
}

async fn large_exports_stream_every_row(db: Db) {
    let ledger = Ledger::start(Arc::new(db));
    let base = now_ms() - 3_600_000;
    let mut sent = 0;
    let mut expected_input = 0;
    while sent < ROWS {
        let records: Vec<UsageRecord> = (sent..sent + BATCH)
            .map(|i| {
                let mut r = record("bulk", base + i / 100, i % 1000, 1, 0);
                if i % 10_000 == 0 {
                    r.user = Some("needs \"quoting\", here".into());
                    r.meta.insert("k".into(), "v,1".into());
                }
                r
            })
            .collect();
        expected_input += records.iter().map(|r| r.input_tokens).sum::<u64>();
        assert_eq!(ledger.ingest(&records).await.accepted, BATCH);
        sent += BATCH;
    }
    // Another org's records never leak into the export.
    ledger.ingest(&[record("elsewhere", base, 1, 1, 1)]).await;

    let resp = ledger.admin_get("/v1/orgs/bulk/export?format=jsonl").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let mut ids = HashSet::with_capacity(ROWS as usize);
    let mut input = 0;
    let mut last_time = 0;
    let mut quoted = 0;
    for_each_line(resp, |line| {
        let r: UsageRecord = serde_json::from_slice(line).expect("exported line is a record");
        assert_eq!(r.org.as_deref(), Some("bulk"));
        assert!(r.time_ms >= last_time, "time order");
        last_time = r.time_ms;
        input += r.input_tokens;
        if r.user.is_some() {
            assert_eq!(r.meta.get("k").map(String::as_str), Some("v,1"));
            quoted += 1;
        }
        assert!(ids.insert(r.id), "id exported twice");
    })
    .await;
    assert_eq!(ids.len() as u64, ROWS);
    assert_eq!(input, expected_input);
    assert_eq!(quoted, ROWS / 10_000);

    let resp = ledger.admin_get("/v1/orgs/bulk/export?format=csv").await;
    assert_eq!(resp.status(), 200);
    let mut lines = 0u64;
    let mut header = None;
    for_each_line(resp, |line| {
        if header.is_none() {
            header = Some(String::from_utf8_lossy(line).into_owned());
        }
        lines += 1;
    })
    .await;
    assert_eq!(
        lines,
        ROWS + 1,
        "header plus one line per record (no field holds a newline)"
    );
    let header = header.expect("header");
    assert!(header.starts_with("id,v,time_ms,org,"), "{header}");

    // A time window exports just its rows: `base + i/100` puts 100 records in each millisecond.
    let resp = ledger
        .admin_get(&format!(
            "/v1/orgs/bulk/export?format=jsonl&from={}&to={}",
            base + 10,
            base + 20
        ))
        .await;
    let mut n = 0;
    for_each_line(resp, |_| n += 1).await;
    assert_eq!(n, 1000);

    assert_eq!(
        ledger
            .admin_get("/v1/orgs/bulk/export?format=xml")
            .await
            .status(),
        400
    );
    let resp = ledger.admin_get("/v1/orgs/nobody/export?format=csv").await;
    let mut n = 0;
    for_each_line(resp, |_| n += 1).await;
    assert_eq!(n, 1, "an empty export is just the header");
}
both_backends!(large_exports_stream_every_row);

/// Model names and tags that a spreadsheet would run as formulas come out of the CSV export as
/// quoted text with a leading single quote (OWASP's advice); the JSON lines export keeps them as
/// they were sent.
async fn csv_export_neutralises_formulas(db: Db) {
    let ledger = Ledger::start(Arc::new(db));
    let base = now_ms() - 60_000;
    let hostile = [
        "=1+2",
        "+SUM(A1)",
        "-2+3",
        "@cmd",
        "\tx",
        "\rx",
        "=HYPERLINK(\"h\")",
    ];
    let records: Vec<UsageRecord> = hostile
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut r = record("sheet", base + i as u64, 1, 1, 0);
            r.model = Some((*s).to_string());
            r.user = Some((*s).to_string());
            r.feature = Some(format!("ok-{i}"));
            r
        })
        .collect();
    assert_eq!(ledger.ingest(&records).await.accepted, hostile.len() as u64);

    let resp = ledger.admin_get("/v1/orgs/sheet/export?format=csv").await;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.expect("csv body");
    for s in hostile {
        let guarded = format!("\"'{}\"", s.replace('"', "\"\""));
        assert_eq!(
            body.matches(&guarded).count(),
            2,
            "model and user {s:?} are guarded in: {body}"
        );
    }
    // Nothing else starts a field with a formula character, and plain text stays unquoted.
    assert!(body.contains(",ok-0,"), "{body}");
    for line in body.lines().skip(1) {
        for field in line.split(',') {
            assert!(
                !field.starts_with(['=', '+', '-', '@']),
                "unguarded field {field:?} in {line:?}"
            );
        }
    }

    let resp = ledger.admin_get("/v1/orgs/sheet/export?format=jsonl").await;
    let mut models = Vec::new();
    for_each_line(resp, |line| {
        let r: UsageRecord = serde_json::from_slice(line).expect("record");
        models.push(r.model.expect("model"));
    })
    .await;
    assert_eq!(models, hostile.map(String::from).to_vec());
}
both_backends!(csv_export_neutralises_formulas);

/// The pool target that served a record (endpoint, region) and its attempts are stored and
/// exported as they were sent; a record from before pools exports none of them.
async fn the_serving_target_round_trips(db: Db) {
    let ledger = Ledger::start(Arc::new(db));
    let mut failed_over = record("pools", now_ms(), 5, 7, 1);
    failed_over.endpoint = Some(Arc::from("http://10.0.0.12:8000/v1"));
    failed_over.region = Some(Arc::from("eu"));
    failed_over.attempts = 2;
    let plain = record("pools", now_ms(), 1, 1, 1);
    assert_eq!(
        ledger
            .ingest(&[failed_over.clone(), plain.clone()])
            .await
            .accepted,
        2
    );
    let resp = ledger.admin_get("/v1/orgs/pools/export?format=jsonl").await;
    let mut seen = Vec::new();
    for_each_line(resp, |line| {
        seen.push(serde_json::from_slice::<UsageRecord>(line).expect("a record"));
    })
    .await;
    let back = |id| seen.iter().find(|r| r.id == id).expect("exported");
    let r = back(failed_over.id);
    assert_eq!(r.endpoint.as_deref(), Some("http://10.0.0.12:8000/v1"));
    assert_eq!(r.region.as_deref(), Some("eu"));
    assert_eq!(r.attempts, 2);
    let p = back(plain.id);
    assert_eq!(
        (p.endpoint.as_deref(), p.region.as_deref(), p.attempts),
        (None, None, 0)
    );
}
both_backends!(the_serving_target_round_trips);
