//! `POST /hooks/{platform}[/{name}]`: a trigger becomes a stored run and an acknowledgement.
//! One handler for every platform: the platform's [`Adapter`] verifies and reads the request and
//! words the replies; the use cases ([`service::execute`]) decide what happens.
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
use crate::chat::{Adapter, HookContext, Inbound, Rejection, Request};
use crate::service::{self, Answer};
use crate::store::now_ms;

/// The longest a webhook request may take, body included.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// The webhook routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/hooks/{platform}", post(hook))
        .route("/hooks/{platform}/{name}", post(named_hook))
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

/// `POST /hooks/{platform}`.
async fn hook(
    State(state): State<AppState>,
    Path(platform): Path<String>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    handle(&state, &platform, None, &headers, bytes).await
}

/// `POST /hooks/{platform}/{name}`: only that webhook's secret (Teams).
async fn named_hook(
    State(state): State<AppState>,
    Path((platform, name)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    handle(&state, &platform, Some(&name), &headers, bytes).await
}

async fn handle(
    state: &AppState,
    platform: &str,
    name: Option<&str>,
    headers: &HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let Some(chat) = state.chat.for_hook(platform) else {
        return Err(Error::NotFound);
    };
    if name.is_some() && !chat.named_hooks() {
        return Err(Error::NotFound);
    }
    let bytes = match body(state, bytes) {
        Ok(bytes) => bytes,
        // Nothing is read of a body that is too large, but the message that made it is worth
        // telling the user about, where the platform shows a reply whatever its status.
        Err(err @ Error::TooLarge(_)) => return Ok(with_body(chat, err)),
        Err(err) => return Err(err),
    };
    match trigger(state, chat, name, headers, &bytes)
        .await
        .map_err(Error::unavailable)
    {
        // A platform that shows a body whatever the status (Mattermost) gets one saying that
        // nothing was stored. (Only a verified request, or any request during a shutdown, gets
        // this far.)
        Err(err @ (Error::Unavailable(_) | Error::ShuttingDown | Error::Refused(_))) => {
            Ok(with_body(chat, err))
        }
        other => other,
    }
}

/// `err` as `chat` shows it: with its status and, on a platform that shows a reply's body
/// whatever the status (Mattermost), a body saying why in words; else as a plain error.
fn with_body(chat: &dyn Adapter, err: Error) -> Response {
    match chat.error_body(&err.to_string()) {
        Some(body) => {
            let status = err.into_response().status();
            (status, json(body)).into_response()
        }
        None => err.into_response(),
    }
}

async fn trigger(
    state: &AppState,
    chat: &dyn Adapter,
    name: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, Error> {
    refuse_while_draining(state)?;
    let request = Request {
        name,
        headers,
        body,
    };
    let jobs: Vec<&str> = state.catalog.jobs().map(|j| j.name.as_str()).collect();
    let context = HookContext {
        jobs: &jobs,
        now_ms: now_ms(),
        replay_window: state.config.replay_window,
    };
    let (base, command, replies) = match chat.accept(request, context).await? {
        Inbound::Ignore(body) => return Ok(json(body)),
        Inbound::Trigger {
            base,
            command,
            replies,
        } => (base, command, replies),
    };
    let execute = service::execute(state, *base, command, replies.as_ref());
    let answer = match chat.answer_within() {
        // Dropped at the deadline, a trigger waiting for its batch is not stored (the store
        // drops the write of a caller that went away).
        Some(limit) => tokio::time::timeout(limit, execute)
            .await
            .map_err(|_| Error::TooSlow(limit))?,
        None => execute.await,
    };
    let ((body, delivery), queued_with_run) = match answer? {
        Answer::Ack(inserted) => (
            replies.respond_ack(&inserted.ack_text, inserted.run_id),
            true,
        ),
        Answer::Text(text) => (replies.respond(&text), false),
    };
    // An acknowledgement's delivery was queued with its run; other replies queue theirs here.
    if let Some(delivery) = delivery
        && !queued_with_run
    {
        state.store.enqueue_delivery(&delivery, now_ms()).await?;
    }
    Ok(json(body))
}

impl From<Rejection> for Error {
    fn from(rejection: Rejection) -> Self {
        match rejection {
            Rejection::NotFound => Self::NotFound,
            Rejection::Unauthorized(why) => Self::Unauthorized(why),
            Rejection::BadRequest(message) => Self::BadRequest(message),
            Rejection::Refused(message) => Self::Refused(message),
        }
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

fn json(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}
