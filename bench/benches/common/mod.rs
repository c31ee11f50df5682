//! Shared fixtures for the micro-benchmarks: real-format provider streams, fetched once from the
//! in-process mock provider, and the ways a provider's TCP reads split them into chunks.
//!
//! The streams come from `sluice_bench::mock::MockProvider` over loopback rather than from
//! hand-written strings, so the benchmarks scan exactly the wire formats the mock (and hence the
//! integration tests and the SDKs) agree on.

// Each benchmark crate uses a different subset of these helpers.
#![allow(
    dead_code,
    reason = "each test binary or bench uses a different part of this module"
)]

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::Criterion;
use serde_json::{json, Value};
use sluice_bench::mock::MockProvider;
use sluice_proxy::api::Api;

/// Content chunks per stream for the throughput benchmarks: long enough that per-stream setup is
/// a small share of the cost, like a typical answer of a few hundred tokens.
pub const CONTENT_CHUNKS: usize = 256;

/// One streamed response body and how sluice observes it.
#[derive(Debug, Clone)]
pub struct Stream {
    /// Short name for benchmark ids, e.g. `chat+usage`.
    pub name: &'static str,
    pub shape: Api,
    /// Observe in strip mode (sluice injected `include_usage` and cuts the usage-only event).
    pub strip: bool,
    pub body: Bytes,
}

/// How the body is cut into the chunks the body filter is handed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// One SSE event per chunk, as a provider flushing every token over a fast link delivers.
    PerEvent,
    /// TCP reads of 1 to 4 KiB (sizes vary deterministically), as a busy link coalesces them.
    Reads,
}

impl Split {
    pub const ALL: [Split; 2] = [Split::PerEvent, Split::Reads];

    pub fn name(self) -> &'static str {
        match self {
            Split::PerEvent => "per-event",
            Split::Reads => "1-4KiB",
        }
    }

    /// Zero-copy chunks of `body`: slices sharing its buffer, which the observer cannot tell
    /// apart from the separate buffers of real reads.
    pub fn chunks(self, body: &Bytes) -> Vec<Bytes> {
        let ends = match self {
            Split::PerEvent => event_ends(body),
            Split::Reads => read_ends(body.len()),
        };
        let mut start = 0;
        ends.into_iter()
            .map(|end| {
                let chunk = body.slice(start..end);
                start = end;
                chunk
            })
            .collect()
    }
}

/// Offsets just past each blank line (`\n\n`; the mock's default line ending is LF), plus the
/// end of the body if anything trails the last one.
fn event_ends(body: &[u8]) -> Vec<usize> {
    let mut ends: Vec<usize> = memchr::memmem::find_iter(body, b"\n\n")
        .map(|at| at + 2)
        .collect();
    if ends.last() != Some(&body.len()) {
        ends.push(body.len());
    }
    ends
}

/// Chunk ends for reads of 1024..=4096 bytes from a small linear congruential sequence, so every
/// run splits the same way and chunk boundaries fall at all positions within events.
fn read_ends(len: usize) -> Vec<usize> {
    let mut state: u32 = 0x2545_f491;
    let mut ends = Vec::new();
    let mut at = 0;
    while at < len {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let size = 1024 + (state >> 8) as usize % 3073;
        at = (at + size).min(len);
        ends.push(at);
    }
    ends
}

