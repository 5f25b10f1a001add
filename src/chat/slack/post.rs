//! The bodies Slack's Web API takes and gives: a stored `chat.postMessage` delivery, the same
//! marked with its delivery's key as it is sent, and the answers read back. Pure.

use serde::{Deserialize, Serialize};

use super::blocks::Message;
use super::*;
use crate::chat::Posted;
use crate::chat::transport::DeliveryError;
use crate::domain::{Address, Delivery};

/// The message metadata's `event_type` that marks a post chatrun made for one outbox
/// delivery, so an attempt whose answer was lost can be found before posting again.
pub const DELIVERY_EVENT: &str = "chatrun_delivery";

/// A stored field, never sent: the post is the anchor its run's replies thread under.
const ANCHOR_FIELD: &str = "chatrun_anchor";

/// A stored field, never sent: once the post is made, the anchor is updated to this
/// (`chat.update`'s body).
const UPDATE_FIELD: &str = "chatrun_update";

#[derive(Serialize)]
struct PostMessage<'a> {
    channel: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    thread_ts: Option<&'a str>,
    text: &'a str,
    blocks: &'a [blocks::Block],
    unfurl_links: bool,
    unfurl_media: bool,
    #[serde(rename = "chatrun_anchor", skip_serializing_if = "std::ops::Not::not")]
    anchor: bool,
    #[serde(rename = "chatrun_update", skip_serializing_if = "Option::is_none")]
    update: Option<UpdateMessage<'a>>,
}

/// A `chat.update` body: message `ts` of `channel` says this now.
#[derive(Serialize)]
struct UpdateMessage<'a> {
    channel: &'a str,
    ts: &'a str,
    text: &'a str,
    blocks: &'a [blocks::Block],
}

/// Where a post goes: Slack's target, ordered with the other replies of its thread (`root`:
/// the thread's `ts`, or for a slash command whose anchor is not posted yet, its trigger's id,
/// as its acknowledgement was).
pub fn address(channel: &str, root: &str) -> Address {
    Address {
        target: TARGET_POST.into(),
        thread: format!("slack:{channel}/{root}"),
    }
}

/// A `chat.postMessage` delivery of `message` to `channel`, in the thread `thread_ts` (or at
/// the top of the channel), addressed `address`; `anchor`: its run's later replies thread
/// under it.
pub fn delivery(
    address: Address,
    channel: &str,
    thread_ts: Option<&str>,
    message: &Message,
    anchor: bool,
) -> Delivery {
    delivery_then_update(address, channel, thread_ts, message, anchor, None)
}

/// As [`delivery`], and once it is posted the message `(ts, update)` of the same channel is
/// updated to say `update` (a slash command's anchor, when its result is posted).
pub fn delivery_then_update(
    address: Address,
    channel: &str,
    thread_ts: Option<&str>,
    message: &Message,
    anchor: bool,
    then: Option<(&str, &Message)>,
) -> Delivery {
    Delivery {
        target: address.target,
        body: serde_json::to_string(&PostMessage {
            channel,
            thread_ts,
            text: &message.text,
            blocks: &message.blocks,
            unfurl_links: false,
            unfurl_media: false,
            anchor,
            update: then.map(|(ts, update)| UpdateMessage {
                channel,
                ts,
                text: &update.text,
                blocks: &update.blocks,
            }),
        })
        .expect("a message serializes"),
        thread: address.thread,
    }
}

/// A stored delivery as it is sent.
#[derive(Debug)]
pub struct Outgoing {
    /// The `chat.postMessage` body, its metadata carrying the delivery's key.
    pub body: String,
    /// The same without blocks, when it has some: what is posted when Slack refuses them.
    pub without_blocks: Option<String>,
    /// The post is its run's anchor.
    pub anchor: bool,
    /// The `chat.update` to make once it is posted.
    pub update: Option<String>,
}

/// `body` (a stored delivery) as it is sent: the anchor mark taken out, the delivery's `key`
/// put in the message's metadata. `None` when `body` is not a JSON object.
pub fn outgoing(body: &str, key: &str) -> Option<Outgoing> {
    let mut post: serde_json::Value = serde_json::from_str(body).ok()?;
    let map = post.as_object_mut()?;
    let anchor = map
        .remove(ANCHOR_FIELD)
        .is_some_and(|v| v.as_bool() == Some(true));
    let update = map
        .remove(UPDATE_FIELD)
        .filter(serde_json::Value::is_object)
        .map(|update| update.to_string());
    map.insert(
        "metadata".into(),
        serde_json::json!({ "event_type": DELIVERY_EVENT, "event_payload": { "key": key } }),
    );
    let body = serde_json::to_string(&post).ok()?;
    let map = post.as_object_mut()?;
    let without_blocks = map
        .remove("blocks")
        .is_some_and(|b| b.as_array().is_some_and(|b| !b.is_empty()))
        .then(|| serde_json::to_string(&post).ok())
        .flatten();
    Some(Outgoing {
        body,
        without_blocks,
        anchor,
        update,
    })
}

