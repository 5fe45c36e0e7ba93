//! `GET /api/v1/practices/{id}/report?from=YYYY-MM-DD&to=YYYY-MM-DD&format=pdf|html|csv`: a
//! report for the dashboard (session cookie) or for automation (`Authorization: Bearer KEY`).
//! A practice manager gets only their own practice (any other answers 404, as an unknown one);
//! every download is issued, recorded and written to the audit log (`report.download`).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{Format, ReportError, ReportService, parse_period};
use crate::app::AppState;
use crate::error::ApiError;
use crate::secrets;
use crate::store::Scope;
use crate::web::session::Session;

/// The query of a report download.
#[derive(Debug, Deserialize)]
pub struct ReportQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    pub format: Option<String>,
}

impl From<ReportError> for ApiError {
    fn from(e: ReportError) -> Self {
        match e {
            ReportError::Usage(m) => ApiError::BadRequest(m),
            ReportError::Forbidden(_) => ApiError::NotFound("unknown practice".into()),
            ReportError::Store(s) => s.into(),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// Who asks: a dashboard user (by name) or an API key, and what they may see.
async fn caller(headers: &HeaderMap, state: &AppState) -> Result<(String, Scope), ApiError> {
    if let Some(key) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
    {
        return match state.store.api_key(&secrets::hash_secret(key.trim())).await? {
            Some(scope) => Ok(("api-key".to_string(), scope)),
            None => Err(ApiError::Unauthorized("invalid API key".into())),
        };
    }
    match Session::from_headers(headers, state).await {
        Ok(Some(session)) => Ok((session.user.username.clone(), session.scope())),
        Ok(None) => Err(ApiError::Unauthorized(
            "log in to the dashboard or send Authorization: Bearer KEY".into(),
        )),
        Err(e) => Err(ApiError::Internal(e.to_string())),
    }
}

/// Serves one report download.
pub async fn download(
    State(state): State<AppState>,
    Path(practice_id): Path<i64>,
    Query(q): Query<ReportQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (actor, scope) = caller(&headers, &state).await?;
    let service = ReportService::for_app(&state)?;
    let practice = service.practice_by_id(&scope, practice_id).await?;
    let from = q
        .from
        .ok_or_else(|| ApiError::BadRequest("query parameter `from` (YYYY-MM-DD) is missing".into()))?;
    let to =
        q.to.ok_or_else(|| ApiError::BadRequest("query parameter `to` (YYYY-MM-DD) is missing".into()))?;
    let period = parse_period(&from, &to).map_err(|e| ApiError::BadRequest(e.to_string().replace("--", "")))?;
    let format = Format::parse(q.format.as_deref().unwrap_or("pdf"))?;
    let issued = service
        .issue(&practice, period, format, &actor, "report.download")
        .await?;
    let disposition = format!("attachment; filename=\"{}\"", issued.file_name());
    let mut resp = issued.bytes.clone().into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&issued.record.report_id) {
        h.insert("x-rounds-report-id", v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
