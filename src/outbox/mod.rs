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
//! Each reply arrives once, or at worst twice, never lost. An attempt whose outcome chatrun did
//! not learn (it died between the POST and recording the answer, the request timed out or the
//! connection was lost after the request was written, or a gateway timed out) is counted as
//! *unsure* in the row, and a restart releases its dead predecessor's claims at once. Before
//! sending again, [`plan`] decides, the same way for every platform:
//! - within the platform's de-duplication window of the first unsure attempt (Mattermost keeps a
//!   post's `pending_post_id` 30 s), the same request is sent again and the server drops the copy;
//! - on a platform that can be searched, the earlier attempt is looked for first (a Mattermost
//!   post carries its [`delivery_key`]), and a post found there marks the delivery sent;
//! - when it cannot be searched, or the search failed [`MAX_SEARCH_FAILURES`] times, it is sent
//!   once more without knowing ("blind", shown on the run page as possibly posted twice);
//! - after that it is given up rather than risk a second duplicate.

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

/// Searches for an earlier attempt that could not answer, after which the reply is sent
/// without knowing.
pub const MAX_SEARCH_FAILURES: i64 = 3;

/// Sends queued replies.
#[derive(Debug, Clone)]
pub struct Sender {
    pub store: Store,
    pub config: Arc<Config>,
    /// The platforms deliveries go to.
    pub chat: Registry,
    /// This process, as the owner of its claims (`host:pid#outbox`).
    pub owner: String,
}

impl Sender {
    /// Delivers until `shutdown`; first releases the claims of a dead predecessor.
    pub async fn run(self, shutdown: CancellationToken) {
        if let Err(err) = self.release_dead_claims().await {
            tracing::warn!(error = ?err, "cannot look for replies a stopped chatrun was sending");
        }
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

    /// Makes the replies a dead chatrun of this host was sending due now, rather than when
    /// their claims' hold ends. Returns how many.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn release_dead_claims(&self) -> store::Result<usize> {
        let mut released = 0;
        for (outbox_id, owner) in self.store.claimed_deliveries().await? {
            if let Some(owner) = owner.filter(|o| crate::runner::orphans::owner_is_dead_here(o))
                && self
                    .store
                    .release_delivery(outbox_id, &owner, now_ms())
                    .await?
            {
                released += 1;
            }
        }
        if released > 0 {
            tracing::info!(
                replies = released,
                "sending again what a stopped chatrun was sending"
            );
        }
        Ok(released)
    }

