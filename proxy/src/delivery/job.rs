//! What the delivery worker sends next ([`Job`]) and a spool being replayed ([`Replay`]).

use super::batcher::Batch;
use super::spool::Spool;

/// Where the next batch to send comes from.
#[derive(Debug)]
pub enum Job {
    /// A batch taken from the front of the memory queue (put back if it fails).
    Live(Batch),
    /// An entry of a spool: `None` is ours, `Some(i)` the i-th adopted one.
    Spooled {
        spool: Option<usize>,
        next: u64,
        records: u32,
        payload: Vec<u8>,
    },
}

/// A spool being replayed, with the offset of its next unsent entry.
#[derive(Debug)]
pub struct Replay {
    pub spool: Spool,
    pub pos: u64,
}

impl Replay {
    pub fn new(spool: Spool) -> Self {
        let pos = spool.start();
        Self { spool, pos }
    }

    pub fn pending(&self) -> bool {
        self.pos < self.spool.len()
    }
}
