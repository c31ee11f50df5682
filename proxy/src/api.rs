//! The inbound API surfaces sluice serves, and which shape (OpenAI or Anthropic) each speaks.

use crate::config::ProviderKind;
use crate::errors::GatewayError;
use crate::usage::Shape;
use http::Method;

/// Whose error format and conventions a path follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    OpenAi,
    Anthropic,
}

impl Family {
    /// For error answers on paths that are not an API surface at all.
    pub fn of_path(path: &str) -> Self {
        if path.starts_with("/v1/messages") {
            Family::Anthropic
        } else {
            Family::OpenAi
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,
    /// `GET /v1/models` (list) and `GET /v1/models/{id}`, answered by sluice itself.
    Models,
    Messages,
    CountTokens,
}

impl Api {
    /// Maps method and path (without query) to a surface: 404 for unknown paths, 405 for a
    /// known path with the wrong method.
    pub fn classify(method: &Method, path: &str) -> Result<Self, GatewayError> {
        let path = path.strip_suffix('/').unwrap_or(path);
        let (api, want) = match path {
            "/v1/chat/completions" => (Api::ChatCompletions, Method::POST),
            "/v1/completions" => (Api::Completions, Method::POST),
            "/v1/embeddings" => (Api::Embeddings, Method::POST),
            "/v1/responses" => (Api::Responses, Method::POST),
            "/v1/messages" => (Api::Messages, Method::POST),
            "/v1/messages/count_tokens" => (Api::CountTokens, Method::POST),
            "/v1/models" => (Api::Models, Method::GET),
            p if p.starts_with("/v1/models/") => (Api::Models, Method::GET),
            _ => return Err(GatewayError::UnknownPath(truncate(path, 200))),
        };
        if *method == want {
            Ok(api)
        } else {
            Err(GatewayError::MethodNotAllowed {
                method: truncate(method.as_str(), 16),
                path: truncate(path, 200),
            })
        }
    }

    pub fn family(self) -> Family {
        match self {
            Api::Messages | Api::CountTokens => Family::Anthropic,
            _ => Family::OpenAi,
        }
    }

    /// The provider protocol this surface needs (there is no translation between them).
    pub fn provider_kind(self) -> ProviderKind {
        match self.family() {
            Family::OpenAi => ProviderKind::OpenAi,
            Family::Anthropic => ProviderKind::Anthropic,
        }
    }

    /// Name carried in usage records and logs.
    pub fn name(self) -> &'static str {
        match self {
            Api::ChatCompletions => "chat.completions",
            Api::Completions => "completions",
            Api::Embeddings => "embeddings",
            Api::Responses => "responses",
            Api::Models => "models",
            Api::Messages => "messages",
            Api::CountTokens => "messages.count_tokens",
        }
    }

    /// How usage is reported in this surface's responses (None: sluice answers itself).
    pub fn shape(self) -> Option<Shape> {
        Some(match self {
            Api::ChatCompletions => Shape::OpenAiChat,
            Api::Completions => Shape::OpenAiCompletions,
            Api::Embeddings => Shape::OpenAiEmbeddings,
            Api::Responses => Shape::OpenAiResponses,
            Api::Messages => Shape::AnthropicMessages,
            Api::CountTokens => Shape::AnthropicCountTokens,
            Api::Models => return None,
        })
    }

    /// Whether an OpenAI streaming request of this surface reports usage only when asked with
    /// `stream_options.include_usage` (so sluice asks on the client's behalf).
    pub fn usage_needs_opt_in(self) -> bool {
        matches!(self, Api::ChatCompletions | Api::Completions)
    }
}

/// Cuts `s` to at most `max` bytes at a char boundary: the bound for user-controlled text kept in
/// records and messages.
pub fn bounded(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// [`bounded`], with `…` marking a cut: for text echoed in error messages.
pub fn truncate(s: &str, max: usize) -> String {
    let kept = bounded(s, max);
    if kept.len() == s.len() {
        s.to_string()
    } else {
        format!("{kept}…")
    }
}
