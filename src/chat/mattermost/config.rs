//! The `[mattermost]` section: the webhook tokens chatrun accepts and the REST API it posts
//! through, checked here (the configuration calls [`Settings::validate`]).

use std::time::Duration;

use crate::domain::problem::{PLACEHOLDER, is_http_url, is_placeholder};

/// How long after an attempt whose answer was lost the same post is simply sent again:
/// Mattermost keeps a post's `pending_post_id` for 30 s (`PENDING_POST_IDS_CACHE_TTL`) and
/// answers a repeat with the post it already made; 5 s less, for the two clocks.
pub const DEFAULT_PENDING_POST_WINDOW: Duration = Duration::from_secs(25);

/// The longest `pending_post_window_secs`: Mattermost's own window.
const MAX_PENDING_POST_WINDOW_SECS: u64 = 30;

/// Mattermost settings: the `[mattermost]` section, validated.
#[derive(Clone, Default)]
pub struct Settings {
    /// Tokens of the outgoing webhooks we accept. Empty: only the local token is accepted.
    pub tokens: Vec<String>,
    /// Server base URL for the REST API, without a trailing slash.
    pub url: Option<String>,
    /// Access token of the bot account that posts results.
    pub bot_token: Option<String>,
    /// The bot account's user id; triggers from it are ignored. Looked up when not set.
    pub bot_user_id: Option<String>,
    /// Within this long of an attempt whose answer was lost, a post is sent again as it was
    /// (Mattermost drops the copy); later, the channel is searched first. Zero: always search.
    pub pending_post_window: Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The webhook tokens and the bot's token stay out of logs.
        f.debug_struct("Mattermost")
            .field("tokens", &format!("<{} secret(s)>", self.tokens.len()))
            .field("url", &self.url)
            .field("bot_token", &self.bot_token.as_ref().map(|_| "<secret>"))
            .field("bot_user_id", &self.bot_user_id)
            .field("pending_post_window", &self.pending_post_window)
            .finish()
    }
}

impl Settings {
    /// The REST API base URL and bot token, when both are configured.
    pub fn rest(&self) -> Option<(&str, &str)> {
        Some((self.url.as_deref()?, self.bot_token.as_deref()?))
    }

    /// The section's values checked: each problem goes to `problem` with its dotted key.
    pub fn validate(
        raw_tokens: Vec<String>,
        url: Option<String>,
        bot_token: Option<String>,
        bot_user_id: Option<String>,
        pending_post_window_secs: u64,
        problem: &mut impl FnMut(&str, String),
    ) -> Self {
        if pending_post_window_secs > MAX_PENDING_POST_WINDOW_SECS {
            problem(
                "mattermost.pending_post_window_secs",
                format!(
                    "{pending_post_window_secs} is longer than Mattermost keeps a pending_post_id \
                     ({MAX_PENDING_POST_WINDOW_SECS} s): use at most {MAX_PENDING_POST_WINDOW_SECS}"
                ),
            );
        }
        let mut tokens = Vec::new();
        for (i, token) in raw_tokens.into_iter().enumerate() {
            let token = token.trim().to_string();
            if token.is_empty() {
                problem(&format!("mattermost.tokens[{i}]"), "is empty".into());
            } else if is_placeholder(&token) {
                problem(&format!("mattermost.tokens[{i}]"), PLACEHOLDER.into());
            } else {
                tokens.push(token);
            }
        }
        let url = url.filter(|u| !u.trim().is_empty());
        if let Some(url) = &url
            && !is_http_url(url)
        {
            problem(
                "mattermost.url",
                format!("`{url}` must start with http:// or https://"),
            );
        }
        let bot_token = bot_token.filter(|t| !t.trim().is_empty());
        if bot_token.as_deref().is_some_and(is_placeholder) {
            problem("mattermost.bot_token", PLACEHOLDER.into());
        }
        if url.is_some() != bot_token.is_some() {
            let missing = if url.is_some() {
                "mattermost.bot_token"
            } else {
                "mattermost.url"
            };
            problem(
                missing,
                "is needed too: results are posted through the REST API with both url and bot_token"
                    .into(),
            );
        }
        Self {
            tokens,
            url: url.map(|u| u.trim_end_matches('/').to_string()),
            bot_token,
            bot_user_id: bot_user_id.filter(|id| !id.is_empty()),
            pending_post_window: Duration::from_secs(
                pending_post_window_secs.min(MAX_PENDING_POST_WINDOW_SECS),
            ),
        }
    }
}
