//! Strip mode: forwards a stream's complete events while cutting out given byte ranges (the
//! usage-only chunk sluice asked for on the client's behalf), without copying where possible.
//!
//! Bytes past the last complete event are held back, because until the event ends nobody knows
//! whether it is the one to cut. Held bytes stay as `Bytes` slices of the chunks they came in;
//! they are only copied when a piece to forward spans several chunks, since Pingora's body filter
//! forwards one `Bytes` per call. A chunk that ends on an event boundary and holds nothing to cut
//! is forwarded as the very same `Bytes`.
//!
//! Joined pieces are copied into one buffer that is reused from chunk to chunk: a piece handed to
//! Pingora shares it, and once Pingora has written and dropped that piece (normally before the
//! next chunk arrives) the buffer is ours alone again and `BytesMut::reserve` reclaims it, so a
//! stream whose reads split events costs no allocation per chunk. A piece still held elsewhere is
//! never overwritten: `reserve` then allocates a fresh buffer instead.

use bytes::{Bytes, BytesMut};

/// The forwarding state of one stripped response.
#[derive(Debug, Default)]
pub(crate) struct Stripper {
    /// Most bytes held back at once: past that the event cannot be a usage chunk the scanner
    /// would parse anyway, so it is forwarded rather than buffered without limit.
    max_held: u64,
    /// Absolute offset up to which bytes have been forwarded or cut.
    decided: u64,
    /// Chunk slices covering `[decided, offset fed)`, in order.
    held: Vec<Bytes>,
    /// Scratch for the next `held`, kept to reuse its allocation.
    spare: Vec<Bytes>,
    /// Absolute ranges to drop, sorted and disjoint (events arrive in stream order).
    cuts: Cuts,
    /// Scratch for the pieces to forward in one call.
    out: Vec<Bytes>,
    /// The reusable buffer joined pieces are copied into (see the module documentation).
    joined: BytesMut,
}

/// A joined piece larger than this gets a buffer of its own, so that one huge event does not pin
/// its size in `joined` for the rest of the stream.
const MAX_REUSED_JOIN: usize = 64 << 10;

impl Stripper {
    pub(crate) fn new(max_held: u64) -> Self {
        Self {
            max_held,
            ..Self::default()
        }
    }

    /// Marks an event's range for removal; it is always past everything already decided.
    pub(crate) fn cut(&mut self, start: u64, end: u64) {
        if start < end && start >= self.decided {
            self.cuts.push((start, end));
        }
    }

    /// Replaces `*body` with what may go to the client now. `chunk` is what the filter was given
    /// (already fed to the scanner from absolute offset `base`); everything before `limit` is
    /// complete and is forwarded minus the cuts, the rest is held.
    pub(crate) fn emit(
        &mut self,
        body: &mut Option<Bytes>,
        chunk: Option<Bytes>,
        base: u64,
        limit: u64,
        eos: bool,
    ) {
        let given = chunk.is_some();
        let len = chunk.as_ref().map_or(0, |c| c.len() as u64);
        let end = base.saturating_add(len);
        let limit = if end.saturating_sub(limit) > self.max_held {
            end
        } else {
            limit
        };
        if self.held.is_empty() && self.cuts.is_empty() && self.decided == base && limit == end {
            // The common case: the chunk is exactly a run of complete events to keep.
            self.decided = end;
            *body = chunk;
            return;
        }
        let mut held = std::mem::take(&mut self.held);
        let mut at = self.decided;
        self.spare.clear();
        for piece in held.drain(..).chain(chunk) {
            let piece_end = at.saturating_add(piece.len() as u64);
            self.forward_uncut(&piece, at, at, piece_end.min(limit));
            if let Some(rest) = sub(&piece, at, limit.max(at), piece_end) {
                self.spare.push(rest);
            }
            at = piece_end;
        }
        self.held = std::mem::replace(&mut self.spare, held);
        self.cuts.clear();
        self.decided = limit.max(self.decided);
        *body = match self.out.len() {
            0 if eos && !given && self.held.is_empty() => None,
            0 => Some(Bytes::new()),
            1 => self.out.pop(),
            _ => {
                let total = self.out.iter().map(Bytes::len).sum();
                if total <= MAX_REUSED_JOIN {
                    // Reclaims the buffer when every piece split from it has been dropped.
                    self.joined.reserve(total);
                    append(&mut self.joined, &mut self.out);
                    Some(self.joined.split().freeze())
                } else {
                    let mut own = BytesMut::with_capacity(total);
                    append(&mut own, &mut self.out);
                    Some(own.freeze())
                }
            }
        };
        self.out.clear();
    }

