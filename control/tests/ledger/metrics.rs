//! `GET /metrics`: the ledger's Prometheus page, parsed with a real text-format parser, counts
//! exactly what ingest, export, erasure and failing database calls did, and holds no org name.

use crate::both_backends;
use crate::harness::{now_ms, record, Db, Ledger, ADMIN};
use prometheus_parse::{Scrape, Value};
use sluice_control::db::Store;
use std::collections::BTreeMap;
use std::sync::Arc;

// The names are a contract (dashboards and alerts use them), so they are spelled out here
// rather than taken from the crate.
const RECORDS: &str = "sluice_control_records_total";
const BATCH: &str = "sluice_control_batch_duration_seconds";
const DB_ERRORS: &str = "sluice_control_db_errors_total";
const EXPORTS: &str = "sluice_control_exports_total";
const ERASURES: &str = "sluice_control_erasures_total";
const BUILD_INFO: &str = "sluice_control_build_info";
const OPS: [&str; 8] = [
    "erase",
    "export",
    "health",
    "ingest",
    "retention",
    "review",
    "spend",
    "usage",
];
const ORG: &str = "metrics-tenant";

/// One parsed scrape, with its text for failure messages.
struct Page {
    text: String,
    scrape: Scrape,
}

impl Page {
    /// The value of the one sample of `name` whose labels are exactly `labels`.
    fn sample(&self, name: &str, labels: &[(&str, &str)]) -> &Value {
        let found: Vec<&Value> = self
            .scrape
            .samples
            .iter()
            .filter(|s| {
                s.metric == name
                    && s.labels.len() == labels.len()
                    && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
            })
            .map(|s| &s.value)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{name} {labels:?} once on the page:\n{}",
            self.text
        );
        found[0]
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.sample(name, labels) {
            Value::Counter(v) => *v,
            other => panic!("{name} {labels:?} is not a counter: {other:?}"),
        }
    }

    /// The batch histogram's `_count`, after checking its buckets are the configured ones and
    /// that `+Inf` agrees with the count.
    fn batches(&self) -> f64 {
        let Value::Histogram(buckets) = self.sample(BATCH, &[]) else {
            panic!("{BATCH} is not a histogram:\n{}", self.text);
        };
        let bounds: Vec<f64> = buckets.iter().map(|b| b.less_than).collect();
        let mut expected = sluice_control::telemetry::BATCH_BUCKETS.to_vec();
        expected.push(f64::INFINITY);
        assert_eq!(bounds, expected, "{BATCH} buckets");
        let count = match self.sample(&format!("{BATCH}_count"), &[]) {
            Value::Untyped(v) => *v,
            other => panic!("{BATCH}_count: {other:?}"),
        };
        assert_eq!(buckets.last().map(|b| b.count), Some(count), "+Inf bucket");
        count
    }

    fn counts(&self) -> Counts {
        let records = |result| self.counter(RECORDS, &[("result", result)]);
        let results: Vec<&str> = self.label_values(RECORDS, "result");
        assert_eq!(results, ["duplicate", "rejected", "stored"], "{RECORDS}");
        assert_eq!(self.label_values(DB_ERRORS, "op"), OPS, "{DB_ERRORS}");
        Counts {
            stored: records("stored"),
            duplicate: records("duplicate"),
            rejected: records("rejected"),
            batches: self.batches(),
            exports: self.counter(EXPORTS, &[]),
            erasures: self.counter(ERASURES, &[]),
            db_errors: OPS
                .iter()
                .map(|op| (*op, self.counter(DB_ERRORS, &[("op", op)])))
                .collect(),
        }
    }

    /// The sorted values of `label` over every sample of `name`.
    fn label_values(&self, name: &str, label: &str) -> Vec<&str> {
        let mut values: Vec<&str> = self
            .scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter_map(|s| s.labels.get(label))
            .collect();
        values.sort_unstable();
        values
    }
}

#[derive(Debug, PartialEq)]
struct Counts {
    stored: f64,
    duplicate: f64,
    rejected: f64,
    batches: f64,
    exports: f64,
    erasures: f64,
    db_errors: BTreeMap<&'static str, f64>,
}

impl Counts {
    fn none() -> Self {
        Self {
            stored: 0.0,
            duplicate: 0.0,
            rejected: 0.0,
            batches: 0.0,
            exports: 0.0,
            erasures: 0.0,
            db_errors: OPS.iter().map(|op| (*op, 0.0)).collect(),
        }
    }
}

