//! The store: the one place with SQL. A SQLite file in WAL mode, migrated on connect.
//!
//! One file per table ([`runs`] holds `run` and its `step` rows, [`outbox`] the replies waiting
//! to be delivered). Queries are written out plainly with `sqlx::query_as::<_, Row>()`; times are
//! integer milliseconds passed in by the caller ([`now_ms`] in production), so every statement
//! is deterministic under test.

pub mod outbox;
pub mod runs;

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use outbox::{DeliveryRow, DeliveryState};
pub use runs::{
    Insert, NewRun, Position, RunFilter, RunId, RunRow, RunStatus, StepRow, StepStatus,
    TestFailureRow,
};

/// Failures of the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database said no.
    #[error("database error")]
    Sqlx(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("cannot migrate the database")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database file's folder could not be created.
    #[error("cannot create the database folder {0}")]
    Folder(String, #[source] std::io::Error),
}

/// Result of store operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Milliseconds since the Unix epoch, the unit of every `*_at` column.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Milliseconds in a duration, saturating.
pub fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// How long a write waits for another writer's lock unless configured.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A handle on the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating the file and its folder if needed) and migrates the database; a write
    /// waits up to [`DEFAULT_BUSY_TIMEOUT`] for another writer.
    ///
    /// # Errors
    ///
    /// The URL is not SQLite, the folder or file cannot be created, or a migration failed.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, DEFAULT_BUSY_TIMEOUT).await
    }

    /// [`Store::connect`], with a write waiting up to `busy_timeout` for another writer's lock
    /// before it fails (`busy_timeout_ms`).
    ///
    /// # Errors
    ///
    /// The URL is not SQLite, the folder or file cannot be created, or a migration failed.
    pub async fn connect_with(url: &str, busy_timeout: Duration) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // N.B. FULL, not NORMAL: an acknowledged run must survive a power cut, not only a
            // crash of this process.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(busy_timeout)
            .foreign_keys(true);
        let file = options.get_filename();
        if let Some(folder) = file.parent()
            && !folder.as_os_str().is_empty()
            && file != std::path::Path::new(":memory:")
        {
            std::fs::create_dir_all(folder)
                .map_err(|err| Error::Folder(folder.display().to_string(), err))?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Wraps an existing pool (for `#[sqlx::test]`); the caller migrates.
    pub fn from_pool(pool: SqlitePool) -> Self {
        Self { pool }
    }

    /// Answers when the database does.
    ///
    /// # Errors
    ///
    /// The database is unreachable.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes every connection (on shutdown, so the WAL is checkpointed).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
