//! A usage record to start from: a successful, streamed, exact chat completion of `org` on the
//! mock provider, stamped now. Tests change the fields they are about with struct update syntax.

use sluice_wire::clock::{Clock, SystemClock};
use sluice_wire::{Outcome, UsageRecord};
use std::borrow::Cow;
use std::sync::Arc;

/// A successful record of `org` with a fresh id, 10 input and 1 output tokens costing 100
/// micro-USD; tags, meta and client IP are left empty.
pub fn usage_record(org: &str) -> UsageRecord {
    UsageRecord {
        v: 1,
        id: uuid::Uuid::now_v7(),
        time_ms: SystemClock.now_ms(),
        org: Some(Arc::from(org)),
        key_id: Some(Arc::from("key_0000000000000001")),
        provider: Some(Arc::from("mock")),
        endpoint: None,
        region: None,
        attempts: 0,
        model: Some("mock-gpt".into()),
        upstream_model: Some("mock-gpt-1".into()),
        api: Cow::Borrowed("chat.completions"),
        stream: true,
        status: 200,
        outcome: Outcome::Ok,
        input_tokens: 10,
        output_tokens: 1,
        cached_tokens: 0,
        cache_write_tokens: 0,
        reasoning_tokens: 0,
        estimated: false,
        cost_micro_usd: 100,
        ttft_ms: Some(1.5),
        total_ms: 10.25,
        upstream_ms: Some(9.0),
        bytes_in: 100,
        bytes_out: 200,
        user: None,
        session: None,
        feature: None,
        meta: Default::default(),
        client_ip: None,
        error_type: None,
    }
}
