//! Acknowledged, idempotent ingest (`POST /api/v1/agent/reports` and `/reports/batch`) behind a
//! bounded gate, and an agent's delivery state (`GET /api/v1/agents/{id}`).
//!
//! - A report or batch is acknowledged only after its unit of work committed; a batch is one
//!   unit of work (all its reports or none).
//! - A resend (same content at a stored sequence) is acknowledged again with `stored: false`;
//!   other content at a stored sequence is answered `409` with a
//!   [`SequenceConflict`](rounds_protocol::SequenceConflict) (nothing of the request is stored),
//!   logged as a warning and recorded as an integrity problem.
//! - At most [`IngestGate`]'s capacity of ingest requests wait for or use the store; one that
//!   cannot get in within its wait is answered `429` with `Retry-After` (a few seconds, with
//!   jitter), never a 5xx: agents back off and come back spread out.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use rounds_protocol::obs::{AuditLog, Payload};
use rounds_protocol::{BatchAck, Report, ReportAck, ReportBatch, SequenceConflict};
use serde::Serialize;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::admin::AgentView;
use super::{AgentJson, ApiCaller, AuthedAgent};
use crate::app::{AppState, Metrics};
use crate::error::ApiError;
use crate::store::common::{JOURNAL_SUBJECT, RESERVED_CHECK_PREFIX};
use crate::store::{Delivery, DeliveryStatus, IncomingReport};

/// Largest number of observations in one report.
pub const MAX_OBSERVATIONS_PER_REPORT: usize = 10_000;
/// Largest number of reports in one batch (the request body limit applies as well).
pub const MAX_BATCH_REPORTS: usize = 500;
/// Default number of ingest requests that may wait for or use the store at once.
pub const DEFAULT_INGEST_CAPACITY: usize = 64;
/// Default time a request waits to get into the gate before it is answered `429`.
pub const DEFAULT_INGEST_WAIT: Duration = Duration::from_secs(2);

/// The bounded queue in front of the store for ingest.
#[derive(Debug)]
pub struct IngestGate {
    permits: Semaphore,
    wait: Duration,
}

impl Default for IngestGate {
    fn default() -> Self {
        IngestGate::new(DEFAULT_INGEST_CAPACITY, DEFAULT_INGEST_WAIT)
    }
}

impl IngestGate {
    /// A gate letting `capacity` requests in at once; others wait up to `wait`.
    pub fn new(capacity: usize, wait: Duration) -> Self {
        IngestGate {
            permits: Semaphore::new(capacity),
            wait,
        }
    }

    /// Enters the gate, or `429` with a `Retry-After` of 2 to 6 seconds (jittered so that the
    /// refused agents do not come back together).
    pub async fn enter(&self, metrics: &Metrics) -> Result<SemaphorePermit<'_>, ApiError> {
        match tokio::time::timeout(self.wait, self.permits.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                Metrics::inc(&metrics.reports_rejected);
                let retry_after_secs = rand::thread_rng().gen_range(2..=6);
                tracing::warn!(retry_after_secs, "ingest saturated, answering 429");
                Err(ApiError::TooManyRequests { retry_after_secs })
            }
        }
    }

    /// Takes every permit (tests: a saturated collector).
    pub fn try_take(&self, n: u32) -> Option<SemaphorePermit<'_>> {
        self.permits.try_acquire_many(n).ok()
    }
}

/// The checks every incoming report passes before it reaches the store.
pub fn check_report(authed: &AuthedAgent, report: &Report) -> Result<(), ApiError> {
    super::agent::same_agent(authed, &report.agent_id)?;
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
    // The collector writes its own verdicts into the agent's current state (the journal's
    // integrity, as `collector.chain`): an agent may not name that check nor write that row.
    if let Some(check) = &report.check
        && check.starts_with(RESERVED_CHECK_PREFIX)
    {
        return Err(ApiError::Unprocessable(format!(
            "field `check`: `{check}` is reserved: check names starting with `{RESERVED_CHECK_PREFIX}` are the collector's own"
        )));
    }
    for (i, o) in report.observations.iter().enumerate() {
        if o.kind.is_empty() || o.kind.len() > 64 || o.subject.len() > 1024 {
            return Err(ApiError::Unprocessable(format!(
                "observation {i}: `kind` must be 1 to 64 characters and `subject` at most 1024"
            )));
        }
        if o.kind == AuditLog::KIND && o.subject == JOURNAL_SUBJECT {
            return Err(ApiError::Unprocessable(format!(
                "observation {i}: `{}` of subject `{JOURNAL_SUBJECT}` is the collector's own record of the agent's journal; an agent may not send it",
                AuditLog::KIND
            )));
        }
    }
    for d in &report.dropped {
        if d.first > d.last || d.last >= report.sequence || d.reason.len() > 64 {
            return Err(ApiError::Unprocessable(format!(
                "dropped range {}..{} must be ordered, before sequence {} and have a reason of at most 64 characters",
                d.first, d.last, report.sequence
            )));
        }
    }
    Ok(())
}

