//! Delivery tests: batching by count and by time, spooling while the ledger is down, replay in
//! order (also after a restart), drain at shutdown, a crashed and restarted real ledger,
//! rejected records, and the spend feed.

mod harness;

use super::spend;
use crate::config::{LedgerSettings, SinkKind, UsageSettings};
use crate::governance::budgets::{Period, Spend};
use crate::metering::sink::UsageSink;
use crate::server::lifecycle::Background;
use harness::*;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);

/// Emits `n` records of `org` with the given counts into `sink`; returns their ids in order.
fn emit(sink: &UsageSink, n: usize, org: &str, input: u64, output: u64) -> Vec<uuid::Uuid> {
    (0..n)
        .map(|_| {
            let r = record(org, input, output);
            let id = r.id;
            sink.emit(r);
            id
        })
        .collect()
}

fn sink(settings: LedgerSettings) -> UsageSink {
    let usage = UsageSettings {
        sink: SinkKind::None,
        queue_capacity: 10_000,
        ledger: Some(settings),
    };
    UsageSink::from_settings(&usage, background()).unwrap()
}

/// One background runtime for every test's sink, as one process has one (it outlives them all).
fn background() -> &'static Background {
    static BACKGROUND: OnceLock<Background> = OnceLock::new();
    BACKGROUND.get_or_init(|| Background::new().expect("background runtime"))
}

#[test]
fn batches_by_count_and_the_rest_at_shutdown() {
    let (stub, url) = Stub::start();
    let dir = tempfile::tempdir().unwrap();
    let sink = sink(settings(&url, dir.path(), 10, HOUR));
    let ids = emit(&sink, 25, "org-a", 1, 1);
    assert!(wait_until(|| stub.sizes().len() == 2), "{:?}", stub.sizes());
    assert_eq!(
        stub.sizes(),
        vec![10, 10],
        "the 5 left wait for the hour-long interval"
    );
    sink.shutdown();
    assert_eq!(stub.sizes(), vec![10, 10, 5], "drained at shutdown");
    assert_eq!(stub.ids(), ids);
    assert_eq!(spooled_bytes(dir.path()), 0);
}

#[test]
fn batches_by_time() {
    let (stub, url) = Stub::start();
    let dir = tempfile::tempdir().unwrap();
    let sink = sink(settings(&url, dir.path(), 1000, Duration::from_millis(50)));
    emit(&sink, 3, "org-a", 1, 1);
    assert!(wait_until(|| stub.sizes() == vec![3]), "{:?}", stub.sizes());
    sink.emit(record("org-a", 1, 1));
    assert!(
        wait_until(|| stub.sizes() == vec![3, 1]),
        "{:?}",
        stub.sizes()
    );
    sink.shutdown();
}

#[test]
fn spools_while_the_ledger_is_down_and_replays_in_order_when_it_is_back() {
    let (stub, url) = Stub::start();
    stub.down.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let sink = sink(settings(&url, dir.path(), 5, Duration::from_millis(20)));
    let ids = emit(&sink, 40, "org-a", 2, 3);
    // Everything reaches the disk while the ledger answers 503.
    let all_spooled = || {
        std::fs::read(dir.path().join("spool-0.log")).is_ok_and(|bytes| {
            super::format::scan(&bytes[8..])
                .entries
                .iter()
                .map(|e| e.records)
                .sum::<u32>()
                == 40
        })
    };
    assert!(wait_until(all_spooled), "40 records spooled");
    assert!(stub.ids().is_empty());
    stub.down.store(false, Ordering::SeqCst);
    assert!(
        wait_until(|| stub.ids().len() == 40),
        "{}",
        stub.ids().len()
    );
    assert_eq!(stub.ids(), ids, "replayed in the order emitted, once each");
    assert!(
        wait_until(|| spooled_bytes(dir.path()) == 0),
        "spool emptied after the ack"
    );
    sink.shutdown();
}

