//! The ledger's request and answer bodies: the ingest batch and its acknowledgement, usage
//! query results, the spend feed and the erasure report.

use crate::record::UsageRecord;
use crate::spelling::{self, spelled};
use serde::{Deserialize, Serialize};

/// `POST /v1/events` body. The ledger parses each element of `records` on its own, so a
/// malformed record is rejected alone while the others are kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IngestBatch {
    pub records: Vec<UsageRecord>,
}

/// The same body as [`IngestBatch`], serialized from borrowed records, so a sender need not
/// clone what it keeps for retries.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct IngestBatchRef<'a> {
    pub records: &'a [UsageRecord],
}

/// `POST /v1/events` answer (status 200 even when some records were rejected).
///
/// Every record of the batch is in exactly one of the three counts: `accepted` (stored now),
/// `duplicates` (an earlier delivery stored it; acknowledged, not counted again) or `rejected`.
/// A sender may forget accepted and duplicate records; rejected ones will never be accepted
/// as they are, so resending them is pointless.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestAnswer {
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: Vec<Rejection>,
}

/// One record the ledger refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// Position of the record in the batch's `records` array, from 0.
    pub index: usize,
    /// The record's `id`, when it could be read.
    pub id: Option<String>,
    /// What is wrong, for a human (e.g. `missing field "status"`).
    pub message: String,
}

/// A dimension `GET /v1/usage` can group by (`group_by=model,day`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Model,
    Key,
    Provider,
    Day,
    Hour,
    User,
    Session,
    Feature,
    Status,
}

spelled!(GroupBy {
    Model => "model",
    Key => "key",
    Provider => "provider",
    Day => "day",
    Hour => "hour",
    User => "user",
    Session => "session",
    Feature => "feature",
    Status => "status",
} unknown(s) -> String {
    format!("unknown group_by {s:?} (known: {})", spelling::known(&GroupBy::ALL, GroupBy::as_str))
});

/// Sums over a set of records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageTotals {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
    pub cost_micro_usd: u64,
}

/// One group of a usage query: the values of the requested dimensions (the others are absent;
/// a dimension the records did not carry, such as a missing user tag, is `null`) and its totals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageGroup {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// `YYYY-MM-DD` (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    /// `YYYY-MM-DDTHH:00:00Z` (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hour: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(flatten)]
    pub totals: UsageTotals,
}

/// `GET /v1/usage` answer. Usage is kept per hour, so the range covers the hours whose start
/// lies in `[from_ms, to_ms)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageAnswer {
    /// The org asked for; absent means all orgs.
    pub org: Option<String>,
    pub from_ms: u64,
    pub to_ms: u64,
    pub group_by: Vec<GroupBy>,
    /// Sorted by the grouped dimensions in `group_by` order.
    pub groups: Vec<UsageGroup>,
    /// Sums over all groups.
    pub total: UsageTotals,
}

/// One org's spend in the current UTC periods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgSpend {
    pub org: String,
    pub day_micro_usd: u64,
    pub month_micro_usd: u64,
}

/// `GET /v1/spend` answer: every org with spend in the current UTC month, sorted by org.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendAnswer {
    /// The ledger's clock when it answered.
    pub as_of_ms: u64,
    /// Start of the current UTC day.
    pub day_start_ms: u64,
    /// Start of the current UTC month.
    pub month_start_ms: u64,
    pub orgs: Vec<OrgSpend>,
    /// Every key and org suspended now (absent from an older ledger: none).
    #[serde(default)]
    pub suspended: Vec<crate::Suspension>,
}

/// `DELETE /v1/orgs/{org}` answer: how many rows of each kind were erased.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureAnswer {
    pub org: String,
    pub records: u64,
    pub hourly_aggregates: u64,
    pub daily_aggregates: u64,
}
