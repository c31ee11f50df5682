//! The access log: one JSON line per finished request for operators (ids, status, outcome,
//! timings, bytes, tokens), written by the usage intake thread so the request path never waits
//! on it.
//!
//! It carries a projection of the usage record, which already holds no content and no key; the
//! caller's own tags (user, session, feature, metadata) stay out too, since an access log is
//! shipped and kept more widely than the ledger. There is no URL, so no query string.

use crate::config::observe::{AccessLogSettings, AccessTarget};
use crate::metering::record::{Outcome, UsageRecord};
use serde::Serialize;
use std::io::{BufWriter, Write};

/// The open access log and its sampling share.
pub struct AccessLog {
    out: BufWriter<Box<dyn Write + Send>>,
    /// Successful requests are kept when their id's random bits fall below this share of the
    /// range; failures are always kept.
    threshold: u64,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("threshold", &self.threshold)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Line<'a> {
    time_ms: u64,
    id: uuid::Uuid,
    org: Option<&'a str>,
    key_id: Option<&'a str>,
    provider: Option<&'a str>,
    model: Option<&'a str>,
    upstream_model: Option<&'a str>,
    api: &'a str,
    stream: bool,
    status: u16,
    outcome: Outcome,
    error_type: Option<&'a str>,
    input_tokens: u64,
    output_tokens: u64,
    cached_tokens: u64,
    cache_write_tokens: u64,
    reasoning_tokens: u64,
    estimated: bool,
    cost_micro_usd: u64,
    ttft_ms: Option<f64>,
    total_ms: f64,
    upstream_ms: Option<f64>,
    bytes_in: u64,
    bytes_out: u64,
}

impl AccessLog {
    /// Opens the target (a file is appended to).
    pub fn open(settings: &AccessLogSettings) -> std::io::Result<Self> {
        let out: Box<dyn Write + Send> = match &settings.to {
            AccessTarget::Stdout => Box::new(std::io::stdout()),
            AccessTarget::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        Ok(Self::to_writer(out, settings.sample))
    }

    /// An access log on any writer, keeping `sample` (0.0–1.0) of the successful requests.
    pub fn to_writer(out: Box<dyn Write + Send>, sample: f64) -> Self {
        // The share is validated into 0.0..=1.0; the float-to-int cast saturates at the top.
        let threshold = (sample.clamp(0.0, 1.0) * u64::MAX as f64) as u64;
        Self {
            out: BufWriter::new(out),
            threshold,
        }
    }

    /// Whether this record is kept: every failure, and the sampled share of the rest. The
    /// choice reads the random half of the (v7) request id, so it is uniform and the same
    /// request is always chosen the same way.
    pub fn keeps(&self, record: &UsageRecord) -> bool {
        if record.outcome != Outcome::Ok || self.threshold == u64::MAX {
            return true;
        }
        let (_, random) = record.id.as_u64_pair();
        random < self.threshold
    }

    /// Writes the record's line if it is kept.
    pub fn write(&mut self, r: &UsageRecord) -> std::io::Result<()> {
        if !self.keeps(r) {
            return Ok(());
        }
        let line = Line {
            time_ms: r.time_ms,
            id: r.id,
            org: r.org.as_deref(),
            key_id: r.key_id.as_deref(),
            provider: r.provider.as_deref(),
            model: r.model.as_deref(),
            upstream_model: r.upstream_model.as_deref(),
            api: &r.api,
            stream: r.stream,
            status: r.status,
            outcome: r.outcome,
            error_type: r.error_type.as_deref(),
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            cached_tokens: r.cached_tokens,
            cache_write_tokens: r.cache_write_tokens,
            reasoning_tokens: r.reasoning_tokens,
            estimated: r.estimated,
            cost_micro_usd: r.cost_micro_usd,
            ttft_ms: r.ttft_ms,
            total_ms: r.total_ms,
            upstream_ms: r.upstream_ms,
            bytes_in: r.bytes_in,
            bytes_out: r.bytes_out,
        };
        serde_json::to_writer(&mut self.out, &line)?;
        self.out.write_all(b"\n")
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