    /// Claims the delivery due first and tries it once; what came of it, or `None` when
    /// none was due.
    async fn attempt_next(&self) -> store::Result<Option<Outcome>> {
        let now = now_ms();
        let hold = now + ms(SEND_TIMEOUT) * 2;
        let Some(row) = self
            .store
            .try_claim_delivery(now, hold, &self.owner)
            .await?
        else {
            return Ok(None);
        };
        let delivery = match self.word(&row).await {
            Ok(delivery) => delivery,
            Err(err) => return self.failed(&row, err, false).await.map(Some),
        };
        let key = delivery_key(row.run_id, row.outbox_id, row.created_at);
        let Some(chat) = self.chat.for_target(&delivery.target) else {
            let err =
                DeliveryError::permanent(format!("unknown delivery target `{}`", delivery.target));
            return self.failed(&row, err, false).await.map(Some);
        };
        let checks = Checks {
            dedup_window_ms: ms(chat.dedup_window()),
            searchable: chat.searchable(),
        };
        const DELIVERED: &str = "reply delivered";
        let sent = match plan(checks, &row.earlier(), now) {
            Plan::Send => chat.send(&delivery, &key).await.map(|p| (DELIVERED, p)),
            Plan::LookFirst => match chat.find_sent(&delivery, row.created_at, &key).await {
                Ok(Some(posted)) => Ok((
                    "reply found delivered by an earlier attempt; not posted again",
                    posted,
                )),
                Ok(None) => chat.send(&delivery, &key).await.map(|p| (DELIVERED, p)),
                Err(err) => return self.failed(&row, err, true).await.map(Some),
            },
            Plan::SendBlind => {
                self.store.mark_blind(row.outbox_id).await?;
                tracing::warn!(outbox = row.outbox_id, run = ?row.run_id,
                    "sending a reply again although an earlier attempt may have arrived (it \
                     cannot be checked): it may show twice");
                chat.send(&delivery, &key).await.map(|p| (DELIVERED, p))
            }
            Plan::GiveUp => Err(DeliveryError::permanent(format!(
                "may already be delivered ({} attempts ended without an answer, the last: \
                 {}); not sent again to avoid a duplicate",
                row.unsure,
                row.last_error.as_deref().unwrap_or("unknown")
            ))),
        };
        match sent {
            Ok((what, posted)) => {
                tracing::info!(outbox = row.outbox_id, run = ?row.run_id, "{what}");
                // The run's later replies thread under this post: recorded before the delivery
                // counts as sent, so they cannot be worded without it (a crash in between
                // finds the post again, and records it then).
                if let (Some(root), Some(run_id)) = (posted.thread_root, row.run_id) {
                    self.store.settle_thread(run_id, Some(&root)).await?;
                }
                self.store.mark_sent(row.outbox_id, now_ms()).await?;
                Ok(Some(Outcome::Sent))
            }
            Err(err) => self.failed(&row, err, false).await.map(Some),
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
            let Some(mut run) = self.store.get_run(run_id).await? else {
                return Ok(None);
            };
            if run.thread_unsettled {
                run.thread_root_id = self.settle_thread(&run, row).await?;
            }
            let steps = self.store.steps(run_id).await?;
            let failures = self
                .store
                .result_history(&mut run, self.config.flaky_window)
                .await?;
            Ok::<_, Unworded>(Some((run, steps, failures)))
        };
        let (run, steps, failures) = stored
            .await
            .map_err(|err| match err {
                Unworded::Store(err) => DeliveryError::retryable(format!(
                    "cannot read run #{run_id} to word its result: {err}"
                )),
                Unworded::Thread(err) => err,
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
        // The address the run's end named, unless its thread was settled since.
        Ok(Delivery {
            target: address.target,
            ..worded
        })
    }

    /// Looks up again the thread of a run whose look-up failed when it came, and records what
    /// it found. A look-up that still fails is retried for [`SETTLE_FOR`] after the delivery
    /// (`row`) was queued; after that the result goes to the top of the channel rather than
    /// wait any longer.
    async fn settle_thread(
        &self,
        run: &crate::domain::RunRow,
        row: &DeliveryRow,
    ) -> Result<Option<String>, Unworded> {
        let Some(chat) = self.chat.get(run.origin.platform) else {
            return Ok(run.thread_root_id.clone());
        };
        let root = match chat.settle_thread(run).await {
            Ok(root) => root,
            Err(err) if now_ms() - row.created_at < ms(SETTLE_FOR) => {
                return Err(Unworded::Thread(err));
            }
            Err(err) => {
                tracing::warn!(run = %run.run_id, error = %err,
                    "cannot look up the trigger's thread: posting the result at the top of the channel");
                None
            }
        };
        self.store
            .settle_thread(run.run_id, root.as_deref())
            .await?;
        Ok(root)
    }

    async fn failed(
        &self,
        row: &DeliveryRow,
        err: DeliveryError,
        search_failed: bool,
    ) -> store::Result<Outcome> {
        let outbox = &self.config.outbox;
        let now = now_ms();
        match retry_at(outbox, row, &err, now) {
            Some(at) => {
                tracing::warn!(outbox = row.outbox_id, attempt = row.attempts, error = %err,
                    retry_in_ms = at - now, "reply not delivered; will retry");
                let unsure = matches!(err, DeliveryError::Retryable { unsure: true, .. });
                self.store
                    .mark_retry(row.outbox_id, at, &err.to_string(), unsure, search_failed)
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
                tracing::warn!(outbox = row.outbox_id, run = ?row.run_id,
                    attempt = row.attempts, error = %reason, "reply given up");
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

/// Why a run's result could not be worded.
enum Unworded {
    Store(store::Error),
    Thread(DeliveryError),
}

impl From<store::Error> for Unworded {
    fn from(err: store::Error) -> Self {
        Self::Store(err)
    }
}

/// How long after a result's delivery was queued a thread look-up that fails (Mattermost down
/// or restarting) is retried, before the result goes to the top of the channel.
pub const SETTLE_FOR: Duration = Duration::from_secs(300);

/// What a platform offers against a duplicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checks {
    /// How long after an attempt the server drops a repeat of it (ms); 0: it does not.
    pub dedup_window_ms: i64,
    /// Whether an earlier attempt can be looked for.
    pub searchable: bool,
}

/// What to do with a claimed delivery before posting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Post it: no earlier attempt may have arrived, or the server drops a copy.
    Send,
    /// Search for a post an earlier attempt made; post only if there is none.
    LookFirst,
    /// Post it without knowing whether an earlier attempt arrived: the one duplicate allowed.
    SendBlind,
    /// Mark it dead: it may already be delivered, and a second duplicate is not risked.
    GiveUp,
}

/// Decides how to go on with a delivery after `earlier` attempts, at `now`: at most one
/// duplicate, never a lost reply, the same rule on every platform (see the module's notes).
pub fn plan(checks: Checks, earlier: &store::Earlier, now: i64) -> Plan {
    // Nothing may have arrived; or the server drops a copy of what did.
    let deduplicated = earlier
        .unsure_at
        .is_some_and(|at| now - at < checks.dedup_window_ms);
    if earlier.unsure <= 0 || deduplicated {
        Plan::Send
    } else if checks.searchable && earlier.search_failures < MAX_SEARCH_FAILURES {
        Plan::LookFirst
    } else if !earlier.blind {
        Plan::SendBlind
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
            unsure_at: None,
            search_failures: 0,
            blind: false,
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
    fn one_rule_for_every_platform_at_most_one_duplicate_and_no_lost_reply() {
        let mattermost = Checks {
            dedup_window_ms: 25_000,
            searchable: true,
        };
        let teams = Checks {
            dedup_window_ms: 0,
            searchable: false,
        };
        let earlier = |unsure, unsure_at, search_failures, blind| store::Earlier {
            unsure,
            unsure_at,
            search_failures,
            blind,
        };
        let now = 100_000;
        // Nothing may have arrived: send.
        assert_eq!(
            plan(mattermost, &earlier(0, None, 0, false), now),
            Plan::Send
        );
        assert_eq!(plan(teams, &earlier(0, None, 0, false), now), Plan::Send);
        // Within Mattermost's pending_post_id window of the first unsure attempt: the same
        // post again, which Mattermost drops if it has it.
        let recent = earlier(2, Some(now - 24_999), 0, false);
        assert_eq!(plan(mattermost, &recent, now), Plan::Send);
        // Beyond it: look first, while the search answers.
        let old = earlier(1, Some(now - 25_000), 0, false);
        assert_eq!(plan(mattermost, &old, now), Plan::LookFirst);
        let searched = earlier(1, Some(now - 60_000), 2, false);
        assert_eq!(plan(mattermost, &searched, now), Plan::LookFirst);
        // A search that keeps failing: send once without knowing, then give up.
        let unsearchable = earlier(1, Some(now - 60_000), 3, false);
        assert_eq!(plan(mattermost, &unsearchable, now), Plan::SendBlind);
        let again = earlier(2, Some(now - 60_000), 3, true);
        assert_eq!(plan(mattermost, &again, now), Plan::GiveUp);
        // Teams cannot be searched nor de-duplicated: one repeat, no second one.
        assert_eq!(
            plan(teams, &earlier(1, Some(now), 0, false), now),
            Plan::SendBlind
        );
        assert_eq!(
            plan(teams, &earlier(2, Some(now), 0, true), now),
            Plan::GiveUp
        );
        assert_eq!(
            plan(teams, &earlier(3, Some(now), 0, true), now),
            Plan::GiveUp
        );
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
