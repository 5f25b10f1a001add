//! Microsoft Teams: the outgoing-webhook request (an HMAC-signed Bot Framework activity), the
//! command in its HTML-flavoured text, and the replies (a text message in the HTTP response,
//! the result as an Adaptive Card posted to a Workflows URL). See `shared/protocols/teams.md`.
//! Pure: no I/O here.
//!
//! Cards are typed values serialized by serde, never text templates: a quote or a backslash in
//! a branch name cannot break the JSON.

use askama::Template;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::domain::Delivery;
use crate::domain::{RunRow, RunStatus, StepRow, StepStatus, TestFailureRow};
use crate::render::{self, Detail, ResultRow, ResultView};

/// Delivery targets `teams:<webhook name>`: POST to that webhook's `follow_up_url`.
pub const TARGET_PREFIX: &str = "teams:";

/// Teams' message size limit; cards are fitted under it, with room to spare.
pub const MAX_MESSAGE_BYTES: usize = 28 * 1024;

/// The Adaptive Card version Workflows and every Teams client accept.
pub const CARD_VERSION: &str = "1.4";

/// Why a request is not authentically from Teams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("no Authorization header")]
    Missing,
    /// The header is not `HMAC <base64 of 32 bytes>`.
    #[error("the Authorization header is not `HMAC <base64>`")]
    Malformed,
    /// An empty body is never signed by Teams.
    #[error("empty body")]
    EmptyBody,
    /// No configured secret signed this body.
    #[error("the signature matches no configured webhook")]
    Mismatch,
}

/// Which of `keys` signed `body`, per `Authorization: HMAC <base64(HMAC-SHA256(key, body))>`.
/// The scheme is matched case-insensitively, the MAC must be 32 bytes, and every key is tried
/// (constant-time compares, no early exit) over the raw bytes, before anything is parsed.
///
/// # Errors
///
/// The header is missing or malformed, the body is empty, or no key matches.
pub fn verify(
    authorization: Option<&str>,
    body: &[u8],
    keys: &[&[u8]],
) -> Result<usize, AuthError> {
    let header = authorization.ok_or(AuthError::Missing)?.trim();
    let (scheme, value) = header.split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("HMAC") {
        return Err(AuthError::Malformed);
    }
    let given = STANDARD
        .decode(value.trim())
        .map_err(|_| AuthError::Malformed)?;
    if given.len() != 32 {
        return Err(AuthError::Malformed);
    }
    if body.is_empty() {
        return Err(AuthError::EmptyBody);
    }
    let mut found = None;
    for (index, key) in keys.iter().enumerate() {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
        mac.update(body);
        if mac.verify_slice(&given).is_ok() && found.is_none() {
            found = Some(index);
        }
    }
    found.ok_or(AuthError::Mismatch)
}

/// The `Authorization` value Teams would send with `body`: `HMAC <base64 MAC>`.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("HMAC {}", STANDARD.encode(mac.finalize().into_bytes()))
}

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
/// [`super::MAX_JSON_DEPTH`].
pub fn parse_activity(body: &[u8]) -> Result<Activity, ParseError> {
    if let Some(problem) = super::json_body_problem(body) {
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

/// The command in a message's `text`: the webhook's own `<at>…</at>` mention removed (the one
/// whose text is `mention_name`, else the first), other tags replaced by spaces, entities
/// decoded once, whitespace collapsed. Returns the command and the removed mention's text.
pub fn command_text(text: &str, mention_name: Option<&str>) -> (String, String) {
    let mentions = find_mentions(text);
    let chosen = mentions
        .iter()
        .find(|m| mention_name.is_some_and(|name| clean(m.inner).eq_ignore_ascii_case(name.trim())))
        .or(mentions.first());
    let (rest, mention) = match chosen {
        Some(m) => (
            format!("{} {}", &text[..m.start], &text[m.end..]),
            clean(m.inner),
        ),
        None => (text.to_string(), String::new()),
    };
    (clean(&rest), mention)
}

struct Mention<'a> {
    start: usize,
    end: usize,
    inner: &'a str,
}

/// Every `<at …>…</at>` element, tag names case-insensitive.
fn find_mentions(text: &str) -> Vec<Mention<'_>> {
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
fn clean(html: &str) -> String {
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
fn decode_entities(text: &str) -> String {
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

#[derive(Serialize)]
struct TextReply<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

/// The HTTP response body: a text message, threaded by Teams under the trigger.
pub fn render_response(text: &str) -> String {
    serde_json::to_string(&TextReply {
        kind: "message",
        text,
    })
    .expect("a struct of strings serializes")
}

/// The acknowledgement of a queued run.
#[derive(Template)]
#[template(path = "chat/teams/ack.html")]
struct AckText<'a> {
    facts: &'a render::AckFacts<'a>,
    /// The expected wait, worded.
    wait: Option<String>,
}

/// The acknowledgement text of a queued run.
pub fn render_ack(facts: &render::AckFacts) -> String {
    AckText {
        facts,
        wait: facts.wait.map(render::duration),
    }
    .render()
    .expect("the ack template renders")
    .trim()
    .to_string()
}

/// Why a request runs nothing (bad arguments, a denial).
#[derive(Template)]
#[template(path = "chat/teams/refused.html")]
struct Refusal<'a> {
    job: &'a str,
    reason: &'a str,
}

/// The reply to a request that runs nothing, saying why.
pub fn render_refusal(job: &str, reason: &str) -> String {
    Refusal { job, reason }
        .render()
        .expect("the refusal template renders")
        .trim()
        .to_string()
}

/// The list of jobs, for `help` or after an unknown job name.
#[derive(Template)]
#[template(path = "chat/teams/jobs.html")]
struct JobsText<'a> {
    unknown: Option<&'a str>,
    suggestion: Option<&'a str>,
    jobs: Vec<(&'a str, &'a str)>,
    mention: &'a str,
}

