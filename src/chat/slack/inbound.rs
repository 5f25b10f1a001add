//! What Slack sends, read once its signature is verified ([`super::auth`]): a slash command
//! (a form), an Events API delivery (JSON: the request URL's verification, or an event such
//! as `app_mention`) and a button click (a form whose `payload` is JSON: `block_actions`).
//! Pure: bytes in, values or a short reason out.

use serde::Deserialize;

/// Why a verified body is not a request chatrun can take; short and safe to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A slash command's form that does not decode.
    #[error("the form body is not a Slack slash command: {0}")]
    Form(String),
    /// An Events API body that is not JSON of a delivery.
    #[error("the JSON body is not a Slack Events API delivery: {0}")]
    Json(String),
    /// A button click that is not a `block_actions` payload.
    #[error("the form body is not a Slack interaction payload: {0}")]
    Payload(String),
    /// A field chatrun needs is missing or empty.
    #[error("{0} is missing")]
    Missing(&'static str),
}

/// A slash command's fields (`/build feature/x`). The deprecated verification `token` is not
/// read: the signature is the credential.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct SlashCommand {
    pub team_id: String,
    pub team_domain: String,
    pub channel_id: String,
    pub channel_name: String,
    pub user_id: String,
    pub user_name: String,
    /// The command as typed, `/build`.
    pub command: String,
    /// What followed it.
    pub text: String,
    /// Answers the command up to 5 times within 30 minutes.
    pub response_url: String,
    pub trigger_id: String,
    pub api_app_id: String,
}

/// Reads a slash command's form body.
///
/// # Errors
///
/// The form does not decode, or names no user, channel or command.
pub fn parse_slash_command(body: &[u8]) -> Result<SlashCommand, ParseError> {
    let command: SlashCommand = serde_urlencoded::from_bytes(body).map_err(|err| {
        ParseError::Form(crate::domain::text::truncate_runes(&err.to_string(), 200))
    })?;
    for (value, name) in [
        (&command.user_id, "user_id"),
        (&command.channel_id, "channel_id"),
        (&command.command, "command"),
    ] {
        if value.trim().is_empty() {
            return Err(ParseError::Missing(name));
        }
    }
    Ok(command)
}

/// An Events API delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Slack checks the request URL: answer with the challenge.
    UrlVerification { challenge: String },
    /// Someone mentioned the app (`@chatrun build feature/x`).
    Mention(Mention),
    /// Another event, or another kind of delivery: acknowledged, nothing done.
    Other { kind: String },
}

/// An `app_mention` event, with its delivery's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mention {
    /// The delivery's id: the same on Slack's retries of it.
    pub event_id: String,
    pub team_id: String,
    /// The app the event was sent to.
    pub api_app_id: String,
    pub user: String,
    /// As typed, the app's mention included (`<@U0LAN0Z89> build`).
    pub text: String,
    pub ts: String,
    pub channel: String,
    /// The thread it was typed in, if any.
    pub thread_ts: Option<String>,
    /// Set when a bot wrote it (chatrun itself, among others): never answered.
    pub bot_id: Option<String>,
}

#[derive(Deserialize)]
struct RawDelivery {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    challenge: String,
    #[serde(default)]
    event_id: String,
    #[serde(default)]
    team_id: String,
    #[serde(default)]
    api_app_id: String,
    #[serde(default)]
    event: Option<RawEvent>,
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    ts: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    thread_ts: Option<String>,
    #[serde(default)]
    bot_id: Option<String>,
}

/// Reads an Events API body.
///
/// # Errors
///
/// It is not UTF-8, nests too deep, is not JSON of a delivery, or a verification without its
/// challenge, or a mention without its id, user or channel.
pub fn parse_event(body: &[u8]) -> Result<Delivery, ParseError> {
    if let Some(problem) = crate::chat::json_body_problem(body) {
        return Err(ParseError::Json(problem));
    }
    let raw: RawDelivery = serde_json::from_slice(body).map_err(|err| {
        ParseError::Json(crate::domain::text::truncate_runes(&err.to_string(), 200))
    })?;
    match (raw.kind.as_str(), raw.event) {
        ("url_verification", _) if raw.challenge.is_empty() => {
            Err(ParseError::Missing("challenge"))
        }
        ("url_verification", _) => Ok(Delivery::UrlVerification {
            challenge: raw.challenge,
        }),
        ("event_callback", Some(event)) if event.kind == "app_mention" => {
            for (value, name) in [
                (&raw.event_id, "event_id"),
                (&event.user, "event.user"),
                (&event.channel, "event.channel"),
                (&event.ts, "event.ts"),
            ] {
                if value.is_empty() && !(name == "event.user" && event.bot_id.is_some()) {
                    return Err(ParseError::Missing(name));
                }
            }
            Ok(Delivery::Mention(Mention {
                event_id: raw.event_id,
                team_id: raw.team_id,
                api_app_id: raw.api_app_id,
                user: event.user,
                text: event.text,
                ts: event.ts,
                channel: event.channel,
                thread_ts: event.thread_ts.filter(|t| !t.is_empty()),
                bot_id: event.bot_id.filter(|b| !b.is_empty()),
            }))
        }
        ("event_callback", Some(event)) => Ok(Delivery::Other { kind: event.kind }),
        (kind, _) => Ok(Delivery::Other {
            kind: kind.to_string(),
        }),
    }
}

