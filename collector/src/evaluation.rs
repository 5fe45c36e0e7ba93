//! Policy evaluation on the collector: an agent's newest observations, judged by the policy
//! loaded at start-up, become its current findings.
//!
//! [`evaluate_agent`] runs after every stored report. It reads the newest observation per
//! (kind, subject) from the store, so a report that carries only some checks is judged
//! together with the latest results of the others. The machine's OS and role come from its
//! newest inventory observation; before the first inventory, from the OS the agent named at
//! enrollment. Evaluation itself is a pure function of well under a millisecond, run inline.
//!
//! Every evaluation is logged and counted here, in one place (`rounds_evaluations_total`,
//! `rounds_evaluations_failed_total`).

use rounds_policies::{EvalContext, Os, Status, evaluate};
use rounds_protocol::Observation;

use crate::app::{AppState, Metrics};
use crate::store::{Role, Scope, StoreError};

/// Why an agent could not be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Neither an inventory nor the enrollment names an OS family the policy knows.
    #[error("agent {agent_id}: unknown operating system `{os}`; no inventory names its os_family yet")]
    UnknownOs { agent_id: String, os: String },
}

/// How many findings of each status one evaluation produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evaluated {
    pub pass: usize,
    pub fail: usize,
    pub error: usize,
    pub not_applicable: usize,
}

/// The scope evaluation reads with: it acts for the collector, not for a user.
fn collector_scope() -> Scope {
    Scope {
        role: Role::Admin,
        practice_id: None,
    }
}

/// Evaluates an agent's newest observations against `state.policy` and replaces its stored
/// findings. Logs and counts the outcome.
pub async fn evaluate_agent(state: &AppState, agent_id: &str) -> Result<Evaluated, EvalError> {
    let outcome = run(state, agent_id).await;
    match &outcome {
        Ok(e) => {
            Metrics::inc(&state.metrics.evaluations);
            tracing::info!(
                agent_id,
                pass = e.pass,
                fail = e.fail,
                error = e.error,
                not_applicable = e.not_applicable,
                "agent evaluated"
            );
        }
        Err(error) => {
            Metrics::inc(&state.metrics.evaluations_failed);
            tracing::error!(agent_id, %error, "agent evaluation failed");
        }
    }
    outcome
}

async fn run(state: &AppState, agent_id: &str) -> Result<Evaluated, EvalError> {
    let scope = collector_scope();
    // One evaluation at a time: the findings stored last are from the newest observations.
    let _guard = state.evaluation_lock.lock().await;
    let agent = state.store.agent(&scope, agent_id).await?;
    let observations: Vec<Observation> = state
        .store
        .latest_observations(&scope, agent_id, None)
        .await?
        .into_iter()
        .map(|s| s.observation)
        .collect();
    let now = state.now();
    let ctx = EvalContext::from_inventory(now, &observations)
        .or_else(|| Os::parse(&agent.os).map(|os| EvalContext { now, os, role: None }))
        .ok_or_else(|| EvalError::UnknownOs {
            agent_id: agent_id.to_string(),
            os: agent.os.clone(),
        })?;
    let findings = evaluate(&observations, &state.policy, &ctx);
    state.store.replace_findings(agent_id, &findings, now).await?;
    let count = |s: Status| findings.iter().filter(|f| f.status == s).count();
    Ok(Evaluated {
        pass: count(Status::Pass),
        fail: count(Status::Fail),
        error: count(Status::Error),
        not_applicable: count(Status::NotApplicable),
    })
}
