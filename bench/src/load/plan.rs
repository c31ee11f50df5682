//! What a load run does: the target, the request shape, the arrival model and its bounds.
//!
//! A [`Plan`] is plain data so that the harness can build one in-process; [`Plan::validate`]
//! enforces the hard caps and the loopback-only rule before anything is sent.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use http::{HeaderName, HeaderValue};

/// Longest run allowed, whatever the caller asks for.
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// Most requests one run may plan.
pub const MAX_REQUESTS: u64 = 10_000_000;
/// Most closed-loop clients (each holds one connection).
pub const MAX_CLIENTS: usize = 10_000;
/// Most requests outstanding at once in open loop.
pub const MAX_OUTSTANDING: usize = 100_000;
/// Highest open-loop arrival rate, in requests per second.
pub const MAX_RATE: f64 = 1_000_000.0;
/// Longest per-request timeout.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// Largest generated prompt, in bytes.
pub const MAX_PROMPT_BYTES: usize = 16 << 20;

/// Why a plan was refused.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("invalid target URL {0:?}: {1}")]
    Url(String, &'static str),
    #[error(
        "target {0} is not a loopback address; sluice-load only connects to 127.0.0.0/8 or ::1"
    )]
    NotLoopback(String),
    #[error("a run must be bounded: give a duration and/or a number of requests")]
    Unbounded,
    #[error("{what} must be between {min} and {max}")]
    OutOfRange {
        what: &'static str,
        min: String,
        max: String,
    },
    #[error("invalid header {0:?}: expected `name: value` with a valid name and value")]
    Header(String),
}

fn range<T: PartialOrd + fmt::Display>(
    what: &'static str,
    value: T,
    min: T,
    max: T,
) -> Result<(), PlanError> {
    if value >= min && value <= max {
        Ok(())
    } else {
        Err(PlanError::OutOfRange {
            what,
            min: min.to_string(),
            max: max.to_string(),
        })
    }
}

/// A loopback HTTP endpoint. It can only be built by [`Target::parse`], which refuses
/// anything but loopback addresses, so a plan can never point elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    addr: SocketAddr,
    /// The `Host` header value (`ip:port`).
    authority: String,
    /// A base path prefix without a trailing slash, usually empty.
    prefix: String,
}

impl Target {
    /// Parses `http://HOST:PORT[/prefix]` or `HOST:PORT`. HOST must be an IP literal in
    /// 127.0.0.0/8, `[::1]`, or `localhost` (taken as 127.0.0.1 without asking a resolver,
    /// so that a hosts-file entry cannot send load elsewhere).
    pub fn parse(url: &str) -> Result<Self, PlanError> {
        let bad = |why| PlanError::Url(url.to_owned(), why);
        let with_scheme;
        let full = if url.contains("://") {
            url
        } else {
            with_scheme = format!("http://{url}");
            &with_scheme
        };
        let uri: http::Uri = full.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("only http:// is supported (the target is on loopback)"));
        }
        if uri.query().is_some() {
            return Err(bad("a query string is not allowed"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("credentials in the URL are not allowed"));
        }
        let host = authority.host();
        let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .map_err(|_| PlanError::NotLoopback(host.to_owned()))?
        };
        if !ip.is_loopback() {
            return Err(PlanError::NotLoopback(host.to_owned()));
        }
        let port = authority.port_u16().unwrap_or(80);
        let addr = SocketAddr::new(ip, port);
        Ok(Self {
            addr,
            authority: addr.to_string(),
            prefix: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    /// The socket address connected to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn authority(&self) -> &str {
        &self.authority
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }
}

/// Which provider API the requests use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// OpenAI chat: `POST /v1/chat/completions`.
    Openai,
    /// Anthropic messages: `POST /v1/messages`.
    Anthropic,
}

impl Api {
    pub fn path(self) -> &'static str {
        match self {
            Api::Openai => "/v1/chat/completions",
            Api::Anthropic => "/v1/messages",
        }
    }

    /// Bytes that only the last event of a complete stream carries: a stream whose tail
    /// lacks them was cut short.
    pub(crate) fn stream_end_marker(self) -> &'static [u8] {
        match self {
            Api::Openai => b"[DONE]",
            Api::Anthropic => b"message_stop",
        }
    }
}

/// How the credential is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthScheme {
    /// `Authorization: Bearer VALUE`.
    Bearer,
    /// `x-api-key: VALUE`.
    XApiKey,
}

/// A credential value. Its `Debug` never shows the value, so a plan can be logged.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The credential to present.
#[derive(Debug, Clone)]
pub struct Auth {
    pub scheme: AuthScheme,
    pub value: Secret,
}

/// The arrival model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Requests arrive at a constant rate (per second) whatever the responses do; latency
    /// is measured from each request's intended send time.
    Open { rate: f64 },
    /// `clients` loops, each sending its next request when the previous one finished.
    Closed { clients: usize },
}

/// A complete description of a run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: Target,
    pub api: Api,
    pub stream: bool,
    pub model: String,
    /// Size of the single user message, in bytes.
    pub prompt_bytes: usize,
    /// `max_tokens` in the body; Anthropic requires one, so it gets 4096 when `None`.
    pub max_tokens: Option<u32>,
    pub auth: Option<Auth>,
    /// Extra request headers, e.g. `x-mock-chunks: 64`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub mode: Mode,
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
    /// Open loop: arrivals beyond this many outstanding requests are dropped and counted.
    pub max_outstanding: usize,
    /// Per request, from the moment it is sent to the end of its body.
    pub timeout: Duration,
}

