//! `POST /api/v1/agents/{id}/tamper/{tamper_id}/acknowledge` (issue 11): a person acknowledges
//! a tamper event of an agent's watched log, through [`crate::tamper::acknowledge`] (the
//! service `rounds-collector audit ack` calls). Admins and technicians only; an agent the
//! caller's scope does not see is `404`.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;

use super::ApiCaller;
use crate::app::AppState;
use crate::error::ApiError;
use crate::store::{Role, TamperRow};
use crate::tamper::{self, AckError};

/// The body: who acknowledges, and why.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    /// The person who acknowledges (kept in the history and the audit log).
    pub by: String,
    /// Why the change to the log is accepted.
    pub reason: String,
}

impl From<AckError> for ApiError {
    fn from(e: AckError) -> Self {
        match e {
            AckError::UnknownAgent(_) | AckError::UnknownTamper { .. } => ApiError::NotFound(e.to_string()),
            AckError::AlreadyAcknowledged { .. } | AckError::Missing(_) => ApiError::Unprocessable(e.to_string()),
            AckError::Store(e) => e.into(),
        }
    }
}

/// `POST /api/v1/agents/{agent_id}/tamper/{tamper_id}/acknowledge` with `{"by", "reason"}`.
pub async fn acknowledge(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((agent_id, tamper_id)): Path<(String, String)>,
    Json(body): Json<AckBody>,
) -> Result<Json<TamperRow>, ApiError> {
    let scope = &caller.0;
    // Out of scope is not found, before the role is looked at.
    state.store.agent(scope, &agent_id).await?;
    if scope.role == Role::PracticeManager {
        return Err(ApiError::Forbidden(
            "acknowledging a tamper event needs the admin or technician role".into(),
        ));
    }
    let AckBody { by, reason } = body;
    let row = tamper::acknowledge(
        &state.evaluator,
        scope,
        &caller.actor(None)?,
        &agent_id,
        &tamper_id,
        &by,
        &reason,
    )
    .await?;
    Ok(Json(row))
}
