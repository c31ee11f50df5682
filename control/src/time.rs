//! UTC calendar arithmetic on epoch milliseconds: hour, day and month starts, their display, and
//! the `from`/`to` query parameters.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};

pub const HOUR_MS: u64 = 3_600_000;
pub const DAY_MS: u64 = 86_400_000;

pub fn hour_start(ms: u64) -> u64 {
    ms - ms % HOUR_MS
}

pub fn day_start(ms: u64) -> u64 {
    ms - ms % DAY_MS
}

fn datetime(ms: u64) -> DateTime<Utc> {
    // Times beyond chrono's range (year 262143) cannot come from a real clock; the epoch is a
    // harmless stand-in for display.
    i64::try_from(ms)
        .ok()
        .and_then(DateTime::from_timestamp_millis)
        .unwrap_or_default()
}

/// Start of the UTC calendar month containing `ms`.
pub fn month_start(ms: u64) -> u64 {
    let d = datetime(ms);
    NaiveDate::from_ymd_opt(d.year(), d.month(), 1)
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|naive| Utc.from_utc_datetime(&naive).timestamp_millis())
        .and_then(|ms| u64::try_from(ms).ok())
        .unwrap_or(0)
}

/// `YYYY-MM-DD`.
pub fn day_label(ms: u64) -> String {
    datetime(ms).format("%Y-%m-%d").to_string()
}

/// `YYYY-MM-DDTHH:00:00Z`.
pub fn hour_label(ms: u64) -> String {
    datetime(ms).format("%Y-%m-%dT%H:00:00Z").to_string()
}

/// Reads a time parameter: epoch milliseconds, an RFC 3339 timestamp, or a `YYYY-MM-DD` date
/// (its UTC midnight).
pub fn parse_time(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a time (epoch milliseconds, RFC 3339 or YYYY-MM-DD)");
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(ms);
    }
    let ms = if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        t.timestamp_millis()
    } else if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let midnight = d.and_hms_opt(0, 0, 0).ok_or_else(bad)?;
        Utc.from_utc_datetime(&midnight).timestamp_millis()
    } else {
        return Err(bad());
    };
    u64::try_from(ms).map_err(|_| format!("{s:?} is before 1970"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_and_labels() {
        // 2026-11-23T14:35:10.123Z
        let t = 1_795_444_510_123;
        assert_eq!(hour_label(t), "2026-11-23T14:00:00Z");
        assert_eq!(day_label(t), "2026-11-23");
        assert_eq!(hour_start(t) % HOUR_MS, 0);
        assert_eq!(day_label(day_start(t)), "2026-11-23");
        assert_eq!(month_start(t), parse_time("2026-11-01").expect("date"));
        assert_eq!(
            month_start(parse_time("2026-01-01").expect("d")),
            parse_time("2026-01-01").expect("d")
        );
    }

    #[test]
    fn time_parameters() {
        assert_eq!(parse_time("1000"), Ok(1000));
        assert_eq!(parse_time("1970-01-02"), Ok(DAY_MS));
        assert_eq!(parse_time("1970-01-01T01:00:00Z"), Ok(HOUR_MS));
        assert_eq!(parse_time("1970-01-01T02:00:00+01:00"), Ok(HOUR_MS));
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("1969-12-31").is_err());
    }
}
