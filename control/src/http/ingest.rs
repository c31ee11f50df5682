//! `POST /v1/events`: a batch is parsed element by element, so one malformed record is
//! rejected with its index, id and reason while the valid ones are stored. A record that passes
//! these checks but is still refused by the database is isolated by the store and rejected the
//! same way: no record's content can fail a batch (which the sender would retry forever).

use super::{ApiError, AppState};
use crate::telemetry::{self, DbOp};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::value::RawValue;
use sluice_wire::{IngestAnswer, Rejection, UsageRecord};
use std::sync::Arc;
use std::time::Instant;

/// A larger batch is refused (413) rather than held in one transaction.
pub const MAX_RECORDS_PER_BATCH: usize = 10_000;
/// Bounds on stored strings: far above what the proxy writes (tags ≤ 256 bytes), there only
/// to keep a misbehaving sender from filling the database.
const MAX_NAME_BYTES: usize = 512;
const MAX_TAG_BYTES: usize = 1024;
const MAX_META_ENTRIES: usize = 64;

#[derive(Deserialize)]
struct RawBatch<'a> {
    #[serde(borrow)]
    records: Vec<&'a RawValue>,
}

/// Reads just the id of a record that failed to parse, to name it in the rejection.
#[derive(Deserialize)]
struct IdProbe {
    id: Option<String>,
}

/// Whether a stored string holds NUL, which Postgres `text` cannot store at all (the insert
/// fails with "invalid byte sequence") and SQLite keeps but C clients read cut short. The proxy
/// replaces control characters where it builds records; this is the ledger's own defence
/// against any other sender. Other control characters are stored as sent: they are valid text
/// on both backends, and the CSV export quotes them.
fn nul_in<'a>(mut fields: impl Iterator<Item = (&'a str, &'a str)>) -> Option<&'a str> {
    fields.find(|(_, s)| s.contains('\0')).map(|(name, _)| name)
}

/// Ledger-side checks beyond the wire crate's: every number must fit the database's BIGINT
/// and strings are bounded and free of NUL.
fn check_bounds(r: &UsageRecord) -> Result<(), String> {
    let numbers = [
        ("time_ms", r.time_ms),
        ("input_tokens", r.input_tokens),
        ("output_tokens", r.output_tokens),
        ("cached_tokens", r.cached_tokens),
        ("cache_write_tokens", r.cache_write_tokens),
        ("reasoning_tokens", r.reasoning_tokens),
        ("cost_micro_usd", r.cost_micro_usd),
        ("bytes_in", r.bytes_in),
        ("bytes_out", r.bytes_out),
    ];
    for (name, n) in numbers {
        if i64::try_from(n).is_err() {
            return Err(format!("{name} {n} is out of range (at most {})", i64::MAX));
        }
    }
    let names = [
        ("org", r.org.as_deref()),
        ("key_id", r.key_id.as_deref()),
        ("provider", r.provider.as_deref()),
        ("model", r.model.as_deref()),
        ("upstream_model", r.upstream_model.as_deref()),
        ("api", Some(r.api.as_ref())),
        ("client_ip", r.client_ip.as_deref()),
    ];
    for (name, s) in names {
        if s.is_some_and(|s| s.len() > MAX_NAME_BYTES) {
            return Err(format!("{name} is longer than {MAX_NAME_BYTES} bytes"));
        }
    }
    let tags = [
        ("user", r.user.as_deref()),
        ("session", r.session.as_deref()),
        ("feature", r.feature.as_deref()),
    ];
    for (name, s) in tags {
        if s.is_some_and(|s| s.len() > MAX_TAG_BYTES) {
            return Err(format!("{name} is longer than {MAX_TAG_BYTES} bytes"));
        }
    }
    if r.meta.len() > MAX_META_ENTRIES {
        return Err(format!("meta has more than {MAX_META_ENTRIES} entries"));
    }
    if r.meta
        .iter()
        .any(|(k, v)| k.len() > MAX_NAME_BYTES || v.len() > MAX_TAG_BYTES)
    {
        return Err(format!(
            "a meta name is longer than {MAX_NAME_BYTES} bytes or a value longer than {MAX_TAG_BYTES}"
        ));
    }
    let strings = names
        .into_iter()
        .chain(tags)
        .filter_map(|(name, s)| s.map(|s| (name, s)))
        .chain(
            r.meta
                .iter()
                .flat_map(|(k, v)| [("meta", k.as_str()), ("meta", v.as_str())]),
        );
    if let Some(name) = nul_in(strings) {
        return Err(format!("{name} contains a NUL character (U+0000)"));
    }
    Ok(())
}

/// Parses one element; on failure says why, naming the id when it can be read.
fn parse_record(index: usize, raw: &RawValue) -> Result<UsageRecord, Rejection> {
    let reject = |id: Option<String>, message: String| Rejection { index, id, message };
    match serde_json::from_str::<UsageRecord>(raw.get()) {
        Ok(r) => {
            let id = r.id.to_string();
            r.validate()
                .map_err(|e| e.to_string())
                .and_then(|()| check_bounds(&r))
                .map_err(|m| reject(Some(id), m))?;
            Ok(r)
        }
        Err(e) => {
            let id = serde_json::from_str::<IdProbe>(raw.get())
                .ok()
                .and_then(|p| p.id);
            Err(reject(id, format!("invalid record: {e}")))
        }
    }
}

pub(super) async fn ingest(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<IngestAnswer>, ApiError> {
    // The body is already read: the sender's network time is not the ledger's.
    let started = Instant::now();
    let batch: RawBatch<'_> = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("body is not a batch ({{\"records\": [ … ]}}): {e}"))
    })?;
    if batch.records.len() > MAX_RECORDS_PER_BATCH {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "batch has {} records; at most {MAX_RECORDS_PER_BATCH} are accepted at once",
                batch.records.len()
            ),
        ));
    }
    let mut valid = Vec::with_capacity(batch.records.len());
    // The batch index of each valid record, to name the ones the database refuses.
    let mut indices = Vec::with_capacity(batch.records.len());
    let mut rejected = Vec::new();
    for (index, raw) in batch.records.iter().enumerate() {
        match parse_record(index, raw) {
            Ok(r) => {
                valid.push(r);
                indices.push(index);
            }
            Err(rejection) => rejected.push(rejection),
        }
    }
    let counts = if valid.is_empty() {
        Default::default()
    } else {
        state
            .store
            .ingest(&valid, state.clock.now_ms())
            .await
            .map_err(ApiError::db(DbOp::Ingest))?
    };
    for refused in &counts.refused {
        // The database's words stay in the log (the store logged them); the sender learns
        // that this record, as it is, will never be stored.
        let index = valid
            .iter()
            .position(|r| r.id == refused.id)
            .and_then(|i| indices.get(i).copied())
            .unwrap_or_default();
        rejected.push(Rejection {
            index,
            id: Some(refused.id.to_string()),
            message: "the database refused this record's values (see the ledger's log)".into(),
        });
    }
    rejected.sort_by_key(|r| r.index);
    if let Some(first) = rejected.first() {
        tracing::warn!(
            rejected = rejected.len(),
            "ingest rejected records; first: {}",
            first.message
        );
    }
    // Only answered batches: a batch the database failed is counted as a database error, and
    // its records are counted when the sender's retry is answered.
    telemetry::count_batch(
        counts.accepted,
        counts.duplicates,
        rejected.len() as u64,
        started.elapsed(),
    );
    Ok(Json(IngestAnswer {
        accepted: counts.accepted,
        duplicates: counts.duplicates,
        rejected,
    }))
}
