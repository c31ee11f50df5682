//! The outcome of `Limiter::admit`: what an admitted request holds, or why it was refused.

use std::fmt;
use std::time::Duration;

use super::window::RateInfo;
use super::Entries;
use super::Scope;

/// Which kind of limit refused a request. Its text is how people read it in a refusal
/// ("rate limit reached for concurrent requests").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitKind {
    Requests,
    Tokens,
    Concurrency,
}

impl LimitKind {
    /// Every kind, for publishing the rejection series at zero.
    pub const ALL: [LimitKind; 3] = [
        LimitKind::Requests,
        LimitKind::Tokens,
        LimitKind::Concurrency,
    ];

    /// The one-word label value (`kind=` in metrics).
    pub fn label(self) -> &'static str {
        match self {
            LimitKind::Requests => "requests",
            LimitKind::Tokens => "tokens",
            LimitKind::Concurrency => "concurrency",
        }
    }
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LimitKind::Requests => "requests",
            LimitKind::Tokens => "tokens",
            LimitKind::Concurrency => "concurrent requests",
        })
    }
}

/// A refused admission. Nothing stays taken, except as documented on `Limiter::admit`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub kind: LimitKind,
    /// The first scope (in the order given) whose limit refused.
    pub scope: Scope,
    /// When to retry. Exact for requests and tokens; a fixed 1 s for concurrency, since nobody
    /// can know when an in-flight request ends (1 s is also the smallest `Retry-After`).
    pub retry_after: Duration,
    /// The scopes' windows as they are after the refusal was undone.
    pub info: RateInfo,
}

/// In-flight slots held by an admitted request; dropping it releases them (also on unwinding,
/// since `Drop` runs then too).
#[must_use = "dropping the slots releases the concurrency limit at once"]
#[derive(Default)]
pub struct Slots {
    pub(super) entries: Entries,
}

impl Drop for Slots {
    fn drop(&mut self) {
        for entry in self.entries.iter() {
            entry.release();
        }
    }
}

impl fmt::Debug for Slots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Slots({})", self.entries.len())
    }
}

/// Tokens charged to every token bucket of an admitted request's scopes. Dropping it keeps the
/// current charge; `settle` changes it.
pub struct Reservation {
    pub(super) entries: Entries,
    pub(super) charged: u64,
}

impl Reservation {
    /// What this request is charged in total so far.
    pub fn charged(&self) -> u64 {
        self.charged
    }

    /// Sets what this request is charged in total (e.g. once input is known: actual input +
    /// max output; at the end: actual input + output). The difference from the current charge is
    /// refunded to or debited from every token bucket the reservation holds; buckets may go into
    /// debt, which delays later admissions; a refund never fills a bucket beyond its capacity.
    /// Idempotent for the same total.
    pub fn settle(&mut self, total: u64) {
        let delta = i128::from(total) - i128::from(self.charged);
        if delta == 0 {
            return;
        }
        for entry in self.entries.iter() {
            entry.adjust_tokens(delta);
        }
        self.charged = total;
    }
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("charged", &self.charged)
            .field("buckets", &self.entries.len())
            .finish()
    }
}

/// An admitted request. Keep it for the whole request: dropping it releases its concurrency
/// slots (RAII, on every path including unwinding). Moving `reservation` out is fine, but to keep
/// the slots separately use [`Admitted::into_parts`], since destructuring with `..` drops them.
#[derive(Debug)]
pub struct Admitted {
    pub info: RateInfo,
    pub reservation: Reservation,
    pub(super) slots: Slots,
}

impl Admitted {
    /// Splits into the rate information, the token reservation and the slot guard.
    pub fn into_parts(self) -> (RateInfo, Reservation, Slots) {
        (self.info, self.reservation, self.slots)
    }
}
