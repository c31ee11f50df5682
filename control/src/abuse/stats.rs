//! The abuse statistic: is one hour's volume unusual for its subject? Against the subject's own
//! trailing baseline (median and median absolute deviation of its active hours: robust, one
//! earlier burst does not raise the bar the way a mean and a standard deviation would) and
//! against an explicit threshold from config. Pure functions, tested on their own.

/// How a baseline judgement is made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BaselineRule {
    /// Robust z-score above which an hour is unusual: (value − median) / (1.4826 × MAD).
    pub z: f64,
    /// Active hours (volume above zero) the trailing window must hold before its baseline is
    /// trusted; a newer subject is judged by thresholds only.
    pub min_active_hours: usize,
    /// Volumes below this are never unusual by baseline (a key going from 2 to 20 requests an
    /// hour is no abuse); thresholds still apply.
    pub min_value: u64,
}

impl Default for BaselineRule {
    fn default() -> Self {
        Self {
            z: 6.0,
            min_active_hours: 6,
            min_value: 100,
        }
    }
}

/// Why an hour was flagged, with the numbers a reviewer needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    pub value: u64,
    pub median: f64,
    pub mad: f64,
    /// The bar the value crossed: `median + z × 1.4826 × MAD` (with its floor), or the
    /// threshold.
    pub bar: f64,
    pub by_threshold: bool,
}

/// The median of `values` (sorted in place); 0 for none.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// Judges `value` against the subject's `history` (its volume in each active hour of the
/// trailing window, the judged hour excluded) and an optional explicit `threshold`. A threshold
/// that is crossed wins (its evidence is the simplest to read); otherwise the baseline.
pub fn judge(
    value: u64,
    history: &[u64],
    rule: BaselineRule,
    threshold: Option<u64>,
) -> Option<Evidence> {
    let mut active: Vec<f64> = history
        .iter()
        .filter(|&&v| v > 0)
        .map(|&v| v as f64)
        .collect();
    let med = median(&mut active);
    let mut deviations: Vec<f64> = active.iter().map(|v| (v - med).abs()).collect();
    let mad = median(&mut deviations);
    if let Some(t) = threshold.filter(|&t| value > t) {
        return Some(Evidence {
            value,
            median: med,
            mad,
            bar: t as f64,
            by_threshold: true,
        });
    }
    if active.len() < rule.min_active_hours || value < rule.min_value {
        return None;
    }
    // A perfectly steady subject has a MAD of 0; a tenth of its median (at least 1) stands in,
    // so a steady 1,000 an hour is flagged at 1,600, not at 1,001.
    let spread = (1.4826 * mad).max(med / 10.0).max(1.0);
    let bar = med + rule.z * spread;
    (value as f64 > bar).then_some(Evidence {
        value,
        median: med,
        mad,
        bar,
        by_threshold: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: BaselineRule = BaselineRule {
        z: 6.0,
        min_active_hours: 6,
        min_value: 100,
    };

    #[test]
    fn medians_of_odd_even_and_no_values() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
    }

    #[test]
    fn a_burst_far_above_the_subjects_own_hours_is_flagged_with_its_numbers() {
        // A key that makes 180 to 220 requests an hour.
        let history = [200, 190, 210, 180, 220, 200, 205, 195];
        assert_eq!(judge(260, &history, RULE, None), None, "within its spread");
        let e = judge(3000, &history, RULE, None).expect("flagged");
        assert_eq!(
            (e.value, e.median, e.mad, e.by_threshold),
            (3000, 200.0, 7.5, false)
        );
        // The bar: 200 + 6 × max(1.4826 × 7.5, 20) = 200 + 6 × 20 = 320.
        assert_eq!(e.bar, 320.0);
        assert!(judge(321, &history, RULE, None).is_some());
        assert!(judge(320, &history, RULE, None).is_none());
    }

    #[test]
    fn one_earlier_burst_does_not_raise_the_bar() {
        let calm = [100, 110, 90, 105, 95, 100, 100];
        let mut with_burst = calm.to_vec();
        with_burst.push(50_000);
        let a = judge(1000, &calm, RULE, None).unwrap();
        let b = judge(1000, &with_burst, RULE, None).unwrap();
        assert!((a.bar - b.bar).abs() < 15.0, "{} vs {}", a.bar, b.bar);
    }

    #[test]
    fn idle_hours_do_not_count_and_a_short_history_is_not_judged_by_baseline() {
        // Active only 3 hours of the window: no baseline yet.
        let history = [0, 0, 150, 0, 120, 0, 130, 0];
        assert_eq!(judge(10_000, &history, RULE, None), None);
        // Thresholds still apply to it, and to any volume below the baseline floor.
        let e = judge(10_000, &history, RULE, Some(5_000)).unwrap();
        assert!(e.by_threshold && e.bar == 5_000.0);
        let quiet = [1, 2, 1, 2, 1, 2, 1];
        assert_eq!(judge(90, &quiet, RULE, None), None, "below min_value");
        assert!(judge(90, &quiet, RULE, Some(50)).is_some());
        assert_eq!(
            judge(50, &quiet, RULE, Some(50)),
            None,
            "at the threshold is allowed"
        );
    }
}
