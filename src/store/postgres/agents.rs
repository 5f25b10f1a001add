//! The `agent_token` and `agent` tables: remote agents' tokens (by their SHA-256) and the
//! agents as last seen, shared by every instance.

use super::{Result, Store};
use crate::domain::{AgentRow, RunId};
use crate::store::model::AgentToken;

impl Store {
    /// Records token `name`, found by `token_hash`; false when a token of that name is in
    /// use (a revoked one is replaced).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn create_agent_token(&self, name: &str, token_hash: &str, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "insert into agent_token (name, token_hash, created_at) values ($1, $2, $3)
             on conflict (name) do update set token_hash = $2, created_at = $3, revoked_at = null
             where agent_token.revoked_at is not null",
        )
        .bind(name)
        .bind(token_hash)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every token, by name.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn agent_tokens(&self) -> Result<Vec<AgentToken>> {
        Ok(
            sqlx::query_as("select name, created_at, revoked_at from agent_token order by name")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Revokes token `name` at `now`; false when there is no such token in use.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn revoke_agent_token(&self, name: &str, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "update agent_token set revoked_at = $1 where name = $2 and revoked_at is null",
        )
        .bind(now)
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The name of the token in use whose hash is `token_hash`.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn agent_token_name(&self, token_hash: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as(
            "select name from agent_token where token_hash = $1 and revoked_at is null",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(name,)| name))
    }

    /// Records that agent `agent.name`, with token `token_name`, was heard from.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn agent_seen(&self, agent: &AgentRow, token_name: &str) -> Result<()> {
        sqlx::query(
            "insert into agent (name, token_name, labels, version, last_seen_at, run_id)
             values ($1, $2, $3, $4, $5, $6)
             on conflict (name) do update set token_name = $2, labels = $3, version = $4,
                 last_seen_at = $5, run_id = $6",
        )
        .bind(&agent.name)
        .bind(token_name)
        .bind(&agent.labels)
        .bind(&agent.version)
        .bind(agent.last_seen_at)
        .bind(agent.run_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every agent ever heard from, by name.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn agents(&self) -> Result<Vec<AgentRow>> {
        Ok(sqlx::query_as(
            "select name, labels, version, last_seen_at, run_id from agent order by name",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Who holds run `run_id` while it runs, and with which attempt.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn run_lease(&self, run_id: RunId) -> Result<Option<(String, i64)>> {
        Ok(sqlx::query_as(
            "select lease_owner, attempt from run
             where run_id = $1 and status = 'running' and lease_owner is not null",
        )
        .bind(run_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Records that agent `agent` runs attempt `attempt` of run `run_id`.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn set_run_agent(&self, run_id: RunId, attempt: i64, agent: &str) -> Result<()> {
        sqlx::query("update run set agent = $1 where run_id = $2 and attempt = $3")
            .bind(agent)
            .bind(run_id)
            .bind(attempt)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
