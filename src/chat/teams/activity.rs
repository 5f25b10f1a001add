//! The request: a Bot Framework activity, its fields checked, and the command read from its
//! HTML-flavoured text after the bot's mention.

use super::*;

/// The longest `text` accepted: a Teams message is at most about 28 KB, HTML included.
pub const MAX_TEXT_BYTES: usize = MAX_MESSAGE_BYTES;

/// The longest value of any other field used (ids, names, the timestamp).
pub const MAX_FIELD_BYTES: usize = 1024;

/// The longest parser message passed on in a [`ParseError`].
pub const MAX_REASON: usize = 200;

/// Why a verified body is not a usable activity. Every message is short and safe to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A Content-Type other than JSON.
    #[error("the Content-Type must be application/json, not {0}")]
    ContentType(String),
    /// Not JSON, or not an object.
    #[error("the body is not a Teams activity: {0}")]
    Json(String),
    /// No `id` to tell one message from another.
    #[error("the activity has no id")]
    NoId,
    /// No `from.aadObjectId` or `from.id`: nobody to run the job for.
    #[error("the activity has no sender (from.id)")]
    NoSender,
    /// `timestamp` is not an ISO 8601 time.
    #[error("timestamp is not an ISO 8601 date and time")]
    Timestamp,
    /// A field is longer than Teams makes it.
    #[error("{field} is too long: at most {max} bytes")]
    TooLong {
        /// The field, dotted (`from.name`).
        field: &'static str,
        /// Its limit in bytes.
        max: usize,
    },
}

/// Checks the Content-Type of a verified request: JSON, or none (the protocol notes have seen
/// Teams send only `Authorization`, so its absence is tolerated).
///
/// # Errors
///
/// Any other media type.
pub fn check_content_type(content_type: Option<&str>) -> Result<(), ParseError> {
    let Some(content_type) = content_type else {
        return Ok(());
    };
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if media == "application/json" {
        Ok(())
    } else {
        Err(ParseError::ContentType(
            crate::domain::text::truncate_runes(if media.is_empty() { "none" } else { &media }, 60),
        ))
    }
}

/// The parts of a Bot Framework activity chatrun uses. Everything is optional and unknown
/// fields are ignored: Teams' payloads differ between years and clients.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Activity {
    pub id: Option<String>,
    pub timestamp: Option<String>,
    pub text: Option<String>,
    pub from: Option<Account>,
    pub conversation: Option<Conversation>,
    pub channel_data: Option<ChannelData>,
    pub entities: Option<Vec<Entity>>,
}

/// An `entities[]` item; only mentions matter here.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Entity {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub mentioned: Option<Account>,
    pub text: Option<String>,
}

/// `from`: who wrote the message.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Account {
    pub id: Option<String>,
    pub name: Option<String>,
    pub aad_object_id: Option<String>,
}

/// `conversation`: the channel thread.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Conversation {
    pub id: Option<String>,
}

/// `channelData`: team, channel and tenant.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ChannelData {
    pub teams_channel_id: Option<String>,
    pub teams_team_id: Option<String>,
    pub channel: Option<Named>,
    pub team: Option<Named>,
}

/// An `{id, name}` object.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Named {
    pub id: Option<String>,
    pub name: Option<String>,
}

/// Parses a verified body; see [`Activity::check`] for what a run needs of it.
///
/// # Errors
///
/// The body is not a JSON activity with an id, or nests deeper than
/// [`crate::chat::MAX_JSON_DEPTH`].
pub fn parse_activity(body: &[u8]) -> Result<Activity, ParseError> {
    if let Some(problem) = crate::chat::json_body_problem(body) {
        return Err(ParseError::Json(problem));
    }
    let activity: Activity = serde_json::from_slice(body).map_err(|err| {
        ParseError::Json(crate::domain::text::truncate_runes(
            &err.to_string(),
            MAX_REASON,
        ))
    })?;
    if activity.id.as_deref().is_none_or(|id| id.trim().is_empty()) {
        return Err(ParseError::NoId);
    }
    Ok(activity)
}

