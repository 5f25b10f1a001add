//! The `[mattermost]` section: the webhook tokens chatrun accepts and the REST API it posts
//! through, checked here (the configuration calls [`Settings::validate`]).

use crate::domain::problem::{PLACEHOLDER, is_http_url, is_placeholder};

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
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The webhook tokens and the bot's token stay out of logs.
        f.debug_struct("Mattermost")
            .field("tokens", &format!("<{} secret(s)>", self.tokens.len()))
            .field("url", &self.url)
            .field("bot_token", &self.bot_token.as_ref().map(|_| "<secret>"))
            .field("bot_user_id", &self.bot_user_id)
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
        problem: &mut impl FnMut(&str, String),
    ) -> Self {
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
        }
    }
}
