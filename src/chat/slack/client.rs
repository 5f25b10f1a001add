//! Slack's Web API, as the bot: `chat.postMessage` (each post marked with its delivery's key
//! in the message's metadata), and `conversations.history` / `conversations.replies` to find a
//! post whose answer was lost. Slack has no idempotency key: a post is found again by its
//! metadata, or sent once more without knowing (see `outbox`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::post::{self, Answer};
use super::*;
use crate::chat::adapter::Adapter;
use crate::chat::transport::{DeliveryError, describe, post_json_answer, retry_after};
use crate::chat::{HookContext, Inbound, Posted, Rejection, Request};
use crate::domain::{Address, Delivery, Platform, RunRow, StepRow, TestFailureRow};

/// How long one look-up of a channel's or a thread's messages may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The search for an earlier attempt's post starts this long before the delivery was queued,
/// in case Slack's clock is behind ours.
const LOOKUP_CLOCK_SKEW_MS: i64 = 60_000;

/// Messages per page of that search, and the most pages read.
const SEARCH_PAGE_MESSAGES: usize = 200;
const SEARCH_PAGES: usize = 25;

/// Event ids remembered, to drop Slack's retries of an event already taken by this process.
const SEEN_EVENTS: usize = 4096;

/// Slack as chatrun sees it: the signing secret its requests are checked with and the bot's
/// Web API.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    pub(super) settings: Settings,
    /// The newest event ids taken, oldest first.
    seen: Arc<Mutex<VecDeque<String>>>,
}

impl Client {
    /// A client for `settings`, sharing `http`'s connections.
    pub fn new(http: reqwest::Client, settings: Settings) -> Self {
        Self {
            http,
            settings,
            seen: Arc::default(),
        }
    }

    /// Whether event `event_id` was taken before by this process; remembers it.
    pub(super) fn seen_before(&self, event_id: &str) -> bool {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.iter().any(|id| id == event_id) {
            return true;
        }
        if seen.len() == SEEN_EVENTS {
            seen.pop_front();
        }
        seen.push_back(event_id.to_string());
        false
    }

    fn token(&self) -> Result<&str, DeliveryError> {
        self.settings
            .bot_token
            .as_deref()
            .ok_or_else(|| DeliveryError::permanent("slack.bot_token is not configured"))
    }

    /// `POST {api_url}/{method}` with the bot's token and `body` as JSON; Slack's answer.
    async fn call(&self, method: &str, body: String) -> Result<Answer, DeliveryError> {
        let token = self.token()?;
        let request = self
            .http
            .post(format!("{}/{method}", self.settings.api_url))
            .bearer_auth(token);
        let bytes = post_json_answer(request, body).await?;
        post::read_answer(&bytes).map_err(|err| DeliveryError::Retryable {
            message: format!("{method}: unreadable answer: {err}"),
            after: None,
            unsure: true,
        })
    }

    /// `GET {api_url}/{method}?{query}` with the bot's token, for the search of an earlier
    /// attempt's post.
    async fn look(&self, method: &str, query: &[(&str, &str)]) -> Result<Answer, DeliveryError> {
        const CANNOT: &str = "cannot look for an earlier attempt's post";
        let token = self.token()?;
        let query = serde_urlencoded::to_string(query)
            .map_err(|err| DeliveryError::permanent(format!("{CANNOT}: {err}")))?;
        let response = self
            .http
            .get(format!("{}/{method}?{query}", self.settings.api_url))
            .bearer_auth(token)
            .timeout(LOOKUP_TIMEOUT)
            .send()
            .await
            .map_err(|err| {
                DeliveryError::retryable(format!("{CANNOT}: {}", describe(&err.without_url())))
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(DeliveryError::Retryable {
                message: format!("{CANNOT}: {method}: {status}"),
                after: retry_after(&response),
                unsure: false,
            });
        }
        let body = response.bytes().await.map_err(|err| {
            DeliveryError::retryable(format!("{CANNOT}: {}", describe(&err.without_url())))
        })?;
        let answer = post::read_answer(&body).map_err(|err| {
            DeliveryError::retryable(format!("{CANNOT}: {method}: unreadable answer: {err}"))
        })?;
        match answer.error {
            // Without the history scopes the search can never work: say which are missing.
            Some(error) => Err(DeliveryError::retryable(format!(
                "{CANNOT}: {method}: {error}{}",
                if error == "missing_scope" {
                    " (the app needs channels:history and groups:history)"
                } else {
                    ""
                }
            ))),
            None => Ok(answer),
        }
    }
}

impl Client {
    /// Updates a slash command's anchor once its result is posted. Only words change: a
    /// failure is logged, not retried (the result, which matters, is posted).
    async fn update_anchor(&self, body: String) {
        match self.call("chat.update", body).await {
            Ok(answer) if answer.ok => {}
            Ok(answer) => {
                tracing::warn!(error = ?answer.error, "cannot update the acknowledgement of a slash command to say how its run ended");
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot update the acknowledgement of a slash command to say how its run ended");
            }
        }
    }
}

impl Adapter for Client {
    fn platform(&self) -> Platform {
        Platform::Slack
    }

    /// `/hooks/slack/commands`, `/hooks/slack/events`, `/hooks/slack/actions`.
    fn named_hooks(&self) -> bool {
        true
    }

    /// Slack gives up on an answer after 3 s (and retries an event): well within that.
    fn answer_within(&self) -> Option<Duration> {
        Some(Duration::from_millis(2500))
    }

