//! Request body: the few fields routing and metering need, read with a borrowed serde struct (no
//! JSON tree), and the one rewrite sluice makes (asking for streamed usage).

use crate::errors::GatewayError;
use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// What sluice reads from a request body. Unknown fields are skipped by serde without building
/// values, so the cost is one validating pass over the bytes.
#[derive(Debug, Default, Deserialize)]
pub struct RequestFields<'a> {
    /// Kept raw so an alias route can replace exactly this value.
    #[serde(borrow, default, rename = "model")]
    model_raw: Option<&'a RawValue>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
    /// Kept raw (including a literal `null`) so the include_usage rewrite can replace exactly it.
    #[serde(borrow, default, deserialize_with = "present_raw")]
    stream_options: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub user: Option<Cow<'a, str>>,
    #[serde(skip)]
    model: Option<Cow<'a, str>>,
}

fn present_raw<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct StreamOptionsProbe {
    #[serde(default)]
    include_usage: Option<bool>,
}

impl<'a> RequestFields<'a> {
    /// Parses a JSON object body; anything else is a 400 with a message naming the problem.
    pub fn parse(body: &'a [u8]) -> Result<Self, GatewayError> {
        let mut fields: Self = serde_json::from_slice(body).map_err(|e| {
            GatewayError::InvalidBody(format!(
                "the request body is not a valid JSON object: {}",
                crate::text::truncate(&e.to_string(), 200)
            ))
        })?;
        if let Some(raw) = fields.model_raw {
            let model: Cow<'a, str> = serde_json::from_str(raw.get())
                .map_err(|_| GatewayError::InvalidBody("`model` must be a string".to_string()))?;
            fields.model = Some(model);
        }
        Ok(fields)
    }

    /// The requested model, if the body names one.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// The output cap the request asked for, whichever field name its API uses.
    pub fn max_output(&self) -> Option<u64> {
        self.max_completion_tokens
            .or(self.max_tokens)
            .or(self.max_output_tokens)
    }

    pub fn is_stream(&self) -> bool {
        self.stream == Some(true)
    }

    /// Whether the client itself asked for `stream_options.include_usage = true`.
    pub fn client_wants_usage(&self) -> bool {
        self.stream_options
            .and_then(|raw| serde_json::from_str::<StreamOptionsProbe>(raw.get()).ok())
            .and_then(|p| p.include_usage)
            == Some(true)
    }
}

