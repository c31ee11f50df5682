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
