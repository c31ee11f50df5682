//! SSE rendering and the response body stream that plays events with delays and faults.
//!
//! Every event of a response is rendered once into a single buffer before the first byte
//! is sent; the body stream then hands out zero-copy slices of it. That keeps the per-chunk
//! path free of allocations and locks, which matters because the mock is also the target of
//! latency benchmarks.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::Stream;
use serde::Serialize;
use tokio::time::{Instant, Sleep};

use super::control::LineEnding;
use super::record::{Outcome, RecordHandle};

/// One rendered unit (an SSE event, or part of a non-stream body) and the pause before it.
#[derive(Debug, Clone, Copy)]
struct Span {
    end: usize,
    delay: Option<Duration>,
}

/// Renders SSE events into one buffer.
pub struct SseBuilder {
    buf: BytesMut,
    spans: Vec<Span>,
    le: &'static str,
    pending_delay: Option<Duration>,
}

impl SseBuilder {
    pub fn new(line_ending: LineEnding, capacity: usize) -> Self {
        Self {
            buf: BytesMut::with_capacity(capacity),
            spans: Vec::new(),
            le: line_ending.as_str(),
            pending_delay: None,
        }
    }

    /// Starts an event: writes the optional `event:` line and the `data: ` prefix. The JSON
    /// payload is then written through [`SseBuilder::buf`] or [`SseBuilder::json`].
    pub fn begin(&mut self, event: Option<&str>, delay: Option<Duration>) -> &mut Self {
        if let Some(name) = event {
            self.buf.put_slice(b"event: ");
            self.buf.put_slice(name.as_bytes());
            self.buf.put_slice(self.le.as_bytes());
        }
        self.buf.put_slice(b"data: ");
        self.pending_delay = delay;
        self
    }

    /// The raw buffer, for hand-written JSON on hot paths. Callers must not write line
    /// breaks, since SSE data must stay on one line.
    pub fn buf(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Serialises a value as the event's data.
    pub fn json<T: Serialize + ?Sized>(&mut self, value: &T) -> &mut Self {
        // Serialising a serde_json value into memory cannot fail.
        let _ = serde_json::to_writer((&mut self.buf).writer(), value);
        self
    }

    /// Ends the current event with the blank line that dispatches it.
    pub fn end(&mut self) {
        self.buf.put_slice(self.le.as_bytes());
        self.buf.put_slice(self.le.as_bytes());
        self.spans.push(Span {
            end: self.buf.len(),
            delay: self.pending_delay.take(),
        });
    }

    /// A whole event whose data is a serialisable value.
    pub fn event<T: Serialize + ?Sized>(
        &mut self,
        event: Option<&str>,
        delay: Option<Duration>,
        value: &T,
    ) {
        self.begin(event, delay).json(value).end();
    }

    /// A whole event whose data is a literal string such as `[DONE]`.
    pub fn raw(&mut self, event: Option<&str>, delay: Option<Duration>, data: &str) {
        self.begin(event, delay).buf.put_slice(data.as_bytes());
        self.end();
    }

    pub fn finish(self) -> Rendered {
        Rendered {
            data: self.buf.freeze(),
            spans: self.spans,
        }
    }
}

/// A fully rendered response body split into units.
pub struct Rendered {
    data: Bytes,
    spans: Vec<Span>,
}

impl Rendered {
    /// A non-stream body split in two halves, so that drop and stall faults can cut it.
    pub fn halves(body: Bytes) -> Self {
        let mid = body.len() / 2;
        let spans = vec![
            Span {
                end: mid,
                delay: None,
            },
            Span {
                end: body.len(),
                delay: None,
            },
        ];
        Self { data: body, spans }
    }
}

impl Rendered {
    /// A recorded body played as writes ending at each of `ends` (ascending, the last one the
    /// body's length).
    pub fn from_ends(data: Bytes, ends: Vec<usize>) -> Self {
        let spans = ends
            .into_iter()
            .map(|end| Span { end, delay: None })
            .collect();
        Self { data, spans }
    }
}

/// Faults and framing applied while the body plays.
#[derive(Debug, Clone, Copy, Default)]
pub struct Playback {
    pub fragment: Option<usize>,
    pub drop_after: Option<usize>,
    pub stall_after: Option<usize>,
    /// Yield once between writes, so hyper flushes each one as its own socket write (replay).
    pub flush_each: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    /// Waiting one poll so hyper flushes what was sent before the connection is cut.
    Dropping,
    Stalled,
    Done,
}

/// The body stream. Dropping it before the end means the client went away (hyper drops
/// the body when the connection fails), which is recorded as `ClientGone`.
pub struct MockBody {
    data: Bytes,
    spans: Vec<Span>,
    next: usize,
    offset: usize,
    playback: Playback,
    sleep: Option<Pin<Box<Sleep>>>,
    sleeping: bool,
    slept_for: Option<usize>,
    state: State,
    record: RecordHandle,
    /// A write went out since the last yield (only with `flush_each`).
    wrote: bool,
}

impl MockBody {
    pub fn new(rendered: Rendered, playback: Playback, record: RecordHandle) -> Self {
        Self {
            data: rendered.data,
            spans: rendered.spans,
            next: 0,
            offset: 0,
            playback,
            sleep: None,
            sleeping: false,
            slept_for: None,
            state: State::Running,
            record,
            wrote: false,
        }
    }

