//! The outbox sender: the only code that POSTs replies to chat servers.
//!
//! It claims the delivery due first, hands it to its platform's [`crate::chat::Adapter`] (URL
//! and credentials come from the configuration at send time, so no secret is in the database),
//! and records the
//! outcome: sent; retried with exponential backoff and jitter, or when `Retry-After` asks
//! (connection errors, timeouts, 408, 429, 5xx); or dead (any other 4xx, or still failing
//! `outbox.give_up_after` after it was queued). It sleeps until the next delivery is due or it
//! is woken by a new one.
//!
//! Duplicates are bounded. An attempt whose outcome chatrun did not learn (it died between the
//! POST and recording the answer, the request timed out or the connection was lost after the
//! request was written, or a gateway timed out) is counted as *unsure* in the row. Before
//! posting again, [`plan`] decides: a Mattermost post carries `props.chatrun_delivery`
//! ([`delivery_key`]), so the channel's recent posts are searched for it and a post found there
//! marks the delivery sent; a Teams card cannot be searched, so it is sent again only while
//! fewer than two attempts were unsure, and given up after that.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::chat::{DeliveryError, Registry};
use crate::config::Config;
use crate::domain::{Delivery, ReplyIntent, RunId};
use crate::store::{self, DeliveryRow, Store, ms, now_ms};

/// How long one POST may take. A claimed delivery is held for twice as long, which covers the
/// look-up for an earlier attempt and the POST.
pub use crate::chat::transport::SEND_TIMEOUT;

/// Unsure attempts after which a Teams card is no longer sent: one repeat at most.
pub const MAX_UNSURE_UNSEARCHABLE: i64 = 2;

/// Sends queued replies.
#[derive(Debug, Clone)]
pub struct Sender {
    pub store: Store,
    pub config: Arc<Config>,
    /// The platforms deliveries go to.
    pub chat: Registry,
}

