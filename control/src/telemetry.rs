//! The ledger's Prometheus metrics (served at `GET /metrics`): the series names, the batch
//! histogram's buckets, the recorder behind the `metrics` facade, and the few calls that record.
//!
//! Labels are fixed enumerations (a result, a database operation, the build version): never an
//! org, a key, a token or anything taken from a record, so the page holds no tenant data.
//! Nothing is kept unless [`install`] ran, which only [`crate::server::run`] does, so tests and
//! tools that drive the store through the library record into the facade's no-op default.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

/// Counter of records in answered ingest batches, by `result`: `stored` (new), `duplicate`
/// (already stored or repeated in the batch) or `rejected` (invalid, or refused by the database).
pub const RECORDS: &str = "sluice_control_records_total";
/// Histogram: one answered ingest batch, body received to answer built (parse, checks and the
/// database transaction), in seconds.
pub const BATCH_DURATION: &str = "sluice_control_batch_duration_seconds";
/// Counter of operations that failed with a database error, by `op` ([`DbOp`]).
pub const DB_ERRORS: &str = "sluice_control_db_errors_total";
/// Counter of exports streamed to their end.
pub const EXPORTS: &str = "sluice_control_exports_total";
/// Counter of org erasures committed.
pub const ERASURES: &str = "sluice_control_erasures_total";
/// Gauge, always 1, labelled with the binary's `version`.
pub const BUILD_INFO: &str = "sluice_control_build_info";

/// `result` values of [`RECORDS`].
pub const RESULTS: [&str; 3] = ["stored", "duplicate", "rejected"];

/// [`BATCH_DURATION`]'s boundaries. A batch ranges from all-rejected or a few records on
/// Postgres (well under a millisecond), through one SQLite transaction with its fsync
/// (`synchronous=FULL`: milliseconds), to 10,000 records (the largest accepted batch, about 0.6 s
/// at the ~16,000 records/s measured on SQLite) plus waiting for SQLite's single writer slot
/// behind other batches or a retention pass. 30 s is the pool's acquire timeout: a batch that
/// waits longer fails instead of being answered, so no bucket beyond it is needed.
pub const BATCH_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0,
];

/// The store operations a database error is counted under (`op` of [`DB_ERRORS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbOp {
    /// `POST /v1/events` (a failed batch, which the sender retries).
    Ingest,
    /// `GET /v1/usage`.
    Usage,
    /// `GET /v1/orgs/{org}/export`, including a failure mid-stream.
    Export,
    /// `GET /v1/spend`.
    Spend,
    /// `DELETE /v1/orgs/{org}`.
    Erase,
    /// A periodic retention pass.
    Retention,
    /// Suspensions and the audit log (`/v1/suspensions`, `/v1/audit`, and the audit entry of
    /// an export or erasure).
    Review,
    /// `GET /healthz`'s ping.
    Health,
}

impl DbOp {
    pub const ALL: [DbOp; 8] = [
        DbOp::Ingest,
        DbOp::Usage,
        DbOp::Export,
        DbOp::Spend,
        DbOp::Erase,
        DbOp::Retention,
        DbOp::Review,
        DbOp::Health,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DbOp::Ingest => "ingest",
            DbOp::Usage => "usage",
            DbOp::Export => "export",
            DbOp::Spend => "spend",
            DbOp::Erase => "erase",
            DbOp::Retention => "retention",
            DbOp::Review => "review",
            DbOp::Health => "health",
        }
    }
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global Prometheus recorder (once per process), describes every series and
/// publishes the counters at zero, so a scrape sees them before the first event. A second call
/// returns the same handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(BATCH_DURATION.to_string()), BATCH_BUCKETS)
                .unwrap_or_else(|e| {
                    // Only an empty bucket list is refused, and BATCH_BUCKETS is not empty.
                    tracing::error!(
                        "histogram buckets refused ({e}); the batch histogram renders as a summary"
                    );
                    PrometheusBuilder::new()
                });
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                // Only possible if something else installed a recorder first; metrics then go
                // there and this handle renders an empty page, which is visible but harmless.
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            describe();
            publish_at_zero();
            handle
        })
        .clone()
}

/// The Prometheus text, or `None` when no recorder was installed.
pub fn render() -> Option<String> {
    let handle = HANDLE.get()?;
    // Upkeep drains histogram samples into their buckets; doing it per scrape keeps memory
    // bounded without a timer.
    handle.run_upkeep();
    Some(handle.render())
}

fn describe() {
    metrics::describe_counter!(
        RECORDS,
        "Records in answered ingest batches, by result (stored: new; duplicate: already stored \
         or repeated in the batch; rejected: invalid or refused by the database)."
    );
    metrics::describe_histogram!(
        BATCH_DURATION,
        metrics::Unit::Seconds,
        "One answered ingest batch: body received to answer built (parse, checks, transaction)."
    );
    metrics::describe_counter!(
        DB_ERRORS,
        "Operations that failed with a database error, by op (ingest, usage, export, spend, \
         erase, retention, review, health)."
    );
    metrics::describe_gauge!(
        crate::abuse::FLAGS_OPEN,
        "Abuse flags awaiting an operator's review, by kind (key, org, ip)."
    );
    metrics::describe_counter!(EXPORTS, "Exports streamed to their end.");
    metrics::describe_counter!(ERASURES, "Org erasures committed.");
    metrics::describe_gauge!(BUILD_INFO, "Always 1; labelled with the binary's version.");
}

fn publish_at_zero() {
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    for result in RESULTS {
        metrics::counter!(RECORDS, "result" => result).increment(0);
    }
    for op in DbOp::ALL {
        metrics::counter!(DB_ERRORS, "op" => op.as_str()).increment(0);
    }
    metrics::counter!(EXPORTS).increment(0);
    metrics::counter!(ERASURES).increment(0);
    for kind in sluice_wire::FlagKind::ALL {
        metrics::gauge!(crate::abuse::FLAGS_OPEN, "kind" => kind.as_str()).set(0.0);
    }
    // Registering the histogram renders its buckets at zero until the first batch.
    let _ = metrics::histogram!(BATCH_DURATION);
}

/// Counts one answered ingest batch and the time it took.
pub fn count_batch(stored: u64, duplicate: u64, rejected: u64, elapsed: Duration) {
    for (result, n) in RESULTS.into_iter().zip([stored, duplicate, rejected]) {
        metrics::counter!(RECORDS, "result" => result).increment(n);
    }
    metrics::histogram!(BATCH_DURATION).record(elapsed.as_secs_f64());
}

/// Counts an operation that failed with a database error.
pub fn count_db_error(op: DbOp) {
    metrics::counter!(DB_ERRORS, "op" => op.as_str()).increment(1);
}

/// Counts an export streamed to its end.
pub fn count_export() {
    metrics::counter!(EXPORTS).increment(1);
}

/// Counts a committed erasure.
pub fn count_erasure() {
    metrics::counter!(ERASURES).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_sorted_and_accepted() {
        assert!(BATCH_BUCKETS.windows(2).all(|w| w[0] < w[1]));
        assert!(PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(BATCH_DURATION.to_string()), BATCH_BUCKETS)
            .is_ok());
    }

    #[test]
    fn op_labels_are_distinct() {
        let mut names: Vec<&str> = DbOp::ALL.iter().map(|op| op.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DbOp::ALL.len());
    }
}
