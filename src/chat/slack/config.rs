//! The `[slack]` section: the signing secret every Slack request is checked with, and the bot
//! token replies are posted with, checked here (the configuration calls [`Settings::validate`]).

use crate::domain::problem::{PLACEHOLDER, is_http_url, is_placeholder};

/// Slack's Web API, where `chat.postMessage` and the others live.
pub const DEFAULT_API_URL: &str = "https://slack.com/api";

/// Slack settings: the `[slack]` section, validated. Slack is served when `signing_secret` is
/// set.
#[derive(Clone, Default)]
pub struct Settings {
    /// The app's signing secret (Basic Information → App Credentials).
    pub signing_secret: Option<String>,
    /// The bot's token (`xoxb-…`), for `chat.postMessage` and the look-ups.
    pub bot_token: Option<String>,
    /// When set, requests of another app (`api_app_id`) are refused.
    pub app_id: Option<String>,
    /// The Web API's base URL, without a trailing slash (tests point it at a local server).
    pub api_url: String,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret and the token stay out of logs.
        f.debug_struct("Slack")
            .field(
                "signing_secret",
                &self.signing_secret.as_ref().map(|_| "<secret>"),
            )
            .field("bot_token", &self.bot_token.as_ref().map(|_| "<secret>"))
            .field("app_id", &self.app_id)
            .field("api_url", &self.api_url)
            .finish()
    }
}

impl Settings {
    /// Whether Slack is configured: its requests can be verified.
    pub fn enabled(&self) -> bool {
        self.signing_secret.is_some()
    }

    /// The section's values checked: each problem goes to `problem` with its dotted key.
    pub fn validate(
        signing_secret: Option<String>,
        bot_token: Option<String>,
        app_id: Option<String>,
        api_url: Option<String>,
        problem: &mut impl FnMut(&str, String),
    ) -> Self {
        let given = |value: Option<String>| {
            value
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let signing_secret = given(signing_secret);
        let bot_token = given(bot_token);
        for (key, value) in [
            ("slack.signing_secret", &signing_secret),
            ("slack.bot_token", &bot_token),
        ] {
            if value.as_deref().is_some_and(is_placeholder) {
                problem(key, PLACEHOLDER.into());
            }
        }
        if let Some(token) = &bot_token
            && !token.starts_with("xoxb-")
            && !is_placeholder(token)
        {
            problem(
                "slack.bot_token",
                "must be the Bot User OAuth Token, which starts with xoxb- (OAuth & Permissions)"
                    .into(),
            );
        }
        if signing_secret.is_some() != bot_token.is_some() {
            let (missing, why) = if signing_secret.is_some() {
                (
                    "slack.bot_token",
                    "is needed too: Slack's answers are posted with the bot token",
                )
            } else {
                (
                    "slack.signing_secret",
                    "is needed too: every Slack request is checked with it",
                )
            };
            problem(missing, why.into());
        }
        let api_url = given(api_url).unwrap_or_else(|| DEFAULT_API_URL.to_string());
        if !is_http_url(&api_url) {
            problem(
                "slack.api_url",
                format!("`{api_url}` must start with http:// or https://"),
            );
        }
        Self {
            signing_secret,
            bot_token,
            app_id: given(app_id),
            api_url: api_url.trim_end_matches('/').to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(
        secret: Option<&str>,
        token: Option<&str>,
        api_url: Option<&str>,
    ) -> (Settings, Vec<String>) {
        let mut problems = Vec::new();
        let settings = Settings::validate(
            secret.map(String::from),
            token.map(String::from),
            None,
            api_url.map(String::from),
            &mut |key, why| problems.push(format!("{key} {why}")),
        );
        (settings, problems)
    }

    #[test]
    fn slack_needs_the_secret_and_the_bot_token_together() {
        let (settings, problems) = check(None, None, None);
        assert!(!settings.enabled() && problems.is_empty());
        assert_eq!(settings.api_url, DEFAULT_API_URL);
        let (settings, problems) = check(Some("s3cret"), Some("xoxb-1"), Some("http://x/api/"));
        assert!(settings.enabled() && problems.is_empty(), "{problems:?}");
        assert_eq!(settings.api_url, "http://x/api");
        let (_, problems) = check(Some("s3cret"), None, None);
        assert_eq!(
            problems,
            ["slack.bot_token is needed too: Slack's answers are posted with the bot token"]
        );
        let (_, problems) = check(Some("s3cret"), Some("xoxp-user"), None);
        assert!(problems[0].contains("starts with xoxb-"), "{problems:?}");
        let (_, problems) = check(Some("replace-with-secret"), Some("xoxb-1"), Some("ftp://x"));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            format!(
                "{settings:?}",
                settings = check(Some("abc"), Some("xoxb-z"), None).0
            )
            .contains("<secret>")
        );
    }
}
