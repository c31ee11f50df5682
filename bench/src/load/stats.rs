//! Where measurements go: per-shard HDR histograms and counters, merged into the report at
//! the end. A request records into its shard once, when it ends, under an uncontended lock
//! (shards follow the runtime's worker count); inter-event gaps are buffered per connection
//! slot until then, so nothing is locked or allocated per event.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest value a histogram tracks: one hour in microseconds, well above any run.
const HIGHEST_US: u64 = 3_600_000_000;
/// Three significant digits keep p99.9 meaningful at about 180 KiB per histogram.
const SIGFIG: u8 = 3;

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// The TCP connection or the HTTP handshake failed.
    Connect,
    /// No complete answer within the per-request timeout.
    Timeout,
    /// A complete non-2xx response.
    Status(u16),
    /// The exchange failed before a response head arrived, or the response was not what
    /// was asked for (e.g. not an event stream).
    Protocol,
    /// A non-stream body failed or ended early.
    Body,
    /// A stream failed or ended without its final event.
    StreamCut,
}

/// What one request measured, in microseconds from its intended send time.
#[derive(Debug, Default)]
pub(crate) struct Sample {
    pub(crate) send_lag_us: u64,
    pub(crate) ttfb_us: Option<u64>,
    pub(crate) first_event_us: Option<u64>,
    pub(crate) total_us: u64,
    pub(crate) status: Option<u16>,
    pub(crate) bytes: u64,
    pub(crate) events: u64,
    /// New connections this request opened (0 when it reused one).
    pub(crate) connections: u64,
}

pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[expect(
    clippy::expect_used,
    reason = "the bounds are constants hdrhistogram accepts (low 1, high >= 2 x low, sigfig <= 5)"
)]
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_US, SIGFIG).expect("constant histogram bounds are valid")
}

/// Counters and histograms of one shard.
pub(crate) struct Shard {
    ttfb: Histogram<u64>,
    first_event: Histogram<u64>,
    gap: Histogram<u64>,
    total: Histogram<u64>,
    send_lag: Histogram<u64>,
    events_per_request: Histogram<u64>,
    sent: u64,
    ok: u64,
    bytes: u64,
    events: u64,
    connections: u64,
    errors: Errors,
    statuses: BTreeMap<u16, u64>,
}

impl Default for Shard {
    fn default() -> Self {
        Self {
            ttfb: histogram(),
            first_event: histogram(),
            gap: histogram(),
            total: histogram(),
            send_lag: histogram(),
            events_per_request: histogram(),
            sent: 0,
            ok: 0,
            bytes: 0,
            events: 0,
            connections: 0,
            errors: Errors::default(),
            statuses: BTreeMap::new(),
        }
    }
}

/// Failed requests by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Errors {
    pub total: u64,
    pub connect: u64,
    pub timeout: u64,
    pub protocol: u64,
    pub body: u64,
    pub stream_cut: u64,
    /// Complete non-2xx responses by status code.
    pub status: BTreeMap<u16, u64>,
}

impl Errors {
    fn count(&mut self, kind: ErrorKind) {
        self.total += 1;
        match kind {
            ErrorKind::Connect => self.connect += 1,
            ErrorKind::Timeout => self.timeout += 1,
            ErrorKind::Protocol => self.protocol += 1,
            ErrorKind::Body => self.body += 1,
            ErrorKind::StreamCut => self.stream_cut += 1,
            ErrorKind::Status(code) => *self.status.entry(code).or_default() += 1,
        }
    }

    fn add(&mut self, other: &Errors) {
        self.total += other.total;
        self.connect += other.connect;
        self.timeout += other.timeout;
        self.protocol += other.protocol;
        self.body += other.body;
        self.stream_cut += other.stream_cut;
        for (code, n) in &other.status {
            *self.status.entry(*code).or_default() += n;
        }
    }
}

