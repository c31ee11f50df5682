//! Property tests of the token buckets against a plain model of levels.
//!
//! The quotas are chosen so one token is a whole number of nanoseconds of refill; the model then
//! holds each scope's level in those units (`token_ns` per token, one unit per nanosecond).

use std::time::Duration;

use proptest::prelude::*;

use super::tests::{limits, org, setup, token_level};
use super::*;

/// (quota, nanoseconds of refill per token).
const QUOTAS: [(&str, i128); 3] = [
    ("1000/s", 1_000_000),
    ("600/min", 100_000_000),
    ("500/10s", 20_000_000),
];

#[derive(Clone, Debug)]
enum Op {
    /// Admit over the scopes whose bit is set, reserving `n` tokens.
    Admit { mask: u8, n: u64 },
    /// Settle the live reservation at `idx % len` to `total`.
    Settle { idx: usize, total: u64 },
    /// Drop the live reservation at `idx % len` (its charge stays).
    Drop { idx: usize },
    /// Advance the clock.
    Advance { ns: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..8, 0u64..1200).prop_map(|(mask, n)| Op::Admit { mask, n }),
        3 => (any::<usize>(), 0u64..1500).prop_map(|(idx, total)| Op::Settle { idx, total }),
        1 => any::<usize>().prop_map(|idx| Op::Drop { idx }),
        1 => prop_oneof![0u64..50_000_000, 0u64..20_000_000_000].prop_map(|ns| Op::Advance { ns }),
    ]
}

struct Model {
    /// Level per scope in refill nanoseconds (token_ns per token).
    level: [i128; 3],
    capacity: [i128; 3],
    token_ns: [i128; 3],
}

