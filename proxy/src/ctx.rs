//! The one per-request context that Pingora's phases share.

use crate::api::{Api, Family};
use crate::clock::Clock;
use crate::config::{Route, Snapshot, VirtualKey};
use crate::errors::GatewayError;
use crate::governance::limits::RateInfo;
use crate::governance::Held;
use crate::metering::record::Tags;
use crate::metering::response::ResponseMeter;
use crate::routing::Attempts;
use crate::telemetry::live::{RequestInFlight, StreamInFlight};
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

#[derive(Debug)]
pub struct Ctx {
    pub id: uuid::Uuid,
    /// Monotonic reading of the gateway clock when the request arrived.
    pub arrived: Duration,
    pub arrived_wall: SystemTime,
    /// The configuration this request uses from start to end, even across a reload.
    pub snapshot: Arc<Snapshot>,
    /// Error shape for answers; known from the path before anything else.
    pub family: Family,
    pub api: Option<Api>,
    pub key: Option<Arc<VirtualKey>>,
    pub route: Option<Arc<Route>>,
    pub model: Option<String>,
    pub upstream_model: Option<String>,
    pub stream: bool,
    /// Sluice asked the provider for streamed usage; the client must not see that chunk.
    pub strip_usage_chunk: bool,
    /// The body sent upstream (the client's, or its rewrite).
    pub upstream_body: Option<Bytes>,
    /// The client's body as read, for a target that knows the model by another name.
    pub client_body: Bytes,
    /// Which targets this request may use, has tried, and the one in flight.
    pub upstream: Attempts,
    pub bytes_in: u64,
    /// The client's address (`[client_ip]`), before the record's truncation or hashing.
    pub client_ip: Option<std::net::IpAddr>,
    pub tags: Tags,
    /// Concurrency slots and token reservation of an admitted request (released on drop).
    pub held: Option<Held>,
    /// The tightest limits, for the rate-limit headers of whatever answer the client gets.
    pub rate: RateInfo,
    /// Set when sluice answered the request itself with an error.
    pub rejected: Option<GatewayError>,
    /// Set by a phase that failed with a gateway error, for `fail_to_proxy` to render.
    pub failure: Option<GatewayError>,
    pub status: u16,
    /// Usage, timings and bytes of the response as it streams.
    pub response: ResponseMeter,
    /// The request's `Origin`, when the CORS policy allows it (echoed on the answer).
    pub cors_origin: Option<http::HeaderValue>,
    /// Counts this request in flight until the context is dropped.
    pub in_flight: RequestInFlight,
    /// Counts the event stream being relayed, if the answer is one.
    pub stream_in_flight: Option<StreamInFlight>,
}

impl Ctx {
    pub fn new(snapshot: Arc<Snapshot>, clock: &dyn Clock) -> Self {
        Self {
            id: uuid::Uuid::now_v7(),
            arrived: clock.monotonic(),
            arrived_wall: clock.now(),
            snapshot,
            family: Family::OpenAi,
            api: None,
            key: None,
            route: None,
            model: None,
            upstream_model: None,
            stream: false,
            strip_usage_chunk: false,
            upstream_body: None,
            client_body: Bytes::new(),
            upstream: Attempts::default(),
            bytes_in: 0,
            client_ip: None,
            tags: Tags::default(),
            held: None,
            rate: RateInfo::default(),
            rejected: None,
            failure: None,
            status: 0,
            response: ResponseMeter::default(),
            cors_origin: None,
            in_flight: RequestInFlight::start(),
            stream_in_flight: None,
        }
    }
}
