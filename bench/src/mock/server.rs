//! The HTTP side of the mock: routing, recording each request, applying header delays and
//! status faults, and turning handler replies into responses.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::control::Controls;
use super::faults::{Flavor, MockError};
use super::record::{Outcome, RecordHandle, RecordedRequest, Recorder};
use super::replay::{self, Replay};
use super::reply::{wants_stream, Ctx, HandlerResult, Reply};
use super::stream::{MockBody, Playback, Rendered};
use super::{anthropic, embeddings, openai, responses};

/// Request bodies above this are refused; benchmarks with long prompts stay far below it.
const MAX_BODY: usize = 64 << 20;

/// What every request handler shares: the records, and where replayed bodies come from.
struct Shared {
    recorder: Arc<Recorder>,
    /// Set only by an embedding test ([`MockProvider::set_replay_dir`]); `None` refuses replay.
    replay_dir: RwLock<Option<PathBuf>>,
    /// Headers every request is handled as if it carried (unless it carries them itself).
    defaults: RwLock<HeaderMap>,
    /// Whether accepted connections are kept (as duplicated sockets) for [`MockProvider::kill`].
    killable: AtomicBool,
    connections: Mutex<Vec<std::net::TcpStream>>,
}

/// A running mock provider. Dropping it stops accepting new connections.
pub struct MockProvider {
    addr: SocketAddr,
    recorder: Arc<Recorder>,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for MockProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockProvider")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MockProvider {
    /// Binds `addr` (e.g. `127.0.0.1:0`) and serves on the current tokio runtime.
    pub async fn start(addr: &str) -> io::Result<Self> {
        Self::from_listener(TcpListener::bind(addr).await?)
    }

