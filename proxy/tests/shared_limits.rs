//! Limits shared by several replicas through a real Redis (`[limits] backend = "redis"`): three
//! real sluice processes, one real `redis-server`, the mock provider (the Redis client and its
//! scripts alone: `shared_limits_store.rs`). The fleet never admits
//! more than a quota in a window, gives back what it did not use, holds a concurrency cap
//! across replicas (also when one is SIGKILLed), follows each org's policy while Redis is down
//! and recovers, applies a reloaded quota everywhere, and stops a budget on every replica.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(clippy::panic, reason = "test code: a panic fails the test")]

mod common;
use common::*;
use futures_util::{stream, StreamExt};
use serde_json::Value;
use sluice_bench::mock::MockProvider;
use sluice_test_support::redis::Redis;
use sluice_test_support::wait_for;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The Redis key of org acme's requests windows of a day (see `store::window_key`).
const ACME_REQUESTS_DAY: &str = "sluice:{o%3Aacme}:r:86400000";
const ACME_TOKENS_DAY: &str = "sluice:{o%3Aacme}:t:86400000";

/// Three (or `n`) replicas sharing one Redis, one mock and one configuration file.
struct Fleet {
    redis: Redis,
    mock: MockProvider,
    cfg: TestConfig,
    procs: Vec<Proc>,
    dir: tempfile::TempDir,
}

impl Fleet {
    /// `None` when Redis is not installed (the test then skips, loudly).
    async fn start(n: usize, edit: impl FnOnce(&mut TestConfig)) -> Option<Self> {
        Self::start_tuned(n, "idle_return = \"300ms\"", edit).await
    }

    /// [`Fleet::start`] with `tuning` lines added to the `[limits]` table.
    async fn start_tuned(
        n: usize,
        tuning: &str,
        edit: impl FnOnce(&mut TestConfig),
    ) -> Option<Self> {
        let redis = Redis::start()?;
        let mock = MockProvider::start("127.0.0.1:0").await.unwrap();
        let mut cfg = TestConfig::new(mock.addr());
        edit(&mut cfg);
        // A lease normally takes well under a millisecond; the generous wait keeps a loaded CI
        // machine from sending requests to the unreachable policy.
        cfg.extra.push_str(&format!(
            "\n[limits]\nbackend = \"redis\"\nurl = \"{}\"\nreplicas = {n}\nwait = \"1s\"\n\
             lease_ttl = \"1500ms\"\n{tuning}\n",
            redis.url()
        ));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, cfg.render()).unwrap();
        let mut procs = Vec::new();
        for _ in 0..n {
            procs.push(
                Proc::start(
                    &path,
                    &["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.2:0"],
                )
                .await,
            );
        }
        Some(Self {
            redis,
            mock,
            cfg,
            procs,
            dir,
        })
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder().timeout(WAIT).build().unwrap()
    }

    async fn send(
        &self,
        replica: usize,
        key: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> reqwest::Response {
        let url = self.procs[replica].url("/v1/chat/completions");
        send_chat(&Self::client(), &url, key, headers, body)
            .await
            .expect("an answer")
    }

    /// Rewrites the configuration and reloads every replica (SIGHUP), waiting for each to say so.
    async fn reload(&mut self, edit: impl FnOnce(&mut TestConfig)) {
        edit(&mut self.cfg);
        let path = self.dir.path().join("sluice.toml");
        let tmp = self.dir.path().join(".sluice.toml.tmp");
        std::fs::write(&tmp, self.cfg.render()).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        for p in &mut self.procs {
            p.signal(Signal::SIGHUP);
            p.wait_stderr("the reload", |t| t.contains("(generation 2)"))
                .await;
        }
    }

    /// Reads a field of a Redis hash as a number (0 when absent).
    fn hget(&self, key: &str, field: &str) -> i64 {
        self.redis.cli(&["HGET", key, field]).parse().unwrap_or(0)
    }
}

/// Starts the run in a UTC day with at least two minutes left, so all of it falls in one
/// daily window (the windows are aligned to Redis's clock, the same machine's).
async fn inside_one_day() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let left = 86_400 - now % 86_400;
    if left < 120 {
        tokio::time::sleep(Duration::from_secs(left + 1)).await;
    }
}

