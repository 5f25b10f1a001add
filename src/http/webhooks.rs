//! `POST /hooks/mattermost` and `POST /hooks/teams[/{name}]`: a trigger becomes a stored run
//! and an acknowledgement.
//!
//! Order matters: the token or HMAC is checked (constant time) before anything in the body is
//! interpreted or stored; the run is committed before the acknowledgement is sent; the job is
//! never waited for.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;

use super::{AppState, Error};
use crate::chat::mattermost::{self, Thread};
use crate::chat::teams;
use crate::chat::{Command, Platform, parse_after_trigger, parse_command};
use crate::config::TeamsWebhook;
use crate::store::runs::{Ack, Inserted};
use crate::store::{NewRun, RunId, now_ms};

/// The longest a webhook request may take, body included.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// How long the thread look-up may delay the acknowledgement.
const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

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

async fn mattermost_hook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let payload = mattermost::parse_payload(content_type, &body)
        .map_err(|err| Error::BadRequest(err.to_string()))?;
    if !mattermost::token_matches(&payload.token, &state.mattermost_tokens) {
        return Err(Error::Unauthorized(
            "the token matches no configured outgoing webhook",
        ));
    }
    payload
        .check()
        .map_err(|err| Error::BadRequest(err.to_string()))?;

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

    let command = parse_command(&payload.text, |name| state.catalog.get(name).is_some());
    let thread = lookup_thread(&state, &payload.post_id).await;
    let now = now_ms();
    match command {
        Command::Run { job, args } => {
            let args = match bind_args(&state, &job, &args) {
                Ok(args) => args,
                Err(reason) => {
                    let text = mattermost::render_refusal(&job, &reason);
                    return respond_mattermost(&state, &text, &thread, &payload.channel_id, now)
                        .await;
                }
            };
            let new = NewRun {
                platform: Platform::Mattermost.as_str().into(),
                team_id: payload.team_id.clone(),
                team_name: payload.team_domain.clone(),
                channel_id: payload.channel_id.clone(),
                channel_name: payload.channel_name.clone(),
                user_id: payload.user_id.clone(),
                user_name: payload.user_name.clone(),
                message_id: payload.post_id.clone(),
                thread_root_id: thread.root_for(&payload.post_id),
                message: payload.text.clone(),
                job,
                args,
                hook: String::new(),
            };
            let inserted = queue_run(&state, &new, now, |run_id, position, link| {
                let text = mattermost::render_ack(
                    run_id.0,
                    &new.job,
                    &new.user_name,
                    position,
                    &new.args,
                    link,
                );
                let (_, delivery) =
                    mattermost::render_response(&text, &thread, &payload.channel_id);
                Ack { text, delivery }
            })
            .await?;
            let (body, _) =
                mattermost::render_response(&inserted.ack_text, &thread, &payload.channel_id);
            Ok(json(body))
        }
        // A channel-bound webhook without trigger words sees every message of its channel:
        // answer only what is meant for us.
        Command::Help | Command::Unknown { .. }
            if payload.trigger_word.is_empty() && !asks_for_help(&payload.text) =>
        {
            Ok(json("{}".into()))
        }
        Command::Help | Command::Unknown { .. } => {
            let unknown = match &command {
                Command::Unknown { word } => Some(word.as_str()),
                _ => None,
            };
            let text = mattermost::render_jobs(
                unknown,
                state
                    .catalog
                    .jobs()
                    .map(|j| (j.name.as_str(), j.description.as_str())),
                &payload.trigger_word,
            );
            respond_mattermost(&state, &text, &thread, &payload.channel_id, now).await
        }
    }
}

/// `POST /hooks/teams`: any configured webhook's secret may have signed the body.
async fn teams_hook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    teams_trigger(&state, None, &headers, &body).await
}

/// `POST /hooks/teams/{name}`: only that webhook's secret.
async fn teams_named_hook(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    teams_trigger(&state, Some(&name), &headers, &body).await
}

