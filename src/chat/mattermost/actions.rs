//! Buttons on Mattermost posts (message-attachment actions): Rerun on a result, Cancel on an
//! acknowledgement posted through the REST API. A click makes Mattermost's server POST the
//! button's `context` to its integration URL, chatrun's `/hooks/mattermost/actions`. Mattermost
//! signs nothing, and anyone who may post could make a button with any context: the context
//! carries an HMAC of what it asks for, under a key only chatrun knows (derived from the bot's
//! token, so every instance agrees), checked in constant time before anything else. Pure.

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The two things a button asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ButtonAction {
    Rerun,
    Cancel,
}

impl ButtonAction {
    /// Its name in the context and in the HMAC.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rerun => "rerun",
            Self::Cancel => "cancel",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "rerun" => Some(Self::Rerun),
            "cancel" => Some(Self::Cancel),
            _ => None,
        }
    }
}

/// The key button contexts are signed with, from the bot's token: a secret every instance
/// shares without configuring one more (a new bot token makes earlier buttons refuse, and
/// say how to type the command instead).
pub fn button_key(bot_token: &str) -> Vec<u8> {
    let mut digest = Sha256::new();
    digest.update(b"chatrun buttons v1\0");
    digest.update(bot_token.as_bytes());
    digest.finalize().to_vec()
}

fn signature(key: &[u8], action: ButtonAction, run: i64) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(format!("{}:{run}", action.as_str()).as_bytes());
    mac
}

/// A button's `context`: what it asks for and its HMAC.
pub fn context(key: &[u8], action: ButtonAction, run: i64) -> serde_json::Value {
    let sig = crate::domain::to_hex(&signature(key, action, run).finalize().into_bytes());
    serde_json::json!({ "action": action.as_str(), "run": run, "sig": sig })
}

/// `props.attachments` with one button doing `action` on run `run`, its click sent to `url`.
pub fn attachments(key: &[u8], url: &str, action: ButtonAction, run: i64) -> serde_json::Value {
    let (id, name, style) = match action {
        ButtonAction::Rerun => ("chatrunrerun", "Run again", "primary"),
        ButtonAction::Cancel => ("chatruncancel", "Cancel", "danger"),
    };
    serde_json::json!([{
        "actions": [{
            "id": id,
            "type": "button",
            "name": format!("{name} #{run}"),
            "style": style,
            "integration": { "url": url, "context": context(key, action, run) },
        }]
    }])
}

/// What Mattermost's server POSTs when a button is clicked, as far as chatrun reads it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ActionRequest {
    pub user_id: String,
    pub user_name: String,
    pub channel_id: String,
    pub channel_name: String,
    pub team_id: String,
    pub team_domain: String,
    /// The post the button is on.
    pub post_id: String,
    pub trigger_id: String,
    pub context: serde_json::Map<String, serde_json::Value>,
}

/// Why a click is refused before anything is done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// Not JSON of a click.
    #[error("the body is not a Mattermost action request: {0}")]
    Body(String),
    /// The context is not one chatrun signed (forged, changed, or signed with another bot token).
    #[error("the button's context is not one chatrun signed")]
    Forged,
}

/// Reads a click: the request, and the action and run its context asks for once its HMAC is
/// checked (constant time, on the bytes of the signature).
///
/// # Errors
///
/// The body is not an action request, or its context is not one `key` signed.
pub fn read_click(
    key: &[u8],
    body: &[u8],
) -> Result<(ActionRequest, ButtonAction, i64), ActionError> {
    if let Some(problem) = crate::chat::json_body_problem(body) {
        return Err(ActionError::Body(problem));
    }
    let request: ActionRequest = serde_json::from_slice(body).map_err(|err| {
        ActionError::Body(crate::domain::text::truncate_runes(&err.to_string(), 200))
    })?;
    let context = &request.context;
    let action = context
        .get("action")
        .and_then(serde_json::Value::as_str)
        .and_then(ButtonAction::parse)
        .ok_or(ActionError::Forged)?;
    let run = context
        .get("run")
        .and_then(serde_json::Value::as_i64)
        .ok_or(ActionError::Forged)?;
    let given = context
        .get("sig")
        .and_then(serde_json::Value::as_str)
        .and_then(crate::domain::sha256_from_hex)
        .ok_or(ActionError::Forged)?;
    signature(key, action, run)
        .verify_slice(&given)
        .map_err(|_| ActionError::Forged)?;
    if request.user_id.trim().is_empty() || request.post_id.trim().is_empty() {
        return Err(ActionError::Body("user_id or post_id is missing".into()));
    }
    Ok((request, action, run))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn click(context: &serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "user_id": "u1", "user_name": "alice", "channel_id": "c1", "team_id": "t1",
            "post_id": "p1", "trigger_id": "tr", "type": "", "data_source": "",
            "context": context,
        }))
        .unwrap()
    }

    #[test]
    fn a_signed_context_is_read_and_a_changed_or_foreign_one_refused() {
        let key = button_key("bot-token");
        let good = context(&key, ButtonAction::Rerun, 42);
        let (request, action, run) = read_click(&key, &click(&good)).unwrap();
        assert_eq!((action, run), (ButtonAction::Rerun, 42));
        assert_eq!(request.user_name, "alice");

        // Another run, another action, another key, no signature: refused.
        let mut other_run = good.clone();
        other_run["run"] = 43.into();
        let mut other_action = good.clone();
        other_action["action"] = "cancel".into();
        let foreign = context(&button_key("another bot"), ButtonAction::Rerun, 42);
        let mut unsigned = good.clone();
        unsigned.as_object_mut().unwrap().remove("sig");
        for forged in [other_run, other_action, foreign, unsigned] {
            assert_eq!(
                read_click(&key, &click(&forged)).unwrap_err(),
                ActionError::Forged,
                "{forged}"
            );
        }
        assert!(matches!(read_click(&key, b"[1"), Err(ActionError::Body(_))));
    }

    #[test]
    fn a_button_carries_its_signed_context_and_the_url() {
        let key = button_key("t");
        let attachments = attachments(
            &key,
            "http://ci/hooks/mattermost/actions",
            ButtonAction::Cancel,
            7,
        );
        let action = &attachments[0]["actions"][0];
        assert_eq!(action["name"], "Cancel #7");
        assert_eq!(
            action["integration"]["url"],
            "http://ci/hooks/mattermost/actions"
        );
        assert_eq!(
            action["integration"]["context"],
            context(&key, ButtonAction::Cancel, 7)
        );
    }
}
