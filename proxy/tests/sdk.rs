//! The official OpenAI and Anthropic Python SDKs, pointed at a real sluice only by base URL and
//! key, must parse every answer exactly as they would the provider's, while sluice records exact
//! usage. `tests/sdk/cases.py` runs one SDK call per case and prints what the SDK parsed.
//!
//! The SDKs live in a venv that `./test.sh` builds and names in `SLUICE_SDK_PYTHON`. Without it
//! every test fails (a silent pass would hide that the SDKs were never exercised), unless
//! `SLUICE_SKIP_SDK=1` says skipping is intended.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(clippy::panic, reason = "test code: a panic fails the test")]

mod common;
use common::*;
use serde_json::Value;
use sluice_bench::mock::{MockUsage, DEFAULT_CHUNKS, DEFAULT_DIMS};
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/cases.py");

/// The venv's python, or `None` (after a loud notice) when SDK tests are explicitly skipped.
fn sdk_python() -> Option<String> {
    match std::env::var("SLUICE_SDK_PYTHON") {
        Ok(p) if !p.is_empty() => {
            assert!(
                std::path::Path::new(&p).exists(),
                "SLUICE_SDK_PYTHON={p} does not exist; run ./test.sh to create the SDK venv"
            );
            Some(p)
        }
        _ if std::env::var("SLUICE_SKIP_SDK").as_deref() == Ok("1") => {
            // Straight to stderr: the harness would swallow `eprintln!` from a passing test.
            let _ = writeln!(
                std::io::stderr(),
                "\n!!!!! SLUICE_SKIP_SDK=1: SKIPPING official-SDK test; the SDKs were NOT exercised !!!!!\n"
            );
            None
        }
        _ => panic!(
            "SLUICE_SDK_PYTHON is not set: the official-SDK tests need the venv that ./test.sh \
             creates. Run ./test.sh, or set SLUICE_SDK_PYTHON=/path/to/venv/bin/python \
             (pip install -r proxy/tests/sdk/requirements.txt), or SLUICE_SKIP_SDK=1 to skip."
        ),
    }
}

/// `program` with sluice's address and org acme's key in its environment, and nothing else
/// that could steer an SDK.
fn sdk_command(s: &Sluice, program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("SLUICE_BASE_URL", format!("http://{}", s.addr))
        .env("SLUICE_KEY", &s.cfg.keys.acme)
        // Keep the source tree free of __pycache__.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // The SDKs read credentials, base URLs and proxies from the environment (an
    // `ANTHROPIC_AUTH_TOKEN` would add a second, winning `Authorization` header); only what the
    // script passes explicitly may count.
    for (name, _) in std::env::vars_os() {
        let n = name.to_string_lossy().to_ascii_uppercase();
        if n.starts_with("OPENAI_") || n.starts_with("ANTHROPIC_") || n.ends_with("_PROXY") {
            cmd.env_remove(&name);
        }
    }
    cmd
}

/// Runs an SDK script to completion and returns the JSON line it printed last.
async fn run_json(s: &Sluice, mut cmd: Command, case: &str) -> Value {
    let child = cmd.spawn().expect("spawn the SDK script");
    // The scripts end themselves after 60 s; this bound only reports a hang clearly.
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await
    .unwrap_or_else(|_| panic!("SDK case {case} hung; sluice stderr:\n{}", s.stderr()))
    .expect("join")
    .expect("script output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "SDK case {case} failed ({}):\n--- script stderr ---\n{stderr}\n--- script stdout ---\n\
         {stdout}\n--- sluice stderr ---\n{}",
        out.status,
        s.stderr()
    );
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty());
    serde_json::from_str(line.unwrap_or_default())
        .unwrap_or_else(|e| panic!("SDK case {case} printed no JSON ({e}):\n{stdout}\n{stderr}"))
}

/// Runs one case of `cases.py` against `s`.
async fn run_case(s: &Sluice, python: &str, case: &str) -> Value {
    let mut cmd = sdk_command(s, python);
    cmd.arg(SCRIPT).arg(case);
    run_json(s, cmd, case).await
}

/// One SDK call against a fresh sluice with the standard configuration: sluice, what the SDK
/// printed, and the usage the mock reported for it (the call's only upstream request). `None`
/// when SDK tests are skipped.
async fn one_call(case: &str) -> Option<(Sluice, Value, MockUsage)> {
    let py = sdk_python()?;
    let s = Sluice::start().await;
    let out = run_case(&s, &py, case).await;
    let truth = only_usage(&s);
    Some((s, out, truth))
}

