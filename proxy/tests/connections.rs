//! Client connections over raw sockets: deadlines for slow headers and bodies, the keep-alive
//! idle timeout, the connection cap, whether each kind of answer keeps the connection as its
//! `Connection` header says, Pingora's own rejections, `Expect` and `Host`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(clippy::panic, reason = "test code: a panic fails the test")]

mod common;
use common::*;
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One parsed HTTP/1.1 response.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn keeps_alive(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("keep-alive"))
    }
}

/// A raw client connection that reads responses off the socket itself.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    async fn connect(s: &Sluice) -> Self {
        Self {
            stream: TcpStream::connect(s.addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads more bytes; false at end of stream (or a reset).
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout(WAIT, self.stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(_) => panic!("no answer within {WAIT:?}; got so far: {:?}", self.text()),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf).to_string()
    }

    /// The next response (1xx included), or `None` when the connection closed first.
    async fn response(&mut self) -> Option<Resp> {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if !self.fill().await {
                return None;
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
        self.buf.drain(..end);
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.trim().to_string(), v.trim().to_string())
            })
            .collect();
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        if (100..200).contains(&status) {
            return Some(resp);
        }
        if let Some(len) = resp.header("content-length") {
            let len: usize = len.parse().unwrap();
            while self.buf.len() < len {
                assert!(self.fill().await, "closed inside a body: {resp:?}");
            }
            resp.body = self.buf.drain(..len).collect();
        } else if resp
            .header("transfer-encoding")
            .is_some_and(|v| v.contains("chunked"))
        {
            loop {
                let line_end = loop {
                    if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        break i;
                    }
                    assert!(self.fill().await, "closed inside a chunk head");
                };
                let size_text = String::from_utf8_lossy(&self.buf[..line_end]).to_string();
                let size = usize::from_str_radix(size_text.trim(), 16).unwrap();
                while self.buf.len() < line_end + 2 + size + 2 {
                    assert!(self.fill().await, "closed inside a chunk");
                }
                let start = line_end + 2;
                resp.body.extend_from_slice(&self.buf[start..start + size]);
                self.buf.drain(..start + size + 2);
                if size == 0 {
                    break;
                }
            }
        }
        Some(resp)
    }

    /// True once the server closed the connection with nothing more to say.
    async fn closed(&mut self) -> bool {
        while self.fill().await {}
        self.buf.is_empty()
    }
}

fn models_request(key: &str) -> Vec<u8> {
    format!("GET /v1/models HTTP/1.1\r\nHost: sluice\r\nAuthorization: Bearer {key}\r\n\r\n")
        .into_bytes()
}

fn post(path: &str, key: Option<&str>, extra: &str, body: &str) -> Vec<u8> {
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    format!(
        "POST {path} HTTP/1.1\r\nHost: sluice\r\n{auth}{extra}Content-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn with_connections(s: &mut TestConfig, table: &str) {
    s.server = format!("[server.connections]\n{table}\n");
}

/// Writes `prefix`, then one more byte every 100 ms until the server answers or closes; returns
/// the answer.
async fn trickle(s: &Sluice, prefix: &[u8], filler: u8) -> Option<Resp> {
    let mut raw = Raw::connect(s).await;
    raw.send(prefix).await;
    let (rd, mut wr) = raw.stream.into_split();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tick.tick().await;
                if wr.write_all(&[filler]).await.is_err() {
                    break;
                }
            }
            wr
        })
    };
    // Wait (bounded) until the server says something or closes, then stop trickling.
    let _ = tokio::time::timeout(WAIT, rd.readable()).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let wr = writer.await.unwrap();
    let mut raw = Raw {
        stream: rd.reunite(wr).unwrap(),
        buf: Vec::new(),
    };
    raw.response().await
}

#[tokio::test]
async fn a_header_trickled_byte_by_byte_gets_408_and_the_connection_closes() {
    let s = Sluice::start_with(|c| with_connections(c, "header_timeout = \"1s\"")).await;
    let resp = trickle(
        &s,
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: sluice\r\nX-Slow: ",
        b'a',
    )
    .await
    .expect("an answer before the close");
    assert_eq!(resp.status, 408, "{resp:?}");
    assert_eq!(resp.json()["error"]["code"], "request_timeout", "{resp:?}");
    assert!(resp.header("x-request-id").is_some(), "{resp:?}");
    assert_eq!(resp.header("connection"), Some("close"));
}