/// Where a stored delivery was posted: its channel, its thread, whether it is an anchor.
#[derive(Debug, PartialEq, Eq)]
pub struct Place {
    pub channel: String,
    pub thread_ts: Option<String>,
    pub anchor: bool,
}

/// The [`Place`] of a stored delivery; `None` when it names no channel.
pub fn place(body: &str) -> Option<Place> {
    let post: serde_json::Value = serde_json::from_str(body).ok()?;
    let text = |field: &str| post.get(field).and_then(serde_json::Value::as_str);
    Some(Place {
        channel: text("channel").filter(|c| !c.is_empty())?.to_string(),
        thread_ts: text("thread_ts").map(String::from),
        anchor: post.get(ANCHOR_FIELD).and_then(serde_json::Value::as_bool) == Some(true),
    })
}

/// A time (ms since the epoch) as Slack writes message times: seconds, a dot, six digits.
pub fn slack_ts(ms: i64) -> String {
    let ms = ms.max(0);
    format!("{}.{:06}", ms / 1000, (ms % 1000) * 1000)
}

/// What the Web API answered, as far as chatrun reads it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Answer {
    pub ok: bool,
    pub error: Option<String>,
    /// The posted message's time, its id in the channel (`chat.postMessage`).
    pub ts: Option<String>,
    /// A page of messages (`conversations.history`, `conversations.replies`).
    pub messages: Vec<Listed>,
    pub response_metadata: Option<ResponseMetadata>,
}

/// A message of a page, as far as the search reads it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Listed {
    pub ts: String,
    pub metadata: Option<Metadata>,
}

/// A message's metadata.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Metadata {
    pub event_type: String,
    pub event_payload: Option<serde_json::Value>,
}

/// The cursor to the next page.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ResponseMetadata {
    pub next_cursor: String,
}

impl Answer {
    /// The `ts` of the listed message whose metadata carries delivery `key`.
    pub fn ts_of(&self, key: &str) -> Option<&str> {
        self.messages
            .iter()
            .find(|m| {
                m.metadata.as_ref().is_some_and(|meta| {
                    meta.event_type == DELIVERY_EVENT
                        && meta
                            .event_payload
                            .as_ref()
                            .and_then(|p| p.get("key"))
                            .and_then(serde_json::Value::as_str)
                            == Some(key)
                })
            })
            .map(|m| m.ts.as_str())
    }

    /// The next page's cursor, when there is one.
    pub fn next_cursor(&self) -> Option<&str> {
        self.response_metadata
            .as_ref()
            .map(|m| m.next_cursor.as_str())
            .filter(|c| !c.is_empty())
    }
}

/// Reads an answer of the Web API.
///
/// # Errors
///
/// It is not JSON of an answer.
pub fn read_answer(body: &[u8]) -> Result<Answer, serde_json::Error> {
    serde_json::from_slice(body)
}

/// Whether Slack refused a message for its blocks (the text alone would be taken).
pub fn refused_for_its_blocks(error: &str) -> bool {
    matches!(
        error,
        "invalid_blocks" | "invalid_blocks_format" | "msg_blocks_too_long"
    )
}

