//! Deterministic token counting and the generated answer text.
//!
//! Counts depend only on message text, never on other body fields, so a gateway that adds
//! `stream_options` or rewrites `model` cannot change them. See the module doc of
//! [`crate::mock`] for the rule.

use std::fmt::Write as _;

use serde_json::Value;

/// Tokens charged per message on top of its words, mimicking role and framing tokens.
pub const MESSAGE_OVERHEAD: u64 = 3;

fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// Words in a content value: a plain string, or an array of parts whose `text` fields count
/// (tool results nest their own `content`, which counts the same way). Images and other
/// non-text parts count nothing.
pub fn content_words(content: &Value) -> u64 {
    match content {
        Value::String(s) => words(s),
        Value::Array(parts) => parts
            .iter()
            .map(|part| match part {
                Value::String(s) => words(s),
                Value::Object(obj) => {
                    obj.get("text").and_then(Value::as_str).map_or(0, words)
                        + obj.get("content").map_or(0, content_words)
                }
                _ => 0,
            })
            .sum(),
        _ => 0,
    }
}

/// One message-like item: words of its content plus the per-message overhead.
fn message_tokens(message: &Value) -> u64 {
    MESSAGE_OVERHEAD + message.get("content").map_or(0, content_words)
}

/// OpenAI chat: every message in `messages`.
pub fn chat_input(body: &Value) -> u64 {
    body.get("messages")
        .and_then(Value::as_array)
        .map_or(0, |msgs| msgs.iter().map(message_tokens).sum())
}

/// Anthropic messages and count_tokens: `system` counts as one more message.
pub fn anthropic_input(body: &Value) -> u64 {
    let system = body
        .get("system")
        .map_or(0, |s| MESSAGE_OVERHEAD + content_words(s));
    system + chat_input(body)
}

/// Responses API: `instructions` and a string `input` count as one message each; an array
/// `input` counts each item, using `content` for messages and `output` for tool outputs.
pub fn responses_input(body: &Value) -> u64 {
    let instructions = body
        .get("instructions")
        .and_then(Value::as_str)
        .map_or(0, |s| MESSAGE_OVERHEAD + words(s));
    let input = match body.get("input") {
        Some(Value::String(s)) => MESSAGE_OVERHEAD + words(s),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                MESSAGE_OVERHEAD
                    + item.get("content").map_or(0, content_words)
                    + item.get("output").map_or(0, content_words)
            })
            .sum(),
        _ => 0,
    };
    instructions + input
}

/// Legacy completions `prompt` and embeddings `input`: words of each string, or the length
/// of each token array, with no per-message overhead. Returns the total and the item count.
pub fn prompt_items(value: Option<&Value>) -> Vec<u64> {
    match value {
        Some(Value::String(s)) => vec![words(s)],
        Some(Value::Array(items)) if items.iter().all(Value::is_number) => {
            vec![items.len() as u64]
        }
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => words(s),
                Value::Array(toks) => toks.len() as u64,
                _ => 0,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The first token cap found among `fields` that is a non-negative integer.
pub fn cap(body: &Value, fields: &[&str]) -> Option<u64> {
    fields
        .iter()
        .find_map(|f| body.get(*f).and_then(Value::as_u64))
}

/// Writes the text of content chunk `i`: `tok{i} `, padded with `x` or cut to exactly
/// `chunk_bytes` bytes when that is set. Only ASCII letters, digits and spaces are produced,
/// so the text can be spliced into JSON without escaping.
pub fn write_chunk_text<W: std::fmt::Write>(out: &mut W, i: usize, chunk_bytes: Option<usize>) {
    // Formatting into a stack buffer keeps the per-chunk path free of heap allocations.
    let mut natural = StackText::default();
    let _ = write!(natural, "tok{i} ");
    let natural = natural.as_str();
    let _ = match chunk_bytes {
        None => out.write_str(natural),
        Some(n) if n <= natural.len() => out.write_str(natural.get(..n).unwrap_or(natural)),
        Some(n) => out
            .write_str(natural)
            .and_then(|()| (natural.len()..n).try_for_each(|_| out.write_char('x'))),
    };
}

/// A fixed buffer large enough for `tok{usize::MAX} `.
#[derive(Default)]
struct StackText {
    buf: [u8; 32],
    len: usize,
}

impl StackText {
    fn as_str(&self) -> &str {
        // Only ASCII is ever written, so this never falls back.
        self.buf
            .get(..self.len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// The whole answer: the concatenation of every chunk's text.
pub fn full_text(chunks: usize, chunk_bytes: Option<usize>) -> String {
    let mut s = String::with_capacity(chunks * chunk_bytes.unwrap_or(8));
    for i in 0..chunks {
        write_chunk_text(&mut s, i, chunk_bytes);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chat_counts_words_plus_overhead() {
        let body = json!({"messages":[
            {"role":"system","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"hello there world"},{"type":"image_url"}]}
        ], "stream_options":{"include_usage":true}});
        assert_eq!(chat_input(&body), 3 + 2 + 3 + 3);
    }

    #[test]
    fn anthropic_counts_system_and_tool_results() {
        let body = json!({"system":"a b","messages":[{"role":"user","content":[
            {"type":"tool_result","tool_use_id":"x","content":[{"type":"text","text":"one two"}]}
        ]}]});
        assert_eq!(anthropic_input(&body), 5 + 5);
    }

    #[test]
    fn chunk_text_padding() {
        let mut s = String::new();
        write_chunk_text(&mut s, 3, None);
        assert_eq!(s, "tok3 ");
        s.clear();
        write_chunk_text(&mut s, 3, Some(8));
        assert_eq!(s, "tok3 xxx");
        s.clear();
        write_chunk_text(&mut s, 12, Some(2));
        assert_eq!(s, "to");
        assert_eq!(full_text(2, None), "tok0 tok1 ");
    }

    #[test]
    fn prompt_shapes() {
        assert_eq!(prompt_items(Some(&json!("a b c"))), vec![3]);
        assert_eq!(prompt_items(Some(&json!([1, 2]))), vec![2]);
        assert_eq!(prompt_items(Some(&json!(["a", [1, 2, 3]]))), vec![1, 3]);
    }
}
