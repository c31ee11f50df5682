//! Request recording: what the mock saw and how each exchange ended, plus race-free waiting.
//!
//! Tests prove gateway behaviour (key swapping, header stripping, upstream cancellation) by
//! reading these records, so every update wakes waiters through a `watch` channel instead of
//! making tests poll with sleeps.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// Token usage the mock reported (or, for a stream that was cut short, would have reported).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MockUsage {
    /// The provider's input count: `prompt_tokens` (OpenAI, includes cached tokens) or
    /// `input_tokens` (Anthropic, excludes cache reads and writes).
    pub input_tokens: u64,
    /// Content tokens plus reasoning tokens, as the provider bills them.
    pub output_tokens: u64,
    /// Cached prompt tokens (`cached_tokens` / `cache_read_input_tokens`).
    pub cached_tokens: u64,
    /// Anthropic `cache_creation_input_tokens`; always 0 for OpenAI shapes.
    pub cache_write_tokens: u64,
    /// Reasoning tokens, already included in `output_tokens`.
    pub reasoning_tokens: u64,
}

/// How an exchange ended, as far as the mock can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The handler or the response stream is still running.
    InProgress,
    /// The whole response was handed to the HTTP layer.
    Completed,
    /// The client closed the connection before the response finished.
    ClientGone,
    /// `x-mock-drop-after` cut the connection on purpose.
    Dropped,
    /// `x-mock-stall-after` stopped the stream; it becomes `ClientGone` once the client leaves.
    Stalled,
    /// The mock answered with this error status (fault injection or bad input).
    Error(u16),
}

/// One request as the mock received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Path including the query string, exactly as received.
    pub path: String,
    /// Every header in arrival order; non-UTF-8 values are converted lossily.
    pub headers: Vec<(String, String)>,
    /// The raw request body (serialised as a lossy UTF-8 string in JSON).
    #[serde(with = "body_as_string")]
    pub body: Bytes,
    /// The `model` field of a JSON body, when there is one.
    pub model: Option<String>,
    /// Whether the body asked for `"stream": true`.
    pub stream: bool,
    /// Usage the mock reported or will report; `None` for errors and bodies without usage.
    pub usage: Option<MockUsage>,
    /// SSE events (or body parts, for non-stream faults) handed to the HTTP layer so far.
    pub chunks_sent: usize,
    /// How the exchange ended.
    pub outcome: Outcome,
}

impl RecordedRequest {
    /// The first header with this name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, or `None` when it is not JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

mod body_as_string {
    //! Serialises request bodies as text, because every body the mock serves is JSON.

    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(body: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(body))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        Ok(Bytes::from(String::deserialize(d)?))
    }
}

/// Records with an id offset, so that handles taken before a `reset` (or before old records
/// were evicted) cannot touch newer records.
#[derive(Default)]
struct Records {
    base: u64,
    list: VecDeque<RecordedRequest>,
}

/// Records kept by default: enough for any functional test, while a long benchmark run
/// cannot grow memory without bound.
pub const DEFAULT_MAX_RECORDS: usize = 100_000;

/// The store shared by the server and every `MockProvider` handle.
pub(crate) struct Recorder {
    records: Mutex<Records>,
    changed: watch::Sender<u64>,
    max: AtomicUsize,
    /// Exchanges begun and not yet ended: the provider's concurrency as a gateway drives it.
    open: AtomicUsize,
    /// The most `open` has been since start or [`Recorder::take_peak`].
    peak: AtomicUsize,
}

