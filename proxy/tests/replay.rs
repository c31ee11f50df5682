//! Every real provider recording in `../shared/fixtures/real/` (see its INDEX.md) replayed
//! through sluice by the mock at several write splits (one write, one write per SSE event,
//! seeded random writes of 1–200 bytes): the client must get the recording byte for byte (or
//! minus exactly the usage event sluice strips), and the usage record must equal the index's
//! ground truth, with compaction iterations summed, thinking tokens as reasoning, failures
//! inside a 200 stream as `stream_error`, and a gzip-encoded stream metered through its decoder.
//!
//! The recordings belong to other projects and are read where they are, never copied here.
//! Without the folder the test says so loudly and passes, except under CI (`CI` set), where
//! it fails. All recordings run against one sluice and one mock, so the whole test takes a
//! few seconds.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(clippy::panic, reason = "test code: a panic fails the test")]

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Write splits every recording is replayed with.
const SPLITS: [&str; 4] = ["whole", "events", "random:1", "random:2026"];

/// The recordings folder, or `None` (after saying so) when it is absent outside CI.
fn fixtures_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/real");
    if dir.join("index.json").is_file() {
        return Some(dir);
    }
    let msg = format!(
        "REAL RECORDINGS NOT FOUND at {}: the replay test cannot run",
        dir.display()
    );
    assert!(std::env::var_os("CI").is_none(), "{msg} (CI is set)");
    eprintln!("\n!!!!!!!!\n!!! SKIPPED: {msg}\n!!!!!!!!\n");
    None
}

