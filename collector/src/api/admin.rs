//! The automation API (`Authorization: Bearer KEY`), `/healthz` and `/metrics`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ApiCaller;
use crate::app::AppState;
use crate::error::ApiError;
use crate::store::{ChangeQuery, FindingChange, FindingCounts, FindingRow, StoredObservation};

/// A site with its agents' state, in `GET /api/v1/practices`.
#[derive(Debug, Serialize)]
pub struct SiteView {
    pub name: String,
    pub agents: usize,
    pub agents_online: usize,
}

/// A practice, in `GET /api/v1/practices`.
#[derive(Debug, Serialize)]
pub struct PracticeView {
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub sites: Vec<SiteView>,
}

/// An agent, in `GET /api/v1/agents`.
#[derive(Debug, Serialize)]
pub struct AgentView {
    pub agent_id: String,
    pub hostname: String,
    pub practice: String,
    pub site: String,
    pub os: String,
    /// OS name and version from the newest inventory, when there is one.
    pub os_description: Option<String>,
    pub agent_version: String,
    pub online: bool,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub last_report_at: Option<DateTime<Utc>>,
    pub last_sequence: u64,
    pub enrolled_at: DateTime<Utc>,
    /// The agent's current findings by status; all zero before its first evaluation.
    pub findings: FindingCounts,
}

/// `GET /api/v1/practices`: practices visible to the caller, with sites and agent counts.
pub async fn practices(
    State(state): State<AppState>,
    ApiCaller(scope, _): ApiCaller,
) -> Result<Json<Vec<PracticeView>>, ApiError> {
    let practices = state.store.practices(&scope).await?;
    let agents = state.store.agents(&scope).await?;
    let grouped = by_site(&agents, |a| (a.practice.as_str(), a.site.as_str()));
    Ok(Json(
        practices
            .into_iter()
            .map(|p| PracticeView {
                sites: p
                    .sites
                    .iter()
                    .map(|s| {
                        let here = grouped
                            .get(&(p.name.as_str(), s.as_str()))
                            .map(Vec::as_slice)
                            .unwrap_or(&[]);
                        SiteView {
                            name: s.clone(),
                            agents: here.len(),
                            agents_online: here.iter().filter(|a| state.is_online(a.last_seen_at)).count(),
                        }
                    })
                    .collect(),
                name: p.name,
                created_at: p.created_at,
            })
            .collect(),
    ))
}

/// Agents grouped by (practice, site) name, each group in the given order: one pass, so
/// listing many practices does not scan every agent once per site.
pub fn by_site<'a, T>(
    agents: &'a [T],
    key: impl Fn(&'a T) -> (&'a str, &'a str),
) -> std::collections::HashMap<(&'a str, &'a str), Vec<&'a T>> {
    let mut groups: std::collections::HashMap<(&str, &str), Vec<&T>> = std::collections::HashMap::new();
    for a in agents {
        groups.entry(key(a)).or_default().push(a);
    }
    groups
}

/// Agents visible to `scope`, with online state, for the API and the dashboard.
pub async fn agent_views(state: &AppState, scope: &crate::store::Scope) -> Result<Vec<AgentView>, ApiError> {
    Ok(state
        .store
        .agents(scope)
        .await?
        .into_iter()
        .map(|a| agent_view(state, a))
        .collect())
}

/// One agent with its online state.
pub fn agent_view(state: &AppState, a: crate::store::AgentRow) -> AgentView {
    AgentView {
        online: state.is_online(a.last_seen_at),
        agent_id: a.agent_id,
        hostname: a.hostname,
        practice: a.practice,
        site: a.site,
        os: a.os,
        os_description: a.os_description,
        agent_version: a.agent_version,
        last_seen_at: a.last_seen_at,
        last_report_at: a.last_report_at,
        last_sequence: a.last_sequence,
        enrolled_at: a.enrolled_at,
        findings: a.findings,
    }
}

/// `GET /api/v1/agents`: agents visible to the caller, online or offline, and last seen.
pub async fn agents(
    State(state): State<AppState>,
    ApiCaller(scope, _): ApiCaller,
) -> Result<Json<Vec<AgentView>>, ApiError> {
    Ok(Json(agent_views(&state, &scope).await?))
}

/// Query of `GET /api/v1/agents/{id}/observations`.
#[derive(Debug, Deserialize)]
pub struct ObservationQuery {
    /// Only this observation kind, e.g. `inventory`.
    pub kind: Option<String>,
}

