//! The `session`, `secret` and `rate_event` tables: what every instance must agree on, so a
//! user signed in on one instance is signed in on all, a form made by one is accepted by
//! another, and the rate limit counts a user's requests to every instance.

use super::{Result, Store};
use crate::store::model::RATE_WINDOW_MS;

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
        let mut tx = self.pool.begin().await?;
        sqlx::query("delete from session where expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("insert into session (token_hash, user_name, expires_at) values ($1, $2, $3)")
            .bind(token_hash)
            .bind(user)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The user of the session `token_hash`, unless it expired by `now`.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn session_user(&self, token_hash: &str, now: i64) -> Result<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as(
            "select user_name from session where token_hash = $1 and expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(user,)| user))
    }

    /// Ends the session `token_hash`.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn end_session(&self, token_hash: &str) -> Result<()> {
        sqlx::query("delete from session where token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The key named `name`: `fresh` the first time any instance asks for it, the stored one
    /// after.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn secret(&self, name: &str, fresh: &[u8]) -> Result<Vec<u8>> {
        sqlx::query(
            "insert into secret (name, value) values ($1, $2) on conflict (name) do nothing",
        )
        .bind(name)
        .bind(fresh)
        .execute(&self.pool)
        .await?;
        let (value,): (Vec<u8>,) = sqlx::query_as("select value from secret where name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(value)
    }

    /// Counts a request of `key` at `now` when it is within `per_minute` (0: no limit) over
    /// every instance; otherwise how long (ms) until the next is allowed. One key's requests
    /// take turns on an advisory lock, so two instances cannot both let the last one in.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn count_request(&self, key: &str, now: i64, per_minute: i64) -> Result<Option<i64>> {
        if per_minute <= 0 {
            return Ok(None);
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("select pg_advisory_xact_lock(hashtextextended('chatrun.rate:' || $1, 0))")
            .bind(key)
            .execute(&mut *tx)
            .await?;
        sqlx::query("delete from rate_event where key = $1 and at <= $2")
            .bind(key)
            .bind(now - RATE_WINDOW_MS)
            .execute(&mut *tx)
            .await?;
        let (count, oldest): (i64, Option<i64>) =
            sqlx::query_as("select count(*), min(at) from rate_event where key = $1")
                .bind(key)
                .fetch_one(&mut *tx)
                .await?;
        if count >= per_minute {
            return Ok(Some(RATE_WINDOW_MS - (now - oldest.unwrap_or(now))));
        }
        sqlx::query("insert into rate_event (key, at) values ($1, $2)")
            .bind(key)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(None)
    }
}