/// What sluice must record for one recording.
#[derive(Debug, Default, PartialEq)]
struct Expected {
    outcome: &'static str,
    error_type: Option<String>,
    /// `None`: the recording reports no usage, so the record is an estimate.
    exact: Option<[u64; 5]>,
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// The record the index's ground truth implies (input, output, cached, cache write, reasoning).
fn expected(entry: &Value) -> Expected {
    let t = &entry["usage_truth"];
    let status = entry["status"].as_u64().unwrap_or(429);
    if status != 200 {
        return Expected {
            outcome: "provider_error",
            error_type: None,
            exact: Some([0; 5]),
        };
    }
    if t.get("usage_reported") == Some(&Value::Bool(false)) {
        let error = t["error_type"]
            .as_str()
            .map(str::to_string)
            .or_else(|| (t["terminal"] == "response.failed").then(|| "insufficient_quota".into()));
        return Expected {
            outcome: if error.is_some() {
                "stream_error"
            } else {
                "ok"
            },
            error_type: error,
            exact: None,
        };
    }
    let exact = if entry["provider"] == "anthropic" {
        let (input, output, read, write) = if t.get("iterations").is_some() {
            (
                n(&t["iterations_sum_input"]),
                n(&t["iterations_sum_output"]),
                n(&t["iterations_sum_cache_read"]),
                n(&t["iterations_sum_cache_creation"]),
            )
        } else {
            (
                n(&t["input"]),
                n(&t["output"]),
                n(&t["cache_read"]),
                n(&t["cache_creation"]),
            )
        };
        [
            input + read + write,
            output,
            read,
            write,
            n(&t["reasoning"]),
        ]
    } else {
        let write = cache_write_tokens(entry);
        [
            n(&t["input"]),
            n(&t["output"]),
            n(&t["cached"]),
            write,
            n(&t["reasoning"]),
        ]
    };
    Expected {
        outcome: "ok",
        error_type: None,
        exact: Some(exact),
    }
}

/// Responses' `input_tokens_details.cache_write_tokens`, which the index does not tabulate:
/// read from the recording's own final usage.
fn cache_write_tokens(entry: &Value) -> u64 {
    let dir = fixtures_dir().unwrap();
    let text = std::fs::read_to_string(dir.join(entry["file"].as_str().unwrap())).unwrap();
    text.rfind("\"cache_write_tokens\":")
        .and_then(|at| {
            let rest = &text[at + "\"cache_write_tokens\":".len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .unwrap_or(0)
}

/// The API path and request body a recording answers.
fn request(entry: &Value, want_usage: bool) -> (&'static str, Value) {
    let stream = entry["streaming"].as_bool().unwrap_or(false);
    match entry["surface"].as_str().unwrap_or("") {
        "responses" => (
            "/v1/responses",
            json!({"model": "mock-gpt", "stream": stream, "input": "one two three"}),
        ),
        "messages" => (
            "/v1/messages",
            json!({"model": "mock-claude", "stream": stream, "max_tokens": 1024,
                   "messages": [{"role": "user", "content": "one two three"}]}),
        ),
        "embeddings" => (
            "/v1/embeddings",
            json!({"model": "mock-gpt", "input": "one two three"}),
        ),
        // Chat, and the one recording from another OpenAI path (an error envelope).
        _ => {
            let mut body = chat("mock-gpt", stream);
            if stream && want_usage {
                body["stream_options"] = json!({"include_usage": true});
            }
            ("/v1/chat/completions", body)
        }
    }
}

/// The recording minus the usage-only chunk sluice strips when it added `include_usage` itself.
fn without_usage_event(bytes: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let events: Vec<&str> = text.split_inclusive("\n\n").collect();
    let kept: Vec<&str> = events
        .iter()
        .copied()
        .filter(|e| !(e.contains("\"choices\":[]") && e.contains("\"usage\":{")))
        .collect();
    assert_eq!(kept.len() + 1, events.len(), "exactly one usage event");
    kept.concat().into_bytes()
}

struct Case<'a> {
    entry: &'a Value,
    /// The file the mock serves (the raw gzip bytes for the gzip recording).
    file: String,
    split: &'static str,
    /// The client asks for usage itself; otherwise sluice injects it and strips it.
    want_usage: bool,
}

async fn run(s: &mut Sluice, dir: &Path, case: &Case<'_>) -> Result<(), String> {
    let entry = case.entry;
    let name = entry["file"].as_str().unwrap();
    let (path, body) = request(entry, case.want_usage);
    let status = entry["status"].as_u64().unwrap_or(429).to_string();
    let mut req = s
        .client()
        .post(s.url(path))
        .json(&body)
        .header("x-mock-replay", &case.file)
        .header("x-mock-replay-status", &status)
        .header("x-mock-replay-split", case.split);
    req = if path.starts_with("/v1/messages") {
        req.header("x-api-key", &s.cfg.keys.acme)
            .header("anthropic-version", "2023-06-01")
    } else {
        req.bearer_auth(&s.cfg.keys.acme)
    };
    let resp = req.send().await.map_err(|e| e.to_string())?;
    let got_status = resp.status().as_u16().to_string();
    let got = resp.bytes().await.map_err(|e| e.to_string())?;
    let rec = s.next_record().await;

    let raw = std::fs::read(dir.join(&case.file)).unwrap();
    let strips = !case.want_usage
        && entry["surface"] == "chat"
        && entry["streaming"] == true
        && entry["usage_truth"].get("input").is_some();
    let want_bytes = if strips {
        without_usage_event(&raw)
    } else {
        raw
    };
    let mut errors = Vec::new();
    if got_status != status {
        errors.push(format!("status {got_status}, want {status}"));
    }
    if got.as_ref() != want_bytes.as_slice() {
        errors.push(format!(
            "client bytes differ ({} bytes, want {})",
            got.len(),
            want_bytes.len()
        ));
    }
    let want = expected(entry);
    if rec["outcome"] != want.outcome {
        errors.push(format!("outcome {}, want {}", rec["outcome"], want.outcome));
    }
    if rec["error_type"].as_str().map(str::to_string) != want.error_type {
        errors.push(format!(
            "error_type {}, want {:?}",
            rec["error_type"], want.error_type
        ));
    }
    let fields = [
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
    ];
    match want.exact {
        Some(counts) => {
            let got: Vec<u64> = fields.iter().map(|f| n(&rec[*f])).collect();
            if got != counts {
                errors.push(format!("counts {got:?}, want {counts:?} ({fields:?})"));
            }
            if rec["estimated"] != false {
                errors.push("estimated, want exact".into());
            }
        }
        None => {
            if rec["estimated"] != true {
                errors.push("exact, want estimated (no usage reported)".into());
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{name} via {} split {} (client asks usage: {}): {}\n  record: {rec}",
            case.file,
            case.split,
            case.want_usage,
            errors.join("; ")
        ))
    }
}

#[tokio::test]
async fn every_real_recording_replays_byte_exact_with_exact_usage() {
    let Some(dir) = fixtures_dir() else {
        return;
    };
    let index: Vec<Value> =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    assert!(index.len() >= 50, "index has {} recordings", index.len());
    let mut s = Sluice::start().await;
    s.mock.set_replay_dir(&dir);
    let mut failures = Vec::new();
    let mut runs = 0;
    for entry in &index {
        let name = entry["file"].as_str().unwrap();
        let gz = format!("{name}.gz");
        // The gzip recording is served as it came off the wire: compressed.
        let file = if dir.join(&gz).is_file() {
            gz
        } else {
            name.to_string()
        };
        let chat_stream = entry["surface"] == "chat" && entry["streaming"] == true;
        let variants: &[bool] = if chat_stream { &[true, false] } else { &[true] };
        for &want_usage in variants {
            for split in SPLITS {
                let case = Case {
                    entry,
                    file: file.clone(),
                    split,
                    want_usage,
                };
                runs += 1;
                if let Err(e) = run(&mut s, &dir, &case).await {
                    failures.push(e);
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {runs} replays failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
