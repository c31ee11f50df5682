//! A mock OpenAI/Anthropic-compatible provider for gateway tests and benchmarks.
//!
//! Start it in-process with [`MockProvider::start`] (`"127.0.0.1:0"` picks a free port) or
//! run the `sluice-mock` binary. Responses follow the providers' wire formats closely enough
//! for the official SDKs to parse them through the gateway.
//!
//! # Endpoints
//!
//! OpenAI: `POST /v1/chat/completions`, `POST /v1/completions`, `POST /v1/embeddings`,
//! `POST /v1/responses`, `GET /v1/models`. Anthropic: `POST /v1/messages`,
//! `POST /v1/messages/count_tokens`, and `GET /v1/models` when the request carries
//! `anthropic-version`. Control: `GET /mock/requests` (records as JSON) and
//! `POST /mock/reset`; these two are not recorded. Any other path is recorded and answered
//! with a provider-style 404.
//!
//! # Token counts
//!
//! Counts are deterministic and depend only on message text, so a gateway that adds
//! `stream_options` or rewrites other fields cannot change them:
//!
//! - A *word* is a whitespace-separated run in any text content (strings, or `text` fields
//!   of content parts, including text nested in tool results). Images count nothing.
//! - Chat and Anthropic input: for every message, its words plus 3; Anthropic's `system`
//!   counts as one more message. Responses input: `instructions` and each `input` item (or a
//!   string `input`) count as messages the same way.
//! - Legacy completions `prompt` and embeddings `input`: words of each string (or the length
//!   of each token array), with no per-message overhead.
//! - Output: one token per content chunk; chunk `i` carries the text `tok{i} `. The chunk
//!   count is `x-mock-chunks` (default 8), capped by `max_completion_tokens`/`max_tokens`
//!   (chat), `max_tokens` (completions, Anthropic) or `max_output_tokens` (Responses). A cap
//!   below the chunk count gives `finish_reason: "length"`, `stop_reason: "max_tokens"` or a
//!   Responses stream ending in `response.incomplete`.
//! - `x-mock-reasoning-tokens: N` adds N to output tokens and reports them as reasoning
//!   tokens. `x-mock-cached-tokens: N` reports N cached prompt tokens: on OpenAI shapes they
//!   are part of `prompt_tokens`/`input_tokens` (clamped to it); on Anthropic they are
//!   `cache_read_input_tokens`, in addition to `input_tokens`, as is
//!   `x-mock-cache-write-tokens` (`cache_creation_input_tokens`).
//!
//! # Control headers
//!
//! | header | effect |
//! | --- | --- |
//! | `x-mock-chunks: N` | content chunks (default 8) |
//! | `x-mock-chunk-bytes: N` | each chunk's text padded with `x` (or cut) to exactly N bytes |
//! | `x-mock-ttft-ms: N` | pause before the first SSE event |
//! | `x-mock-gap-ms: N` | pause before each content chunk after the first |
//! | `x-mock-line-ending: lf\|crlf\|cr` | SSE line terminator |
//! | `x-mock-fragment: N` | write each event (or a non-stream body) in frames of N bytes |
//! | `x-mock-status: CODE` | answer with this 4xx/5xx status and a provider error body |
//! | `x-mock-retry-after: N` | with `x-mock-status`, send `retry-after: N` on the error answer |
//! | `x-mock-drop-after: K` | send K events, then cut the connection without the final chunk |
//! | `x-mock-stall-after: K` | send K events, then send nothing until the client leaves |
//! | `x-mock-header-delay-ms: N` | wait before sending response headers |
//! | `x-mock-cached-tokens`, `x-mock-reasoning-tokens`, `x-mock-cache-write-tokens` | see above |
//! | `x-mock-dims: N` | embedding width (else the body's `dimensions`, else 8) |
//! | `x-mock-replay: NAME` | replay a recorded body byte for byte, when enabled (see [`replay`]) |
//!
//! Events are counted over the whole SSE stream (role chunk, finish chunk and `[DONE]`
//! included). On non-stream replies any drop or stall count cuts the body after its first
//! half, and a fragmented non-stream body is sent chunked. A malformed control header is
//! answered with a 400.
//!
//! # Recording
//!
//! Every request becomes a [`RecordedRequest`]; its [`Outcome`] is updated when the reply
//! finishes, is cut, stalls, or when the client disconnects mid-stream, and
//! [`MockProvider::wait_until`] wakes on every such change. At most
//! [`DEFAULT_MAX_RECORDS`] are kept unless [`MockProvider::set_max_records`] says otherwise.

mod anthropic;
mod control;
mod embeddings;
mod faults;
mod openai;
mod record;
mod replay;
mod reply;
mod responses;
mod server;
mod stream;
mod tokens;

pub use control::{DEFAULT_CHUNKS, DEFAULT_DIMS};
pub use record::{MockUsage, Outcome, RecordedRequest, DEFAULT_MAX_RECORDS};
pub use server::MockProvider;
pub use tokens::MESSAGE_OVERHEAD;
