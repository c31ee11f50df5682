//! Gauges of what is happening now (requests and streams in flight, queued usage records, open
//! client connections): kept as plain atomics on the hot path and published when scraped.
//!
//! A gauge handle update is a compare-and-swap loop on an `f64`; these counts change twice per
//! request, so they stay integers here and a scrape copies them into the gauges.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, PoisonError};

static REQUESTS: AtomicI64 = AtomicI64::new(0);
static STREAMS: AtomicI64 = AtomicI64::new(0);
static USAGE_QUEUED: AtomicI64 = AtomicI64::new(0);

type Sampler = Box<dyn Fn() + Send + Sync>;

/// Readings taken at scrape time from state owned elsewhere (the connection cap, the usage
/// queue's capacity), registered by their owners.
static SAMPLERS: Mutex<Vec<Sampler>> = Mutex::new(Vec::new());

/// What an [`InFlight`] guard counts.
pub trait Counted {
    fn count() -> &'static AtomicI64;
}

/// Requests, from their context's creation until the context is dropped (after `logging`, or
/// when Pingora drops a request that never got that far).
#[derive(Debug)]
pub enum Requests {}

impl Counted for Requests {
    fn count() -> &'static AtomicI64 {
        &REQUESTS
    }
}

/// Event streams being relayed, from their response head until the request ends.
#[derive(Debug)]
pub enum Streams {}

impl Counted for Streams {
    fn count() -> &'static AtomicI64 {
        &STREAMS
    }
}

/// One of `C` in flight for as long as the guard lives: `start` counts it in, the drop out.
#[derive(Debug)]
pub struct InFlight<C: Counted>(PhantomData<C>);

impl<C: Counted> InFlight<C> {
    pub fn start() -> Self {
        C::count().fetch_add(1, Ordering::Relaxed);
        Self(PhantomData)
    }
}

impl<C: Counted> Drop for InFlight<C> {
    fn drop(&mut self) {
        C::count().fetch_sub(1, Ordering::Relaxed);
    }
}

pub type RequestInFlight = InFlight<Requests>;
pub type StreamInFlight = InFlight<Streams>;

/// A usage record entered the queue to the intake thread.
pub fn usage_queued() {
    USAGE_QUEUED.fetch_add(1, Ordering::Relaxed);
}

/// The intake thread took a usage record off the queue.
pub fn usage_dequeued() {
    USAGE_QUEUED.fetch_sub(1, Ordering::Relaxed);
}

/// Registers a reading to take at every scrape.
pub fn on_scrape(sampler: impl Fn() + Send + Sync + 'static) {
    SAMPLERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Box::new(sampler));
}

/// Copies the counts into their gauges and runs the registered readings.
pub(super) fn publish() {
    // Counts are far below 2^53, where f64 is exact.
    let gauge = |name: &'static str, value: &AtomicI64| {
        metrics::gauge!(name).set(value.load(Ordering::Relaxed) as f64);
    };
    gauge(super::REQUESTS_IN_FLIGHT, &REQUESTS);
    gauge(super::STREAMS_IN_FLIGHT, &STREAMS);
    gauge(super::USAGE_QUEUE_DEPTH, &USAGE_QUEUED);
    for sampler in SAMPLERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
    {
        sampler();
    }
}
