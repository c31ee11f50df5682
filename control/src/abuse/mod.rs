//! Abuse detection: a periodic pass over each key's, org's and client IP's hourly volume
//! (requests, and input + output tokens), raising a flag for an hour that is unusual against the
//! subject's own trailing week ([`stats::judge`]) or crosses an operator's threshold. A flag
//! is only a proposal: nothing is suspended until an operator reviews it.

pub mod stats;

use crate::clock::Clock;
use crate::db::flags::{HourVolume, Raised};
use crate::db::{DbError, Store};
use crate::time::{hour_start, HOUR_MS};
use sluice_wire::{FlagKind, FlagMetric};
use stats::BaselineRule;
use std::collections::{BTreeMap, HashMap};

/// Gauge of open flags, by `kind`.
pub const FLAGS_OPEN: &str = "sluice_control_abuse_flags_open";

/// The trailing window a subject's baseline is read from.
pub const BASELINE_HOURS: u64 = 7 * 24;

/// An explicit bar: more than `per_hour` of `metric` in one hour by one subject of `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threshold {
    pub kind: FlagKind,
    pub metric: FlagMetric,
    pub per_hour: u64,
}

impl std::str::FromStr for Threshold {
    type Err = String;

    /// `ip:requests=1000`, `key:tokens=5000000`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let shape = || format!("threshold {s:?} must read KIND:METRIC=N, e.g. ip:requests=1000");
        let (subject, n) = s.split_once('=').ok_or_else(shape)?;
        let (kind, metric) = subject.split_once(':').ok_or_else(shape)?;
        Ok(Self {
            kind: kind.trim().parse()?,
            metric: metric.trim().parse()?,
            per_hour: n.trim().parse().map_err(|_| shape())?,
        })
    }
}

/// What the pass judges by.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    pub thresholds: Vec<Threshold>,
}

impl Rules {
    fn threshold(&self, kind: FlagKind, metric: FlagMetric) -> Option<u64> {
        self.thresholds
            .iter()
            .filter(|t| t.kind == kind && t.metric == metric)
            .map(|t| t.per_hour)
            .min()
    }

    /// The baseline floors: requests and tokens differ by orders of magnitude.
    fn baseline(metric: FlagMetric) -> BaselineRule {
        match metric {
            FlagMetric::Requests => BaselineRule::default(),
            FlagMetric::Tokens => BaselineRule {
                min_value: 100_000,
                ..BaselineRule::default()
            },
        }
    }
}

/// Judges the current hour (so far) and the one before it, for every subject, and raises what
/// is unusual; returns the flags raised or refreshed.
pub async fn pass(store: &Store, clock: &dyn Clock, rules: &Rules) -> Result<Vec<Raised>, DbError> {
    let now = clock.now_ms();
    let current = hour_start(now);
    let judged = [current, current.saturating_sub(HOUR_MS)];
    let from = current.saturating_sub(BASELINE_HOURS * HOUR_MS);
    let mut raised = Vec::new();
    for kind in FlagKind::ALL {
        let volumes = store.hourly_volumes(kind, from).await?;
        for flag in judge_all(kind, &volumes, &judged, rules) {
            store.raise(&flag, now).await?;
            raised.push(flag);
        }
    }
    publish_open(store).await?;
    Ok(raised)
}