/// The text the mock streams by default: chunk `i` is `tok{i} `.
fn mock_text() -> String {
    (0..DEFAULT_CHUNKS).map(|i| format!("tok{i} ")).collect()
}

/// The usage the mock reported for its only request so far.
fn only_usage(s: &Sluice) -> MockUsage {
    let reqs = s.mock.requests();
    assert_eq!(
        reqs.len(),
        1,
        "the SDK made exactly one upstream call: {reqs:?}"
    );
    reqs[0].usage.expect("the mock reported usage")
}

/// `usage` as the SDK reported it (`{"input": N, "output": M}`) equals the mock's.
fn assert_sdk_usage(usage: &Value, truth: MockUsage) {
    assert_eq!(usage["input"], truth.input_tokens, "SDK usage {usage}");
    assert_eq!(usage["output"], truth.output_tokens, "SDK usage {usage}");
}

/// Sluice's next record is a successful `api` call billed exactly what the mock reported.
async fn assert_record(s: &mut Sluice, api: &str, stream: bool, truth: MockUsage) {
    let rec = s.next_record().await;
    assert_eq!(rec["api"], api, "{rec}");
    assert_eq!(rec["org"], "acme", "{rec}");
    assert_eq!(rec["status"], 200, "{rec}");
    assert_eq!(rec["outcome"], "ok", "{rec}");
    assert_eq!(rec["stream"], stream, "{rec}");
    assert_eq!(rec["input_tokens"], truth.input_tokens, "{rec}");
    assert_eq!(rec["output_tokens"], truth.output_tokens, "{rec}");
    assert_eq!(rec["estimated"], false, "{rec}");
}

#[tokio::test]
async fn openai_chat_non_stream() {
    let Some((mut s, out, truth)) = one_call("chat").await else {
        return;
    };
    assert_eq!(out["text"], mock_text(), "{out}");
    assert_eq!(out["finish_reason"], "stop", "{out}");
    assert_sdk_usage(&out["usage"], truth);
    assert_record(&mut s, "chat.completions", false, truth).await;
}

/// Sluice asks the provider for usage on the client's behalf, so it must remove the usage-only
/// chunk again: an SDK that did not ask must never see it, yet the record is still exact.
#[tokio::test]
async fn openai_chat_stream_without_usage_sees_no_usage_chunk() {
    let Some((mut s, out, truth)) = one_call("chat_stream").await else {
        return;
    };
    assert_eq!(out["text"], mock_text(), "{out}");
    assert_eq!(out["finish_reason"], "stop", "{out}");
    assert_eq!(out["usage_chunks"], 0, "{out}");
    assert_eq!(out["empty_choice_chunks"], 0, "{out}");
    assert_eq!(out["usage"], Value::Null, "{out}");
    let sent = s.mock.requests()[0].json().expect("JSON body");
    assert_eq!(
        sent["stream_options"]["include_usage"], true,
        "sluice opted in: {sent}"
    );
    assert_record(&mut s, "chat.completions", true, truth).await;
}

#[tokio::test]
async fn openai_chat_stream_with_usage() {
    let Some((mut s, out, truth)) = one_call("chat_stream_usage").await else {
        return;
    };
    assert_eq!(out["text"], mock_text(), "{out}");
    assert_eq!(out["usage_chunks"], 1, "{out}");
    assert_sdk_usage(&out["usage"], truth);
    assert_record(&mut s, "chat.completions", true, truth).await;
}

#[tokio::test]
async fn openai_legacy_completions() {
    let Some((mut s, out, truth)) = one_call("completions").await else {
        return;
    };
    assert_eq!(out["text"], mock_text(), "{out}");
    assert_sdk_usage(&out["usage"], truth);
    assert_record(&mut s, "completions", false, truth).await;
}

/// Legacy completions streams get the same injected-then-stripped usage chunk as chat.
#[tokio::test]
async fn openai_legacy_completions_stream_without_usage() {
    let Some((mut s, out, truth)) = one_call("completions_stream").await else {
        return;
    };
    assert_eq!(out["text"], mock_text(), "{out}");
    assert_eq!(out["usage_chunks"], 0, "{out}");
    assert_record(&mut s, "completions", true, truth).await;
}

