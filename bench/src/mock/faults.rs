//! Provider-style error bodies, used both for injected faults and for bad client input.
//!
//! SDKs and the gateway classify errors by status and by these bodies, so each flavour
//! follows its provider's documented shape and type names.

use axum::http::StatusCode;
use serde_json::{json, Value};

/// Which provider's conventions a response follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    OpenAi,
    Anthropic,
}

impl Flavor {
    /// The response header each provider uses to echo its request id.
    pub fn request_id_header(self) -> &'static str {
        match self {
            Flavor::OpenAi => "x-request-id",
            Flavor::Anthropic => "request-id",
        }
    }
}

/// An error the mock answers with instead of a normal reply.
#[derive(Debug, Clone)]
pub struct MockError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `param`: the offending request field, when there is one.
    pub param: Option<&'static str>,
}

impl MockError {
    pub fn bad_request(message: impl Into<String>, param: Option<&'static str>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            param,
        }
    }

    pub fn injected(status: StatusCode) -> Self {
        Self {
            status,
            message: format!(
                "mock fault injected by x-mock-status: {} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("Error")
            ),
            param: None,
        }
    }

    /// The JSON body in the given provider's shape.
    pub fn body(&self, flavor: Flavor) -> Value {
        match flavor {
            Flavor::OpenAi => {
                let (kind, code) = openai_type(self.status);
                json!({"error": {
                    "message": self.message,
                    "type": kind,
                    "param": self.param,
                    "code": code,
                }})
            }
            Flavor::Anthropic => json!({
                "type": "error",
                "error": {"type": anthropic_type(self.status), "message": self.message},
            }),
        }
    }
}

/// OpenAI's `type` and `code` for a status, following what the API sends for each class.
fn openai_type(status: StatusCode) -> (&'static str, Option<&'static str>) {
    match status.as_u16() {
        401 => ("invalid_request_error", Some("invalid_api_key")),
        403 => ("permission_error", None),
        404 => ("invalid_request_error", Some("not_found")),
        429 => ("requests", Some("rate_limit_exceeded")),
        500..=599 => ("server_error", None),
        _ => ("invalid_request_error", None),
    }
}

/// Anthropic's documented error types per status.
fn anthropic_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let e = MockError::bad_request("nope", Some("messages"));
        let o = e.body(Flavor::OpenAi);
        assert_eq!(o["error"]["type"], "invalid_request_error");
        assert_eq!(o["error"]["param"], "messages");
        assert!(o["error"]["code"].is_null());
        let a = MockError::injected(StatusCode::from_u16(529).unwrap()).body(Flavor::Anthropic);
        assert_eq!(a["type"], "error");
        assert_eq!(a["error"]["type"], "overloaded_error");
    }
}
