//! The `log_chunk` table: run logs kept in the database. The embedded backend keeps the logs
//! of the runs it executes as files (`logs::LogStore::files`); here are the logs of the runs
//! remote agents execute, which they send over HTTP, through the same interface as Postgres's.

use sqlx::Row;

use super::{Result, Store};
use crate::domain::RunId;
use crate::store::model::LogChunk;

impl Store {
    /// Removes run `run_id`'s chunks that lie within `forget` (from its start to its end), then
    /// adds `chunks`, in one transaction.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn write_log(
        &self,
        run_id: RunId,
        forget: (i64, i64),
        chunks: &[LogChunk],
    ) -> Result<()> {
        let mut conn = self.writer.lock().await?;
        let written = async {
            sqlx::query("begin").execute(&mut *conn).await?;
            sqlx::query(
                "delete from log_chunk where run_id = ? and pos >= ? and pos + length(data) <= ?",
            )
            .bind(run_id)
            .bind(forget.0)
            .bind(forget.1)
            .execute(&mut *conn)
            .await?;
            for chunk in chunks {
                sqlx::query("insert into log_chunk (run_id, pos, lines, data) values (?, ?, ?, ?)")
                    .bind(run_id)
                    .bind(chunk.pos)
                    .bind(chunk.lines)
                    .bind(&chunk.data)
                    .execute(&mut *conn)
                    .await?;
            }
            sqlx::query("commit").execute(&mut *conn).await?;
            Ok::<_, sqlx::Error>(())
        }
        .await;
        super::rolled_back_on_error(&mut conn, written).await
    }

    /// The size of run `run_id`'s log in the database: the end of its last chunk; `None` when
    /// it has none.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn log_size(&self, run_id: RunId) -> Result<Option<i64>> {
        let (size,): (Option<i64>,) =
            sqlx::query_as("select max(pos + length(data)) from log_chunk where run_id = ?")
                .bind(run_id)
                .fetch_one(&self.reader)
                .await?;
        Ok(size)
    }

    /// The chunks of run `run_id`'s log, whole, from the one that holds offset `from` (or the
    /// first kept after it) until they hold `length` bytes from there: `(where each starts,
    /// its bytes)`, in order.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn log_range(
        &self,
        run_id: RunId,
        from: i64,
        length: i64,
    ) -> Result<Vec<(i64, Vec<u8>)>> {
        let rows = sqlx::query(
            "select pos, data from log_chunk,
                 (select max(min(pos), ?2) as start from log_chunk
                  where run_id = ?1 and pos + length(data) > ?2) as first
             where run_id = ?1 and pos + length(data) > ?2 and pos < first.start + ?3
             order by pos",
        )
        .bind(run_id)
        .bind(from)
        .bind(length)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }

    /// Where line counting starts for offset `at` of run `run_id`'s log: the newlines before
    /// the chunk that holds `at` and that chunk's bytes before `at`; or, when `at` is before
    /// every chunk kept, the first chunk's newlines and nothing. `None` without chunks.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn log_lines_at(&self, run_id: RunId, at: i64) -> Result<Option<(i64, Vec<u8>)>> {
        let holding = sqlx::query_as(
            "select lines, substr(data, 1, ?2 - pos) from log_chunk
             where run_id = ?1 and pos <= ?2 order by pos desc limit 1",
        )
        .bind(run_id)
        .bind(at)
        .fetch_optional(&self.reader)
        .await?;
        if holding.is_some() {
            return Ok(holding);
        }
        Ok(
            sqlx::query_as(
                "select lines, x'' from log_chunk where run_id = ? order by pos limit 1",
            )
            .bind(run_id)
            .fetch_optional(&self.reader)
            .await?,
        )
    }
}
