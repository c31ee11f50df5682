//! Incremental Server-Sent Events scanner: finds events, their fields and their byte ranges in a
//! stream that arrives in arbitrary chunks, as Pingora's body filter hands them over.
//!
//! Parsing follows the WHATWG EventSource rules: lines end in LF, CRLF or CR (a CRLF split across
//! two chunks is one line end); an empty line dispatches the event; lines starting with `:` are
//! comments; `field:value` loses one optional space after the colon; `data` lines are joined with
//! `\n`; `event` sets the type (default `message`); a line without a colon is a field with an empty
//! value; unknown fields (`id`, `retry`, ...) are ignored; a leading UTF-8 BOM is skipped; a block
//! without any `data` line is not dispatched; an unterminated event at end of stream is dropped.
//!
//! Every dispatched event carries its absolute byte range `[start, end)`: `start` is just past the
//! previous block's blank line (so leading comments belong to the event) and `end` is just past its
//! own blank line. Dispatched ranges plus undispatched blocks tile the stream, which lets a caller
//! cut an event out of the forwarded bytes.
//!
//! Cost model: line ends are found with `memchr2`, fields with `memchr`; an event whose lines lie
//! wholly in one chunk is reported by borrowing the chunk. Only bytes that span chunks (a partial
//! line, or the data of an unfinished event) are copied, into buffers that are reused. Those
//! buffers are bounded: data beyond `max_event_bytes` (1 MiB by default) is dropped and the event
//! is reported with `truncated` set, so a hostile upstream cannot grow memory without limit.

use memchr::{memchr, memchr2};

/// Default bound on the data bytes of one event; larger events are reported truncated.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1 << 20;

/// Event types are short protocol names; anything longer is garbage and is cut to this length.
const MAX_EVENT_TYPE: usize = 256;

/// Room for a field name, colon and space ahead of the value in a carried line.
const LINE_SLACK: usize = 16;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Buffers grown past this by an unusually large event are released once it is done, so one
/// big event does not pin memory for the rest of a long stream.
const KEEP_CAPACITY: usize = 64 << 10;

/// The least a carry buffer grows by: typical event lines (a few hundred bytes) then fit after
/// one allocation per stream instead of several doublings from a few bytes.
const MIN_CARRY: usize = 1 << 10;

/// One dispatched event; the slices are only valid during the callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseEvent<'a> {
    /// The `event` field, or `message` when the event had none.
    pub event: &'a [u8],
    /// The `data` lines joined with `\n` (cut to the scanner's bound when `truncated`).
    pub data: &'a [u8],
    /// Absolute offset of the event's first byte in the stream.
    pub start: u64,
    /// Absolute offset just past the blank line that ended the event.
    pub end: u64,
    /// The data exceeded the scanner's bound and only its prefix is reported.
    pub truncated: bool,
}

/// Where the current event's data lives between lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Data {
    /// No `data` line yet: a blank line now dispatches nothing.
    None,
    /// One `data` value borrowed from the chunk being fed (indices into it).
    Chunk(usize, usize),
    /// Data copied into `data_buf` because it spans lines or chunks.
    Owned,
}

/// Incremental SSE scanner; see the module documentation for the rules it applies.
#[derive(Debug)]
pub struct SseScanner {
    offset: u64,
    boundary: u64,
    max_event: usize,
    line: Vec<u8>,
    in_line: bool,
    line_truncated: bool,
    cr_pending: bool,
    blank_pending: bool,
    at_stream_start: bool,
    data: Data,
    data_buf: Vec<u8>,
    /// The `event` value when borrowed from the chunk being fed (indices into it).
    event_in_chunk: Option<(usize, usize)>,
    /// The `event` value otherwise (empty: none, or an empty value; both mean `message`).
    event_type: Vec<u8>,
    truncated: bool,
}

impl Default for SseScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl SseScanner {
    /// A scanner with the default 1 MiB bound per event.
    pub fn new() -> Self {
        Self::with_max_event_bytes(DEFAULT_MAX_EVENT_BYTES)
    }

    /// A scanner that keeps at most `max_event` data bytes of any one event.
    pub fn with_max_event_bytes(max_event: usize) -> Self {
        Self {
            offset: 0,
            boundary: 0,
            max_event,
            line: Vec::new(),
            in_line: false,
            line_truncated: false,
            cr_pending: false,
            blank_pending: false,
            at_stream_start: true,
            data: Data::None,
            data_buf: Vec::new(),
            event_in_chunk: None,
            event_type: Vec::new(),
            truncated: false,
        }
    }