/// The SDK asks for base64 and decodes it; the floats it ends up with must be the mock's.
#[tokio::test]
async fn openai_embeddings() {
    let Some((mut s, out, truth)) = one_call("embeddings").await else {
        return;
    };
    let sent = s.mock.requests()[0].json().expect("JSON body");
    assert_eq!(sent["encoding_format"], "base64", "{sent}");
    assert_eq!(out["usage"]["input"], truth.input_tokens, "{out}");
    assert_eq!(out["usage"]["total"], truth.input_tokens, "{out}");
    assert_record(&mut s, "embeddings", false, truth).await;

    // The same input asked of the mock directly, as floats, is the reference vector.
    let direct: Value = s
        .client()
        .post(format!("{}/v1/embeddings", s.mock.base_url()))
        .json(
            &serde_json::json!({"model": "mock-gpt", "input": "one two three four",
                                   "encoding_format": "float"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let want = direct["data"][0]["embedding"]
        .as_array()
        .expect("floats")
        .clone();
    let got = out["embedding"].as_array().expect("SDK floats");
    assert_eq!(got.len(), DEFAULT_DIMS, "{out}");
    for (g, w) in got.iter().zip(&want) {
        let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
        // f32 on the wire either way; allow only float-printing noise.
        assert!(
            (g - w).abs() < 1e-6,
            "SDK vector {got:?} != mock vector {want:?}"
        );
    }
}

#[tokio::test]
async fn openai_responses_non_stream() {
    let Some((mut s, out, truth)) = one_call("responses").await else {
        return;
    };
    assert_eq!(out["text"], mock_text(), "{out}");
    assert_eq!(out["status"], "completed", "{out}");
    assert_sdk_usage(&out["usage"], truth);
    assert_record(&mut s, "responses", false, truth).await;
}

#[tokio::test]
async fn openai_responses_stream() {
    let Some((mut s, out, truth)) = one_call("responses_stream").await else {
        return;
    };
    assert_eq!(out["text"], mock_text(), "{out}");
    assert_eq!(out["status"], "completed", "{out}");
    assert_eq!(out["last_event"], "response.completed", "{out}");
    assert_sdk_usage(&out["usage"], truth);
    assert_record(&mut s, "responses", true, truth).await;
}

/// The model ids an SDK listed.
fn model_ids(out: &Value) -> Vec<&str> {
    out["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

/// Sluice answers the catalogue itself, with the exact model names the key may use.
#[tokio::test]
async fn openai_models_list() {
    let Some(py) = sdk_python() else { return };
    let mut s = Sluice::start().await;
    let out = run_case(&s, &py, "models").await;
    let ids = model_ids(&out);
    assert!(
        ids.contains(&"mock-gpt") && !ids.contains(&"mock-claude"),
        "the OpenAI SDK sees the OpenAI-protocol models only: {out}"
    );
    assert!(
        !ids.iter().any(|id| id.contains('*')),
        "globs are not model names: {out}"
    );
    assert!(s.mock.requests().is_empty());
    let rec = s.next_record().await;
    assert_eq!(
        (rec["api"].as_str(), rec["status"].as_u64()),
        (Some("models"), Some(200)),
        "{rec}"
    );
}

#[tokio::test]
async fn anthropic_models_list() {
    let Some(py) = sdk_python() else { return };
    let s = Sluice::start().await;
    let out = run_case(&s, &py, "anthropic_models").await;
    let ids = model_ids(&out);
    assert_eq!(
        ids,
        ["mock-claude", "claude-*"],
        "the Anthropic SDK sees the Anthropic models only, the glob route by its pattern: {out}"
    );
    assert!(s.mock.requests().is_empty());
}

#[tokio::test]
async fn anthropic_messages_non_stream() {
    let Some((mut s, out, truth)) = one_call("messages").await else {
        return;
    };
    assert_eq!(out["text"], mock_text(), "{out}");
    assert_eq!(out["stop_reason"], "end_turn", "{out}");
    assert_sdk_usage(&out["usage"], truth);
    assert_record(&mut s, "messages", false, truth).await;
}

#[tokio::test]
async fn anthropic_messages_stream() {
    let Some((mut s, out, truth)) = one_call("messages_stream").await else {
        return;
    };
    assert_eq!(out["text"], mock_text(), "{out}");
    assert_eq!(out["streamed_text"], mock_text(), "{out}");
    assert_eq!(out["stop_reason"], "end_turn", "{out}");
    assert_sdk_usage(&out["usage"], truth);
    assert_record(&mut s, "messages", true, truth).await;
}

/// `count_tokens` must report what `messages` would bill for the same body; counting itself
/// bills nothing.
#[tokio::test]
async fn anthropic_count_tokens() {
    let Some(py) = sdk_python() else { return };
    let mut s = Sluice::start().await;
    let out = run_case(&s, &py, "count_tokens").await;
    let rec = s.next_record().await;
    assert_eq!(rec["api"], "messages.count_tokens", "{rec}");
    assert_eq!(
        (rec["status"].as_u64(), rec["outcome"].as_str()),
        (Some(200), Some("ok")),
        "{rec}"
    );
    // The record carries the count the provider answered (issue 11, point 14), at no cost.
    assert_eq!(
        (rec["input_tokens"].as_u64(), rec["output_tokens"].as_u64()),
        (out["input_tokens"].as_u64(), Some(0)),
        "{rec}"
    );
    assert_eq!(rec["cost_micro_usd"], 0, "{rec}");
    assert_eq!(rec["estimated"], false, "{rec}");

    run_case(&s, &py, "messages").await;
    let reqs = s.mock.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    let billed = reqs[1].usage.expect("messages usage");
    assert_eq!(out["input_tokens"], billed.input_tokens, "{out}");
}

/// The SDK raised `exception` with `status` for the call the script named `call`.
fn assert_raised(out: &Value, call: &str, exception: &str, status: u16) {
    assert_eq!(out[call]["raised"], exception, "{out}");
    assert_eq!(out[call]["status"], status, "{out}");
}

/// Sluice recorded the refusals of a bad key (401) and an unknown model (404), and neither
/// reached the provider.
async fn assert_refused_before_the_provider(s: &mut Sluice) {
    for status in [401, 404] {
        let rec = s.next_record().await;
        assert_eq!(
            (rec["status"].as_u64(), rec["outcome"].as_str()),
            (Some(status), Some("rejected")),
            "{rec}"
        );
    }
    assert!(
        s.mock.requests().is_empty(),
        "refused requests never reach the provider"
    );
}

/// Sluice's own refusals must map to the SDKs' typed exceptions, so apps' error handling works.
#[tokio::test]
async fn openai_error_mapping() {
    let Some(py) = sdk_python() else { return };
    let mut s = Sluice::start().await;
    let out = run_case(&s, &py, "openai_errors").await;
    assert_raised(&out, "bad_key", "AuthenticationError", 401);
    assert_raised(&out, "unknown_model", "NotFoundError", 404);
    assert_refused_before_the_provider(&mut s).await;
}

#[tokio::test]
async fn anthropic_error_mapping() {
    let Some(py) = sdk_python() else { return };
    let mut s = Sluice::start().await;
    let out = run_case(&s, &py, "anthropic_errors").await;
    assert_raised(&out, "bad_key", "AuthenticationError", 401);
    assert_eq!(
        out["bad_key"]["body"]["type"], "error",
        "Anthropic-shaped: {out}"
    );
    assert_raised(&out, "unknown_model", "NotFoundError", 404);
    assert_eq!(
        out["unknown_model"]["body"]["error"]["type"], "not_found_error",
        "{out}"
    );
    assert_refused_before_the_provider(&mut s).await;
}

/// The Node SDK parses streams with its own code; not in CI because it needs an npm install
/// (see the header of `tests/sdk/node/stream.mjs`).
#[tokio::test]
#[ignore = "needs `npm install --prefix target/sdk-node openai` and SLUICE_SDK_NODE_DIR"]
async fn node_openai_stream() {
    let dir = std::env::var("SLUICE_SDK_NODE_DIR")
        .expect("SLUICE_SDK_NODE_DIR: a directory where `npm install openai` was run");
    let mut s = Sluice::start().await;
    let mut cmd = sdk_command(&s, "node");
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/sdk/node/stream.mjs"
    ))
    .env("SLUICE_SDK_NODE_DIR", dir);
    let out = run_json(&s, cmd, "node stream").await;
    let reqs = s.mock.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    for (i, case) in ["plain", "with_usage"].into_iter().enumerate() {
        let truth = reqs[i].usage.expect("mock usage");
        let got = &out[case];
        assert_eq!(got["text"], mock_text(), "{out}");
        if case == "plain" {
            assert_eq!(
                got["usage_chunks"], 0,
                "sluice's injected usage chunk leaked: {out}"
            );
        } else {
            assert_eq!(got["usage_chunks"], 1, "{out}");
            assert_sdk_usage(&got["usage"], truth);
        }
        assert_record(&mut s, "chat.completions", true, truth).await;
    }
}

/// Limits answer with what the SDKs know: `RateLimitError`, and retry headers they honour when
/// retries are on (the retried call then succeeds). `case` reads the headers of one admitted
/// call, is refused once, then retries to success.
async fn sdk_backs_off(case: &str, headers: [&str; 2]) {
    let Some(py) = sdk_python() else { return };
    let mut s =
        Sluice::start_with(|c| c.acme_org = r#"limits = { requests = "1/s" }"#.into()).await;
    let out = run_case(&s, &py, case).await;
    assert_eq!(out["headers"][headers[0]], "1", "{out}");
    assert_eq!(out["headers"][headers[1]], "0", "{out}");
    assert_raised(&out, "limited", "RateLimitError", 429);
    assert_eq!(out["retried_text"], mock_text(), "{out}");
    // Exactly two calls reached the provider: the first, and the retry that was admitted.
    let reached = s.mock.requests();
    assert_eq!(reached.len(), 2, "{reached:?}");
    let mut ok = 0;
    loop {
        let rec = s.next_record().await;
        match rec["status"].as_u64() {
            Some(200) => ok += 1,
            Some(429) => assert_eq!(rec["outcome"], "rejected", "{rec}"),
            _ => panic!("unexpected record {rec}"),
        }
        if ok == 2 {
            break;
        }
    }
}

#[tokio::test]
async fn openai_sdk_backs_off_from_rate_limits() {
    sdk_backs_off(
        "openai_rate_limit",
        [
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
        ],
    )
    .await;
}

#[tokio::test]
async fn anthropic_sdk_backs_off_from_rate_limits() {
    sdk_backs_off(
        "anthropic_rate_limit",
        [
            "anthropic-ratelimit-requests-limit",
            "anthropic-ratelimit-requests-remaining",
        ],
    )
    .await;
}

/// With the limits shared through a real Redis, both SDKs see the same thing: rate-limit
/// headers of the window (limit 2 for the org, 0 left after the second call) and
/// `RateLimitError` on the third, with `retry-after`.
#[tokio::test]
async fn sdks_see_shared_limits_like_local_ones() {
    let Some(py) = sdk_python() else { return };
    let Some(redis) = sluice_test_support::redis::Redis::start() else {
        return;
    };
    // A daily window, so the run cannot cross a window boundary (but at midnight UTC).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if 86_400 - now % 86_400 < 120 {
        tokio::time::sleep(std::time::Duration::from_secs(121)).await;
    }
    let s = Sluice::start_with(|c| {
        c.acme_org = r#"limits = { requests = "2/day" }"#.into();
        c.extra = format!("[limits]\nbackend = \"redis\"\nurl = \"{}\"\n", redis.url());
    })
    .await;
    let out = run_case(&s, &py, "refused_once").await;
    assert_eq!(
        out["openai_headers"]["x-ratelimit-limit-requests"], "2",
        "{out}"
    );
    assert_eq!(
        out["openai_headers"]["x-ratelimit-remaining-requests"], "1",
        "{out}"
    );
    assert_eq!(
        out["anthropic_headers"]["anthropic-ratelimit-requests-limit"], "2",
        "{out}"
    );
    assert_eq!(
        out["anthropic_headers"]["anthropic-ratelimit-requests-remaining"], "0",
        "{out}"
    );
    assert_raised(&out, "openai", "RateLimitError", 429);
    assert_raised(&out, "anthropic", "RateLimitError", 429);
    assert_eq!(
        out["openai"]["body"]["code"], "rate_limit_exceeded",
        "{out}"
    );
    assert_eq!(
        s.mock.requests().len(),
        2,
        "refused calls never reach the provider"
    );
}

/// A zero budget refuses at once; both SDKs raise `RateLimitError`, OpenAI's with the
/// `insufficient_quota` code apps check for.
#[tokio::test]
async fn sdks_see_an_exhausted_budget_as_rate_limit_errors() {
    let Some(py) = sdk_python() else { return };
    let s = Sluice::start_with(|c| c.acme_org = "budget = { daily_usd = 0 }".into()).await;
    let out = run_case(&s, &py, "over_budget").await;
    assert_eq!(out["openai"]["raised"], "RateLimitError", "{out}");
    assert_eq!(out["openai"]["body"]["code"], "insufficient_quota", "{out}");
    assert_eq!(out["anthropic"]["raised"], "RateLimitError", "{out}");
    assert_eq!(
        out["anthropic"]["body"]["error"]["type"], "rate_limit_error",
        "{out}"
    );
    assert!(s.mock.requests().is_empty());
}
