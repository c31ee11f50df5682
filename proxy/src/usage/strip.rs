//! Strip mode: forwards a stream's complete events while cutting out given byte ranges (the
//! usage-only chunk sluice asked for on the client's behalf), without copying where possible.
//!
//! Bytes past the last complete event are held back, because until the event ends nobody knows
//! whether it is the one to cut. Held bytes stay as `Bytes` slices of the chunks they came in;
//! they are only copied when a piece to forward spans several chunks, since Pingora's body filter
//! forwards one `Bytes` per call. A chunk that ends on an event boundary and holds nothing to cut
//! is forwarded as the very same `Bytes`.

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
    cuts: Vec<(u64, u64)>,
    /// Scratch for the pieces to forward in one call.
    out: Vec<Bytes>,
}

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
                let mut joined = BytesMut::with_capacity(total);
                for part in self.out.drain(..) {
                    joined.extend_from_slice(&part);
                }
                Some(joined.freeze())
            }
        };
        self.out.clear();
    }

    /// Queues the part of `piece` (starting at absolute `piece_start`) within `[from, to)` that
    /// no cut covers.
    fn forward_uncut(&mut self, piece: &Bytes, piece_start: u64, from: u64, to: u64) {
        let mut cur = from;
        for &(cut_start, cut_end) in &self.cuts {
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

/// The non-empty slice of `piece` (starting at absolute `piece_start`) covering absolute
/// `[from, to)`, if that range lies inside the piece; never panics on a bad range.
fn sub(piece: &Bytes, piece_start: u64, from: u64, to: u64) -> Option<Bytes> {
    let lo = usize::try_from(from.checked_sub(piece_start)?).ok()?;
    let hi = usize::try_from(to.checked_sub(piece_start)?).ok()?;
    (lo < hi && hi <= piece.len()).then(|| piece.slice(lo..hi))
}