    /// Queues the part of `piece` (starting at absolute `piece_start`) within `[from, to)` that
    /// no cut covers.
    fn forward_uncut(&mut self, piece: &Bytes, piece_start: u64, from: u64, to: u64) {
        let mut cur = from;
        for &(cut_start, cut_end) in self.cuts.iter() {
            if cur >= to {
                break;
            }
            if cut_end <= cur || cut_start >= to {
                continue;
            }
            if let Some(part) = sub(piece, piece_start, cur, cut_start) {
                self.out.push(part);
            }
            cur = cur.max(cut_end);
        }
        if let Some(part) = sub(piece, piece_start, cur, to) {
            self.out.push(part);
        }
    }
}

/// Copies `parts` into `into`, emptying `parts`.
fn append(into: &mut BytesMut, parts: &mut Vec<Bytes>) {
    for part in parts.drain(..) {
        into.extend_from_slice(&part);
    }
}

/// The cuts pending in one call: nearly always none or the one usage event, which is kept inline
/// so that cutting it does not allocate on the chunk path; more spill into a vector.
#[derive(Debug, Default)]
struct Cuts {
    first: Option<(u64, u64)>,
    more: Vec<(u64, u64)>,
}

impl Cuts {
    fn push(&mut self, cut: (u64, u64)) {
        if self.first.is_none() {
            self.first = Some(cut);
        } else {
            self.more.push(cut);
        }
    }

    fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    fn clear(&mut self) {
        self.first = None;
        self.more.clear();
    }

    /// The cuts in the order they were pushed.
    fn iter(&self) -> impl Iterator<Item = &(u64, u64)> {
        self.first.iter().chain(self.more.iter())
    }
}

/// The non-empty slice of `piece` (starting at absolute `piece_start`) covering absolute
/// `[from, to)`, if that range lies inside the piece; never panics on a bad range.
fn sub(piece: &Bytes, piece_start: u64, from: u64, to: u64) -> Option<Bytes> {
    let lo = usize::try_from(from.checked_sub(piece_start)?).ok()?;
    let hi = usize::try_from(to.checked_sub(piece_start)?).ok()?;
    (lo < hi && hi <= piece.len()).then(|| piece.slice(lo..hi))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::api::Api;
    use crate::usage::UsageObserver;

    const EVENT: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"tok\"}}]}\n\n";

    /// Feeds the next read, which ends halfway through an event, and returns what is forwarded.
    fn feed(observer: &mut UsageObserver, read: &str) -> Bytes {
        let mut body = Some(Bytes::copy_from_slice(read.as_bytes()));
        observer.filter(&mut body, false);
        body.expect("a chunk in yields a chunk out")
    }

    #[test]
    fn joined_pieces_reuse_one_buffer_once_the_client_write_dropped_them() {
        let (head, tail) = EVENT.split_at(EVENT.len() / 2);
        let straddling = format!("{tail}{head}");
        let mut observer = UsageObserver::new(Api::ChatCompletions, true, true);
        assert!(
            feed(&mut observer, head).is_empty(),
            "a partial event is held"
        );

        // Each read completes the held event with its first half: one piece over two reads.
        let first = feed(&mut observer, &straddling);
        assert_eq!(first, EVENT.as_bytes());
        let buffer = first.as_ptr();
        drop(first);
        let second = feed(&mut observer, &straddling);
        assert_eq!(second, EVENT.as_bytes());
        assert_eq!(
            second.as_ptr(),
            buffer,
            "the dropped piece's buffer is reused"
        );

        // A piece still queued for the client is never overwritten: a new buffer is used.
        let third = feed(&mut observer, &straddling);
        assert_eq!(third, EVENT.as_bytes());
        assert_ne!(third.as_ptr(), second.as_ptr());
        assert_eq!(second, EVENT.as_bytes(), "the queued piece is intact");
        drop((second, third));

        let mut body = Some(Bytes::from_static(b"\n\ndata: [DONE]\n\n"));
        observer.filter(&mut body, true);
        let last = body.expect("the end is forwarded");
        assert_eq!(last, format!("{head}\n\ndata: [DONE]\n\n").as_bytes());
    }

    #[test]
    fn every_usage_only_event_of_one_read_is_cut() {
        let usage =
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\n";
        let read = format!("{EVENT}{usage}{EVENT}{usage}{usage}data: [DONE]\n\n");
        let mut observer = UsageObserver::new(Api::ChatCompletions, true, true);
        let mut body = Some(Bytes::from(read));
        observer.filter(&mut body, true);
        let expected = format!("{EVENT}{EVENT}data: [DONE]\n\n");
        assert_eq!(body.as_deref(), Some(expected.as_bytes()));
        assert!(observer.report().final_usage_seen);
    }
}