impl Recorder {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            records: Mutex::new(Records::default()),
            changed: watch::channel(0).0,
            max: AtomicUsize::new(DEFAULT_MAX_RECORDS),
            open: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        })
    }

    /// A poisoned lock only means another thread panicked mid-update; the data is still
    /// usable for a test double, and refusing it would turn one failure into many.
    fn lock(&self) -> MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn notify(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Stores a new record and returns the handle used to update it later.
    pub(crate) fn begin(self: &Arc<Self>, record: RecordedRequest) -> RecordHandle {
        let max = self.max.load(Ordering::Relaxed);
        let id = {
            let mut records = self.lock();
            records.list.push_back(record);
            let id = records.base + records.list.len() as u64 - 1;
            while records.list.len() > max {
                records.list.pop_front();
                records.base += 1;
            }
            id
        };
        self.notify();
        let open = self.open.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(open, Ordering::SeqCst);
        RecordHandle {
            recorder: Arc::clone(self),
            id,
            open: Arc::new(Open {
                recorder: Arc::clone(self),
                ended: AtomicBool::new(false),
            }),
        }
    }

    /// The most exchanges that were open at once since start or the last call, which starts a
    /// new peak from what is open now.
    pub(crate) fn take_peak(&self) -> usize {
        let now = self.open.load(Ordering::SeqCst);
        self.peak.swap(now, Ordering::SeqCst)
    }

    pub(crate) fn total(&self) -> u64 {
        let records = self.lock();
        records.base + records.list.len() as u64
    }

    pub(crate) fn snapshot(&self) -> Vec<RecordedRequest> {
        self.lock().list.iter().cloned().collect()
    }

    /// Sets how many records are kept; the oldest are evicted first. Zero turns recording off.
    pub(crate) fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
        let mut records = self.lock();
        while records.list.len() > max {
            records.list.pop_front();
            records.base += 1;
        }
    }

    pub(crate) fn reset(&self) {
        {
            let mut records = self.lock();
            records.base += records.list.len() as u64;
            records.list.clear();
        }
        self.notify();
    }

    /// Waits until `pred` holds for the records, without sleeping: the receiver is taken
    /// before the check, so an update between the check and the wait still wakes us.
    pub(crate) async fn wait_until<F>(&self, mut pred: F) -> Vec<RecordedRequest>
    where
        F: FnMut(&[RecordedRequest]) -> bool,
    {
        loop {
            let mut rx = self.changed.subscribe();
            {
                let mut records = self.lock();
                let list = records.list.make_contiguous();
                if pred(list) {
                    return list.to_vec();
                }
            }
            // The sender lives as long as `self`, so this only fails if it is being torn
            // down; returning the current state is then the most useful answer.
            if rx.changed().await.is_err() {
                return self.snapshot();
            }
        }
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut RecordedRequest)) {
        {
            let mut records = self.lock();
            let Some(index) = id.checked_sub(records.base) else {
                return;
            };
            let Ok(index) = usize::try_from(index) else {
                return;
            };
            if let Some(record) = records.list.get_mut(index) {
                f(record);
            }
        }
        self.notify();
    }
}

/// Updates one record; cheap to clone into a response stream.
#[derive(Clone)]
pub(crate) struct RecordHandle {
    recorder: Arc<Recorder>,
    id: u64,
    open: Arc<Open>,
}

/// Counts an exchange as open until it ends: at its final outcome, or when the last handle is
/// dropped (a handler that returned early), whichever comes first, and only once.
struct Open {
    recorder: Arc<Recorder>,
    ended: AtomicBool,
}

impl Open {
    fn end(&self) {
        if !self.ended.swap(true, Ordering::SeqCst) {
            self.recorder.open.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.end();
    }
}

impl RecordHandle {
    /// The record's id, unique for the provider's lifetime (it survives `reset`).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn set_usage(&self, usage: Option<MockUsage>) {
        self.recorder.update(self.id, |r| r.usage = usage);
    }

    pub(crate) fn finish(&self, outcome: Outcome, chunks_sent: usize) {
        // The outcome is set before the last bytes reach the socket, so a gateway that frees a
        // concurrency slot when it has read the end can never see the exchange still open. A
        // stall keeps the connection busy, so it is not an end.
        if !matches!(outcome, Outcome::InProgress | Outcome::Stalled) {
            self.open.end();
        }
        self.recorder.update(self.id, |r| {
            r.outcome = outcome;
            r.chunks_sent = chunks_sent;
        });
    }
}
