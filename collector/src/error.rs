//! The collector's one API error type.
//!
//! Client mistakes come back as JSON `{"error": "..."}` with a 4xx status; internal errors as
//! a plain 500 whose detail is logged inside the request span and never sent; the body names
//! the request id ([`crate::request`]) so the log lines can be found.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rounds_protocol::ErrorBody;

use crate::store::StoreError;

/// An error answered to an API client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("request body larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Unprocessable(String),
    /// Ingest is saturated: come back after `retry_after_secs` (answered with `Retry-After`).
    #[error("the collector is busy; retry after {retry_after_secs} seconds")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("internal error: {0}")]
    Internal(String),
    /// The agent's credentials were revoked (issue 15): `401` with the `credentials_revoked`
    /// code, so the agent stops instead of retrying.
    #[error("this agent's credentials were revoked; enroll the machine again with a new token")]
    Revoked,
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Revoked => StatusCode::UNAUTHORIZED,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => ApiError::NotFound(e.to_string()),
            StoreError::Conflict { .. } | StoreError::Invalid(_) => ApiError::BadRequest(e.to_string()),
            StoreError::Token(r) => ApiError::Forbidden(format!("enrollment refused: {r}")),
            StoreError::Database { .. } => ApiError::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(error = %detail, "request failed");
            return (status, crate::request::internal_error_body()).into_response();
        }
        let mut resp = (
            status,
            Json(ErrorBody {
                // Messages may quote what the client sent: capped (issue 15).
                error: crate::security::echo::capped_message(&self.to_string()),
                code: matches!(self, ApiError::Revoked)
                    .then(|| rounds_protocol::error_codes::CREDENTIALS_REVOKED.to_string()),
            }),
        )
            .into_response();
        if let ApiError::TooManyRequests { retry_after_secs } = &self {
            crate::api::delivery::retry_after(&mut resp, *retry_after_secs);
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Basic realm=\"rounds\""),
            );
        }
        resp
    }
}
