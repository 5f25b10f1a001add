//! Mattermost's REST API, as the bot: posting replies, finding a reply an attempt posted whose
//! answer was lost, learning where a trigger post sits and the bot's own user id.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Deserialize;

use super::*;
use crate::chat::adapter::Adapter;
use crate::chat::transport::{DeliveryError, describe, post_json, retry_after};
use crate::chat::{HookContext, Inbound, Posted, Rejection, Request};
use crate::domain::Platform;

/// How long the search for an earlier attempt's post may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The search for an earlier attempt's post starts this long before the delivery was queued,
/// in case Mattermost's clock is behind ours.
const LOOKUP_CLOCK_SKEW_MS: i64 = 60_000;

/// Posts per page of the search for an earlier attempt's post, and the most pages read.
const SEARCH_PAGE_POSTS: usize = 200;
const SEARCH_PAGES: usize = 50;

/// How long the thread look-up may delay the acknowledgement.
const THREAD_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Mattermost as chatrun sees it: the webhook tokens it accepts, and the bot's REST API when
/// `url` and `bot_token` are configured.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    pub(super) settings: Settings,
    /// Tokens accepted on `/hooks/mattermost`: the configured ones, or the local one.
    pub(super) tokens: Arc<Vec<String>>,
    /// The bot's user id, once learnt ([`Client::learn_bot_user_id`]); its own posts are
    /// ignored.
    pub(super) bot_user_id: Arc<OnceLock<String>>,
    /// Whether a failed thread look-up has been reported (once: each one delays an
    /// acknowledgement).
    lookup_failed: Arc<AtomicBool>,
    /// Rerun and Cancel buttons, once [`Client::with_buttons`] named where their clicks go.
    pub(super) buttons: Option<Buttons>,
}

/// What chatrun's buttons on Mattermost posts need: the key their contexts are signed with,
/// and the URL Mattermost's server sends their clicks to.
#[derive(Clone)]
pub struct Buttons {
    pub(super) key: Arc<Vec<u8>>,
    pub(super) url: String,
}

impl std::fmt::Debug for Buttons {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buttons").field("url", &self.url).finish()
    }
}

impl Buttons {
    /// `post` (a REST post) with the button doing `action` on run `run`, when there are
    /// buttons; as it is otherwise.
    pub fn add(
        buttons: Option<&Self>,
        post: Delivery,
        action: actions::ButtonAction,
        run: i64,
    ) -> Delivery {
        match buttons {
            Some(buttons) => with_props(
                post,
                serde_json::json!({
                    "attachments": actions::attachments(&buttons.key, &buttons.url, action, run)
                }),
            ),
            None => post,
        }
    }
}

#[derive(Deserialize)]
struct PostInfo {
    #[serde(default)]
    root_id: String,
}

#[derive(Deserialize)]
struct Me {
    id: String,
}

impl Client {
    /// A client for `settings`, sharing `http`'s connections, accepting the configured tokens.
    pub fn new(http: reqwest::Client, settings: Settings) -> Self {
        let tokens = Arc::new(settings.tokens.clone());
        Self {
            http,
            settings,
            tokens,
            bot_user_id: Arc::default(),
            lookup_failed: Arc::default(),
            buttons: None,
        }
    }

    /// The same client putting Rerun and Cancel buttons on the posts it makes through the
    /// REST API, their clicks sent to `{public_url}/hooks/mattermost/actions`; without the REST
    /// API (no bot token) there are none.
    #[must_use]
    pub fn with_buttons(self, public_url: &str) -> Self {
        let buttons = self.settings.bot_token.as_deref().map(|token| Buttons {
            key: Arc::new(actions::button_key(token)),
            url: format!("{public_url}/hooks/mattermost/actions"),
        });
        Self { buttons, ..self }
    }

    /// The same client accepting `tokens` instead (the local token, when none is configured).
    #[must_use]
    pub fn accepting(self, tokens: Vec<String>) -> Self {
        Self {
            tokens: Arc::new(tokens),
            ..self
        }
    }

    /// Learns the bot's user id from `GET /api/v4/users/me`, so the bot's own posts are ignored.
    ///
    /// # Errors
    ///
    /// Why it could not be learnt, for the log.
    pub async fn learn_bot_user_id(&self) -> Result<String, String> {
        let id = self.fetch_bot_user_id().await?;
        let _ = self.bot_user_id.set(id.clone());
        Ok(id)
    }

    fn rest(&self) -> Result<(&str, &str), DeliveryError> {
        self.settings.rest().ok_or_else(|| {
            DeliveryError::permanent("mattermost.url and mattermost.bot_token are not configured")
        })
    }

