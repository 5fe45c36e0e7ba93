//! Revocation in the automation API (issue 15), admin keys only: the same services as the CLI
//! ([`crate::security::revoke`]).
//!
//! - `POST /api/v1/agents/{agent_id}/revoke`
//! - `GET /api/v1/apikeys`, `POST /api/v1/apikeys` (`{"role", "practice"?, "label", "expires"?}`),
//!   `POST /api/v1/apikeys/{id}/revoke`
//! - `DELETE /api/v1/users/{username}`

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;

use super::ApiCaller;
use crate::admin::AdminError;
use crate::app::AppState;
use crate::error::ApiError;
use crate::security::revoke;
use crate::store::{ApiKeyRow, Role};

fn admin_only(caller: &ApiCaller) -> Result<(), ApiError> {
    if caller.0.role == Role::Admin {
        Ok(())
    } else {
        Err(ApiError::Forbidden("revocation and API keys need an admin key".into()))
    }
}

fn admin_error(e: AdminError) -> ApiError {
    match e {
        AdminError::Store(s) => s.into(),
        other => ApiError::BadRequest(other.to_string()),
    }
}

/// `POST /api/v1/agents/{agent_id}/revoke`.
pub async fn revoke_agent(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(agent_id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    admin_only(&caller)?;
    let changed = revoke::agent_revoke(state.store.as_ref(), &agent_id, &caller.actor(None)?, state.now())
        .await
        .map_err(admin_error)?;
    Ok(Json(
        serde_json::json!({"agent_id": agent_id, "revoked": true, "changed": changed}),
    ))
}

/// `GET /api/v1/apikeys`.
pub async fn api_keys(State(state): State<AppState>, caller: ApiCaller) -> Result<Json<Vec<ApiKeyRow>>, ApiError> {
    admin_only(&caller)?;
    Ok(Json(state.store.api_keys().await?))
}

/// Body of `POST /api/v1/apikeys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    pub role: String,
    pub practice: Option<String>,
    #[serde(default = "default_label")]
    pub label: String,
    /// Lifetime, e.g. `90d`.
    pub expires: Option<String>,
}

fn default_label() -> String {
    "api".into()
}

/// `POST /api/v1/apikeys`: the key is in the answer, once.
pub async fn create_api_key(
    State(state): State<AppState>,
    caller: ApiCaller,
    Json(body): Json<NewKey>,
) -> Result<Json<serde_json::Value>, ApiError> {
    admin_only(&caller)?;
    let role = Role::parse(&body.role).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "unknown role `{}`; use admin, technician or practice_manager",
            crate::security::echo::capped(&body.role)
        ))
    })?;
    let expires = body
        .expires
        .as_deref()
        .map(crate::config::parse_duration)
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("expires: {e}")))?;
    let k = revoke::apikey_create(
        state.store.as_ref(),
        role,
        body.practice.as_deref(),
        &body.label,
        expires,
        &caller.actor(None)?,
        state.now(),
    )
    .await
    .map_err(admin_error)?;
    Ok(Json(
        serde_json::json!({"id": k.id, "key": k.key, "expires_at": k.expires_at}),
    ))
}

/// `POST /api/v1/apikeys/{id}/revoke`.
pub async fn revoke_api_key(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    admin_only(&caller)?;
    let changed = revoke::apikey_revoke(state.store.as_ref(), id, &caller.actor(None)?, state.now())
        .await
        .map_err(admin_error)?;
    Ok(Json(serde_json::json!({"id": id, "revoked": true, "changed": changed})))
}

/// `DELETE /api/v1/users/{username}`.
pub async fn remove_user(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(username): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    admin_only(&caller)?;
    revoke::user_remove(state.store.as_ref(), &username, &caller.actor(None)?, state.now())
        .await
        .map_err(admin_error)?;
    Ok(Json(serde_json::json!({"username": username, "removed": true})))
}