    /// Serves on an already bound listener.
    pub fn from_listener(listener: TcpListener) -> io::Result<Self> {
        use axum::serve::ListenerExt as _;

        let addr = listener.local_addr()?;
        let recorder = Recorder::new();
        let shared = Arc::new(Shared {
            recorder: Arc::clone(&recorder),
            replay_dir: RwLock::new(None),
            defaults: RwLock::new(HeaderMap::new()),
            killable: AtomicBool::new(false),
            connections: Mutex::new(Vec::new()),
        });
        let tracker = Arc::clone(&shared);
        let app = Router::new()
            .route("/mock/requests", get(list_requests))
            .route("/mock/reset", post(reset_requests))
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        // Nagle's algorithm would hold back small SSE events and distort latency numbers.
        let listener = listener.tap_io(move |tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::warn!(%err, "could not set TCP_NODELAY");
            }
            if tracker.killable.load(Ordering::Relaxed) {
                use std::os::fd::AsFd as _;
                if let Ok(fd) = tcp.as_fd().try_clone_to_owned() {
                    if let Ok(mut all) = tracker.connections.lock() {
                        all.push(std::net::TcpStream::from(fd));
                    }
                }
            }
        });
        let task = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::error!(%err, "mock provider stopped");
            }
        });
        Ok(Self {
            addr,
            recorder,
            shared,
            task,
        })
    }

    /// Enables `x-mock-replay`: plain file names are served from `dir` (see the `replay`
    /// module). Only tests embedding the mock call this; the binary never replays.
    pub fn set_replay_dir(&self, dir: impl Into<PathBuf>) {
        if let Ok(mut slot) = self.shared.replay_dir.write() {
            *slot = Some(dir.into());
        }
    }

    /// Makes this mock behave as if every request carried `headers` (those it does not carry
    /// itself): one endpoint of several can be made slow (`x-mock-ttft-ms`) or failing
    /// (`x-mock-status`) while the others are not. Only tests embedding the mock call this.
    pub fn set_default_headers(&self, headers: &[(&str, &str)]) {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                map.insert(n, v);
            }
        }
        if let Ok(mut slot) = self.shared.defaults.write() {
            *slot = map;
        }
    }

    /// Keeps every connection accepted from now on, so that [`kill`](Self::kill) can cut it.
    /// Off by default: a long benchmark would otherwise hold every socket it ever accepted.
    pub fn set_killable(&self) {
        self.shared.killable.store(true, Ordering::Relaxed);
    }

    /// Dies as a crashed process would: stops accepting and cuts every kept connection, with
    /// the requests and streams on them (see [`set_killable`](Self::set_killable)).
    pub fn kill(self) {
        self.task.abort();
        if let Ok(mut all) = self.shared.connections.lock() {
            for conn in all.drain(..) {
                let _ = conn.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, handy as an SDK or gateway base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A snapshot of every request since start or the last reset, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.recorder.snapshot()
    }

    /// Keeps at most `max` records (default 100 000), evicting the oldest; zero turns
    /// recording off, which long benchmark runs may want.
    pub fn set_max_records(&self, max: usize) {
        self.recorder.set_max(max);
    }

    /// Every request recorded since start, evicted ones included (records survive `reset`
    /// in this count too): more than [`requests`](Self::requests) holds once the oldest were
    /// evicted.
    pub fn recorded_total(&self) -> u64 {
        self.recorder.total()
    }

    /// The most requests that were in progress at once since start or the last call (which
    /// starts the next peak from those in progress now): what a concurrency cap in front of
    /// the mock let through, seen from the provider's side.
    pub fn take_peak_in_progress(&self) -> usize {
        self.recorder.take_peak()
    }

    /// Forgets all records. Streams still running keep playing but no longer update records.
    pub fn reset(&self) {
        self.recorder.reset();
    }

    /// Waits until `pred` holds for the records and returns them. It never sleeps: every
    /// record change wakes it. Wrap it in `tokio::time::timeout` to bound a failing test.
    pub async fn wait_until<F>(&self, pred: F) -> Vec<RecordedRequest>
    where
        F: FnMut(&[RecordedRequest]) -> bool,
    {
        self.recorder.wait_until(pred).await
    }

    /// Waits until at least `n` requests were recorded.
    pub async fn wait_for_requests(&self, n: usize) -> Vec<RecordedRequest> {
        self.wait_until(|r| r.len() >= n).await
    }

    /// Waits until at least `n` requests were recorded and none is still in progress.
    pub async fn wait_for_settled(&self, n: usize) -> Vec<RecordedRequest> {
        self.wait_until(|r| r.len() >= n && r.iter().all(|x| x.outcome != Outcome::InProgress))
            .await
    }
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn list_requests(State(shared): State<Arc<Shared>>) -> Json<Vec<RecordedRequest>> {
    Json(shared.recorder.snapshot())
}

async fn reset_requests(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.recorder.reset();
    StatusCode::NO_CONTENT
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Chat,
    Completions,
    Embeddings,
    Responses,
    Models,
    Messages,
    CountTokens,
    Unknown,
}

impl Endpoint {
    fn of(method: &Method, path: &str) -> Self {
        let post = method == Method::POST;
        match path {
            "/v1/chat/completions" if post => Self::Chat,
            "/v1/completions" if post => Self::Completions,
            "/v1/embeddings" if post => Self::Embeddings,
            "/v1/responses" if post => Self::Responses,
            "/v1/messages" if post => Self::Messages,
            "/v1/messages/count_tokens" if post => Self::CountTokens,
            "/v1/models" if method == Method::GET => Self::Models,
            _ => Self::Unknown,
        }
    }

    /// Anthropic SDKs always send `anthropic-version`, so it picks the flavour of shared
    /// and unknown paths.
    fn flavor(self, path: &str, headers: &HeaderMap) -> Flavor {
        match self {
            Self::Messages | Self::CountTokens => Flavor::Anthropic,
            _ if path.starts_with("/v1/messages") || headers.contains_key("anthropic-version") => {
                Flavor::Anthropic
            }
            _ => Flavor::OpenAi,
        }
    }
}

/// Marks the record `ClientGone` if the handler future is dropped, which hyper does when
/// the client disconnects while the response headers are being held back.
struct PendingGuard(Option<RecordHandle>);

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if let Some(record) = self.0.take() {
            record.finish(Outcome::ClientGone, 0);
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let recorder = &shared.recorder;
    let (mut parts, body) = req.into_parts();
    if let Ok(defaults) = shared.defaults.read() {
        for (name, value) in defaults.iter() {
            if !parts.headers.contains_key(name) {
                parts.headers.insert(name.clone(), value.clone());
            }
        }
    }
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let endpoint = Endpoint::of(&parts.method, parts.uri.path());
    let flavor = endpoint.flavor(parts.uri.path(), &parts.headers);
    let (bytes, body_error) = match to_bytes(body, MAX_BODY).await {
        Ok(b) => (b, None),
        Err(err) => (
            bytes::Bytes::new(),
            Some(MockError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                message: format!("could not read the request body: {err}"),
                param: None,
            }),
        ),
    };
    let json: Option<Value> = serde_json::from_slice(&bytes).ok();
    let record = recorder.begin(RecordedRequest {
        method: parts.method.to_string(),
        path,
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (k.as_str().to_owned(), v)
            })
            .collect(),
        body: bytes,
        model: json
            .as_ref()
            .and_then(|v| v.get("model"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        stream: json.as_ref().is_some_and(wants_stream),
        usage: None,
        chunks_sent: 0,
        outcome: Outcome::InProgress,
    });
    let request_id = format!("req_mock{}", record.id());
    let controls = match Controls::parse(&parts.headers) {
        Ok(c) => c,
        Err(e) => {
            let err = MockError::bad_request(e.0, None);
            return error_response(flavor, &request_id, &record, &err);
        }
    };
    if let Some(delay) = controls.header_delay {
        let mut guard = PendingGuard(Some(record.clone()));
        tokio::time::sleep(delay).await;
        guard.0 = None;
    }
    if replay::requested(&parts.headers) {
        let dir = shared.replay_dir.read().ok().and_then(|d| d.clone());
        return match replay::load(&parts.headers, dir.as_deref()) {
            Ok(r) => replay_response(flavor, &request_id, record, r),
            Err(e) => {
                let err = MockError::bad_request(e.0, None);
                error_response(flavor, &request_id, &record, &err)
            }
        };
    }
    let ctx = Ctx {
        controls,
        seq: record.id(),
        created: unix_now(),
    };
    let result = match (ctx.controls.status, body_error) {
        (Some(status), _) => Err(MockError::injected(status)),
        (None, Some(err)) => Err(err),
        (None, None) => route(endpoint, &ctx, json.as_ref(), &parts, flavor),
    };
    match result {
        Err(err) => {
            let mut response = error_response(flavor, &request_id, &record, &err);
            // `x-mock-retry-after: N` puts a provider's `retry-after` on an error answer.
            if let Some(wait) = parts.headers.get("x-mock-retry-after") {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, wait.clone());
            }
            response
        }
        Ok(reply) => reply_response(flavor, &request_id, record, &ctx, reply),
    }
}