/// The list of jobs, for `help` or after an unknown job name; `mention` is how the user
/// addressed the webhook.
pub fn render_jobs<'a>(
    unknown: Option<&str>,
    suggestion: Option<&str>,
    jobs: impl Iterator<Item = (&'a str, &'a str)>,
    mention: &str,
) -> String {
    JobsText {
        unknown,
        suggestion,
        jobs: jobs.collect(),
        mention,
    }
    .render()
    .expect("the jobs template renders")
    .trim()
    .to_string()
}

// --- Adaptive Card 1.4, as typed values -------------------------------------------------------

/// `{"type":"message","attachments":[…]}`: what a Workflows webhook takes.
#[derive(Debug, Serialize)]
pub struct Message {
    #[serde(rename = "type")]
    kind: &'static str,
    attachments: Vec<Attachment>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Attachment {
    content_type: &'static str,
    content_url: Option<String>,
    content: Card,
}

/// An Adaptive Card.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Card {
    #[serde(rename = "$schema")]
    schema: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    version: &'static str,
    fallback_text: String,
    body: Vec<Element>,
    actions: Vec<Action>,
}

/// A card body element.
#[derive(Debug, Serialize)]
#[serde(tag = "type")]
enum Element {
    TextBlock(TextBlock),
    FactSet { facts: Vec<Fact> },
    ColumnSet(ColumnSet),
    Container(Container),
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct TextBlock {
    text: String,
    wrap: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    weight: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    color: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_subtle: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    horizontal_alignment: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    spacing: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    separator: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    font_type: Option<&'static str>,
}

#[derive(Debug, Serialize)]
struct Fact {
    title: String,
    value: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ColumnSet {
    columns: Vec<Column>,
    #[serde(skip_serializing_if = "Option::is_none")]
    separator: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    spacing: Option<&'static str>,
}

#[derive(Debug, Serialize)]
struct Column {
    #[serde(rename = "type")]
    kind: &'static str,
    width: u32,
    items: Vec<Element>,
}

#[derive(Debug, Serialize)]
struct Container {
    style: &'static str,
    bleed: bool,
    items: Vec<Element>,
}

#[derive(Debug, Serialize)]
struct Action {
    #[serde(rename = "type")]
    kind: &'static str,
    title: String,
    url: String,
}

fn text(text: impl Into<String>) -> TextBlock {
    TextBlock {
        text: text.into(),
        wrap: true,
        ..TextBlock::default()
    }
}

/// Card colour and container style for a run's status.
fn run_colour(status: RunStatus) -> (&'static str, &'static str) {
    match status {
        RunStatus::Succeeded => ("Good", "good"),
        RunStatus::Failed => ("Attention", "attention"),
        RunStatus::TimedOut | RunStatus::Cancelled | RunStatus::Denied | RunStatus::Interrupted => {
            ("Warning", "warning")
        }
        RunStatus::Queued | RunStatus::Running => ("Default", "emphasis"),
    }
}

fn step_colour(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Succeeded => "Good",
        StepStatus::Failed | StepStatus::Error => "Attention",
        StepStatus::TimedOut | StepStatus::Cancelled | StepStatus::Interrupted => "Warning",
        StepStatus::Pending | StepStatus::Running | StepStatus::Skipped => "Default",
    }
}

/// A cell value: one line, at most `max` characters.
fn cell(value: &str, max: usize) -> String {
    let one_line = value.split_whitespace().collect::<Vec<_>>().join(" ");
    crate::domain::text::truncate_runes(&one_line, max)
}

/// Adaptive Card text is Markdown: user values are escaped so a branch name stays literal.
fn md(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(
            c,
            '\\' | '*' | '_' | '`' | '[' | ']' | '~' | '#' | '<' | '>'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn column(width: u32, block: TextBlock) -> Column {
    Column {
        kind: "Column",
        width,
        items: vec![Element::TextBlock(block)],
    }
}

/// One table row: step, (tests run, tests failed,) result or count, duration.
fn step_row(row: &ResultRow, with_tests: bool, link: &str) -> Element {
    let name = column(3, text(md(&cell(&row.name, 120))));
    let result = TextBlock {
        color: Some(step_colour(row.status)),
        is_subtle: (row.status == StepStatus::Skipped).then_some(true),
        ..text(cell(&row.result, 120))
    };
    let duration = column(
        1,
        TextBlock {
            horizontal_alignment: Some("Right"),
            ..text(row.duration.clone())
        },
    );
    let columns = if with_tests {
        let run = TextBlock {
            horizontal_alignment: Some("Right"),
            ..text(row.tests_run.map_or_else(|| "—".into(), |n| n.to_string()))
        };
        let failed = match (row.tests_failed, &row.report_problem) {
            (_, Some(problem)) => TextBlock {
                color: Some("Warning"),
                ..text(format!("{}, ⚠ {problem}", row.result))
            },
            (Some(0), None) if row.status == StepStatus::Succeeded => TextBlock {
                color: Some("Good"),
                ..text("0")
            },
            (Some(0), None) => TextBlock {
                color: Some(step_colour(row.status)),
                ..text(format!("0, {}", row.result))
            },
            (Some(failed), None) => TextBlock {
                color: Some("Attention"),
                ..text(format!("[{failed} failed]({link}#step-{})", row.position))
            },
            (None, None) => result,
        };
        vec![name, column(1, run), column(2, failed), duration]
    } else {
        vec![name, column(2, result), duration]
    };
    Element::ColumnSet(ColumnSet {
        columns,
        separator: None,
        spacing: Some("Small"),
    })
}

/// The result card of a finished run, as the Workflows message: the same information as the
/// Mattermost reply, fitted under [`MAX_MESSAGE_BYTES`] by leaving out detail (see [`Detail`]).
pub fn render_result(
    run: &RunRow,
    steps: &[StepRow],
    failures: &[TestFailureRow],
    link: &str,
    now: i64,
) -> Message {
    let mut last = None;
    for detail in Detail::levels(steps.len()) {
        let view = ResultView::new(steps, failures, now, detail);
        let message = result_message(run, &view, link, now);
        let size = serde_json::to_vec(&message).map_or(usize::MAX, |v| v.len());
        if size <= MAX_MESSAGE_BYTES - 1024 {
            return message;
        }
        last = Some(message);
    }
    last.expect("there is always at least one detail level")
}

fn result_message(run: &RunRow, view: &ResultView, link: &str, now: i64) -> Message {
    let (colour, style) = run_colour(run.status);
    let duration = render::run_duration(run, now).map_or_else(|| "—".into(), render::duration);
    let title = format!(
        "{} run #{} {}",
        cell(&run.job, 64),
        run.run_id,
        run.status.as_str()
    );
    let user = cell(&run.user_name, 100);

    let mut facts = vec![
        Fact {
            title: "Job".into(),
            value: md(&cell(&run.job, 64)),
        },
        Fact {
            title: "Run".into(),
            value: format!("#{}", run.run_id),
        },
        Fact {
            title: "Asked by".into(),
            value: md(&user),
        },
        Fact {
            title: "Duration".into(),
            value: duration.clone(),
        },
    ];
    if !run.args.is_empty() {
        facts.push(Fact {
            title: "Arguments".into(),
            value: md(&cell(&run.args, 300)),
        });
    }
    if let Some(error) = &run.error {
        facts.push(Fact {
            title: "Error".into(),
            value: md(&cell(error, 500)),
        });
    }

    let header = |label: &str, align: Option<&'static str>| TextBlock {
        weight: Some("Bolder"),
        horizontal_alignment: align,
        ..text(label)
    };
    let headers = if view.with_tests {
        vec![
            column(3, header("Component", None)),
            column(1, header("Tests", Some("Right"))),
            column(2, header("Failed", None)),
            column(1, header("Duration", Some("Right"))),
        ]
    } else {
        vec![
            column(3, header("Step", None)),
            column(2, header("Result", None)),
            column(1, header("Duration", Some("Right"))),
        ]
    };
    let mut body = vec![
        Element::Container(Container {
            style,
            bleed: true,
            items: vec![
                Element::TextBlock(TextBlock {
                    size: Some("Large"),
                    weight: Some("Bolder"),
                    color: Some(colour),
                    ..text(md(&title))
                }),
                Element::TextBlock(TextBlock {
                    is_subtle: Some(true),
                    spacing: Some("None"),
                    ..text(format!("asked by {} · {duration}", md(&user)))
                }),
            ],
        }),
        Element::FactSet { facts },
        Element::ColumnSet(ColumnSet {
            columns: headers,
            separator: Some(true),
            spacing: Some("Medium"),
        }),
    ];
    body.extend(view.rows.iter().map(|r| step_row(r, view.with_tests, link)));
    if view.omitted_rows > 0 {
        body.push(Element::TextBlock(TextBlock {
            is_subtle: Some(true),
            ..text(format!(
                "… and {} more steps on the run page",
                view.omitted_rows
            ))
        }));
    }
    for group in &view.groups {
        let heading = match &group.problem {
            Some(problem) => TextBlock {
                color: Some("Warning"),
                separator: Some(true),
                ..text(format!(
                    "⚠ **{}**: {}",
                    md(&group.step),
                    md(&cell(problem, 300))
                ))
            },
            None => TextBlock {
                separator: Some(true),
                ..text(format!("**{}**: {} failed", md(&group.step), group.count))
            },
        };
        body.push(Element::TextBlock(heading));
        let mut lines: Vec<String> = group
            .tests
            .iter()
            .map(|(suite, name, message)| {
                let mut line =
                    format!("- {} › **{}**", md(&cell(suite, 120)), md(&cell(name, 200)));
                if !message.is_empty() {
                    line.push_str(&format!(": {}", md(&cell(message, 200))));
                }
                line
            })
            .collect();
        if group.more > 0 {
            lines.push(format!("- … and {} more", group.more));
        }
        if !lines.is_empty() {
            body.push(Element::TextBlock(TextBlock {
                spacing: Some("Small"),
                ..text(lines.join("\n"))
            }));
        }
    }
    for tail in &view.tails {
        body.push(Element::TextBlock(TextBlock {
            separator: Some(true),
            ..text(format!("**{}**: {}", md(&tail.step), tail.heading()))
        }));
        body.push(Element::TextBlock(TextBlock {
            font_type: Some("Monospace"),
            size: Some("Small"),
            spacing: Some("Small"),
            ..text(
                tail.text
                    .lines()
                    .map(|line| md(&cell(line, 300)))
                    .collect::<Vec<_>>()
                    .join("\n\n"),
            )
        }));
    }
    if !view.left_out.is_empty() {
        body.push(Element::TextBlock(TextBlock {
            is_subtle: Some(true),
            ..text(format!(
                "Left out to fit in one message: {}.",
                view.left_out.join(", ")
            ))
        }));
    }

    Message {
        kind: "message",
        attachments: vec![Attachment {
            content_type: "application/vnd.microsoft.card.adaptive",
            content_url: None,
            content: Card {
                schema: "http://adaptivecards.io/schemas/adaptive-card.json",
                kind: "AdaptiveCard",
                version: CARD_VERSION,
                fallback_text: format!("{title} in {duration}, asked by {user}: {link}"),
                body,
                actions: vec![Action {
                    kind: "Action.OpenUrl",
                    title: format!("Open run #{}", run.run_id),
                    url: link.to_string(),
                }],
            },
        }],
    }
}

/// The delivery of a run's result card to webhook `hook`'s Workflows URL, ordered with the
/// other replies to the trigger's conversation (its channel and thread root, as Teams writes
/// `conversation.id`) through that webhook.
pub fn render_follow_up(
    hook: &str,
    run: &RunRow,
    steps: &[StepRow],
    failures: &[TestFailureRow],
    link: &str,
    now: i64,
) -> Delivery {
    let target = format!("{TARGET_PREFIX}{hook}");
    let thread = match &run.thread_root_id {
        Some(root) => format!("{target}|{};messageid={root}", run.channel_id),
        None => format!("{target}|{}", run.channel_id),
    };
    Delivery {
        target,
        body: serde_json::to_string(&render_result(run, steps, failures, link, now))
            .expect("a card of strings and numbers serializes"),
        thread,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RunId;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/teams");
    const SAMPLE_TOKEN: &str = "mEVCLCRJfhz1YDb7NUBtBS0y2u7unCXoab0DP21W1hA=";
    const WORKED_TOKEN: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const WORKED_BODY: &[u8] = br#"{"type":"message","text":"<at>BuildBot</at> ping"}"#;
    const WORKED_HEADER: &str = "HMAC N/BkNu/Z1Tf9XmccX2qigYsVUOslcs/rz7qK8IKChQ0=";

    fn key(token: &str) -> Vec<u8> {
        STANDARD.decode(token).unwrap()
    }

    fn sample(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
    }

    #[test]
    fn the_worked_example_verifies() {
        let key = key(WORKED_TOKEN);
        assert_eq!(verify(Some(WORKED_HEADER), WORKED_BODY, &[&key]), Ok(0));
        // The scheme is case-insensitive; surrounding spaces are tolerated.
        let lower = WORKED_HEADER.replacen("HMAC", "hmac", 1);
        assert_eq!(
            verify(Some(&format!(" {lower} ")), WORKED_BODY, &[&key]),
            Ok(0)
        );
    }

    #[test]
    fn the_worked_examples_negatives_fail() {
        let key = key(WORKED_TOKEN);
        // Each header was computed the wrong way (protocol notes §8.3).
        for mac in [
            "Xa3InxP24rV7F4nkdyoxy0eLB5vo/jyRb29cmWMbcaI=", // key not base64-decoded
            "VTYZw4k4mMCI1J7WGa3vkas9U/ziQHrogXPbmgAd7YY=", // body + trailing newline
            "FF6one3vDogm4UbgOxCl3zQHkfZphHtiem0z6mnqo0E=", // body re-serialised
            "CdFF3I0FD3Ms4gNQol/9TEIJI+n5pC2LdMLzXHYz/lA=", // body pretty-printed
        ] {
            let header = format!("HMAC {mac}");
            assert_eq!(
                verify(Some(&header), WORKED_BODY, &[&key]),
                Err(AuthError::Mismatch),
                "{mac}"
            );
        }
        // And the other way round: the right MAC over a changed body.
        let mut with_newline = WORKED_BODY.to_vec();
        with_newline.push(b'\n');
        assert_eq!(
            verify(Some(WORKED_HEADER), &with_newline, &[&key]),
            Err(AuthError::Mismatch)
        );
        // The token's text used as the key.
        assert_eq!(
            verify(Some(WORKED_HEADER), WORKED_BODY, &[WORKED_TOKEN.as_bytes()]),
            Err(AuthError::Mismatch)
        );
    }

    #[test]
    fn both_full_samples_verify_with_their_token_and_pick_the_right_webhook() {
        let other = key(WORKED_TOKEN);
        let right = key(SAMPLE_TOKEN);
        for (body, header) in [
            (
                "sample1.json",
                "HMAC cNZs4wJSlBrtQkMUNjd0P4kPpj4p3RXjDQ+4OWfhbSg=",
            ),
            (
                "sample2.json",
                "HMAC H3dbCL/+f56yJz634HjI5BFbYaPBBlj5OdS37GDtQro=",
            ),
        ] {
            let body = sample(body);
            assert_eq!(verify(Some(header), &body, &[&other, &right]), Ok(1));
            assert_eq!(
                verify(Some(header), &body, &[&other]),
                Err(AuthError::Mismatch)
            );
        }
    }

    #[test]
    fn signing_gives_the_worked_examples_header() {
        assert_eq!(sign(&key(WORKED_TOKEN), WORKED_BODY), WORKED_HEADER);
        let (text, _) = command_text(
            &format!("<at>x</at> {}", crate::domain::text::escape_text("a & <b>")),
            None,
        );
        assert_eq!(text, "a & <b>");
    }

    #[test]
    fn malformed_headers_and_empty_bodies_fail() {
        let key = key(WORKED_TOKEN);
        let mac = WORKED_HEADER.trim_start_matches("HMAC ");
        let cases = [
            (None, AuthError::Missing),
            (Some(format!("Bearer {mac}")), AuthError::Malformed),
            (Some(format!("HMAC{mac}")), AuthError::Malformed),
            (Some(format!("HMAC {}", &mac[..20])), AuthError::Malformed),
            (Some("HMAC not-base64!".to_string()), AuthError::Malformed),
            (
                Some(format!("HMAC {}", STANDARD.encode([0u8; 31]))),
                AuthError::Malformed,
            ),
        ];
        for (header, expected) in cases {
            assert_eq!(
                verify(header.as_deref(), WORKED_BODY, &[&key]),
                Err(expected),
                "{header:?}"
            );
        }
        assert_eq!(
            verify(Some(WORKED_HEADER), b"", &[&key]),
            Err(AuthError::EmptyBody)
        );
        assert_eq!(
            verify(Some(WORKED_HEADER), WORKED_BODY, &[]),
            Err(AuthError::Mismatch)
        );
    }

    #[test]
    fn parses_the_samples_leniently() {
        let first = parse_activity(&sample("sample1.json")).unwrap();
        assert_eq!(first.message_id(), "1716220800123");
        assert_eq!(first.own_mention().as_deref(), Some("BuildBot"));
        assert_eq!(first.user_id(), "3a7c9e21-5b4d-4f60-8e12-9d0c1b2a3f45");
        assert_eq!(first.user_name(), "Ada Lovelace");
        assert_eq!(first.thread_root().as_deref(), Some("1716220800123"));
        assert_eq!(
            first.channel(),
            (
                "19:5e2f0c4d9b8a47e1a3c6d7f8091a2b3c@thread.tacv2".to_string(),
                "19:5e2f0c4d9b8a47e1a3c6d7f8091a2b3c@thread.tacv2".to_string()
            )
        );
        assert_eq!(
            first.team().0,
            "19:Qm9ndXNUZWFtSWQtb25seS1mb3ItZG9jcw1@thread.tacv2"
        );
        let second = parse_activity(&sample("sample2.json")).unwrap();
        assert_eq!(second.user_name(), "José Müller");
        assert_eq!(second.thread_root().as_deref(), Some("1716220800123"));
        assert_ne!(second.message_id(), "1716220800123");

        let bare = parse_activity(
            br#"{"id":"1","from":null,"channelData":null,"entities":[{"type":"clientInfo"}],"x":[1]}"#,
        )
        .unwrap();
        assert_eq!(bare.own_mention(), None);
        assert_eq!(
            (bare.user_id(), bare.channel().0),
            (String::new(), String::new())
        );
        assert!(matches!(
            parse_activity(br#"{"text":"hi"}"#),
            Err(ParseError::NoId)
        ));
        assert!(matches!(parse_activity(b"[1"), Err(ParseError::Json(_))));
        assert_eq!(bare.check(), Err(ParseError::NoSender));
        assert_eq!(first.check(), Ok(()));
    }

    #[test]
    fn the_timestamp_is_read_as_teams_writes_it() {
        let mut activity = parse_activity(&sample("sample1.json")).unwrap();
        assert_eq!(activity.timestamp_ms(), Ok(Some(1_716_220_800_123)));
        for (text, ms) in [
            ("2024-05-20T16:00:00Z", Some(1_716_220_800_000)),
            ("2024-05-20T16:00:00.1234567Z", Some(1_716_220_800_123)),
            ("2024-05-20T18:00:00.123+02:00", Some(1_716_220_800_123)),
            ("2024-05-20T14:30:00.123-01:30", Some(1_716_220_800_123)),
        ] {
            activity.timestamp = Some(text.into());
            assert_eq!(activity.timestamp_ms(), Ok(ms), "{text}");
        }
        // The last two put a multi-byte character where an offset would be (no panic).
        for bad in [
            "yesterday",
            "",
            "2024-05-20T16:00:00+2:000",
            "1716220800123",
            "€aaaaa",
            "2024-05-20T16:00:00+\u{20ac}:0",
        ] {
            activity.timestamp = Some(bad.into());
            assert_eq!(activity.timestamp_ms(), Err(ParseError::Timestamp), "{bad}");
        }
        activity.timestamp = None;
        assert_eq!(activity.timestamp_ms(), Ok(None));
    }

    #[test]
    fn oversized_fields_and_other_content_types_are_refused() {
        let mut activity = parse_activity(&sample("sample1.json")).unwrap();
        activity.text = Some("x".repeat(MAX_TEXT_BYTES + 1));
        assert_eq!(
            activity.check().unwrap_err().to_string(),
            "text is too long: at most 28672 bytes"
        );
        let mut activity = parse_activity(&sample("sample1.json")).unwrap();
        activity.from.as_mut().unwrap().name = Some("n".repeat(MAX_FIELD_BYTES + 1));
        assert_eq!(
            activity.check().unwrap_err().to_string(),
            "from.name is too long: at most 1024 bytes"
        );
        assert_eq!(check_content_type(None), Ok(()));
        assert_eq!(
            check_content_type(Some("Application/JSON; charset=utf-8")),
            Ok(())
        );
        assert_eq!(
            check_content_type(Some("text/plain"))
                .unwrap_err()
                .to_string(),
            "the Content-Type must be application/json, not text/plain"
        );
        let deep = format!(
            "{{\"id\":\"1\",\"x\":{}{}}}",
            "[".repeat(50_000),
            "]".repeat(50_000)
        );
        assert_eq!(
            parse_activity(deep.as_bytes()).unwrap_err().to_string(),
            "the body is not a Teams activity: nested deeper than 32 levels"
        );
    }

    #[test]
    fn the_mention_is_removed_and_the_text_cleaned() {
        let cases = [
            // The two samples.
            (
                "<at>BuildBot</at>&nbsp;build api-server main\n",
                "build api-server main",
            ),
            (
                "<at>BuildBot</at> test web-ui --branch feature/login",
                "test web-ui --branch feature/login",
            ),
            // No space after the mention.
            ("<at>BuildBot</at>build web", "build web"),
            // Several mentions: only ours goes, the others' names stay as text.
            (
                "<at>BuildBot</at> <at>Larry Brown</at> please build x",
                "Larry Brown please build x",
            ),
            (
                "<at>Larry Brown</at> <AT>BuildBot</AT> build x",
                "Larry Brown build x",
            ),
            // Mention not first.
            ("Hey <at>BuildBot</at> build x", "Hey build x"),
            // Only the mention.
            ("<at>BuildBot</at>&nbsp;\n", ""),
            // HTML inside the text, entities decoded once.
            (
                "<at>BuildBot</at> <b>build</b>&nbsp;web &amp;lt;x&amp;gt; a &amp; b",
                "build web &lt;x&gt; a & b",
            ),
            // Emoji inside a mention; non-ASCII kept.
            (
                "<at>CapCoins</at>&nbsp;testing go go go <at><img alt=\"😀\" itemtype=\"http://schema.skype.com/Emoji\"></at>&nbsp;&nbsp;\n",
                "testing go go go",
            ),
            (
                "<at>BuildBot</at> build café-ünï 日本 &#x1F680;",
                "build café-ünï 日本 🚀",
            ),
            // A shortened pill: the first mention is ours.
            ("<at>Build</at> status 42", "status 42"),
        ];
        for (input, expected) in cases {
            let (command, _) = command_text(input, Some("BuildBot"));
            assert_eq!(command, expected, "{input}");
        }
        let (_, mention) = command_text("<at>BuildBot</at> build", None);
        assert_eq!(mention, "BuildBot");
    }

    #[test]
    fn the_command_grammar_is_mattermosts() {
        let is_job = &["build"][..];
        let (text, _) = command_text("<at>BuildBot</at>&nbsp;build api-server main\n", None);
        assert_eq!(
            crate::domain::parse_after_trigger(&text, is_job),
            crate::domain::Command::Run {
                job: "build".into(),
                args: "api-server main".into()
            }
        );
        let (text, _) = command_text("<at>BuildBot</at>", None);
        assert_eq!(
            crate::domain::parse_after_trigger(&text, is_job),
            crate::domain::Command::Help { job: None }
        );
    }

    fn run(status: RunStatus) -> RunRow {
        RunRow {
            run_id: RunId(7),
            platform: crate::domain::Platform::Teams,
            user_name: "José \"Quote\" Müller\\".into(),
            args: "branch=\"x\\y\"".into(),
            hook: "team".into(),
            started_at: Some(0),
            finished_at: Some(65_000),
            ..crate::render::samples::run(status)
        }
    }

    fn step(position: i64, name: &str, status: StepStatus) -> StepRow {
        StepRow {
            run_id: RunId(7),
            started_at: Some(0),
            finished_at: Some(1500),
            ..crate::render::samples::step(
                position,
                name,
                status,
                (status == StepStatus::Failed).then_some(2),
            )
        }
    }

    fn schema() -> jsonschema::Validator {
        let schema: serde_json::Value =
            serde_json::from_slice(&sample("adaptive-card.json")).unwrap();
        jsonschema::draft6::options().build(&schema).unwrap()
    }

    #[test]
    fn renders_test_result_cards_as_checked_in_and_valid() {
        let schema = schema();
        for (name, run, steps, failures) in crate::render::samples::scenarios() {
            let message = render_result(&run, &steps, &failures, "http://ci/runs/42", 9_999);
            let json = serde_json::to_value(&message).unwrap();
            let card = &json["attachments"][0]["content"];
            let errors: Vec<String> = schema
                .iter_errors(card)
                .map(|e| format!("{e} at {}", e.instance_path()))
                .collect();
            assert!(errors.is_empty(), "{name}: {errors:?}");
            assert_eq!(card["version"], "1.4");
            let text = serde_json::to_string_pretty(&json).unwrap();
            let path = format!("{FIXTURES}/card-{name}.json");
            if std::env::var_os("UPDATE_FIXTURES").is_some() {
                std::fs::write(&path, format!("{text}\n")).unwrap();
            }
            let expected = std::fs::read_to_string(&path).unwrap();
            assert_eq!(text, expected.trim_end(), "differs from {path}");
        }
    }

    #[test]
    fn a_card_too_big_for_teams_leaves_out_detail_and_says_so() {
        let mut steps = Vec::new();
        let mut failures = Vec::new();
        for i in 0..20 {
            steps.push(crate::render::samples::tested(
                i,
                &format!("Component {i}"),
                500,
                10,
            ));
            failures.extend(crate::render::samples::failures(i, &"suite".repeat(20), 10));
        }
        let run = crate::render::samples::run(RunStatus::Failed);
        let body = serde_json::to_string(&render_result(
            &run,
            &steps,
            &failures,
            "http://ci/runs/42",
            0,
        ))
        .unwrap();
        assert!(body.len() <= MAX_MESSAGE_BYTES, "{}", body.len());
        assert!(body.contains("Left out to fit in one message: names of failed tests."));
        assert!(body.contains("Component 19"), "every row is still there");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(schema().is_valid(&json["attachments"][0]["content"]));
    }

    #[test]
    fn the_result_card_has_status_facts_rows_and_a_link() {
        let steps = [
            step(0, "Server", StepStatus::Succeeded),
            step(1, "Web", StepStatus::Failed),
        ];
        let message = render_result(&run(RunStatus::Failed), &steps, &[], "http://ci/runs/7", 0);
        let json = serde_json::to_value(&message).unwrap();
        assert_eq!(json["type"], "message");
        let attachment = &json["attachments"][0];
        assert_eq!(
            attachment["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert!(attachment["contentUrl"].is_null());
        let card = &attachment["content"];
        assert_eq!(
            (card["type"].as_str(), card["version"].as_str()),
            (Some("AdaptiveCard"), Some("1.4"))
        );
        let title = &card["body"][0]["items"][0];
        assert_eq!(title["text"], "build run \\#7 failed");
        assert_eq!(title["color"], "Attention");
        let facts = &card["body"][1]["facts"];
        assert_eq!(facts[2]["value"], "José \"Quote\" Müller\\\\");
        assert_eq!(facts[3]["value"], "1m 05s");
        assert_eq!(facts[4]["value"], "branch=\"x\\\\y\"");
        let web = &card["body"][4]["columns"];
        assert_eq!(web[0]["items"][0]["text"], "Web");
        assert_eq!(web[1]["items"][0]["text"], "failed (exit 2)");
        assert_eq!(web[1]["items"][0]["color"], "Attention");
        assert_eq!(card["actions"][0]["type"], "Action.OpenUrl");
        assert_eq!(card["actions"][0]["url"], "http://ci/runs/7");
    }

    #[test]
    fn a_huge_result_stays_under_the_teams_limit() {
        let steps: Vec<StepRow> = (0..2000)
            .map(|i| {
                step(
                    i,
                    &"step with a long name ".repeat(5),
                    StepStatus::Succeeded,
                )
            })
            .collect();
        let delivery = render_follow_up(
            "team",
            &run(RunStatus::Succeeded),
            &steps,
            &[],
            "http://ci/runs/7",
            0,
        );
        assert!(
            delivery.body.len() <= MAX_MESSAGE_BYTES,
            "{}",
            delivery.body.len()
        );
        assert!(delivery.body.contains("more steps on the run page"));
        let json: serde_json::Value = serde_json::from_str(&delivery.body).unwrap();
        assert_eq!(
            json["attachments"][0]["content"]["actions"][0]["url"],
            "http://ci/runs/7"
        );
        assert_eq!(delivery.target, "teams:team");
        assert_eq!(
            delivery.thread, "teams:team|c1",
            "the conversation orders replies"
        );
        let mut in_thread = run(RunStatus::Succeeded);
        in_thread.thread_root_id = Some("1716220800123".into());
        assert_eq!(
            render_follow_up("team", &in_thread, &[], &[], "http://ci/runs/7", 0).thread,
            "teams:team|c1;messageid=1716220800123"
        );
    }

    #[test]
    fn replies_are_text_messages() {
        let text = render_ack(&render::AckFacts {
            run_id: 7,
            job: "build",
            user: "José <b>",
            place: 2,
            wait: None,
            args: "target=web",
            link: "http://ci/runs/7",
        });
        assert_eq!(
            text,
            "⏳ Queued run **#7** of **build** (target=web) for José &#60;b&#62;, position 2 in the \
             queue. [Details](http://ci/runs/7)"
        );
        let body = render_response(&text);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["type"], "message");
        assert_eq!(json["text"], text);
        let jobs = render_jobs(
            Some("biuld"),
            Some("build"),
            [("build", "Build it")].into_iter(),
            "BuildBot",
        );
        assert!(
            jobs.starts_with("❓ There is no job or command **biuld**. Did you mean **build**?"),
            "{jobs}"
        );
        assert!(jobs.contains("**build**: Build it"), "{jobs}");
    }
}
