//! The one error type handlers return, and the status each kind becomes.
//!
//! Bad credentials are 401 and bad input 400 with a message safe to show; a database failure
//! is logged with its cause and answered with a generic 500.

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
    /// Not allowed; the message says why.
    #[error("{0}")]
    Forbidden(&'static str),
    /// No such page or run.
    #[error("not found")]
    NotFound,
    /// chatrun is shutting down and takes no new requests.
    #[error("chatrun is shutting down and takes no new requests; try again in a minute")]
    ShuttingDown,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Self::Store(err) => {
                tracing::error!(error = ?err, "request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let message = match &self {
            Self::Store(_) => "internal error; see the chatrun log".to_string(),
            other => other.to_string(),
        };
        (status, format!("{message}\n")).into_response()
    }
}
