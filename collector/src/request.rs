//! Request ids: every HTTP request runs in a `request` span carrying an id, which the response
//! returns in `x-request-id` and the body of a 500 repeats, so an operator can find the log
//! lines of a user's complaint.
//!
//! The id is the client's `x-request-id` when it is a short token (a proxy's), else a new
//! random one.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The response (and accepted request) header carrying the id.
pub const HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled, if any.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// The text of a 500 body: nothing of the detail, the id to quote.
pub fn internal_error_body() -> String {
    match current() {
        Some(id) => format!("internal server error (request id {id})"),
        None => "internal server error".to_string(),
    }
}

fn acceptable(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Middleware: runs the request in its span with its id, and returns the id.
pub async fn with_id(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| acceptable(id))
        .map(str::to_string)
        .unwrap_or_else(crate::secrets::random_id);
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
    let mut resp = REQUEST_ID.scope(id.clone(), next.run(req).instrument(span)).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(HEADER, v);
    }
    resp
}