impl Sender {
    /// Delivers until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let woken = self.store.wait_for_delivery();
            tokio::pin!(woken);
            woken.as_mut().enable();
            match self.try_send_one().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(err) => tracing::error!(error = ?err, "outbox cannot reach the database"),
            }
            let wait = match self.store.next_delivery_at().await {
                Ok(Some(at)) => Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0)),
                _ => Duration::from_secs(60),
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = woken => {}
                () = tokio::time::sleep(wait.min(Duration::from_secs(60))) => {}
            }
        }
    }

    /// Sends every delivery due now, one after another, until none is due or `until` passes:
    /// what shutdown calls to flush the outbox. A delivery that fails keeps its retry time, as
    /// usual, so the next start tries it again; one cut off by `until` mid-attempt stays
    /// claimed for [`SEND_TIMEOUT`] twice over and counts as unsure on its next attempt.
    /// Returns how many were delivered.
    ///
    /// # Errors
    ///
    /// The database failed.
    ///
    /// # Cancel safety
    ///
    /// As for `until`: a delivery cut off mid-attempt may have been sent.
    pub async fn drain(&self, until: tokio::time::Instant) -> store::Result<usize> {
        let mut delivered = 0;
        loop {
            match tokio::time::timeout_at(until, self.attempt_next()).await {
                Err(_) | Ok(Ok(None)) => return Ok(delivered),
                Ok(Ok(Some(Outcome::Sent))) => delivered += 1,
                Ok(Ok(Some(Outcome::Retry | Outcome::Dead))) => {}
                Ok(Err(err)) => return Err(err),
            }
        }
    }

    /// Sends the delivery due first, if one is due. True when there was one.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn try_send_one(&self) -> store::Result<bool> {
        Ok(self.attempt_next().await?.is_some())
    }

    /// Claims the delivery due first and tries it once; what came of it, or `None` when
    /// none was due.
    async fn attempt_next(&self) -> store::Result<Option<Outcome>> {
        let now = now_ms();
        let hold = now + ms(SEND_TIMEOUT) * 2;
        let Some(row) = self.store.try_claim_delivery(now, hold).await? else {
            return Ok(None);
        };
        let delivery = match self.word(&row).await {
            Ok(delivery) => delivery,
            Err(err) => return self.failed(&row, err).await.map(Some),
        };
        let key = delivery_key(row.run_id, row.outbox_id, row.created_at);
        let sent = match self.chat.for_target(&delivery.target) {
            None => Err(DeliveryError::permanent(format!(
                "unknown delivery target `{}`",
                delivery.target
            ))),
            Some(chat) => match plan(chat.searchable(), row.unsure) {
                Plan::Send => chat.send(&delivery, &key).await.map(|()| "reply delivered"),
                Plan::LookFirst => match chat.find_sent(&delivery, row.created_at, &key).await {
                    Ok(true) => Ok("reply found delivered by an earlier attempt; not posted again"),
                    Ok(false) => chat.send(&delivery, &key).await.map(|()| "reply delivered"),
                    Err(err) => Err(err),
                },
                Plan::GiveUp => Err(DeliveryError::permanent(format!(
                    "may already be delivered ({} attempts ended without an answer, the last: \
                     {}); not sent again to avoid a duplicate",
                    row.unsure,
                    row.last_error.as_deref().unwrap_or("unknown")
                ))),
            },
        };
        match sent {
            Ok(what) => {
                tracing::info!(outbox = row.outbox_id, run = ?row.run_id, "{what}");
                self.store.mark_sent(row.outbox_id, now_ms()).await?;
                Ok(Some(Outcome::Sent))
            }
            Err(err) => self.failed(&row, err).await.map(Some),
        }
    }

    /// The reply `row` holds, ready to send: a run's result is worded now, by its platform,
    /// from the run as stored.
    async fn word(&self, row: &DeliveryRow) -> Result<Delivery, DeliveryError> {
        let address = match row.intent() {
            ReplyIntent::Worded(delivery) => return Ok(delivery),
            ReplyIntent::Result(address) => address,
        };
        let run_id = row
            .run_id
            .ok_or_else(|| DeliveryError::permanent("a result delivery names no run"))?;
        let stored = async {
            let Some(run) = self.store.get_run(run_id).await? else {
                return Ok(None);
            };
            let steps = self.store.steps(run_id).await?;
            let failures = self.store.test_failures(run_id).await?;
            Ok::<_, store::Error>(Some((run, steps, failures)))
        };
        let (run, steps, failures) = stored
            .await
            .map_err(|err| {
                DeliveryError::retryable(format!(
                    "cannot read run #{run_id} to word its result: {err}"
                ))
            })?
            .ok_or_else(|| DeliveryError::permanent(format!("run #{run_id} no longer exists")))?;
        let worded = self
            .chat
            .result_reply(&self.config.public_url, &run, &steps, &failures, now_ms())
            .ok_or_else(|| {
                DeliveryError::permanent(format!(
                    "the configuration no longer lets chatrun post to {}",
                    address.target
                ))
            })?;
        // To where the run's end said, in the thread its order was kept in.
        Ok(Delivery {
            target: address.target,
            body: worded.body,
            thread: address.thread,
        })
    }

    async fn failed(&self, row: &DeliveryRow, err: DeliveryError) -> store::Result<Outcome> {
        let outbox = &self.config.outbox;
        let now = now_ms();
        match retry_at(outbox, row, &err, now) {
            Some(at) => {
                tracing::warn!(outbox = row.outbox_id, attempt = row.attempts, error = %err,
                    retry_in_ms = at - now, "reply not delivered; will retry");
                let unsure = matches!(err, DeliveryError::Retryable { unsure: true, .. });
                self.store
                    .mark_retry(row.outbox_id, at, &err.to_string(), unsure)
                    .await?;
                Ok(Outcome::Retry)
            }
            None => {
                let reason = match err {
                    DeliveryError::Retryable { message, .. } => format!(
                        "gave up after {}: {message}",
                        humantime::format_duration(outbox.give_up_after)
                    ),
                    DeliveryError::Permanent(message) => message,
                };
                tracing::error!(outbox = row.outbox_id, attempt = row.attempts, error = %reason,
                    "reply given up");
                self.store.mark_dead(row.outbox_id, &reason).await?;
                Ok(Outcome::Dead)
            }
        }
    }
}

/// What came of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Sent,
    Retry,
    Dead,
}

/// What to do with a claimed delivery before posting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Post it.
    Send,
    /// Search the channel for a post an earlier attempt made; post only if there is none.
    LookFirst,
    /// Mark it dead: it may already be delivered, and cannot be checked.
    GiveUp,
}

/// Decides how to go on with a delivery after `unsure` attempts whose outcome is unknown: on a
/// `searchable` platform (Mattermost posts) the earlier post is looked for first; on one that is
/// not (Teams cards) it is sent again only while fewer than [`MAX_UNSURE_UNSEARCHABLE`] attempts
/// were unsure, which makes at most one duplicate.
pub fn plan(searchable: bool, unsure: i64) -> Plan {
    if unsure <= 0 {
        Plan::Send
    } else if searchable {
        Plan::LookFirst
    } else if unsure < MAX_UNSURE_UNSEARCHABLE {
        Plan::Send
    } else {
        Plan::GiveUp
    }
}

/// The key that marks a delivery's Mattermost post (`props.chatrun_delivery`): its run, its
/// outbox row and when it was queued, so it is unique to the row even across databases.
pub fn delivery_key(run_id: Option<RunId>, outbox_id: i64, created_at: i64) -> String {
    format!(
        "chatrun-{}-{outbox_id}-{created_at}",
        run_id.map_or(0, |id| id.0)
    )
}

