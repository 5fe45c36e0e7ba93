//! Agent-facing endpoints: enroll, heartbeat, reports, configuration.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rounds_protocol::{EnrollRequest, EnrollResponse, Heartbeat, HeartbeatAck, PROTOCOL_MAJOR, Report};

use super::{AgentJson, AuthedAgent};
use crate::app::AppState;
use crate::error::ApiError;
use crate::events;
use crate::secrets;
use crate::store::{AgentReportedState, NewAgent, StoreError};

pub use super::delivery::MAX_OBSERVATIONS_PER_REPORT;

fn short(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > max || value.chars().any(char::is_control) {
        return Err(ApiError::Unprocessable(format!(
            "field `{field}` must be 1 to {max} characters without control characters"
        )));
    }
    Ok(())
}

/// `POST /api/v1/agent/enroll`: trades a one-time token for an agent id and secret.
pub async fn enroll(
    State(state): State<AppState>,
    AgentJson(req): AgentJson<EnrollRequest>,
) -> Result<Json<EnrollResponse>, ApiError> {
    let EnrollRequest {
        protocol: _,
        token,
        hostname,
        os,
        agent_version,
    } = req;
    short("hostname", &hostname, 253)?;
    short("os", &os, 32)?;
    short("agent_version", &agent_version, 64)?;
    let agent_id = secrets::random_id();
    let secret = secrets::random_secret("rnd_agt_");
    let new = NewAgent {
        agent_id: agent_id.clone(),
        secret_hash: secrets::hash_secret(&secret),
        hostname: hostname.clone(),
        os,
        agent_version,
    };
    let now = state.now();
    // Redeeming the token, creating the agent and its audit entry commit together or not at all.
    let mut tx = state.store.begin().await?;
    match tx.enroll(&secrets::hash_secret(token.trim()), new, now).await {
        Ok(e) => {
            let detail = format!("agent {agent_id} ({hostname}) at {}/{}", e.practice, e.site);
            tx.audit("enrollment", "agent.enroll", &detail, now).await?;
            tx.commit().await?;
            events::enrolled(&state.metrics, &agent_id, &hostname, &e.practice, &e.site);
            Ok(Json(EnrollResponse {
                protocol: PROTOCOL_MAJOR,
                agent_id,
                agent_secret: secret,
                practice: e.practice,
                site: e.site,
                heartbeat_interval_secs: state.settings.heartbeat_interval.as_secs(),
            }))
        }
        Err(StoreError::Token(reason)) => {
            events::enrollment_refused(&state.metrics, &hostname, &reason);
            Err(ApiError::Forbidden(format!("enrollment refused: {reason}")))
        }
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn same_agent(authed: &AuthedAgent, claimed: &str) -> Result<(), ApiError> {
    if authed.0 != claimed {
        return Err(ApiError::Forbidden(format!(
            "agent {} may not send on behalf of agent {}",
            authed.0,
            claimed.chars().take(64).collect::<String>()
        )));
    }
    Ok(())
}

/// `POST /api/v1/agent/heartbeat`.
pub async fn heartbeat(
    State(state): State<AppState>,
    agent: AuthedAgent,
    AgentJson(hb): AgentJson<Heartbeat>,
) -> Result<Json<HeartbeatAck>, ApiError> {
    same_agent(&agent, &hb.agent_id)?;
    short("agent_version", &hb.agent_version, 64)?;
    state
        .evaluator
        .heartbeat(&agent.0, &hb.agent_version, hb.sent_at, &reported_state(&hb))
        .await?;
    let now = state.now();
    Ok(Json(HeartbeatAck {
        received_at: now,
        config_etag: match effective_config(&state, &agent.0).await {
            Ok(e) => Some(e.version),
            Err(error) => {
                tracing::error!(agent_id = %agent.0, %error, "cannot build the agent's configuration for its heartbeat");
                None
            }
        },
    }))
}

/// What a heartbeat says about the agent's configuration and spool, bounded in size.
fn reported_state(hb: &Heartbeat) -> AgentReportedState {
    let bounded = |v: &Option<String>, max: usize| v.as_ref().map(|s| s.chars().take(max).collect::<String>());
    AgentReportedState {
        config_version: bounded(&hb.config_version, 128),
        config_error: bounded(&hb.config_error, 4000),
        spool_depth: hb.spool_depth,
        spool_error: bounded(&hb.spool_error, 1000),
    }
}

/// `POST /api/v1/agent/reports`: stores a report once per `(agent, sequence)`, and answers
/// only after the transaction has committed (see [`super::delivery`]). A newly stored report is
/// then evaluated against the policy and the agent's findings replaced.
pub async fn report(
    State(state): State<AppState>,
    agent: AuthedAgent,
    AgentJson(report): AgentJson<Report>,
) -> Result<Response, ApiError> {
    super::delivery::one(&state, &agent, report).await
}

/// The agent's effective central configuration (see [`crate::agent_config`]).
async fn effective_config(state: &AppState, agent_id: &str) -> Result<crate::agent_config::Effective, ApiError> {
    let sources = state.store.agent_config_sources(agent_id).await?;
    state
        .agent_configs
        .for_agent(state.settings.heartbeat_interval.as_secs(), &sources)
        .map_err(|e| ApiError::Internal(format!("agent {agent_id}: stored configuration does not merge: {e}")))
}

/// `GET /api/v1/agent/config`: the agent's effective configuration, with an `ETag`; `304` when
/// `If-None-Match` names it.
pub async fn config(
    State(state): State<AppState>,
    agent: AuthedAgent,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let e = effective_config(&state, &agent.0).await?;
    let etag = HeaderValue::from_str(&e.version).ok();
    let mut resp = if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(e.version.as_str()) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Json(e.served()).into_response()
    };
    if let Some(v) = etag {
        resp.headers_mut().insert(header::ETAG, v);
    }
    Ok(resp)
}
