//! The load the scenarios drive: a fixed number of requests, a fixed number at a time, mixing
//! OpenAI chat (plain and streamed) and streamed Anthropic messages.

use futures_util::{stream, StreamExt};
use serde_json::json;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Answered 200 and read to the end.
    pub ok: usize,
    /// Anything else (refused connections while a proxy restarts, cut streams).
    pub failed: usize,
}

/// Sends `n` requests, `concurrency` at a time, to the proxy at `base` with `key`.
pub async fn drive(base: &str, key: &str, n: usize, concurrency: usize) -> Tally {
    let client = reqwest::Client::builder()
        .timeout(crate::WAIT)
        .build()
        .expect("client");
    let results: Vec<bool> = stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            async move {
                let req = match i % 3 {
                    0 => client
                        .post(format!("{base}/v1/chat/completions"))
                        .bearer_auth(key)
                        .json(&json!({"model": "mock-gpt", "messages": [{"role": "user", "content": "count to eight"}]})),
                    1 => client
                        .post(format!("{base}/v1/chat/completions"))
                        .bearer_auth(key)
                        .header("x-mock-chunks", "12")
                        .json(&json!({"model": "mock-gpt", "stream": true, "messages": [{"role": "user", "content": "stream please"}]})),
                    _ => client
                        .post(format!("{base}/v1/messages"))
                        .header("x-api-key", key)
                        .header("anthropic-version", "2023-06-01")
                        .header("x-mock-chunks", "6")
                        .json(&json!({"model": "mock-claude", "max_tokens": 64, "stream": true, "messages": [{"role": "user", "content": "hello there"}]})),
                };
                match req.send().await {
                    Ok(r) if r.status() == 200 => r.bytes().await.is_ok(),
                    _ => false,
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let ok = results.iter().filter(|r| **r).count();
    Tally { ok, failed: n - ok }
}
