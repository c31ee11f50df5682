//! The abuse flags' storage: hourly volumes per subject (from the aggregates for keys and orgs,
//! from raw records for client IPs, which the aggregates do not hold), and the flags with their
//! review state.

use super::{to_i64, to_u64, DbError, Store};
use sluice_wire::{Flag, FlagKind, FlagMetric, FlagStatus};
use sqlx::Row;

/// One subject's volume in one hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourVolume {
    pub subject: String,
    pub hour_ms: u64,
    pub requests: u64,
    pub tokens: u64,
}

/// A flag as the detection pass raises it (id, status and times are the store's).
#[derive(Debug, Clone, PartialEq)]
pub struct Raised {
    pub kind: FlagKind,
    pub subject: String,
    pub hour_ms: u64,
    pub metric: FlagMetric,
    pub value: u64,
    pub median: f64,
    pub mad: f64,
    pub bar: f64,
    pub by_threshold: bool,
}

const COLUMNS: &str = "id, kind, subject, hour_ms, metric, value, median, mad, bar, by_threshold, \
                       status, raised_ms, reviewed_ms, note";

impl Store {
    /// Every subject of `kind` with its volume per hour since `from_ms`.
    pub async fn hourly_volumes(
        &self,
        kind: FlagKind,
        from_ms: u64,
    ) -> Result<Vec<HourVolume>, DbError> {
        let sql = match kind {
            FlagKind::Key => {
                "SELECT key_id, hour_ms, CAST(SUM(requests) AS BIGINT), \
                 CAST(SUM(input_tokens + output_tokens) AS BIGINT) FROM usage_hourly \
                 WHERE hour_ms >= $1 AND key_id <> '' GROUP BY key_id, hour_ms"
            }
            FlagKind::Org => {
                "SELECT org, hour_ms, CAST(SUM(requests) AS BIGINT), \
                 CAST(SUM(input_tokens + output_tokens) AS BIGINT) FROM usage_hourly \
                 WHERE hour_ms >= $1 AND org <> '' GROUP BY org, hour_ms"
            }
            FlagKind::Ip => {
                "SELECT client_ip, time_ms - time_ms % 3600000 AS h, CAST(COUNT(*) AS BIGINT), \
                 CAST(SUM(input_tokens + output_tokens) AS BIGINT) FROM records \
                 WHERE time_ms >= $1 AND client_ip IS NOT NULL GROUP BY client_ip, h"
            }
        };
        let rows = sqlx::query(sql)
            .bind(to_i64(from_ms))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(HourVolume {
                    subject: row.try_get(0)?,
                    hour_ms: to_u64(row.try_get(1)?),
                    requests: to_u64(row.try_get::<Option<i64>, _>(2)?.unwrap_or(0)),
                    tokens: to_u64(row.try_get::<Option<i64>, _>(3)?.unwrap_or(0)),
                })
            })
            .collect()
    }

    /// Raises `flag`, or refreshes its numbers while it is still open; a flag already reviewed
    /// for that subject, hour and metric stays as the reviewer left it.
    pub async fn raise(&self, flag: &Raised, now_ms: u64) -> Result<(), DbError> {
        let _guard = self.write_guard().await;
        sqlx::query(
            "INSERT INTO flags (id, kind, subject, hour_ms, metric, value, median, mad, bar, \
             by_threshold, status, raised_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'open', $11) \
             ON CONFLICT (kind, subject, hour_ms, metric) DO UPDATE SET value = excluded.value, \
             median = excluded.median, mad = excluded.mad, bar = excluded.bar, \
             by_threshold = excluded.by_threshold WHERE flags.status = 'open'",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(flag.kind.as_str())
        .bind(flag.subject.clone())
        .bind(to_i64(flag.hour_ms))
        .bind(flag.metric.as_str())
        .bind(to_i64(flag.value))
        .bind(flag.median)
        .bind(flag.mad)
        .bind(flag.bar)
        .bind(i64::from(flag.by_threshold))
        .bind(to_i64(now_ms))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Flags with `status` (all when `None`), newest first, at most `limit`.
    pub async fn flags(
        &self,
        status: Option<FlagStatus>,
        limit: u32,
    ) -> Result<Vec<Flag>, DbError> {
        let rows = match status {
            Some(s) => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM flags WHERE status = $1 ORDER BY raised_ms DESC, id LIMIT $2"
                ))
                .bind(s.as_str())
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM flags ORDER BY raised_ms DESC, id LIMIT $1"
                ))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(flag).collect()
    }

    pub async fn flag(&self, id: &str) -> Result<Option<Flag>, DbError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM flags WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(flag).transpose()
    }

    /// Closes an open flag as `status` with the reviewer's note; false when it was not open.
    pub async fn close_flag(
        &self,
        id: &str,
        status: FlagStatus,
        note: Option<&str>,
        now_ms: u64,
    ) -> Result<bool, DbError> {
        let _guard = self.write_guard().await;
        let done = sqlx::query(
            "UPDATE flags SET status = $1, reviewed_ms = $2, note = $3 WHERE id = $4 AND status = 'open'",
        )
        .bind(status.as_str())
        .bind(to_i64(now_ms))
        .bind(note.map(super::review::bounded))
        .bind(id.to_string())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(done > 0)
    }

    /// Open flags per kind (for the gauge).
    pub async fn open_flags(&self) -> Result<Vec<(FlagKind, u64)>, DbError> {
        let rows = sqlx::query(
            "SELECT kind, CAST(COUNT(*) AS BIGINT) FROM flags WHERE status = 'open' GROUP BY kind",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for row in &rows {
            let kind: String = row.try_get(0)?;
            let kind = kind
                .parse()
                .map_err(|e: String| DbError::Corrupt(format!("flags.kind: {e}")))?;
            out.push((kind, to_u64(row.try_get(1)?)));
        }
        Ok(out)
    }
}

fn flag(row: &sqlx::any::AnyRow) -> Result<Flag, DbError> {
    let corrupt = |what: &str, e: String| DbError::Corrupt(format!("flags.{what}: {e}"));
    let kind: String = row.try_get(1)?;
    let metric: String = row.try_get(4)?;
    let status: String = row.try_get(10)?;
    Ok(Flag {
        id: row.try_get(0)?,
        kind: kind.parse().map_err(|e| corrupt("kind", e))?,
        subject: row.try_get(2)?,
        hour_ms: to_u64(row.try_get(3)?),
        metric: metric.parse().map_err(|e| corrupt("metric", e))?,
        value: to_u64(row.try_get(5)?),
        median: row.try_get(6)?,
        mad: row.try_get(7)?,
        bar: row.try_get(8)?,
        by_threshold: row.try_get::<i64, _>(9)? != 0,
        status: status.parse().map_err(|e| corrupt("status", e))?,
        raised_ms: to_u64(row.try_get(11)?),
        reviewed_ms: row.try_get::<Option<i64>, _>(12)?.map(to_u64),
        note: row.try_get(13)?,
    })
}
