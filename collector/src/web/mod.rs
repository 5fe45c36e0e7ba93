//! The dashboard: server-rendered HTML behind a login.
//!
//! Pages are askama templates under `collector/templates/`, checked at compile time and
//! HTML-escaped on output, so every value an agent sent (hostname, OS, version) and every name
//! a person typed (practice, site, user) reaches the browser as text, never as markup.
//!
//! - [`session`]: the session cookie, the [`session::Session`] extractor and the CSRF checks;
//! - [`login`]: `GET /login`, `POST /login`, `POST /logout`;
//! - [`overview`]: `GET /`, practices, sites and agents with their online state and findings;
//! - [`agent`]: `GET /agents/{agent_id}`, one machine's details and findings.
//!
//! Invariants: only a session token's SHA-256 is stored; every state-changing form carries a
//! CSRF token (double-submit cookie before login, the session's token after); no page loads
//! anything from elsewhere (the CSP in [`security_headers`] forbids it) and the only script is
//! `/static/app.js`, served by the collector ([`live`]).

pub mod agent;
// Technician dashboard (issue 13).
pub mod actions;
pub mod charts;
pub mod delivery;
pub mod domains;
pub mod incidents;
pub mod live;
pub mod login;
pub mod overview;
pub mod practice;
pub mod session;
pub mod throttle;

use askama::Template;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::app::AppState;
use crate::store::StoreError;

/// Dashboard routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(overview::overview))
        .route("/agents/{agent_id}", get(agent::agent_page))
        .route("/login", get(login::login_page).post(login::login))
        .route("/logout", post(login::logout))
        // Technician dashboard (issue 13).
        .route("/practices/{practice_id}", get(practice::practice_page))
        .route("/events", get(live::events))
        .route("/static/app.js", get(live::app_js))
        .route("/practices/{practice_id}/tokens", post(actions::create_token))
        .route("/practices/{practice_id}/policy", post(actions::set_policy))
        .route("/admin/users", get(actions::users_page).post(actions::create_user))
        .route("/admin/audit", get(actions::audit_page))
        // Retention (issue 17).
        .route("/admin/storage", get(actions::storage_page))
        .route("/agents/{agent_id}/revoke", post(actions::revoke_agent))
        .route("/incidents", get(incidents::list))
        .route("/incidents/{id}", get(incidents::detail))
        .route("/incidents/{id}/acknowledge", post(incidents::acknowledge))
        .route("/incidents/{id}/resolve", post(incidents::resolve))
        .route("/incidents/{id}/notes", post(incidents::note))
        // Runtime silences (alerting, issue 12).
        .route("/incidents/silences", post(incidents::create_silence))
        .route("/incidents/silences/{id}/end", post(incidents::end_silence))
}

/// Adds security headers to every response.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        "strict-transport-security",
        HeaderValue::from_static("max-age=31536000"),
    );
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    resp
}

/// Why a dashboard request was not answered with its page.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// No live session: the browser is sent to the login page.
    #[error("login required")]
    LoginRequired,
    /// The page does not exist or the user may not see it (the same answer for both).
    #[error("not found")]
    NotFound,
    /// A form came without its CSRF token or with a wrong one.
    #[error("missing or invalid CSRF token")]
    Csrf,
    /// Something on our side failed; logged, never shown.
    #[error("internal error: {0}")]
    Internal(String),
    /// The user's role may not do this (a technician on an admin page, a practice manager
    /// acting); nothing was changed.
    #[error("forbidden for this role")]
    Forbidden,
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => WebError::NotFound,
            other => WebError::Internal(other.to_string()),
        }
    }
}

impl From<askama::Error> for WebError {
    fn from(e: askama::Error) -> Self {
        WebError::Internal(format!("cannot render page: {e}"))
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match self {
            WebError::LoginRequired => Redirect::to("/login").into_response(),
            WebError::NotFound => {
                let html = NotFoundPage.render().unwrap_or_else(|_| "not found".to_string());
                page(StatusCode::NOT_FOUND, html)
            }
            WebError::Csrf => {
                tracing::warn!("dashboard form refused: missing or invalid csrf token");
                (
                    StatusCode::FORBIDDEN,
                    "forbidden: the form's security token is missing or invalid; reload the page and try again",
                )
                    .into_response()
            }
            WebError::Forbidden => (
                StatusCode::FORBIDDEN,
                [(header::CACHE_CONTROL, "no-store")],
                "forbidden: your role may not open this page or do this",
            )
                .into_response(),
            WebError::Internal(detail) => {
                tracing::error!(error = %detail, "dashboard request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, crate::request::internal_error_body()).into_response()
            }
        }
    }
}

/// The page of a 404.
#[derive(askama::Template)]
#[template(path = "not_found.html")]
pub struct NotFoundPage;

/// A rendered page that no cache keeps (pages show who is logged in and practice data).
pub(crate) fn page(status: StatusCode, html: String) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}