    /// Asks Mattermost whether the trigger post is inside a thread, when the REST API is
    /// configured; [`Thread::Unknown`] when it is not, [`Thread::Unsettled`] when it does not
    /// answer in time (the result's delivery looks again).
    pub async fn lookup_thread(&self, post_id: &str) -> Thread {
        let (failure, lasting) = match self.thread_of(post_id, THREAD_LOOKUP_TIMEOUT).await {
            Ok(thread) => return thread,
            Err(failure) => failure,
        };
        if self.lookup_failed.swap(true, Ordering::Relaxed) {
            tracing::debug!(error = %failure, post = post_id,
                "cannot look up the trigger post; the result's delivery looks again");
        } else {
            tracing::warn!(error = %failure, post = post_id,
                url = self.settings.url.as_deref().unwrap_or_default(),
                "cannot look up the trigger post in Mattermost (mattermost.url): the acknowledgement \
                 goes to the top of the channel and the result's delivery looks again; while this \
                 lasts each acknowledgement waits up to {} s for the look-up (said once; later \
                 failures are logged at debug)",
                THREAD_LOOKUP_TIMEOUT.as_secs());
        }
        // Refused (401, 403): asking again later would not help.
        if lasting {
            Thread::Unknown
        } else {
            Thread::Unsettled
        }
    }

    /// `GET /api/v4/posts/{post_id}`: where the post sits. [`Thread::Unknown`] when the REST API
    /// is not configured or Mattermost does not know the post (a `chatrun trigger` post); an
    /// error when Mattermost did not answer within `timeout`, or answered with an error, and
    /// whether asking again later would not help (a refusal: 401, 403).
    async fn thread_of(&self, post_id: &str, timeout: Duration) -> Result<Thread, (String, bool)> {
        let Some((url, token)) = self.settings.rest() else {
            return Ok(Thread::Unknown);
        };
        // `post_id` was checked by `Payload::check` to be letters, digits, `-` and `_` only.
        let response = self
            .http
            .get(format!("{url}/api/v4/posts/{post_id}"))
            .bearer_auth(token)
            .timeout(timeout)
            .send()
            .await
            .map_err(|err| (describe(&err.without_url()), false))?;
        match response.status() {
            status if status.is_success() => Ok(response
                .json::<PostInfo>()
                .await
                .map_or(Thread::Unknown, |post| Thread::from_root_id(&post.root_id))),
            reqwest::StatusCode::NOT_FOUND => Ok(Thread::Unknown),
            status => Err((status.to_string(), status.is_client_error())),
        }
    }

    /// The bot's user id, from `GET /api/v4/users/me`.
    ///
    /// # Errors
    ///
    /// Why it could not be learnt, for the log.
    async fn fetch_bot_user_id(&self) -> Result<String, String> {
        let Some((url, token)) = self.settings.rest() else {
            return Err("mattermost.url and mattermost.bot_token are not configured".into());
        };
        let response = self
            .http
            .get(format!("{url}/api/v4/users/me"))
            .bearer_auth(token)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|err| err.to_string())?;
        response
            .json::<Me>()
            .await
            .map(|me| me.id)
            .map_err(|err| format!("unexpected answer from /api/v4/users/me: {err}"))
    }
}

impl Adapter for Client {
    fn platform(&self) -> Platform {
        Platform::Mattermost
    }

    /// `/hooks/mattermost/actions`: clicks on chatrun's buttons.
    fn named_hooks(&self) -> bool {
        true
    }

