//! Agent-facing endpoints: enroll, heartbeat, reports, configuration.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rounds_protocol::{
    AgentConfig, EnrollRequest, EnrollResponse, Heartbeat, HeartbeatAck, PROTOCOL_MAJOR, Report, ReportAck,
};

use super::{AgentJson, AuthedAgent};
use crate::app::AppState;
use crate::error::ApiError;
use crate::events;
use crate::secrets;
use crate::store::{Ingested, NewAgent, StoreError};

/// Largest number of observations in one report.
pub const MAX_OBSERVATIONS_PER_REPORT: usize = 10_000;

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

fn same_agent(authed: &AuthedAgent, claimed: &str) -> Result<(), ApiError> {
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
        .heartbeat(&agent.0, &hb.agent_version, hb.sent_at)
        .await?;
    let now = state.now();
    Ok(Json(HeartbeatAck {
        received_at: now,
        config_etag: Some(state.agent_config.etag.clone()),
    }))
}

/// `POST /api/v1/agent/reports`: stores a report once per `(agent, sequence)`, and answers
/// only after the transaction has committed. A newly stored report is then evaluated against
/// the policy and the agent's findings replaced.
pub async fn report(
    State(state): State<AppState>,
    agent: AuthedAgent,
    AgentJson(report): AgentJson<Report>,
) -> Result<Json<ReportAck>, ApiError> {
    let refuse = |e: ApiError| {
        events::report_refused(&state.metrics, Some(&agent.0), &e);
        e
    };
    same_agent(&agent, &report.agent_id).map_err(refuse)?;
    check_report(&report).map_err(refuse)?;
    // The report is committed before the answer; a failed evaluation is logged and counted,
    // and the next report evaluates again: the agent must not resend what is already stored.
    let outcome = state.evaluator.ingest(&agent.0, &report).await?;
    let stored = outcome.ingested == Ingested::Stored;
    Ok(Json(ReportAck {
        sequence: report.sequence,
        stored,
        next_expected: None,
    }))
}

/// Refuses a report that breaks the protocol's limits.
fn check_report(report: &Report) -> Result<(), ApiError> {
    if report.sequence == 0 || report.sequence > i64::MAX as u64 {
        return Err(ApiError::Unprocessable(
            "field `sequence` must be between 1 and 2^63-1".into(),
        ));
    }
    if report.observations.len() > MAX_OBSERVATIONS_PER_REPORT {
        return Err(ApiError::Unprocessable(format!(
            "report has {} observations; at most {MAX_OBSERVATIONS_PER_REPORT} are accepted",
            report.observations.len()
        )));
    }
    for (i, o) in report.observations.iter().enumerate() {
        if o.kind.is_empty() || o.kind.len() > 64 || o.subject.len() > 1024 {
            return Err(ApiError::Unprocessable(format!(
                "observation {i}: `kind` must be 1 to 64 characters and `subject` at most 1024"
            )));
        }
    }
    Ok(())
}

/// The configuration served to agents and its `ETag`, made once from the settings (they do
/// not change while the collector runs), not on every heartbeat.
#[derive(Debug, Clone)]
pub struct ServedConfig {
    pub config: AgentConfig,
    pub etag: String,
}

impl ServedConfig {
    pub fn new(settings: &crate::config::Settings) -> Self {
        // Until configuration is set per practice and site, every agent gets every default
        // (every check, default schedules) with the collector's heartbeat interval.
        let toml = format!("heartbeat_interval_secs = {}\n", settings.heartbeat_interval.as_secs());
        let version = format!("\"{}\"", &secrets::hash_secret(&toml)[..16]);
        let config = AgentConfig {
            protocol: PROTOCOL_MAJOR,
            version: version.clone(),
            origin: "default".into(),
            toml,
        };
        ServedConfig { config, etag: version }
    }
}

/// `GET /api/v1/agent/config`: the agent's effective configuration, with an `ETag`.
pub async fn config(State(state): State<AppState>, _agent: AuthedAgent, headers: HeaderMap) -> Response {
    let served = &state.agent_config;
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(served.etag.as_str()) {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let mut resp = Json(&served.config).into_response();
    if let Ok(v) = HeaderValue::from_str(&served.etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}
