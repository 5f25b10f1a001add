//! The `outbox` table: replies waiting to be delivered.
//!
//! Rows are inserted inside the transaction that stores what they report (`insert` takes the
//! caller's transaction). A sender claims a due row by pushing its `next_attempt_at` forward, so
//! a sender that dies mid-request leaves the row to be tried again later, never lost (and a
//! restart releases its dead predecessor's claims at once). Replies to one thread go out in the
//! order they were queued, whatever their retries: strictly within a run (an acknowledgement
//! before its result), and across runs while the earlier reply is younger than
//! [`ORDER_HOLD_MS`], so a stuck reply does not hold the thread for long.

use sqlx::{Connection, SqliteConnection};

use super::{Result, Store};
use crate::domain::RunId;
use crate::domain::{Delivery, ReplyIntent};
use crate::store::model::{DeliveryRow, DeliveryState, ORDER_HOLD_MS};

/// The start of a statement that queues a delivery, due at once: then its run, target, body,
/// [`thread`], due time, queue time and kind (`worded`, or `result` with an empty body).
pub(super) const INSERT: &str =
    "insert into outbox (run_id, target, body, thread, next_attempt_at, created_at, kind)";

/// Whether pending delivery `o` may go before the others of its thread: no earlier delivery to
/// its thread is pending that reports the same run, or was queued after `?4` (now less
/// [`ORDER_HOLD_MS`]). A delivery with no thread is ordered with nothing.
const ORDERED: &str = "not exists (
    select 1 from outbox e
    where e.thread = o.thread and e.status = 'pending' and e.outbox_id < o.outbox_id
        and (e.run_id = o.run_id or e.created_at > ?4))";

/// A thread as stored: none for a post that is ordered with nothing.
pub(super) fn thread(thread: &str) -> Option<&str> {
    Some(thread).filter(|t| !t.is_empty())
}

/// Queues a delivery inside the caller's transaction (on its connection), due at once.
///
/// # Errors
///
/// The database failed.
pub(super) async fn insert(
    tx: &mut SqliteConnection,
    run_id: Option<RunId>,
    intent: &ReplyIntent,
    now: i64,
) -> Result<()> {
    let (target, body, thread_name, kind) = match intent {
        ReplyIntent::Worded(d) => (&d.target, d.body.as_str(), &d.thread, "worded"),
        ReplyIntent::Result(a) => (&a.target, "", &a.thread, "result"),
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "{INSERT} values (?, ?, ?, ?, ?, ?, ?)"
    )))
    .bind(run_id)
    .bind(target)
    .bind(body)
    .bind(thread(thread_name))
    .bind(now)
    .bind(now)
    .bind(kind)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

impl Store {
    /// Queues a delivery that reports no run (a reply to `help`), due at once.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn enqueue_delivery(&self, delivery: &Delivery, now: i64) -> Result<()> {
        let mut conn = self.writer.lock().await?;
        let mut tx = conn.begin().await?;
        insert(&mut tx, None, &ReplyIntent::Worded(delivery.clone()), now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Takes the delivery due first, if any is due at `now` and may go before the others of
    /// its thread ([`ORDERED`]), and holds it until `hold_until` for `owner` (counting the
    /// attempt). It is marked as being sent until [`Store::mark_sent`], [`Store::mark_retry`]
    /// or [`Store::mark_dead`]; a claim that finds it still so (its sender died mid-attempt)
    /// counts that attempt as unsure (`unsure_at`: when the first such attempt began). The claim, and whatever the reply
    /// reports, is on disk before it returns.
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
        let sql = format!(
            "update outbox set next_attempt_at = ?1, attempts = attempts + 1,
                 unsure = unsure + sending,
                 unsure_at = case when sending = 1 then coalesce(unsure_at, sending_since)
                     else unsure_at end,
                 sending = 1, sending_since = ?2, sending_owner = ?3
             where outbox_id = (
                 select o.outbox_id from outbox o
                 where o.status = 'pending' and o.next_attempt_at <= ?2 and {ORDERED}
                 order by o.next_attempt_at, o.outbox_id limit 1)
             returning outbox_id, run_id, target, body, attempts, created_at, thread, unsure,
                 last_error, kind, unsure_at, search_failures, blind"
        );
        let row = sqlx::query_as::<_, DeliveryRow>(sqlx::AssertSqlSafe(sql))
            .bind(hold_until)
            .bind(now)
            .bind(owner)
            .bind(now - ORDER_HOLD_MS)
            .fetch_optional(&mut *self.writer.lock().await?)
            .await?;
        if row.is_some() {
            self.durable().await?;
        }
        Ok(row)
    }

