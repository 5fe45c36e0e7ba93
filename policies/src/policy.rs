//! A practice's effective policy: a pack, an optional profile, and overrides per practice and
//! per site (parameter changes and accepted risks), validated against the pack.
//!
//! Precedence for a parameter, lowest first: the rule's default, the profile, the practice's
//! overrides, the site's overrides. An accepted risk in a later overrides file replaces one for
//! the same rule in an earlier file.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::error::{LoadError, LoadErrors, Source};
use crate::pack::{CelEnv, Pack, ParamValue, Rule, Severity, resolve_param_sets, unknown_rule};
use crate::raw::{RawAccept, RawOverrides};

/// A risk accepted for one rule: the finding keeps its real status and carries this, so a
/// report shows an exception, never a pass. It lapses at the start of `expires` (UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exception {
    /// Why the risk is accepted, and what compensates for it.
    pub reason: String,
    /// Who accepted it.
    pub accepted_by: String,
    /// The first day on which the acceptance no longer holds.
    pub expires: NaiveDate,
    /// The overrides file it comes from.
    pub source: String,
}

impl Exception {
    /// Whether the acceptance holds on `today` (UTC).
    pub fn is_active(&self, today: NaiveDate) -> bool {
        today < self.expires
    }
}

/// Validated overrides for a practice or a site.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// The file name they were read from.
    pub source: String,
    /// Parameter values per rule id.
    pub params: BTreeMap<String, BTreeMap<String, ParamValue>>,
    /// Accepted risks per rule id.
    pub accepted: BTreeMap<String, Exception>,
}

impl Overrides {
    /// Reads and validates overrides from TOML text named `name` (for error messages), against
    /// the rules of `pack`: unknown keys, unknown rules, unknown parameters, values of the wrong
    /// type, dates that are not dates and duplicate acceptances are all errors.
    pub fn from_toml(name: &str, text: &str, pack: &Pack) -> Result<Overrides, LoadErrors> {
        let src = Source { name, text };
        let raw: RawOverrides = toml::from_str(text).map_err(|e| LoadErrors(vec![src.toml_error(&e)]))?;
        let RawOverrides { params, accept } = raw;
        let mut errors = Vec::new();
        let params = resolve_param_sets(src, &pack.name, &pack.rules, params, &mut errors);
        let mut accepted = BTreeMap::new();
        for a in accept {
            let RawAccept {
                rule,
                reason,
                accepted_by,
                expires,
            } = a;
            let at = src.at(rule.span().start, Some(rule.get_ref()));
            if pack.rule(rule.get_ref()).is_none() {
                errors.push(unknown_rule(src, &rule, &pack.name));
                continue;
            }
            if reason.trim().is_empty() || accepted_by.trim().is_empty() {
                errors.push(LoadError::Invalid {
                    at,
                    message: "an accepted risk needs a reason and accepted_by".into(),
                });
                continue;
            }
            let date = match expires.get_ref() {
                toml::value::Datetime {
                    date: Some(d),
                    time: None,
                    offset: None,
                } => NaiveDate::from_ymd_opt(i32::from(d.year), u32::from(d.month), u32::from(d.day)),
                _ => None,
            };
            let Some(expires) = date else {
                errors.push(LoadError::Invalid {
                    at: src.at(expires.span().start, Some(rule.get_ref())),
                    message: "`expires` must be a date, e.g. 2027-03-31".into(),
                });
                continue;
            };
            let exception = Exception {
                reason,
                accepted_by,
                expires,
                source: name.to_string(),
            };
            if accepted.insert(rule.get_ref().clone(), exception).is_some() {
                errors.push(LoadError::Invalid {
                    at,
                    message: "risk accepted twice for the same rule".into(),
                });
            }
        }
        if errors.is_empty() {
            Ok(Overrides {
                source: name.to_string(),
                params,
                accepted,
            })
        } else {
            Err(LoadErrors(errors))
        }
    }

