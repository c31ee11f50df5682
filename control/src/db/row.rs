//! The `records` table's columns, and a stored row turned back into a wire record.

use super::{to_u64, DbError};
use sluice_wire::UsageRecord;
use sqlx::any::AnyRow;
use sqlx::Row;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Column order of inserts and of export selects.
pub(super) const RECORD_COLUMNS: [&str; 34] = [
    "id",
    "v",
    "time_ms",
    "org",
    "key_id",
    "provider",
    "model",
    "upstream_model",
    "api",
    "stream",
    "status",
    "outcome",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "estimated",
    "cost_micro_usd",
    "ttft_ms",
    "total_ms",
    "upstream_ms",
    "bytes_in",
    "bytes_out",
    "user_tag",
    "session_tag",
    "feature_tag",
    "meta",
    "client_ip",
    "received_ms",
    "error_type",
    "endpoint",
    "region",
    "attempts",
];

fn corrupt(what: &str, e: impl std::fmt::Display) -> DbError {
    DbError::Corrupt(format!("{what}: {e}"))
}

/// Rebuilds the record from a row selected with [`RECORD_COLUMNS`] in order.
pub(super) fn record_from_row(row: &AnyRow) -> Result<UsageRecord, DbError> {
    let text = |i: usize| row.try_get::<Option<String>, _>(i);
    let int = |i: usize| row.try_get::<i64, _>(i).map(to_u64);
    let id: String = row.try_get(0)?;
    let meta = match text(27)? {
        Some(json) => serde_json::from_str::<BTreeMap<String, String>>(&json)
            .map_err(|e| corrupt("meta", e))?,
        None => BTreeMap::new(),
    };
    let outcome: String = row.try_get(11)?;
    Ok(UsageRecord {
        v: u16::try_from(int(1)?).map_err(|e| corrupt("v", e))?,
        id: id.parse().map_err(|e| corrupt("id", e))?,
        time_ms: int(2)?,
        org: text(3)?.map(Arc::from),
        key_id: text(4)?.map(Arc::from),
        provider: text(5)?.map(Arc::from),
        endpoint: text(31)?.map(Arc::from),
        region: text(32)?.map(Arc::from),
        attempts: u32::try_from(int(33)?).map_err(|e| corrupt("attempts", e))?,
        model: text(6)?,
        upstream_model: text(7)?,
        api: Cow::Owned(row.try_get(8)?),
        stream: int(9)? != 0,
        status: u16::try_from(int(10)?).map_err(|e| corrupt("status", e))?,
        outcome: outcome.parse().map_err(|e| corrupt("outcome", e))?,
        input_tokens: int(12)?,
        output_tokens: int(13)?,
        cached_tokens: int(14)?,
        cache_write_tokens: int(15)?,
        reasoning_tokens: int(16)?,
        estimated: int(17)? != 0,
        cost_micro_usd: int(18)?,
        ttft_ms: row.try_get(19)?,
        total_ms: row.try_get(20)?,
        upstream_ms: row.try_get(21)?,
        bytes_in: int(22)?,
        bytes_out: int(23)?,
        user: text(24)?,
        session: text(25)?,
        feature: text(26)?,
        meta,
        client_ip: text(28)?,
        error_type: text(30)?,
    })
}
