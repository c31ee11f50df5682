//! The HTTP client of the ledger: `POST /v1/events` and `GET /v1/spend` with the ingest token.
//!
//! Outcomes are classified once here so the worker only decides what to do with them: an
//! acknowledgement, a transient failure (retry later, spool meanwhile) or a permanent refusal of
//! the whole batch (retrying the same bytes can never succeed). Error texts never contain the
//! token: reqwest's errors name the URL, which holds none.

use crate::config::{IngestToken, LedgerSettings};
use sluice_wire::{IngestAnswer, SpendAnswer};
use std::time::Duration;

/// How one delivery attempt ended.
#[derive(Debug)]
pub enum Sent {
    /// The ledger stored the batch (possibly rejecting some records, which is final).
    Acked(IngestAnswer),
    /// Worth retrying: unreachable, timed out, 5xx, 429, or our token refused (an operator
    /// can fix that without losing the batch).
    Transient(String),
    /// The ledger refused the batch as a whole (400, 413, …): retrying the same bytes is not
    /// expected to succeed, so the worker retries a few times and then dead-letters it.
    Refused(String),
}

#[derive(Debug, Clone)]
pub struct LedgerClient {
    http: reqwest::Client,
    events: String,
    spend: String,
    token: IngestToken,
}

impl LedgerClient {
    pub fn new(settings: &LedgerSettings) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout.min(Duration::from_secs(2)))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("ledger client: {e}"))?;
        Ok(Self {
            http,
            events: format!("{}/v1/events", settings.url),
            spend: format!("{}/v1/spend", settings.url),
            token: settings.token.clone(),
        })
    }

    /// Posts one batch body (`{"records":[…]}`), bounded by `timeout` as well as the client's.
    pub async fn post_events(&self, body: Vec<u8>, timeout: Duration) -> Sent {
        let request = self
            .http
            .post(&self.events)
            .bearer_auth(self.token.expose())
            .header(http::header::CONTENT_TYPE, "application/json")
            .timeout(timeout)
            .body(body);
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Sent::Transient(describe(&e)),
        };
        let status = response.status();
        if status.is_success() {
            return match response.json::<IngestAnswer>().await {
                Ok(answer) => Sent::Acked(answer),
                // The ledger may have stored the batch; resending is safe (idempotent by id).
                Err(e) => Sent::Transient(format!("unreadable answer: {}", describe(&e))),
            };
        }
        let text = response.text().await.unwrap_or_default();
        let message = format!("HTTP {status}: {}", crate::text::bounded(text.trim(), 200));
        if status.is_server_error()
            || status == http::StatusCode::TOO_MANY_REQUESTS
            || status == http::StatusCode::UNAUTHORIZED
            || status == http::StatusCode::FORBIDDEN
            || status == http::StatusCode::NOT_FOUND
            || status == http::StatusCode::REQUEST_TIMEOUT
        {
            Sent::Transient(message)
        } else {
            Sent::Refused(message)
        }
    }

    /// Reads the spend feed.
    pub async fn spend(&self) -> Result<SpendAnswer, String> {
        let response = self
            .http
            .get(&self.spend)
            .bearer_auth(self.token.expose())
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        response
            .json::<SpendAnswer>()
            .await
            .map_err(|e| describe(&e))
    }
}

/// A short description of a client error (its kind and source chain, without the URL's query,
/// which we never set anyway).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_decode() {
        "bad answer"
    } else {
        "request failed"
    };
    let mut text = kind.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