/// Scrapes without a token (the page is open like `/healthz`) and parses it.
async fn scrape(ledger: &Ledger) -> Page {
    let resp = ledger
        .http
        .get(ledger.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(resp.status(), 200, "/metrics needs no token");
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = resp.text().await.expect("metrics body");
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("exposition");
    let page = Page { text, scrape };
    // Only the fixed enumerations label the ledger's series (`kind` of the abuse flags is
    // key, org or ip): never an org, key or content.
    assert!(!page.text.contains(ORG), "an org name on the page");
    for s in &page.scrape.samples {
        if s.metric.starts_with("sluice_control_") {
            for name in s.labels.keys() {
                assert!(
                    ["result", "op", "version", "kind"].contains(&name.as_str()),
                    "label {name} on {}",
                    s.metric
                );
            }
        }
    }
    let flags = sluice_control::abuse::FLAGS_OPEN;
    for name in [
        RECORDS, BATCH, DB_ERRORS, EXPORTS, ERASURES, BUILD_INFO, flags,
    ] {
        assert!(page.scrape.docs.contains_key(name), "HELP for {name}");
    }
    match page.sample(BUILD_INFO, &[("version", env!("CARGO_PKG_VERSION"))]) {
        Value::Gauge(v) => assert_eq!(*v, 1.0),
        other => panic!("{BUILD_INFO}: {other:?}"),
    }
    page
}

async fn metrics_count_ingest_export_erasure_and_db_errors(db: Db) {
    let ledger = Ledger::start(Arc::new(db));
    // Every series is on the page, at zero, before anything happened.
    assert_eq!(scrape(&ledger).await.counts(), Counts::none());

    let t = now_ms();
    let batch = vec![
        record(ORG, t, 1, 2, 3),
        record(ORG, t, 4, 5, 6),
        record(ORG, t, 7, 8, 9),
    ];
    let first = ledger.ingest(&batch).await;
    assert_eq!((first.accepted, first.duplicates), (3, 0));
    let again = ledger.ingest(&batch).await;
    assert_eq!((again.accepted, again.duplicates), (0, 3));
    let invalid = ledger
        .post_raw(r#"{"records": [{"id": "not-a-uuid", "org": "metrics-tenant"}]}"#)
        .await;
    assert_eq!(invalid.status(), 200);
    let invalid: sluice_wire::IngestAnswer = invalid.json().await.expect("answer");
    assert_eq!((invalid.accepted, invalid.rejected.len()), (0, 1));
    // A body that is not a batch is a 400, not a batch: it is not counted.
    assert_eq!(ledger.post_raw("not json").await.status(), 400);

    let export = ledger
        .admin_get(&format!("/v1/orgs/{ORG}/export?format=jsonl"))
        .await;
    assert_eq!(export.status(), 200);
    assert_eq!(export.text().await.expect("export").lines().count(), 3);
    let erased = ledger
        .http
        .delete(ledger.url(&format!("/v1/orgs/{ORG}")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(erased.status(), 200);

    let mut expected = Counts {
        stored: 3.0,
        duplicate: 3.0,
        rejected: 1.0,
        batches: 3.0,
        exports: 1.0,
        erasures: 1.0,
        ..Counts::none()
    };
    assert_eq!(scrape(&ledger).await.counts(), expected);

    // Break the database under the running ledger: the spend feed and ingest both need the
    // daily aggregates. Each failure is a database error of its operation, and the failed
    // batch's records are not counted (the sender will retry them).
    let store = Store::open(&ledger.db.url(), 2).await.expect("open store");
    sqlx::query("DROP TABLE usage_daily")
        .execute(store.pool())
        .await
        .expect("drop usage_daily");
    store.close().await;
    assert_eq!(ledger.admin_get("/v1/spend").await.status(), 500);
    let resp = ledger
        .post_raw(
            serde_json::to_vec(&sluice_wire::IngestBatch {
                records: vec![record(ORG, t, 1, 1, 1)],
            })
            .expect("batch"),
        )
        .await;
    assert_eq!(resp.status(), 500);
    expected.db_errors.insert("spend", 1.0);
    expected.db_errors.insert("ingest", 1.0);
    assert_eq!(scrape(&ledger).await.counts(), expected);
}
both_backends!(metrics_count_ingest_export_erasure_and_db_errors);
