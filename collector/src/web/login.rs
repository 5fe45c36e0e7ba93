//! `GET /login`, `POST /login` and `POST /logout`.
//!
//! A wrong password and an unknown user get the same answer, status and (near enough) time:
//! the password is checked against a dummy argon2 hash when the user does not exist. Argon2
//! runs on the blocking pool, a few at a time.

use std::sync::LazyLock;

use askama::Template;
use axum::Form;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::Extensions;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{AppendHeaders, IntoResponse, Redirect, Response};
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::session::{
    CSRF_COOKIE, LOGIN_CSRF_MAX_AGE_SECS, SESSION_COOKIE, SESSION_PREFIX, Session, clear_cookie, cookie, csrf_matches,
    is_csrf_token, new_csrf_token, set_cookie,
};
use super::throttle::Refusal;
use super::{WebError, page};
use crate::app::AppState;
use crate::events::{self, Metrics};
use crate::secrets;
use crate::store::UserRow;

/// The one message for every failed login, so it does not tell which part was wrong.
pub const INVALID_LOGIN: &str = "invalid username or password";

/// Longest username or password looked at; longer input is cut (for logs) or refused.
const MAX_INPUT_CHARS: usize = 1024;

/// Password checks running at once (argon2 takes ~19 MiB and tens of ms each).
static PASSWORD_CHECKS: Semaphore = Semaphore::const_new(4);

/// An argon2 hash with the same parameters as real ones, checked when the user is unknown.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    // Cannot fail for a fixed input; an empty hash would only make unknown users faster.
    secrets::hash_password("rounds: no such user, same work as a real check").unwrap_or_default()
});

/// The login page.
#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    /// The double-submit CSRF token, also in the `rounds_csrf` cookie.
    pub csrf: &'a str,
    /// The username typed before, shown again after a failed attempt.
    pub username: &'a str,
    pub error: Option<&'a str>,
}

/// The login form. Fields default to empty so a missing CSRF token is refused as such.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub csrf: String,
}

/// A form that carries only the session's CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

