//! Runs one scenario end to end: the fleet, the load parts and the fault timeline at once, then
//! the invariants (errors by kind, one record per request, the ledger against the mock, nothing
//! left in flight, RSS bounded), and a report of what was measured (never asserted on).

use super::fleet::Fleet;
use super::spec::{Part, Scenario, Size};
use sluice_bench::load::{self, Api, Auth, AuthScheme, Mode, Plan, Report, Secret, Target};
use sluice_bench::mock::Outcome;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Which size the suite runs at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// `./test.sh`: the CI size.
    Ci,
    /// `load-tests/run.sh --full`: each part's `full` size.
    Full,
}

impl Scale {
    /// `SLUICE_LOAD_SCALE=full` selects the full size.
    pub fn from_env() -> Self {
        match std::env::var("SLUICE_LOAD_SCALE").as_deref() {
            Ok("full") => Scale::Full,
            _ => Scale::Ci,
        }
    }
}

/// One replica's process figures.
#[derive(Debug, Default, Clone, Copy)]
struct ProcFigures {
    rss_kib: u64,
    peak_kib: u64,
    fds: u64,
}

fn figures(pid: u32) -> ProcFigures {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64);
    ProcFigures {
        rss_kib: field("VmRSS:"),
        peak_kib: field("VmHWM:"),
        fds,
    }
}

fn plan(s: &Scenario, part: &Part, base: &str, key: &str, scale: Scale) -> Plan {
    let size = match (scale, &part.full) {
        (Scale::Full, Some(full)) => part.size.overlay(full),
        _ => part.size.clone(),
    };
    let Size {
        mut clients,
        rate,
        mut requests,
        duration,
        fit_fd_limit,
    } = size;
    if fit_fd_limit == Some(true) {
        let n = fd_limited_clients();
        clients = Some(n);
        requests = Some(n as u64);
    }
    let mode = match (clients, rate) {
        (Some(c), None) => Mode::Closed { clients: c },
        (None, Some(r)) => Mode::Open { rate: r },
        _ => panic!("{} / {}: exactly one of clients or rate", s.name, part.name),
    };
    let api = match part.api.as_deref().unwrap_or("openai") {
        "openai" => Api::Openai,
        "anthropic" => Api::Anthropic,
        other => panic!("{} / {}: api {other:?}", s.name, part.name),
    };
    let mut plan = Plan::new(Target::parse(base).expect("loopback target"), api, mode);
    plan.stream = part.stream;
    plan.model = part.model.clone().unwrap_or_else(|| {
        match api {
            Api::Openai => "mock-gpt",
            Api::Anthropic => "mock-claude",
        }
        .to_string()
    });
    plan.max_tokens = Some(64);
    plan.auth = Some(Auth {
        scheme: match api {
            Api::Openai => AuthScheme::Bearer,
            Api::Anthropic => AuthScheme::XApiKey,
        },
        value: Secret::new(key),
    });
    for h in &part.headers {
        plan.header(h).expect("a valid header line");
    }
    plan.requests = requests;
    plan.duration = duration;
    plan.max_outstanding = 10_000;
    plan.timeout = part.timeout.unwrap_or(Duration::from_secs(30));
    plan
}

/// The most streams one replica can hold open here: the hard descriptor limit (sluice raises
/// its soft limit to it, and so does the suite's test for its own process), less a margin for everything else, halved
/// because each stream holds two descriptors on each side (sluice: client and upstream; this
/// process: the client and the mock's end), capped where the loopback's ephemeral ports (about
/// 28,000) would run out first.
pub fn fd_limited_clients() -> usize {
    use nix::sys::resource::{getrlimit, Resource};
    let hard = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(_, hard)| hard);
    let n = hard.saturating_sub(1024) / 2;
    usize::try_from(n).unwrap_or(usize::MAX).clamp(1, 20_000)
}

/// Error counts of a report by the scenario's kind names.
fn kinds(r: &Report) -> Vec<(String, u64)> {
    let e = &r.errors;
    let mut out = vec![
        ("connect".to_string(), e.connect),
        ("timeout".to_string(), e.timeout),
        ("protocol".to_string(), e.protocol),
        ("body".to_string(), e.body),
        ("stream_cut".to_string(), e.stream_cut),
    ];
    for (code, n) in &e.status {
        out.push((format!("status_{code}"), *n));
    }
    out
}