    /// When the next pending delivery may be claimed (due, and not held back by an earlier one
    /// of its thread), if there is one.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn next_delivery_at(&self) -> Result<Option<i64>> {
        let (at,): (Option<i64>,) = sqlx::query_as(
            "select min(max(o.next_attempt_at, coalesce(
                 (select max(e.created_at) from outbox e
                  where e.thread = o.thread and e.status = 'pending' and e.outbox_id < o.outbox_id)
                 + ?1, 0)))
             from outbox o
             where o.status = 'pending' and not exists (
                 select 1 from outbox e
                 where e.thread = o.thread and e.status = 'pending' and e.outbox_id < o.outbox_id
                     and e.run_id = o.run_id)",
        )
        .bind(ORDER_HOLD_MS)
        .fetch_one(&self.reader)
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
            "select outbox_id, sending_owner from outbox where status = 'pending' and sending = 1",
        )
        .fetch_all(&self.reader)
        .await?)
    }

    /// Makes a delivery that `owner` (a process that died) was sending due at `now`, instead
    /// of when its hold ends; its attempt counts as unsure. False when it is no longer so.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn release_delivery(&self, outbox_id: i64, owner: &str, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "update outbox set next_attempt_at = ?
             where outbox_id = ? and status = 'pending' and sending = 1 and sending_owner = ?",
        )
        .bind(now)
        .bind(outbox_id)
        .bind(owner)
        .execute(&mut *self.writer.lock().await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The delivery is about to be sent although an earlier attempt may have been delivered
    /// and cannot be checked: recorded first, so that it is done once at most.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn mark_blind(&self, outbox_id: i64) -> Result<()> {
        sqlx::query("update outbox set blind = 1 where outbox_id = ?")
            .bind(outbox_id)
            .execute(&mut *self.writer.lock().await?)
            .await?;
        self.durable().await?;
        Ok(())
    }

    /// The delivery went through.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn mark_sent(&self, outbox_id: i64, now: i64) -> Result<()> {
        sqlx::query(
            "update outbox set status = 'sent', sent_at = ?, sending = 0,
                 last_error = case when blind = 1 then last_error else null end
             where outbox_id = ?",
        )
        .bind(now)
        .bind(outbox_id)
        .execute(&mut *self.writer.lock().await?)
        .await?;
        Ok(())
    }

    /// The delivery failed and is tried again at `next_attempt_at`; `unsure` when the attempt
    /// may have been delivered all the same, `search_failed` when it was the search for an
    /// earlier attempt's post that failed.
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
            "update outbox set next_attempt_at = ?1, last_error = ?2, sending = 0,
                 unsure = unsure + ?3,
                 unsure_at = case when ?3 = 1 then coalesce(unsure_at, sending_since)
                     else unsure_at end,
                 search_failures = search_failures + ?4
             where outbox_id = ?5",
        )
        .bind(next_attempt_at)
        .bind(error)
        .bind(i64::from(unsure))
        .bind(i64::from(search_failed))
        .bind(outbox_id)
        .execute(&mut *self.writer.lock().await?)
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
            "update outbox set status = 'dead', last_error = ?, sending = 0 where outbox_id = ?",
        )
        .bind(error)
        .bind(outbox_id)
        .execute(&mut *self.writer.lock().await?)
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
             from outbox where run_id = ? order by outbox_id",
        )
        .bind(run_id)
        .fetch_all(&self.reader)
        .await?)
    }
}