/// `GET /login`: the form, with a CSRF cookie; a logged-in user goes to the overview.
pub async fn login_page(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, WebError> {
    if Session::from_headers(&headers, &state).await?.is_some() {
        return Ok(Redirect::to("/").into_response());
    }
    // Reuse the browser's token so two open login tabs both work.
    let csrf = cookie(&headers, CSRF_COOKIE)
        .filter(|c| is_csrf_token(c))
        .map(str::to_string)
        .unwrap_or_else(new_csrf_token);
    let html = LoginPage {
        csrf: &csrf,
        username: "",
        error: None,
    }
    .render()?;
    Ok((
        AppendHeaders([(
            SET_COOKIE,
            set_cookie(CSRF_COOKIE, &csrf, "/login", LOGIN_CSRF_MAX_AGE_SECS),
        )]),
        page(StatusCode::OK, html),
    )
        .into_response())
}

/// `POST /login`: checks the CSRF token, then the password; starts a session.
pub async fn login(
    State(state): State<AppState>,
    extensions: Extensions,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, WebError> {
    if !csrf_matches(cookie(&headers, CSRF_COOKIE), &form.csrf) {
        return Err(WebError::Csrf);
    }
    let addr = extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let user = if form.username.is_empty() || form.username.chars().count() > MAX_INPUT_CHARS {
        None
    } else {
        state.store.user(&form.username).await?
    };
    // Who the log and the audit table name: a known user by name, anything else without its
    // text (it may be a password typed into the username box) (issue 15).
    let actor = match &user {
        Some(u) => u.username.clone(),
        None => crate::security::login::unknown_user(&form.username),
    };
    let shown: String = form.username.chars().take(200).collect();
    if let Some((until, why)) = state.login_throttle.refused(&form.username, addr, state.now()) {
        events::login_failed(&state.metrics, &actor, true);
        state
            .store
            .audit(&actor, "login_throttled", "dashboard", state.now())
            .await?;
        let whom = match why {
            Refusal::AccountFromAddress => "for this username from your address",
            Refusal::Address => "from your address",
            Refusal::Account => "for this username",
        };
        let message = format!(
            "too many failed log-ins {whom}; try again after {} UTC",
            until.format("%H:%M")
        );
        let html = LoginPage {
            csrf: &form.csrf,
            username: &shown,
            error: Some(&message),
        }
        .render()?;
        return Ok(page(StatusCode::TOO_MANY_REQUESTS, html));
    }
    // A too-long password still pays the argon2 check (on its first characters), so its
    // answer takes as long as any other (issue 15).
    let too_long = form.password.chars().count() > MAX_INPUT_CHARS;
    let password: String = form.password.chars().take(MAX_INPUT_CHARS).collect();
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    Metrics::inc(&state.metrics.password_checks);
    let verified = password_matches(password, hash).await? && !too_long;
    match user {
        Some(user) if verified => {
            state.login_throttle.succeeded(&form.username, addr);
            start_session(&state, &headers, user).await
        }
        _ => {
            let now = state.now();
            state.login_throttle.failed(&form.username, addr, now);
            events::login_failed(&state.metrics, &actor, false);
            state.store.audit(&actor, "login_failed", "dashboard", now).await?;
            let html = LoginPage {
                csrf: &form.csrf,
                username: &shown,
                error: Some(INVALID_LOGIN),
            }
            .render()?;
            Ok(page(StatusCode::UNAUTHORIZED, html))
        }
    }
}

/// Whether `password` matches `hash`; against a dummy hash (and then `false`) when there is
/// no user, so both cases cost the same.
async fn password_matches(password: String, hash: Option<String>) -> Result<bool, WebError> {
    let _permit = PASSWORD_CHECKS
        .acquire()
        .await
        .map_err(|e| WebError::Internal(format!("password check: {e}")))?;
    tokio::task::spawn_blocking(move || match hash {
        Some(h) => secrets::verify_password(&password, &h),
        None => {
            let _ = secrets::verify_password(&password, &DUMMY_HASH);
            false
        }
    })
    .await
    .map_err(|e| WebError::Internal(format!("password check: {e}")))
}

/// Creates the session, counts and audits the login, and sets the cookie.
async fn start_session(state: &AppState, headers: &HeaderMap, user: UserRow) -> Result<Response, WebError> {
    // A session this browser already had is ended, so a login always gets a fresh token.
    if let Some(old) = cookie(headers, SESSION_COOKIE).filter(|t| !t.is_empty()) {
        state.store.delete_session(&secrets::hash_secret(old)).await?;
    }
    let now = state.now();
    let ttl_secs = state.settings.session_ttl.as_secs();
    let ttl = chrono::Duration::from_std(state.settings.session_ttl)
        .map_err(|e| WebError::Internal(format!("session ttl: {e}")))?;
    let token = secrets::random_secret(SESSION_PREFIX);
    state
        .store
        .create_session(
            &secrets::hash_secret(&token),
            user.id,
            &new_csrf_token(),
            now,
            now + ttl,
        )
        .await?;
    events::login(&state.metrics, &user.username, user.role.as_str());
    state
        .store
        .audit(
            &user.username,
            "login",
            &format!("dashboard session as {}", user.role.as_str()),
            now,
        )
        .await?;
    Ok((
        AppendHeaders([
            (SET_COOKIE, set_cookie(SESSION_COOKIE, &token, "/", ttl_secs)),
            (SET_COOKIE, clear_cookie(CSRF_COOKIE, "/login")),
        ]),
        Redirect::to("/"),
    )
        .into_response())
}

/// `POST /logout`: ends the session (with its CSRF token) and clears the cookie.
pub async fn logout(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    session.check_csrf(&form.csrf)?;
    state.store.delete_session(&session.token_hash).await?;
    tracing::info!(username = ?session.user.username, "dashboard logout");
    state
        .store
        .audit(&session.user.username, "logout", "dashboard", state.now())
        .await?;
    Ok((
        AppendHeaders([(SET_COOKIE, clear_cookie(SESSION_COOKIE, "/"))]),
        Redirect::to("/login"),
    )
        .into_response())
}