/// Checks a part's errors and successes; returns the failures, in words.
fn judge(part: &Part, r: &Report) -> Vec<String> {
    let mut bad = Vec::new();
    let got = kinds(r);
    for (kind, n) in &got {
        let ok = match part.errors.get(kind) {
            Some(c) => c.holds(*n, r.sent),
            None => Ok(*n == 0),
        };
        match ok {
            Ok(true) => {}
            Ok(false) => bad.push(format!(
                "{}: {n} {kind} errors, expected {}",
                part.name,
                part.errors
                    .get(kind)
                    .map_or("0".to_string(), |c| format!("{c:?}"))
            )),
            Err(e) => bad.push(format!("{}: {e}", part.name)),
        }
    }
    for (kind, c) in &part.errors {
        if !got.iter().any(|(k, _)| k == kind) && !matches!(c.holds(0, r.sent), Ok(true)) {
            bad.push(format!("{}: 0 {kind} errors, expected {c:?}", part.name));
        }
    }
    if r.dropped > 0 {
        bad.push(format!(
            "{}: the generator dropped {} arrivals",
            part.name, r.dropped
        ));
    }
    if let Some(c) = &part.ok {
        if !matches!(c.holds(r.ok, r.sent), Ok(true)) {
            bad.push(format!("{}: {} ok, expected {c:?}", part.name, r.ok));
        }
    }
    bad
}

fn ms(us: u64) -> String {
    format!("{:.1}", us as f64 / 1000.0)
}

/// Runs `s` at `scale`: `None` when skipped, else its report, as `Err` with every broken
/// invariant listed after it when one broke (so that a suite can run on and list them all).
pub async fn run(s: &Scenario, scale: Scale) -> Option<Result<String, String>> {
    let Some(mut fleet) = Fleet::start(s).await else {
        eprintln!(
            "scenario {}: SKIPPED (a server it needs is not installed)",
            s.name
        );
        return None;
    };
    let before: Vec<ProcFigures> = fleet
        .replicas
        .iter()
        .map(|r| figures(r.proc.pid()))
        .collect();
    let plans: Vec<Plan> = s
        .load
        .iter()
        .map(|p| {
            let base = &fleet.replicas[p.replica].base;
            plan(s, p, base, &fleet.key, scale)
        })
        .collect();
    // The provider-side peak counts only this scenario's load.
    let _ = fleet.mock.take_peak_in_progress();
    let started = Instant::now();
    let loads = futures_util::future::join_all(plans.iter().map(load::run));
    let slow_addrs: Vec<String> = s
        .slow
        .iter()
        .map(|w| {
            fleet.replicas[w.replica]
                .base
                .trim_start_matches("http://")
                .to_string()
        })
        .collect();
    let slow = futures_util::future::join_all(s.slow.iter().zip(&slow_addrs).map(|(w, addr)| {
        super::slow::trickle(
            addr,
            w.connections,
            w.byte_every,
            w.bound.unwrap_or(Duration::from_secs(30)),
        )
    }));
    let timeline = async {
        let mut faults = s.fault.clone();
        faults.sort_by_key(|f| f.at);
        for f in faults {
            let due = started + f.at;
            tokio::time::sleep_until(due.into()).await;
            match f.action.as_str() {
                "reload" => fleet.reload(s).await,
                "kill_ledger" => fleet.kill_ledger(),
                "restart_ledger" => fleet.restart_ledger(),
                "stop_redis" => fleet.redis.as_ref().expect("topology.redis").stop(),
                "start_redis" => fleet.redis.as_ref().expect("topology.redis").restart(),
                "upgrade_replica" => {
                    fleet
                        .upgrade_replica(f.replica.expect("upgrade_replica needs replica"))
                        .await;
                }
                "restart_replica" => {
                    fleet
                        .restart_replica(f.replica.expect("restart_replica needs replica"))
                        .await;
                }
                "kill_mock" => fleet.kill_mock(f.mock.expect("kill_mock needs mock")),
                "kill_replica" => {
                    let r = &mut fleet.replicas[f.replica.expect("kill_replica needs replica")];
                    r.proc.kill();
                    r.killed = true;
                }
                other => panic!("{}: unknown fault action {other:?}", s.name),
            }
        }
    };
    let (reports, slow, ()) = tokio::join!(loads, slow, timeline);
    let elapsed = started.elapsed();
    let reports: Vec<Report> = reports
        .into_iter()
        .map(|r| r.expect("the load generator ran"))
        .collect();

    let mut bad: Vec<String> = Vec::new();
    for (part, r) in s.load.iter().zip(&reports) {
        bad.extend(judge(part, r));
    }
    let ok_total: u64 = reports.iter().map(|r| r.ok).sum();
    let sent_total: u64 = reports.iter().map(|r| r.sent).sum();
    if let Some(c) = &s.expect.ok_total {
        if !matches!(c.holds(ok_total, sent_total), Ok(true)) {
            bad.push(format!("{ok_total} ok over every part, expected {c:?}"));
        }
    }
    let upstream_peak = fleet.mock.take_peak_in_progress() as u64;
    if let Some(c) = &s.expect.upstream_peak {
        if !matches!(c.holds(upstream_peak, sent_total), Ok(true)) {
            bad.push(format!(
                "{upstream_peak} requests at once at the provider, expected {c:?}"
            ));
        }
    }
    let tokens = record_tokens(&fleet);
    if let Some(c) = &s.expect.record_tokens {
        if !matches!(c.holds(tokens, u64::MAX), Ok(true)) {
            bad.push(format!(
                "{tokens} tokens in the usage records, expected {c:?}"
            ));
        }
    }
    for (w, out) in s.slow.iter().zip(&slow) {
        if out.opened != w.connections || out.survived > 0 {
            bad.push(format!(
                "slow clients: {} of {} opened, {} still open at the bound",
                out.opened, w.connections, out.survived
            ));
        }
    }
    check_records(s, &fleet, &reports, &mut bad).await;
    check_ledger(&fleet, &mut bad).await;
    let after = check_leaks(s, scale, &fleet, &reports, &before, &mut bad).await;

    let mut text = format!(
        "scenario {} ({elapsed:.1?}): {}\n  at most {upstream_peak} requests at once at the \
         provider; {tokens} tokens recorded\n",
        s.name, s.about
    );
    for (part, r) in s.load.iter().zip(&reports) {
        let l = &r.latency_us;
        let _ = writeln!(
            text,
            "  {:<22} sent {:>6} ok {:>6} err {:>5} {:>8.0} req/s  total p50/p99/p99.9 {}/{}/{} ms  \
             first event p50/p99 {}/{} ms  gap p99 {} ms  errors {:?}",
            part.name,
            r.sent,
            r.ok,
            r.errors.total,
            r.throughput.requests_per_s,
            ms(l.total.p50),
            ms(l.total.p99),
            ms(l.total.p99_9),
            ms(l.first_event.p50),
            ms(l.first_event.p99),
            ms(l.gap.p99),
            kinds(r).into_iter().filter(|(_, n)| *n > 0).collect::<Vec<_>>(),
        );
    }
    for out in &slow {
        let at = |q: f64| {
            let v = &out.cut_after_ms;
            v.get(((v.len() as f64 - 1.0) * q) as usize)
                .copied()
                .unwrap_or(0)
        };
        let _ = writeln!(
            text,
            "  slow clients: {} opened, {} cut by sluice after p50/max {}/{} ms, {} survived",
            out.opened,
            out.cut,
            at(0.5),
            at(1.0),
            out.survived
        );
    }
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        // Closed-loop streaming clients of this replica: its open streams at the peak, for
        // memory per open stream.
        let clients: u64 = plans
            .iter()
            .zip(&s.load)
            .filter(|(_, p)| p.replica == i && p.stream)
            .filter_map(|(pl, _)| match pl.mode {
                Mode::Closed { clients } => Some(clients as u64),
                Mode::Open { .. } => None,
            })
            .sum();
        let per = if clients > 0 && a.peak_kib > b.rss_kib {
            format!(
                ", {} KiB of peak RSS per concurrent client",
                (a.peak_kib - b.rss_kib) / clients
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            text,
            "  replica {i}: RSS {} -> peak {} -> {} MiB, open fds {} -> {}{per}",
            b.rss_kib / 1024,
            a.peak_kib / 1024,
            a.rss_kib / 1024,
            b.fds,
            a.fds
        );
    }
    if bad.is_empty() {
        Some(Ok(text))
    } else {
        Some(Err(format!(
            "{text}scenario {} broke:\n  {}",
            s.name,
            bad.join("\n  ")
        )))
    }
}