impl Shard {
    /// Records one finished request. Latencies go into the histograms only for successful
    /// requests, so a fast error cannot flatter the percentiles; errors are counted by kind.
    pub(crate) fn record(&mut self, s: &Sample, gaps: &[u64], result: Result<(), ErrorKind>) {
        self.sent += 1;
        self.bytes += s.bytes;
        self.connections += s.connections;
        self.send_lag.saturating_record(s.send_lag_us);
        if let Some(code) = s.status {
            *self.statuses.entry(code).or_default() += 1;
        }
        match result {
            Err(kind) => self.errors.count(kind),
            Ok(()) => {
                self.ok += 1;
                self.events += s.events;
                self.total.saturating_record(s.total_us);
                if let Some(t) = s.ttfb_us {
                    self.ttfb.saturating_record(t);
                }
                if let Some(t) = s.first_event_us {
                    self.first_event.saturating_record(t);
                    self.events_per_request.saturating_record(s.events);
                }
                for g in gaps {
                    self.gap.saturating_record(*g);
                }
            }
        }
    }

    fn add(&mut self, o: &Shard) {
        // Histograms with identical bounds always add; a failure would only mean values
        // beyond the bounds, which `saturating_record` already prevents.
        for (a, b) in [
            (&mut self.ttfb, &o.ttfb),
            (&mut self.first_event, &o.first_event),
            (&mut self.gap, &o.gap),
            (&mut self.total, &o.total),
            (&mut self.send_lag, &o.send_lag),
            (&mut self.events_per_request, &o.events_per_request),
        ] {
            let _ = a.add(b);
        }
        self.sent += o.sent;
        self.ok += o.ok;
        self.bytes += o.bytes;
        self.events += o.events;
        self.connections += o.connections;
        self.errors.add(&o.errors);
        for (code, n) in &o.statuses {
            *self.statuses.entry(*code).or_default() += n;
        }
    }
}

/// Shards of measurements, one per runtime worker.
pub(crate) struct Shards(Vec<Mutex<Shard>>);

impl Shards {
    pub(crate) fn new(n: usize) -> Self {
        Self(
            (0..n.max(1))
                .map(|_| Mutex::new(Shard::default()))
                .collect(),
        )
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn record(
        &self,
        shard: usize,
        sample: &Sample,
        gaps: &[u64],
        result: Result<(), ErrorKind>,
    ) {
        if let Some(m) = self.0.get(shard % self.0.len()) {
            // A panic while holding the lock cannot leave a shard half-updated in a way
            // that matters for counting, so a poisoned lock is still used.
            m.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .record(sample, gaps, result);
        }
    }

    pub(crate) fn merge(&self) -> Totals {
        let mut all = Shard::default();
        for m in &self.0 {
            all.add(&m.lock().unwrap_or_else(PoisonError::into_inner));
        }
        Totals(all)
    }
}

/// All shards merged.
pub(crate) struct Totals(Shard);

/// Percentiles of one histogram, in its unit (microseconds, or events).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
    pub max: u64,
}

impl Summary {
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            min: h.min(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p99_9: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// Latency summaries, in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latencies {
    /// Intended send time to response headers.
    pub ttfb: Summary,
    /// Intended send time to the first SSE `data:` line (streams only).
    pub first_event: Summary,
    /// Every gap between consecutive data lines of a stream; events that arrived in the
    /// same read count a gap of 0.
    pub gap: Summary,
    /// Intended send time to the end of the body.
    pub total: Summary,
    /// Actual minus intended send time: how late the generator itself was (open loop;
    /// always 0 in closed loop, where each request is sent when intended).
    pub send_lag: Summary,
}

impl Totals {
    pub(crate) fn sent(&self) -> u64 {
        self.0.sent
    }
    pub(crate) fn ok(&self) -> u64 {
        self.0.ok
    }
    pub(crate) fn bytes(&self) -> u64 {
        self.0.bytes
    }
    pub(crate) fn connections(&self) -> u64 {
        self.0.connections
    }
    pub(crate) fn events(&self) -> u64 {
        self.0.events
    }
    pub(crate) fn errors(&self) -> Errors {
        self.0.errors.clone()
    }
    pub(crate) fn statuses(&self) -> BTreeMap<u16, u64> {
        self.0.statuses.clone()
    }
    pub(crate) fn latencies(&self) -> Latencies {
        Latencies {
            ttfb: Summary::of(&self.0.ttfb),
            first_event: Summary::of(&self.0.first_event),
            gap: Summary::of(&self.0.gap),
            total: Summary::of(&self.0.total),
            send_lag: Summary::of(&self.0.send_lag),
        }
    }
    pub(crate) fn events_per_request(&self) -> Summary {
        Summary::of(&self.0.events_per_request)
    }
}
