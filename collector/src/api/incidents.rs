//! Incidents over the automation API (issue 12): list, one with its timeline, acknowledge,
//! resolve, add a note. Scoped like every other read; the handlers only call the alert
//! engine ([`crate::alerting::Engine`]).

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;

use super::ApiCaller;
use crate::alerting::{
    Incident, IncidentDetail, IncidentError, IncidentQuery, IncidentState, SilenceError, SilenceRequest, StoredSilence,
};
use crate::app::AppState;
use crate::error::ApiError;

impl From<IncidentError> for ApiError {
    fn from(e: IncidentError) -> Self {
        match e {
            IncidentError::Store(s) => s.into(),
            IncidentError::Resolved(_) | IncidentError::Invalid(_) => ApiError::BadRequest(e.to_string()),
        }
    }
}

/// Query of `GET /api/v1/incidents`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `open`, `acknowledged`, `resolved`, or `active` (open or acknowledged).
    pub state: Option<String>,
    pub source: Option<String>,
    /// `true`: only incidents not folded into another.
    pub top_level: Option<bool>,
    pub limit: Option<u32>,
}

/// Parses `state=` of the list query and of `incident list --state`.
pub fn states(text: Option<&str>) -> Result<Vec<IncidentState>, String> {
    match text {
        None => Ok(Vec::new()),
        Some("active") => Ok(vec![IncidentState::Open, IncidentState::Acknowledged]),
        Some(s) => IncidentState::parse(s)
            .map(|s| vec![s])
            .ok_or_else(|| format!("state `{s}` is not open, acknowledged, resolved or active")),
    }
}

/// `GET /api/v1/incidents`: incidents the caller sees, newest first.
pub async fn list(
    State(state): State<AppState>,
    ApiCaller(scope, _): ApiCaller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<Incident>>, ApiError> {
    let ListQuery {
        state: st,
        source,
        top_level,
        limit,
    } = q;
    let query = IncidentQuery {
        states: states(st.as_deref()).map_err(ApiError::BadRequest)?,
        source,
        top_level_only: top_level.unwrap_or(false),
        limit: limit.map(|l| l.min(5000)),
    };
    Ok(Json(state.alerts.list(&scope, &query).await?))
}

/// `GET /api/v1/incidents/{id}`: one incident with its timeline, children and notifications.
pub async fn detail(
    State(state): State<AppState>,
    ApiCaller(scope, _): ApiCaller,
    Path(id): Path<i64>,
) -> Result<Json<IncidentDetail>, ApiError> {
    Ok(Json(state.alerts.detail(&scope, id).await?))
}

/// Body of acknowledge, resolve and notes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    /// Who does it (shown in the timeline beside the API key's label, [`ApiCaller::actor`]).
    pub by: Option<String>,
    /// A note (required for `notes`, optional for `resolve`).
    pub note: Option<String>,
}

/// `POST /api/v1/incidents/{id}/acknowledge`.
pub async fn acknowledge(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<i64>,
    body: Option<Json<ActionBody>>,
) -> Result<Json<IncidentDetail>, ApiError> {
    let body = body.map(|b| b.0).unwrap_or_default();
    Ok(Json(
        state
            .alerts
            .acknowledge(&caller.0, id, &caller.actor(body.by.as_deref())?)
            .await?,
    ))
}

/// `POST /api/v1/incidents/{id}/resolve`.
pub async fn resolve(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<i64>,
    body: Option<Json<ActionBody>>,
) -> Result<Json<IncidentDetail>, ApiError> {
    let body = body.map(|b| b.0).unwrap_or_default();
    Ok(Json(
        state
            .alerts
            .resolve_by(&caller.0, id, &caller.actor(body.by.as_deref())?, body.note.as_deref())
            .await?,
    ))
}

/// `POST /api/v1/incidents/{id}/notes`.
pub async fn note(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<i64>,
    Json(body): Json<ActionBody>,
) -> Result<Json<IncidentDetail>, ApiError> {
    let text = body.note.clone().unwrap_or_default();
    Ok(Json(
        state
            .alerts
            .note(&caller.0, id, &caller.actor(body.by.as_deref())?, &text)
            .await?,
    ))
}

// ----- runtime silences (issue 12) -----

impl From<SilenceError> for ApiError {
    fn from(e: SilenceError) -> Self {
        match e {
            SilenceError::Store(s) => s.into(),
            SilenceError::Forbidden => ApiError::Forbidden(e.to_string()),
            SilenceError::NotFound(_) => ApiError::NotFound(e.to_string()),
            SilenceError::Invalid(_) | SilenceError::Over(_) => ApiError::Unprocessable(e.to_string()),
        }
    }
}

/// Query of `GET /api/v1/silences`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceListQuery {
    /// `true`: also the silences that are over.
    pub all: Option<bool>,
}

/// `GET /api/v1/silences`: runtime silences not over yet (or all), newest first. Admins and
/// technicians.
pub async fn silences(
    State(state): State<AppState>,
    ApiCaller(scope, _): ApiCaller,
    Query(q): Query<SilenceListQuery>,
) -> Result<Json<Vec<StoredSilence>>, ApiError> {
    Ok(Json(state.alerts.silences(&scope, q.all.unwrap_or(false)).await?))
}

/// `POST /api/v1/silences`: silence what the matchers select for a period. Admins and
/// technicians; audited.
pub async fn create_silence(
    State(state): State<AppState>,
    caller: ApiCaller,
    Json(body): Json<SilenceRequest>,
) -> Result<(axum::http::StatusCode, Json<StoredSilence>), ApiError> {
    let by = caller.actor(body.by.as_deref())?;
    let s = state.alerts.create_silence(&caller.0, &body, &by).await?;
    Ok((axum::http::StatusCode::CREATED, Json(s)))
}

/// `POST /api/v1/silences/{id}/end`: end a silence early. Admins and technicians; audited.
pub async fn end_silence(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<i64>,
    body: Option<Json<ActionBody>>,
) -> Result<Json<StoredSilence>, ApiError> {
    let body = body.map(|b| b.0).unwrap_or_default();
    Ok(Json(
        state
            .alerts
            .end_silence(&caller.0, id, &caller.actor(body.by.as_deref())?)
            .await?,
    ))
}