async fn teams_trigger(
    state: &AppState,
    name: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, Error> {
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
    let activity = teams::parse_activity(body).map_err(|err| Error::BadRequest(err.to_string()))?;

    let (text, mention) = teams::command_text(
        activity.text.as_deref().unwrap_or_default(),
        activity.own_mention().as_deref(),
    );
    // The mention is the trigger: what follows it is the job (`@BuildBot build web`).
    let command = parse_after_trigger(&text, |job| state.catalog.get(job).is_some());
    let reply = match command {
        Command::Run { job, args } => {
            let args = match bind_args(state, &job, &args) {
                Ok(args) => args,
                Err(reason) => {
                    return Ok(json(teams::render_response(&teams::render_refusal(
                        &job, &reason,
                    ))));
                }
            };
            let (team_id, team_name) = activity.team();
            let (channel_id, channel_name) = activity.channel();
            let new = NewRun {
                platform: Platform::Teams.as_str().into(),
                team_id,
                team_name,
                channel_id,
                channel_name,
                user_id: activity.user_id(),
                user_name: activity.user_name(),
                message_id: activity.message_id().to_string(),
                thread_root_id: activity.thread_root(),
                message: format!("@{mention} {text}"),
                job,
                args,
                hook: hook.name.clone(),
            };
            let inserted = queue_run(state, &new, now_ms(), |run_id, position, link| Ack {
                text: teams::render_ack(
                    run_id.0,
                    &new.job,
                    &new.user_name,
                    position,
                    &new.args,
                    link,
                ),
                delivery: None,
            })
            .await?;
            inserted.ack_text
        }
        Command::Help | Command::Unknown { .. } => {
            let unknown = match &command {
                Command::Unknown { word } => Some(word.as_str()),
                _ => None,
            };
            let jobs = state
                .catalog
                .jobs()
                .map(|j| (j.name.as_str(), j.description.as_str()));
            teams::render_jobs(unknown, jobs, &mention)
        }
    };
    Ok(json(teams::render_response(&reply)))
}

/// Checks a request's arguments against the job's parameters; the canonical `name=value`
/// form to store, or why nothing runs.
fn bind_args(state: &AppState, job: &str, args: &str) -> Result<String, String> {
    let def = state
        .catalog
        .get(job)
        .ok_or_else(|| format!("there is no job {job}"))?;
    let values =
        crate::catalog::args::bind(job, &def.params, args).map_err(|err| err.to_string())?;
    Ok(crate::catalog::args::canonical(&values))
}

/// Answers a Mattermost request that starts no run: in the HTTP response, or through the
/// outbox when the trigger sits in a thread.
async fn respond_mattermost(
    state: &AppState,
    text: &str,
    thread: &Thread,
    channel_id: &str,
    now: i64,
) -> Result<Response, Error> {
    let (body, delivery) = mattermost::render_response(text, thread, channel_id);
    if let Some(delivery) = delivery {
        state.store.enqueue_delivery(&delivery, now).await?;
        state.wake_outbox.notify_one();
    }
    Ok(json(body))
}

/// Stores a run (or finds the one a duplicate delivery made) and wakes the workers; `ack`
/// makes the acknowledgement from the run's number, queue position and page link.
async fn queue_run(
    state: &AppState,
    new: &NewRun,
    now: i64,
    ack: impl FnOnce(RunId, i64, &str) -> Ack,
) -> Result<Inserted, Error> {
    let public_url = &state.config.public_url;
    let inserted = state
        .store
        .insert_run(new, now, |run_id, position| {
            ack(run_id, position, &format!("{public_url}/runs/{run_id}"))
        })
        .await?;
    if inserted.created {
        tracing::info!(run = %inserted.run_id, job = %new.job, user = %new.user_name,
            channel = %new.channel_name, platform = %new.platform, "run queued");
        state.wake_workers.notify_waiters();
        state.wake_outbox.notify_one();
    }
    Ok(inserted)
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

#[derive(Deserialize)]
struct PostInfo {
    #[serde(default)]
    root_id: String,
}

/// Asks Mattermost whether the trigger post is inside a thread, when the REST API is
/// configured; [`Thread::Unknown`] when it is not or does not answer in time.
async fn lookup_thread(state: &AppState, post_id: &str) -> Thread {
    let Some((url, token)) = state.config.mattermost.rest() else {
        return Thread::Unknown;
    };
    // `post_id` was checked by `Payload::check` to be letters, digits, `-` and `_` only.
    let response = state
        .client
        .get(format!("{url}/api/v4/posts/{post_id}"))
        .bearer_auth(token)
        .timeout(LOOKUP_TIMEOUT)
        .send()
        .await;
    let found = match response {
        Ok(response) if response.status().is_success() => response.json::<PostInfo>().await.ok(),
        Ok(response) => {
            tracing::warn!(status = %response.status(), post = post_id,
                "cannot look up the trigger post; replying at the top of the channel");
            None
        }
        Err(err) => {
            tracing::warn!(error = %err, post = post_id,
                "cannot look up the trigger post; replying at the top of the channel");
            None
        }
    };
    found.map_or(Thread::Unknown, |post| Thread::from_root_id(&post.root_id))
}