/// Input plus output tokens over the usage records of every live replica.
fn record_tokens(fleet: &Fleet) -> u64 {
    let field = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or(0);
    fleet
        .replicas
        .iter()
        .filter(|r| !r.killed)
        .flat_map(|r| {
            std::fs::read_to_string(&r.usage)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .map(|v| field(&v, "input_tokens") + field(&v, "output_tokens"))
                .collect::<Vec<_>>()
        })
        .sum()
}

/// Every request that reached a live replica has exactly one usage record there.
async fn check_records(s: &Scenario, fleet: &Fleet, reports: &[Report], bad: &mut Vec<String>) {
    for (i, r) in fleet.replicas.iter().enumerate() {
        if r.killed {
            continue;
        }
        // A request refused at connect never reached it; every other one did.
        let reached: u64 = s
            .load
            .iter()
            .zip(reports)
            .filter(|(p, _)| p.replica == i)
            .map(|(_, rep)| rep.sent - rep.errors.connect)
            .sum();
        let lines = || {
            std::fs::read_to_string(&r.usage)
                .map(|t| t.lines().filter(|l| !l.trim().is_empty()).count() as u64)
                .unwrap_or(0)
        };
        let deadline = Instant::now() + crate::WAIT;
        while lines() < reached && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let n = lines();
        if n != reached {
            bad.push(format!(
                "replica {i}: {n} usage records for {reached} requests"
            ));
        }
    }
}