/// `GET /api/v1/agents/{id}/observations[?kind=K]`: the newest observation per kind and subject.
pub async fn observations(
    State(state): State<AppState>,
    ApiCaller(scope, _): ApiCaller,
    Path(agent_id): Path<String>,
    Query(q): Query<ObservationQuery>,
) -> Result<Json<Vec<StoredObservation>>, ApiError> {
    Ok(Json(
        state
            .store
            .latest_observations(&scope, &agent_id, q.kind.as_deref())
            .await?,
    ))
}

/// Query of `GET /api/v1/agents/{id}/findings`.
#[derive(Debug, Deserialize)]
pub struct FindingsQuery {
    /// RFC 3339: the findings as they stood at that time instead of now.
    pub at: Option<String>,
}

/// Query of `GET /api/v1/agents/{id}/findings/history`.
#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    /// RFC 3339, inclusive.
    pub from: Option<String>,
    /// RFC 3339, exclusive; now when absent.
    pub to: Option<String>,
}

/// An RFC 3339 query parameter, or a 400 naming it.
fn time_param(name: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            ApiError::BadRequest(format!(
                "query parameter `{name}`: `{value}` is not an RFC 3339 time: {e}"
            ))
        })
}

/// `GET /api/v1/agents/{id}/findings[?at=RFC3339]`: the agent's current finding per policy
/// rule, with evidence, citations and since when each status holds; with `at`, as they stood
/// at that time.
pub async fn findings(
    State(state): State<AppState>,
    ApiCaller(scope, _): ApiCaller,
    Path(agent_id): Path<String>,
    Query(q): Query<FindingsQuery>,
) -> Result<Json<Vec<FindingRow>>, ApiError> {
    match q.at {
        None => Ok(Json(state.store.findings(&scope, &agent_id).await?)),
        Some(at) => {
            let at = time_param("at", &at)?;
            Ok(Json(state.store.findings_at(&scope, &agent_id, at).await?))
        }
    }
}

/// `GET /api/v1/agents/{id}/findings/history?from=RFC3339[&to=RFC3339]`: every change of the
/// agent's findings recorded in `from..to`, oldest first.
pub async fn findings_history(
    State(state): State<AppState>,
    ApiCaller(scope, _): ApiCaller,
    Path(agent_id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<Vec<FindingChange>>, ApiError> {
    let from = q
        .from
        .as_deref()
        .map(|v| time_param("from", v))
        .transpose()?
        .ok_or_else(|| ApiError::BadRequest("query parameter `from` (RFC 3339) is required".into()))?;
    let to = match q.to.as_deref() {
        Some(v) => time_param("to", v)?,
        None => state.now() + chrono::Duration::milliseconds(1),
    };
    if to < from {
        return Err(ApiError::BadRequest("query parameter `to` is before `from`".into()));
    }
    let query = ChangeQuery {
        agent_id: Some(agent_id),
        practice_id: None,
        from,
        to,
    };
    Ok(Json(state.store.finding_changes(&scope, &query).await?))
}

/// `GET /healthz`: answers without authentication, touching no database (issue 15: anyone
/// can call it, so it costs nothing).
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

/// `GET /metrics`: Prometheus text format, for the holder of `metrics_token` only (issue 15);
/// `404` when no token is configured. The fleet figures are computed at most every
/// [`crate::security::metrics::FLEET_TTL_SECS`] seconds, on a read connection.
pub async fn metrics(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    crate::security::metrics::authorize(&state, &headers)?;
    let fleet = state.metrics_cache.fleet(&state, fleet_figures).await?;
    let mut text = state.metrics.render();
    text.push_str(&fleet);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}

/// The fleet gauges of `/metrics`, from the store.
async fn fleet_figures(state: AppState) -> Result<String, ApiError> {
    let everyone = crate::store::Scope {
        role: crate::store::Role::Admin,
        practice_id: None,
    };
    let agents = state.store.agents(&everyone).await?;
    let online = agents.iter().filter(|a| state.is_online(a.last_seen_at)).count();
    let failing = agents.iter().filter(|a| a.findings.fail > 0).count();
    Ok(format!(
        "# HELP rounds_agents Enrolled agents by heartbeat state.\n# TYPE rounds_agents gauge\n\
         rounds_agents{{state=\"online\"}} {online}\nrounds_agents{{state=\"offline\"}} {}\n\
         # HELP rounds_agents_failing Agents with at least one failing finding.\n\
         # TYPE rounds_agents_failing gauge\nrounds_agents_failing {failing}\n",
        agents.len() - online
    ))
}

/// `GET /api/v1/openapi.json`: the OpenAPI document of this API.
pub async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
}