impl Activity {
    /// Checks what a run needs, once the signature matched: a sender, and no field used
    /// longer than Teams makes it (`text` at most [`MAX_TEXT_BYTES`], the others
    /// [`MAX_FIELD_BYTES`]).
    ///
    /// # Errors
    ///
    /// The first field that is missing or too long.
    pub fn check(&self) -> Result<(), ParseError> {
        if self.text.as_ref().is_some_and(|t| t.len() > MAX_TEXT_BYTES) {
            return Err(ParseError::TooLong {
                field: "text",
                max: MAX_TEXT_BYTES,
            });
        }
        let from = self.from.as_ref();
        let conversation = self.conversation.as_ref();
        let data = self.channel_data.as_ref();
        let named =
            |n: Option<&Named>| (n.and_then(|n| n.id.clone()), n.and_then(|n| n.name.clone()));
        let (channel_id, channel_name) = named(data.and_then(|d| d.channel.as_ref()));
        let (team_id, team_name) = named(data.and_then(|d| d.team.as_ref()));
        let fields: [(&'static str, Option<&String>); 13] = [
            ("id", self.id.as_ref()),
            ("timestamp", self.timestamp.as_ref()),
            ("from.id", from.and_then(|f| f.id.as_ref())),
            ("from.name", from.and_then(|f| f.name.as_ref())),
            (
                "from.aadObjectId",
                from.and_then(|f| f.aad_object_id.as_ref()),
            ),
            ("conversation.id", conversation.and_then(|c| c.id.as_ref())),
            (
                "channelData.teamsChannelId",
                data.and_then(|d| d.teams_channel_id.as_ref()),
            ),
            (
                "channelData.teamsTeamId",
                data.and_then(|d| d.teams_team_id.as_ref()),
            ),
            ("channelData.channel.id", channel_id.as_ref()),
            ("channelData.channel.name", channel_name.as_ref()),
            ("channelData.team.id", team_id.as_ref()),
            ("channelData.team.name", team_name.as_ref()),
            ("entities[].text", self.own_mention_entity_text()),
        ];
        if let Some((field, _)) = fields
            .iter()
            .find(|(_, value)| value.is_some_and(|v| v.len() > MAX_FIELD_BYTES))
        {
            return Err(ParseError::TooLong {
                field,
                max: MAX_FIELD_BYTES,
            });
        }
        if self.user_id().trim().is_empty() {
            return Err(ParseError::NoSender);
        }
        Ok(())
    }

    /// When the message was sent, in ms since the epoch: `timestamp`, UTC ISO 8601 as the
    /// channel sets it (`2024-05-20T16:00:00.123Z`; an offset such as `+02:00` is applied).
    /// `None` when the activity has none: the Bot Framework schema makes it optional, and the
    /// body is signed, so a captured request cannot have had it removed.
    ///
    /// # Errors
    ///
    /// A `timestamp` that is not such a time.
    pub fn timestamp_ms(&self) -> Result<Option<i64>, ParseError> {
        let Some(text) = self.timestamp.as_deref().map(str::trim) else {
            return Ok(None);
        };
        // humantime reads UTC (`Z` or nothing); an explicit offset is applied by hand.
        let split = text
            .len()
            .checked_sub(6)
            .and_then(|i| Some((text.get(..i)?, text.get(i..)?)));
        let (time, offset_ms) = match split {
            Some((time, offset))
                if offset.starts_with(['+', '-']) && offset.as_bytes().get(3) == Some(&b':') =>
            {
                let number = |range: std::ops::Range<usize>| -> Result<i64, ParseError> {
                    offset
                        .get(range)
                        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
                        .and_then(|n| n.parse().ok())
                        .ok_or(ParseError::Timestamp)
                };
                let hours = number(1..3)?;
                let minutes = number(4..6)?;
                let sign = if offset.starts_with('-') { -1 } else { 1 };
                (time, sign * (hours * 60 + minutes) * 60_000)
            }
            _ => (text, 0),
        };
        let at = humantime::parse_rfc3339_weak(time).map_err(|_| ParseError::Timestamp)?;
        let ms = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| ParseError::Timestamp)?
            .as_millis();
        Ok(Some(
            i64::try_from(ms).map_err(|_| ParseError::Timestamp)? - offset_ms,
        ))
    }

    /// The longest `text` of a mention entity (what [`Activity::own_mention`] may return).
    fn own_mention_entity_text(&self) -> Option<&String> {
        self.entities
            .as_deref()?
            .iter()
            .filter_map(|e| e.text.as_ref())
            .max_by_key(|t| t.len())
    }

    /// The message id (checked present by [`parse_activity`]).
    pub fn message_id(&self) -> &str {
        self.id.as_deref().unwrap_or_default()
    }

    /// Who: the Entra object id (stable), else the Teams user id.
    pub fn user_id(&self) -> String {
        let from = self.from.as_ref();
        from.and_then(|f| f.aad_object_id.clone())
            .or_else(|| from.and_then(|f| f.id.clone()))
            .unwrap_or_default()
    }

    /// The sender's display name.
    pub fn user_name(&self) -> String {
        self.from
            .as_ref()
            .and_then(|f| f.name.clone())
            .unwrap_or_default()
    }

    /// The team's id and, when Teams sent it, name.
    pub fn team(&self) -> (String, String) {
        let data = self.channel_data.as_ref();
        let team = data.and_then(|d| d.team.as_ref());
        let id = team
            .and_then(|t| t.id.clone())
            .or_else(|| data.and_then(|d| d.teams_team_id.clone()))
            .unwrap_or_default();
        (id, team.and_then(|t| t.name.clone()).unwrap_or_default())
    }