/// The flags among `volumes` (one kind's subjects) for the `judged` hours.
fn judge_all(kind: FlagKind, volumes: &[HourVolume], judged: &[u64], rules: &Rules) -> Vec<Raised> {
    let mut by_subject: HashMap<&str, BTreeMap<u64, &HourVolume>> = HashMap::new();
    for v in volumes {
        by_subject
            .entry(&v.subject)
            .or_default()
            .insert(v.hour_ms, v);
    }
    let mut out = Vec::new();
    for (subject, hours) in by_subject {
        for &hour in judged {
            let Some(this) = hours.get(&hour) else {
                continue;
            };
            for metric in FlagMetric::ALL {
                let pick = |v: &HourVolume| match metric {
                    FlagMetric::Requests => v.requests,
                    FlagMetric::Tokens => v.tokens,
                };
                // The baseline: every other hour of the window but the ones being judged.
                let history: Vec<u64> = hours
                    .iter()
                    .filter(|(h, _)| !judged.contains(h))
                    .map(|(_, v)| pick(v))
                    .collect();
                let threshold = rules.threshold(kind, metric);
                if let Some(e) =
                    stats::judge(pick(this), &history, Rules::baseline(metric), threshold)
                {
                    out.push(Raised {
                        kind,
                        subject: subject.to_string(),
                        hour_ms: hour,
                        metric,
                        value: e.value,
                        median: e.median,
                        mad: e.mad,
                        bar: e.bar,
                        by_threshold: e.by_threshold,
                    });
                }
            }
        }
    }
    out.sort_by(|a, b| {
        (a.kind, &a.subject, a.hour_ms, a.metric).cmp(&(b.kind, &b.subject, b.hour_ms, b.metric))
    });
    out
}

/// Sets the open-flags gauge from the store.
pub async fn publish_open(store: &Store) -> Result<(), DbError> {
    let open = store.open_flags().await?;
    for kind in FlagKind::ALL {
        let n = open.iter().find(|(k, _)| *k == kind).map_or(0, |(_, n)| *n);
        metrics::gauge!(FLAGS_OPEN, "kind" => kind.as_str()).set(n as f64);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(subject: &str, hour: u64, requests: u64) -> HourVolume {
        HourVolume {
            subject: subject.into(),
            hour_ms: hour * HOUR_MS,
            requests,
            tokens: requests * 10,
        }
    }

    #[test]
    fn thresholds_parse_and_refuse_what_is_not_one() {
        let t: Threshold = "ip:requests=1000".parse().unwrap();
        assert_eq!(
            (t.kind, t.metric, t.per_hour),
            (FlagKind::Ip, FlagMetric::Requests, 1000)
        );
        for bad in [
            "ip:requests",
            "ip=5",
            "team:requests=1",
            "ip:bytes=1",
            "ip:requests=x",
        ] {
            assert!(bad.parse::<Threshold>().is_err(), "{bad}");
        }
    }

    #[test]
    fn only_the_judged_hours_of_the_unusual_subject_are_flagged() {
        // Two IPs with a steady week of ~200 requests an hour; one bursts in the current hour.
        let mut v = Vec::new();
        for h in 0..48 {
            v.push(volume("198.51.100.1", h, 200 + h % 5));
            v.push(volume("198.51.100.2", h, 200 + h % 7));
        }
        v.push(volume("198.51.100.1", 48, 5000));
        v.push(volume("198.51.100.2", 48, 210));
        let flags = judge_all(
            FlagKind::Ip,
            &v,
            &[48 * HOUR_MS, 47 * HOUR_MS],
            &Rules::default(),
        );
        let seen: Vec<_> = flags
            .iter()
            .map(|f| (f.subject.as_str(), f.hour_ms / HOUR_MS, f.metric))
            .collect();
        // Requests by baseline; its tokens (50,000) stay under the token floor.
        assert_eq!(seen, [("198.51.100.1", 48, FlagMetric::Requests)]);
        assert!(!flags[0].by_threshold && flags[0].value == 5000 && flags[0].median > 199.0);
    }

    #[test]
    fn a_threshold_flags_a_subject_with_no_history() {
        let v = [volume("key_new", 10, 40)];
        let rules = Rules {
            thresholds: vec![
                "key:requests=30".parse().unwrap(),
                "key:requests=35".parse().unwrap(),
            ],
        };
        let flags = judge_all(FlagKind::Key, &v, &[10 * HOUR_MS], &rules);
        assert_eq!(flags.len(), 1);
        assert!(
            flags[0].by_threshold && flags[0].bar == 30.0,
            "the tightest threshold"
        );
        assert!(
            judge_all(FlagKind::Org, &v, &[10 * HOUR_MS], &rules).is_empty(),
            "key thresholds only"
        );
    }
}
