//! A short list of scope entries kept inline, so admitting a request with up to three limited
//! scopes (org, key, org × model) allocates nothing.

use std::sync::Arc;

use super::entry::Entry;

const INLINE: usize = 3;

#[derive(Default)]
pub(super) struct Held {
    inline: [Option<Arc<Entry>>; INLINE],
    spill: Vec<Arc<Entry>>,
}

impl Held {
    pub(super) fn push(&mut self, entry: Arc<Entry>) {
        match self.inline.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => *slot = Some(entry),
            None => self.spill.push(entry),
        }
    }

    /// The entries in the order they were pushed.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Arc<Entry>> {
        self.inline
            .iter()
            .map_while(Option::as_ref)
            .chain(&self.spill)
    }

    pub(super) fn len(&self) -> usize {
        self.iter().count()
    }
}
