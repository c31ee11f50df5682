//! Shared helpers for the mock provider's integration tests: HTTP calls and SSE parsing.

// Each test crate uses a different subset of these helpers.
#![allow(
    dead_code,
    reason = "each test binary or bench uses a different part of this module"
)]

use std::future::Future;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use sluice_bench::mock::{MockProvider, RecordedRequest};

/// Only a guard against a hung test; nothing here waits on time to synchronise.
pub async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test step hung")
}

/// A mock provider on a free local port and a client to call it; it dereferences to the
/// provider, so its records and settings are at hand.
pub struct Mock {
    pub provider: MockProvider,
    pub client: reqwest::Client,
}

impl std::ops::Deref for Mock {
    type Target = MockProvider;

    fn deref(&self) -> &MockProvider {
        &self.provider
    }
}

impl Mock {
    pub async fn start() -> Mock {
        Mock {
            provider: MockProvider::start("127.0.0.1:0").await.unwrap(),
            client: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.provider.base_url())
    }

    /// `POST path` with a JSON body and the given headers (the `x-mock-*` controls).
    pub async fn post(
        &self,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = self.client.post(self.url(path)).json(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        within(req.send()).await.unwrap()
    }

    /// [`Mock::post`], answered in JSON: the status and the body.
    pub async fn post_json(
        &self,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let resp = self.post(path, body, headers).await;
        let status = resp.status().as_u16();
        (status, within(resp.json()).await.unwrap())
    }

    /// [`Mock::post`], answered 200 with an event stream: its text and its events.
    pub async fn post_sse(
        &self,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> (String, Vec<Event>) {
        let resp = self.post(path, body, headers).await;
        assert_eq!(resp.status(), 200);
        let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        let text = within(resp.text()).await.unwrap();
        let events = parse_sse(&text);
        (text, events)
    }

    /// [`Mock::post`] of [`chat_body`], streamed or not, to the chat completions path.
    pub async fn chat(&self, stream: bool, headers: &[(&str, &str)]) -> reqwest::Response {
        self.post(CHAT, &chat_body(stream), headers).await
    }

    /// [`Mock::post_json`] of [`chat_body`], streamed or not, to the chat completions path.
    pub async fn chat_json(&self, stream: bool, headers: &[(&str, &str)]) -> (u16, Value) {
        self.post_json(CHAT, &chat_body(stream), headers).await
    }

    /// [`Mock::post_sse`] of the streamed [`chat_body`] to the chat completions path.
    pub async fn chat_sse(&self, headers: &[(&str, &str)]) -> (String, Vec<Event>) {
        self.post_sse(CHAT, &chat_body(true), headers).await
    }

    /// `GET path` with the given headers, its JSON body read as `T`.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str, headers: &[(&str, &str)]) -> T {
        let mut req = self.client.get(self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        within(within(req.send()).await.unwrap().json())
            .await
            .unwrap()
    }
}

/// One parsed SSE event: its `event:` name, if any, and its data.
#[derive(Debug)]
pub struct Event {
    pub name: Option<String>,
    pub data: String,
}

impl Event {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

/// A small SSE parser that accepts all three line endings, as the spec allows.
pub fn parse_sse(text: &str) -> Vec<Event> {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut event = Event {
                name: None,
                data: String::new(),
            };
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event: ") {
                    event.name = Some(name.to_owned());
                } else if let Some(data) = line.strip_prefix("data: ") {
                    event.data.push_str(data);
                }
            }
            event
        })
        .collect()
}

/// The chat completions path.
pub const CHAT: &str = "/v1/chat/completions";

/// A chat request of two messages ([`CHAT_INPUT`] tokens), streamed or not.
pub fn chat_body(stream: bool) -> Value {
    json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hello there world"}]}
        ],
        "stream": stream,
    })
}

/// Words (2 + 3) plus 3 per message.
pub const CHAT_INPUT: u64 = 11;

pub async fn only_record(mock: &MockProvider) -> RecordedRequest {
    let records = within(mock.wait_for_settled(1)).await;
    assert_eq!(records.len(), 1);
    records.into_iter().next().unwrap()
}
