//! Mattermost: the outgoing-webhook request (form or JSON), its token, and the replies
//! (the acknowledgement in the HTTP response, the result through `POST /api/v4/posts`).
//! See `shared/protocols/mattermost.md`. Pure: no I/O here.

use askama::Template;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::Delivery;
use crate::domain::text::truncate_runes;
use crate::domain::{RunRow, StepRow, StepStatus, TestFailureRow};
use crate::render::{self, AckMessage, Detail, JobsMessage, ResultMessage, ResultRow, ResultView};

/// Delivery target: `POST {mattermost.url}/api/v4/posts` with the bot's token.
pub const TARGET_POST: &str = "mattermost.post";

/// Mattermost's longest post, in runes (`PostMessageMaxRunesV2`).
pub const MAX_RUNES: usize = 16383;

/// The longest value of a field other than `text` (ids are 26 characters, names at most 64).
pub const MAX_FIELD_BYTES: usize = 1024;

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
fn reason(err: impl std::fmt::Display) -> String {
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
enum Timestamp {
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
            if let Some(problem) = super::json_body_problem(body) {
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
fn check_form_encoding(body: &[u8]) -> Result<(), ParseError> {
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

/// Whether `given` is one of the `accepted` tokens, in constant time: both sides are hashed
/// first, so neither the content nor the length of a token leaks through timing, and every
/// accepted token is compared.
pub fn token_matches(given: &str, accepted: &[String]) -> bool {
    let given = Sha256::digest(given.as_bytes());
    let mut found = subtle::Choice::from(0);
    for token in accepted {
        let token = Sha256::digest(token.as_bytes());
        found |= given.as_slice().ct_eq(token.as_slice());
    }
    !accepted.is_empty() && bool::from(found)
}

/// Where the trigger post sits, which decides how a reply can appear next to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Thread {
    /// The trigger is a root post: a `comment` reply threads under it.
    Root,
    /// The trigger was typed inside the thread of this root post: a `comment` reply would be
    /// dropped by Mattermost, so replies go through the REST API with this `root_id`.
    Reply(String),
    /// Not known (the REST API is not configured or did not answer): a top-level reply is the
    /// one that is always shown.
    Unknown,
}

impl Thread {
    /// From a post's `root_id` as `GET /api/v4/posts/{id}` returns it.
    pub fn from_root_id(root_id: &str) -> Self {
        if root_id.is_empty() {
            Self::Root
        } else {
            Self::Reply(root_id.to_string())
        }
    }

    /// The `root_id` for REST replies to post `post_id`, when it is known.
    pub fn root_for(&self, post_id: &str) -> Option<String> {
        match self {
            Self::Root => Some(post_id.to_string()),
            Self::Reply(root) => Some(root.clone()),
            Self::Unknown => None,
        }
    }
}

#[derive(Serialize)]
struct Response<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    response_type: Option<&'static str>,
    text: &'a str,
}

#[derive(Serialize)]
struct CreatePost<'a> {
    channel_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    root_id: Option<&'a str>,
    message: &'a str,
}

/// The HTTP response body that shows `text` next to the trigger, and the delivery to queue
/// when the response cannot (a trigger inside a thread).
pub fn render_response(
    text: &str,
    thread: &Thread,
    channel_id: &str,
) -> (String, Option<Delivery>) {
    let json = |response: &Response| {
        serde_json::to_string(response).expect("a struct of strings serializes")
    };
    match thread {
        Thread::Root => (
            json(&Response {
                response_type: Some("comment"),
                text,
            }),
            None,
        ),
        Thread::Unknown => (
            json(&Response {
                response_type: None,
                text,
            }),
            None,
        ),
        // `{}` posts nothing; the REST delivery posts the text in the right thread.
        Thread::Reply(root) => ("{}".into(), Some(render_post(channel_id, Some(root), text))),
    }
}

/// A `POST /api/v4/posts` delivery, in the thread of `root_id` (or at the top of the channel,
/// whose top-level posts are one thread for ordering).
pub fn render_post(channel_id: &str, root_id: Option<&str>, message: &str) -> Delivery {
    Delivery {
        target: TARGET_POST.into(),
        body: serde_json::to_string(&CreatePost {
            channel_id,
            root_id,
            message,
        })
        .expect("a struct of strings serializes"),
        thread: match root_id {
            Some(root) => format!("mattermost:{channel_id}/{root}"),
            None => format!("mattermost:{channel_id}"),
        },
    }
}

/// The post property that marks a post chatrun made for one outbox delivery, so an attempt
/// whose answer was lost can be found before posting again.
pub const DELIVERY_PROP: &str = "chatrun_delivery";

/// A `POST /api/v4/posts` body with `props.chatrun_delivery` set to `key` (other props kept);
/// `None` when `body` is not a JSON object.
pub fn with_delivery_key(body: &str, key: &str) -> Option<String> {
    let mut post: serde_json::Value = serde_json::from_str(body).ok()?;
    let post_map = post.as_object_mut()?;
    let props = post_map
        .entry("props")
        .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
    if !props.is_object() {
        *props = serde_json::Value::Object(serde_json::Map::new());
    }
    props
        .as_object_mut()?
        .insert(DELIVERY_PROP.into(), serde_json::Value::String(key.into()));
    serde_json::to_string(&post).ok()
}

/// The `channel_id` of a `POST /api/v4/posts` body.
pub fn post_channel(body: &str) -> Option<String> {
    let post: serde_json::Value = serde_json::from_str(body).ok()?;
    post.get("channel_id")?.as_str().map(String::from)
}

/// Whether a post list, as `GET /api/v4/channels/{id}/posts` answers
/// (`{"order": [ids], "posts": {id: post}}`), holds a post whose `props.chatrun_delivery` is
/// `key`.
///
/// # Errors
///
/// The answer is not such a list.
pub fn posts_contain_delivery(answer: &[u8], key: &str) -> Result<bool, serde_json::Error> {
    #[derive(Deserialize)]
    struct PostList {
        #[serde(default)]
        posts: Option<std::collections::HashMap<String, serde_json::Value>>,
    }
    let list: PostList = serde_json::from_slice(answer)?;
    Ok(list.posts.unwrap_or_default().values().any(|post| {
        post.get("props")
            .and_then(|props| props.get(DELIVERY_PROP))
            .and_then(serde_json::Value::as_str)
            == Some(key)
    }))
}

/// The acknowledgement text of a queued run.
pub fn render_ack(facts: &render::AckFacts) -> String {
    let mention = render::mention(facts.user);
    AckMessage {
        facts,
        mention: &mention,
        wait: facts.wait.map(render::duration),
    }
    .render()
    .expect("the ack template renders")
    .trim()
    .to_string()
}

/// Why a request runs nothing (bad arguments, a denial).
#[derive(Template)]
#[template(path = "chat/refused.md")]
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

/// The list of jobs, for `help` or after an unknown job name (and the closest name).
pub fn render_jobs<'a>(
    unknown: Option<&str>,
    suggestion: Option<&str>,
    jobs: impl Iterator<Item = (&'a str, &'a str)>,
    trigger_word: &str,
) -> String {
    let jobs: Vec<_> = jobs.collect();
    let example = match (trigger_word.trim(), jobs.first()) {
        ("", Some((name, _))) => (*name).to_string(),
        (word, Some((name, _))) => format!("{word} {name}"),
        (_, None) => String::new(),
    };
    let text = JobsMessage {
        unknown,
        suggestion,
        jobs,
        trigger: &example,
    }
    .render()
    .expect("the jobs template renders");
    truncate_runes(text.trim(), MAX_RUNES)
}

