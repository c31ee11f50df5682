//! Abuse review's storage: the suspensions every proxy enforces, and the audit log of operator
//! and org-admin actions (purged after its own retention period, by the same clock as records).

use super::{to_i64, to_u64, DbError, Store};
use sluice_wire::{AuditEntry, SubjectKind, Suspension};
use sqlx::Row;

/// Longest stored reason or audit detail, in bytes (operator-written text, cut at a character
/// boundary): enough for a sentence, bounded so a review note cannot grow the feed every proxy
/// polls.
pub const MAX_NOTE: usize = 500;

/// An action to append to the audit log (its id and time are the ledger's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditAction {
    pub actor: String,
    pub action: &'static str,
    pub subject: Option<String>,
    pub detail: Option<String>,
    pub source_ip: Option<String>,
}

pub(crate) fn bounded(text: &str) -> String {
    let mut end = text.len().min(MAX_NOTE);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

impl Store {
    /// Suspends `subject` (or updates the reason of its suspension, keeping its start), and
    /// audits it, in one transaction.
    pub async fn suspend(
        &self,
        kind: SubjectKind,
        subject: &str,
        reason: &str,
        now_ms: u64,
        audit: AuditAction,
    ) -> Result<Suspension, DbError> {
        let _guard = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO suspensions (kind, subject, reason, since_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (kind, subject) DO UPDATE SET reason = excluded.reason",
        )
        .bind(kind.as_str())
        .bind(subject.to_string())
        .bind(bounded(reason))
        .bind(to_i64(now_ms))
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(
            "SELECT kind, subject, reason, since_ms FROM suspensions WHERE kind = $1 AND subject = $2",
        )
        .bind(kind.as_str())
        .bind(subject.to_string())
        .fetch_one(&mut *tx)
        .await?;
        insert_audit(&mut tx, now_ms, audit).await?;
        tx.commit().await?;
        suspension(&row)
    }

    /// Lifts a suspension and audits it; false (and nothing audited) when there was none.
    pub async fn lift(
        &self,
        kind: SubjectKind,
        subject: &str,
        now_ms: u64,
        audit: AuditAction,
    ) -> Result<bool, DbError> {
        let _guard = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        let lifted = sqlx::query("DELETE FROM suspensions WHERE kind = $1 AND subject = $2")
            .bind(kind.as_str())
            .bind(subject.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        if lifted {
            insert_audit(&mut tx, now_ms, audit).await?;
        }
        tx.commit().await?;
        Ok(lifted)
    }

    /// Every suspension in force, by kind and subject.
    pub async fn suspensions(&self) -> Result<Vec<Suspension>, DbError> {
        let rows = sqlx::query(
            "SELECT kind, subject, reason, since_ms FROM suspensions ORDER BY kind, subject",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(suspension).collect()
    }

    /// Appends one entry to the audit log.
    pub async fn audit(&self, now_ms: u64, action: AuditAction) -> Result<(), DbError> {
        let _guard = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        insert_audit(&mut tx, now_ms, action).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Audit entries with `from_ms <= time_ms < to_ms`, oldest first, at most `limit`.
    pub async fn audit_log(
        &self,
        from_ms: u64,
        to_ms: u64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, DbError> {
        let rows = sqlx::query(
            "SELECT id, time_ms, actor, action, subject, detail, source_ip FROM audit \
             WHERE time_ms >= $1 AND time_ms < $2 ORDER BY time_ms, id LIMIT $3",
        )
        .bind(to_i64(from_ms))
        .bind(to_i64(to_ms))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    id: row.try_get(0)?,
                    time_ms: to_u64(row.try_get(1)?),
                    actor: row.try_get(2)?,
                    action: row.try_get(3)?,
                    subject: row.try_get(4)?,
                    detail: row.try_get(5)?,
                    source_ip: row.try_get(6)?,
                })
            })
            .collect()
    }
}

pub(super) async fn insert_audit(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    now_ms: u64,
    a: AuditAction,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO audit (id, time_ms, actor, action, subject, detail, source_ip) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(to_i64(now_ms))
    .bind(a.actor)
    .bind(a.action)
    .bind(a.subject)
    .bind(a.detail.as_deref().map(bounded))
    .bind(a.source_ip)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn suspension(row: &sqlx::any::AnyRow) -> Result<Suspension, DbError> {
    let kind: String = row.try_get(0)?;
    Ok(Suspension {
        kind: kind
            .parse()
            .map_err(|e: String| DbError::Corrupt(format!("suspensions.kind: {e}")))?,
        subject: row.try_get(1)?,
        reason: row.try_get(2)?,
        since_ms: to_u64(row.try_get(3)?),
    })
}