/// The streams of every observed shape: OpenAI chat without and with the usage chunk (the
/// latter also in strip mode), Responses and Anthropic messages, each with `content_chunks`
/// content events.
pub fn streams(content_chunks: usize) -> Vec<Stream> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime for the mock provider");
    runtime.block_on(async {
        let mock = MockProvider::start("127.0.0.1:0")
            .await
            .expect("the mock provider binds a loopback port");
        let client = reqwest::Client::new();
        let base = mock.base_url();
        let chat = json!({
            "model": "gpt-4o-mini",
            "stream": true,
            "messages": [{"role": "user", "content": "Tell me a story about a sluice gate."}],
        });
        let mut chat_usage = chat.clone();
        chat_usage["stream_options"] = json!({"include_usage": true});
        let responses = json!({
            "model": "gpt-4o-mini",
            "stream": true,
            "input": "Tell me a story about a sluice gate.",
        });
        let messages = json!({
            "model": "claude-sonnet-4",
            "stream": true,
            "max_tokens": 4096,
            "messages": [{"role": "user", "content": "Tell me a story about a sluice gate."}],
        });
        let get = |path: &'static str, body: Value| {
            let request = client
                .post(format!("{base}{path}"))
                .header("x-mock-chunks", content_chunks.to_string())
                .header("anthropic-version", "2023-06-01")
                .json(&body);
            async move {
                let response = request.send().await.expect("the mock answers");
                assert!(
                    response.status().is_success(),
                    "mock status {}",
                    response.status()
                );
                response.bytes().await.expect("the mock's stream completes")
            }
        };
        let chat_plain = get("/v1/chat/completions", chat).await;
        let chat_with_usage = get("/v1/chat/completions", chat_usage).await;
        let responses = get("/v1/responses", responses).await;
        let messages = get("/v1/messages", messages).await;
        vec![
            Stream {
                name: "chat",
                shape: Api::ChatCompletions,
                strip: false,
                body: chat_plain,
            },
            Stream {
                name: "chat+usage",
                shape: Api::ChatCompletions,
                strip: false,
                body: chat_with_usage.clone(),
            },
            Stream {
                name: "chat strip",
                shape: Api::ChatCompletions,
                strip: true,
                body: chat_with_usage,
            },
            Stream {
                name: "responses",
                shape: Api::Responses,
                strip: false,
                body: responses,
            },
            Stream {
                name: "anthropic",
                shape: Api::Messages,
                strip: false,
                body: messages,
            },
        ]
    })
}

/// Runs `f` `iters` times and returns the time taken: this thread's CPU time, so that the other
/// builds and benchmarks sharing the two cores do not inflate the numbers (they still cost cache
/// and memory bandwidth); wall-clock time when `SLUICE_BENCH_WALL` is set.
pub fn timed<R>(iters: u64, mut f: impl FnMut() -> R) -> Duration {
    static WALL: OnceLock<bool> = OnceLock::new();
    let wall = *WALL.get_or_init(|| std::env::var_os("SLUICE_BENCH_WALL").is_some());
    let (start, begun) = (thread_cpu(), Instant::now());
    for _ in 0..iters {
        black_box(f());
    }
    if wall {
        begun.elapsed()
    } else {
        thread_cpu().saturating_sub(start)
    }
}

/// CPU time consumed by the calling thread (`CLOCK_THREAD_CPUTIME_ID`).
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(t.tv_nsec).unwrap_or(0);
    Duration::new(secs, nanos)
}

/// Criterion's settings: `measurement` and `warm_up` time and `samples` per benchmark, as the
/// defaults of a bench run alone. Command-line flags (the harness's shorter times) override them,
/// which per-group settings would not.
pub fn settings(measurement: Duration, warm_up: Duration, samples: usize) -> Criterion {
    Criterion::default()
        .measurement_time(measurement)
        .warm_up_time(warm_up)
        .sample_size(samples)
}

/// The settings of the benches that share these fixtures.
pub fn criterion() -> Criterion {
    settings(Duration::from_secs(2), Duration::from_millis(500), 20)
}

/// The `main` of a bench: one group of `targets` under [`criterion()`], or under the settings
/// given as `config = …;`.
// `allow`, not `expect`: only `alloc_per_chunk`, which has its own `main`, leaves these unused.
#[allow(unused_macros, reason = "alloc_per_chunk has its own main")]
macro_rules! bench_main {
    (config = $config:expr; $($target:path),+ $(,)?) => {
        ::criterion::criterion_group! {
            name = benches;
            config = $config;
            targets = $($target),+
        }
        ::criterion::criterion_main!(benches);
    };
    ($($target:path),+ $(,)?) => {
        $crate::common::bench_main!(config = $crate::common::criterion(); $($target),+);
    };
}
#[allow(unused_imports, reason = "alloc_per_chunk has its own main")]
pub(crate) use bench_main;
