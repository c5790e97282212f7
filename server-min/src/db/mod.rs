//! Storage through sqlx. SQLite is the embedded default; the SQL is kept portable so the
//! same statements run on PostgreSQL.
//!
//! Architecture invariant: the database is the only record of devices, addresses and
//! certificates. Nothing is cached in process memory between requests, so several bridge
//! replicas can share one database.

pub mod audit;
pub mod certificates;
pub mod decommission;
pub mod devices;
pub mod peer_set;
pub mod pending;
pub mod settings;
pub mod sites;
pub mod users;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

/// A write transaction.
pub type Tx = Transaction<'static, Sqlite>;

/// Storage errors, naming what was being done.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot open database {path}: {source}")]
    Open { path: String, source: sqlx::Error },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error while {doing}: {source}")]
    Query {
        doing: &'static str,
        source: sqlx::Error,
    },
}

/// Attaches what we were doing to a sqlx error.
pub(crate) trait QueryContext<T> {
    fn doing(self, doing: &'static str) -> Result<T, DbError>;
}

impl<T> QueryContext<T> for Result<T, sqlx::Error> {
    fn doing(self, doing: &'static str) -> Result<T, DbError> {
        self.map_err(|source| DbError::Query { doing, source })
    }
}

impl DbError {
    /// True when the error is a UNIQUE / PRIMARY KEY violation, which a racing writer causes.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            DbError::Query {
                source: sqlx::Error::Database(e),
                ..
            } => e.is_unique_violation(),
            _ => false,
        }
    }
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The bridge's database.
#[derive(Debug, Clone)]
pub struct Db {
    pool: SqlitePool,
}

impl Db {
    /// Opens (creating if missing) the SQLite file at `path` and applies pending migrations.
    pub async fn open_sqlite(path: &Path) -> Result<Self, DbError> {
        let url = format!("sqlite://{}", path.display());
        let open_err = |source| DbError::Open {
            path: path.display().to_string(),
            source,
        };
        let options = SqliteConnectOptions::from_str(&url)
            .map_err(open_err)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before the device sees its address.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(open_err)?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A connection from the pool, for reads outside a write transaction.
    pub async fn acquire(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Sqlite>, DbError> {
        self.pool.acquire().await.doing("acquiring a connection")
    }

    /// Starts a write transaction that holds the write lock from its first statement, so two
    /// writers never deadlock on a lock upgrade.
    pub async fn begin_write(&self) -> Result<Tx, DbError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .doing("starting a write transaction")
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
