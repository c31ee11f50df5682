//! Ingest: one transaction per batch that inserts the records (the primary key on `id` turns a
//! redelivery into a no-op) and adds only the newly inserted ones to the hourly and daily
//! aggregates, so a duplicate is acknowledged without being counted twice.
//!
//! One row's content never fails a batch: when the database refuses a batch for what is in it
//! (a data exception, an overflowing aggregate), the batch is split in halves and each half
//! stored on its own, down to single records, so only the records the database refuses are
//! refused ([`RefusedRow`]) and all others are stored. Errors of the database itself (down,
//! full, locked) still fail the whole batch, which the sender retries.

use super::row::RECORD_COLUMNS;
use super::{placeholders, to_i64, Backend, DbError, Store};
use crate::time::{day_start, hour_start};
use sluice_wire::UsageRecord;
use sqlx::Row;
use std::collections::{BTreeMap, HashSet};

/// Rows per multi-row INSERT: 256 × 34 columns stays well under SQLite's 32766 and Postgres'
/// 65535 bound arguments per statement.
const RECORD_ROWS_PER_INSERT: usize = 256;
/// Aggregate rows per multi-row upsert (16 columns each).
const AGG_ROWS_PER_UPSERT: usize = 512;
/// Postgres deadlock or serialization failures are retried this many times.
const MAX_ATTEMPTS: u32 = 5;

/// What one batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestCounts {
    /// Records stored now.
    pub accepted: u64,
    /// Records already stored (or repeated within the batch): acknowledged, not counted again.
    pub duplicates: u64,
    /// Records the database refused for their content, each tried alone.
    pub refused: Vec<RefusedRow>,
}

/// A record the database refused even when stored alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedRow {
    pub id: uuid::Uuid,
    /// The database's reason, for the ledger's log (not for the sender).
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct HourKey {
    org: String,
    hour_ms: u64,
    provider: String,
    model: String,
    key_id: String,
    user: String,
    session: String,
    feature: String,
    status: u16,
}

#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    requests: u64,
    input: u64,
    output: u64,
    cached: u64,
    cache_write: u64,
    reasoning: u64,
    cost: u64,
}

impl Sums {
    /// Adds a record; a sum beyond BIGINT is an error of the records' content (never a
    /// silently capped total), which ingest isolates like any other refused row.
    fn add(&mut self, r: &UsageRecord) -> Result<(), DbError> {
        let add = |sum: u64, n: u64, name: &str| {
            sum.checked_add(n)
                .filter(|s| i64::try_from(*s).is_ok())
                .ok_or_else(|| DbError::OutOfRange(format!("{name} sum is out of range")))
        };
        self.requests += 1;
        self.input = add(self.input, r.input_tokens, "input_tokens")?;
        self.output = add(self.output, r.output_tokens, "output_tokens")?;
        self.cached = add(self.cached, r.cached_tokens, "cached_tokens")?;
        self.cache_write = add(self.cache_write, r.cache_write_tokens, "cache_write_tokens")?;
        self.reasoning = add(self.reasoning, r.reasoning_tokens, "reasoning_tokens")?;
        self.cost = add(self.cost, r.cost_micro_usd, "cost_micro_usd")?;
        Ok(())
    }

    fn values(&self) -> [i64; 7] {
        [
            self.requests,
            self.input,
            self.output,
            self.cached,
            self.cache_write,
            self.reasoning,
            self.cost,
        ]
        .map(to_i64)
    }
}

const SUM_COLUMNS: [&str; 7] = [
    "requests",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_micro_usd",
];

fn text(s: Option<&str>) -> String {
    s.unwrap_or_default().to_string()
}

