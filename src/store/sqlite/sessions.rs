//! The `session` and `secret` tables: web sessions (by the SHA-256 of their token) and keys
//! made once; and the rate limit's counts, which on this backend stay in memory (one process
//! owns a SQLite file's work, and a write per trigger would cost every acknowledgement).

use super::{Result, Store};
use crate::store::model::count_in_window;

impl Store {
    /// Records a session of `user`, found by `token_hash` until `expires_at`; sessions expired
    /// by `now` go.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn create_session(
        &self,
        token_hash: &str,
        user: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        self.write_script(
            sqlx::query(
                "begin;
                 delete from session where expires_at <= ?1;
                 insert into session (token_hash, user_name, expires_at) values (?2, ?3, ?4);
                 commit",
            )
            .bind(now)
            .bind(token_hash)
            .bind(user)
            .bind(expires_at),
        )
        .await?;
        Ok(())
    }

    /// The user of the session `token_hash`, unless it expired by `now`.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn session_user(&self, token_hash: &str, now: i64) -> Result<Option<String>> {
        let row: Option<(String,)> =
            sqlx::query_as("select user_name from session where token_hash = ? and expires_at > ?")
                .bind(token_hash)
                .bind(now)
                .fetch_optional(&self.reader)
                .await?;
        Ok(row.map(|(user,)| user))
    }

    /// Ends the session `token_hash`.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn end_session(&self, token_hash: &str) -> Result<()> {
        sqlx::query("delete from session where token_hash = ?")
            .bind(token_hash)
            .execute(&mut *self.writer.lock().await?)
            .await?;
        Ok(())
    }

    /// The key named `name`: `fresh` the first time it is asked for, the stored one after.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn secret(&self, name: &str, fresh: &[u8]) -> Result<Vec<u8>> {
        let mut conn = self.writer.lock().await?;
        sqlx::query("insert into secret (name, value) values (?, ?) on conflict (name) do nothing")
            .bind(name)
            .bind(fresh)
            .execute(&mut *conn)
            .await?;
        let (value,): (Vec<u8>,) = sqlx::query_as("select value from secret where name = ?")
            .bind(name)
            .fetch_one(&mut *conn)
            .await?;
        drop(conn);
        self.durable().await?;
        Ok(value)
    }

    /// Counts a request of `key` at `now` when it is within `per_minute` (0: no limit);
    /// otherwise how long (ms) until the next is allowed.
    ///
    /// # Errors
    ///
    /// None on this backend.
    pub async fn count_request(&self, key: &str, now: i64, per_minute: i64) -> Result<Option<i64>> {
        let mut recent = self
            .recent_requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(count_in_window(
            recent.entry(key.to_string()).or_default(),
            now,
            per_minute,
        ))
    }
}