#[test]
fn a_spool_left_at_shutdown_is_replayed_before_new_records_after_a_restart() {
    let (stub, url) = Stub::start();
    stub.down.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let mut first_settings = settings(&url, dir.path(), 4, Duration::from_millis(20));
    first_settings.drain_timeout = Duration::from_millis(300);
    let first = sink(first_settings);
    let old_ids = emit(&first, 10, "org-a", 1, 1);
    first.shutdown();
    assert!(stub.ids().is_empty());
    assert!(
        spooled_bytes(dir.path()) > 0,
        "the drain spooled what it could not deliver"
    );

    stub.down.store(false, Ordering::SeqCst);
    let second = sink(settings(&url, dir.path(), 4, Duration::from_millis(20)));
    let new_ids = emit(&second, 6, "org-a", 1, 1);
    assert!(
        wait_until(|| stub.ids().len() == 16),
        "{}",
        stub.ids().len()
    );
    let expected: Vec<_> = old_ids.into_iter().chain(new_ids).collect();
    assert_eq!(stub.ids(), expected);
    second.shutdown();
    assert_eq!(spooled_bytes(dir.path()), 0);
}

#[test]
fn a_second_process_on_the_same_spool_dir_starts_beside_one_that_still_drains() {
    let (stub, url) = Stub::start();
    let dir = tempfile::tempdir().unwrap();
    // The old process: the ledger is down, so its records sit in its spool (slot 0).
    stub.down.store(true, Ordering::SeqCst);
    let old = sink(settings(&url, dir.path(), 2, HOUR));
    let old_ids = emit(&old, 4, "org", 1, 1);
    assert!(wait_until(|| spooled_bytes(dir.path()) > 0));
    // A plain (not upgrade) start while the old one still holds its slot: it takes another.
    let new = sink(settings(&url, dir.path(), 1, HOUR));
    let new_id = emit(&new, 1, "org", 1, 1)[0];
    old.shutdown();
    stub.down.store(false, Ordering::SeqCst);
    // The new process delivers its own record and adopts the old one's spool once it is gone.
    assert!(wait_until(|| {
        let ids = stub.ids();
        ids.contains(&new_id) && old_ids.iter().all(|id| ids.contains(id))
    }));
    new.shutdown();
    assert_eq!(spooled_bytes(dir.path()), 0);
    let second_slot = std::fs::metadata(dir.path().join("spool-1.log")).map_or(0, |m| m.len());
    assert!(second_slot <= crate::delivery::format::MAGIC.len() as u64);
}

#[test]
fn drain_delivers_everything_to_a_real_ledger_and_rejected_records_are_not_retried() {
    let data = tempfile::tempdir().unwrap();
    let ledger = RealLedger::start(data.path(), "127.0.0.1:0");
    let dir = tempfile::tempdir().unwrap();
    let sink = sink(settings(&ledger.url(), dir.path(), 500, HOUR));
    let mut input = 0;
    for i in 0..1234 {
        input += i % 17;
        sink.emit(record("org-real", i % 17, 2));
    }
    // Not a UUIDv7: the ledger rejects this one record and keeps the rest of its batch.
    let mut bad = record("org-real", 1000, 1000);
    bad.id = uuid::Uuid::from_u128(7);
    sink.emit(bad);
    sink.shutdown();
    let totals = ledger.totals("org-real");
    assert_eq!(totals.requests, 1234);
    assert_eq!(totals.input_tokens, input);
    assert_eq!(totals.output_tokens, 2 * 1234);
    assert_eq!(
        spooled_bytes(dir.path()),
        0,
        "a rejected record is not spooled for retry"
    );
}