/// `SET requests = usage_x.requests + excluded.requests, …`, failing on a sum beyond BIGINT.
///
/// Postgres raises "bigint out of range" on such a sum, but SQLite silently turns it into a
/// REAL, which would break every later read of that aggregate. So the sum is guarded: beyond
/// the range, the statement evaluates `abs()` of the smallest BIGINT, which is an error on both
/// (SQLite: "integer overflow", Postgres: "bigint out of range"). The argument is built from the
/// column so that Postgres cannot fold it (and raise) while planning. The statement text stays
/// the same for both backends.
fn add_excluded(table: &str) -> String {
    SUM_COLUMNS
        .iter()
        .map(|c| {
            format!(
                "{c} = CASE WHEN excluded.{c} > {max} - {table}.{c} \
                 THEN abs({table}.{c} - {table}.{c} - {max} - 1) \
                 ELSE {table}.{c} + excluded.{c} END",
                max = i64::MAX
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_retryable(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| code == "40P01" || code == "40001")
}

/// Whether the database refused the batch for what is in it (so a part of it may still be
/// stored), as opposed to failing itself (down, full, busy, read-only), which fails the batch.
fn is_row_content(e: &DbError, backend: Backend) -> bool {
    let e = match e {
        DbError::OutOfRange(_) => return true,
        DbError::Sqlx(e) => e,
        _ => return false,
    };
    let Some(db) = e.as_database_error() else {
        return false;
    };
    let code = db.code().unwrap_or_default();
    match backend {
        // SQLSTATE classes 22 (data exception: bad encoding, NUL, out of range) and 23
        // (integrity constraint), and 54000 (a value too large for an index entry).
        Backend::Postgres => code.starts_with("22") || code.starts_with("23") || code == "54000",
        Backend::Sqlite => {
            // Extended result codes: the primary code is the low byte. SQLITE_TOOBIG (18),
            // SQLITE_CONSTRAINT (19), SQLITE_MISMATCH (20), SQLITE_RANGE (25), and the integer
            // overflow that the aggregate guard raises (a plain SQLITE_ERROR).
            let primary = code.parse::<i32>().map_or(-1, |c| c & 0xff);
            matches!(primary, 18 | 19 | 20 | 25)
                || (primary == 1 && db.message().contains("integer overflow"))
        }
    }
}

impl Store {
    /// Stores a batch of validated records exactly once by id. `received_ms` stamps them.
    /// Records the database refuses for their content are isolated and reported in
    /// [`IngestCounts::refused`]; the others are stored.
    pub async fn ingest(
        &self,
        records: &[UsageRecord],
        received_ms: u64,
    ) -> Result<IngestCounts, DbError> {
        // Id order makes concurrent batches take row locks in the same order (no deadlocks on
        // Postgres) and lets repeats within the batch be found next to each other.
        let mut sorted: Vec<&UsageRecord> = records.iter().collect();
        sorted.sort_by_key(|r| r.id);
        let before = sorted.len();
        sorted.dedup_by_key(|r| r.id);
        let repeated = (before - sorted.len()) as u64;

        let _guard = self.write_guard().await;
        let mut counts = IngestCounts {
            duplicates: repeated,
            ..IngestCounts::default()
        };
        // Parts still to store, last first. A refused part is split in halves: one bad record
        // among n costs about 2·log2(n) extra transactions, paid only when a batch is refused.
        let mut parts: Vec<&[&UsageRecord]> = vec![&sorted];
        while let Some(part) = parts.pop() {
            match self.ingest_retrying(part, received_ms).await {
                Ok(done) => {
                    counts.accepted += done.accepted;
                    counts.duplicates += done.duplicates;
                }
                Err(e) if is_row_content(&e, self.backend) => match part {
                    [one] => {
                        tracing::warn!(id = %one.id, "the database refused a record: {e}");
                        counts.refused.push(RefusedRow {
                            id: one.id,
                            reason: e.to_string(),
                        });
                    }
                    _ => {
                        let (first, second) = part.split_at(part.len() / 2);
                        parts.push(second);
                        parts.push(first);
                    }
                },
                Err(e) => return Err(e),
            }
        }
        Ok(counts)
    }

    /// One transaction over `records`, retried on Postgres deadlocks and serialization failures.
    async fn ingest_retrying(
        &self,
        records: &[&UsageRecord],
        received_ms: u64,
    ) -> Result<IngestCounts, DbError> {
        let mut attempt = 1;
        loop {
            match self.ingest_once(records, received_ms).await {
                Ok(counts) => return Ok(counts),
                Err(DbError::Sqlx(e))
                    if self.backend == Backend::Postgres
                        && attempt < MAX_ATTEMPTS
                        && is_retryable(&e) =>
                {
                    tracing::debug!(attempt, "ingest transaction retried: {e}");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn ingest_once(
        &self,
        records: &[&UsageRecord],
        received_ms: u64,
    ) -> Result<IngestCounts, DbError> {
        let mut tx = self.pool.begin().await?;
        let mut inserted: HashSet<String> = HashSet::with_capacity(records.len());
        for chunk in records.chunks(RECORD_ROWS_PER_INSERT) {
            let sql = format!(
                "INSERT INTO records ({}) VALUES {} ON CONFLICT (id) DO NOTHING RETURNING id",
                RECORD_COLUMNS.join(", "),
                placeholders(self.backend, chunk.len(), RECORD_COLUMNS.len())
            );
            let ids: Vec<String> = chunk.iter().map(|r| r.id.to_string()).collect();
            let metas: Vec<Option<String>> = chunk
                .iter()
                .map(|r| {
                    if r.meta.is_empty() {
                        Ok(None)
                    } else {
                        serde_json::to_string(&r.meta).map(Some)
                    }
                })
                .collect::<Result<_, _>>()
                .map_err(|e| DbError::Corrupt(format!("meta: {e}")))?;
            let mut q = sqlx::query(&sql);
            for ((r, id), meta) in chunk.iter().zip(&ids).zip(&metas) {
                q = q
                    .bind(id.as_str())
                    .bind(i64::from(r.v))
                    .bind(to_i64(r.time_ms))
                    .bind(r.org.as_deref())
                    .bind(r.key_id.as_deref())
                    .bind(r.provider.as_deref())
                    .bind(r.model.as_deref())
                    .bind(r.upstream_model.as_deref())
                    .bind(r.api.as_ref())
                    .bind(i64::from(r.stream))
                    .bind(i64::from(r.status))
                    .bind(r.outcome.as_str())
                    .bind(to_i64(r.input_tokens))
                    .bind(to_i64(r.output_tokens))
                    .bind(to_i64(r.cached_tokens))
                    .bind(to_i64(r.cache_write_tokens))
                    .bind(to_i64(r.reasoning_tokens))
                    .bind(i64::from(r.estimated))
                    .bind(to_i64(r.cost_micro_usd))
                    .bind(r.ttft_ms)
                    .bind(r.total_ms)
                    .bind(r.upstream_ms)
                    .bind(to_i64(r.bytes_in))
                    .bind(to_i64(r.bytes_out))
                    .bind(r.user.as_deref())
                    .bind(r.session.as_deref())
                    .bind(r.feature.as_deref())
                    .bind(meta.as_deref())
                    .bind(r.client_ip.as_deref())
                    .bind(to_i64(received_ms))
                    .bind(r.error_type.as_deref())
                    .bind(r.endpoint.as_deref())
                    .bind(r.region.as_deref())
                    .bind(i64::from(r.attempts));
            }
            for row in q.fetch_all(&mut *tx).await? {
                inserted.insert(row.try_get::<String, _>(0)?);
            }
        }

        let mut hourly: BTreeMap<HourKey, Sums> = BTreeMap::new();
        let mut daily: BTreeMap<(String, u64), Sums> = BTreeMap::new();
        let fresh = records
            .iter()
            .filter(|r| inserted.contains(&r.id.to_string()));
        for r in fresh {
            let org = text(r.org.as_deref());
            hourly
                .entry(HourKey {
                    org: org.clone(),
                    hour_ms: hour_start(r.time_ms),
                    provider: text(r.provider.as_deref()),
                    model: text(r.model.as_deref()),
                    key_id: text(r.key_id.as_deref()),
                    user: text(r.user.as_deref()),
                    session: text(r.session.as_deref()),
                    feature: text(r.feature.as_deref()),
                    status: r.status,
                })
                .or_default()
                .add(r)?;
            daily
                .entry((org, day_start(r.time_ms)))
                .or_default()
                .add(r)?;
        }

        let hourly: Vec<(HourKey, Sums)> = hourly.into_iter().collect();
        for chunk in hourly.chunks(AGG_ROWS_PER_UPSERT) {
            let sql = format!(
                "INSERT INTO usage_hourly (org, hour_ms, provider, model, key_id, user_tag, \
                 session_tag, feature_tag, status, {}) VALUES {} ON CONFLICT (org, hour_ms, \
                 provider, model, key_id, user_tag, session_tag, feature_tag, status) DO UPDATE \
                 SET {}",
                SUM_COLUMNS.join(", "),
                placeholders(self.backend, chunk.len(), 9 + SUM_COLUMNS.len()),
                add_excluded("usage_hourly")
            );
            let mut q = sqlx::query(&sql);
            for (k, sums) in chunk {
                q = q
                    .bind(k.org.as_str())
                    .bind(to_i64(k.hour_ms))
                    .bind(k.provider.as_str())
                    .bind(k.model.as_str())
                    .bind(k.key_id.as_str())
                    .bind(k.user.as_str())
                    .bind(k.session.as_str())
                    .bind(k.feature.as_str())
                    .bind(i64::from(k.status));
                for v in sums.values() {
                    q = q.bind(v);
                }
            }
            q.execute(&mut *tx).await?;
        }

        let daily: Vec<((String, u64), Sums)> = daily.into_iter().collect();
        for chunk in daily.chunks(AGG_ROWS_PER_UPSERT) {
            let sql = format!(
                "INSERT INTO usage_daily (org, day_ms, {}) VALUES {} ON CONFLICT (org, day_ms) \
                 DO UPDATE SET {}",
                SUM_COLUMNS.join(", "),
                placeholders(self.backend, chunk.len(), 2 + SUM_COLUMNS.len()),
                add_excluded("usage_daily")
            );
            let mut q = sqlx::query(&sql);
            for ((org, day_ms), sums) in chunk {
                q = q.bind(org.as_str()).bind(to_i64(*day_ms));
                for v in sums.values() {
                    q = q.bind(v);
                }
            }
            q.execute(&mut *tx).await?;
        }

        tx.commit().await?;
        let accepted = inserted.len() as u64;
        Ok(IngestCounts {
            accepted,
            duplicates: records.len() as u64 - accepted,
            refused: Vec::new(),
        })
    }
}