/// Runs `attempt` until it says done, at most [`WAIT`], pausing briefly between failed attempts
/// (a poll rate; each attempt re-reads the state).
async fn retry_until(what: &str, mut attempt: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !attempt().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn status_counts(statuses: &[u16]) -> (usize, usize) {
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(
        ok + refused,
        statuses.len(),
        "only 200 and 429: {statuses:?}"
    );
    (ok, refused)
}

/// 600 requests spread 70/20/10 over three replicas against `300/day`: never more than 300
/// admitted, and fewer only by the slices the replicas still held (at most `replicas × max
/// slice` = 3 × 300 / 24 = 36). Once the idle slices went back, Redis's count equals exactly
/// what was admitted, and the fleet admits the rest of the quota to the request.
#[tokio::test]
async fn the_fleet_admits_at_most_the_quota_and_gives_back_what_it_did_not_use() {
    let Some(mut f) = Fleet::start(3, |c| {
        c.acme_org = r#"limits = { requests = "300/day" }"#.into();
    })
    .await
    else {
        return;
    };
    inside_one_day().await;
    let key = f.cfg.keys.acme.clone();
    let body = chat("mock-gpt", false);
    let plan: Vec<usize> = (0..600)
        .map(|i| match i % 10 {
            0..=6 => 0,
            7 | 8 => 1,
            _ => 2,
        })
        .collect();
    let answers: Vec<(usize, u16)> = stream::iter(plan.iter().copied())
        .map(|r| {
            let (f, key, body) = (&f, &key, &body);
            async move {
                let resp = f.send(r, key, &[], body).await;
                let status = resp.status().as_u16();
                if status == 429 {
                    let v: Value = resp.json().await.unwrap();
                    assert_eq!(v["error"]["code"], "rate_limit_exceeded", "{v}");
                } else {
                    let _ = resp.bytes().await.unwrap();
                }
                (r, status)
            }
        })
        .buffer_unordered(24)
        .collect()
        .await;
    let statuses: Vec<u16> = answers.iter().map(|(_, s)| *s).collect();
    let (admitted, _) = status_counts(&statuses);
    assert!(admitted <= 300, "admitted {admitted} of a quota of 300");
    assert!(
        admitted >= 300 - 36,
        "admitted {admitted}: below the documented bound"
    );
    assert_eq!(
        f.mock.requests().len(),
        admitted,
        "only admitted requests reach the provider"
    );
    // Every request has exactly one usage record, on the replica that answered it.
    for (i, p) in f.procs.iter_mut().enumerate() {
        let sent: Vec<u16> = answers
            .iter()
            .filter(|(r, _)| *r == i)
            .map(|(_, s)| *s)
            .collect();
        let mut recorded = Vec::new();
        for _ in 0..sent.len() {
            recorded.push(p.next_record().await["status"].as_u64().unwrap() as u16);
        }
        assert_eq!(
            status_counts(&recorded),
            status_counts(&sent),
            "replica {i}"
        );
        assert!(
            p.try_record().is_none(),
            "replica {i}: one record per request"
        );
    }

    // Idle slices go back: Redis then counts exactly what was admitted.
    wait_for("the idle slices to go back", WAIT, || async {
        (f.hget(ACME_REQUESTS_DAY, "u") == admitted as i64).then_some(())
    })
    .await;
    let mut more = 0;
    for _ in 0..(300 - admitted + 5) {
        let r = f.send(0, &key, &[], &body).await;
        more += usize::from(r.status() == 200);
    }
    assert_eq!(admitted + more, 300, "the whole quota, and not one more");
}

/// Tokens: reservations come from the slices and settle to real usage; once the slices went
/// back, Redis's window holds exactly the tokens the records say were used, never above the
/// quota.
#[tokio::test]
async fn token_reservations_settle_across_replicas_to_exactly_the_tokens_used() {
    let Some(mut f) = Fleet::start(3, |c| {
        c.acme_org = r#"limits = { tokens = "2000/day" }"#.into();
    })
    .await
    else {
        return;
    };
    inside_one_day().await;
    let key = f.cfg.keys.acme.clone();
    let mut body = chat("mock-gpt", false);
    body["max_tokens"] = 100.into();
    let answers: Vec<(usize, u16)> = stream::iter((0..150).map(|i| i % 3))
        .map(|r| {
            let (f, key, body) = (&f, &key, &body);
            async move {
                let resp = f.send(r, key, &[], body).await;
                let status = resp.status().as_u16();
                let _ = resp.bytes().await.unwrap();
                (r, status)
            }
        })
        .buffer_unordered(12)
        .collect()
        .await;
    let statuses: Vec<u16> = answers.iter().map(|(_, s)| *s).collect();
    let (admitted, refused) = status_counts(&statuses);
    assert!(
        admitted > 0 && refused > 0,
        "{admitted} admitted, {refused} refused"
    );
    let mut used = 0i64;
    for (i, p) in f.procs.iter_mut().enumerate() {
        for _ in answers.iter().filter(|(r, _)| *r == i) {
            let rec = p.next_record().await;
            if rec["status"] == 200 {
                used +=
                    rec["input_tokens"].as_i64().unwrap() + rec["output_tokens"].as_i64().unwrap();
            }
        }
    }
    assert!(used <= 2000, "{used} tokens used of 2000");
    wait_for("the idle token slices to go back", WAIT, || async {
        (f.hget(ACME_TOKENS_DAY, "u") == used).then_some(())
    })
    .await;
}

/// Opens a stream on `replica` that lasts ~10 s; `Some(response)` when admitted (held open by
/// the caller), `None` when refused for concurrency.
async fn try_stream(f: &Fleet, replica: usize) -> Option<reqwest::Response> {
    let headers = [("x-mock-chunks", "20"), ("x-mock-gap-ms", "500")];
    let resp = f
        .send(replica, &f.cfg.keys.acme, &headers, &chat("mock-gpt", true))
        .await;
    match resp.status().as_u16() {
        200 => Some(resp),
        429 => {
            let v: Value = resp.json().await.unwrap();
            let msg = v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(msg.contains("concurrent"), "{v}");
            None
        }
        other => panic!("status {other}"),
    }
}

/// `concurrent = 10` across three replicas under a burst of 60 streams: exactly 10 run. When the
/// replica holding them is SIGKILLed, its lease expires by TTL and another replica gets all 10.
#[tokio::test]
async fn a_concurrency_cap_holds_across_replicas_and_a_killed_replicas_slots_come_back() {
    let Some(f) = Fleet::start(3, |c| {
        c.acme_org = r#"limits = { concurrent = 10 }"#.into();
    })
    .await
    else {
        return;
    };
    let plan: Vec<usize> = (0..60)
        .map(|i| match i % 10 {
            0..=6 => 0,
            7 | 8 => 1,
            _ => 2,
        })
        .collect();
    let opened: Vec<(usize, Option<reqwest::Response>)> = stream::iter(plan)
        .map(|r| {
            let f = &f;
            async move { (r, try_stream(f, r).await) }
        })
        .buffer_unordered(60)
        .collect()
        .await;
    let running = opened.iter().filter(|(_, s)| s.is_some()).count();
    assert_eq!(running, 10, "streams running at once across the fleet");
    drop(opened);

    // Ten streams on replica 0, then it crashes holding their slots.
    let mut held = Vec::new();
    retry_until("replica 0 to hold all ten slots", async || {
        if let Some(s) = try_stream(&f, 0).await {
            held.push(s);
        }
        held.len() == 10
    })
    .await;
    assert!(
        try_stream(&f, 1).await.is_none(),
        "the cap is taken by replica 0"
    );
    f.procs[0].signal(Signal::SIGKILL);
    drop(held);
    let mut moved = Vec::new();
    retry_until(
        "replica 1 to get all ten slots after the lease TTL",
        async || {
            if let Some(s) = try_stream(&f, 1).await {
                moved.push(s);
            }
            moved.len() == 10
        },
    )
    .await;
    assert!(try_stream(&f, 2).await.is_none(), "still ten, not more");
}

/// Redis stopped under load: the `fail_open` org gets its local share, the `fail_closed` org a
/// 503 with `retry-after` in its API's shape; both are served by leases again once Redis is
/// back. Every request keeps exactly one record.
#[tokio::test]
async fn while_redis_is_down_each_org_gets_its_policy_and_both_recover() {
    let Some(mut f) = Fleet::start(2, |c| {
        c.acme_org = r#"limits = { requests = "10000/day" }"#.into();
        c.beta_org = "when_limits_unreachable = \"fail_closed\"\n\
                      limits = { requests = \"10000/day\" }"
            .into();
    })
    .await
    else {
        return;
    };
    let body = chat("mock-gpt", false);
    let (acme, beta) = (f.cfg.keys.acme.clone(), f.cfg.keys.beta.clone());
    let mut sent = [0usize; 2];
    for (r, n) in sent.iter_mut().enumerate() {
        for key in [&acme, &beta] {
            assert_eq!(f.send(r, key, &[], &body).await.status(), 200);
            *n += 1;
        }
    }
    // A steady load on both orgs and both replicas runs through the outage and the recovery.
    let done = std::sync::atomic::AtomicBool::new(false);
    let load = async {
        let mut sent = [0usize; 2];
        while !done.load(std::sync::atomic::Ordering::Acquire) {
            for (r, n) in sent.iter_mut().enumerate() {
                for key in [&acme, &beta] {
                    let status = f.send(r, key, &[], &body).await.status().as_u16();
                    *n += 1;
                    let allowed: &[u16] = if key == &beta { &[200, 503] } else { &[200] };
                    assert!(allowed.contains(&status), "status {status} under load");
                }
            }
        }
        sent
    };
    let outage = async {
        f.redis.stop();
        for (r, n) in sent.iter_mut().enumerate() {
            // The slices already held still admit; the first lease that fails turns the policy on.
            let mut refusal = None;
            retry_until("the fail_closed org to be refused", async || {
                *n += 1;
                let resp = f.send(r, &beta, &[], &body).await;
                if resp.status() == 503 {
                    refusal = Some(resp);
                }
                refusal.is_some()
            })
            .await;
            let refusal = refusal.unwrap();
            assert_eq!(refusal.headers()["retry-after"], "1");
            let v: Value = refusal.json().await.unwrap();
            assert_eq!(v["error"]["code"], "limits_unavailable", "{v}");
            assert!(
                !v.to_string().contains(&f.redis.url()),
                "no Redis address in answers"
            );
            assert_eq!(
                f.send(r, &acme, &[], &body).await.status(),
                200,
                "fail_open serves"
            );
            *n += 1;
            // The Anthropic surface answers in its own shape.
            let resp = Fleet::client()
                .post(f.procs[r].url("/v1/messages"))
                .header("x-api-key", &beta)
                .header("anthropic-version", "2023-06-01")
                .json(
                    &serde_json::json!({"model": "mock-claude", "max_tokens": 10,
                    "messages": [{"role": "user", "content": "hi"}]}),
                )
                .send()
                .await
                .unwrap();
            *n += 1;
            assert_eq!(resp.status(), 503);
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["type"], "error", "{v}");
            assert_eq!(v["error"]["type"], "overloaded_error", "{v}");
            assert_eq!(f.procs[r].metric("sluice_limits_backend_up").await, 0.0);
        }
        f.redis.restart();
        for (r, n) in sent.iter_mut().enumerate() {
            retry_until("the fail_closed org to be served again", async || {
                *n += 1;
                f.send(r, &beta, &[], &body).await.status() == 200
            })
            .await;
            assert_eq!(f.procs[r].metric("sluice_limits_backend_up").await, 1.0);
            let down = r#"sluice_limits_backend_transitions_total{to="down"}"#;
            assert_eq!(
                f.procs[r].metric(down).await,
                1.0,
                "one outage, counted once"
            );
            let log = f.procs[r].stderr();
            assert!(
                log.contains("redis unreachable") && log.contains("reachable again"),
                "{log}"
            );
        }
        done.store(true, std::sync::atomic::Ordering::Release);
    };
    let (loaded, ()) = tokio::join!(load, outage);
    for (n, more) in sent.iter_mut().zip(loaded) {
        *n += more;
    }
    for (r, p) in f.procs.iter_mut().enumerate() {
        for _ in 0..sent[r] {
            p.next_record().await;
        }
        assert!(
            p.try_record().is_none(),
            "replica {r}: one record per request"
        );
    }
}

