//! Who may read `/metrics`, and its fleet figures kept in memory (issue 15, item 3).

use std::future::Future;

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use tokio::sync::Mutex;

use crate::app::AppState;
use crate::error::ApiError;

/// How long the fleet figures of `/metrics` are reused.
pub const FLEET_TTL_SECS: i64 = 15;

/// `/metrics` is served only with `Authorization: Bearer <metrics_token>`; without a token
/// configured it does not exist (`404`).
pub fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &state.settings.metrics_token else {
        return Err(ApiError::NotFound(
            "/metrics is off; set metrics_token in the configuration to serve it".into(),
        ));
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(g) if crate::secrets::constant_time_eq(g, token) => Ok(()),
        _ => Err(ApiError::Unauthorized(
            "/metrics needs Authorization: Bearer <metrics_token>".into(),
        )),
    }
}

/// The last fleet figures and when they were computed (by the collector's clock).
#[derive(Debug, Default)]
pub struct FleetCache {
    last: Mutex<Option<(DateTime<Utc>, String)>>,
}

impl FleetCache {
    /// The figures, computed by `compute` when older than [`FLEET_TTL_SECS`]. One request
    /// computes while the others wait for its answer.
    pub async fn fleet<F, Fut>(&self, state: &AppState, compute: F) -> Result<String, ApiError>
    where
        F: FnOnce(AppState) -> Fut,
        Fut: Future<Output = Result<String, ApiError>>,
    {
        let now = state.now();
        let mut last = self.last.lock().await;
        if let Some((at, text)) = last.as_ref()
            && (now - *at).num_seconds() < FLEET_TTL_SECS
            && now >= *at
        {
            return Ok(text.clone());
        }
        let text = compute(state.clone()).await?;
        *last = Some((now, text.clone()));
        Ok(text)
    }
}
