//! The request every run sends, rendered once: body bytes and headers. Each send clones
//! them (reference counts for the body and header values, one small map allocation).

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use serde_json::{json, Value};

use super::plan::{Api, AuthScheme, Plan};

/// Anthropic requires `max_tokens`; this is used when the plan gives none.
const ANTHROPIC_DEFAULT_MAX_TOKENS: u32 = 4096;

/// A prompt of exactly `n` bytes of ASCII words, so token counts scale with it.
fn prompt(n: usize) -> String {
    const WORD: &str = "hello ";
    let mut s = WORD.repeat(n / WORD.len() + 1);
    s.truncate(n);
    s
}

/// The pre-rendered request.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Template {
    pub(crate) fn new(plan: &Plan) -> Result<Self, http::Error> {
        let mut body = json!({
            "model": plan.model,
            "messages": [{"role": "user", "content": prompt(plan.prompt_bytes)}],
            "stream": plan.stream,
        });
        let max_tokens = match (plan.api, plan.max_tokens) {
            (_, Some(n)) => Some(n),
            (Api::Anthropic, None) => Some(ANTHROPIC_DEFAULT_MAX_TOKENS),
            (Api::Openai, None) => None,
        };
        if let (Some(n), Value::Object(map)) = (max_tokens, &mut body) {
            map.insert("max_tokens".to_owned(), n.into());
        }
        let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());

        let uri: Uri = format!("{}{}", plan.target.prefix(), plan.api.path()).parse()?;
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_str(plan.target.authority())?);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if plan.stream {
            headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        }
        if plan.api == Api::Anthropic {
            headers.insert(
                HeaderName::from_static("anthropic-version"),
                HeaderValue::from_static("2023-06-01"),
            );
        }
        if let Some(auth) = &plan.auth {
            let (name, text) = match auth.scheme {
                AuthScheme::Bearer => (AUTHORIZATION, format!("Bearer {}", auth.value.expose())),
                AuthScheme::XApiKey => (
                    HeaderName::from_static("x-api-key"),
                    auth.value.expose().to_owned(),
                ),
            };
            let mut value = HeaderValue::from_str(&text)?;
            // Sensitive values are left out of hyper's and http's debug output.
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        for (name, value) in &plan.headers {
            headers.append(name.clone(), value.clone());
        }
        Ok(Self { uri, headers, body })
    }

    pub(crate) fn request(&self) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }
}

#[cfg(test)]
mod tests {
    use super::super::plan::{Auth, Mode, Secret, Target};
    use super::*;

    #[test]
    fn renders_both_apis() {
        let target = Target::parse("http://127.0.0.1:9/p").unwrap();
        let mut plan = Plan::new(target, Api::Anthropic, Mode::Closed { clients: 1 });
        plan.prompt_bytes = 10;
        plan.stream = true;
        plan.auth = Some(Auth {
            scheme: AuthScheme::XApiKey,
            value: Secret::new("k"),
        });
        plan.header("x-mock-chunks: 4").unwrap();
        let req = Template::new(&plan).unwrap().request();
        assert_eq!(req.uri(), "/p/v1/messages");
        assert_eq!(req.headers()["host"], "127.0.0.1:9");
        assert_eq!(req.headers()["x-api-key"], "k");
        assert!(req.headers()["x-api-key"].is_sensitive());
        assert_eq!(req.headers()["anthropic-version"], "2023-06-01");
        assert_eq!(req.headers()["x-mock-chunks"], "4");
        let t = Template::new(&plan).unwrap();
        let body: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(body["messages"][0]["content"], "hello hell");
        assert_eq!(body["max_tokens"], 4096);
        assert_eq!(body["stream"], true);

        plan.api = Api::Openai;
        plan.stream = false;
        plan.auth = Some(Auth {
            scheme: AuthScheme::Bearer,
            value: Secret::new("k"),
        });
        let t = Template::new(&plan).unwrap();
        assert_eq!(t.request().headers()["authorization"], "Bearer k");
        let body: Value = serde_json::from_slice(&t.body).unwrap();
        assert!(body.get("max_tokens").is_none());
    }
}