fn conflict(next_expected: u64, sequence: u64, chain_hash: Option<String>) -> Response {
    (
        StatusCode::CONFLICT,
        Json(SequenceConflict {
            error: format!(
                "sequence {sequence} is already stored with other content; the next sequence expected is {next_expected}"
            ),
            next_expected,
            chain_hash,
        }),
    )
        .into_response()
}

/// Records a conflicting resend as an integrity problem (its own unit of work: the request's
/// was rolled back) and answers `409`.
async fn refuse_conflict(
    state: &AppState,
    agent_id: &str,
    sequence: u64,
    stored_digest: Option<&str>,
    new_digest: &str,
    next_expected: u64,
) -> Result<Response, ApiError> {
    tracing::warn!(
        agent_id,
        sequence,
        next_expected,
        "report sequence already stored with other content (agent state restored from an old backup?), answering 409"
    );
    let problem = crate::delivery::rewritten(sequence, stored_digest, new_digest);
    let mut tx = state.store.begin().await?;
    tx.record_integrity(agent_id, &[problem], state.now()).await?;
    tx.commit().await?;
    // The journal's integrity is judged with the agent's other audit logs.
    let _ = state.evaluator.evaluate_agent(agent_id).await;
    // The agent chains what it renumbers to the head of our copy of its chain: the event is
    // recorded once, here, not again as a rollback at the first renumbered report.
    let collector = crate::store::Scope {
        role: crate::store::Role::Admin,
        practice_id: None,
    };
    let status = state.store.delivery_status(&collector, agent_id).await?;
    let chain_hash = status
        .chain_hash
        .filter(|_| status.chain_sequence.is_some_and(|s| s + 1 == next_expected));
    Ok(conflict(next_expected, sequence, chain_hash))
}

fn log_problems(agent_id: &str, problems: &[crate::delivery::IntegrityProblem]) {
    for p in problems {
        tracing::warn!(agent_id, sequence = p.sequence, kind = p.kind.as_str(), detail = %p.detail, "agent chain integrity problem");
    }
}

/// A report received at `now`, as the store takes it.
fn incoming<'a>(state: &AppState, report: &'a Report, now: chrono::DateTime<chrono::Utc>) -> IncomingReport<'a> {
    IncomingReport {
        report,
        received_at: now,
        future_after: state.evaluator.future_after(now),
    }
}

/// Stores one report (the body of `POST /api/v1/agent/reports`).
pub async fn one(state: &AppState, agent: &AuthedAgent, report: Report) -> Result<Response, ApiError> {
    check_report(agent, &report)?;
    let _permit = state.ingest_gate.enter(&state.metrics).await?;
    let first = state.evaluator.awaiting_first_report(&agent.0).await?;
    let now = state.now();
    // One unit of work, committed with other agents' units (group commit) before the answer;
    // the evaluation's input is read with it, under the agent's evaluation lock.
    let (mut outcomes, pending) = state
        .evaluator
        .deliver(&agent.0, &[incoming(state, &report, now)])
        .await?;
    let out = outcomes
        .pop()
        .ok_or_else(|| ApiError::Internal("storing a report gave no outcome".into()))?;
    let stored = match out.delivery {
        Delivery::Conflict {
            stored_digest,
            new_digest,
        } => {
            // Refusing evaluates the agent: its lock is let go first.
            drop(pending);
            return refuse_conflict(
                state,
                &agent.0,
                report.sequence,
                stored_digest.as_deref(),
                &new_digest,
                out.next_expected,
            )
            .await;
        }
        Delivery::Duplicate => {
            state.evaluator.duplicate(&agent.0, report.sequence);
            false
        }
        Delivery::Stored { problems } => {
            log_problems(&agent.0, &problems);
            true
        }
    };
    drop(_permit);
    if stored {
        // Committed: a failed evaluation is logged and counted, and the next report evaluates
        // again; the agent must not resend what is already stored.
        state.evaluator.stored(&agent.0, &[&report], first, pending).await;
    }
    Ok(Json(ReportAck {
        sequence: report.sequence,
        stored,
        next_expected: Some(out.next_expected),
    })
    .into_response())
}

