//! The embedded backend: a SQLite file in WAL mode, migrated on connect (`migrations/sqlite/`).
//!
//! One file per table ([`runs`] holds `run` and its `step` rows, [`outbox`] the replies waiting
//! to be delivered). Queries are written out plainly with `sqlx::query_as::<_, Row>()`; times are
//! integer milliseconds passed in by the caller, so every statement is deterministic under test.

mod agents;
mod batch;
pub mod flush;
mod logs;
mod outbox;
mod runs;
mod sessions;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection, SqlitePool};

use super::{Error, Result};

/// Connections reading at once (pages, the API, the queue's look-ups); WAL lets them read while
/// the writer writes.
const READERS: u32 = 8;

/// `result`, after rolling back on `conn` whatever transaction its statements left open when
/// it is an error.
async fn rolled_back_on_error<T>(
    conn: &mut sqlx::SqliteConnection,
    result: std::result::Result<T, impl Into<Error>>,
) -> Result<T> {
    match result {
        Ok(value) => Ok(value),
        Err(err) => {
            // Fails harmlessly when no transaction was open (the `begin` itself failed).
            let _ = sqlx::query("rollback").execute(&mut *conn).await;
            Err(err.into())
        }
    }
}

/// The one connection that writes, held for as long as chatrun runs; writes take turns on it,
/// the batches of triggers ahead of the others.
///
/// N.B. Not a pool of one: a pool tests every connection it gets back by sending it a `ping`
/// from a task of its own, one more round trip to the connection's thread after every write
/// (and a write is often one round trip itself).
#[derive(Debug, Clone)]
struct Writer {
    conn: Arc<tokio::sync::Mutex<Option<SqliteConnection>>>,
    /// Held by every write but the triggers' from before it queues for `conn` until it is
    /// done: so none of them waits there, and a batch of triggers waits for the one write
    /// under way at most (with four workers writing their runs' claims and results, in one
    /// queue with the batches, a batch waited for the writer half its time).
    others: Arc<tokio::sync::Mutex<()>>,
    /// How long a write waits for its turn before it fails (as for another process's lock).
    wait: Duration,
}

/// The writer's connection, for one write.
struct Turn<'a> {
    conn: tokio::sync::MappedMutexGuard<'a, SqliteConnection>,
    /// Released after `conn`, so a waiting batch of triggers gets `conn` first.
    _others: Option<tokio::sync::MutexGuard<'a, ()>>,
}

impl std::ops::Deref for Turn<'_> {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for Turn<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }
}

impl Writer {
    /// The connection, once the writes queued before this one are done.
    ///
    /// # Errors
    ///
    /// The turn did not come within `wait`, or the store was closed.
    async fn lock(&self) -> Result<Turn<'_>> {
        self.turn(true).await
    }

    /// The connection for a batch of triggers ([`batch`]), after the write under way.
    ///
    /// # Errors
    ///
    /// As [`Writer::lock`].
    async fn lock_first(&self) -> Result<Turn<'_>> {
        self.turn(false).await
    }

    async fn turn(&self, behind_others: bool) -> Result<Turn<'_>> {
        let (others, conn) = tokio::time::timeout(self.wait, async {
            let others = if behind_others {
                Some(self.others.lock().await)
            } else {
                None
            };
            (others, self.conn.lock().await)
        })
        .await
        .map_err(|_| Error::Busy)?;
        let conn =
            tokio::sync::MutexGuard::try_map(conn, Option::as_mut).map_err(|_| Error::Closed)?;
        Ok(Turn {
            conn,
            _others: others,
        })
    }

    /// Closes the connection (SQLite checkpoints the log); writes fail from then on.
    async fn close(&self) {
        if let Some(conn) = self.conn.lock().await.take() {
            let _ = conn.close().await;
        }
    }
}

/// A handle on the database; cheap to clone.
///
/// Writes go through one connection (`writer`) and reads through a pool of others (`reader`):
/// SQLite lets one writer in at a time anyway, and a writer waiting for the connection is
/// served in turn the moment it is free, where a second writing connection would sleep in
/// SQLite's busy handler (up to 100 ms a try) and let the queue of triggers grow meanwhile.
#[derive(Debug, Clone)]
pub struct Store {
    writer: Writer,
    reader: SqlitePool,
    flusher: Arc<flush::Flusher>,
    /// Where [`Store::insert_run`] queues its trigger for the next batch ([`batch`]).
    batch: tokio::sync::mpsc::Sender<batch::Request>,
    /// The rate limit's recent requests, by user (see [`sessions`]).
    recent_requests: Arc<std::sync::Mutex<RecentRequests>>,
}

/// Request times (ms) by rate-limit key, oldest first.
type RecentRequests = std::collections::HashMap<String, std::collections::VecDeque<i64>>;