/// A click on one of chatrun's buttons (`block_actions`), as far as chatrun reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Click {
    /// The button's `action_id` (`chatrun_rerun`, `chatrun_cancel`).
    pub action_id: String,
    /// The button's `value`: the run number.
    pub value: String,
    /// When it was clicked (Slack's `action_ts`): with the message, the click's id.
    pub action_ts: String,
    pub user_id: String,
    pub user_name: String,
    pub team_id: String,
    pub team_domain: String,
    pub channel_id: String,
    pub channel_name: String,
    /// The message the button is on.
    pub message_ts: String,
    /// The thread that message is in, if any.
    pub thread_ts: Option<String>,
    pub api_app_id: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawInteraction {
    #[serde(rename = "type")]
    kind: String,
    user: RawNamed,
    team: RawNamed,
    channel: RawNamed,
    message: RawMessage,
    container: RawMessage,
    actions: Vec<RawAction>,
    api_app_id: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawNamed {
    id: String,
    #[serde(alias = "domain")]
    username: String,
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawMessage {
    #[serde(alias = "message_ts")]
    ts: String,
    thread_ts: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawAction {
    action_id: String,
    value: String,
    action_ts: String,
}

/// The form of an interaction: one field, its JSON.
#[derive(Deserialize)]
struct InteractionForm {
    payload: String,
}

/// Reads a button click's form body (`payload=<JSON>`); `Ok(None)` for another interaction
/// (a shortcut, a modal, a select), which chatrun does not offer and leaves alone.
///
/// # Errors
///
/// The form has no `payload`, the payload is not JSON of an interaction, or a click names no
/// action, user, channel or message.
pub fn parse_click(body: &[u8]) -> Result<Option<Click>, ParseError> {
    let form: InteractionForm = serde_urlencoded::from_bytes(body).map_err(|err| {
        ParseError::Payload(crate::domain::text::truncate_runes(&err.to_string(), 200))
    })?;
    if let Some(problem) = crate::chat::json_body_problem(form.payload.as_bytes()) {
        return Err(ParseError::Payload(problem));
    }
    let raw: RawInteraction = serde_json::from_str(&form.payload).map_err(|err| {
        ParseError::Payload(crate::domain::text::truncate_runes(&err.to_string(), 200))
    })?;
    if raw.kind != "block_actions" {
        return Ok(None);
    }
    let Some(action) = raw.actions.into_iter().next() else {
        return Err(ParseError::Missing("actions"));
    };
    // A message's buttons say where the message is; the container says it too.
    let message_ts = if raw.message.ts.is_empty() {
        raw.container.ts
    } else {
        raw.message.ts
    };
    let thread_ts = raw
        .message
        .thread_ts
        .or(raw.container.thread_ts)
        .filter(|t| !t.is_empty());
    for (value, name) in [
        (&action.action_id, "actions[0].action_id"),
        (&raw.user.id, "user.id"),
        (&raw.channel.id, "channel.id"),
        (&message_ts, "message.ts"),
    ] {
        if value.trim().is_empty() {
            return Err(ParseError::Missing(name));
        }
    }
    Ok(Some(Click {
        action_id: action.action_id,
        value: action.value,
        action_ts: action.action_ts,
        user_name: if raw.user.username.is_empty() {
            raw.user.name
        } else {
            raw.user.username
        },
        user_id: raw.user.id,
        team_id: raw.team.id,
        team_domain: raw.team.username,
        channel_id: raw.channel.id,
        channel_name: raw.channel.name,
        message_ts,
        thread_ts,
        api_app_id: raw.api_app_id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLASH: &[u8] = include_bytes!("../../../tests/fixtures/slack/slash-command.txt");
    const MENTION: &[u8] = include_bytes!("../../../tests/fixtures/slack/app-mention.json");
    const VERIFY: &[u8] = include_bytes!("../../../tests/fixtures/slack/url-verification.json");
    const CLICK: &[u8] = include_bytes!("../../../tests/fixtures/slack/block-actions.txt");
    const CLICK_JSON: &str = include_str!("../../../tests/fixtures/slack/block-actions.json");

    /// The form Slack posts for an interaction whose payload is `json`.
    fn form(json: &str) -> Vec<u8> {
        serde_urlencoded::to_string([("payload", json)])
            .unwrap()
            .into_bytes()
    }

    #[test]
    fn a_button_click_is_read_from_its_payload_field() {
        let click = parse_click(CLICK).unwrap().unwrap();
        assert_eq!(
            click,
            Click {
                action_id: "a".into(),
                value: "underlying".into(),
                action_ts: click.action_ts.clone(),
                user_id: "U111".into(),
                user_name: "test-test-test".into(),
                team_id: "T111".into(),
                team_domain: "test-test-test".into(),
                channel_id: "C111".into(),
                channel_name: "random".into(),
                message_ts: "1605853634.000400".into(),
                thread_ts: None,
                api_app_id: "A111".into(),
            }
        );
        assert!(!click.action_ts.is_empty());
        // The same click in a thread: the container names the thread too.
        let mut payload: serde_json::Value = serde_json::from_str(CLICK_JSON).unwrap();
        payload["container"]["thread_ts"] = "1605853600.000100".into();
        let click = parse_click(&form(&payload.to_string())).unwrap().unwrap();
        assert_eq!(click.thread_ts.as_deref(), Some("1605853600.000100"));
        // Another kind of interaction is left alone; a click without its parts is refused.
        payload["type"] = "view_submission".into();
        assert_eq!(parse_click(&form(&payload.to_string())), Ok(None));
        payload["type"] = "block_actions".into();
        payload["actions"] = serde_json::json!([]);
        assert_eq!(
            parse_click(&form(&payload.to_string())),
            Err(ParseError::Missing("actions"))
        );
        assert!(matches!(
            parse_click(b"text=hi"),
            Err(ParseError::Payload(_))
        ));
        assert!(matches!(
            parse_click(&form("{")),
            Err(ParseError::Payload(_))
        ));
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100), "]".repeat(100));
        assert!(matches!(
            parse_click(&form(&deep)),
            Err(ParseError::Payload(_))
        ));
    }

    #[test]
    fn slacks_slash_command_is_read_from_its_form() {
        let command = parse_slash_command(SLASH).unwrap();
        assert_eq!(command.command, "/webhook-collect");
        assert_eq!(command.text, "");
        assert_eq!(
            (command.user_id.as_str(), command.user_name.as_str()),
            ("U2CERLKJA", "roadrunner")
        );
        assert_eq!(
            (command.channel_id.as_str(), command.channel_name.as_str()),
            ("G8PSS9T3V", "foobar")
        );
        assert_eq!(command.team_domain, "testteamnow");
        assert!(
            command
                .response_url
                .starts_with("https://hooks.slack.com/commands/T1DC2JH3J/")
        );
        let without_user = String::from_utf8_lossy(SLASH).replace("user_id=U2CERLKJA&", "");
        assert_eq!(
            parse_slash_command(without_user.as_bytes()),
            Err(ParseError::Missing("user_id"))
        );
    }

    #[test]
    fn slacks_app_mention_and_url_verification_are_read_from_their_json() {
        let Ok(Delivery::Mention(mention)) = parse_event(MENTION) else {
            panic!("a mention");
        };
        assert_eq!(mention.event_id, "Ev123ABC456");
        assert_eq!(mention.user, "U061F7AUR");
        assert_eq!(
            mention.text,
            "<@U0LAN0Z89> is it everything a river should be?"
        );
        assert_eq!(
            (mention.channel.as_str(), mention.ts.as_str()),
            ("C123ABC456", "1515449522.000016")
        );
        assert_eq!((mention.thread_ts, mention.bot_id), (None, None));
        assert_eq!(
            parse_event(VERIFY),
            Ok(Delivery::UrlVerification {
                challenge: "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P".into()
            })
        );
    }

    #[test]
    fn other_events_are_taken_and_broken_bodies_refused() {
        let reaction =
            br#"{"type":"event_callback","event_id":"Ev1","event":{"type":"reaction_added"}}"#;
        assert_eq!(
            parse_event(reaction),
            Ok(Delivery::Other {
                kind: "reaction_added".into()
            })
        );
        assert!(matches!(
            parse_event(b"{not json"),
            Err(ParseError::Json(_))
        ));
        assert!(matches!(parse_event(&[0xff]), Err(ParseError::Json(_))));
        let no_id = String::from_utf8_lossy(MENTION).replace("\"Ev123ABC456\"", "\"\"");
        assert_eq!(
            parse_event(no_id.as_bytes()),
            Err(ParseError::Missing("event_id"))
        );
        let no_challenge = br#"{"type":"url_verification","token":"x"}"#;
        assert_eq!(
            parse_event(no_challenge),
            Err(ParseError::Missing("challenge"))
        );
    }
}