impl Model {
    fn tokens(&self, i: usize) -> i128 {
        self.level[i].div_euclid(self.token_ns[i])
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn token_levels_follow_the_model(ops in proptest::collection::vec(op(), 1..120)) {
        let (clock, limiter) = setup();
        let ls: Vec<Limits> = QUOTAS.iter().map(|(q, _)| limits(None, Some(q), None)).collect();
        let scopes: Vec<Scope> = (0..3).map(|i| org(&format!("s{i}"))).collect();
        let mut model = Model {
            level: [0; 3],
            capacity: [0; 3],
            token_ns: [0; 3],
        };
        for (i, (q, token_ns)) in QUOTAS.iter().enumerate() {
            let amount = i128::from(Quota::parse(q).unwrap().amount);
            model.capacity[i] = amount * token_ns;
            model.level[i] = model.capacity[i];
            model.token_ns[i] = *token_ns;
        }
        // Live reservations: (mask, reservation).
        let mut live: Vec<(u8, Reservation)> = Vec::new();
        // Σ charges per scope while the clock has not moved yet.
        let mut frozen_charges: Option<[i128; 3]> = Some([0; 3]);

        for op in ops {
            match op {
                Op::Admit { mask, n } => {
                    let chosen: Vec<usize> = (0..3).filter(|i| mask & (1 << i) != 0).collect();
                    let request: Vec<(Scope, &Limits)> =
                        chosen.iter().map(|&i| (scopes[i].clone(), &ls[i])).collect();
                    let n = i128::from(n);
                    let short = chosen.iter().copied().find(|&i| {
                        let amount = model.capacity[i] / model.token_ns[i];
                        model.level[i] < n.min(amount) * model.token_ns[i]
                    });
                    match (limiter.admit(&request, n as u64), short) {
                        (Ok(admitted), None) => {
                            for &i in &chosen {
                                model.level[i] -= n * model.token_ns[i];
                                if let Some(c) = frozen_charges.as_mut() { c[i] += n; }
                            }
                            live.push((mask, admitted.reservation));
                        }
                        (Err(refusal), Some(i)) => {
                            prop_assert_eq!(refusal.kind, LimitKind::Tokens);
                            prop_assert_eq!(&refusal.scope, &scopes[i]);
                            let amount = model.capacity[i] / model.token_ns[i];
                            let missing = n.min(amount) * model.token_ns[i] - model.level[i];
                            prop_assert_eq!(refusal.retry_after, Duration::from_nanos(missing as u64));
                        }
                        (got, want) => prop_assert!(false, "admit {:?}, model short at {:?}", got.map(|_| ()), want),
                    }
                }
                Op::Settle { idx, total } if !live.is_empty() => {
                    let idx = idx % live.len();
                    let (mask, reservation) = &mut live[idx];
                    let delta = i128::from(total) - i128::from(reservation.charged());
                    reservation.settle(total);
                    reservation.settle(total);
                    prop_assert_eq!(reservation.charged(), total);
                    for i in (0..3).filter(|i| *mask & (1 << i) != 0) {
                        let units = delta * model.token_ns[i];
                        model.level[i] = if delta >= 0 {
                            model.level[i] - units
                        } else {
                            (model.level[i] - units).min(model.capacity[i])
                        };
                        if let Some(c) = frozen_charges.as_mut() { c[i] += delta; }
                    }
                }
                Op::Drop { idx } if !live.is_empty() => {
                    let idx = idx % live.len();
                    drop(live.swap_remove(idx));
                }
                Op::Advance { ns } => {
                    clock.advance(Duration::from_nanos(ns));
                    for i in 0..3 {
                        model.level[i] = (model.level[i] + i128::from(ns)).min(model.capacity[i]);
                    }
                    if ns > 0 { frozen_charges = None; }
                }
                _ => {}
            }
            for i in 0..3 {
                if limiter.entries.get(&scopes[i]).is_none() {
                    prop_assert_eq!(model.level[i], model.capacity[i]);
                    continue;
                }
                let level = token_level(&limiter, &scopes[i]);
                prop_assert_eq!(level, model.tokens(i), "scope {}", i);
                prop_assert!(level <= model.capacity[i] / model.token_ns[i]);
                if let Some(c) = frozen_charges {
                    prop_assert_eq!(level, model.capacity[i] / model.token_ns[i] - c[i]);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any quota, including ones whose tokens are not a whole number of nanoseconds: takes are
    /// exact, refill matches `dt × amount / period` within the rounding of the two readings
    /// (±1 token), and the level never exceeds the capacity.
    #[test]
    fn any_quota_refills_at_its_rate_and_never_beyond_capacity(
        amount in 1u64..5000,
        period_s in 1u64..100,
        steps in proptest::collection::vec((0u64..6000, 0u64..3_000_000_000), 1..60),
    ) {
        let (clock, limiter) = setup();
        let quota = Quota { amount, period: Duration::from_secs(period_s) };
        let l = Limits { tokens: Some(quota), ..Limits::default() };
        let s = [(org("q"), &l)];
        let cap = i128::from(amount);
        limiter.admit(&s, 0).unwrap();
        for (n, dt) in steps {
            let before = token_level(&limiter, &org("q"));
            let need = i128::from(n.min(amount));
            match limiter.admit(&s, n) {
                Ok(_) => {
                    prop_assert!(before >= need);
                    prop_assert_eq!(token_level(&limiter, &org("q")), before - i128::from(n));
                }
                Err(refusal) => {
                    prop_assert!(before < need);
                    prop_assert!(refusal.retry_after > Duration::ZERO);
                }
            }
            let taken = token_level(&limiter, &org("q"));
            clock.advance(Duration::from_nanos(dt));
            let after = token_level(&limiter, &org("q"));
            prop_assert!(after <= cap);
            let refill = i128::from(dt) * cap;
            let period_ns = i128::from(period_s) * 1_000_000_000;
            let (low, high) = (refill / period_ns - 1, (refill + period_ns - 1) / period_ns + 1);
            if after < cap {
                prop_assert!(after - taken >= low && after - taken <= high,
                    "refilled {} for {} ns, expected {}..={}", after - taken, dt, low, high);
            } else {
                prop_assert!(taken + high >= cap);
            }
        }
    }
}
