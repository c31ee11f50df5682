//! Text helpers for what sluice writes about user-controlled input and for people: bounded copies
//! of names and paths, and durations as Go prints them (OpenAI's reset headers, error messages).

use std::fmt::Write;
use std::time::Duration;

/// Cuts `s` to at most `max` bytes at a char boundary: the bound for user-controlled text kept in
/// records and messages.
pub fn bounded(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// [`bounded`], with `…` marking a cut: for text echoed in error messages.
pub fn truncate(s: &str, max: usize) -> String {
    let kept = bounded(s, max);
    if kept.len() == s.len() {
        s.to_string()
    } else {
        format!("{kept}…")
    }
}

/// Go's `time.Duration` text, which OpenAI's reset headers use, at millisecond precision:
/// `0s`, `20ms`, `1s`, `8.64s`, `6m0s`, `1h2m3.5s`.
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    let mut out = String::new();
    if ms == 0 {
        return "0s".to_string();
    }
    if ms < 1_000 {
        let _ = write!(out, "{ms}ms");
        return out;
    }
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, frac) = (rest / 1_000, rest % 1_000);
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if h > 0 || m > 0 {
        let _ = write!(out, "{m}m");
    }
    let _ = write!(out, "{s}");
    if frac > 0 {
        let digits = format!("{frac:03}");
        let _ = write!(out, ".{}", digits.trim_end_matches('0'));
    }
    out.push('s');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_match_openai_examples() {
        let ms = Duration::from_millis;
        assert_eq!(go_duration(ms(0)), "0s");
        assert_eq!(go_duration(ms(20)), "20ms");
        assert_eq!(go_duration(ms(1_000)), "1s");
        assert_eq!(go_duration(ms(8_640)), "8.64s");
        assert_eq!(go_duration(ms(360_000)), "6m0s");
        assert_eq!(go_duration(ms(3_723_500)), "1h2m3.5s");
        assert_eq!(go_duration(ms(7_200_000)), "2h0m0s");
        assert_eq!(go_duration(Duration::from_micros(1_500)), "1ms");
    }
}
