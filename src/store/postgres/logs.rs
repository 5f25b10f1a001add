//! The `log_chunk` table: run logs kept in the database, so that any instance shows the log of
//! a run another one executes; each insert notifies `chatrun_log` with the run's id, which
//! wakes the pages that follow it.

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
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "delete from log_chunk where run_id = $1 and pos >= $2 and pos + length(data) <= $3",
        )
        .bind(run_id)
        .bind(forget.0)
        .bind(forget.1)
        .execute(&mut *tx)
        .await?;
        if !chunks.is_empty() {
            sqlx::query(
                "insert into log_chunk (run_id, pos, lines, data)
                 select $1, * from unnest($2::bigint[], $3::bigint[], $4::bytea[])",
            )
            .bind(run_id)
            .bind(chunks.iter().map(|c| c.pos).collect::<Vec<_>>())
            .bind(chunks.iter().map(|c| c.lines).collect::<Vec<_>>())
            .bind(chunks.iter().map(|c| c.data.as_slice()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The size of run `run_id`'s log in the database: the end of its last chunk; `None` when
    /// it has none.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn log_size(&self, run_id: RunId) -> Result<Option<i64>> {
        let (size,): (Option<i64>,) =
            sqlx::query_as("select max(pos + length(data)) from log_chunk where run_id = $1")
                .bind(run_id)
                .fetch_one(&self.pool)
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
                 (select greatest(min(pos), $2) as start from log_chunk
                  where run_id = $1 and pos + length(data) > $2) as first
             where run_id = $1 and pos + length(data) > $2 and pos < first.start + $3
             order by pos",
        )
        .bind(run_id)
        .bind(from)
        .bind(length)
        .fetch_all(&self.pool)
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
            "select lines, substring(data from 1 for ($2 - pos)::int) from log_chunk
             where run_id = $1 and pos <= $2 order by pos desc limit 1",
        )
        .bind(run_id)
        .bind(at)
        .fetch_optional(&self.pool)
        .await?;
        if holding.is_some() {
            return Ok(holding);
        }
        Ok(sqlx::query_as(
            "select lines, ''::bytea from log_chunk where run_id = $1 order by pos limit 1",
        )
        .bind(run_id)
        .fetch_optional(&self.pool)
        .await?)
    }
}
