//! The names of every series the proxy exports, in one place, so the dashboard and alert tests
//! and a reader find them all.
//!
//! The `gen_ai_…` names are the OpenTelemetry GenAI semantic conventions (v1.41.0) mapped to
//! Prometheus the standard way: dots become underscores, the unit `s` becomes `_seconds`, the
//! annotation unit `{token}` is dropped.

/// Histogram: a request's whole time in sluice, arrival to last byte (`gen_ai.server.request.duration`).
pub const SERVER_DURATION: &str = "gen_ai_server_request_duration_seconds";
/// Histogram: arrival to the first streamed chunk of a successful stream.
pub const TIME_TO_FIRST_TOKEN: &str = "gen_ai_server_time_to_first_token_seconds";
/// Histogram: time per output token after the first, of a successful stream.
pub const TIME_PER_OUTPUT_TOKEN: &str = "gen_ai_server_time_per_output_token_seconds";
/// Histogram: time spent as the provider's client, request sent to answer complete.
pub const CLIENT_DURATION: &str = "gen_ai_client_operation_duration_seconds";
/// Histogram: tokens per request by `gen_ai_token_type` (input, output).
pub const TOKEN_USAGE: &str = "gen_ai_client_token_usage";

/// Counter of finished requests by org, route, provider, api, status class and outcome.
pub const REQUESTS: &str = "sluice_requests_total";
/// Counter of billed tokens by org, route and type.
pub const TOKENS: &str = "sluice_tokens_total";
/// Counter of cost in micro-USD by org and route.
pub const COST: &str = "sluice_cost_micro_usd_total";
/// Histogram: time in sluice itself (total minus time waiting on the provider), by api.
pub const GATEWAY_OVERHEAD: &str = "sluice_gateway_overhead_seconds";
/// Histogram: time waiting on the provider, by provider.
pub const UPSTREAM_DURATION: &str = "sluice_upstream_duration_seconds";
/// Counter of provider connect failures and timeouts, by provider and kind.
pub const UPSTREAM_ERRORS: &str = "sluice_upstream_errors_total";
/// Counter of failed upstream attempts, by provider, endpoint and reason.
pub const UPSTREAM_FAILED_ATTEMPTS: &str = "sluice_upstream_failed_attempts_total";
/// Counter of passive-health ejections, by provider and endpoint.
pub const UPSTREAM_EJECTIONS: &str = "sluice_upstream_ejections_total";
/// Gauge: 1 while an endpoint takes traffic, 0 while ejected.
pub const UPSTREAM_ENDPOINT_UP: &str = "sluice_upstream_endpoint_up";
/// Counter of requests refused by a limit, by kind and scope.
pub const LIMIT_REJECTIONS: &str = "sluice_limit_rejections_total";
/// Gauge: 1 while the shared limits' Redis answers (backend = redis).
pub const LIMITS_BACKEND_UP: &str = "sluice_limits_backend_up";
/// Counter of the shared limits' Redis becoming unreachable or reachable, by `to`.
pub const LIMITS_BACKEND_TRANSITIONS: &str = "sluice_limits_backend_transitions_total";
/// Counter of lease calls to Redis, by result.
pub const LIMITS_LEASES: &str = "sluice_limits_lease_calls_total";
/// Counter of requests decided by the when_limits_unreachable policy, by policy.
pub const LIMITS_FALLBACKS: &str = "sluice_limits_fallbacks_total";
/// Gauge: requests in flight.
pub const REQUESTS_IN_FLIGHT: &str = "sluice_requests_in_flight";
/// Gauge: event streams being relayed.
pub const STREAMS_IN_FLIGHT: &str = "sluice_streams_in_flight";
/// Gauge: open client connections on the proxy listeners.
pub const DOWNSTREAM_CONNECTIONS: &str = "sluice_downstream_connections";
/// Gauge: usage records waiting for the intake thread.
pub const USAGE_QUEUE_DEPTH: &str = "sluice_usage_queue_depth";
/// Gauge: the usage queue's bound (`usage.queue_capacity`).
pub const USAGE_QUEUE_CAPACITY: &str = "sluice_usage_queue_capacity";

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
