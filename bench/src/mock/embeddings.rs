//! OpenAI embeddings and the model catalogues of both providers.
//!
//! Official OpenAI SDKs ask for `encoding_format: "base64"` unless the caller chose a
//! format, and decode little-endian `f32` bytes, so both encodings are served.

use serde_json::{json, Value};

use super::control::DEFAULT_DIMS;
use super::faults::MockError;
use super::record::MockUsage;
use super::reply::{require_model, Ctx, HandlerResult, Reply};
use super::tokens;

/// Largest `dimensions` a body may ask for; the header has its own bound.
const MAX_BODY_DIMS: u64 = 1 << 16;

/// FNV-1a, so vectors depend on the input text and nothing else.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A deterministic vector of small floats (within ±0.1) for one input item.
pub fn vector(seed_text: &[u8], dims: usize) -> Vec<f32> {
    let seed = fnv1a(seed_text);
    (0..dims as u64)
        .map(|d| {
            let h =
                (seed ^ d.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_mul(0xff51_afd7_ed55_8ccd);
            // The modulus keeps the value below 2001, which an f32 represents exactly.
            ((h >> 33) % 2001) as f32 / 10_000.0 - 0.1
        })
        .collect()
}

/// Standard base64 with padding, as the SDKs decode it.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [
            group.first().copied().unwrap_or(0),
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= group.len() {
                let index = ((n >> (18 - 6 * i)) & 63) as usize;
                out.push(char::from(ALPHABET.get(index).copied().unwrap_or(b'A')));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The text a vector is derived from: the string itself, or the JSON of a token array.
fn seed_of(item: &Value) -> Vec<u8> {
    match item {
        Value::String(s) => s.as_bytes().to_vec(),
        other => other.to_string().into_bytes(),
    }
}

/// `POST /v1/embeddings`.
pub fn embeddings(ctx: &Ctx, body: &Value) -> HandlerResult {
    let model = require_model(body, "you must provide a model parameter")?;
    let input = body.get("input");
    let items: Vec<&Value> = match input {
        Some(Value::String(_)) => input.into_iter().collect(),
        Some(Value::Array(list)) if list.iter().all(Value::is_number) => {
            input.into_iter().collect()
        }
        Some(Value::Array(list)) if !list.is_empty() => list.iter().collect(),
        _ => {
            return Err(MockError::bad_request(
                "'input' must be a non-empty string or array",
                Some("input"),
            ))
        }
    };
    let dims = match (ctx.controls.dims, body.get("dimensions")) {
        (Some(d), _) => d,
        (None, None) => DEFAULT_DIMS,
        (None, Some(v)) => match v.as_u64() {
            Some(d) if (1..=MAX_BODY_DIMS).contains(&d) => {
                usize::try_from(d).unwrap_or(DEFAULT_DIMS)
            }
            _ => {
                return Err(MockError::bad_request(
                    "'dimensions' must be a positive integer",
                    Some("dimensions"),
                ))
            }
        },
    };
    let base64_format = body.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let data: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let v = vector(&seed_of(item), dims);
            let embedding = if base64_format {
                let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
                Value::String(base64(&bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let prompt_tokens: u64 = tokens::prompt_items(input).iter().sum();
    let usage = MockUsage {
        input_tokens: prompt_tokens,
        ..MockUsage::default()
    };
    let body = json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    });
    Ok(Reply::Json {
        body,
        usage: Some(usage),
    })
}

/// `GET /v1/models` in OpenAI's shape.
pub fn openai_models() -> Value {
    let data: Vec<Value> = [
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "text-embedding-3-small",
        "mock-model",
    ]
    .iter()
    .map(|id| json!({"id": id, "object": "model", "created": 1_715_367_049, "owned_by": "system"}))
    .collect();
    json!({"object": "list", "data": data})
}

/// `GET /v1/models` in Anthropic's shape, chosen when the request carries
/// `anthropic-version`, as Anthropic SDKs always send it.
pub fn anthropic_models() -> Value {
    let ids = ["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"];
    let data: Vec<Value> = ids
        .iter()
        .map(|id| {
            json!({"type": "model", "id": id, "display_name": id, "created_at": "2025-01-01T00:00:00Z"})
        })
        .collect();
    json!({"data": data, "has_more": false, "first_id": ids[0], "last_id": ids[2]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn vectors_are_deterministic_and_small() {
        let a = vector(b"hello", 8);
        assert_eq!(a, vector(b"hello", 8));
        assert_ne!(a, vector(b"world", 8));
        assert!(a.iter().all(|x| x.abs() <= 0.1 + f32::EPSILON));
    }
}