#[tokio::test]
async fn a_body_trickled_byte_by_byte_gets_408_in_the_callers_shape() {
    let mut s = Sluice::start_with(|c| with_connections(c, "body_timeout = \"1s\"")).await;
    let key = s.cfg.keys.acme.clone();
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: sluice\r\nx-api-key: {key}\r\n\
         anthropic-version: 2023-06-01\r\nContent-Type: application/json\r\n\
         Content-Length: 100000\r\n\r\n{{\"model\":\"mock-claude\",\"x\":\""
    );
    let resp = trickle(&s, head.as_bytes(), b'a')
        .await
        .expect("an answer before the close");
    assert_eq!(resp.status, 408, "{resp:?}");
    let body = resp.json();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "timeout_error", "{body}");
    assert_eq!(resp.header("connection"), Some("close"));
    let rec = s.next_record().await;
    assert_eq!(rec["status"], 408, "{rec}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let s = Sluice::start_with(|c| with_connections(c, "idle_timeout = \"1s\"")).await;
    let mut raw = Raw::connect(&s).await;
    raw.send(&models_request(&s.cfg.keys.acme)).await;
    let resp = raw.response().await.unwrap();
    assert_eq!(resp.status, 200);
    assert!(resp.keeps_alive(), "{resp:?}");
    assert!(
        raw.closed().await,
        "the idle connection is closed by sluice"
    );
}

#[tokio::test]
async fn connections_over_the_cap_get_503_with_retry_after() {
    let s = Sluice::start_with(|c| with_connections(c, "max = 2\nheader_timeout = \"60s\"")).await;
    let key = s.cfg.keys.acme.clone();
    // Two connections hold the cap (open, nothing sent yet).
    let held: Vec<Raw> = vec![Raw::connect(&s).await, Raw::connect(&s).await];
    // Poll: a third connection is refused once both are counted.
    let deadline = tokio::time::Instant::now() + WAIT;
    let refused = loop {
        assert!(tokio::time::Instant::now() < deadline, "never refused");
        let mut third = Raw::connect(&s).await;
        third.send(&models_request(&key)).await;
        let resp = third.response().await.unwrap();
        if resp.status == 503 {
            assert!(third.closed().await);
            break resp;
        }
        assert_eq!(resp.status, 200, "{resp:?}");
    };
    assert_eq!(refused.header("retry-after"), Some("1"), "{refused:?}");
    assert_eq!(refused.header("connection"), Some("close"));
    assert!(refused.header("x-request-id").is_some());
    assert_eq!(refused.json()["error"]["code"], "overloaded", "{refused:?}");

    // A freed slot serves again.
    drop(held);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot was never freed"
        );
        let mut next = Raw::connect(&s).await;
        next.send(&models_request(&key)).await;
        if next.response().await.unwrap().status == 200 {
            break;
        }
    }
}

#[tokio::test]
async fn every_answer_keeps_the_connection_exactly_when_it_says_so() {
    let limited = config::new_key();
    let mut s = Sluice::start_with(|c| {
        c.extra = format!(
            "[[orgs]]\nid = \"limited\"\nlimits = {{ requests = \"1/min\" }}\n\n{}",
            config::entry(&limited, "limited", "[]", None)
        );
    })
    .await;
    let k = s.cfg.keys.clone();
    let good = chat("mock-gpt", false).to_string();
    // (what, request, status, whether the connection stays)
    let cases: Vec<(&str, Vec<u8>, u16, bool)> = vec![
        (
            "200",
            post("/v1/chat/completions", Some(&k.acme), "", &good),
            200,
            true,
        ),
        (
            "400",
            post("/v1/chat/completions", Some(&k.acme), "", "{nope"),
            400,
            true,
        ),
        (
            "401",
            post("/v1/chat/completions", None, "", &good),
            401,
            true,
        ),
        (
            "403",
            post("/v1/chat/completions", Some(&k.expired), "", &good),
            403,
            true,
        ),
        (
            "404",
            post(
                "/v1/chat/completions",
                Some(&k.acme),
                "",
                &chat("nope", false).to_string(),
            ),
            404,
            true,
        ),
        (
            "405",
            format!(
                "GET /v1/chat/completions HTTP/1.1\r\nHost: s\r\nAuthorization: Bearer {}\r\n\r\n",
                k.acme
            )
            .into_bytes(),
            405,
            true,
        ),
        (
            "413",
            // Declared too large and not sent: the answer comes before any body byte.
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: s\r\nAuthorization: Bearer {}\r\n\
                 Content-Length: 2097152\r\n\r\n",
                k.acme
            )
            .into_bytes(),
            413,
            false,
        ),
        (
            "429",
            post("/v1/chat/completions", Some(&limited), "", &good),
            429,
            true,
        ),
        (
            "502",
            post(
                "/v1/chat/completions",
                Some(&k.acme),
                "",
                &chat("dead-gpt", false).to_string(),
            ),
            502,
            true,
        ),
        (
            "504",
            post(
                "/v1/chat/completions",
                Some(&k.acme),
                "x-mock-header-delay-ms: 20000\r\n",
                &chat("slow-gpt", false).to_string(),
            ),
            504,
            true,
        ),
    ];
    // The limited key's one request a minute is used first, so the case above gets 429.
    let mut warm = Raw::connect(&s).await;
    warm.send(&post("/v1/chat/completions", Some(&limited), "", &good))
        .await;
    assert_eq!(warm.response().await.unwrap().status, 200);

    for (what, request, status, keeps) in cases {
        let mut raw = Raw::connect(&s).await;
        raw.send(&request).await;
        let resp = raw
            .response()
            .await
            .unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(resp.status, status, "{what}: {resp:?}");
        assert_eq!(resp.keeps_alive(), keeps, "{what}: {resp:?}");
        if keeps {
            raw.send(&models_request(&k.acme)).await;
            let second = raw
                .response()
                .await
                .unwrap_or_else(|| panic!("{what}: the second request got no answer"));
            assert_eq!(second.status, 200, "{what}: {second:?}");
        } else {
            assert_eq!(resp.header("connection"), Some("close"), "{what}");
            assert!(raw.closed().await, "{what}: closed as announced");
        }
    }
    while s.proc.try_record().is_some() {}
}