    /// The channel's id and its name (the id when Teams sent no name).
    pub fn channel(&self) -> (String, String) {
        let data = self.channel_data.as_ref();
        let channel = data.and_then(|d| d.channel.as_ref());
        let id = channel
            .and_then(|c| c.id.clone())
            .or_else(|| data.and_then(|d| d.teams_channel_id.clone()))
            .unwrap_or_default();
        let name = channel
            .and_then(|c| c.name.clone())
            .unwrap_or_else(|| id.clone());
        (id, name)
    }

    /// The text of the webhook's own mention, when the activity says which one it is: the
    /// mention entity of a `28:` (bot or webhook) id; people have `29:` ids.
    pub fn own_mention(&self) -> Option<String> {
        self.entities.as_deref()?.iter().find_map(|entity| {
            let id = entity.mentioned.as_ref()?.id.as_deref()?;
            (entity.kind.as_deref() == Some("mention") && id.starts_with("28:"))
                .then(|| clean(entity.text.as_deref().unwrap_or_default()))
        })
    }

    /// The thread's root message: `conversation.id` after `;messageid=`.
    pub fn thread_root(&self) -> Option<String> {
        let id = self.conversation.as_ref()?.id.as_deref()?;
        let (_, root) = id.split_once(";messageid=")?;
        (!root.is_empty()).then(|| root.to_string())
    }
}

/// The command in a message's `text`: what follows the webhook's own `<at>…</at>` mention (the
/// one whose text is `mention_name`, else the first), or what precedes it when nothing follows
/// (`build web @BuildBot`); other people's mentions are not words of the command and go, other
/// tags become spaces, entities are decoded once, whitespace collapsed. Returns the command and
/// the webhook's mention's text.
pub fn command_text(text: &str, mention_name: Option<&str>) -> (String, String) {
    let mentions = find_mentions(text);
    let chosen = mentions
        .iter()
        .find(|m| mention_name.is_some_and(|name| clean(m.inner).eq_ignore_ascii_case(name.trim())))
        .or(mentions.first());
    match chosen {
        Some(m) => {
            let after = clean(&without_mentions(&text[m.end..]));
            let command = if after.is_empty() {
                clean(&without_mentions(&text[..m.start]))
            } else {
                after
            };
            (command, clean(m.inner))
        }
        None => (clean(text), String::new()),
    }
}

/// `text` with every `<at>…</at>` element replaced by a space.
fn without_mentions(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    for m in find_mentions(text) {
        out.push_str(&text[from..m.start]);
        out.push(' ');
        from = m.end;
    }
    out.push_str(&text[from..]);
    out
}

pub(super) struct Mention<'a> {
    start: usize,
    end: usize,
    inner: &'a str,
}

/// Every `<at …>…</at>` element, tag names case-insensitive.
pub(super) fn find_mentions(text: &str) -> Vec<Mention<'_>> {
    let lower = text.to_ascii_lowercase();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(offset) = lower[from..].find("<at") {
        let start = from + offset;
        let after = lower.as_bytes().get(start + 3).copied();
        if !matches!(after, Some(b'>') | Some(b' ') | Some(b'\t') | Some(b'\n')) {
            from = start + 3;
            continue;
        }
        let Some(open_end) = lower[start..].find('>').map(|i| start + i + 1) else {
            break;
        };
        let Some(close) = lower[open_end..].find("</at>").map(|i| open_end + i) else {
            break;
        };
        found.push(Mention {
            start,
            end: close + "</at>".len(),
            inner: &text[open_end..close],
        });
        from = close + "</at>".len();
    }
    found
}

/// Tags to spaces, entities decoded once, non-breaking spaces to spaces, whitespace collapsed.
pub(super) fn clean(html: &str) -> String {
    let mut text = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        text.push_str(&rest[..open]);
        match rest[open..].find('>') {
            Some(close) => {
                text.push(' ');
                rest = &rest[open + close + 1..];
            }
            None => {
                text.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    text.push_str(rest);
    decode_entities(&text)
        .replace('\u{a0}', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Decodes `&nbsp;`, `&amp;`, `&lt;`, `&gt;`, `&quot;`, `&apos;` and numeric references, once;
/// anything else is left as it is.
pub(super) fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let decoded = rest.find(';').filter(|&end| end <= 10).and_then(|end| {
            let name = &rest[1..end];
            let c = match name {
                "nbsp" => Some('\u{a0}'),
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => name
                    .strip_prefix("#x")
                    .or_else(|| name.strip_prefix("#X"))
                    .map(|hex| u32::from_str_radix(hex, 16))
                    .or_else(|| name.strip_prefix('#').map(str::parse::<u32>))
                    .and_then(Result::ok)
                    .and_then(char::from_u32),
            }?;
            Some((c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}
