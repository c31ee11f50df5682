//! First end-to-end check: a chat completion through a real sluice to the mock, both shapes.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(clippy::panic, reason = "test code: a panic fails the test")]

mod common;
use common::*;

#[tokio::test]
async fn chat_completion_round_trip_and_record() {
    let mut s = Sluice::start().await;
    let resp = s.post_chat(&[], &chat("mock-gpt", false)).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    let body: serde_json::Value = resp.json().await.unwrap();
    let mock = s.mock.requests();
    let truth = mock[0].usage.unwrap();
    assert_eq!(body["usage"]["prompt_tokens"], truth.input_tokens);
    let rec = s.next_record().await;
    assert_eq!(rec["org"], "acme");
    assert_eq!(rec["status"], 200);
    assert_eq!(rec["input_tokens"], truth.input_tokens);
    assert_eq!(rec["output_tokens"], truth.output_tokens);
    assert_eq!(rec["estimated"], false);
}