/// What a `chat.postMessage` answer means for the delivery: posted (with its `ts` as its run's
/// thread root, for an anchor), worth trying again, or refused for good.
///
/// # Errors
///
/// Slack's error, retryable when it says to try later (`ratelimited`, its own failures; those
/// after which "some aspect of the operation" may have succeeded are unsure), else permanent
/// (`channel_not_found`, `not_in_channel`, `invalid_auth`, …), with a hint where one helps.
pub fn posted(answer: Answer, anchor: bool) -> Result<Posted, DeliveryError> {
    if answer.ok {
        return Ok(Posted {
            thread_root: anchor.then_some(answer.ts).flatten(),
        });
    }
    let error = answer.error.unwrap_or_else(|| "no error named".into());
    let message = format!("chat.postMessage: {error}");
    match error.as_str() {
        // `rate_limited`: too many messages posted lately; `request_timeout`: the body did not
        // arrive whole.
        "ratelimited"
        | "rate_limited"
        | "service_unavailable"
        | "request_timeout"
        | "team_added_to_org" => Err(DeliveryError::retryable(message)),
        "internal_error" | "fatal_error" => Err(DeliveryError::Retryable {
            message: format!("{message} (it may have been posted)"),
            after: None,
            unsure: true,
        }),
        "not_in_channel" | "channel_not_found" => Err(DeliveryError::permanent(format!(
            "{message}: invite the app to the channel (/invite @app), or give it chat:write.public"
        ))),
        "invalid_auth" | "not_authed" | "token_revoked" | "account_inactive" => Err(
            DeliveryError::permanent(format!("{message}: check slack.bot_token")),
        ),
        _ => Err(DeliveryError::permanent(message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Message {
        blocks::text_message("hi & <!channel>")
    }

    #[test]
    fn a_stored_anchor_is_sent_with_its_key_in_the_metadata_and_without_the_mark() {
        let stored = delivery(address("C1", "trig"), "C1", None, &message(), true);
        assert_eq!(stored.thread, "slack:C1/trig");
        assert_eq!(
            place(&stored.body),
            Some(Place {
                channel: "C1".into(),
                thread_ts: None,
                anchor: true
            })
        );
        let out = outgoing(&stored.body, "chatrun-7-12-1700000000000").unwrap();
        assert!(out.anchor);
        let sent: serde_json::Value = serde_json::from_str(&out.body).unwrap();
        assert!(sent.get(ANCHOR_FIELD).is_none());
        assert_eq!(sent["metadata"]["event_type"], DELIVERY_EVENT);
        assert_eq!(
            sent["metadata"]["event_payload"]["key"],
            "chatrun-7-12-1700000000000"
        );
        assert_eq!(sent["unfurl_links"], false);
        let plain: serde_json::Value = serde_json::from_str(&out.without_blocks.unwrap()).unwrap();
        assert!(plain.get("blocks").is_none());
        assert_eq!(plain["text"], sent["text"]);

        let reply = delivery(
            address("C1", "171.2"),
            "C1",
            Some("171.2"),
            &message(),
            false,
        );
        let out = outgoing(&reply.body, "k").unwrap();
        assert!(!out.anchor);
        assert_eq!(
            place(&reply.body).unwrap().thread_ts.as_deref(),
            Some("171.2")
        );
        assert!(outgoing("[1]", "k").is_none());
    }

    #[test]
    fn slack_times_have_six_decimals() {
        assert_eq!(slack_ts(1_700_000_000_123), "1700000000.123000");
        assert_eq!(slack_ts(-5), "0.000000");
    }

    #[test]
    fn answers_are_classed_as_slack_means_them() {
        let ok =
            read_answer(br#"{"ok":true,"channel":"C1","ts":"1503435956.000247","message":{}}"#)
                .unwrap();
        assert_eq!(
            posted(ok, true).unwrap().thread_root.as_deref(),
            Some("1503435956.000247")
        );
        let ok = read_answer(br#"{"ok":true,"ts":"1.2"}"#).unwrap();
        assert_eq!(posted(ok, false).unwrap(), Posted::default());
        let failed = |error: &str| {
            posted(
                read_answer(format!(r#"{{"ok":false,"error":"{error}"}}"#).as_bytes()).unwrap(),
                false,
            )
            .unwrap_err()
        };
        assert!(matches!(
            failed("ratelimited"),
            DeliveryError::Retryable { unsure: false, .. }
        ));
        assert!(matches!(
            failed("request_timeout"),
            DeliveryError::Retryable { unsure: false, .. }
        ));
        assert!(matches!(
            failed("internal_error"),
            DeliveryError::Retryable { unsure: true, .. }
        ));
        let err = failed("not_in_channel");
        assert!(matches!(err, DeliveryError::Permanent(_)));
        assert!(err.to_string().contains("invite the app"), "{err}");
        assert!(refused_for_its_blocks("msg_blocks_too_long"));
        assert!(!refused_for_its_blocks("not_in_channel"));
    }

    #[test]
    fn a_page_of_messages_is_searched_for_the_key_in_their_metadata() {
        let page = br#"{"ok":true,"messages":[
            {"type":"message","ts":"1.1","text":"x"},
            {"type":"message","ts":"1.2","metadata":{"event_type":"other","event_payload":{"key":"k"}}},
            {"type":"message","ts":"1.3","metadata":{"event_type":"chatrun_delivery","event_payload":{"key":"k"}}}],
            "has_more":true,"response_metadata":{"next_cursor":"bmV4dA=="}}"#;
        let answer = read_answer(page).unwrap();
        assert_eq!(answer.ts_of("k"), Some("1.3"));
        assert_eq!(answer.ts_of("k2"), None);
        assert_eq!(answer.next_cursor(), Some("bmV4dA=="));
        let last =
            read_answer(br#"{"ok":true,"messages":[],"response_metadata":{"next_cursor":""}}"#)
                .unwrap();
        assert_eq!(last.next_cursor(), None);
    }
}