impl Plan {
    /// A plan with defaults: model `gpt-4o-mini` (OpenAI) or `claude-3-5-haiku-latest`
    /// (Anthropic), 64-byte prompt, no stream, no auth, 1024 outstanding, 30 s timeout.
    /// Set `duration` and/or `requests` before running.
    pub fn new(target: Target, api: Api, mode: Mode) -> Self {
        Self {
            target,
            api,
            stream: false,
            model: match api {
                Api::Openai => "gpt-4o-mini",
                Api::Anthropic => "claude-3-5-haiku-latest",
            }
            .to_owned(),
            prompt_bytes: 64,
            max_tokens: None,
            auth: None,
            headers: Vec::new(),
            mode,
            duration: None,
            requests: None,
            max_outstanding: 1024,
            timeout: Duration::from_secs(30),
        }
    }

    /// Adds a header given as `name: value`.
    pub fn header(&mut self, line: &str) -> Result<&mut Self, PlanError> {
        let bad = || PlanError::Header(line.to_owned());
        let (name, value) = line.split_once(':').ok_or_else(bad)?;
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_str(value.trim()).map_err(|_| bad())?;
        self.headers.push((name, value));
        Ok(self)
    }

    /// Checks the bounds and caps. [`crate::load::run`] calls it first.
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.duration.is_none() && self.requests.is_none() {
            return Err(PlanError::Unbounded);
        }
        if let Some(d) = self.duration {
            if !(Duration::from_millis(1)..=MAX_DURATION).contains(&d) {
                return Err(PlanError::OutOfRange {
                    what: "duration",
                    min: "1ms".to_owned(),
                    max: "10min".to_owned(),
                });
            }
        }
        if let Some(n) = self.requests {
            range("requests", n, 1, MAX_REQUESTS)?;
        }
        match self.mode {
            Mode::Open { rate } => {
                // `range` on f64 rejects NaN too, because every comparison with NaN fails.
                range("rate", rate, 0.001, MAX_RATE)?;
                range("max outstanding", self.max_outstanding, 1, MAX_OUTSTANDING)?;
            }
            Mode::Closed { clients } => range("clients", clients, 1, MAX_CLIENTS)?,
        }
        if !(Duration::from_millis(1)..=MAX_TIMEOUT).contains(&self.timeout) {
            return Err(PlanError::OutOfRange {
                what: "timeout",
                min: "1ms".to_owned(),
                max: "10min".to_owned(),
            });
        }
        range("prompt bytes", self.prompt_bytes, 0, MAX_PROMPT_BYTES)?;
        // Target is only constructible through the loopback check, but re-checking here
        // keeps the rule in one obvious place for readers of `run`.
        if !self.target.addr.ip().is_loopback() {
            return Err(PlanError::NotLoopback(self.target.addr.to_string()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only() {
        for ok in [
            "http://127.0.0.1:9000",
            "127.0.0.1:9000",
            "http://127.3.4.5:80/",
            "http://[::1]:8080/base/",
            "http://localhost:1234",
        ] {
            let t = Target::parse(ok).unwrap();
            assert!(t.addr().ip().is_loopback(), "{ok}");
        }
        assert_eq!(
            Target::parse("http://[::1]:8080/base/").unwrap().prefix(),
            "/base"
        );
        for refused in [
            "http://10.0.0.1:80",
            "http://0.0.0.0:80",
            "http://example.com",
            "http://[::2]:80",
            "http://192.168.1.1:9000",
        ] {
            assert!(
                matches!(Target::parse(refused), Err(PlanError::NotLoopback(_))),
                "{refused}"
            );
        }
        assert!(matches!(
            Target::parse("https://127.0.0.1:443"),
            Err(PlanError::Url(..))
        ));
        assert!(matches!(
            Target::parse("http://u:p@127.0.0.1:1"),
            Err(PlanError::Url(..))
        ));
    }

    #[test]
    fn bounds_and_caps() {
        let target = Target::parse("127.0.0.1:1").unwrap();
        let mut plan = Plan::new(target, Api::Openai, Mode::Closed { clients: 1 });
        assert!(matches!(plan.validate(), Err(PlanError::Unbounded)));
        plan.requests = Some(MAX_REQUESTS + 1);
        assert!(plan.validate().is_err());
        plan.requests = Some(10);
        plan.validate().unwrap();
        plan.duration = Some(MAX_DURATION + Duration::from_secs(1));
        assert!(plan.validate().is_err());
        plan.duration = Some(Duration::from_secs(1));
        plan.mode = Mode::Open { rate: f64::NAN };
        assert!(plan.validate().is_err());
        plan.mode = Mode::Open { rate: 100.0 };
        plan.validate().unwrap();
        assert!(plan.header("no-colon").is_err());
        plan.header("x-mock-chunks: 16").unwrap();
        assert_eq!(plan.headers[0].1, "16");
    }

    #[test]
    fn secret_is_not_printed() {
        let s = Secret::new("sk-very-secret");
        assert!(!format!("{s:?}").contains("very"));
    }
}