    fn accept<'a>(
        &'a self,
        request: Request<'a>,
        context: HookContext<'a>,
    ) -> BoxFuture<'a, Result<Inbound, Rejection>> {
        Box::pin(self.accept_hook(request, context))
    }

    /// Mattermost ignores the status and posts a JSON reply's `text`: the user sees that nothing
    /// was stored.
    fn error_body(&self, message: &str) -> Option<String> {
        Some(serde_json::json!({ "text": format!(":warning: {message}") }).to_string())
    }

    fn owns_target(&self, target: &str) -> bool {
        target == TARGET_POST
    }

    fn result_address(&self, run: &RunRow) -> Option<Address> {
        if run.origin.channel_id.is_empty() {
            return None;
        }
        self.settings.rest()?;
        Some(post_address(
            &run.origin.channel_id,
            run.thread_root_id.as_deref(),
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
        render_result(run, steps, failures, link, now)
    }

    fn result_reply(
        &self,
        run: &RunRow,
        steps: &[StepRow],
        failures: &[TestFailureRow],
        link: &str,
        now: i64,
    ) -> Option<Delivery> {
        self.result_address(run)?;
        let message = render_result(run, steps, failures, link, now);
        // Unknown root (the look-up failed, or a `chatrun trigger` post that Mattermost does
        // not know): a top-level post is always accepted, a guessed root_id may be refused.
        let post = render_post(
            &run.origin.channel_id,
            run.thread_root_id.as_deref(),
            &message,
        );
        Some(Buttons::add(
            self.buttons.as_ref(),
            post,
            actions::ButtonAction::Rerun,
            run.run_id.0,
        ))
    }

    /// A post at the top of channel `channel` (an id), through the REST API.
    fn notice(
        &self,
        channel: &str,
        run: &RunRow,
        change: crate::domain::StatusChange,
        link: &str,
    ) -> Option<Delivery> {
        self.settings.rest()?;
        let text = crate::render::command::status_change(
            crate::render::command::Flavor::Markdown,
            run,
            change,
            link,
        );
        Some(render_post(channel, None, &text))
    }

    /// Looks up the trigger's thread again, for a run whose look-up failed when it came.
    fn settle_thread<'a>(
        &'a self,
        run: &'a RunRow,
    ) -> BoxFuture<'a, Result<Option<String>, DeliveryError>> {
        Box::pin(async move {
            match self.thread_of(&run.message_id, LOOKUP_TIMEOUT).await {
                Ok(thread) => Ok(thread.root_for(&run.message_id)),
                Err((err, true)) => {
                    tracing::warn!(run = %run.run_id, error = %err,
                        "cannot look up the trigger's thread: the result goes to the top of the channel");
                    Ok(None)
                }
                Err((err, false)) => Err(DeliveryError::retryable(format!(
                    "cannot look up the trigger's thread: {err}"
                ))),
            }
        })
    }

    /// `POST /api/v4/posts`, the post carrying `key` in `props.chatrun_delivery` and as its
    /// `pending_post_id`.
    fn send<'a>(
        &'a self,
        delivery: &'a Delivery,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Posted, DeliveryError>> {
        Box::pin(async move {
            let (url, token) = self.rest()?;
            let body = with_delivery_key(&delivery.body, key)
                .ok_or_else(|| DeliveryError::permanent("the stored post is not JSON"))?;
            let request = self
                .http
                .post(format!("{url}/api/v4/posts"))
                .bearer_auth(token);
            post_json(request, body).await.map(|()| Posted::default())
        })
    }

    fn dedup_window(&self) -> Duration {
        self.settings.pending_post_window
    }

    fn searchable(&self) -> bool {
        true
    }

    /// `GET /api/v4/channels/{channel_id}/posts?page=…`, newest first, page after page until
    /// the posts are older than the delivery (less a minute of clock skew), searched for `key`.
    /// (One `?since=` answer holds at most 1000 posts, in no set order: in a busy channel it
    /// could miss the post.)
    fn find_sent<'a>(
        &'a self,
        delivery: &'a Delivery,
        since_ms: i64,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Posted>, DeliveryError>> {
        Box::pin(async move {
            const CANNOT: &str = "cannot look for an earlier attempt's post";
            let (url, token) = self.rest()?;
            let channel_id = post_channel(&delivery.body)
                .filter(|id| is_id(id))
                .ok_or_else(|| {
                    DeliveryError::permanent("the stored post names no valid channel")
                })?;
            let since = since_ms - LOOKUP_CLOCK_SKEW_MS;
            for page in 0..SEARCH_PAGES {
                let response = self
                    .http
                    .get(format!(
                        "{url}/api/v4/channels/{channel_id}/posts?page={page}&per_page={SEARCH_PAGE_POSTS}"
                    ))
                    .bearer_auth(token)
                    .timeout(LOOKUP_TIMEOUT)
                    .send()
                    .await
                    .map_err(|err| {
                        DeliveryError::retryable(format!(
                            "{CANNOT}: {}",
                            describe(&err.without_url())
                        ))
                    })?;
                let status = response.status();
                if !status.is_success() {
                    return Err(DeliveryError::Retryable {
                        message: format!("{CANNOT}: {status}"),
                        after: retry_after(&response),
                        unsure: false,
                    });
                }
                let body = response.bytes().await.map_err(|err| {
                    DeliveryError::retryable(format!("{CANNOT}: {}", describe(&err.without_url())))
                })?;
                let found = scan_page(&body, key).map_err(|err| {
                    DeliveryError::retryable(format!("{CANNOT}: unreadable answer: {err}"))
                })?;
                if found.found {
                    return Ok(Some(Posted::default()));
                }
                if found.posts < SEARCH_PAGE_POSTS || found.oldest.is_none_or(|at| at < since) {
                    return Ok(None);
                }
            }
            Err(DeliveryError::retryable(format!(
                "{CANNOT}: more than {} posts since it was queued",
                SEARCH_PAGES * SEARCH_PAGE_POSTS
            )))
        })
    }
}