/// A quota lowered by a reload applies on every replica from the next request, whatever cells
/// they leased under the old one.
#[tokio::test]
async fn a_reloaded_quota_applies_on_every_replica() {
    let Some(mut f) = Fleet::start(3, |c| {
        c.acme_org = r#"limits = { requests = "1000/day" }"#.into();
    })
    .await
    else {
        return;
    };
    inside_one_day().await;
    let key = f.cfg.keys.acme.clone();
    let body = chat("mock-gpt", false);
    for i in 0..30 {
        assert_eq!(f.send(i % 3, &key, &[], &body).await.status(), 200);
    }
    f.reload(|c| c.acme_org = r#"limits = { requests = "20/day" }"#.into())
        .await;
    for r in 0..3 {
        let resp = f.send(r, &key, &[], &body).await;
        assert_eq!(resp.status(), 429, "replica {r}");
        assert_eq!(resp.headers()["x-ratelimit-limit-requests"], "20");
        let v: Value = resp.json().await.unwrap();
        assert!(
            v["error"]["message"].as_str().unwrap().contains("20/day"),
            "{v}"
        );
    }
}

/// A budget reached through one replica stops the org on another within one spend sync.
#[tokio::test]
async fn a_budget_spent_through_one_replica_stops_the_others() {
    let Some(f) = Fleet::start(2, |c| {
        c.acme_org = "budget = { daily_usd = 0.05 }".into();
        c.extra = "[[models]]\nname = \"priced-gpt\"\nprovider = \"mock-openai\"\n\
                   upstream_model = \"mock-gpt\"\nprice = { input = 1000, output = 2000 }\n"
            .into();
    })
    .await
    else {
        return;
    };
    let key = f.cfg.keys.acme.clone();
    let body = chat("priced-gpt", false);
    // Replica 1 has served the org once, so it follows the org's global spend.
    assert_eq!(f.send(1, &key, &[], &body).await.status(), 200);
    let mut admitted = 0;
    loop {
        let r = f.send(0, &key, &[], &body).await;
        if r.status() == 429 {
            break;
        }
        admitted += 1;
        assert!(admitted < 1000, "the budget never stopped the org");
    }
    let refusal = wait_for("replica 1 to stop the org", WAIT, || async {
        let r = f.send(1, &key, &[], &body).await;
        (r.status() == 429).then_some(r)
    })
    .await;
    let v: Value = refusal.json().await.unwrap();
    assert_eq!(v["error"]["code"], "insufficient_quota", "{v}");
}

/// A replica stopped by SIGTERM gives its unused cells back before it exits: Redis's count
/// falls from what it leased to exactly what it admitted (idle give-backs are off here), and
/// it still stops cleanly with every record written (a timer made outside the runtime once
/// panicked there, before the usage queue was drained).
#[tokio::test]
async fn a_replica_gives_its_unused_slices_back_at_shutdown() {
    let Some(mut f) = Fleet::start_tuned(1, "idle_return = \"1h\"", |c| {
        c.acme_org = r#"limits = { requests = "1_000_000/day" }"#.into();
    })
    .await
    else {
        return;
    };
    inside_one_day().await;
    let key = f.cfg.keys.acme.clone();
    let body = chat("mock-gpt", false);
    for _ in 0..50 {
        assert_eq!(f.send(0, &key, &[], &body).await.status(), 200);
    }
    let leased = f.hget(ACME_REQUESTS_DAY, "u");
    assert!(
        leased > 50,
        "the replica holds cells ahead of demand ({leased} leased)"
    );
    f.procs[0].signal(Signal::SIGTERM);
    f.procs[0].wait_exit().await;
    assert_eq!(
        f.hget(ACME_REQUESTS_DAY, "u"),
        50,
        "exactly what was admitted"
    );
}
