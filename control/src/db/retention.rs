//! Retention (raw records, client IPs and audit entries age out; aggregates stay as billing
//! records) and erasure of an org.

use super::{to_i64, DbError, Store};
use crate::clock::Clock;
use crate::time::DAY_MS;
use sluice_wire::ErasureAnswer;

/// Rows deleted per statement, so a large purge never holds one huge transaction (or SQLite's
/// writer slot) for long.
const PURGE_CHUNK: i64 = 5000;

/// How long each kind of data is kept, in days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Raw records.
    pub records_days: u32,
    /// The optional client IP column of raw records.
    pub client_ip_days: u32,
    /// The audit log.
    pub audit_days: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            records_days: 90,
            client_ip_days: 30,
            audit_days: 90,
        }
    }
}

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub records_deleted: u64,
    pub client_ips_cleared: u64,
    /// Audit entries and abuse flags.
    pub audit_deleted: u64,
}

fn cutoff(now_ms: u64, days: u32) -> i64 {
    to_i64(now_ms.saturating_sub(u64::from(days) * DAY_MS))
}

impl Store {
    /// Deletes raw records older than the retention period and clears client IPs older than
    /// theirs, by record time (`time_ms`) against `clock`. Aggregates are not touched.
    pub async fn purge(
        &self,
        clock: &dyn Clock,
        retention: Retention,
    ) -> Result<PurgeReport, DbError> {
        let now = clock.now_ms();
        let records_deleted = self
            .in_chunks(
                "DELETE FROM records WHERE id IN \
                 (SELECT id FROM records WHERE time_ms < $1 LIMIT $2)",
                cutoff(now, retention.records_days),
            )
            .await?;
        let client_ips_cleared = self
            .in_chunks(
                "UPDATE records SET client_ip = NULL WHERE id IN \
                 (SELECT id FROM records WHERE time_ms < $1 AND client_ip IS NOT NULL LIMIT $2)",
                cutoff(now, retention.client_ip_days),
            )
            .await?;
        let audit_deleted = self
            .in_chunks(
                "DELETE FROM audit WHERE id IN \
                 (SELECT id FROM audit WHERE time_ms < $1 LIMIT $2)",
                cutoff(now, retention.audit_days),
            )
            .await?;
        // Flags are review history too: they follow the audit log's retention.
        let audit_deleted = audit_deleted
            + self
                .in_chunks(
                    "DELETE FROM flags WHERE id IN \
                     (SELECT id FROM flags WHERE raised_ms < $1 LIMIT $2)",
                    cutoff(now, retention.audit_days),
                )
                .await?;
        Ok(PurgeReport {
            records_deleted,
            client_ips_cleared,
            audit_deleted,
        })
    }

    /// Runs `sql` (bound to `before` and [`PURGE_CHUNK`]) until it touches fewer rows than a
    /// chunk, each run under the writer guard on its own; returns the rows touched in all.
    async fn in_chunks(&self, sql: &'static str, before: i64) -> Result<u64, DbError> {
        let mut total = 0;
        loop {
            let _guard = self.write_guard().await;
            let done = sqlx::query(sql)
                .bind(before)
                .bind(PURGE_CHUNK)
                .execute(&self.pool)
                .await?
                .rows_affected();
            total += done;
            if done < PURGE_CHUNK as u64 {
                return Ok(total);
            }
        }
    }

    /// Erases everything held about `org`: raw records and both aggregate tables, in one
    /// transaction.
    pub async fn erase_org(&self, org: &str) -> Result<ErasureAnswer, DbError> {
        let _guard = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        let count = |sql: &'static str| sqlx::query(sql).bind(org.to_string());
        let records = count("DELETE FROM records WHERE org = $1")
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let hourly_aggregates = count("DELETE FROM usage_hourly WHERE org = $1")
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let daily_aggregates = count("DELETE FROM usage_daily WHERE org = $1")
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(ErasureAnswer {
            org: org.to_string(),
            records,
            hourly_aggregates,
            daily_aggregates,
        })
    }
}
