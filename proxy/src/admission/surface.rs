//! Which API surface a request addresses: the first admission step, before any key is read.

use crate::api::Api;
use crate::errors::GatewayError;
use crate::text::truncate;
use http::Method;

/// Maps method and path (without query) to a surface: 404 for unknown paths, 405 for a
/// known path with the wrong method.
pub fn classify(method: &Method, path: &str) -> Result<Api, GatewayError> {
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
