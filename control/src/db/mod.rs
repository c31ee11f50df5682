//! Storage: one SQL code path over SQLite (embedded default, WAL) and Postgres through sqlx's
//! `any` driver. Every statement's text is the same for both; the only backend-specific code is
//! connection setup (SQLite pragmas) and a writer lock that SQLite's single-writer design needs.

mod export;
pub mod flags;
mod ingest;
pub mod query;
mod retention;
pub mod review;
mod row;
mod tokens;

pub use export::ExportFormat;
pub use ingest::{IngestCounts, RefusedRow};
pub use retention::{PurgeReport, Retention};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database URL scheme (use sqlite:// or postgres://)")]
    Scheme,
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// A sum of the batch would not fit a BIGINT: a fault of the records' content.
    #[error("{0}")]
    OutOfRange(String),
}

/// The ledger's database.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite has one writer at a time; writers queue here instead of failing with
    /// `SQLITE_BUSY`. Postgres writers run concurrently (row locks order them).
    writer: Option<Arc<Mutex<()>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish()
    }
}

/// The embedded migrations, applied in order at start.
fn migrator() -> Migrator {
    Migrator {
        migrations: Cow::Owned(vec![
            Migration::new(
                1,
                Cow::Borrowed("ledger"),
                MigrationType::Simple,
                Cow::Borrowed(include_str!("../../migrations/0001_ledger.sql")),
                false,
            ),
            Migration::new(
                2,
                Cow::Borrowed("error_type"),
                MigrationType::Simple,
                Cow::Borrowed(include_str!("../../migrations/0002_error_type.sql")),
                false,
            ),
            Migration::new(
                3,
                Cow::Borrowed("pool_target"),
                MigrationType::Simple,
                Cow::Borrowed(include_str!("../../migrations/0003_pool_target.sql")),
                false,
            ),
            Migration::new(
                4,
                Cow::Borrowed("review"),
                MigrationType::Simple,
                Cow::Borrowed(include_str!("../../migrations/0004_review.sql")),
                false,
            ),
        ]),
        ..Migrator::DEFAULT
    }
}

/// The URL with credentials removed, for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

impl Store {
    /// Connects, switches SQLite to WAL, and applies the migrations.
    pub async fn open(url: &str, max_connections: u32) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if let Some(rest) = url.strip_prefix("sqlite:") {
            // Create the file on first start unless the URL says otherwise.
            let url = if rest.contains("mode=") {
                url.to_string()
            } else if rest.contains('?') {
                format!("{url}&mode=rwc")
            } else {
                format!("{url}?mode=rwc")
            };
            (Backend::Sqlite, url)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            (Backend::Postgres, url.to_string())
        } else {
            return Err(DbError::Scheme);
        };
        let mut options = AnyPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(30));
        if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    // FULL: an acknowledged batch must survive a power cut, because the proxy
                    // truncates its spool on our answer. foreign_keys is unused; busy_timeout
                    // covers readers racing a checkpoint.
                    conn.execute("PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000;")
                        .await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(&url).await?;
        if backend == Backend::Sqlite {
            // WAL lets exports and queries read while ingest writes; the mode is stored in the
            // file, so setting it once per start is enough.
            pool.execute("PRAGMA journal_mode = WAL;").await?;
        }
        migrator().run(&pool).await?;
        Ok(Self {
            pool,
            backend,
            writer: (backend == Backend::Sqlite).then(|| Arc::new(Mutex::new(()))),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Waits for SQLite's single writer slot; a no-op guard on Postgres.
    async fn write_guard(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.writer {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        }
    }

    /// Checks the database answers (for `/healthz`).
    pub async fn ping(&self) -> Result<(), DbError> {
        let row: AnyRow = sqlx::query("SELECT 1").fetch_one(&self.pool).await?;
        let _ = row;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Placeholders for a multi-row VALUES list of `rows` rows of `cols` columns:
/// `($1,$2),($3,$4)` on Postgres, `(?,?),(?,?)` on SQLite. This is the one place the SQL text
/// differs: SQLite looks a named parameter up by walking its parameter list, so binding
/// thousands of `$N` parameters costs quadratic time (it was 90% of ingest time), while
/// anonymous `?` parameters bind positionally.
fn placeholders(backend: Backend, rows: usize, cols: usize) -> String {
    let mut s = String::with_capacity(rows * cols * 5);
    for r in 0..rows {
        if r > 0 {
            s.push(',');
        }
        s.push('(');
        for c in 0..cols {
            if c > 0 {
                s.push(',');
            }
            match backend {
                Backend::Postgres => {
                    s.push('$');
                    s.push_str(&(r * cols + c + 1).to_string());
                }
                Backend::Sqlite => s.push('?'),
            }
        }
        s.push(')');
    }
    s
}

/// Stored integers are BIGINT; a u64 beyond i64 never reaches the database (ingest rejects it).
fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A stored BIGINT back to u64; negative values cannot be written by this code.
fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_rows_then_columns() {
        assert_eq!(
            placeholders(Backend::Postgres, 2, 3),
            "($1,$2,$3),($4,$5,$6)"
        );
        assert_eq!(placeholders(Backend::Postgres, 1, 1), "($1)");
        assert_eq!(placeholders(Backend::Sqlite, 2, 2), "(?,?),(?,?)");
    }

    #[test]
    fn redaction_hides_credentials() {
        assert_eq!(
            redact_url("postgres://u:secret@127.0.0.1:5432/db"),
            "postgres://***@127.0.0.1:5432/db"
        );
        assert_eq!(redact_url("sqlite:///tmp/l.db"), "sqlite:///tmp/l.db");
    }
}