    fn accept<'a>(
        &'a self,
        request: Request<'a>,
        context: HookContext<'a>,
    ) -> BoxFuture<'a, Result<Inbound, Rejection>> {
        Box::pin(async move { self.accept_hook(request, context) })
    }

    /// An ephemeral reply, shown to whoever typed the command, saying that nothing was stored.
    fn error_body(&self, message: &str) -> Option<String> {
        Some(
            serde_json::json!({
                "response_type": "ephemeral",
                "text": format!(":warning: {}", crate::domain::text::escape_text(message)),
            })
            .to_string(),
        )
    }

    fn owns_target(&self, target: &str) -> bool {
        target == TARGET_POST
    }

    fn result_address(&self, run: &RunRow) -> Option<Address> {
        if run.origin.channel_id.is_empty() {
            return None;
        }
        self.settings.bot_token.as_ref()?;
        Some(post::address(
            &run.origin.channel_id,
            run.thread_root_id.as_deref().unwrap_or(&run.message_id),
        ))
    }

    fn result_text(
        &self,
        run: &RunRow,
        steps: &[StepRow],
        failures: &[TestFailureRow],
        link: &str,
        now: i64,
    ) -> String {
        blocks::render_result(run, steps, failures, link, now).text
    }

    fn result_reply(
        &self,
        run: &RunRow,
        steps: &[StepRow],
        failures: &[TestFailureRow],
        link: &str,
        now: i64,
    ) -> Option<Delivery> {
        let address = self.result_address(run)?;
        let message = blocks::render_result(run, steps, failures, link, now);
        // A slash command's anchor (its acknowledgement) then says how the run ended, with Run
        // again instead of Cancel. No anchor was posted (it failed for good): the result goes
        // to the top of the channel.
        let anchor = run
            .thread_root_id
            .as_deref()
            .filter(|_| hook::is_command(&run.message_id));
        let done = blocks::render_anchor_done(run, link, now);
        Some(post::delivery_then_update(
            address,
            &run.origin.channel_id,
            run.thread_root_id.as_deref(),
            &message,
            false,
            anchor.map(|ts| (ts, &done)),
        ))
    }

    /// A message at the top of channel `channel` (an id), ordered with the channel's other
    /// notices.
    fn notice(
        &self,
        channel: &str,
        run: &RunRow,
        change: crate::domain::StatusChange,
        link: &str,
    ) -> Option<Delivery> {
        self.settings.bot_token.as_ref()?;
        let text = crate::render::command::status_change(
            crate::render::command::Flavor::Slack,
            run,
            change,
            link,
        );
        Some(post::delivery(
            post::address(channel, "notices"),
            channel,
            None,
            &blocks::text_message(&text),
            false,
        ))
    }

    /// `chat.postMessage`, the message carrying `key` in its metadata. Blocks Slack refuses
    /// (`invalid_blocks`, `msg_blocks_too_long`) are dropped and the text posted alone, rather
    /// than lose the reply.
    fn send<'a>(
        &'a self,
        delivery: &'a Delivery,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Posted, DeliveryError>> {
        Box::pin(async move {
            let outgoing = post::outgoing(&delivery.body, key)
                .ok_or_else(|| DeliveryError::permanent("the stored message is not JSON"))?;
            let mut answer = self.call("chat.postMessage", outgoing.body).await?;
            if answer
                .error
                .as_deref()
                .is_some_and(post::refused_for_its_blocks)
                && let Some(plain) = outgoing.without_blocks
            {
                tracing::warn!(error = ?answer.error, "Slack refused a reply's blocks: posting its text alone");
                answer = self.call("chat.postMessage", plain).await?;
            }
            let posted = post::posted(answer, outgoing.anchor)?;
            if let Some(update) = outgoing.update {
                self.update_anchor(update).await;
            }
            Ok(posted)
        })
    }

    fn searchable(&self) -> bool {
        true
    }

    /// The thread's replies (`conversations.replies`) or the channel's messages
    /// (`conversations.history`) since the delivery was queued (less a minute of clock
    /// skew), newest pages first, searched for a message whose metadata carries `key`.
    fn find_sent<'a>(
        &'a self,
        delivery: &'a Delivery,
        since_ms: i64,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Posted>, DeliveryError>> {
        Box::pin(async move {
            let place = post::place(&delivery.body)
                .ok_or_else(|| DeliveryError::permanent("the stored message names no channel"))?;
            let oldest = post::slack_ts(since_ms - LOOKUP_CLOCK_SKEW_MS);
            let limit = SEARCH_PAGE_MESSAGES.to_string();
            let mut cursor = String::new();
            for _ in 0..SEARCH_PAGES {
                let mut query = vec![
                    ("channel", place.channel.as_str()),
                    ("oldest", oldest.as_str()),
                    ("include_all_metadata", "true"),
                    ("limit", limit.as_str()),
                ];
                let method = match &place.thread_ts {
                    Some(ts) => {
                        query.push(("ts", ts.as_str()));
                        "conversations.replies"
                    }
                    None => "conversations.history",
                };
                if !cursor.is_empty() {
                    query.push(("cursor", cursor.as_str()));
                }
                let answer = self.look(method, &query).await?;
                if let Some(ts) = answer.ts_of(key) {
                    return Ok(Some(Posted {
                        thread_root: place.anchor.then(|| ts.to_string()),
                    }));
                }
                match answer.next_cursor() {
                    Some(next) => cursor = next.to_string(),
                    None => return Ok(None),
                }
            }
            Err(DeliveryError::retryable(format!(
                "cannot look for an earlier attempt's post: more than {} messages since it was queued",
                SEARCH_PAGES * SEARCH_PAGE_MESSAGES
            )))
        })
    }
}
