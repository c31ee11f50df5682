//! The protocol vocabulary: the inbound API surfaces sluice serves ([`Api`]) and the protocol
//! family each speaks ([`Family`]). Everything else that depends on "which protocol" derives from
//! these two: the error shape and rate-limit headers from the family, the provider a route needs
//! (a provider speaks one family; sluice never translates), and where a response reports its
//! usage from the surface. This module depends on nothing else in the crate.

/// A protocol family: whose error format, headers and conventions a surface follows, and which
/// wire protocol a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// Every surface whose answers report usage (all but the model list), for tests and fuzzing.
    pub const REPORTING_USAGE: [Api; 6] = [
        Api::ChatCompletions,
        Api::Completions,
        Api::Embeddings,
        Api::Responses,
        Api::Messages,
        Api::CountTokens,
    ];

    pub fn family(self) -> Family {
        match self {
            Api::Messages | Api::CountTokens => Family::Anthropic,
            _ => Family::OpenAi,
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

    /// Whether this surface's answers come from a provider and report usage (the model list is
    /// sluice's own answer).
    pub fn reports_usage(self) -> bool {
        self != Api::Models
    }

    /// Whether an OpenAI streaming request of this surface reports usage only when asked with
    /// `stream_options.include_usage` (so sluice asks on the client's behalf).
    pub fn usage_needs_opt_in(self) -> bool {
        matches!(self, Api::ChatCompletions | Api::Completions)
    }
}
