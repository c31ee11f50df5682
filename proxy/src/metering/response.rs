//! What sluice learns from a response while it streams: its usage (through the observer), when
//! its first byte came, how many bytes went to the client, and whether it has run past the
//! provider's `total` timeout. One call per body chunk, from `response_body_filter`.
//!
//! Times are monotonic readings of the gateway's [`Clock`](crate::clock::Clock), taken by the
//! caller, so a fake clock drives the timeout and the time to first token in tests.

use crate::governance::{Governance, Held};
use crate::usage::UsageObserver;
use bytes::Bytes;
use std::time::Duration;

/// The per-response part of the request's `Ctx`.
#[derive(Debug, Default)]
pub struct ResponseMeter {
    /// Set for a success from a surface that reports usage.
    pub observer: Option<UsageObserver>,
    /// When the request went upstream.
    pub upstream_started: Option<Duration>,
    /// When the first non-empty body chunk arrived.
    pub first_chunk_at: Option<Duration>,
    /// Body bytes forwarded to the client.
    pub bytes_out: u64,
}

/// The response took longer than the provider's `total` timeout allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("total upstream time exceeded")]
pub struct TotalTimeExceeded;

impl ResponseMeter {
    /// Observes one chunk as Pingora hands it over (zero copy outside strip mode), re-settles the
    /// token reservation once the provider has reported the input, and checks the `total`
    /// deadline (`now` is a monotonic reading; the last chunk is never refused).
    pub fn on_chunk(
        &mut self,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        now: Duration,
        total: Option<Duration>,
        held: Option<&mut Held>,
    ) -> Result<(), TotalTimeExceeded> {
        if self.first_chunk_at.is_none() && body.as_ref().is_some_and(|b| !b.is_empty()) {
            self.first_chunk_at = Some(now);
        }
        if let Some(observer) = self.observer.as_mut() {
            observer.filter(body, end_of_stream);
            if let Some(held) = held.filter(|h| h.wants_input()) {
                let seen = observer.report();
                if seen.input_known {
                    Governance::input_known(held, seen.usage.input_tokens, now);
                }
            }
        }
        self.bytes_out += body.as_ref().map_or(0, |b| b.len() as u64);
        if let (Some(total), Some(started)) = (total, self.upstream_started) {
            if !end_of_stream && now.saturating_sub(started) > total {
                return Err(TotalTimeExceeded);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Api;

    fn chunk(text: &'static str) -> Option<Bytes> {
        Some(Bytes::from_static(text.as_bytes()))
    }

    #[test]
    fn first_byte_time_and_the_total_deadline_follow_the_clock() {
        let s = Duration::from_secs;
        let mut meter = ResponseMeter {
            observer: Some(UsageObserver::new(Api::ChatCompletions, false, false)),
            upstream_started: Some(s(10)),
            ..ResponseMeter::default()
        };
        let total = Some(s(5));
        // An empty chunk is no first byte.
        let mut empty = Some(Bytes::new());
        assert_eq!(
            meter.on_chunk(&mut empty, false, s(11), total, None),
            Ok(())
        );
        assert_eq!(meter.first_chunk_at, None);
        let mut body = chunk("{\"usage\":");
        assert_eq!(meter.on_chunk(&mut body, false, s(12), total, None), Ok(()));
        assert_eq!(meter.first_chunk_at, Some(s(12)));
        // Exactly at the deadline is still in time; past it is not, except for the last chunk.
        let mut body = chunk("{\"prompt_tokens\":3,");
        assert_eq!(meter.on_chunk(&mut body, false, s(15), total, None), Ok(()));
        let mut body = chunk("\"completion_tokens\":4}}");
        assert_eq!(meter.on_chunk(&mut body, false, s(15), total, None), Ok(()));
        let mut late = chunk("\n");
        let refused = meter.on_chunk(&mut late, false, s(16), total, None);
        assert_eq!(refused, Err(TotalTimeExceeded));
        assert_eq!(meter.on_chunk(&mut None, true, s(16), total, None), Ok(()));
        assert_eq!(meter.first_chunk_at, Some(s(12)));
        assert_eq!(meter.bytes_out, 9 + 19 + 23 + 1);
        let seen = meter.observer.as_ref().map(UsageObserver::report);
        assert_eq!(seen.map(|o| o.usage.output_tokens), Some(4));
    }
}