    /// Reads and validates an overrides file.
    pub fn load(path: impl AsRef<Path>, pack: &Pack) -> Result<Overrides, LoadErrors> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| {
            LoadErrors(vec![LoadError::Io {
                path: path.to_path_buf(),
                source,
            }])
        })?;
        Overrides::from_toml(&path.display().to_string(), &text, pack)
    }
}

/// One rule as a policy applies it: its effective severity, parameters and accepted risk.
#[derive(Debug, Clone)]
pub struct EffectiveRule {
    pub rule: Arc<Rule>,
    pub severity: Severity,
    /// Every declared parameter with its effective value.
    pub params: BTreeMap<String, ParamValue>,
    /// The accepted risk, if any (whether it is still active depends on the evaluation time).
    pub exception: Option<Exception>,
    /// `params` as a CEL map, built once.
    pub(crate) params_val: Arc<dyn cel::common::value::Val>,
}

/// A validated policy: what [`crate::evaluate`] runs.
#[derive(Debug, Clone)]
pub struct Policy {
    pub pack_name: String,
    pub pack_version: String,
    pub profile: Option<String>,
    pub rules: Vec<EffectiveRule>,
    pub(crate) env: CelEnv,
    /// The pack's end-of-life table as CEL reads it.
    pub(crate) end_of_life: cel::Value,
}

impl Policy {
    /// The policy of `pack` with `profile` (if any), then each overrides in order (practice
    /// first, then site).
    pub fn new(pack: &Pack, profile: Option<&str>, overrides: &[&Overrides]) -> Result<Policy, LoadErrors> {
        let profile = match profile {
            None => None,
            Some(name) => Some(pack.profile(name).ok_or_else(|| {
                LoadErrors(vec![LoadError::UnknownProfile {
                    pack: pack.name.clone(),
                    profile: name.to_string(),
                    known: pack
                        .profiles
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                }])
            })?),
        };
        let rules = pack
            .rules
            .iter()
            .map(|rule| {
                let mut params: BTreeMap<String, ParamValue> = rule
                    .params
                    .iter()
                    .map(|p| (p.name.clone(), p.default.clone()))
                    .collect();
                let mut severity = rule.severity;
                if let Some(profile) = profile {
                    if let Some(values) = profile.params.get(&rule.id) {
                        params.extend(values.clone());
                    }
                    if let Some(s) = profile.severity.get(&rule.id) {
                        severity = *s;
                    }
                }
                let mut exception = None;
                for o in overrides {
                    if let Some(values) = o.params.get(&rule.id) {
                        params.extend(values.clone());
                    }
                    if let Some(e) = o.accepted.get(&rule.id) {
                        exception = Some(e.clone());
                    }
                }
                let params_val = Arc::from(crate::eval::to_val(params_to_cel(&params)));
                EffectiveRule {
                    rule: Arc::clone(rule),
                    severity,
                    params,
                    exception,
                    params_val,
                }
            })
            .collect();
        Ok(Policy {
            pack_name: pack.name.clone(),
            pack_version: pack.version.clone(),
            profile: profile.map(|p| p.name.clone()),
            rules,
            env: pack.env.clone(),
            end_of_life: pack.end_of_life.as_ref().map_or_else(
                || crate::pack::EndOfLife::default().to_cel(),
                crate::pack::EndOfLife::to_cel,
            ),
        })
    }

    /// The built-in HIPAA pack with its defaults: no profile, no overrides.
    pub fn builtin() -> Result<Policy, LoadErrors> {
        Policy::new(&Pack::builtin()?, None, &[])
    }

    /// The rule with id `id`, as this policy applies it.
    pub fn rule(&self, id: &str) -> Option<&EffectiveRule> {
        self.rules.iter().find(|r| r.rule.id == id)
    }
}

pub(crate) fn params_to_cel(params: &BTreeMap<String, ParamValue>) -> cel::Value {
    let map: std::collections::HashMap<String, cel::Value> =
        params.iter().map(|(k, v)| (k.clone(), v.to_cel())).collect();
    cel::Value::from(map)
}