/// When a failed delivery is tried again, or `None` when it is given up: at once for a
/// permanent error, and for a retryable one when `give_up_after` has passed since it was queued.
/// The next attempt is after the server's `Retry-After` (never sooner than `retry_base`) or the
/// backoff, and no later than the give-up time, so the last attempt falls on it.
fn retry_at(
    outbox: &crate::config::Outbox,
    row: &DeliveryRow,
    err: &DeliveryError,
    now: i64,
) -> Option<i64> {
    let DeliveryError::Retryable { after, .. } = err else {
        return None;
    };
    let give_up_at = row.created_at.saturating_add(ms(outbox.give_up_after));
    if now >= give_up_at {
        return None;
    }
    let delay = after.map_or_else(
        || backoff(outbox, row.attempts),
        |after| after.max(outbox.retry_base),
    );
    Some(now.saturating_add(ms(delay)).min(give_up_at))
}

/// `base * 2^(attempt-1)`, at most `retry_max`, less up to a fifth at random so retries of many
/// deliveries spread out.
fn backoff(outbox: &crate::config::Outbox, attempt: i64) -> Duration {
    let exp = u32::try_from(attempt.clamp(1, 30) - 1).unwrap_or(0);
    let delay = outbox
        .retry_base
        .saturating_mul(2u32.saturating_pow(exp))
        .min(outbox.retry_max);
    let mut byte = [0u8; 1];
    let jitter = if getrandom::fill(&mut byte).is_ok() {
        delay.mul_f64(f64::from(byte[0]) / 255.0 / 5.0)
    } else {
        Duration::ZERO
    };
    delay - jitter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum_with_some_jitter() {
        let outbox = crate::config::Outbox {
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            give_up_after: Duration::from_secs(24 * 3600),
        };
        let first = backoff(&outbox, 1);
        assert!(first <= Duration::from_secs(1) && first >= Duration::from_millis(800));
        let fourth = backoff(&outbox, 4);
        assert!(fourth <= Duration::from_secs(8) && fourth >= Duration::from_millis(6400));
        let late = backoff(&outbox, 25);
        assert!(late <= Duration::from_secs(300) && late >= Duration::from_secs(240));
    }

    fn outbox() -> crate::config::Outbox {
        crate::config::Outbox {
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(60),
            give_up_after: Duration::from_secs(3600),
        }
    }

    fn row(attempts: i64, created_at: i64) -> DeliveryRow {
        DeliveryRow {
            outbox_id: 1,
            run_id: None,
            target: "mattermost.post".into(),
            body: "{}".into(),
            attempts,
            created_at,
            thread: None,
            unsure: 0,
            last_error: None,
            kind: "worded".into(),
        }
    }

    #[test]
    fn a_failing_delivery_is_retried_until_give_up_after_has_passed_then_given_up() {
        let hour = 3_600_000;
        let err = DeliveryError::retryable("503 Service Unavailable");
        let at = retry_at(&outbox(), &row(1, 0), &err, 1000).unwrap();
        assert!((1080..=1100).contains(&at), "{at}");
        // The last attempt falls on the give-up time, not after it.
        assert_eq!(
            retry_at(&outbox(), &row(30, 0), &err, hour - 5).unwrap(),
            hour
        );
        assert_eq!(retry_at(&outbox(), &row(31, 0), &err, hour), None);
        assert_eq!(
            retry_at(
                &outbox(),
                &row(1, 0),
                &DeliveryError::permanent("404"),
                1000
            ),
            None,
            "a permanent error dies at once"
        );
    }

    #[test]
    fn retry_after_is_honoured_but_never_sooner_than_the_base_delay() {
        let asked = |secs| DeliveryError::Retryable {
            message: "429".into(),
            after: Some(Duration::from_secs(secs)),
            unsure: false,
        };
        assert_eq!(retry_at(&outbox(), &row(1, 0), &asked(7), 1000), Some(8000));
        assert_eq!(retry_at(&outbox(), &row(1, 0), &asked(0), 1000), Some(1100));
    }

    #[test]
    fn an_unsure_mattermost_post_is_looked_for_and_a_teams_card_repeated_at_most_once() {
        let (mattermost, teams) = (true, false);
        assert_eq!(plan(mattermost, 0), Plan::Send);
        assert_eq!(plan(mattermost, 1), Plan::LookFirst);
        assert_eq!(plan(mattermost, 5), Plan::LookFirst);
        assert_eq!(plan(teams, 0), Plan::Send);
        assert_eq!(plan(teams, 1), Plan::Send, "one repeat");
        assert_eq!(plan(teams, 2), Plan::GiveUp, "no second one");
        assert_eq!(plan(teams, 3), Plan::GiveUp);
    }

    #[test]
    fn delivery_keys_differ_per_row_run_and_queue_time() {
        let key = delivery_key(Some(RunId(7)), 12, 1_700_000_000_000);
        assert_eq!(key, "chatrun-7-12-1700000000000");
        assert_ne!(key, delivery_key(Some(RunId(7)), 13, 1_700_000_000_000));
        assert_ne!(key, delivery_key(Some(RunId(8)), 12, 1_700_000_000_000));
        assert_ne!(key, delivery_key(Some(RunId(7)), 12, 1_700_000_000_001));
        assert_eq!(delivery_key(None, 3, 5), "chatrun-0-3-5");
    }
}
