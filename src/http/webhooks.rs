//! `POST /hooks/mattermost` and `POST /hooks/teams[/{name}]`: a trigger becomes a stored run
//! and an acknowledgement.
//!
//! Order matters: the token or HMAC is checked (constant time) before anything in the body is
//! interpreted or stored; the run is committed before the acknowledgement is sent; the job is
//! never waited for.
//!
//! Bad input never reaches the store: a body over `max_body_bytes` is 413; another Content-Type,
//! a body that does not decode (not UTF-8, not JSON or a form, nested too deep), a missing or
//! oversized field and a message outside the replay window (its own timestamp more than
//! `replay_window` from now, either way) are 400, each with a short reason.
//! A store failure is 503 ([`Error::unavailable`]), never a 500 or an acknowledgement.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::{AppState, Error};
use crate::chat::check_replay_window;
use crate::chat::mattermost::{self, Thread};
use crate::chat::teams;
use crate::chat::teams::Webhook as TeamsWebhook;
use crate::domain::{Command, Platform, parse_after_trigger, parse_command};
use crate::render::command::Flavor;
use crate::service::{self, AckWords, Answer, Replies};
use crate::store::runs::Ack;
use crate::store::{NewRun, now_ms};

/// The longest a webhook request may take, body included.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// The webhook routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/hooks/mattermost", post(mattermost_hook))
        .route("/hooks/teams", post(teams_hook))
        .route("/hooks/teams/{name}", post(teams_named_hook))
        // A chat server gives up long before this; a client that trickles its body does not
        // hold a connection forever. (Not on the pages: a long log download may take minutes.)
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
}

/// The body, or why it cannot be read: 413 over `max_body_bytes`, else 400.
fn body(state: &AppState, body: Result<Bytes, BytesRejection>) -> Result<Bytes, Error> {
    body.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            Error::TooLarge(format!(
                "the request body is larger than {} bytes (max_body_bytes)",
                state.config.max_body_bytes
            ))
        } else {
            Error::BadRequest("cannot read the request body".into())
        }
    })
}

/// `POST /hooks/mattermost`.
async fn mattermost_hook(
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let bytes = body(&state, bytes)?;
    match mattermost_trigger(&state, &headers, &bytes)
        .await
        .map_err(Error::unavailable)
    {
        // Mattermost ignores the status and posts a JSON reply's `text`: the user sees that
        // nothing was stored. (Only a request whose token matched, or any request during a
        // shutdown, gets this far.)
        Err(err @ (Error::Unavailable(_) | Error::ShuttingDown)) => {
            let text = format!(":warning: {err}");
            let status = err.into_response().status();
            let body = serde_json::json!({ "text": text }).to_string();
            Ok((status, json(body)).into_response())
        }
        other => other,
    }
}

