//! The request: an outgoing webhook's payload, form-encoded or JSON, its fields checked.

use super::*;

/// Why a request body is not an outgoing-webhook payload. Every message is short (a parser's
/// message is cut to [`MAX_REASON`] characters) and safe to show to the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Neither `application/x-www-form-urlencoded` nor `application/json`.
    #[error(
        "the Content-Type must be application/x-www-form-urlencoded or application/json, not {0}"
    )]
    ContentType(String),
    /// `Content-Type: application/json` but not a JSON object of the payload's fields.
    #[error("the JSON body is not a Mattermost outgoing-webhook payload: {0}")]
    Json(String),
    /// A form body that does not decode.
    #[error("the form body is not a Mattermost outgoing-webhook payload: {0}")]
    Form(String),
    /// No `post_id`, or one that is not a Mattermost id.
    #[error("post_id is missing or is not an id")]
    PostId,
    /// A field chatrun needs is missing or empty.
    #[error("{0} is missing")]
    Missing(&'static str),
    /// A field is longer than Mattermost makes it.
    #[error("{field} is too long: at most {max} {unit}")]
    TooLong {
        /// The field's name.
        field: &'static str,
        /// Its limit.
        max: usize,
        /// `characters` or `bytes`.
        unit: &'static str,
    },
    /// `timestamp` is not a whole number.
    #[error("timestamp is not a whole number of seconds (form) or milliseconds (JSON)")]
    Timestamp,
}

/// The longest parser message passed on in a [`ParseError`].
pub const MAX_REASON: usize = 200;

/// A parser's message, cut to [`MAX_REASON`] characters.
pub(super) fn reason(err: impl std::fmt::Display) -> String {
    truncate_runes(&err.to_string(), MAX_REASON)
}

/// The 12 fields Mattermost sends. Unknown fields are ignored and missing ones are empty, so a
/// newer or older server still parses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Payload {
    pub token: String,
    pub team_id: String,
    pub team_domain: String,
    pub channel_id: String,
    pub channel_name: String,
    timestamp: Option<Timestamp>,
    pub user_id: String,
    pub user_name: String,
    pub post_id: String,
    pub text: String,
    pub trigger_word: String,
    pub file_ids: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum Timestamp {
    Number(i64),
    Text(String),
}

impl Payload {
    /// Checks what the rest of chatrun relies on, once the token matched: the post id is an id
    /// (it goes into URLs and is the idempotency key), the user is there (permissions and the
    /// rate limit go by it), and no field is longer than Mattermost makes it (`text` at most [`MAX_RUNES`] characters,
    /// the others [`MAX_FIELD_BYTES`]).
    ///
    /// # Errors
    ///
    /// The first field that is missing, malformed or too long.
    pub fn check(&self) -> Result<(), ParseError> {
        if self.text.chars().count() > MAX_RUNES {
            return Err(ParseError::TooLong {
                field: "text",
                max: MAX_RUNES,
                unit: "characters",
            });
        }
        let fields = [
            ("token", &self.token),
            ("team_id", &self.team_id),
            ("team_domain", &self.team_domain),
            ("channel_id", &self.channel_id),
            ("channel_name", &self.channel_name),
            ("user_id", &self.user_id),
            ("user_name", &self.user_name),
            ("post_id", &self.post_id),
            ("trigger_word", &self.trigger_word),
            ("file_ids", &self.file_ids),
        ];
        if let Some((field, _)) = fields.iter().find(|(_, v)| v.len() > MAX_FIELD_BYTES) {
            return Err(ParseError::TooLong {
                field,
                max: MAX_FIELD_BYTES,
                unit: "bytes",
            });
        }
        if !is_id(&self.post_id) {
            return Err(ParseError::PostId);
        }
        if self.user_id.trim().is_empty() {
            return Err(ParseError::Missing("user_id"));
        }
        Ok(())
    }

    /// The post's creation time in ms; JSON bodies carry ms, form bodies seconds (a JSON body
    /// with the number as text is read as seconds too).
    ///
    /// # Errors
    ///
    /// `timestamp` is missing (Mattermost always sends it) or not a whole number.
    pub fn timestamp_ms(&self) -> Result<i64, ParseError> {
        match &self.timestamp {
            Some(Timestamp::Number(ms)) => Ok(*ms),
            Some(Timestamp::Text(s)) => s
                .trim()
                .parse::<i64>()
                .map(|s| s.saturating_mul(1000))
                .map_err(|_| ParseError::Timestamp),
            None => Err(ParseError::Missing("timestamp")),
        }
    }
}

/// Parses a request body: JSON or a form, as its Content-Type says (Mattermost sends one of
/// the two, as the webhook is configured). Only the encoding is checked here (strictly: a form
/// whose values are not UTF-8 is refused, not patched); see [`token_matches`] and
/// [`Payload::check`] for the rest.
///
/// # Errors
///
/// Another Content-Type, or a body that does not decode as a payload.
pub fn parse_payload(content_type: Option<&str>, body: &[u8]) -> Result<Payload, ParseError> {
    let media = content_type
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/json" => {
            if let Some(problem) = crate::chat::json_body_problem(body) {
                return Err(ParseError::Json(problem));
            }
            serde_json::from_slice(body).map_err(|err| ParseError::Json(reason(err)))
        }
        "application/x-www-form-urlencoded" => {
            check_form_encoding(body)?;
            serde_urlencoded::from_bytes(body).map_err(|err| ParseError::Form(reason(err)))
        }
        "" => Err(ParseError::ContentType("none".into())),
        _ => Err(ParseError::ContentType(truncate_runes(&media, 60))),
    }
}

/// Refuses a form that is not UTF-8 once decoded (`serde_urlencoded` would replace the bad
/// bytes with U+FFFD and carry on).
pub(super) fn check_form_encoding(body: &[u8]) -> Result<(), ParseError> {
    for pair in body.split(|b| *b == b'&') {
        let mut decoded = Vec::with_capacity(pair.len());
        let mut i = 0;
        while i < pair.len() {
            let byte = match pair[i] {
                b'+' => b' ',
                b'%' => {
                    let hex = pair
                        .get(i + 1..i + 3)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    match hex {
                        Some(byte) => {
                            i += 2;
                            byte
                        }
                        None => b'%',
                    }
                }
                other => other,
            };
            decoded.push(byte);
            i += 1;
        }
        if std::str::from_utf8(&decoded).is_err() {
            return Err(ParseError::Form("a value is not UTF-8".into()));
        }
    }
    Ok(())
}

/// True for a Mattermost-style id: 1 to 64 ASCII letters, digits, `-` or `_`.
pub fn is_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
