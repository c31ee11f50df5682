//! One keep-alive HTTP/1.1 connection and the exchange of one measured request over it.
//!
//! The client is hyper 1's low-level `client::conn::http1` over a tokio `TcpStream`, one
//! connection per [`Slot`], rather than hyper-util's pooled legacy client. A slot is owned by
//! exactly one request at a time, so there is no pool lock or checkout per request, no URI
//! parsing or connector lookup, connect failures are told apart from request failures
//! exactly, and the number of connections is exactly what the run says (clients in closed
//! loop, peak concurrency in open loop).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::plan::Api;
use super::request::Template;
use super::sse::{DataLines, Tail};
use super::stats::{micros, ErrorKind, Sample, Shards};

/// What every request of a run shares.
pub(crate) struct Shared {
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) template: Template,
    pub(crate) api: Api,
    pub(crate) stream: bool,
    pub(crate) timeout: Duration,
    pub(crate) shards: Shards,
}

/// A connection (opened lazily, reopened after failures) plus reusable per-request buffers.
pub(crate) struct Slot {
    sender: Option<SendRequest<Full<Bytes>>>,
    /// Inter-event gaps of the current request, in microseconds; its capacity is kept.
    gaps: Vec<u64>,
    shard: usize,
}

async fn connect(addr: std::net::SocketAddr) -> Result<SendRequest<Full<Bytes>>, ErrorKind> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|_| ErrorKind::Connect)?;
    // Without TCP_NODELAY, Nagle's algorithm would hold small requests back and add
    // delayed-ACK stalls to the very latencies being measured.
    tcp.set_nodelay(true).map_err(|_| ErrorKind::Connect)?;
    let (sender, conn) = http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|_| ErrorKind::Connect)?;
    // The connection future drives the socket; it ends when the sender is dropped or the
    // peer closes. Its error is seen again through the sender, so it is not reported here.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

impl Slot {
    pub(crate) fn new(shard: usize) -> Self {
        Self {
            sender: None,
            gaps: Vec::new(),
            shard,
        }
    }

    /// A ready sender: the kept one if the server has not closed it, else a new connection.
    async fn ready_sender(
        &mut self,
        addr: std::net::SocketAddr,
        sample: &mut Sample,
    ) -> Result<&mut SendRequest<Full<Bytes>>, ErrorKind> {
        if let Some(sender) = self.sender.as_mut() {
            // A keep-alive connection the server closed while idle fails here; that is not
            // an error of this request, so it simply reconnects.
            if sender.ready().await.is_err() {
                self.sender = None;
            }
        }
        if self.sender.is_none() {
            let mut sender = connect(addr).await?;
            sample.connections += 1;
            sender.ready().await.map_err(|_| ErrorKind::Connect)?;
            self.sender = Some(sender);
        }
        self.sender.as_mut().ok_or(ErrorKind::Connect)
    }

    /// Sends one request, reads its whole response and records it in the slot's shard.
    /// Latencies count from `intended`, the time the request should have been sent (open
    /// loop), or from now when `None` (closed loop, where a request is due when it is sent).
    pub(crate) async fn exchange(&mut self, shared: &Arc<Shared>, intended: Option<Instant>) {
        let sent = Instant::now();
        let intended = intended.unwrap_or(sent);
        self.gaps.clear();
        let mut sample = Sample {
            send_lag_us: micros(sent.saturating_duration_since(intended)),
            ..Sample::default()
        };
        let deadline = tokio::time::Instant::from_std(sent) + shared.timeout;
        let result =
            match tokio::time::timeout_at(deadline, self.attempt(shared, intended, &mut sample))
                .await
            {
                Ok(result) => result,
                Err(_) => Err(ErrorKind::Timeout),
            };
        if result.is_err() && !matches!(result, Err(ErrorKind::Status(_))) {
            // After a failure mid-exchange the connection's state is unknown (a timed-out
            // response may still be arriving), so it is never reused.
            self.sender = None;
        }
        sample.total_us = micros(intended.elapsed());
        shared
            .shards
            .record(self.shard, &sample, &self.gaps, result);
    }

    async fn attempt(
        &mut self,
        shared: &Shared,
        intended: Instant,
        sample: &mut Sample,
    ) -> Result<(), ErrorKind> {
        let reused = self.sender.is_some();
        let sender = self.ready_sender(shared.addr, sample).await?;
        let response = match sender.try_send_request(shared.template.request()).await {
            Ok(response) => response,
            Err(mut err) => match (reused, err.take_message()) {
                // A kept-alive connection that the server closed just as it was reused
                // fails before the request is written. That is the end of the connection,
                // not a failure of this request, so it is retried once on a new one.
                (true, Some(request)) => {
                    self.sender = None;
                    self.ready_sender(shared.addr, sample)
                        .await?
                        .send_request(request)
                        .await
                        .map_err(|_| ErrorKind::Protocol)?
                }
                _ => return Err(ErrorKind::Protocol),
            },
        };
        let head_at = Instant::now();
        sample.ttfb_us = Some(micros(head_at.saturating_duration_since(intended)));
        let status = response.status();
        sample.status = Some(status.as_u16());
        let scan = shared.stream && status.is_success();
        if scan {
            let is_sse = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/event-stream"));
            if !is_sse {
                return Err(ErrorKind::Protocol);
            }
        }
        let cut = if scan {
            ErrorKind::StreamCut
        } else {
            ErrorKind::Body
        };
        let mut body = response.into_body();
        let mut lines = DataLines::default();
        let mut tail = Tail::default();
        let mut last_event: Option<Instant> = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| cut)?;
            let Some(data) = frame.data_ref() else {
                continue;
            };
            sample.bytes += data.len() as u64;
            if !scan {
                continue;
            }
            tail.push(data);
            let n = lines.feed(data);
            if n == 0 {
                continue;
            }
            let now = Instant::now();
            sample.events += n as u64;
            match last_event {
                None => {
                    sample.first_event_us = Some(micros(now.saturating_duration_since(intended)))
                }
                Some(prev) => self.gaps.push(micros(now.saturating_duration_since(prev))),
            }
            // Further events in the same read arrived together: their gaps are zero.
            self.gaps.extend(std::iter::repeat_n(0, n - 1));
            last_event = Some(now);
        }
        if !status.is_success() {
            return Err(ErrorKind::Status(status.as_u16()));
        }
        if scan && !tail.contains(shared.api.stream_end_marker()) {
            return Err(ErrorKind::StreamCut);
        }
        Ok(())
    }
}
