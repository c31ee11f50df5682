//! What a caller is told about its limits: one window per kind, the tightest across scopes.

use std::time::Duration;

/// One limit's state, as `x-ratelimit-*` headers report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// The quota's amount per period.
    pub limit: u64,
    /// What is left now (0 when in debt).
    pub remaining: u64,
    /// Time until that bucket is full again.
    pub reset: Duration,
}

impl Window {
    /// The window of a full bucket.
    pub(super) fn full(limit: u64) -> Self {
        Self {
            limit,
            remaining: limit,
            reset: Duration::ZERO,
        }
    }

    /// True when `self` is tighter than `other`: less remaining, or as much but a longer reset.
    fn tighter_than(&self, other: &Window) -> bool {
        (self.remaining, std::cmp::Reverse(self.reset))
            < (other.remaining, std::cmp::Reverse(other.reset))
    }
}

/// The tightest request window and the tightest token window over all scopes of a request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateInfo {
    pub requests: Option<Window>,
    pub tokens: Option<Window>,
}

impl RateInfo {
    pub(crate) fn merge_requests(&mut self, window: Window) {
        merge(&mut self.requests, window);
    }

    pub(crate) fn merge_tokens(&mut self, window: Window) {
        merge(&mut self.tokens, window);
    }
}

fn merge(slot: &mut Option<Window>, window: Window) {
    match slot {
        Some(current) if !window.tighter_than(current) => {}
        _ => *slot = Some(window),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(remaining: u64, reset_s: u64) -> Window {
        Window {
            limit: 100,
            remaining,
            reset: Duration::from_secs(reset_s),
        }
    }

    #[test]
    fn tightest_is_least_remaining_then_longest_reset() {
        let mut info = RateInfo::default();
        info.merge_requests(w(5, 1));
        info.merge_requests(w(3, 1));
        info.merge_requests(w(4, 9));
        assert_eq!(info.requests, Some(w(3, 1)));
        info.merge_requests(w(3, 2));
        assert_eq!(info.requests, Some(w(3, 2)));
        assert_eq!(info.tokens, None);
    }
}