async fn mattermost_trigger(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, Error> {
    refuse_while_draining(state)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    // N.B. The token is in the body, so the body is decoded first; nothing in it is acted on
    // before the token matched.
    let payload = mattermost::parse_payload(content_type, body)
        .map_err(|err| Error::BadRequest(err.to_string()))?;
    if !mattermost::token_matches(&payload.token, &state.mattermost_tokens) {
        return Err(Error::Unauthorized(
            "the token matches no configured outgoing webhook",
        ));
    }
    payload
        .check()
        .map_err(|err| Error::BadRequest(err.to_string()))?;
    let sent = payload
        .timestamp_ms()
        .map_err(|err| Error::BadRequest(err.to_string()))?;
    check_replay_window(sent, now_ms(), state.config.replay_window).map_err(|err| {
        tracing::warn!(post = %payload.post_id, error = %err, "refused a Mattermost message");
        Error::BadRequest(err.to_string())
    })?;

    let bot = state
        .config
        .mattermost
        .bot_user_id
        .as_deref()
        .or(state.bot_user_id.get().map(String::as_str));
    if bot.is_some_and(|bot| bot == payload.user_id) {
        tracing::debug!(post = %payload.post_id, "ignoring a post of our own bot");
        return Ok(json("{}".into()));
    }

    let jobs: Vec<&str> = state.catalog.jobs().map(|j| j.name.as_str()).collect();
    let command = parse_command(&payload.text, &jobs);
    // A channel-bound webhook without trigger words sees every message of its channel: answer
    // only a job's name or `help` ("queue is long today" is not a command).
    if payload.trigger_word.is_empty()
        && !matches!(command, Command::Run { .. })
        && !asks_for_help(&payload.text)
    {
        return Ok(json("{}".into()));
    }
    let thread = state.mattermost.lookup_thread(&payload.post_id).await;
    let base = NewRun {
        platform: Platform::Mattermost,
        team_id: payload.team_id.clone(),
        team_name: payload.team_domain.clone(),
        channel_id: payload.channel_id.clone(),
        channel_name: payload.channel_name.clone(),
        user_id: payload.user_id.clone(),
        user_name: payload.user_name.clone(),
        message_id: payload.post_id.clone(),
        thread_root_id: thread.root_for(&payload.post_id),
        message: payload.text.clone(),
        ..NewRun::default()
    };
    let replies = MattermostReplies {
        thread: &thread,
        trigger_word: &payload.trigger_word,
    };
    let (text, queued_with_run) = match service::execute(state, base, command, &replies).await? {
        Answer::Ack(inserted) => (inserted.ack_text, true),
        Answer::Text(text) => (text, false),
    };
    let (body, delivery) = mattermost::render_response(&text, &thread, &payload.channel_id);
    // An acknowledgement's delivery was queued with its run; other replies queue theirs here.
    if let Some(delivery) = delivery
        && !queued_with_run
    {
        state.store.enqueue_delivery(&delivery, now_ms()).await?;
        state.wake_outbox.notify_one();
    }
    Ok(json(body))
}

/// Mattermost's wording.
struct MattermostReplies<'a> {
    thread: &'a Thread,
    trigger_word: &'a str,
}

impl Replies for MattermostReplies<'_> {
    fn flavor(&self) -> Flavor {
        Flavor::Markdown
    }

    fn usage(&self, job: &str) -> String {
        match self.trigger_word.trim() {
            "" => job.to_string(),
            word if word.trim_start_matches(['#', '!', '/', '@']) == job => word.to_string(),
            word => format!("{word} {job}"),
        }
    }

    fn ack(&self) -> AckWords {
        let thread = self.thread.clone();
        Box::new(move |facts, new| {
            let text = mattermost::render_ack(facts);
            let (_, delivery) = mattermost::render_response(&text, &thread, &new.channel_id);
            Ack { text, delivery }
        })
    }

    fn jobs(
        &self,
        unknown: Option<&str>,
        suggestion: Option<&str>,
        jobs: Vec<(&str, &str)>,
    ) -> String {
        mattermost::render_jobs(unknown, suggestion, jobs.into_iter(), self.trigger_word)
    }

    fn refusal(&self, job: &str, reason: &str) -> String {
        mattermost::render_refusal(job, reason)
    }
}

/// `POST /hooks/teams`: any configured webhook's secret may have signed the body.
async fn teams_hook(
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let bytes = body(&state, bytes)?;
    teams_trigger(&state, None, &headers, &bytes)
        .await
        .map_err(Error::unavailable)
}

/// `POST /hooks/teams/{name}`: only that webhook's secret.
async fn teams_named_hook(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let bytes = body(&state, bytes)?;
    teams_trigger(&state, Some(&name), &headers, &bytes)
        .await
        .map_err(Error::unavailable)
}

