//! Effective policies on the collector: the built-in pack with a practice's and site's
//! settings, built and cached.
//!
//! [`crate::ingest::Evaluator::evaluate_agent`] runs after every stored report. It reads the newest observation per
//! (kind, subject) from the store, so a report that carries only some checks is judged
//! together with the latest results of the others. The machine's OS and role come from its
//! newest inventory observation; before the first inventory, from the OS the agent named at
//! enrollment. Evaluation itself is a pure function of well under a millisecond, run inline.
//!
//! The effective policy is the built-in pack with the practice's profile, then the practice's
//! and the site's overrides (`rounds-collector policy set`); an agent whose practice and site
//! have no settings uses the shared built-in policy. Built policies are cached by the
//! settings they come from ([`PolicyCache`]), so a report does not compile CEL again. Settings
//! that no longer build (they were validated when set) are logged and counted as a failed
//! evaluation, and the agent is judged by the built-in policy so its findings stay current.
//!
//! Every evaluation is logged and counted in [`crate::events`] (`rounds_evaluations_total`,
//! `rounds_evaluations_failed_total`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rounds_policies::{LoadErrors, Overrides, Pack, Policy};

use crate::store::AgentPolicySettings;

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
