//! Incoming HTTP: the webhook endpoints, the history pages and the health check.
//!
//! Each file has its own `router()`; [`router`] merges them. Handlers only translate between
//! HTTP and the pure modules and the store; [`Error`] is the one error that becomes a response.

pub mod agents;
pub mod api;
pub mod auth;
pub mod error;
pub mod health;
pub mod history;
pub mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::Error;

use crate::service;

/// What every handler can reach ([`Shared`]); cheap to clone.
///
/// N.B. One `Arc` for the whole: axum clones the state for every request, and cloning and
/// dropping each part (a dozen counts, the cancellation token's behind a mutex) showed in the
/// profile of an acknowledgement (docs/performance.md).
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// Shares `shared` between the handlers and the loops.
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`]: the use cases' [`service::Context`] (reached through `Deref`:
/// `state.store`, `state.config`), and what only HTTP needs.
#[derive(Debug)]
pub struct Shared {
    pub service: service::Context,
    /// Signed-in users of the pages.
    pub sessions: Arc<auth::Sessions>,
    /// Cancelled when chatrun starts shutting down: webhooks are refused from then on.
    pub draining: CancellationToken,
}

impl std::ops::Deref for Shared {
    type Target = service::Context;

    fn deref(&self) -> &service::Context {
        &self.service
    }
}

/// The result reply of `run` as its platform shows it, once the run has ended (for the run page
/// and the API alike).
pub(crate) fn result_text(
    state: &AppState,
    run: &crate::domain::RunRow,
    steps: &[crate::domain::StepRow],
    failures: &[crate::domain::TestFailureRow],
) -> Option<String> {
    if !run.status.is_finished() {
        return None;
    }
    let now = crate::store::now_ms();
    state
        .chat
        .result_text(&state.config.public_url, run, steps, failures, now)
}

/// A run's number from the path (`/runs/{id}`), or a 400 that says what was expected.
pub struct RunNumber(pub i64);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RunNumber {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Error> {
        let raw = match axum::extract::Path::<Vec<String>>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(values)) => values.into_iter().next().unwrap_or_default(),
            Err(_) => String::new(),
        };
        raw.parse().map(Self).map_err(|_| {
            Error::BadRequest(format!(
                "a run is named by its number, as in /runs/42: `{}` is not a number",
                crate::domain::text::truncate_runes(&raw, 40)
            ))
        })
    }
}

/// Errors as each reader takes them: a page gets an HTML page with the navigation, the API
/// JSON (`{"error": {"code": …, "message": …}}`); the webhooks keep the answers their chat
/// servers read. Only plain-text errors are reshaped (an [`Error`], a rejected extractor, the
/// fallback's 404).
async fn shape_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    let plain = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_none_or(|v| v.as_bytes().starts_with(b"text/plain"));
    if !(status.is_client_error() || status.is_server_error())
        || !plain
        || path.starts_with("/hooks/")
        || path == "/healthz"
    {
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let mut message = String::from_utf8_lossy(&bytes).trim().to_string();
    if message.is_empty() {
        message = status.canonical_reason().unwrap_or("error").to_lowercase();
    }
    if path == "/api" || path.starts_with("/api/") {
        let body = serde_json::json!({"error": {"code": error::code(status), "message": message}});
        return (parts.status, parts.headers, axum::Json(body)).into_response();
    }
    let page = error::ErrorPage {
        title: status.canonical_reason().unwrap_or("Error"),
        message,
    };
    let mut headers = parts.headers;
    headers.remove(axum::http::header::CONTENT_TYPE);
    headers.remove(axum::http::header::CONTENT_LENGTH);
    (parts.status, headers, page).into_response()
}

/// Every route.
pub fn router(state: AppState) -> Router {
    // The pages and the API sit behind the login; webhooks, /healthz and /login do not.
    let guarded = Router::new()
        .merge(history::router())
        .merge(api::router())
        .merge(agents::people_router())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_login,
        ));
    Router::new()
        .merge(webhooks::router())
        .merge(agents::router())
        .merge(guarded)
        .merge(health::router())
        .route(
            "/login",
            axum::routing::get(auth::login_page).post(auth::login),
        )
        .route("/logout", axum::routing::post(auth::logout))
        .fallback(|| async { Error::NotFound })
        // `max_body_bytes`, 1 MiB unless configured; the webhooks answer a larger body with
        // 413 and a reason (see `webhooks::body`).
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn(shape_errors))
        .with_state(state)
}

/// Serves until `shutdown`, then finishes the requests in flight.
///
/// # Errors
///
/// The listener failed.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
