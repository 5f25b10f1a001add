//! Who may see the history pages and the JSON API.
//!
//! Open without a login when `listen` is a loopback address (or `web.open = true`). Otherwise a
//! request needs one of: the header a trusted reverse proxy sets (`web.trust_header`), HTTP
//! Basic credentials (for scripts), or the session cookie `/login` sets. Passwords are the
//! shared `web.password` (compared in constant time) or a user's Argon2 hash. Sessions are kept
//! in the store (by the SHA-256 of their token), so they outlive a restart and every instance on
//! a shared database knows them. Webhooks keep their own authentication and never pass through
//! here.

use std::time::Duration;

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use crate::config::Web;
use crate::store::{Store, now_ms};

/// The session cookie's name.
pub const COOKIE: &str = "chatrun_session";
/// How long a session lasts.
const SESSION: Duration = Duration::from_secs(12 * 3600);

/// Signed-in sessions, kept in the store; and the key of the forms' cross-site tokens, made
/// once and kept there too (so a form from one instance is accepted by another).
#[derive(Debug)]
pub struct Sessions {
    store: Store,
    form_key: Vec<u8>,
}

impl Sessions {
    /// The sessions of `store`, with its forms' key (made now if it has none).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn load(store: Store) -> crate::store::Result<Self> {
        let mut fresh = [0u8; 32];
        // Without randomness every token would be guessable: then no form is ever accepted.
        let form_key = if getrandom::fill(&mut fresh).is_ok() {
            store.secret("form_key", &fresh).await?
        } else {
            Vec::new()
        };
        Ok(Self { store, form_key })
    }

    /// The token a form of `user` carries, so that another site cannot post it for them.
    pub fn form_token(&self, user: &str) -> String {
        let mut hasher = Sha256::new();
        hasher.update(&self.form_key);
        hasher.update(user.as_bytes());
        hex(&hasher.finalize())
    }

    /// Whether `token` is `user`'s form token (constant time).
    pub fn check_form_token(&self, user: &str, token: &str) -> bool {
        !self.form_key.is_empty()
            && bool::from(self.form_token(user).as_bytes().ct_eq(token.as_bytes()))
    }

    /// A new session of `user`: its token, or none when there is no randomness or no database.
    async fn create(&self, user: &str) -> Option<String> {
        let mut bytes = [0u8; 32];
        // N.B. a failing random source must not yield a guessable token: refuse instead.
        getrandom::fill(&mut bytes).ok()?;
        let token = hex(&bytes);
        let now = now_ms();
        let expires_at = now + crate::store::ms(SESSION);
        match self
            .store
            .create_session(&crate::domain::sha256_hex(&token), user, now, expires_at)
            .await
        {
            Ok(()) => Some(token),
            Err(err) => {
                tracing::error!(error = ?err, "cannot store a web session");
                None
            }
        }
    }

    /// The user of session `token`, if it is live (none when the database cannot say).
    async fn user(&self, token: &str) -> Option<String> {
        let hash = crate::domain::sha256_hex(token);
        match self.store.session_user(&hash, now_ms()).await {
            Ok(user) => user,
            Err(err) => {
                tracing::error!(error = ?err, "cannot read the web sessions");
                None
            }
        }
    }

    async fn remove(&self, token: &str) {
        if let Err(err) = self
            .store
            .end_session(&crate::domain::sha256_hex(token))
            .await
        {
            tracing::error!(error = ?err, "cannot end a web session");
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `user` with `password` may sign in.
pub fn check_password(web: &Web, user: &str, password: &str) -> bool {
    if let Some(shared) = &web.password {
        let given = Sha256::digest(password.as_bytes());
        let expected = Sha256::digest(shared.as_bytes());
        if bool::from(given.as_slice().ct_eq(expected.as_slice())) {
            return true;
        }
    }
    use argon2::password_hash::PasswordVerifier;
    web.users.iter().any(|(name, hash)| {
        name == user
            && argon2::password_hash::phc::PasswordHash::new(hash).is_ok_and(|hash| {
                argon2::Argon2::default()
                    .verify_password(password.as_bytes(), &hash)
                    .is_ok()
            })
    })
}

/// An Argon2id hash of `password`, for `web.users`.
///
/// # Errors
///
/// The system's random source failed.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    use argon2::password_hash::PasswordHasher;
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|err| anyhow::anyhow!("cannot hash the password: {err}"))
}

