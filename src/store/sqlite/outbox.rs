//! The `outbox` table: replies waiting to be delivered.
//!
//! Rows are inserted inside the transaction that stores what they report (`insert` takes the
//! caller's transaction). A sender claims a due row by pushing its `next_attempt_at` forward, so
//! a sender that dies mid-request leaves the row to be tried again later, never lost. Only the
//! oldest pending row of a thread can be claimed: replies to one thread go out in the order
//! they were queued, whatever their retries.

use sqlx::{Connection, SqliteConnection};

use super::{Result, Store};
use crate::domain::RunId;
use crate::domain::{Delivery, ReplyIntent};
use crate::store::model::{DeliveryRow, DeliveryState};

/// The start of a statement that queues a delivery, due at once: then its run, target, body,
/// [`thread`], due time, queue time and kind (`worded`, or `result` with an empty body).
pub(super) const INSERT: &str =
    "insert into outbox (run_id, target, body, thread, next_attempt_at, created_at, kind)";

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

    /// Takes the delivery due first, if any is due at `now` and no earlier delivery to its
    /// thread is pending, and holds it until `hold_until` (counting the attempt). It is marked
    /// as being sent until [`Store::mark_sent`], [`Store::mark_retry`] or [`Store::mark_dead`];
    /// a claim that finds it still so (its sender died mid-attempt) counts that attempt as
    /// unsure. The claim, and whatever the reply reports, is on disk before it returns.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn try_claim_delivery(
        &self,
        now: i64,
        hold_until: i64,
    ) -> Result<Option<DeliveryRow>> {
        let row = sqlx::query_as::<_, DeliveryRow>(
            "update outbox set next_attempt_at = ?, attempts = attempts + 1,
                 unsure = unsure + sending, sending = 1
             where outbox_id = (
                 select outbox_id from outbox
                 where status = 'pending' and next_attempt_at <= ? and (thread is null or
                     outbox_id in (select min(outbox_id) from outbox
                                   where status = 'pending' group by thread))
                 order by next_attempt_at, outbox_id limit 1)
             returning outbox_id, run_id, target, body, attempts, created_at, thread, unsure,
                 last_error, kind",
        )
        .bind(hold_until)
        .bind(now)
        .fetch_optional(&mut *self.writer.lock().await?)
        .await?;
        if row.is_some() {
            self.durable().await?;
        }
        Ok(row)
    }

    /// When the next pending delivery that may be claimed (the first of its thread) is due, if
    /// there is one.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn next_delivery_at(&self) -> Result<Option<i64>> {
        let (at,): (Option<i64>,) = sqlx::query_as(
            "select min(next_attempt_at) from outbox
             where status = 'pending' and (thread is null or
                 outbox_id in (select min(outbox_id) from outbox
                               where status = 'pending' group by thread))",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok(at)
    }

    /// The delivery went through.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn mark_sent(&self, outbox_id: i64, now: i64) -> Result<()> {
        sqlx::query(
            "update outbox set status = 'sent', sent_at = ?, last_error = null, sending = 0
             where outbox_id = ?",
        )
        .bind(now)
        .bind(outbox_id)
        .execute(&mut *self.writer.lock().await?)
        .await?;
        Ok(())
    }

    /// The delivery failed and is tried again at `next_attempt_at`; `unsure` when the attempt
    /// may have been delivered all the same.
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
    ) -> Result<()> {
        sqlx::query(
            "update outbox set next_attempt_at = ?, last_error = ?, sending = 0,
                 unsure = unsure + ?
             where outbox_id = ?",
        )
        .bind(next_attempt_at)
        .bind(error)
        .bind(i64::from(unsure))
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
                 sent_at
             from outbox where run_id = ? order by outbox_id",
        )
        .bind(run_id)
        .fetch_all(&self.reader)
        .await?)
    }
}
