//! Process metrics: the Prometheus recorder behind the `metrics` facade, with its histogram
//! buckets and descriptions; the series themselves are named in [`names`], recorded per request by
//! [`requests`] and sampled live by [`live`].
//!
//! Any module may record through the `metrics` macros; nothing is kept unless [`install`] ran,
//! which only the serving process does, so unit tests and the offline subcommands pay nothing.

pub mod access;
pub mod buckets;
pub mod limits;
pub mod live;
pub mod logging;
pub mod names;
pub mod requests;
pub mod upstream;

pub use names::*;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global Prometheus recorder (once per process) and returns the handle that renders
/// it. A second call returns the same handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = with_buckets(PrometheusBuilder::new()).unwrap_or_else(|e| {
                tracing::error!("histogram buckets refused ({e}); histograms render as summaries");
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
            handle
        })
        .clone()
}

/// Every histogram with its buckets (see [`buckets`] for why each). Only an empty bucket list
/// is refused, and none is (unit-tested).
pub fn with_buckets(builder: PrometheusBuilder) -> Result<PrometheusBuilder, BuildError> {
    let histograms: [(&str, &[f64]); 7] = [
        (SERVER_DURATION, buckets::DURATION),
        (CLIENT_DURATION, buckets::DURATION),
        (UPSTREAM_DURATION, buckets::DURATION),
        (TIME_TO_FIRST_TOKEN, buckets::TIME_TO_FIRST_TOKEN),
        (TIME_PER_OUTPUT_TOKEN, buckets::TIME_PER_OUTPUT_TOKEN),
        (TOKEN_USAGE, buckets::TOKENS),
        (GATEWAY_OVERHEAD, buckets::OVERHEAD),
    ];
    histograms
        .into_iter()
        .try_fold(builder, |builder, (name, buckets)| {
            builder.set_buckets_for_metric(Matcher::Full(name.to_string()), buckets)
        })
}

/// The rendered Prometheus text, or `None` when no recorder was installed.
pub fn render() -> Option<String> {
    let handle = HANDLE.get()?;
    live::publish();
    // Upkeep drains histogram buckets; doing it per scrape keeps memory bounded without a timer.
    handle.run_upkeep();
    Some(handle.render())
}

fn describe() {
    describe_requests();
    upstream::describe();
    limits::describe();
    let counters = [
        (CONFIG_RELOADS, "Configuration reloads by result (ok: new snapshot served; error: old one kept)."),
        (RECORDS_DELIVERED, "Usage records the ledger acknowledged (new or duplicate)."),
        (RECORDS_SPOOLED, "Usage records written to the disk spool."),
        (RECORDS_DROPPED, "Usage records lost, by reason (queue_full, closed, spool_error, dead_letter_error)."),
        (
            RECORDS_DEAD_LETTERED,
            "Usage records set aside in the spool directory's dead-letter file, by reason \
             (rejected: the ledger rejected the record; refused: it kept refusing the batch).",
        ),
        (LEDGER_BATCHES, "Batches posted to the ledger by result (ok, error: retried, refused: retried, then dead-lettered)."),
        (SPEND_POLLS, "Spend-feed polls by result."),
    ];
    for (name, help) in counters {
        metrics::describe_counter!(name, help);
    }
    let gauges = [
        (
            CONFIG_GENERATION,
            "Generation of the configuration snapshot being served (1 = loaded at start).",
        ),
        (BUILD_INFO, "Always 1; labelled with the binary's version."),
        (SPOOL_BYTES, "Bytes held in this process's spool files."),
        (
            LEDGER_UP,
            "1 while the ledger answers, 0 after a failed request.",
        ),
    ];
    for (name, help) in gauges {
        metrics::describe_gauge!(name, help);
    }
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
    requests::publish_rejections_at_zero();
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

fn describe_requests() {
    use metrics::Unit;
    let histograms = [
        (SERVER_DURATION, "Request duration in sluice, arrival to last byte (OpenTelemetry gen_ai.server.request.duration)."),
        (TIME_TO_FIRST_TOKEN, "Arrival to first streamed chunk, successful streams (gen_ai.server.time_to_first_token)."),
        (TIME_PER_OUTPUT_TOKEN, "Time per output token after the first, successful streams (gen_ai.server.time_per_output_token)."),
        (CLIENT_DURATION, "Time as the provider's client, request sent to answer complete (gen_ai.client.operation.duration)."),
        (GATEWAY_OVERHEAD, "Time spent in sluice itself: total minus time waiting on the provider."),
        (UPSTREAM_DURATION, "Time waiting on the provider, by provider."),
    ];
    for (name, help) in histograms {
        metrics::describe_histogram!(name, Unit::Seconds, help);
    }
    metrics::describe_histogram!(
        TOKEN_USAGE,
        Unit::Count,
        "Tokens per request by gen_ai_token_type (gen_ai.client.token.usage)."
    );
    let counters = [
        (REQUESTS, "Finished requests by org, route, provider, api, status class and outcome."),
        (TOKENS, "Billed tokens by org, route and type (input, output, cached, cache_write, reasoning)."),
        (COST, "Cost in micro-USD by org and route, from the configured prices."),
        (UPSTREAM_ERRORS, "Provider connect failures and timeouts, by provider and kind."),
        (LIMIT_REJECTIONS, "Requests refused by a limit, by kind (requests, tokens, concurrency, budget) and scope."),
    ];
    for (name, help) in counters {
        metrics::describe_counter!(name, help);
    }
    let gauges = [
        (REQUESTS_IN_FLIGHT, "Requests in flight."),
        (STREAMS_IN_FLIGHT, "Event streams being relayed."),
        (
            DOWNSTREAM_CONNECTIONS,
            "Open client connections on the proxy listeners.",
        ),
        (
            USAGE_QUEUE_DEPTH,
            "Usage records waiting for the intake thread.",
        ),
        (
            USAGE_QUEUE_CAPACITY,
            "Bound of the usage queue (usage.queue_capacity).",
        ),
    ];
    for (name, help) in gauges {
        metrics::describe_gauge!(name, help);
    }
}