fn route(
    endpoint: Endpoint,
    ctx: &Ctx,
    json: Option<&Value>,
    parts: &axum::http::request::Parts,
    flavor: Flavor,
) -> HandlerResult {
    let need_json = || {
        json.ok_or_else(|| {
            MockError::bad_request(
                match flavor {
                    Flavor::OpenAi => "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)",
                    Flavor::Anthropic => "There was an issue with your request body: it is not valid JSON.",
                },
                None,
            )
        })
    };
    match endpoint {
        Endpoint::Chat => openai::chat(ctx, need_json()?),
        Endpoint::Completions => openai::completions(ctx, need_json()?),
        Endpoint::Embeddings => embeddings::embeddings(ctx, need_json()?),
        Endpoint::Responses => responses::responses(ctx, need_json()?),
        Endpoint::Messages => anthropic::messages(ctx, need_json()?),
        Endpoint::CountTokens => anthropic::count_tokens(need_json()?),
        Endpoint::Models => {
            let body = match flavor {
                Flavor::OpenAi => embeddings::openai_models(),
                Flavor::Anthropic => embeddings::anthropic_models(),
            };
            Ok(Reply::Json { body, usage: None })
        }
        Endpoint::Unknown => {
            let message = match flavor {
                Flavor::OpenAi => format!("Invalid URL ({} {})", parts.method, parts.uri.path()),
                Flavor::Anthropic => "Not Found".to_owned(),
            };
            Err(MockError {
                status: StatusCode::NOT_FOUND,
                message,
                param: None,
            })
        }
    }
}

fn with_request_id(mut response: Response, flavor: Flavor, request_id: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(flavor.request_id_header()), value);
    }
    response
}

fn error_response(
    flavor: Flavor,
    request_id: &str,
    record: &RecordHandle,
    err: &MockError,
) -> Response {
    record.finish(Outcome::Error(err.status.as_u16()), 0);
    let response = (err.status, Json(err.body(flavor))).into_response();
    with_request_id(response, flavor, request_id)
}

fn reply_response(
    flavor: Flavor,
    request_id: &str,
    record: RecordHandle,
    ctx: &Ctx,
    reply: Reply,
) -> Response {
    let c = &ctx.controls;
    let response = match reply {
        Reply::Json { body, usage } => {
            record.set_usage(usage);
            let bytes = bytes::Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
            let json_type = [(CONTENT_TYPE, HeaderValue::from_static("application/json"))];
            if c.fragment.is_none() && c.drop_after.is_none() && c.stall_after.is_none() {
                record.finish(Outcome::Completed, 1);
                (json_type, bytes).into_response()
            } else {
                // Non-stream faults cut the body in half: any drop or stall count means
                // "after the first half", which is what truncation tests need.
                let playback = Playback {
                    fragment: c.fragment,
                    drop_after: c.drop_after.map(|_| 1),
                    stall_after: c.stall_after.map(|_| 1),
                    flush_each: false,
                };
                let body = MockBody::new(Rendered::halves(bytes), playback, record);
                (json_type, Body::from_stream(body)).into_response()
            }
        }
        Reply::Stream { rendered, usage } => {
            record.set_usage(Some(usage));
            let playback = Playback {
                fragment: c.fragment,
                drop_after: c.drop_after,
                stall_after: c.stall_after,
                flush_each: false,
            };
            let body = MockBody::new(rendered, playback, record);
            let headers = [
                (
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream; charset=utf-8"),
                ),
                (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ];
            (headers, Body::from_stream(body)).into_response()
        }
    };
    with_request_id(response, flavor, request_id)
}

/// A recorded body played back byte for byte with the requested write boundaries.
fn replay_response(flavor: Flavor, request_id: &str, record: RecordHandle, r: Replay) -> Response {
    let playback = Playback {
        flush_each: true,
        ..Playback::default()
    };
    let body = MockBody::new(r.rendered, playback, record);
    let mut response = (r.status, Body::from_stream(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(r.content_type));
    if r.gzip {
        headers.insert(CONTENT_ENCODING, replay::GZIP);
    }
    with_request_id(response, flavor, request_id)
}
