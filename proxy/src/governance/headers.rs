//! Rate-limit answer headers in the formats OpenAI and Anthropic use, so SDKs and dashboards
//! built for those providers read sluice's limits unchanged.
//!
//! - OpenAI: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`; the reset is a Go-style
//!   duration (`1s`, `6m0s`, `20ms`) until the bucket is full again.
//! - Anthropic: `anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`; the reset is the
//!   RFC 3339 time at which the bucket is full again.
//! - Refusals add `retry-after` (whole seconds, rounded up, as RFC 9110 wants) and
//!   `retry-after-ms` (which the official SDKs prefer when present).

use crate::api::Family;
use crate::governance::limits::{LimitKind, Window};
use crate::text::go_duration;
use std::time::{Duration, SystemTime};

/// Writes the headers for the tightest request and token limits through `put` (name, value).
pub fn rate_limit_headers(
    family: Family,
    requests: Option<Window>,
    tokens: Option<Window>,
    now: SystemTime,
    mut put: impl FnMut(&'static str, String),
) {
    for (kind, shown) in [(LimitKind::Requests, requests), (LimitKind::Tokens, tokens)] {
        let Some(s) = shown else { continue };
        let names = names(family, kind);
        put(names[0], s.limit.to_string());
        put(names[1], s.remaining.to_string());
        put(
            names[2],
            match family {
                Family::OpenAi => go_duration(s.reset),
                Family::Anthropic => {
                    humantime::format_rfc3339_seconds(now + round_up_to_second(s.reset)).to_string()
                }
            },
        );
    }
}

/// `retry-after` and `retry-after-ms` for a refusal.
pub fn retry_after_headers(wait: Duration, mut put: impl FnMut(&'static str, String)) {
    put(
        "retry-after",
        round_up_to_second(wait).as_secs().to_string(),
    );
    put("retry-after-ms", wait.as_millis().max(1).to_string());
}

/// The three header names of a limit kind; concurrency has none of its own (a refusal says
/// `retry-after`), so only requests and tokens are asked for.
fn names(family: Family, kind: LimitKind) -> [&'static str; 3] {
    match (family, kind) {
        (Family::OpenAi, LimitKind::Requests) => [
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
        ],
        (Family::OpenAi, LimitKind::Tokens | LimitKind::Concurrency) => [
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens",
        ],
        (Family::Anthropic, LimitKind::Requests) => [
            "anthropic-ratelimit-requests-limit",
            "anthropic-ratelimit-requests-remaining",
            "anthropic-ratelimit-requests-reset",
        ],
        (Family::Anthropic, LimitKind::Tokens | LimitKind::Concurrency) => [
            "anthropic-ratelimit-tokens-limit",
            "anthropic-ratelimit-tokens-remaining",
            "anthropic-ratelimit-tokens-reset",
        ],
    }
}

fn round_up_to_second(d: Duration) -> Duration {
    let whole = Duration::from_secs(d.as_secs());
    if whole == d {
        d
    } else {
        whole + Duration::from_secs(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(
        family: Family,
        requests: Option<Window>,
        tokens: Option<Window>,
    ) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let now = humantime::parse_rfc3339("2026-11-23T12:00:00Z").unwrap();
        rate_limit_headers(family, requests, tokens, now, |n, v| out.push((n, v)));
        out
    }

    #[test]
    fn openai_and_anthropic_formats() {
        let req = Window {
            limit: 60,
            remaining: 59,
            reset: Duration::from_millis(1_000),
        };
        let tok = Window {
            limit: 150_000,
            remaining: 149_000,
            reset: Duration::from_millis(400),
        };
        assert_eq!(
            collect(Family::OpenAi, Some(req), Some(tok)),
            vec![
                ("x-ratelimit-limit-requests", "60".to_string()),
                ("x-ratelimit-remaining-requests", "59".to_string()),
                ("x-ratelimit-reset-requests", "1s".to_string()),
                ("x-ratelimit-limit-tokens", "150000".to_string()),
                ("x-ratelimit-remaining-tokens", "149000".to_string()),
                ("x-ratelimit-reset-tokens", "400ms".to_string()),
            ]
        );
        assert_eq!(
            collect(Family::Anthropic, None, Some(tok)),
            vec![
                ("anthropic-ratelimit-tokens-limit", "150000".to_string()),
                ("anthropic-ratelimit-tokens-remaining", "149000".to_string()),
                (
                    "anthropic-ratelimit-tokens-reset",
                    "2026-11-23T12:00:01Z".to_string()
                ),
            ]
        );
        assert!(collect(Family::OpenAi, None, None).is_empty());
    }

    #[test]
    fn retry_after_rounds_seconds_up_and_keeps_milliseconds() {
        let mut out = Vec::new();
        retry_after_headers(Duration::from_millis(1_200), |n, v| out.push((n, v)));
        assert_eq!(
            out,
            vec![
                ("retry-after", "2".to_string()),
                ("retry-after-ms", "1200".to_string())
            ]
        );
        out.clear();
        retry_after_headers(Duration::from_secs(3), |n, v| out.push((n, v)));
        assert_eq!(out[0].1, "3");
    }
}
