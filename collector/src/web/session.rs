//! Dashboard sessions and CSRF tokens.
//!
//! A session is a 256-bit random token in the `rounds_session` cookie (`HttpOnly; Secure;
//! SameSite=Strict`); the store keeps only its SHA-256, with the user, an expiry and the
//! session's CSRF token, which every form of a logged-in page carries in a hidden field.
//!
//! Before login there is no session, so the login form uses a double-submit token: `GET /login`
//! sets a random `rounds_csrf` cookie and puts the same value in the form; `POST /login` accepts
//! only when both are present and equal (compared in constant time).

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use axum::http::request::Parts;

use super::WebError;
use crate::app::AppState;
use crate::secrets;
use crate::store::{Scope, SessionRow};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "rounds_session";
/// Name of the login form's double-submit CSRF cookie.
pub const CSRF_COOKIE: &str = "rounds_csrf";
/// Prefix of session tokens.
pub const SESSION_PREFIX: &str = "rnd_ses_";
/// Prefix of CSRF tokens (login cookie and per-session).
pub const CSRF_PREFIX: &str = "rnd_csrf_";
/// Lifetime of the login form's CSRF cookie, in seconds.
pub const LOGIN_CSRF_MAX_AGE_SECS: u64 = 3600;

/// The value of cookie `name` in the request's `Cookie` headers, if any.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().trim_matches('"'))
}

/// A `Set-Cookie` value for a cookie no script can read and no other site can send.
pub fn set_cookie(name: &str, value: &str, path: &str, max_age_secs: u64) -> String {
    format!("{name}={value}; Path={path}; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age_secs}")
}

/// A `Set-Cookie` value that removes a cookie set with [`set_cookie`].
pub fn clear_cookie(name: &str, path: &str) -> String {
    set_cookie(name, "", path, 0)
}

/// A fresh CSRF token.
pub fn new_csrf_token() -> String {
    secrets::random_secret(CSRF_PREFIX)
}

/// Whether `v` looks like a token made by [`new_csrf_token`] (so a browser's existing login
/// cookie can be reused across tabs, and nothing else is echoed into a page).
pub fn is_csrf_token(v: &str) -> bool {
    v.strip_prefix(CSRF_PREFIX)
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether a submitted CSRF token matches the expected one. Empty values never match.
pub fn csrf_matches(expected: Option<&str>, submitted: &str) -> bool {
    match expected {
        Some(e) if !e.is_empty() && !submitted.is_empty() => secrets::constant_time_eq(e, submitted),
        _ => false,
    }
}

/// A logged-in user, from a live session. As an extractor it sends anyone without one to
/// the login page.
#[derive(Debug, Clone)]
pub struct Session {
    /// SHA-256 of the session token: the store's key.
    pub token_hash: String,
    pub user: SessionRow,
}

impl Session {
    /// The live session named by the request's cookie, if any.
    pub async fn from_headers(headers: &HeaderMap, state: &AppState) -> Result<Option<Session>, WebError> {
        let Some(token) = cookie(headers, SESSION_COOKIE).filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        let token_hash = secrets::hash_secret(token);
        Ok(state
            .store
            .session(&token_hash, state.now())
            .await?
            .map(|user| Session { token_hash, user }))
    }

    /// What this user may see.
    pub fn scope(&self) -> Scope {
        Scope {
            role: self.user.role,
            practice_id: self.user.practice_id,
        }
    }

    /// Accepts a form only when it carries this session's CSRF token.
    pub fn check_csrf(&self, submitted: &str) -> Result<(), WebError> {
        if csrf_matches(Some(&self.user.csrf_token), submitted) {
            Ok(())
        } else {
            Err(WebError::Csrf)
        }
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Session::from_headers(&parts.headers, state)
            .await?
            .ok_or(WebError::LoginRequired)
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn cookies_are_found_among_others_and_across_headers() {
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_static("a=1; rounds_session_x=no;  theme=dark"),
        );
        h.append(COOKIE, HeaderValue::from_static("rounds_session=rnd_ses_abc; b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("rnd_ses_abc"));
        assert_eq!(cookie(&h, "theme"), Some("dark"));
        assert_eq!(cookie(&h, "rounds"), None);
        assert_eq!(cookie(&HeaderMap::new(), SESSION_COOKIE), None);
    }

    #[test]
    fn csrf_tokens() {
        let t = new_csrf_token();
        assert!(is_csrf_token(&t));
        assert!(!is_csrf_token("rnd_csrf_<script>"));
        assert!(!is_csrf_token(&t[..t.len() - 1]));
        assert!(csrf_matches(Some(&t), &t));
        assert!(!csrf_matches(Some(&t), &new_csrf_token()));
        assert!(!csrf_matches(Some(""), ""));
        assert!(!csrf_matches(None, &t));
    }

    #[test]
    fn cookies_are_locked_down() {
        assert_eq!(
            set_cookie(SESSION_COOKIE, "v", "/", 60),
            "rounds_session=v; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=60"
        );
        assert!(clear_cookie(CSRF_COOKIE, "/login").ends_with("Max-Age=0"));
    }
}