/// The result message of a finished run: the table (with test counts when steps name test
/// reports), the failed tests, the output of failed steps without reports, the link. Fitted
/// under [`MAX_RUNES`] by leaving out detail (see [`Detail`]) and saying so; never a cut table.
pub fn render_result(
    run: &RunRow,
    steps: &[StepRow],
    failures: &[TestFailureRow],
    link: &str,
    now: i64,
) -> String {
    let mention = render::mention(&run.user_name);
    let error = run.error.as_deref().map(|e| truncate_runes(e, 500));
    let mut last = String::new();
    for detail in Detail::levels(steps.len()) {
        let view = ResultView::new(steps, failures, now, detail);
        let text = ResultMessage {
            emoji: render::run_emoji(run.status),
            job: &run.job,
            run_id: run.run_id.0,
            status: run.status.as_str(),
            duration: render::run_duration(run, now)
                .map_or_else(|| "0.0s".into(), render::duration),
            mention: &mention,
            failed_cells: view.rows.iter().map(|row| failed_cell(row, link)).collect(),
            view: &view,
            error: error.as_deref(),
            link,
        }
        .render()
        .expect("the result template renders");
        last = text.trim().to_string();
        if last.chars().count() <= MAX_RUNES {
            return last;
        }
    }
    truncate_runes(&last, MAX_RUNES)
}

