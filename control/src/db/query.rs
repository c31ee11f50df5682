//! Reads of the aggregates: usage grouped by any set of dimensions, and the spend feed.

use super::{to_i64, to_u64, DbError, Store};
use crate::time::{day_label, hour_label, DAY_MS};
use sluice_wire::{GroupBy, OrgSpend, UsageGroup, UsageTotals};
use sqlx::any::AnyRow;
use sqlx::Row;

/// The SQL expression for one grouping dimension over `usage_hourly`.
fn dimension(g: GroupBy) -> String {
    match g {
        GroupBy::Model => "model".into(),
        GroupBy::Key => "key_id".into(),
        GroupBy::Provider => "provider".into(),
        // Integer division on BIGINT truncates in both SQLite and Postgres.
        GroupBy::Day => format!("(hour_ms / {DAY_MS}) * {DAY_MS}"),
        GroupBy::Hour => "hour_ms".into(),
        GroupBy::User => "user_tag".into(),
        GroupBy::Session => "session_tag".into(),
        GroupBy::Feature => "feature_tag".into(),
        GroupBy::Status => "status".into(),
    }
}

const SUMS: &str = "CAST(SUM(requests) AS BIGINT), CAST(SUM(input_tokens) AS BIGINT), \
    CAST(SUM(output_tokens) AS BIGINT), CAST(SUM(cached_tokens) AS BIGINT), \
    CAST(SUM(cache_write_tokens) AS BIGINT), CAST(SUM(reasoning_tokens) AS BIGINT), \
    CAST(SUM(cost_micro_usd) AS BIGINT)";

fn totals(row: &AnyRow, first: usize) -> Result<UsageTotals, DbError> {
    let n = |i: usize| -> Result<u64, DbError> {
        Ok(to_u64(
            row.try_get::<Option<i64>, _>(first + i)?.unwrap_or(0),
        ))
    };
    Ok(UsageTotals {
        requests: n(0)?,
        input_tokens: n(1)?,
        output_tokens: n(2)?,
        cached_tokens: n(3)?,
        cache_write_tokens: n(4)?,
        reasoning_tokens: n(5)?,
        cost_micro_usd: n(6)?,
    })
}

/// Adds `b` into `a`, saturating (a total beyond u64 is not a real bill).
pub fn add_totals(a: &mut UsageTotals, b: &UsageTotals) {
    a.requests = a.requests.saturating_add(b.requests);
    a.input_tokens = a.input_tokens.saturating_add(b.input_tokens);
    a.output_tokens = a.output_tokens.saturating_add(b.output_tokens);
    a.cached_tokens = a.cached_tokens.saturating_add(b.cached_tokens);
    a.cache_write_tokens = a.cache_write_tokens.saturating_add(b.cache_write_tokens);
    a.reasoning_tokens = a.reasoning_tokens.saturating_add(b.reasoning_tokens);
    a.cost_micro_usd = a.cost_micro_usd.saturating_add(b.cost_micro_usd);
}

/// '' stands for "absent" in the aggregates' keys.
fn present(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

impl Store {
    /// Usage over the hours starting in `[from_ms, to_ms)`, for one org or all, grouped by
    /// `group_by` (deduplicated, in the given order), sorted by the groups.
    pub async fn usage(
        &self,
        org: Option<&str>,
        from_ms: u64,
        to_ms: u64,
        group_by: &[GroupBy],
    ) -> Result<Vec<UsageGroup>, DbError> {
        let dims: Vec<String> = group_by.iter().map(|g| dimension(*g)).collect();
        let mut sql = String::from("SELECT ");
        for d in &dims {
            sql.push_str(d);
            sql.push_str(", ");
        }
        sql.push_str(SUMS);
        sql.push_str(" FROM usage_hourly WHERE hour_ms >= $1 AND hour_ms < $2");
        if org.is_some() {
            sql.push_str(" AND org = $3");
        }
        if !dims.is_empty() {
            let list = dims.join(", ");
            sql.push_str(&format!(" GROUP BY {list} ORDER BY {list}"));
        }
        let mut q = sqlx::query(&sql).bind(to_i64(from_ms)).bind(to_i64(to_ms));
        if let Some(org) = org {
            q = q.bind(org);
        }
        let rows = q.fetch_all(&self.pool).await?;
        let mut groups = Vec::with_capacity(rows.len());
        for row in rows {
            let mut group = UsageGroup {
                totals: totals(&row, dims.len())?,
                ..UsageGroup::default()
            };
            // Without grouping, SUM over no rows is one row of NULLs: no usage, no group.
            if dims.is_empty() && group.totals.requests == 0 {
                continue;
            }
            for (i, g) in group_by.iter().enumerate() {
                match g {
                    GroupBy::Day | GroupBy::Hour | GroupBy::Status => {
                        let n = to_u64(row.try_get::<i64, _>(i)?);
                        match g {
                            GroupBy::Day => group.day = Some(day_label(n)),
                            GroupBy::Hour => group.hour = Some(hour_label(n)),
                            _ => group.status = u16::try_from(n).ok(),
                        }
                    }
                    _ => {
                        let s = present(row.try_get::<String, _>(i)?);
                        match g {
                            GroupBy::Model => group.model = s,
                            GroupBy::Key => group.key = s,
                            GroupBy::Provider => group.provider = s,
                            GroupBy::User => group.user = s,
                            GroupBy::Session => group.session = s,
                            _ => group.feature = s,
                        }
                    }
                }
            }
            groups.push(group);
        }
        Ok(groups)
    }

    /// Each org's spend since `day_start_ms` and since `month_start_ms` (records without an org
    /// are refused requests and cost nothing).
    pub async fn spend(
        &self,
        day_start_ms: u64,
        month_start_ms: u64,
    ) -> Result<Vec<OrgSpend>, DbError> {
        let rows = sqlx::query(
            "SELECT org, CAST(SUM(CASE WHEN day_ms >= $1 THEN cost_micro_usd ELSE 0 END) AS BIGINT), \
             CAST(SUM(cost_micro_usd) AS BIGINT) FROM usage_daily \
             WHERE day_ms >= $2 AND org <> '' GROUP BY org ORDER BY org",
        )
        .bind(to_i64(day_start_ms))
        .bind(to_i64(month_start_ms))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(OrgSpend {
                    org: row.try_get(0)?,
                    day_micro_usd: to_u64(row.try_get::<Option<i64>, _>(1)?.unwrap_or(0)),
                    month_micro_usd: to_u64(row.try_get::<Option<i64>, _>(2)?.unwrap_or(0)),
                })
            })
            .collect()
    }
}
