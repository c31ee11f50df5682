//! The run's result: a serialisable [`Report`] (the JSON the harness reads) and a short
//! human table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::plan::{Api, Mode, Plan};
use super::stats::{Errors, Latencies, Summary, Totals};

/// Identifies the JSON layout; bumped on incompatible changes.
pub const SCHEMA: &str = "sluice-load/1";

/// The plan as run, without secrets: the credential is reduced to its scheme, and extra
/// header values are shown only for the mock's `x-mock-*` controls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanSummary {
    pub target: String,
    pub path: String,
    pub api: Api,
    pub stream: bool,
    pub model: String,
    pub prompt_bytes: usize,
    pub max_tokens: Option<u32>,
    /// `"open"` or `"closed"`.
    pub mode: String,
    /// Open loop: arrivals per second.
    pub rate: Option<f64>,
    /// Closed loop: concurrent clients.
    pub clients: Option<usize>,
    pub duration_s: Option<f64>,
    pub requests: Option<u64>,
    pub max_outstanding: Option<usize>,
    pub timeout_s: f64,
    /// `"bearer"`, `"x-api-key"` or none.
    pub auth: Option<String>,
    /// Extra headers as `name: value`, other than `x-mock-*` shown as `name: <redacted>`.
    pub headers: Vec<String>,
}

impl PlanSummary {
    fn of(plan: &Plan) -> Self {
        let (mode, rate, clients, max_outstanding) = match plan.mode {
            Mode::Open { rate } => ("open", Some(rate), None, Some(plan.max_outstanding)),
            Mode::Closed { clients } => ("closed", None, Some(clients), None),
        };
        Self {
            target: plan.target.addr().to_string(),
            path: format!("{}{}", plan.target.prefix(), plan.api.path()),
            api: plan.api,
            stream: plan.stream,
            model: plan.model.clone(),
            prompt_bytes: plan.prompt_bytes,
            max_tokens: plan.max_tokens,
            mode: mode.to_owned(),
            rate,
            clients,
            duration_s: plan.duration.map(|d| d.as_secs_f64()),
            requests: plan.requests,
            max_outstanding,
            timeout_s: plan.timeout.as_secs_f64(),
            auth: plan.auth.as_ref().map(|a| {
                match a.scheme {
                    super::plan::AuthScheme::Bearer => "bearer",
                    super::plan::AuthScheme::XApiKey => "x-api-key",
                }
                .to_owned()
            }),
            headers: plan
                .headers
                .iter()
                .map(|(name, value)| {
                    let shown = if name.as_str().starts_with("x-mock-") {
                        String::from_utf8_lossy(value.as_bytes()).into_owned()
                    } else {
                        "<redacted>".to_owned()
                    };
                    format!("{name}: {shown}")
                })
                .collect(),
        }
    }
}

/// Achieved throughput over the whole run (schedule plus drain of the last requests).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// Successful requests per second.
    pub requests_per_s: f64,
    /// SSE data events of successful requests per second.
    pub events_per_s: f64,
    /// Response body bytes (all requests) per second.
    pub bytes_per_s: f64,
}

/// The result of a run. Accounting: `planned == ok + errors.total + dropped` and
/// `sent == ok + errors.total`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub plan: PlanSummary,
    /// From the first send to the end of the last request.
    pub elapsed_s: f64,
    /// Requests the schedule called for (open loop) or the clients started (closed loop).
    pub planned: u64,
    /// Requests actually sent.
    pub sent: u64,
    /// 2xx responses read to the end (streams: with their final event).
    pub ok: u64,
    /// Open loop: arrivals not sent because `max_outstanding` requests were in flight.
    pub dropped: u64,
    pub errors: Errors,
    /// Every response status seen, including those of failed requests.
    pub statuses: BTreeMap<u16, u64>,
    pub bytes_received: u64,
    /// TCP connections opened; with keep-alive working this stays near the number of
    /// clients (closed loop) or the peak concurrency (open loop).
    pub connections_opened: u64,
    /// SSE data events of successful requests.
    pub events: u64,
    pub throughput: Throughput,
    /// Successful requests only, in microseconds.
    pub latency_us: Latencies,
    /// Data events per successful stream.
    pub events_per_request: Summary,
}

fn per_s(n: u64, elapsed: f64) -> f64 {
    if elapsed > 0.0 {
        n as f64 / elapsed
    } else {
        0.0
    }
}

impl Report {
    pub(crate) fn new(
        plan: &Plan,
        elapsed: Duration,
        planned: u64,
        dropped: u64,
        totals: Totals,
    ) -> Self {
        let secs = elapsed.as_secs_f64();
        Self {
            schema: SCHEMA.to_owned(),
            plan: PlanSummary::of(plan),
            elapsed_s: secs,
            planned,
            sent: totals.sent(),
            ok: totals.ok(),
            dropped,
            errors: totals.errors(),
            statuses: totals.statuses(),
            bytes_received: totals.bytes(),
            connections_opened: totals.connections(),
            events: totals.events(),
            throughput: Throughput {
                requests_per_s: per_s(totals.ok(), secs),
                events_per_s: per_s(totals.events(), secs),
                bytes_per_s: per_s(totals.bytes(), secs),
            },
            latency_us: totals.latencies(),
            events_per_request: totals.events_per_request(),
        }
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        // A struct of numbers, strings and string-keyed maps always serialises.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// A short table for people; the JSON has everything.
    pub fn table(&self) -> String {
        let p = &self.plan;
        let mut out = String::new();
        let shape = match p.mode.as_str() {
            "open" => format!("open loop {} req/s", p.rate.unwrap_or(0.0)),
            _ => format!("closed loop {} clients", p.clients.unwrap_or(0)),
        };
        let _ = writeln!(
            out,
            "sluice-load: {shape}, {:?}{} -> {}{}, {:.2} s",
            p.api,
            if p.stream { " stream" } else { "" },
            p.target,
            p.path,
            self.elapsed_s
        );
        let e = &self.errors;
        let _ = writeln!(
            out,
            "requests: planned {} sent {} ok {} errors {} dropped {} | connections {} | {:.1} req/s, {:.1} events/s",
            self.planned,
            self.sent,
            self.ok,
            e.total,
            self.dropped,
            self.connections_opened,
            self.throughput.requests_per_s,
            self.throughput.events_per_s
        );
        if e.total > 0 {
            let statuses: Vec<String> = e.status.iter().map(|(c, n)| format!("{c}:{n}")).collect();
            let _ = writeln!(
                out,
                "errors: connect {} timeout {} protocol {} body {} stream_cut {} status [{}]",
                e.connect,
                e.timeout,
                e.protocol,
                e.body,
                e.stream_cut,
                statuses.join(" ")
            );
        }
        let _ = writeln!(
            out,
            "{:<12}{:>9}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}",
            "latency us", "count", "p50", "p90", "p99", "p99.9", "max", "mean"
        );
        let l = &self.latency_us;
        for (name, s) in [
            ("ttfb", &l.ttfb),
            ("first_event", &l.first_event),
            ("gap", &l.gap),
            ("total", &l.total),
            ("send_lag", &l.send_lag),
        ] {
            if s.count == 0 {
                continue;
            }
            let _ = writeln!(
                out,
                "{:<12}{:>9}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10.0}",
                name, s.count, s.p50, s.p90, s.p99, s.p99_9, s.max, s.mean
            );
        }
        out
    }
}
