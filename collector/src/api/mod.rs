//! The JSON API: the agent-facing endpoints ([`agent`]) and the automation API for
//! technicians' tools ([`admin`]), with the extractors they share.

pub mod admin;
pub mod agent;
pub mod delivery;
// Revocation and API keys (issue 15).
pub mod security;

// Alerting (issue 12).
pub mod incidents;
// Tamper acknowledgement (core, issue 11).
pub mod tamper;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use base64::Engine;
use serde::de::DeserializeOwned;

use crate::app::AppState;
use crate::error::ApiError;
use crate::events;
use crate::secrets;
use crate::store::Scope;

/// A JSON body from an agent: size-limited, of a known protocol major version, parsed
/// strictly into `T` with an error that says what is wrong and where.
#[derive(Debug)]
pub struct AgentJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for AgentJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let reject = |e: ApiError| {
            events::report_refused(&state.metrics, None, &e);
            e
        };
        let content_type = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        if !content_type.is_some_and(|c| c.starts_with("application/json")) {
            return Err(reject(ApiError::UnsupportedMediaType(format!(
                "expected content-type application/json, got {}",
                crate::security::echo::capped(content_type.unwrap_or("none"))
            ))));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                reject(ApiError::PayloadTooLarge(state.settings.max_body_bytes))
            } else {
                reject(ApiError::BadRequest(format!("cannot read request body: {e}")))
            }
        })?;
        // Ingest throughput (core, issue 7): the version is read without building the whole
        // body as a `Value` first (that doubled the JSON work of a report); anything unusual
        // (not UTF-8, not an object, invalid, a repeated `protocol`) takes the full path, which
        // answers as before.
        let head = std::str::from_utf8(&bytes)
            .ok()
            .filter(|text| text.trim_start().starts_with('{'))
            .and_then(|text| serde_json::from_str::<Head>(text).ok());
        let value = match head {
            Some(Head { protocol: Some(v) }) => serde_json::json!({ "protocol": v }),
            Some(Head { protocol: None }) => serde_json::json!({}),
            None => serde_json::from_slice(&bytes)
                .map_err(|e| reject(ApiError::BadRequest(format!("request body is not valid JSON: {e}"))))?,
        };
        rounds_protocol::check_version(&value).map_err(|e| reject(ApiError::BadRequest(e.to_string())))?;
        let parsed = serde_json::from_slice(&bytes).map_err(|e| {
            reject(ApiError::Unprocessable(format!(
                "request body does not match the protocol: {e}"
            )))
        })?;
        Ok(AgentJson(parsed))
    }
}

/// The `protocol` field of a JSON object body; every other field is skipped unread.
#[derive(serde::Deserialize)]
struct Head {
    protocol: Option<serde_json::Value>,
}

/// An agent authenticated by HTTP Basic auth (agent id, per-agent secret).
#[derive(Debug, Clone)]
pub struct AuthedAgent(pub String);

impl FromRequestParts<AppState> for AuthedAgent {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let refuse = |msg: &str| {
            let e = ApiError::Unauthorized(msg.to_string());
            events::report_refused(&state.metrics, None, &e);
            e
        };
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| refuse("missing agent credentials"))?;
        let encoded = header
            .strip_prefix("Basic ")
            .ok_or_else(|| refuse("expected Basic agent credentials"))?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| refuse("malformed agent credentials"))?;
        let (id, secret) = decoded
            .split_once(':')
            .ok_or_else(|| refuse("malformed agent credentials"))?;
        let auth = state.store.agent_auth(id).await?;
        match auth {
            Some(a) if secrets::verify_secret(secret, &a.secret_hash) => {
                if a.revoked {
                    // Only to the holder of the right secret: nobody learns which ids are revoked.
                    let e = ApiError::Revoked;
                    events::report_refused(&state.metrics, None, &e);
                    return Err(e);
                }
                // Requests per agent (issue 15): the same 429 as a saturated ingest queue.
                if let Err(retry_after_secs) = state.agent_rate.check(&a.agent_id, state.now()) {
                    tracing::warn!(agent_id = %a.agent_id, retry_after_secs, "agent over its request rate, answering 429");
                    crate::events::Metrics::inc(&state.metrics.reports_rejected);
                    return Err(ApiError::TooManyRequests { retry_after_secs });
                }
                Ok(AuthedAgent(a.agent_id))
            }
            _ => Err(refuse("invalid agent credentials")),
        }
    }
}

/// A caller of the automation API, authenticated by `Authorization: Bearer KEY`: what the key
/// may see, and the key's label.
#[derive(Debug, Clone)]
pub struct ApiCaller(pub Scope, pub String);

impl ApiCaller {
    /// How the audit log and the records a call creates name who did it: the key's label, and
    /// the person the caller names in `by` (at most 100 printable characters), e.g.
    /// `carol (API key "pager-bridge")`.
    pub fn actor(&self, by: Option<&str>) -> Result<String, ApiError> {
        let key: String = self.1.chars().filter(|c| !c.is_control()).take(100).collect();
        match by.map(str::trim) {
            None | Some("") => Ok(format!("API key \"{key}\"")),
            Some(b) if b.len() <= 100 && !b.chars().any(char::is_control) => Ok(format!("{b} (API key \"{key}\")")),
            Some(_) => Err(ApiError::BadRequest("`by` is at most 100 printable characters".into())),
        }
    }
}

impl FromRequestParts<AppState> for ApiCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let key = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::Unauthorized("missing API key: send Authorization: Bearer KEY".into()))?;
        // Revoked and expired keys are refused from the next request on (issue 15).
        match state
            .store
            .api_key_valid(&secrets::hash_secret(key.trim()), state.now())
            .await?
        {
            Some(grant) => Ok(ApiCaller(grant.scope, grant.label)),
            None => Err(ApiError::Unauthorized("invalid API key".into())),
        }
    }
}