/// `POST /api/v1/agent/reports/batch`: every report in one unit of work, acknowledged after it
/// committed; a conflict anywhere refuses the whole batch with `409`.
pub async fn batch(
    State(state): State<AppState>,
    agent: AuthedAgent,
    AgentJson(batch): AgentJson<ReportBatch>,
) -> Result<Response, ApiError> {
    super::agent::same_agent(&agent, &batch.agent_id)?;
    let ReportBatch {
        protocol: _,
        agent_id: _,
        reports,
    } = batch;
    if reports.is_empty() || reports.len() > MAX_BATCH_REPORTS {
        return Err(ApiError::Unprocessable(format!(
            "a batch holds 1 to {MAX_BATCH_REPORTS} reports, this one {}",
            reports.len()
        )));
    }
    for (i, r) in reports.iter().enumerate() {
        check_report(&agent, r).map_err(|e| ApiError::Unprocessable(format!("report {i} of the batch: {e}")))?;
        if i > 0 && r.sequence <= reports[i - 1].sequence {
            return Err(ApiError::Unprocessable(format!(
                "report {i} of the batch: sequences must increase (got {} after {})",
                r.sequence,
                reports[i - 1].sequence
            )));
        }
    }
    let permit = state.ingest_gate.enter(&state.metrics).await?;
    let first = state.evaluator.awaiting_first_report(&agent.0).await?;
    let now = state.now();
    let incoming_reports: Vec<IncomingReport<'_>> = reports.iter().map(|r| incoming(&state, r, now)).collect();
    // One unit of work for the whole batch (group commit with other agents' units), the
    // evaluation's input read with it under the agent's evaluation lock.
    let (outcomes, pending) = state.evaluator.deliver(&agent.0, &incoming_reports).await?;
    let mut pending = Some(pending);
    let mut acks = Vec::with_capacity(reports.len());
    let mut problems = Vec::new();
    let mut next_expected = 0;
    for (r, out) in reports.iter().zip(outcomes) {
        next_expected = out.next_expected;
        let stored = match out.delivery {
            Delivery::Conflict {
                stored_digest,
                new_digest,
            } => {
                // Refusing evaluates the agent: its lock is let go first.
                drop(pending.take());
                return refuse_conflict(
                    &state,
                    &agent.0,
                    r.sequence,
                    stored_digest.as_deref(),
                    &new_digest,
                    out.next_expected,
                )
                .await;
            }
            Delivery::Duplicate => false,
            Delivery::Stored { problems: p } => {
                problems.extend(p);
                true
            }
        };
        acks.push(ReportAck {
            sequence: r.sequence,
            stored,
            next_expected: Some(out.next_expected),
        });
    }
    drop(permit);
    let mut stored = Vec::with_capacity(reports.len());
    for (r, a) in reports.iter().zip(&acks) {
        if a.stored {
            stored.push(r);
        } else {
            state.evaluator.duplicate(&agent.0, r.sequence);
        }
    }
    log_problems(&agent.0, &problems);
    tracing::info!(agent_id = %agent.0, reports = reports.len(), next_expected, "report batch stored");
    if let Some(pending) = pending {
        state.evaluator.stored(&agent.0, &stored, first, pending).await;
    }
    Ok(Json(BatchAck { acks, next_expected }).into_response())
}

/// `GET /api/v1/agents/{id}`: one agent with its delivery state.
#[derive(Debug, Serialize)]
pub struct AgentDetail {
    #[serde(flatten)]
    pub agent: AgentView,
    pub delivery: DeliveryStatus,
}

/// `GET /api/v1/agents/{id}`.
pub async fn agent_detail(
    State(state): State<AppState>,
    ApiCaller(scope, _): ApiCaller,
    Path(agent_id): Path<String>,
) -> Result<Json<AgentDetail>, ApiError> {
    let row = state.store.agent(&scope, &agent_id).await?;
    let delivery = state.store.delivery_status(&scope, &agent_id).await?;
    Ok(Json(AgentDetail {
        agent: super::admin::agent_view(&state, row),
        delivery,
    }))
}

/// Adds `Retry-After` to a `429`.
pub fn retry_after(resp: &mut Response, secs: u64) {
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
}