#[test]
fn a_killed_ledger_is_caught_up_exactly_once_after_its_restart() {
    let data = tempfile::tempdir().unwrap();
    let mut ledger = RealLedger::start(data.path(), "127.0.0.1:0");
    let dir = tempfile::tempdir().unwrap();
    let sink = sink(settings(
        &ledger.url(),
        dir.path(),
        20,
        Duration::from_millis(20),
    ));
    emit(&sink, 100, "org-k", 3, 4);
    assert!(wait_until(|| ledger.totals("org-k").requests == 100));
    ledger.kill();
    emit(&sink, 150, "org-k", 3, 4);
    assert!(
        wait_until(|| spooled_bytes(dir.path()) > 0),
        "records spooled while the ledger is down"
    );
    ledger.restart();
    assert!(
        wait_until(|| ledger.totals("org-k").requests == 250),
        "{:?}",
        ledger.totals("org-k")
    );
    assert!(wait_until(|| spooled_bytes(dir.path()) == 0));
    sink.shutdown();
    let totals = ledger.totals("org-k");
    assert_eq!(
        (totals.requests, totals.input_tokens, totals.output_tokens),
        (250, 750, 1000)
    );
}

#[test]
fn the_spend_feed_raises_local_spend_to_the_ledgers_figures() {
    let data = tempfile::tempdir().unwrap();
    let ledger = RealLedger::start(data.path(), "127.0.0.1:0");
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&ledger.url(), dir.path(), 10, HOUR);
    let sink = sink(settings.clone());
    emit(&sink, 10, "org-s", 40, 60);
    sink.shutdown();
    let local = Arc::new(Spend::new());
    let org: Arc<str> = "org-s".into();
    let now = std::time::SystemTime::now();
    local.charge(&org, 5, now);
    let client = super::client::LedgerClient::new(&settings).unwrap();
    let answer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(client.spend())
        .unwrap();
    spend::apply(&local, &Default::default(), &answer);
    assert_eq!(local.spent(&org, Period::Day, now), 1000);
    assert_eq!(local.spent(&org, Period::Month, now), 1000);
    // Never lowered: a stale (smaller) figure leaves the local one alone.
    let mut stale = answer.clone();
    stale.orgs.iter_mut().for_each(|o| o.day_micro_usd = 1);
    spend::apply(&local, &Default::default(), &stale);
    assert_eq!(local.spent(&org, Period::Day, now), 1000);
}

#[test]
fn what_the_ledger_will_not_take_is_dead_lettered_and_delivery_goes_on() {
    let (stub, url) = Stub::start();
    *stub.refuse_org.lock().unwrap() = Some("refused".into());
    *stub.reject_org.lock().unwrap() = Some("rejected".into());
    let dir = tempfile::tempdir().unwrap();
    // One record per batch, dead-lettered after 2 refusals (the harness's setting).
    let sink = sink(settings(&url, dir.path(), 1, HOUR));
    let good: Vec<_> = (0..3).map(|_| record("org", 1, 1)).collect();
    let refused = record("refused", 5, 5);
    let rejected = record("rejected", 7, 7);
    for r in [&good[0], &refused, &good[1], &rejected, &good[2]] {
        sink.emit(r.clone());
    }
    let good_ids: Vec<_> = good.iter().map(|r| r.id).collect();
    assert!(
        wait_until(|| stub.ids() == good_ids),
        "the good records behind the bad ones are delivered, in order: {:?}",
        stub.ids()
    );
    assert_eq!(
        stub.refusals.load(Ordering::SeqCst),
        2,
        "refused twice, then set aside"
    );
    sink.shutdown();
    assert_eq!(spooled_bytes(dir.path()), 0);

    let text = std::fs::read_to_string(dir.path().join(super::dead_letter::FILE_NAME)).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    let id = |l: &serde_json::Value| l["record"]["id"].as_str().unwrap().to_string();
    assert_eq!(id(&lines[0]), refused.id.to_string());
    assert!(
        lines[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("refused 2 times: HTTP 422"),
        "{}",
        lines[0]
    );
    assert_eq!(id(&lines[1]), rejected.id.to_string());
    assert_eq!(lines[1]["reason"], "rejected: not storable");
    // The record is kept whole, as it was sent.
    let back: crate::metering::record::UsageRecord =
        serde_json::from_value(lines[1]["record"].clone()).unwrap();
    assert_eq!(back, rejected);
}