/// The ledger stored every record once, and its token totals are the mock's.
async fn check_ledger(fleet: &Fleet, bad: &mut Vec<String>) {
    let Some(ledger) = &fleet.ledger else { return };
    let records: u64 = fleet
        .replicas
        .iter()
        .filter(|r| !r.killed)
        .map(|r| {
            std::fs::read_to_string(&r.usage)
                .map(|t| t.lines().filter(|l| !l.trim().is_empty()).count() as u64)
                .unwrap_or(0)
        })
        .sum();
    let deadline = Instant::now() + crate::WAIT;
    let usage = loop {
        let u = ledger.usage(crate::proxy::ORG).await;
        if u.total.requests >= records || Instant::now() > deadline {
            break u;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    if usage.total.requests != records {
        bad.push(format!(
            "the ledger holds {} records, the replicas wrote {records}",
            usage.total.requests
        ));
    }
    let (ids, lines) = ledger.exported_ids(crate::proxy::ORG).await;
    if ids.len() != lines {
        bad.push(format!(
            "{} export lines but {} distinct ids",
            lines,
            ids.len()
        ));
    }
    let spares_alive = fleet.spares.iter().all(Option::is_some);
    let served = match fleet.served() {
        Ok(served) => served,
        Err(e) => return bad.push(e),
    };
    if spares_alive && served.iter().all(|r| r.outcome == Outcome::Completed) {
        let (mut input, mut output) = (0, 0);
        for r in &served {
            if let Some(u) = r.usage {
                input += u.input_tokens;
                output += u.output_tokens;
            }
        }
        if (usage.total.input_tokens, usage.total.output_tokens) != (input, output) {
            bad.push(format!(
                "ledger tokens {}/{} against the mock's {input}/{output}",
                usage.total.input_tokens, usage.total.output_tokens
            ));
        }
    }
}

/// Nothing stays in flight or connected, and memory returns near where it was.
async fn check_leaks(
    s: &Scenario,
    scale: Scale,
    fleet: &Fleet,
    reports: &[Report],
    before: &[ProcFigures],
    bad: &mut Vec<String>,
) -> Vec<ProcFigures> {
    let ci = s.expect.rss_growth_mib.unwrap_or(64);
    let growth = match scale {
        Scale::Ci => ci,
        Scale::Full => s.expect.full_rss_growth_mib.unwrap_or(ci),
    } * 1024;
    let mut after = Vec::new();
    for (i, r) in fleet.replicas.iter().enumerate() {
        if r.killed {
            after.push(ProcFigures::default());
            continue;
        }
        for gauge in [
            "sluice_requests_in_flight",
            "sluice_streams_in_flight",
            "sluice_downstream_connections",
        ] {
            let deadline = Instant::now() + crate::WAIT;
            let mut v = metric(&r.admin, gauge).await;
            while v != 0.0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
                v = metric(&r.admin, gauge).await;
            }
            if v != 0.0 {
                bad.push(format!("replica {i}: {gauge} stays at {v} after the load"));
            }
        }
        if scale == Scale::Full {
            // At full size, memory is judged once the pooled upstream connections (and their
            // buffers) have closed: after their 60 s idle timeout, the descriptors are back to
            // where they started.
            let deadline = Instant::now() + Duration::from_secs(90);
            while figures(r.proc.pid()).fds > before[i].fds + 16 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        let a = figures(r.proc.pid());
        // Idle upstream connections stay pooled for their 60 s idle timeout (measured: all of
        // them close then), so right after the load the descriptors may exceed the start by
        // one per connection the clients opened (no more requests ran upstream at once), plus
        // a few of sluice's own; anything beyond is a leak.
        let opened: u64 = s
            .load
            .iter()
            .zip(reports)
            .filter(|(p, _)| p.replica == i)
            .map(|(_, rep)| rep.connections_opened)
            .sum();
        if a.fds > before[i].fds + opened + 16 {
            bad.push(format!(
                "replica {i}: {} open descriptors after the load, {} before, {opened} client \
                 connections",
                a.fds, before[i].fds
            ));
        }
        if a.rss_kib > before[i].rss_kib + growth {
            bad.push(format!(
                "replica {i}: RSS grew from {} to {} KiB (bound +{growth} KiB)",
                before[i].rss_kib, a.rss_kib
            ));
        }
        after.push(a);
    }
    after
}

async fn metric(admin: &str, sample: &str) -> f64 {
    let Ok(resp) = reqwest::get(format!("{admin}/metrics")).await else {
        return f64::NAN;
    };
    let text = resp.text().await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Parses every `*.toml` under `dir`, in name order.
pub fn load_dir(dir: &std::path::Path) -> Vec<Scenario> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .expect("scenarios dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).expect("read scenario");
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        })
        .collect()
}
