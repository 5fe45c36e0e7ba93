//! Policy evaluation on the collector: an agent's newest observations, judged by its
//! practice's and site's effective policy, become its current findings.
//!
//! [`evaluate_agent`] runs after every stored report. It reads the newest observation per
//! (kind, subject) from the store, so a report that carries only some checks is judged
//! together with the latest results of the others. The machine's OS and role come from its
//! newest inventory observation; before the first inventory, from the OS the agent named at
//! enrollment. Evaluation itself is a pure function of well under a millisecond, run inline.
//!
//! The effective policy is the built-in pack with the practice's profile, then the practice's
//! and the site's overrides (`rounds-collector policy set`); an agent whose practice and site
//! have no settings uses the shared [`AppState::policy`]. Built policies are cached by the
//! settings they come from ([`PolicyCache`]), so a report does not compile CEL again. Settings
//! that no longer build (they were validated when set) are logged and counted as a failed
//! evaluation, and the agent is judged by the built-in policy so its findings stay current.
//!
//! Every evaluation is logged and counted here, in one place (`rounds_evaluations_total`,
//! `rounds_evaluations_failed_total`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rounds_policies::{EvalContext, LoadErrors, Os, Overrides, Pack, Policy, Status, evaluate};
use rounds_protocol::Observation;

use crate::app::{AppState, Metrics};
use crate::store::{AgentPolicySettings, Role, Scope, StoreError};

/// How many built policies [`PolicyCache`] keeps before it starts over.
const CACHE_LIMIT: usize = 256;

/// Effective policies built from stored practice and site settings, by those settings.
///
/// Settings are validated against the built-in pack when they are set, so policies are built
/// from the built-in pack, loaded on first use. Bounded: past [`CACHE_LIMIT`] entries the cache
/// is emptied (settings change rarely; stale entries are never read again).
#[derive(Debug, Default)]
pub struct PolicyCache {
    pack: OnceLock<Result<Pack, String>>,
    built: Mutex<HashMap<AgentPolicySettings, Arc<Policy>>>,
}

impl PolicyCache {
    /// The policy for `settings`, built once per distinct settings. `None` when the settings
    /// are the defaults (use the shared policy).
    pub fn policy_for(&self, settings: &AgentPolicySettings) -> Result<Option<Arc<Policy>>, String> {
        if settings.is_default() {
            return Ok(None);
        }
        // Sites without overrides of their own share their practice's policy.
        let key;
        let settings = if settings.site_overrides.is_none() && !settings.site.is_empty() {
            key = AgentPolicySettings {
                site: String::new(),
                ..settings.clone()
            };
            &key
        } else {
            settings
        };
        if let Some(p) = self.lock().get(settings) {
            return Ok(Some(Arc::clone(p)));
        }
        let pack = self
            .pack
            .get_or_init(|| Pack::builtin().map_err(|e| format!("the built-in pack does not load: {e}")))
            .as_ref()
            .map_err(Clone::clone)?;
        let policy = Arc::new(build(pack, settings).map_err(|e| e.to_string())?);
        let mut built = self.lock();
        if built.len() >= CACHE_LIMIT {
            built.clear();
        }
        built.insert(settings.clone(), Arc::clone(&policy));
        Ok(Some(policy))
    }

    /// Number of policies held (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no policy is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AgentPolicySettings, Arc<Policy>>> {
        self.built.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Name of a practice's overrides in messages and in an accepted risk's `source`.
pub fn practice_source(practice: &str) -> String {
    format!("{practice} (practice overrides)")
}

/// Name of a site's overrides in messages and in an accepted risk's `source`.
pub fn site_source(practice: &str, site: &str) -> String {
    format!("{practice} / {site} (site overrides)")
}

/// The policy of `pack` with a practice's profile and overrides, then its site's overrides.
pub fn build(pack: &Pack, settings: &AgentPolicySettings) -> Result<Policy, LoadErrors> {
    let AgentPolicySettings {
        practice,
        site,
        profile,
        practice_overrides,
        site_overrides,
    } = settings;
    let practice_overrides = practice_overrides
        .as_deref()
        .map(|text| Overrides::from_toml(&practice_source(practice), text, pack))
        .transpose()?;
    let site_overrides = site_overrides
        .as_deref()
        .map(|text| Overrides::from_toml(&site_source(practice, site), text, pack))
        .transpose()?;
    let overrides: Vec<&Overrides> = practice_overrides.iter().chain(site_overrides.iter()).collect();
    Policy::new(pack, profile.as_deref(), &overrides)
}

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

/// Evaluates an agent's newest observations against its effective policy and replaces its
/// stored findings. Logs and counts the outcome.
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
    let policy = effective_policy(state, agent_id).await?;
    let findings = evaluate(&observations, &policy, &ctx);
    state.store.replace_findings(agent_id, &findings, now).await?;
    let count = |s: Status| findings.iter().filter(|f| f.status == s).count();
    Ok(Evaluated {
        pass: count(Status::Pass),
        fail: count(Status::Fail),
        error: count(Status::Error),
        not_applicable: count(Status::NotApplicable),
    })
}

/// The agent's effective policy; the shared built-in one when its settings are the defaults
/// or, logged and counted, when they do not build.
async fn effective_policy(state: &AppState, agent_id: &str) -> Result<Arc<Policy>, EvalError> {
    let settings = state.store.policy_settings_for_agent(agent_id).await?;
    match state.policies.policy_for(&settings) {
        Ok(Some(policy)) => Ok(policy),
        Ok(None) => Ok(Arc::clone(&state.policy)),
        Err(error) => {
            Metrics::inc(&state.metrics.evaluations_failed);
            tracing::error!(
                agent_id,
                practice = %settings.practice,
                site = %settings.site,
                %error,
                "stored policy settings do not build; evaluating with the built-in policy instead"
            );
            Ok(Arc::clone(&state.policy))
        }
    }
}