    fn at_boundary(&self) -> bool {
        let start = match self.next.checked_sub(1) {
            Some(prev) => self.spans.get(prev).map_or(0, |s| s.end),
            None => 0,
        };
        self.offset == start
    }

    /// Arms or polls the pause before the next unit. Ready means the pause is over.
    fn poll_delay(&mut self, cx: &mut Context<'_>, delay: Duration) -> Poll<()> {
        if self.slept_for == Some(self.next) {
            return Poll::Ready(());
        }
        if !self.sleeping {
            // A delay too large for the clock simply never ends, like a stall.
            let deadline = Instant::now()
                .checked_add(delay)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
            match self.sleep.as_mut() {
                Some(sleep) => sleep.as_mut().reset(deadline),
                None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.sleeping = true;
        }
        let Some(sleep) = self.sleep.as_mut() else {
            return Poll::Ready(());
        };
        match sleep.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                self.sleeping = false;
                self.slept_for = Some(self.next);
                Poll::Ready(())
            }
        }
    }
}

impl Stream for MockBody {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match this.state {
            State::Done => return Poll::Ready(None),
            State::Stalled => return Poll::Pending,
            State::Dropping => {
                this.state = State::Done;
                this.record.finish(Outcome::Dropped, this.next);
                return Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "x-mock-drop-after: connection dropped on purpose",
                ))));
            }
            State::Running => {}
        }
        if this.at_boundary() {
            if this.playback.drop_after == Some(this.next) {
                // Returning Pending once lets hyper flush the events already written, so
                // the client reliably sees exactly K events before the cut.
                this.state = State::Dropping;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if this.playback.stall_after == Some(this.next) {
                this.state = State::Stalled;
                this.record.finish(Outcome::Stalled, this.next);
                return Poll::Pending;
            }
            let Some(span) = this.spans.get(this.next).copied() else {
                this.state = State::Done;
                this.record.finish(Outcome::Completed, this.next);
                return Poll::Ready(None);
            };
            if let Some(delay) = span.delay {
                if this.poll_delay(cx, delay).is_pending() {
                    return Poll::Pending;
                }
            }
        }
        let Some(span) = this.spans.get(this.next).copied() else {
            this.state = State::Done;
            this.record.finish(Outcome::Completed, this.next);
            return Poll::Ready(None);
        };
        if this.playback.flush_each && this.wrote {
            // Returning Pending makes hyper flush what it holds before asking again.
            this.wrote = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.wrote = true;
        let end = match this.playback.fragment {
            Some(f) => this.offset.saturating_add(f).min(span.end),
            None => span.end,
        };
        let chunk = this.data.slice(this.offset..end);
        this.offset = end;
        if end == span.end {
            this.next += 1;
        }
        Poll::Ready(Some(Ok(chunk)))
    }
}

impl Drop for MockBody {
    fn drop(&mut self) {
        if self.state != State::Done {
            self.record.finish(Outcome::ClientGone, self.next);
        }
    }
}
