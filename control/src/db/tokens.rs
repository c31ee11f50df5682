//! Org-admin tokens' storage: created by an operator, kept as SHA-256 digests, revocable.

use super::review::AuditAction;
use super::{to_i64, to_u64, DbError, Store};
use sluice_wire::OrgToken;
use sqlx::Row;

impl Store {
    /// Stores a new token's digest under a fresh id, and audits it, in one transaction.
    pub async fn create_org_token(
        &self,
        org: &str,
        name: &str,
        digest_hex: &str,
        now_ms: u64,
        audit: AuditAction,
    ) -> Result<OrgToken, DbError> {
        let token = OrgToken {
            id: format!("otk_{}", uuid::Uuid::now_v7().simple()),
            org: org.to_string(),
            name: name.to_string(),
            created_ms: now_ms,
            revoked_ms: None,
        };
        let _guard = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO org_tokens (id, org, name, digest, created_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token.id.clone())
        .bind(token.org.clone())
        .bind(token.name.clone())
        .bind(digest_hex.to_string())
        .bind(to_i64(now_ms))
        .execute(&mut *tx)
        .await?;
        super::review::insert_audit(&mut tx, now_ms, audit).await?;
        tx.commit().await?;
        Ok(token)
    }

    /// Revokes a token and audits it; false (nothing audited) when unknown or already revoked.
    pub async fn revoke_org_token(
        &self,
        id: &str,
        now_ms: u64,
        audit: AuditAction,
    ) -> Result<bool, DbError> {
        let _guard = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        let revoked = sqlx::query(
            "UPDATE org_tokens SET revoked_ms = $1 WHERE id = $2 AND revoked_ms IS NULL",
        )
        .bind(to_i64(now_ms))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if revoked {
            super::review::insert_audit(&mut tx, now_ms, audit).await?;
        }
        tx.commit().await?;
        Ok(revoked)
    }

    /// Every token (revoked ones too), oldest first; only `org`'s when given.
    pub async fn org_tokens(&self, org: Option<&str>) -> Result<Vec<OrgToken>, DbError> {
        let rows = sqlx::query(
            "SELECT id, org, name, created_ms, revoked_ms FROM org_tokens \
             WHERE $1 = '' OR org = $1 ORDER BY created_ms, id",
        )
        .bind(org.unwrap_or_default().to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(OrgToken {
                    id: row.try_get(0)?,
                    org: row.try_get(1)?,
                    name: row.try_get(2)?,
                    created_ms: to_u64(row.try_get(3)?),
                    revoked_ms: row.try_get::<Option<i64>, _>(4)?.map(to_u64),
                })
            })
            .collect()
    }

    /// The live token with this digest, if any.
    pub async fn org_token_by_digest(&self, digest_hex: &str) -> Result<Option<OrgToken>, DbError> {
        let row = sqlx::query(
            "SELECT id, org, name, created_ms FROM org_tokens \
             WHERE digest = $1 AND revoked_ms IS NULL",
        )
        .bind(digest_hex.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(OrgToken {
                id: row.try_get(0)?,
                org: row.try_get(1)?,
                name: row.try_get(2)?,
                created_ms: to_u64(row.try_get(3)?),
                revoked_ms: None,
            })
        })
        .transpose()
    }
}
