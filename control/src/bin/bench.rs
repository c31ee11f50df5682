//! Ingest throughput benchmark: starts the ledger in process on a loopback port, sends
//! pre-serialized batches of fresh records over HTTP with a few requests in flight, and reports
//! records per second. Bounded by a record count and a time limit.
//!
//! `sluice-control-bench [--database-url URL] [--records 100000] [--batch 500] [--in-flight 4]`
//! (default database: a fresh SQLite file in the temp directory, deleted afterwards).

use clap::Parser;
use futures_util::stream::{self, StreamExt};
use sluice_control::clock::{Clock, SystemClock};
use sluice_control::db::Store;
use sluice_control::http::{router, AppState, TokenDigest};
use sluice_wire::{IngestAnswer, IngestBatch, Outcome, UsageRecord};
use std::borrow::Cow;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-ingest-token";

#[derive(Debug, Parser)]
struct Args {
    /// Database to ingest into; default a temporary SQLite file.
    #[arg(long)]
    database_url: Option<String>,
    /// Records to send in total.
    #[arg(long, default_value_t = 100_000)]
    records: usize,
    /// Records per batch.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Batches in flight at once.
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
    /// Stop sending after this many seconds even if records remain.
    #[arg(long, default_value_t = 120)]
    max_seconds: u64,
}

fn record(i: usize, now_ms: u64) -> UsageRecord {
    UsageRecord {
        v: 1,
        id: uuid::Uuid::now_v7(),
        time_ms: now_ms + (i as u64 % 1000),
        org: Some(Arc::from(format!("org-{}", i % 20).as_str())),
        key_id: Some(Arc::from(format!("key_{:016x}", i % 200).as_str())),
        provider: Some(Arc::from("openai")),
        endpoint: None,
        region: None,
        attempts: 0,
        model: Some(["gpt-4o-mini", "gpt-4o", "claude-sonnet"][i % 3].to_string()),
        upstream_model: Some("gpt-4o-mini-2024-07-18".into()),
        api: Cow::Borrowed("chat.completions"),
        stream: i % 2 == 0,
        status: 200,
        outcome: Outcome::Ok,
        input_tokens: 500 + (i as u64 % 1000),
        output_tokens: 100 + (i as u64 % 300),
        cached_tokens: 0,
        cache_write_tokens: 0,
        reasoning_tokens: 0,
        estimated: false,
        cost_micro_usd: 1234,
        ttft_ms: Some(120.5),
        total_ms: 900.25,
        upstream_ms: Some(880.0),
        bytes_in: 2048,
        bytes_out: 8192,
        user: Some(format!("user-{}", i % 1000)),
        session: None,
        feature: Some("chat".into()),
        meta: Default::default(),
        client_ip: None,
        error_type: None,
    }
}

async fn run(args: Args) -> Result<(), String> {
    let temp = std::env::temp_dir().join(format!("sluice-control-bench-{}", std::process::id()));
    let url = match &args.database_url {
        Some(url) => url.clone(),
        None => {
            std::fs::create_dir_all(&temp).map_err(|e| format!("temp dir: {e}"))?;
            format!("sqlite://{}", temp.join("ledger.db").display())
        }
    };
    let store = Store::open(&url, 8).await.map_err(|e| e.to_string())?;
    let state = Arc::new(AppState {
        store: store.clone(),
        clock: Arc::new(SystemClock),
        ingest_token: TokenDigest::new(TOKEN),
        admin_token: TokenDigest::new("bench-admin-token"),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router(state, 64 << 20)).await;
    });

    // Serialization happens before the clock starts: the benchmark measures the ledger.
    let now = SystemClock.now_ms();
    let batches: Vec<Vec<u8>> = (0..args.records)
        .collect::<Vec<_>>()
        .chunks(args.batch.max(1))
        .map(|chunk| {
            let records = chunk.iter().map(|i| record(*i, now)).collect();
            serde_json::to_vec(&IngestBatch { records }).map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;

    let client = reqwest::Client::new();
    let endpoint = format!("http://{addr}/v1/events");
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    let started = Instant::now();
    let results: Vec<Result<Option<IngestAnswer>, String>> = stream::iter(batches)
        .map(|body| {
            let client = client.clone();
            let endpoint = endpoint.clone();
            async move {
                if Instant::now() > deadline {
                    return Ok(None);
                }
                let resp = client
                    .post(&endpoint)
                    .bearer_auth(TOKEN)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if !resp.status().is_success() {
                    return Err(format!("status {}", resp.status()));
                }
                resp.json::<IngestAnswer>()
                    .await
                    .map(Some)
                    .map_err(|e| e.to_string())
            }
        })
        .buffer_unordered(args.in_flight.max(1))
        .collect()
        .await;
    let elapsed = started.elapsed();
    let mut accepted = 0;
    for r in results {
        if let Some(a) = r? {
            if !a.rejected.is_empty() {
                return Err(format!("{} records rejected", a.rejected.len()));
            }
            accepted += a.accepted;
        }
    }
    let backend = format!("{:?}", store.backend());
    println!(
        "backend={backend} records={accepted} batch={} in_flight={} seconds={:.2} records_per_second={:.0}",
        args.batch,
        args.in_flight,
        elapsed.as_secs_f64(),
        accepted as f64 / elapsed.as_secs_f64()
    );
    server.abort();
    store.close().await;
    if args.database_url.is_none() {
        let _ = std::fs::remove_dir_all(&temp);
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice-control-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