async fn teams_trigger(
    state: &AppState,
    name: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, Error> {
    refuse_while_draining(state)?;
    let hooks: Vec<&TeamsWebhook> = state
        .config
        .teams
        .iter()
        .filter(|hook| name.is_none_or(|name| hook.name == name))
        .collect();
    let keys: Vec<&[u8]> = hooks.iter().map(|hook| hook.key.as_slice()).collect();
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let index = teams::verify(authorization, body, &keys).map_err(|err| {
        tracing::warn!(error = %err, hook = ?name, "refused a Teams request");
        Error::Unauthorized("the HMAC signature matches no configured Teams webhook")
    })?;
    let hook = hooks[index];
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("not text"));
    teams::check_content_type(content_type).map_err(|err| Error::BadRequest(err.to_string()))?;
    let activity = teams::parse_activity(body).map_err(|err| Error::BadRequest(err.to_string()))?;
    activity
        .check()
        .map_err(|err| Error::BadRequest(err.to_string()))?;
    // No timestamp: accepted (see `Activity::timestamp_ms`), the id still de-duplicates.
    if let Some(sent) = activity
        .timestamp_ms()
        .map_err(|err| Error::BadRequest(err.to_string()))?
    {
        check_replay_window(sent, now_ms(), state.config.replay_window).map_err(|err| {
            tracing::warn!(message = activity.message_id(), error = %err, "refused a Teams message");
            Error::BadRequest(err.to_string())
        })?;
    }

    let (text, mention) = teams::command_text(
        activity.text.as_deref().unwrap_or_default(),
        activity.own_mention().as_deref(),
    );
    // The mention is the trigger: what follows it is the job (`@BuildBot build web`).
    let jobs: Vec<&str> = state.catalog.jobs().map(|j| j.name.as_str()).collect();
    let command = parse_after_trigger(&text, &jobs);
    let (team_id, team_name) = activity.team();
    let (channel_id, channel_name) = activity.channel();
    let base = NewRun {
        platform: Platform::Teams,
        team_id,
        team_name,
        channel_id,
        channel_name,
        user_id: activity.user_id(),
        user_name: activity.user_name(),
        message_id: activity.message_id().to_string(),
        thread_root_id: activity.thread_root(),
        message: format!("@{mention} {text}"),
        hook: hook.name.clone(),
        ..NewRun::default()
    };
    let replies = TeamsReplies { mention: &mention };
    let text = match service::execute(state, base, command, &replies).await? {
        Answer::Ack(inserted) => inserted.ack_text,
        Answer::Text(text) => text,
    };
    Ok(json(teams::render_response(&text)))
}

/// Teams' wording.
struct TeamsReplies<'a> {
    /// How the user addressed the webhook.
    mention: &'a str,
}

impl Replies for TeamsReplies<'_> {
    fn flavor(&self) -> Flavor {
        Flavor::Teams
    }

    fn usage(&self, job: &str) -> String {
        format!("@{} {job}", self.mention)
    }

    fn ack(&self) -> AckWords {
        Box::new(|facts, _| Ack {
            text: teams::render_ack(facts),
            delivery: None,
        })
    }

    fn jobs(
        &self,
        unknown: Option<&str>,
        suggestion: Option<&str>,
        jobs: Vec<(&str, &str)>,
    ) -> String {
        teams::render_jobs(unknown, suggestion, jobs.into_iter(), self.mention)
    }

    fn refusal(&self, job: &str, reason: &str) -> String {
        teams::render_refusal(job, reason)
    }
}

/// Once shutdown began, a trigger is refused rather than acknowledged and left for a later
/// start: the user sees at once that it did not go through.
fn refuse_while_draining(state: &AppState) -> Result<(), Error> {
    if state.draining.is_cancelled() {
        return Err(Error::ShuttingDown);
    }
    Ok(())
}

/// `help`, `#help`, `!help`…: the first word asks for the list of jobs.
fn asks_for_help(text: &str) -> bool {
    text.split_whitespace()
        .next()
        .is_some_and(|word| word.trim_start_matches(['#', '!', '/', '@']) == "help")
}

fn json(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}
