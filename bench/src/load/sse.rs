//! Just enough SSE parsing for a load generator: counting `data:` line starts across chunk
//! boundaries, and remembering a stream's last bytes to tell a complete stream from a cut one.
//!
//! Both providers send exactly one `data:` line per event, so a data line start is an event.
//! Neither type allocates; both work on the `Bytes` frames hyper hands out.

use memchr::{memchr2, memmem};

const PREFIX: &[u8] = b"data:";
/// `matched` value meaning "not at a line start" (inside a line that is not a data line, or
/// past the prefix of one).
const NONE: usize = usize::MAX;

/// Counts SSE `data:` lines. Lines may end in LF, CR or CRLF, and a chunk may end anywhere,
/// including inside the `data:` prefix.
#[derive(Debug, Default)]
pub(crate) struct DataLines {
    /// How many bytes of `data:` the current line has matched so far, or [`NONE`]. It
    /// starts at 0 because a body starts at a line start.
    matched: usize,
}

impl DataLines {
    /// Continues matching the prefix at `start`. Returns true when the prefix completes.
    /// When the chunk ends first, `matched` keeps the progress for the next chunk.
    fn match_at(&mut self, chunk: &[u8], start: usize) -> bool {
        let done = self.matched;
        let need = PREFIX.len() - done;
        let avail = chunk.len() - start;
        let n = need.min(avail);
        if chunk[start..start + n] != PREFIX[done..done + n] {
            self.matched = NONE;
            false
        } else if n == need {
            self.matched = NONE;
            true
        } else {
            self.matched = done + n;
            false
        }
    }

    /// Feeds one chunk; returns how many data lines started (prefix completed) in it.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> usize {
        let mut count = 0;
        if self.matched != NONE {
            count += usize::from(self.match_at(chunk, 0));
            if self.matched != NONE {
                // The chunk ended inside the prefix.
                return count;
            }
        }
        let mut pos = 0;
        while let Some(i) = memchr2(b'\n', b'\r', &chunk[pos..]) {
            let start = pos + i + 1;
            self.matched = 0;
            count += usize::from(self.match_at(chunk, start));
            if self.matched != NONE {
                return count;
            }
            pos = start;
        }
        count
    }
}

const TAIL: usize = 64;

/// The last [`TAIL`] bytes of a body, in a fixed buffer.
#[derive(Debug)]
pub(crate) struct Tail {
    buf: [u8; TAIL],
    len: usize,
}

impl Default for Tail {
    fn default() -> Self {
        Self {
            buf: [0; TAIL],
            len: 0,
        }
    }
}

impl Tail {
    pub(crate) fn push(&mut self, chunk: &[u8]) {
        if chunk.len() >= TAIL {
            self.buf.copy_from_slice(&chunk[chunk.len() - TAIL..]);
            self.len = TAIL;
            return;
        }
        let keep = self.len.min(TAIL - chunk.len());
        self.buf.copy_within(self.len - keep..self.len, 0);
        self.buf[keep..keep + chunk.len()].copy_from_slice(chunk);
        self.len = keep + chunk.len();
    }

    pub(crate) fn contains(&self, needle: &[u8]) -> bool {
        memmem::find(&self.buf[..self.len], needle).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "event: message_start\ndata: {\"a\":1}\n\n: comment data: no\n\ndata:x\r\n\r\nid: 1\rdata: y\r\rdata: [DONE]\n\n";

    #[test]
    fn counts_data_lines_split_anywhere() {
        let bytes = STREAM.as_bytes();
        let mut whole = DataLines::default();
        assert_eq!(whole.feed(bytes), 4);
        for a in 0..=bytes.len() {
            for b in a..=bytes.len() {
                let mut s = DataLines::default();
                let n = s.feed(&bytes[..a]) + s.feed(&bytes[a..b]) + s.feed(&bytes[b..]);
                assert_eq!(n, 4, "split at {a} and {b}");
            }
        }
    }

    #[test]
    fn data_must_start_the_line() {
        let mut s = DataLines::default();
        assert_eq!(s.feed(b"xdata: 1\nevent: data:\n da"), 0);
        assert_eq!(s.feed(b"ta: 2\ndat"), 0);
        assert_eq!(s.feed(b"a"), 0);
        assert_eq!(s.feed(b":"), 1);
    }

    #[test]
    fn tail_keeps_the_last_bytes() {
        let bytes = STREAM.as_bytes();
        for step in 1..bytes.len() {
            let mut t = Tail::default();
            for c in bytes.chunks(step) {
                t.push(c);
            }
            assert!(t.contains(b"[DONE]"), "step {step}");
            assert_eq!(&t.buf[..t.len], &bytes[bytes.len() - TAIL..]);
        }
        let mut t = Tail::default();
        t.push(b"data: [DO");
        assert!(!t.contains(b"[DONE]"));
    }
}