/// The "Tests Failed" cell: counts with a link to the step, or the step's result when it has
/// no test report. Only numbers, emoji and our own words: no user text.
fn failed_cell(row: &ResultRow, link: &str) -> String {
    match (row.tests_failed, &row.report_problem) {
        (_, Some(problem)) => format!("{} {}, :warning: {problem}", row.emoji, row.result),
        (Some(0), None) if row.status == StepStatus::Succeeded => ":white_check_mark: 0".into(),
        (Some(0), None) => format!("{} 0, {}", row.emoji, row.result),
        (Some(failed), None) => format!(
            ":warning: [{failed} (see details)]({link}#step-{})",
            row.position
        ),
        (None, None) => format!("{} {}", row.emoji, row.result),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{RunStatus, StepStatus};

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mattermost");

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
    }

    /// Compares rendered text with a checked-in file; `UPDATE_FIXTURES=1` rewrites the file
    /// (then review the diff).
    fn assert_matches_fixture(actual: &str, name: &str) {
        let path = format!("{FIXTURES}/{name}");
        if std::env::var_os("UPDATE_FIXTURES").is_some() {
            std::fs::write(&path, format!("{actual}\n")).unwrap();
        }
        let expected = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            actual,
            expected.trim_end_matches('\n'),
            "differs from {path}"
        );
    }

    #[test]
    fn parses_the_form_body_with_its_timestamp_in_seconds() {
        let payload = parse_payload(
            Some("application/x-www-form-urlencoded"),
            &fixture("form-exact.txt"),
        )
        .unwrap();
        assert_eq!(payload.text, "#build api-server branch=main");
        assert_eq!(payload.user_name, "alice");
        assert_eq!(payload.post_id, "axdygg1957njfe5pu38saikdho");
        assert_eq!(payload.trigger_word, "#build");
        assert_eq!(payload.timestamp_ms(), Ok(1_718_294_400_000));
    }

    #[test]
    fn parses_the_json_body_with_its_timestamp_in_milliseconds() {
        let payload = parse_payload(Some("application/json"), &fixture("json.json")).unwrap();
        assert_eq!(
            payload.text,
            "#build web --env=<staging> && notify @bob\nsecond line"
        );
        assert_eq!(payload.timestamp_ms(), Ok(1_718_294_405_789));
        assert_eq!(payload.channel_name, "ci-builds");
    }

    #[test]
    fn a_body_that_is_not_a_payload_is_an_error_not_a_panic() {
        assert!(matches!(
            parse_payload(Some("application/json"), b"[1,2"),
            Err(ParseError::Json(_))
        ));
        let payload = parse_payload(Some("application/json"), br#"{"post_id":"../../x"}"#).unwrap();
        assert!(matches!(payload.check(), Err(ParseError::PostId)));
        let payload = parse_payload(FORM, b"token=a&text=%23build").unwrap();
        assert!(matches!(payload.check(), Err(ParseError::PostId)));
    }

    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

    #[test]
    fn only_the_two_content_types_mattermost_sends_are_read() {
        let body = fixture("form-exact.txt");
        assert!(
            parse_payload(
                Some("Application/X-WWW-Form-Urlencoded; charset=utf-8"),
                &body
            )
            .is_ok()
        );
        for other in [
            None,
            Some(""),
            Some("text/plain"),
            Some("multipart/form-data; boundary=x"),
        ] {
            let err = parse_payload(other, &body).unwrap_err();
            assert!(
                matches!(err, ParseError::ContentType(_)),
                "{other:?}: {err}"
            );
        }
        assert_eq!(
            parse_payload(None, &body).unwrap_err().to_string(),
            "the Content-Type must be application/x-www-form-urlencoded or application/json, not none"
        );
    }

    #[test]
    fn a_form_or_json_that_is_not_utf8_is_refused_not_patched() {
        for body in [
            &b"text=%FF%FE&post_id=p1"[..],
            b"text=\xff&post_id=p1",
            b"te%C3xt=a",
        ] {
            assert_eq!(
                parse_payload(FORM, body).unwrap_err(),
                ParseError::Form("a value is not UTF-8".into()),
                "{body:?}"
            );
        }
        let payload = parse_payload(FORM, b"text=%C3%A9t%C3%A9+100%&post_id=p1").unwrap();
        assert_eq!(payload.text, "été 100%");
        assert!(matches!(
            parse_payload(Some("application/json"), b"{\"text\":\"\xff\"}"),
            Err(ParseError::Json(_))
        ));
    }

    #[test]
    fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
        let depth = 100_000;
        let body = format!("{{\"x\":{}{}}}", "[".repeat(depth), "]".repeat(depth));
        let err = parse_payload(Some("application/json"), body.as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the JSON body is not a Mattermost outgoing-webhook payload: nested deeper than 32 levels"
        );
    }

    #[test]
    fn a_missing_or_malformed_timestamp_is_an_error() {
        let payload = parse_payload(FORM, b"post_id=p1").unwrap();
        assert_eq!(
            payload.timestamp_ms().unwrap_err().to_string(),
            "timestamp is missing"
        );
        let payload = parse_payload(FORM, b"timestamp=soon").unwrap();
        assert_eq!(payload.timestamp_ms(), Err(ParseError::Timestamp));
        let payload = parse_payload(FORM, b"timestamp=99999999999999999").unwrap();
        assert_eq!(
            payload.timestamp_ms(),
            Ok(i64::MAX),
            "saturates, then is refused as ahead"
        );
        assert!(matches!(
            parse_payload(Some("application/json"), br#"{"timestamp":1.5}"#),
            Err(ParseError::Json(_))
        ));
    }

    #[test]
    fn missing_and_oversized_fields_are_named() {
        let good = parse_payload(FORM, &fixture("form-exact.txt")).unwrap();
        assert_eq!(good.check(), Ok(()));
        let mut payload = good.clone();
        payload.channel_id.clear();
        assert_eq!(
            payload.check(),
            Ok(()),
            "`chatrun trigger` sends no channel id"
        );
        let mut payload = good.clone();
        payload.user_id = " ".into();
        assert_eq!(
            payload.check().unwrap_err().to_string(),
            "user_id is missing"
        );
        let mut payload = good.clone();
        payload.text = "é".repeat(MAX_RUNES);
        assert_eq!(
            payload.check(),
            Ok(()),
            "the longest post Mattermost allows"
        );
        payload.text.push('x');
        assert_eq!(
            payload.check().unwrap_err().to_string(),
            "text is too long: at most 16383 characters"
        );
        let mut payload = good;
        payload.user_name = "a".repeat(MAX_FIELD_BYTES + 1);
        assert_eq!(
            payload.check().unwrap_err().to_string(),
            "user_name is too long: at most 1024 bytes"
        );
    }

    #[test]
    fn token_must_match_one_of_the_accepted() {
        let accepted = vec!["one".to_string(), "two".to_string()];
        assert!(token_matches("two", &accepted));
        assert!(!token_matches("three", &accepted));
        assert!(!token_matches("", &accepted));
        assert!(!token_matches("", &[]));
    }

    #[test]
    fn a_post_carries_its_delivery_key_and_is_found_by_it() {
        let body = render_post("c1", Some("r1"), "hi").body;
        assert_eq!(post_channel(&body).as_deref(), Some("c1"));
        let keyed = with_delivery_key(&body, "chatrun-7-12-1700000000000").unwrap();
        let post: serde_json::Value = serde_json::from_str(&keyed).unwrap();
        assert_eq!(
            post["props"]["chatrun_delivery"],
            "chatrun-7-12-1700000000000"
        );
        assert_eq!(post["message"], "hi");
        assert_eq!(post["root_id"], "r1");
        let with_props = with_delivery_key(r#"{"props":{"a":1}}"#, "k").unwrap();
        assert_eq!(with_props, r#"{"props":{"a":1,"chatrun_delivery":"k"}}"#);
        assert_eq!(with_delivery_key("[1]", "k"), None);

        // As Mattermost answers, with the post among others (props null, missing, other keys).
        let answer = br#"{"order":["p3","p2","p1"],"posts":{
            "p1":{"id":"p1","channel_id":"c1","root_id":"","message":"x","props":null},
            "p2":{"id":"p2","channel_id":"c1","root_id":"r1","message":"y"},
            "p3":{"id":"p3","channel_id":"c1","root_id":"r1","message":"hi",
                  "props":{"from_bot":"true","chatrun_delivery":"chatrun-7-12-1700000000000"}}},
            "next_post_id":"","prev_post_id":""}"#;
        assert!(posts_contain_delivery(answer, "chatrun-7-12-1700000000000").unwrap());
        assert!(!posts_contain_delivery(answer, "chatrun-7-13-1700000000000").unwrap());
        assert!(!posts_contain_delivery(br#"{"order":[],"posts":{}}"#, "k").unwrap());
        assert!(!posts_contain_delivery(br#"{"order":[],"posts":null}"#, "k").unwrap());
        assert!(posts_contain_delivery(b"<html>", "k").is_err());
    }

    #[test]
    fn replies_thread_as_mattermost_allows() {
        let (body, delivery) = render_response("hi", &Thread::Root, "c1");
        assert_eq!(body, r#"{"response_type":"comment","text":"hi"}"#);
        assert!(delivery.is_none());
        let (body, _) = render_response("hi", &Thread::Unknown, "c1");
        assert_eq!(body, r#"{"text":"hi"}"#);
        let (body, delivery) = render_response("hi", &Thread::Reply("r1".into()), "c1");
        assert_eq!(body, "{}");
        let delivery = delivery.unwrap();
        assert_eq!(
            delivery.body,
            r#"{"channel_id":"c1","root_id":"r1","message":"hi"}"#
        );
        assert_eq!(delivery.thread, "mattermost:c1/r1");
        assert_eq!(render_post("c1", None, "hi").thread, "mattermost:c1");
    }

    use crate::render::samples::{run, scenarios, step, tested};

    #[test]
    fn renders_the_result_table_as_checked_in() {
        let steps = [
            step(0, "Server", StepStatus::Succeeded, Some(0)),
            step(1, "Web | Client", StepStatus::Failed, Some(2)),
            step(2, "iOS Client", StepStatus::Skipped, None),
        ];
        let text = render_result(
            &run(RunStatus::Failed),
            &steps,
            &[],
            "http://ci/runs/42",
            9_999,
        );
        assert_matches_fixture(&text, "result-failed.md");
    }

    #[test]
    fn renders_test_results_as_checked_in() {
        for (name, run, steps, failures) in scenarios() {
            let text = render_result(&run, &steps, &failures, "http://ci/runs/42", 9_999);
            assert!(text.chars().count() <= MAX_RUNES);
            assert_matches_fixture(&text, &format!("result-{name}.md"));
        }
    }

    #[test]
    fn a_reply_too_big_for_one_post_leaves_out_detail_in_order_and_says_so() {
        // 40 failing components of 10 failed tests with long names: the names must go.
        let mut steps = Vec::new();
        let mut failures = Vec::new();
        for i in 0..40 {
            let mut s = tested(i, &format!("Component {i}"), 500, 10);
            s.output_tail = Some("x".repeat(200));
            steps.push(s);
            failures.extend(
                crate::render::samples::failures(i, &"suite".repeat(20), 10)
                    .into_iter()
                    .map(|mut f| {
                        f.name = f.name.repeat(8);
                        f
                    }),
            );
        }
        let text = render_result(
            &run(RunStatus::Failed),
            &steps,
            &failures,
            "http://ci/runs/42",
            0,
        );
        assert!(text.chars().count() <= MAX_RUNES);
        assert!(
            text.contains("_Left out to fit in one message: names of failed tests._"),
            "{text}"
        );
        assert!(
            text.contains("| Component 39 | 500 |"),
            "every row is still there"
        );
        assert!(text.ends_with("(http://ci/runs/42)"));
        for line in text.lines().filter(|l| l.starts_with('|')) {
            assert!(line.ends_with('|'), "a cut table row: {line}");
        }
    }

    #[test]
    fn renders_the_acknowledgement_as_checked_in() {
        let facts = render::AckFacts {
            run_id: 42,
            job: "build",
            user: "alice",
            place: 1,
            wait: None,
            args: "",
            link: "http://ci/runs/42",
        };
        assert_matches_fixture(&render_ack(&facts), "ack.md");
        let text = render_ack(&render::AckFacts {
            run_id: 7,
            place: 2,
            wait: Some(95_000),
            args: "target=web note=@channel",
            link: "http://ci/runs/7",
            ..facts
        });
        assert!(
            text.contains("**build** (target=web note=@\u{200B}channel) for"),
            "{text}"
        );
        let text = render_refusal("deploy", "`x|y` is not allowed for env");
        assert_eq!(
            text,
            ":no_entry_sign: Not running **deploy**: \\`x\\|y\\` is not allowed for env. Nothing was started."
        );
    }

    #[test]
    fn a_huge_result_drops_rows_and_stays_under_the_limit() {
        let steps: Vec<StepRow> = (0..3000)
            .map(|i| step(i, &"x".repeat(20), StepStatus::Succeeded, Some(0)))
            .collect();
        let text = render_result(
            &run(RunStatus::Succeeded),
            &steps,
            &[],
            "http://ci/runs/42",
            0,
        );
        assert!(text.chars().count() <= MAX_RUNES);
        assert!(text.contains("more steps on the run page"));
        assert!(text.ends_with("(http://ci/runs/42)"));
    }

    #[test]
    fn lists_jobs_for_an_unknown_name() {
        let text = render_jobs(
            Some("biuld"),
            Some("build"),
            [("build", "Build it"), ("lint", "")].into_iter(),
            "#ci",
        );
        assert!(
            text.starts_with(
                ":question: There is no job or command **biuld**. Did you mean **build**?"
            ),
            "{text}"
        );
        assert!(text.contains("| **build** | Build it |"));
        assert!(text.contains("e.g. **\\#ci build**"));
    }
}
