//! Incoming HTTP: the webhook endpoints, the history pages and the health check.
//!
//! Each file has its own `router()`; [`router`] merges them. Handlers only translate between
//! HTTP and the pure modules and the store; [`Error`] is the one error that becomes a response.

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

/// Every route.
pub fn router(state: AppState) -> Router {
    // The pages and the API sit behind the login; webhooks, /healthz and /login do not.
    let guarded = Router::new()
        .merge(history::router())
        .merge(api::router())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_login,
        ));
    Router::new()
        .merge(webhooks::router())
        .merge(guarded)
        .merge(health::router())
        .route(
            "/login",
            axum::routing::get(auth::login_page).post(auth::login),
        )
        .route("/logout", axum::routing::post(auth::logout))
        // `max_body_bytes`, 1 MiB unless configured; the webhooks answer a larger body with
        // 413 and a reason (see `webhooks::body`).
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
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