#[tokio::test]
async fn requests_pingora_rejects_get_an_openai_error_with_a_request_id() {
    let s = Sluice::start().await;
    let huge = format!("X-Big: {}\r\n", "a".repeat(1100 * 1024));
    let cases: Vec<(&str, String)> = vec![
        (
            "conflicting Content-Length",
            "POST /v1/chat/completions HTTP/1.1\r\nHost: s\r\nContent-Length: 2\r\n\
             Content-Length: 3\r\n\r\n{}"
                .into(),
        ),
        (
            "obs-fold",
            "GET /v1/models HTTP/1.1\r\nHost: s\r\nX-A: b\r\n  folded\r\n\r\n".into(),
        ),
        (
            "bad framing",
            "POST /v1/chat/completions HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: gzip\r\n\r\n"
                .into(),
        ),
        (
            "header too large",
            format!("GET /v1/models HTTP/1.1\r\nHost: s\r\n{huge}\r\n"),
        ),
    ];
    for (what, request) in cases {
        let mut raw = Raw::connect(&s).await;
        // A reset after the answer (the header-too-large case) is fine: the answer came first.
        let _ = raw.stream.write_all(request.as_bytes()).await;
        let resp = raw
            .response()
            .await
            .unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(resp.status, 400, "{what}: {resp:?}");
        let body = resp.json();
        assert!(body["error"]["message"].is_string(), "{what}: {resp:?}");
        assert_eq!(body["error"]["code"], "malformed_request", "{what}");
        assert!(resp.header("x-request-id").is_some(), "{what}: {resp:?}");
        assert_eq!(resp.header("connection"), Some("close"), "{what}");
    }
}

#[tokio::test]
async fn expect_100_continue_is_answered_other_expectations_get_417() {
    let s = Sluice::start().await;
    let key = s.cfg.keys.acme.clone();
    let body = chat("mock-gpt", false).to_string();

    // The header alone: sluice says 100 Continue, then the body gets the real answer.
    let mut raw = Raw::connect(&s).await;
    let request = post(
        "/v1/chat/completions",
        Some(&key),
        "Expect: 100-continue\r\n",
        &body,
    );
    let head_len = request.len() - body.len();
    raw.send(&request[..head_len]).await;
    let interim = raw.response().await.unwrap();
    assert_eq!(interim.status, 100, "{interim:?}");
    raw.send(body.as_bytes()).await;
    let resp = raw.response().await.unwrap();
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(resp.keeps_alive());

    let mut raw = Raw::connect(&s).await;
    raw.send(&post(
        "/v1/messages",
        Some(&key),
        "Expect: something-else\r\n",
        &body,
    ))
    .await;
    let resp = raw.response().await.unwrap();
    assert_eq!(resp.status, 417, "{resp:?}");
    assert_eq!(resp.json()["type"], "error", "Anthropic shape: {resp:?}");
}

#[tokio::test]
async fn http_1_1_without_host_gets_400_and_http_1_0_needs_none() {
    let s = Sluice::start().await;
    let key = s.cfg.keys.acme.clone();
    let mut raw = Raw::connect(&s).await;
    raw.send(format!("GET /v1/models HTTP/1.1\r\nAuthorization: Bearer {key}\r\n\r\n").as_bytes())
        .await;
    let resp = raw.response().await.unwrap();
    assert_eq!(resp.status, 400, "{resp:?}");
    assert_eq!(resp.json()["error"]["code"], "missing_host", "{resp:?}");

    let mut raw = Raw::connect(&s).await;
    raw.send(format!("GET /v1/models HTTP/1.0\r\nAuthorization: Bearer {key}\r\n\r\n").as_bytes())
        .await;
    assert_eq!(raw.response().await.unwrap().status, 200);
}