impl Store {
    /// Opens (creating the file and its folder if needed) and migrates the database; a write
    /// waits up to [`DEFAULT_BUSY_TIMEOUT`] for another writer.
    ///
    /// # Errors
    ///
    /// The URL is not SQLite, the folder or file cannot be created, or a migration failed.
    #[cfg(test)]
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, super::DEFAULT_BUSY_TIMEOUT).await
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
            // N.B. NORMAL, and the writes chatrun acts on wait for `flusher` (group commit):
            // an acknowledged run survives a power cut as with FULL, and concurrent writes
            // share one sync of the log.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(busy_timeout)
            .foreign_keys(true);
        let file = options.get_filename().to_path_buf();
        if let Some(folder) = file.parent()
            && !folder.as_os_str().is_empty()
            && file != std::path::Path::new(":memory:")
        {
            std::fs::create_dir_all(folder)
                .map_err(|err| Error::Folder(folder.display().to_string(), err))?;
        }
        let mut conn = SqliteConnection::connect_with(&options).await?;
        sqlx::migrate!("./migrations/sqlite").run(&mut conn).await?;
        let (mode,): (String,) = sqlx::query_as("pragma journal_mode")
            .fetch_one(&mut conn)
            .await?;
        let wal = if mode.eq_ignore_ascii_case("wal") {
            let mut wal = file.as_os_str().to_owned();
            wal.push("-wal");
            Some(std::path::PathBuf::from(wal))
        } else {
            // No log to sync (an in-memory database): SQLite syncs each commit, if it can.
            sqlx::query("pragma synchronous = full")
                .execute(&mut conn)
                .await?;
            None
        };
        let writer = Writer {
            conn: Arc::new(tokio::sync::Mutex::new(Some(conn))),
            others: Arc::new(tokio::sync::Mutex::new(())),
            // Waiting for our own writer is bounded like waiting for another process's lock.
            wait: busy_timeout.max(Duration::from_millis(100)),
        };
        // N.B. No test before acquire: it would cost a round trip to the connection's thread
        // on every statement, and a SQLite file does not drop connections.
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        let flusher = Arc::new(flush::Flusher::new(wal));
        let (batch, requests) = tokio::sync::mpsc::channel(batch::MAX_BATCH * 4);
        batch::start(writer.clone(), requests, flusher.clone()).map_err(Error::Batcher)?;
        Ok(Self {
            writer,
            reader,
            flusher,
            batch,
            recent_requests: Arc::default(),
        })
    }

    /// Answers when the database does.
    ///
    /// # Errors
    ///
    /// The database is unreachable.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("select 1").execute(&self.reader).await?;
        Ok(())
    }

    /// Returns once the writes committed so far are on disk (see [`flush`]). Called by the
    /// writes that chatrun acts on outside the database; every other write is covered by the
    /// next of those.
    ///
    /// # Errors
    ///
    /// The log could not be synced.
    async fn durable(&self) -> Result<()> {
        self.flusher.flush().await.map_err(Error::Flush)
    }

    /// Writes that waited for a sync and the syncs done, since start-up.
    pub fn flush_counts(&self) -> flush::FlushCounts {
        self.flusher.counts()
    }

    /// Runs `script`, statements from `begin` to `commit` sent to the writer's thread in one
    /// message (each message costs two thread wake-ups, more than a short statement), and rolls
    /// back what it began when one of them fails. The rows its statements changed, in all.
    ///
    /// N.B. Parameters are numbered (`?3`). sqlx binds an index below a statement's highest
    /// that the statement does not use as if it were an unnumbered `?`, taking the next value
    /// in order, and stops binding once it has run past the last value, which leaves the rest
    /// of that statement's parameters NULL. So the indexes skipped, counted over the whole
    /// script, must stay fewer than the values: number first what most statements use.
    ///
    /// # Errors
    ///
    /// A statement failed; nothing was written.
    async fn write_script(
        &self,
        script: sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    ) -> Result<u64> {
        let mut conn = self.writer.lock().await?;
        let done = script.execute(&mut *conn).await;
        rolled_back_on_error(&mut conn, done.map(|done| done.rows_affected())).await
    }

    /// [`Store::write_script`], for a script that ends with reads: the rows they return.
    ///
    /// # Errors
    ///
    /// A statement failed; nothing was written.
    async fn fetch_script(
        &self,
        script: sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    ) -> Result<Vec<sqlx::sqlite::SqliteRow>> {
        let mut conn = self.writer.lock().await?;
        let rows = script.fetch_all(&mut *conn).await;
        rolled_back_on_error(&mut conn, rows).await
    }

    /// Closes every connection (on shutdown, so the WAL is checkpointed).
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}