/// The byte range of `raw` inside `body` (it borrows from it).
fn span(body: &[u8], raw: &RawValue) -> Option<(usize, usize)> {
    let text = raw.get();
    let start = (text.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    let end = start.checked_add(text.len())?;
    (end <= body.len()).then_some((start, end))
}

/// The upstream body for a target that knows the model as `target_model` (`None`: the
/// requested name), and the model name it sends: `body` parsed again and rewritten (a failover
/// between targets with different model names, so rare). `None` if the body has no model.
pub fn for_target(
    body: &Bytes,
    target_model: Option<&str>,
    include_usage: bool,
) -> Option<(Bytes, String)> {
    let fields = RequestFields::parse(body).ok()?;
    let requested = fields.model()?;
    let alias = target_model.filter(|m| *m != requested);
    let out = rewrite(body, &fields, alias, include_usage).unwrap_or_else(|| body.clone());
    Some((out, alias.unwrap_or(requested).to_string()))
}

/// Returns `body` with the requested edits and nothing else changed: `model` replaced by
/// `upstream_model` (alias routes), and/or `stream_options.include_usage = true` set (replacing
/// the `stream_options` value, its other members kept, or inserting the member first in the
/// object). `None` when there is nothing to change or the body cannot be rewritten safely (then
/// it goes unchanged, and usage is estimated if the provider never reports it).
pub fn rewrite(
    body: &Bytes,
    fields: &RequestFields<'_>,
    upstream_model: Option<&str>,
    include_usage: bool,
) -> Option<Bytes> {
    // At most two edits, each (start, end, replacement); an insertion has start == end.
    let mut edits: Vec<(usize, usize, Vec<u8>)> = Vec::with_capacity(2);
    if let (Some(m), Some(raw)) = (upstream_model, fields.model_raw) {
        let (s, e) = span(body, raw)?;
        edits.push((s, e, serde_json::to_vec(m).ok()?));
    }
    if include_usage {
        match fields.stream_options {
            Some(raw) => {
                let (s, e) = span(body, raw)?;
                let mut options = match serde_json::from_str::<serde_json::Value>(raw.get()).ok()? {
                    serde_json::Value::Null => serde_json::Map::new(),
                    serde_json::Value::Object(map) => map,
                    _ => return None, // the provider will reject it; do not make it worse
                };
                options.insert("include_usage".into(), serde_json::Value::Bool(true));
                edits.push((s, e, serde_json::to_vec(&options).ok()?));
            }
            None => {
                let open = body.iter().position(|b| !b.is_ascii_whitespace())?;
                if body.get(open) != Some(&b'{') {
                    return None;
                }
                let member = br#""stream_options":{"include_usage":true},"#.to_vec();
                edits.push((open + 1, open + 1, member));
            }
        }
    }
    if edits.is_empty() {
        return None;
    }
    edits.sort_by_key(|e| e.0);
    let extra: usize = edits.iter().map(|e| e.2.len()).sum();
    let mut out = BytesMut::with_capacity(body.len() + extra);
    let mut at = 0;
    for (s, e, replacement) in &edits {
        out.put_slice(body.get(at..*s)?);
        out.put_slice(replacement);
        at = *e;
    }
    out.put_slice(body.get(at..)?);
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn rewritten(text: &str) -> Value {
        let body = Bytes::from(text.to_string());
        let fields = RequestFields::parse(&body).unwrap();
        let out = rewrite(&body, &fields, None, true).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn extracts_fields_without_copying_plain_strings() {
        let body = br#"{"messages":[{"role":"user","content":"hi"}],"model":"gpt-4o","stream":true,"max_tokens":12,"user":"u1"}"#;
        let f = RequestFields::parse(body).unwrap();
        assert_eq!(f.model(), Some("gpt-4o"));
        assert!(f.is_stream());
        assert_eq!(f.max_output(), Some(12));
        assert_eq!(f.user.as_deref(), Some("u1"));
        assert!(!f.client_wants_usage());
    }

    #[test]
    fn escaped_model_names_are_decoded() {
        let f = RequestFields::parse(br#"{"model":"a\u002fb"}"#).unwrap();
        assert_eq!(f.model(), Some("a/b"));
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for bad in [
            &b"not json"[..],
            b"[1,2]",
            b"{\"model\":",
            b"",
            b"{\"model\":1}",
            b"{\"model\":\"a\",\"model\":\"b\"}",
        ] {
            let e = RequestFields::parse(bad).unwrap_err();
            assert_eq!(e.status(), 400, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn inserts_stream_options_when_absent() {
        let v = rewritten(r#" {"model":"m","stream":true,"messages":[]}"#);
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["model"], "m");
        assert_eq!(v["messages"], Value::Array(vec![]));
    }

    #[test]
    fn replaces_existing_stream_options_keeping_other_members() {
        let v = rewritten(
            r#"{"model":"m","stream_options":{"include_usage":false,"x":1},"stream":true}"#,
        );
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["stream_options"]["x"], 1);
        let v = rewritten(r#"{"model":"m","stream_options":null,"stream":true}"#);
        assert_eq!(v["stream_options"]["include_usage"], true);
    }

    #[test]
    fn alias_and_usage_edits_compose() {
        let body =
            Bytes::from_static(br#"{"stream_options":{"x":2},"model":"fast","stream":true}"#);
        let f = RequestFields::parse(&body).unwrap();
        let v: Value =
            serde_json::from_slice(&rewrite(&body, &f, Some("gpt-4o-mini"), true).unwrap())
                .unwrap();
        assert_eq!(v["model"], "gpt-4o-mini");
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["stream_options"]["x"], 2);
        assert!(rewrite(&body, &f, None, false).is_none());
    }

    #[test]
    fn client_opt_in_is_detected() {
        let f = RequestFields::parse(br#"{"model":"m","stream_options":{"include_usage":true}}"#)
            .unwrap();
        assert!(f.client_wants_usage());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let body = Bytes::from(bytes);
            if let Ok(f) = RequestFields::parse(&body) {
                if let Some(out) = rewrite(&body, &f, Some("x"), true) {
                    let v: Value = serde_json::from_slice(&out).unwrap();
                    proptest::prop_assert_eq!(&v["stream_options"]["include_usage"], &Value::Bool(true));
                }
            }
        }
    }
}
