//! One `[[teams.webhooks]]` entry: the HMAC key of an outgoing webhook and the Workflows URL
//! results go to, checked here (the configuration checks the entry's name).

use crate::domain::problem::{PLACEHOLDER, is_http_url, is_placeholder};

/// One Teams outgoing webhook (Teams creates one per team).
#[derive(Clone)]
pub struct Webhook {
    /// Our name for it: `/hooks/teams/{name}`, and what runs and replies are filed under.
    pub name: String,
    /// The HMAC key: the security token Teams showed, base64-decoded.
    pub key: Vec<u8>,
    /// The Workflows URL results are posted to; without it results are only on the history
    /// page.
    pub follow_up_url: Option<String>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key and the URL (whose `sig` is a credential) stay out of logs.
        f.debug_struct("Webhook")
            .field("name", &self.name)
            .field("key", &"<secret>")
            .field(
                "follow_up_url",
                &self.follow_up_url.as_ref().map(|_| "<secret>"),
            )
            .finish()
    }
}

impl Webhook {
    /// The entry `name` (already checked) with its `secret` and `follow_up_url` checked: each
    /// problem goes to `problem` with its dotted key, under `key_prefix`.
    pub fn validate(
        name: String,
        secret: &str,
        follow_up_url: Option<String>,
        key_prefix: &str,
        problem: &mut impl FnMut(&str, String),
    ) -> Self {
        let key = |field: &str| format!("{key_prefix}.{field}");
        use base64::Engine as _;
        let secret = base64::engine::general_purpose::STANDARD.decode(secret.trim());
        let key_bytes = match secret {
            Ok(bytes) if bytes.iter().all(|&b| b == 0) && !bytes.is_empty() => {
                problem(
                    &key("secret"),
                    "is the example file's placeholder (all zero bytes), with which anyone can sign requests: paste the security token Teams showed".into(),
                );
                Vec::new()
            }
            Ok(bytes) if !bytes.is_empty() => bytes,
            Ok(_) => {
                problem(
                    &key("secret"),
                    "is missing: paste the security token Teams showed when the webhook was created".into(),
                );
                Vec::new()
            }
            Err(err) => {
                problem(
                    &key("secret"),
                    format!(
                        "is not valid base64 ({err}): paste the security token exactly as Teams showed it"
                    ),
                );
                Vec::new()
            }
        };
        let follow_up_url = follow_up_url.filter(|u| !u.trim().is_empty());
        if let Some(url) = &follow_up_url {
            if is_placeholder(url) {
                problem(&key("follow_up_url"), PLACEHOLDER.into());
            } else if !is_http_url(url) {
                problem(
                    &key("follow_up_url"),
                    "must start with http:// or https://".into(),
                );
            }
        }
        Self {
            name,
            key: key_bytes,
            follow_up_url,
        }
    }
}
