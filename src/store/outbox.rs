//! The `outbox` table: replies waiting to be delivered.
//!
//! Rows are inserted inside the transaction that stores what they report ([`insert`] takes the
//! caller's transaction). A sender claims a due row by pushing its `next_attempt_at` forward, so
//! a sender that dies mid-request leaves the row to be tried again later, never lost. Only the
//! oldest pending row of a thread can be claimed: replies to one thread go out in the order
//! they were queued, whatever their retries.

use sqlx::{Connection, FromRow, SqliteConnection};

use super::{Result, Store};
use crate::domain::Delivery;
use crate::domain::RunId;

/// An `outbox` row.
#[derive(Debug, Clone, FromRow)]
pub struct DeliveryRow {
    pub outbox_id: i64,
    pub run_id: Option<RunId>,
    pub target: String,
    pub body: String,
    /// Attempts so far, this one included.
    pub attempts: i64,
    /// When it was queued: the give-up time counts from here.
    pub created_at: i64,
    pub thread: Option<String>,
    /// Earlier attempts that may have been delivered although no success was recorded.
    pub unsure: i64,
    /// Why the previous attempt failed.
    pub last_error: Option<String>,
}

/// How a delivery of a run went, for the run page and the API.
#[derive(Debug, Clone, FromRow)]
pub struct DeliveryState {
    pub outbox_id: i64,
    pub target: String,
    /// `pending`, `sent` or `dead`.
    pub status: String,
    pub attempts: i64,
    /// Why the last attempt failed; for a dead delivery, why it was given up.
    pub last_error: Option<String>,
    /// When a pending delivery is tried next.
    pub next_attempt_at: i64,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

impl DeliveryRow {
    /// The delivery to send.
    pub fn delivery(&self) -> Delivery {
        Delivery {
            target: self.target.clone(),
            body: self.body.clone(),
            thread: self.thread.clone().unwrap_or_default(),
        }
    }
}

/// The start of a statement that queues a delivery, due at once: then its run, target, body,
/// [`thread`], due time and queue time.
pub(super) const INSERT: &str =
    "insert into outbox (run_id, target, body, thread, next_attempt_at, created_at)";

/// A delivery's thread as stored: none for a post at the top of a channel.
pub(super) fn thread(delivery: &Delivery) -> Option<&str> {
    Some(delivery.thread.as_str()).filter(|t| !t.is_empty())
}

/// Queues a delivery inside the caller's transaction (on its connection), due at once.
///
/// # Errors
///
/// The database failed.
pub async fn insert(
    tx: &mut SqliteConnection,
    run_id: Option<RunId>,
    delivery: &Delivery,
    now: i64,
) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "{INSERT} values (?, ?, ?, ?, ?, ?)"
    )))
    .bind(run_id)
    .bind(&delivery.target)
    .bind(&delivery.body)
    .bind(thread(delivery))
    .bind(now)
    .bind(now)
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
        insert(&mut tx, None, delivery, now).await?;
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
                 last_error",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewRun;
    use crate::store::runs::Ack;

    #[tokio::test]
    async fn a_due_delivery_is_claimed_once_retried_later_and_marked_sent() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}/t.db", dir.path().display()))
            .await
            .unwrap();
        let new = NewRun {
            platform: crate::domain::Platform::Mattermost,
            message_id: "p1".into(),
            job: "build".into(),
            ..NewRun::default()
        };
        let crate::store::Insert::Stored(inserted) = store
            .insert_run(&new, 100, |_, _, _| Ack {
                text: "queued".into(),
                delivery: Some(Delivery {
                    target: "mattermost.post".into(),
                    body: "{}".into(),
                    thread: "mattermost:c1/p1".into(),
                }),
            })
            .await
            .unwrap()
        else {
            panic!("stored")
        };

        assert_eq!(store.next_delivery_at().await.unwrap(), Some(100));
        let row = store.try_claim_delivery(100, 200).await.unwrap().unwrap();
        assert_eq!((row.run_id, row.attempts), (Some(inserted.run_id), 1));
        assert!(store.try_claim_delivery(150, 250).await.unwrap().is_none());

        store
            .mark_retry(row.outbox_id, 300, "503", false)
            .await
            .unwrap();
        assert!(store.try_claim_delivery(299, 400).await.unwrap().is_none());
        let again = store.try_claim_delivery(300, 400).await.unwrap().unwrap();
        assert_eq!(again.attempts, 2);
        store.mark_sent(again.outbox_id, 301).await.unwrap();
        assert_eq!(store.next_delivery_at().await.unwrap(), None);
        let list = store.deliveries(inserted.run_id).await.unwrap();
        assert_eq!(list[0].status, "sent");

        store.mark_dead(again.outbox_id, "gone").await.unwrap();
        assert_eq!(
            store.deliveries(inserted.run_id).await.unwrap()[0].status,
            "dead"
        );
    }

    fn post(thread: &str, body: &str) -> Delivery {
        Delivery {
            target: "mattermost.post".into(),
            body: body.into(),
            thread: thread.into(),
        }
    }

    #[tokio::test]
    async fn a_delivery_waits_while_an_earlier_one_to_its_thread_is_pending() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}/t.db", dir.path().display()))
            .await
            .unwrap();
        for (thread, body) in [
            ("a", "a1"),
            ("a", "a2"),
            ("b", "b1"),
            ("", "x1"),
            ("", "x2"),
        ] {
            store
                .enqueue_delivery(&post(thread, body), 100)
                .await
                .unwrap();
        }
        let claim = |now| {
            let store = store.clone();
            async move { store.try_claim_delivery(now, now + 1000).await.unwrap() }
        };

        let a1 = claim(100).await.unwrap();
        assert_eq!(a1.body, "a1");
        store
            .mark_retry(a1.outbox_id, 500, "503", false)
            .await
            .unwrap();
        // a2 is due but waits behind a1; the others go.
        let mut claimed = Vec::new();
        while let Some(row) = claim(200).await {
            claimed.push(row.body.clone());
            store.mark_sent(row.outbox_id, 200).await.unwrap();
        }
        assert_eq!(claimed, ["b1", "x1", "x2"]);
        assert_eq!(
            store.next_delivery_at().await.unwrap(),
            Some(500),
            "the sender sleeps until a1 is due, not a2"
        );

        let a1 = claim(500).await.unwrap();
        assert_eq!(a1.body, "a1");
        assert!(claim(500).await.is_none(), "a1 is held, still pending");
        store.mark_sent(a1.outbox_id, 501).await.unwrap();
        assert_eq!(claim(501).await.unwrap().body, "a2");

        // A given-up delivery does not hold its thread up.
        store.enqueue_delivery(&post("c", "c1"), 600).await.unwrap();
        store.enqueue_delivery(&post("c", "c2"), 600).await.unwrap();
        let c1 = claim(600).await.unwrap();
        store.mark_dead(c1.outbox_id, "404").await.unwrap();
        let c2 = claim(600).await.unwrap();
        assert_eq!((c2.body.as_str(), c2.thread.as_deref()), ("c2", Some("c")));
    }

    #[tokio::test]
    async fn an_attempt_whose_outcome_was_never_recorded_counts_as_unsure() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}/t.db", dir.path().display()))
            .await
            .unwrap();
        store.enqueue_delivery(&post("a", "a1"), 100).await.unwrap();

        let first = store.try_claim_delivery(100, 200).await.unwrap().unwrap();
        assert_eq!(first.unsure, 0);
        // The sender died before recording anything: after the hold, the row is claimed again
        // and the lost attempt is counted.
        let second = store.try_claim_delivery(200, 300).await.unwrap().unwrap();
        assert_eq!((second.attempts, second.unsure), (2, 1));
        // A timeout is recorded as unsure too; a definite failure is not.
        store
            .mark_retry(second.outbox_id, 300, "timed out", true)
            .await
            .unwrap();
        let third = store.try_claim_delivery(300, 400).await.unwrap().unwrap();
        assert_eq!(third.unsure, 2);
        assert_eq!(third.last_error.as_deref(), Some("timed out"));
        store
            .mark_retry(third.outbox_id, 400, "503", false)
            .await
            .unwrap();
        let fourth = store.try_claim_delivery(400, 500).await.unwrap().unwrap();
        assert_eq!(
            fourth.unsure, 2,
            "a recorded outcome leaves nothing in flight"
        );
        store.mark_sent(fourth.outbox_id, 450).await.unwrap();
    }
}
