//! The `outbox` table on Postgres: replies waiting to be delivered, with the rules of SQLite's
//! (`sqlite/outbox.rs`): rows are inserted in the transaction that stores what they report; a
//! sender claims a due row by pushing its `next_attempt_at` forward (`for update skip locked`,
//! so two instances never take the same row); replies to one thread go out in the order they
//! were queued, strictly within a run and for [`ORDER_HOLD_MS`] across runs.

use sqlx::PgConnection;

use super::{Result, Store};
use crate::domain::{Delivery, ReplyIntent, RunId};
use crate::store::model::{DeliveryRow, DeliveryState, ORDER_HOLD_MS};

/// Whether pending delivery `o` may go before the others of its thread: no earlier delivery to
/// its thread is pending that reports the same run, or was queued after `$4` (now less
/// [`ORDER_HOLD_MS`]). A delivery with no thread is ordered with nothing.
const ORDERED: &str = "not exists (
    select 1 from outbox e
    where e.thread = o.thread and e.status = 'pending' and e.outbox_id < o.outbox_id
        and (e.run_id = o.run_id or e.created_at > $4))";

/// Queues a delivery inside the caller's transaction, due at once.
///
/// # Errors
///
/// The database failed.
pub(super) async fn insert(
    tx: &mut PgConnection,
    run_id: Option<RunId>,
    intent: &ReplyIntent,
    now: i64,
) -> Result<()> {
    let (target, body, thread, kind) = match intent {
        ReplyIntent::Worded(d) => (&d.target, d.body.as_str(), &d.thread, "worded"),
        ReplyIntent::Result(a) => (&a.target, "", &a.thread, "result"),
    };
    sqlx::query(
        "insert into outbox (run_id, target, body, thread, next_attempt_at, created_at, kind)
         values ($1, $2, $3, $4, $5, $5, $6)",
    )
    .bind(run_id)
    .bind(target)
    .bind(body)
    .bind(Some(thread).filter(|t| !t.is_empty()))
    .bind(now)
    .bind(kind)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

impl Store {
    /// Queues a delivery that reports no run, due at once.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn enqueue_delivery(&self, delivery: &Delivery, now: i64) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        insert(&mut conn, None, &ReplyIntent::Worded(delivery.clone()), now).await
    }

    /// Takes the delivery due first, if any is due at `now` and may go before the others of
    /// its thread, and holds it until `hold_until` for `owner`; a claim that finds it still
    /// being sent (its sender died mid-attempt) counts that attempt as unsure.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn try_claim_delivery(
        &self,
        now: i64,
        hold_until: i64,
        owner: &str,
    ) -> Result<Option<DeliveryRow>> {
        Ok(
            sqlx::query_as::<_, DeliveryRow>(sqlx::AssertSqlSafe(format!(
                "update outbox set next_attempt_at = $1, attempts = attempts + 1,
                 unsure = unsure + case when sending then 1 else 0 end,
                 unsure_at = case when sending then coalesce(unsure_at, sending_since)
                     else unsure_at end,
                 sending = true, sending_since = $2, sending_owner = $3
             where outbox_id = (
                 select o.outbox_id from outbox o
                 where o.status = 'pending' and o.next_attempt_at <= $2 and {ORDERED}
                 order by o.next_attempt_at, o.outbox_id limit 1
                 for update skip locked)
             returning outbox_id, run_id, target, body, attempts, created_at, thread, unsure,
                 last_error, kind, unsure_at, search_failures, blind"
            )))
            .bind(hold_until)
            .bind(now)
            .bind(owner)
            .bind(now - ORDER_HOLD_MS)
            .fetch_optional(&self.pool)
            .await?,
        )
    }

    /// When the next pending delivery may be claimed, if there is one.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn next_delivery_at(&self) -> Result<Option<i64>> {
        let (at,): (Option<i64>,) = sqlx::query_as(
            "select min(greatest(o.next_attempt_at, coalesce(
                 (select max(e.created_at) from outbox e
                  where e.thread = o.thread and e.status = 'pending' and e.outbox_id < o.outbox_id)
                 + $1, 0)))
             from outbox o
             where o.status = 'pending' and not exists (
                 select 1 from outbox e
                 where e.thread = o.thread and e.status = 'pending' and e.outbox_id < o.outbox_id
                     and e.run_id = o.run_id)",
        )
        .bind(ORDER_HOLD_MS)
        .fetch_one(&self.pool)
        .await?;
        Ok(at)
    }

    /// The deliveries being sent, and which process is sending each.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn claimed_deliveries(&self) -> Result<Vec<(i64, Option<String>)>> {
        Ok(sqlx::query_as(
            "select outbox_id, sending_owner from outbox where status = 'pending' and sending",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Makes a delivery that `owner` (a process that died) was sending due at `now`. False
    /// when it is no longer so.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn release_delivery(&self, outbox_id: i64, owner: &str, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "update outbox set next_attempt_at = $1
             where outbox_id = $2 and status = 'pending' and sending and sending_owner = $3",
        )
        .bind(now)
        .bind(outbox_id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records, before it is sent, that a delivery goes out without knowing whether an
    /// earlier attempt arrived.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn mark_blind(&self, outbox_id: i64) -> Result<()> {
        sqlx::query("update outbox set blind = true where outbox_id = $1")
            .bind(outbox_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The delivery went through.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn mark_sent(&self, outbox_id: i64, now: i64) -> Result<()> {
        sqlx::query(
            "update outbox set status = 'sent', sent_at = $1, sending = false,
                 last_error = case when blind then last_error else null end
             where outbox_id = $2",
        )
        .bind(now)
        .bind(outbox_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The delivery failed and is tried again at `next_attempt_at`.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn mark_retry(
        &self,
        outbox_id: i64,
        next_attempt_at: i64,
        error: &str,
        unsure: bool,
        search_failed: bool,
    ) -> Result<()> {
        sqlx::query(
            "update outbox set next_attempt_at = $1, last_error = $2, sending = false,
                 unsure = unsure + case when $3 then 1 else 0 end,
                 unsure_at = case when $3 then coalesce(unsure_at, sending_since)
                     else unsure_at end,
                 search_failures = search_failures + case when $4 then 1 else 0 end
             where outbox_id = $5",
        )
        .bind(next_attempt_at)
        .bind(error)
        .bind(unsure)
        .bind(search_failed)
        .bind(outbox_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The delivery is given up.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn mark_dead(&self, outbox_id: i64, error: &str) -> Result<()> {
        sqlx::query(
            "update outbox set status = 'dead', last_error = $1, sending = false
             where outbox_id = $2",
        )
        .bind(error)
        .bind(outbox_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The deliveries of a run, oldest first.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn deliveries(&self, run_id: RunId) -> Result<Vec<DeliveryState>> {
        Ok(sqlx::query_as(
            "select outbox_id, target, status, attempts, last_error, next_attempt_at, created_at,
                 sent_at, blind, body, kind
             from outbox where run_id = $1 order by outbox_id",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?)
    }
}