/// Who a request comes from, if anyone signed in.
pub async fn signed_in(state: &AppState, headers: &HeaderMap) -> Option<String> {
    let web = &state.config.web;
    if let Some(name) = &web.trust_header
        && let Some(user) = headers.get(name.as_str()).and_then(|v| v.to_str().ok())
        && !user.trim().is_empty()
    {
        return Some(user.trim().to_string());
    }
    if let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(basic.trim())
        && let Ok(decoded) = String::from_utf8(decoded)
        && let Some((user, password)) = decoded.split_once(':')
        && check_password(web, user, password)
    {
        return Some(user.to_string());
    }
    let token = cookie(headers, COOKIE)?;
    state.sessions.user(&token).await
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then(|| value.to_string())
        })
}

/// Whether a form post comes from our own pages: its `Origin` (when the browser sends one)
/// is the host it was sent to, or the origin of `public_url` (behind a reverse proxy that
/// rewrites `Host`).
pub fn same_origin(headers: &HeaderMap, public_url: &str) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(origin) => {
            let origin = origin.trim_end_matches('/');
            let public = public_url.split_once("://").map(|(scheme, rest)| {
                format!("{scheme}://{}", rest.split('/').next().unwrap_or(""))
            });
            public.as_deref() == Some(origin)
                || host.is_some_and(|host| {
                    origin
                        .split_once("://")
                        .is_some_and(|(_, rest)| rest == host)
                })
        }
    }
}

/// The middleware in front of the pages and the API.
pub async fn require_login(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if state.config.web.open || signed_in(&state, request.headers()).await.is_some() {
        return next.run(request).await;
    }
    let path = request.uri().path().to_string();
    if path.starts_with("/api/") {
        let message = if state.config.web.has_login() {
            "login required: send HTTP Basic credentials (a web.users name, or any name with web.password)"
        } else {
            "the history is closed: chatrun listens on a public address and [web] configures no login"
        };
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"chatrun\"")],
            axum::Json(serde_json::json!({ "error": message })),
        )
            .into_response();
    }
    let next_page = request
        .uri()
        .path_and_query()
        .map_or_else(|| "/".to_string(), ToString::to_string);
    let query = serde_urlencoded::to_string([("next", next_page)]).unwrap_or_default();
    Redirect::to(&format!("/login?{query}")).into_response()
}

#[derive(Template, WebTemplate)]
#[template(path = "web/login.html")]
struct LoginPage {
    next: String,
    error: Option<&'static str>,
    configured: bool,
    users: bool,
}

impl LoginPage {
    fn new(state: &AppState, next: String, error: Option<&'static str>) -> Self {
        Self {
            next,
            error,
            configured: state.config.web.password.is_some() || !state.config.web.users.is_empty(),
            users: !state.config.web.users.is_empty(),
        }
    }
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// Only a path of this site: no `//host` or `https://…` (an open redirect).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(next) if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') => {
            next.to_string()
        }
        _ => "/".to_string(),
    }
}

/// `GET /login`.
pub async fn login_page(State(state): State<AppState>, Query(query): Query<NextQuery>) -> Response {
    LoginPage::new(&state, safe_next(query.next.as_deref()), None).into_response()
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: Option<String>,
}

/// `POST /login`.
pub async fn login(State(state): State<AppState>, Form(form): Form<LoginForm>) -> Response {
    let next = safe_next(form.next.as_deref());
    let user = if form.user.trim().is_empty() {
        "web"
    } else {
        form.user.trim()
    };
    if !check_password(&state.config.web, user, &form.password) {
        tracing::warn!(user, "failed login");
        return (
            StatusCode::UNAUTHORIZED,
            LoginPage::new(
                &state,
                next,
                Some("That user name and password do not match."),
            ),
        )
            .into_response();
    }
    let Some(token) = state.sessions.create(user).await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let secure = if state.config.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    (
        [(
            header::SET_COOKIE,
            format!(
                "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
                SESSION.as_secs()
            ),
        )],
        Redirect::to(&next),
    )
        .into_response()
}

/// `POST /logout`.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = cookie(&headers, COOKIE) {
        state.sessions.remove(&token).await;
    }
    (
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
        Redirect::to("/login"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_checked_against_the_shared_one_and_user_hashes() {
        let hash = hash_password("correct horse").unwrap();
        let web = Web {
            open: false,
            password: Some("a shared secret".into()),
            users: vec![("alice".into(), hash)],
            trust_header: None,
        };
        assert!(check_password(&web, "anyone", "a shared secret"));
        assert!(check_password(&web, "alice", "correct horse"));
        assert!(!check_password(&web, "bob", "correct horse"));
        assert!(!check_password(&web, "alice", "wrong"));
    }

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert_eq!(safe_next(Some("/runs/4?x=1")), "/runs/4?x=1");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