    /// Total bytes fed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Absolute offset just past the last finished block: bytes before it can never belong to a
    /// later event. A blank line ending in a CR at the very end of a chunk is not finished until
    /// the next byte shows whether an LF belongs to it.
    pub fn boundary(&self) -> u64 {
        self.boundary
    }

    /// Feeds the next chunk; calls `on_event` for every event completed within it.
    pub fn feed(&mut self, chunk: &[u8], mut on_event: impl FnMut(&SseEvent<'_>)) {
        if chunk.is_empty() {
            return;
        }
        let base = self.offset;
        self.offset = self.offset.saturating_add(chunk.len() as u64);
        let mut pos = 0;
        if self.cr_pending {
            self.cr_pending = false;
            if chunk.first() == Some(&b'\n') {
                pos = 1;
            }
            if self.blank_pending {
                self.blank_pending = false;
                self.end_block(chunk, base.saturating_add(pos as u64), &mut on_event);
            }
        }
        if self.in_line {
            let rest = chunk.get(pos..).unwrap_or_default();
            let Some(i) = memchr2(b'\n', b'\r', rest) else {
                self.push_line(rest);
                return;
            };
            self.push_line(rest.get(..i).unwrap_or_default());
            self.in_line = false;
            let (next, cr_at_end) = after_terminator(chunk, pos + i);
            let mut line = std::mem::take(&mut self.line);
            self.cr_pending = cr_at_end;
            let end = base.saturating_add(next as u64);
            self.process_line(chunk, &line, None, end, &mut on_event);
            line.clear();
            if line.capacity() <= KEEP_CAPACITY {
                self.line = line;
            }
            pos = next;
        }
        while let Some(rest) = chunk.get(pos..).filter(|r| !r.is_empty()) {
            let Some(i) = memchr2(b'\n', b'\r', rest) else {
                self.line.clear();
                self.line_truncated = false;
                self.in_line = true;
                self.push_line(rest);
                break;
            };
            let (next, cr_at_end) = after_terminator(chunk, pos + i);
            self.cr_pending = cr_at_end;
            let end = base.saturating_add(next as u64);
            self.process_line(
                chunk,
                rest.get(..i).unwrap_or_default(),
                Some(pos),
                end,
                &mut on_event,
            );
            pos = next;
        }
        self.park(chunk);
    }

    /// Ends the stream: dispatches an event whose final blank line ended in a CR at the very end
    /// of the last chunk, and drops any unterminated event as the EventSource rules require.
    pub fn finish(&mut self, mut on_event: impl FnMut(&SseEvent<'_>)) {
        if self.cr_pending && self.blank_pending {
            self.end_block(&[], self.offset, &mut on_event);
        }
        self.cr_pending = false;
        self.blank_pending = false;
        self.in_line = false;
        self.line.clear();
        self.reset_event();
        self.boundary = self.offset;
    }

    /// Applies one complete line; `at` is its index in `chunk` when it was not carried.
    fn process_line(
        &mut self,
        chunk: &[u8],
        line: &[u8],
        mut at: Option<usize>,
        end: u64,
        on_event: &mut impl FnMut(&SseEvent<'_>),
    ) {
        let mut line = line;
        if self.at_stream_start {
            self.at_stream_start = false;
            if let Some(rest) = line.strip_prefix(BOM) {
                line = rest;
                at = at.map(|a| a + BOM.len());
            }
        }
        match line.first() {
            None if self.cr_pending => self.blank_pending = true,
            None => self.end_block(chunk, end, on_event),
            Some(b':') => {}
            Some(_) => {
                let (name, value_at) = match memchr(b':', line) {
                    Some(c) if line.get(c + 1) == Some(&b' ') => (line.get(..c), c + 2),
                    Some(c) => (line.get(..c), c + 1),
                    None => (Some(line), line.len()),
                };
                let value = line.get(value_at..).unwrap_or_default();
                match name.unwrap_or_default() {
                    b"data" => {
                        self.truncated |= at.is_none() && self.line_truncated;
                        self.push_data(chunk, value, at.map(|a| a + value_at));
                    }
                    b"event" => {
                        let keep = value.len().min(MAX_EVENT_TYPE);
                        self.event_type.clear();
                        self.event_in_chunk = at.map(|a| (a + value_at, a + value_at + keep));
                        if at.is_none() {
                            self.event_type
                                .extend_from_slice(value.get(..keep).unwrap_or_default());
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Appends one `data` value, borrowing it from the chunk when it is the event's first.
    fn push_data(&mut self, chunk: &[u8], value: &[u8], at: Option<usize>) {
        match (self.data, at) {
            (Data::None, Some(a)) => self.data = Data::Chunk(a, a + value.len()),
            (Data::None, None) => {
                self.data_buf.clear();
                self.append_data(value);
                self.data = Data::Owned;
            }
            (Data::Chunk(s, e), _) => {
                self.data_buf.clear();
                self.append_data(chunk.get(s..e).unwrap_or_default());
                self.append_data(b"\n");
                self.append_data(value);
                self.data = Data::Owned;
            }
            (Data::Owned, _) => {
                self.append_data(b"\n");
                self.append_data(value);
            }
        }
    }

    /// Copies into the data buffer up to the bound, marking the event truncated past it.
    fn append_data(&mut self, bytes: &[u8]) {
        let room = self.max_event.saturating_sub(self.data_buf.len());
        if bytes.len() > room {
            self.truncated = true;
        }
        extend_carry(
            &mut self.data_buf,
            bytes.get(..room.min(bytes.len())).unwrap_or_default(),
        );
    }

    /// Carries part of a line that continues in the next chunk, up to the bound.
    fn push_line(&mut self, bytes: &[u8]) {
        // Long enough that a carried line keeps whatever an in-chunk line would: the data bound
        // or a whole event type, plus the field name (and a BOM) ahead of it.
        let room = self
            .max_event
            .max(MAX_EVENT_TYPE)
            .saturating_add(LINE_SLACK)
            .saturating_sub(self.line.len());
        if bytes.len() > room {
            self.line_truncated = true;
        }
        extend_carry(
            &mut self.line,
            bytes.get(..room.min(bytes.len())).unwrap_or_default(),
        );
    }

    /// Handles a blank line: dispatches the event if it has data, and starts the next block.
    fn end_block(&mut self, chunk: &[u8], end: u64, on_event: &mut impl FnMut(&SseEvent<'_>)) {
        let data = match self.data {
            Data::None => None,
            Data::Chunk(s, e) => Some(chunk.get(s..e).unwrap_or_default()),
            Data::Owned => Some(self.data_buf.as_slice()),
        };
        if let Some(data) = data {
            let keep = data.len().min(self.max_event);
            let event = match self.event_in_chunk {
                Some((s, e)) => chunk.get(s..e).unwrap_or_default(),
                None => self.event_type.as_slice(),
            };
            let event = if event.is_empty() { b"message" } else { event };
            on_event(&SseEvent {
                event,
                data: data.get(..keep).unwrap_or_default(),
                start: self.boundary,
                end,
                truncated: self.truncated || keep < data.len(),
            });
        }
        self.reset_event();
        self.boundary = end;
        if self.data_buf.capacity() > KEEP_CAPACITY {
            self.data_buf = Vec::new();
        }
    }

    fn reset_event(&mut self) {
        self.data = Data::None;
        self.data_buf.clear();
        self.event_in_chunk = None;
        self.event_type.clear();
        self.truncated = false;
    }

    /// At the end of a chunk, copies what an unfinished event borrowed, since the chunk goes.
    fn park(&mut self, chunk: &[u8]) {
        if let Some((s, e)) = self.event_in_chunk.take() {
            self.event_type.clear();
            self.event_type
                .extend_from_slice(chunk.get(s..e).unwrap_or_default());
        }
        if let Data::Chunk(s, e) = self.data {
            self.data_buf.clear();
            self.append_data(chunk.get(s..e).unwrap_or_default());
            self.data = Data::Owned;
        }
    }
}

/// Appends to a carry buffer, growing it by at least [`MIN_CARRY`] when it must grow.
fn extend_carry(buf: &mut Vec<u8>, bytes: &[u8]) {
    if buf.capacity().saturating_sub(buf.len()) < bytes.len() {
        buf.reserve(bytes.len().max(MIN_CARRY));
    }
    buf.extend_from_slice(bytes);
}

/// Given the index of a CR or LF in `chunk`, returns the index just past the line end and whether
/// that line end is a CR at the very end of the chunk (whose LF, if any, comes in the next chunk).
fn after_terminator(chunk: &[u8], at: usize) -> (usize, bool) {
    match (chunk.get(at), chunk.get(at + 1)) {
        (Some(b'\r'), Some(b'\n')) => (at + 2, false),
        (Some(b'\r'), None) => (at + 1, true),
        _ => (at + 1, false),
    }
}

#[cfg(test)]
mod tests;
