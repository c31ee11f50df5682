//! Process metrics: the Prometheus recorder behind the `metrics` facade, and the names of the
//! metrics the server itself exports (reloads, config generation, build info).
//!
//! Any module may record through the `metrics` macros; nothing is kept unless [`install`] ran,
//! which only the serving process does, so unit tests and the offline subcommands pay nothing.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// Counter of configuration reloads, labelled `result="ok"|"error"`.
pub const CONFIG_RELOADS: &str = "sluice_config_reloads_total";
/// Gauge: generation of the configuration being served (1 = loaded at start).
pub const CONFIG_GENERATION: &str = "sluice_config_generation";
/// Gauge fixed at 1, labelled with the version of this binary.
pub const BUILD_INFO: &str = "sluice_build_info";
/// Counter of usage records the ledger acknowledged (stored now or already stored earlier).
pub const RECORDS_DELIVERED: &str = "sluice_usage_records_delivered_total";
/// Counter of usage records written to the spool (a record spooled twice counts twice).
pub const RECORDS_SPOOLED: &str = "sluice_usage_records_spooled_total";
/// Counter of usage records lost, labelled `reason="queue_full"|"closed"|"spool_error"|
/// "dead_letter_error"`.
pub const RECORDS_DROPPED: &str = "sluice_usage_records_dropped_total";
/// Counter of usage records written to the dead-letter file, labelled `reason="rejected"` (the
/// ledger rejected the record) or `"refused"` (it kept refusing the whole batch).
pub const RECORDS_DEAD_LETTERED: &str = "sluice_usage_records_dead_lettered_total";
/// Counter of `POST /v1/events` attempts, labelled `result="ok"|"error"|"refused"`.
pub const LEDGER_BATCHES: &str = "sluice_ledger_batches_total";
/// Gauge: bytes in the spool files this process holds (its own and adopted ones).
pub const SPOOL_BYTES: &str = "sluice_spool_bytes";
/// Gauge: 1 while the last ledger request succeeded, 0 after a failure.
pub const LEDGER_UP: &str = "sluice_ledger_up";
/// Counter of spend-feed polls, labelled `result="ok"|"error"`.
pub const SPEND_POLLS: &str = "sluice_spend_polls_total";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global Prometheus recorder (once per process) and returns the handle that renders
/// it. A second call returns the same handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                // Only possible if something else installed a recorder first; metrics then go
                // there and this handle renders an empty page, which is visible but harmless.
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            describe();
            handle
        })
        .clone()
}

/// The rendered Prometheus text, or `None` when no recorder was installed.
pub fn render() -> Option<String> {
    let handle = HANDLE.get()?;
    // Upkeep drains histogram buckets; doing it per scrape keeps memory bounded without a timer.
    handle.run_upkeep();
    Some(handle.render())
}

fn describe() {
    metrics::describe_counter!(
        CONFIG_RELOADS,
        "Configuration reloads by result (ok: new snapshot served; error: old one kept)."
    );
    metrics::describe_gauge!(
        CONFIG_GENERATION,
        "Generation of the configuration snapshot being served (1 = loaded at start)."
    );
    metrics::describe_gauge!(BUILD_INFO, "Always 1; labelled with the binary's version.");
    metrics::describe_counter!(
        RECORDS_DELIVERED,
        "Usage records the ledger acknowledged (new or duplicate)."
    );
    metrics::describe_counter!(RECORDS_SPOOLED, "Usage records written to the disk spool.");
    metrics::describe_counter!(
        RECORDS_DROPPED,
        "Usage records lost, by reason (queue_full, closed, spool_error, dead_letter_error)."
    );
    metrics::describe_counter!(
        RECORDS_DEAD_LETTERED,
        "Usage records set aside in the spool directory's dead-letter file, by reason \
         (rejected: the ledger rejected the record; refused: it kept refusing the batch)."
    );
    metrics::describe_counter!(
        LEDGER_BATCHES,
        "Batches posted to the ledger by result (ok, error: retried, refused: retried, then dead-lettered)."
    );
    metrics::describe_gauge!(SPOOL_BYTES, "Bytes held in this process's spool files.");
    metrics::describe_gauge!(
        LEDGER_UP,
        "1 while the ledger answers, 0 after a failed request."
    );
    metrics::describe_counter!(SPEND_POLLS, "Spend-feed polls by result.");
}

/// Counts records lost for `reason`.
pub fn count_dropped(reason: &'static str, records: u64) {
    metrics::counter!(RECORDS_DROPPED, "reason" => reason).increment(records);
}

/// Publishes the delivery series at zero, so a scrape sees them before the first batch.
pub fn record_delivery_start() {
    metrics::counter!(RECORDS_DELIVERED).increment(0);
    metrics::counter!(RECORDS_SPOOLED).increment(0);
    for result in ["ok", "error", "refused"] {
        metrics::counter!(LEDGER_BATCHES, "result" => result).increment(0);
    }
    for reason in ["queue_full", "closed", "spool_error", "dead_letter_error"] {
        metrics::counter!(RECORDS_DROPPED, "reason" => reason).increment(0);
    }
    for reason in ["rejected", "refused"] {
        metrics::counter!(RECORDS_DEAD_LETTERED, "reason" => reason).increment(0);
    }
}

/// Counts one batch attempt.
pub fn count_batch(result: &'static str) {
    metrics::counter!(LEDGER_BATCHES, "result" => result).increment(1);
}

/// Records the start-up values: build info, generation 1, and both reload counters at zero so a
/// scrape sees them before the first reload.
pub fn record_start(generation: u64) {
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    set_generation(generation);
    metrics::counter!(CONFIG_RELOADS, "result" => "ok").increment(0);
    metrics::counter!(CONFIG_RELOADS, "result" => "error").increment(0);
}

/// Publishes the generation now served.
pub fn set_generation(generation: u64) {
    // Generations stay far below 2^53, below which f64 is exact.
    metrics::gauge!(CONFIG_GENERATION).set(generation as f64);
}

/// Counts one reload attempt.
pub fn count_reload(ok: bool) {
    let result = if ok { "ok" } else { "error" };
    metrics::counter!(CONFIG_RELOADS, "result" => result).increment(1);
}
