//! The one error type handlers return, and the status each kind becomes.
//!
//! Bad credentials are 401, bad input 400 and a body over the limit 413, each with a short
//! message safe to show; a database failure is logged with its cause and answered with a generic
//! 500 on the pages, and with 503 on the webhooks ([`Error::unavailable`]): there the chat user
//! must see that nothing was stored, and may try again.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// What can go wrong while handling a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Missing or wrong token or signature.
    #[error("the request is not authenticated: {0}")]
    Unauthorized(&'static str),
    /// The request cannot be understood; the message is shown to the caller.
    #[error("{0}")]
    BadRequest(String),
    /// A verified webhook request that is not taken (outside the replay window); the message
    /// is shown to the user.
    #[error("{0}")]
    Refused(String),
    /// The body is larger than `max_body_bytes`; the message says so.
    #[error("{0}")]
    TooLarge(String),
    /// Not allowed; the message says why.
    #[error("{0}")]
    Forbidden(&'static str),
    /// No such page or run.
    #[error("not found")]
    NotFound,
    /// The request is about a state that has moved on (an agent's report on a run it no
    /// longer holds); the message says what.
    #[error("{0}")]
    Conflict(&'static str),
    /// The command of a webhook request did not finish within the time its platform waits
    /// (the database was busy): nothing was stored.
    #[error(
        "chatrun could not store the request within {} s (the database is busy); nothing was \
         started: send it again",
        .0.as_secs_f64()
    )]
    TooSlow(std::time::Duration),
    /// chatrun is shutting down and takes no new requests.
    #[error("chatrun is shutting down and takes no new requests; try again in a minute")]
    ShuttingDown,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// The store failed while a webhook was handled: nothing was acknowledged.
    #[error("chatrun cannot store the request right now; try again")]
    Unavailable(#[source] crate::store::Error),
}

impl From<crate::service::Error> for Error {
    fn from(err: crate::service::Error) -> Self {
        match err {
            crate::service::Error::Refused(refusal) => Self::BadRequest(refusal.to_string()),
            crate::service::Error::Store(err) => Self::Store(err),
        }
    }
}

impl Error {
    /// The same error as a webhook answers it: a store failure becomes [`Error::Unavailable`]
    /// (503), so a chat server never reads a failure as an acknowledgement.
    pub fn unavailable(self) -> Self {
        match self {
            Self::Store(err) => Self::Unavailable(err),
            other => other,
        }
    }
}

/// The `code` of an API error: one word per status.
pub fn code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        s if s.is_server_error() => "internal",
        _ => "error",
    }
}

/// An error as a page, with the navigation.
#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "web/error.html")]
pub struct ErrorPage {
    pub title: &'static str,
    pub message: String,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::BadRequest(_) | Self::Refused(_) => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::ShuttingDown | Self::TooSlow(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Store(err) => {
                tracing::error!(error = ?err, "request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Self::Unavailable(err) => {
                tracing::error!(error = ?err, "cannot store a webhook request; answered 503");
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        let message = match &self {
            Self::Store(_) => "internal error; see the chatrun log".to_string(),
            other => other.to_string(),
        };
        (status, format!("{message}\n")).into_response()
    }
}
