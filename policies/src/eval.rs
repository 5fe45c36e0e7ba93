//! Evaluation: `(observations, policy, context) -> findings`, a pure function.
//!
//! For each rule of the policy, in pack order:
//! 1. A machine whose OS is not in the rule's `applies_to.os`, or whose role is known and not
//!    in `applies_to.role`, gets `not_applicable`. An unknown role does not exclude a rule.
//! 2. The newest observation per (kind, subject) of each kind the rule reads is judged: an
//!    `error` observation gives that subject `error` with the check's reason; otherwise the
//!    rule's `select` (if any) picks the observations it judges and its `condition` gives
//!    `true` (pass), `false` (fail) or `null` (the observation does not say: error).
//! 3. A kind with no observation at all gives `error` ("no observation of kind X"), or makes
//!    the rule `not_applicable` when the rule says `if_missing = "not_applicable"` and none of
//!    its kinds was observed.
//! 4. With `aggregate = "all"` (the default) the finding fails if any subject fails (the
//!    evidence lists the failing subjects); else it is `error` if any subject is; else `pass` if
//!    any subject passed; else `not_applicable` (nothing selected). With `aggregate = "any"`
//!    one passing subject makes it pass; otherwise the same order applies.
//!
//! An accepted risk that is active at `now` is attached as `exception`; the status stays what
//! evaluation says, so an accepted risk is never shown as a pass.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use chrono::{DateTime, TimeZone, Utc};
use rounds_protocol::{Observation, ObservationStatus, obs};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::kinds;
use crate::pack::{Aggregate, IfMissing, Os, Role, Rule, Severity};
use crate::policy::{EffectiveRule, Exception, Policy, params_to_cel};

/// The verdict of one rule on one machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
    /// The check could not run or the observation does not say; the message says why. Never
    /// counted as pass or fail.
    Error,
    NotApplicable,
}

impl Status {
    /// The snake_case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Error => "error",
            Status::NotApplicable => "not_applicable",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What evaluation needs to know about the machine and the time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalContext {
    /// The evaluation time: ages and expiries are measured against it.
    pub now: DateTime<Utc>,
    /// The machine's OS family.
    pub os: Os,
    /// The machine's role, when known; an unknown role excludes no rule.
    pub role: Option<Role>,
}

impl EvalContext {
    /// The context described by the newest `inventory` observation among `observations`: its
    /// `os_family` and `role`. `None` when there is no usable inventory or its OS is unknown.
    pub fn from_inventory(now: DateTime<Utc>, observations: &[Observation]) -> Option<EvalContext> {
        let inventory = observations
            .iter()
            .filter(|o| o.kind == <obs::Inventory as obs::Payload>::KIND && o.status == ObservationStatus::Ok)
            .max_by_key(|o| o.observed_at)?;
        let os = inventory.data.get("os_family")?.as_str().and_then(Os::parse)?;
        let role = inventory.data.get("role").and_then(Json::as_str).and_then(Role::parse);
        Some(EvalContext { now, os, role })
    }
}

/// A rule's verdict with its evidence, in the shape `rounds-agent check --format json` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The rule id, e.g. `hipaa.backup.recent`.
    pub rule: String,
    pub title: String,
    pub status: Status,
    pub severity: Severity,
    /// Canonical Security Rule references, e.g. `164.308(a)(7)(ii)(A)`.
    pub citations: Vec<String>,
    /// The citations for which the rule gives evidence for part of the section only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partial_citations: Vec<String>,
    /// The observed values the verdict was decided on, and the parameters used.
    pub evidence: Json,
    /// One line for a person: what failed, why it could not be checked, or what passed.
    pub message: String,
    /// How to fix it on this machine's OS, for a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediation: Option<String>,
    /// The accepted risk in force for this rule, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception: Option<Exception>,
}

/// The JSON document of `rounds-agent check --format json`: findings and the observations they
/// were decided on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    pub findings: Vec<Finding>,
    pub observations: Vec<Observation>,
}

/// Evaluates every rule of `policy` on one machine's observations.
pub fn evaluate(observations: &[Observation], policy: &Policy, ctx: &EvalContext) -> Vec<Finding> {
    // Newest observation per (kind, subject), in first-seen order, each converted to CEL once.
    let mut index: HashMap<(&str, &str), usize> = HashMap::new();
    let mut latest: Vec<&Observation> = Vec::new();
    for o in observations {
        match index.get(&(o.kind.as_str(), o.subject.as_str())) {
            Some(&i) => {
                if o.observed_at >= latest[i].observed_at {
                    latest[i] = o;
                }
            }
            None => {
                index.insert((o.kind.as_str(), o.subject.as_str()), latest.len());
                latest.push(o);
            }
        }
    }
    let prepared: Vec<Prepared<'_>> = latest.into_iter().map(Prepared::new).collect();
    let mut root: cel::Context<'_, '_> = cel::Context::with_env(Arc::clone(&policy.env.0));
    root.add_variable_from_value("now", cel::Value::Timestamp(ctx.now.fixed_offset()));
    root.add_variable_from_value("os", ctx.os.as_str());
    root.add_variable_from_value("role", ctx.role.map_or(cel::Value::Null, |r| r.as_str().into()));
    root.add_variable_from_value("end_of_life", policy.end_of_life.clone());
    policy
        .rules
        .iter()
        .map(|r| evaluate_rule(r, &prepared, &root, ctx))
        .collect()
}

/// An observation with its payload converted to CEL values once per evaluation.
struct Prepared<'a> {
    obs: &'a Observation,
    data: Box<dyn Val + 'a>,
    observed_at: Box<dyn Val>,
    subject: Box<dyn Val + 'a>,
    kind: Box<dyn Val + 'a>,
}

impl<'a> Prepared<'a> {
    fn new(obs: &'a Observation) -> Self {
        Prepared {
            obs,
            data: json_to_val(&obs.data),
            observed_at: to_val(cel::Value::Timestamp(obs.observed_at.fixed_offset())),
            subject: Box::new(cel::common::types::CelString::from(obs.subject.as_str())),
            kind: Box::new(cel::common::types::CelString::from(obs.kind.as_str())),
        }
    }
}

/// A CEL value in the form the interpreter reads variables in.
pub(crate) fn to_val(v: cel::Value) -> Box<dyn Val> {
    // Only opaque values can fail to convert; this crate never builds one.
    let converted: Result<Box<dyn Val>, _> = v.try_into();
    converted.unwrap_or_else(|_| Box::new(cel::common::types::CelNull))
}

/// The variables one observation is judged with, lent to the interpreter without copying.
struct Vars<'a> {
    params: &'a dyn Val,
    obs: &'a Prepared<'a>,
}

impl VariableResolver for Vars<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let v: &dyn Val = match variable {
            "data" => self.obs.data.as_ref(),
            "subject" => self.obs.subject.as_ref(),
            "kind" => self.obs.kind.as_ref(),
            "observed_at" => self.obs.observed_at.as_ref(),
            "params" => self.params,
            _ => return None,
        };
        Some(CowVal::Borrowed(v))
    }
}

/// The verdict on one subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Pass,
    Fail,
    Error,
}

struct Judged<'a> {
    obs: &'a Observation,
    verdict: Verdict,
    why: Option<String>,
}

fn evaluate_rule(
    er: &EffectiveRule,
    prepared: &[Prepared<'_>],
    root: &cel::Context<'_, '_>,
    ctx: &EvalContext,
) -> Finding {
    let rule = &er.rule;
    let exception = er
        .exception
        .as_ref()
        .filter(|e| e.is_active(ctx.now.date_naive()))
        .cloned();
    let lapsed = er.exception.as_ref().filter(|e| !e.is_active(ctx.now.date_naive()));
    let params_json: serde_json::Map<String, Json> = er.params.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
    let finding = |status: Status, evidence: Json, message: String| {
        let mut evidence = evidence;
        if let (Some(e), Some(map)) = (lapsed, evidence.as_object_mut()) {
            map.insert("exception_lapsed_on".into(), json!(e.expires));
        }
        Finding {
            rule: rule.id.clone(),
            title: rule.title.clone(),
            status,
            severity: er.severity,
            citations: rule.citation_refs(),
            partial_citations: rule
                .citations
                .iter()
                .filter(|c| c.partial)
                .map(|c| c.reference.clone())
                .collect(),
            evidence,
            message,
            remediation: (status == Status::Fail)
                .then(|| rule.remediation.for_os(ctx.os).map(str::to_string))
                .flatten(),
            exception: exception.clone(),
        }
    };

    if !rule.applies_to.os.contains(&ctx.os) {
        let list: Vec<&str> = rule.applies_to.os.iter().map(|o| o.as_str()).collect();
        return finding(
            Status::NotApplicable,
            json!({ "os": ctx.os.as_str() }),
            format!("applies to {} only; this machine runs {}", list.join(", "), ctx.os),
        );
    }
    if let Some(role) = ctx.role.filter(|r| !rule.applies_to.role.contains(r)) {
        let list: Vec<&str> = rule.applies_to.role.iter().map(|r| r.as_str()).collect();
        return finding(
            Status::NotApplicable,
            json!({ "role": role.as_str() }),
            format!("applies to {} machines only; this machine is a {role}", list.join(", ")),
        );
    }

    let mut judged: Vec<Judged<'_>> = Vec::new();
    let mut missing: Vec<&str> = Vec::new();
    for kind in &rule.kinds {
        let mut any = false;
        for p in prepared.iter().filter(|p| &p.obs.kind == kind) {
            any = true;
            if p.obs.status == ObservationStatus::Error {
                let why = p
                    .obs
                    .error
                    .clone()
                    .unwrap_or_else(|| "the check reported an error without a reason".into());
                judged.push(Judged {
                    obs: p.obs,
                    verdict: Verdict::Error,
                    why: Some(why),
                });
                continue;
            }
            let vars = Vars {
                params: er.params_val.as_ref(),
                obs: p,
            };
            let mut c = root.new_inner_scope();
            c.set_variable_resolver(&vars);
            match judge(rule, &c) {
                Ok(None) => {}
                Ok(Some(Some(true))) => judged.push(Judged {
                    obs: p.obs,
                    verdict: Verdict::Pass,
                    why: None,
                }),
                Ok(Some(Some(false))) => judged.push(Judged {
                    obs: p.obs,
                    verdict: Verdict::Fail,
                    why: None,
                }),
                Ok(Some(None)) => judged.push(Judged {
                    obs: p.obs,
                    verdict: Verdict::Error,
                    why: Some(format!(
                        "the observation does not say ({})",
                        unknown_fields(rule, p.obs)
                    )),
                }),
                Err((field, e)) => judged.push(Judged {
                    obs: p.obs,
                    verdict: Verdict::Error,
                    why: Some(format!("{field} could not be evaluated: {e}")),
                }),
            }
        }
        if !any {
            missing.push(kind);
        }
    }

    let mut evidence = serde_json::Map::new();
    evidence.insert("params".into(), Json::Object(params_json));
    evidence.insert(
        "observations".into(),
        judged.iter().map(|j| observation_evidence(rule, j)).collect(),
    );

    if !missing.is_empty() && rule.if_missing == IfMissing::NotApplicable && missing.len() == rule.kinds.len() {
        evidence.insert("missing".into(), json!(missing));
        return finding(
            Status::NotApplicable,
            Json::Object(evidence),
            format!("nothing to judge: no observation of kind {}", missing.join(", ")),
        );
    }
    let missing_errors: Vec<String> = if rule.if_missing == IfMissing::Error {
        missing.iter().map(|k| format!("no observation of kind {k}")).collect()
    } else {
        Vec::new()
    };
    if !missing_errors.is_empty() {
        evidence.insert("missing".into(), json!(missing));
    }

    let failing: Vec<&Judged<'_>> = judged.iter().filter(|j| j.verdict == Verdict::Fail).collect();
    let errors: Vec<&Judged<'_>> = judged.iter().filter(|j| j.verdict == Verdict::Error).collect();
    let passing: Vec<&Judged<'_>> = judged.iter().filter(|j| j.verdict == Verdict::Pass).collect();
    if rule.aggregate == Aggregate::Any && !passing.is_empty() {
        let parts: Vec<String> = passing.iter().map(|j| summary(rule, j.obs)).collect();
        return finding(
            Status::Pass,
            Json::Object(evidence),
            format!("ok: {}", parts.join("; ")),
        );
    }
    if !failing.is_empty() {
        evidence.insert("failing".into(), failing.iter().map(|j| json!(j.obs.subject)).collect());
        let parts: Vec<String> = failing.iter().map(|j| summary(rule, j.obs)).collect();
        let mut message = format!("fails on {}", parts.join("; "));
        if !errors.is_empty() || !missing_errors.is_empty() {
            message.push_str(&format!(
                " (and {} could not be checked)",
                errors.len() + missing_errors.len()
            ));
        }
        return finding(Status::Fail, Json::Object(evidence), message);
    }
    if !errors.is_empty() || !missing_errors.is_empty() {
        let mut reasons: Vec<String> = errors
            .iter()
            .map(|j| {
                format!(
                    "{} {}: {}",
                    j.obs.kind,
                    j.obs.subject,
                    j.why.as_deref().unwrap_or("error")
                )
            })
            .collect();
        reasons.extend(missing_errors);
        return finding(
            Status::Error,
            Json::Object(evidence),
            format!("could not check: {}", reasons.join("; ")),
        );
    }
    if passing.is_empty() {
        return finding(
            Status::NotApplicable,
            Json::Object(evidence),
            "nothing to judge: no observation matches the rule's selection".into(),
        );
    }
    let parts: Vec<String> = passing.iter().map(|j| summary(rule, j.obs)).collect();
    finding(
        Status::Pass,
        Json::Object(evidence),
        format!("ok: {}", parts.join("; ")),
    )
}

/// Runs `select` then `condition` in `c`: `Ok(None)` when not selected, `Ok(Some(verdict))`
/// otherwise (`None` verdict = the observation does not say).
fn judge(rule: &Rule, c: &cel::Context<'_, '_>) -> Result<Option<Option<bool>>, (&'static str, String)> {
    if let Some(select) = &rule.select {
        match select.execute(c) {
            Ok(cel::Value::Bool(true)) => {}
            Ok(cel::Value::Bool(false)) => return Ok(None),
            Ok(other) => return Err(("select", format!("returned {}, expected a bool", type_name(&other)))),
            Err(e) => return Err(("select", e.to_string())),
        }
    }
    match rule.condition.execute(c) {
        Ok(cel::Value::Bool(b)) => Ok(Some(Some(b))),
        Ok(cel::Value::Null) => Ok(Some(None)),
        Ok(other) => Err((
            "condition",
            format!("returned {}, expected a bool or null", type_name(&other)),
        )),
        Err(e) => Err(("condition", e.to_string())),
    }
}

/// Runs a rule on an all-unknown observation of `kind` with its default parameters, to catch
/// at load time what would be an error at run time.
pub(crate) fn dry_run(
    env: &Arc<cel::Env>,
    rule: &Rule,
    kind: &str,
    end_of_life: &cel::Value,
) -> Result<(), (&'static str, String)> {
    let payload = &kinds::empty_payload(kind).unwrap_or(Json::Null);
    let mut c = cel::Context::with_env(Arc::clone(env));
    let now = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_else(Utc::now);
    let params: BTreeMap<String, _> = rule
        .params
        .iter()
        .map(|p| (p.name.clone(), p.default.clone()))
        .collect();
    c.add_variable_from_value("now", cel::Value::Timestamp(now.fixed_offset()));
    c.add_variable_from_value("os", "linux");
    c.add_variable_from_value("role", cel::Value::Null);
    c.add_variable_from_value("end_of_life", end_of_life.clone());
    c.add_variable_from_value("params", params_to_cel(&params));
    c.add_variable_as_val("data", json_to_val(payload));
    c.add_variable_from_value("subject", "dry-run");
    c.add_variable_from_value("kind", kind);
    c.add_variable_from_value("observed_at", cel::Value::Timestamp(now.fixed_offset()));
    judge(rule, &c).map(|_| ())
}

fn type_name(v: &cel::Value) -> &'static str {
    match v {
        cel::Value::List(_) => "a list",
        cel::Value::Map(_) => "a map",
        cel::Value::Int(_) | cel::Value::UInt(_) => "an int",
        cel::Value::Float(_) => "a double",
        cel::Value::String(_) => "a string",
        cel::Value::Bool(_) => "a bool",
        cel::Value::Duration(_) => "a duration",
        cel::Value::Timestamp(_) => "a timestamp",
        cel::Value::Null => "null",
        _ => "a value of another type",
    }
}

/// The evidence fields of an observation, those the rule names.
fn evidence_values(rule: &Rule, o: &Observation) -> serde_json::Map<String, Json> {
    rule.evidence
        .iter()
        .filter_map(|f| o.data.get(f).map(|v| (f.clone(), v.clone())))
        .collect()
}

fn observation_evidence(rule: &Rule, j: &Judged<'_>) -> Json {
    let mut e = json!({
        "kind": j.obs.kind,
        "subject": j.obs.subject,
        "observed_at": j.obs.observed_at,
        "result": match j.verdict { Verdict::Pass => "pass", Verdict::Fail => "fail", Verdict::Error => "error" },
    });
    if let Some(map) = e.as_object_mut() {
        if j.obs.status == ObservationStatus::Ok {
            map.insert("values".into(), Json::Object(evidence_values(rule, j.obs)));
        }
        if let Some(why) = &j.why {
            map.insert("error".into(), json!(why));
        }
    }
    e
}

/// `subject (field: value, ...)` for messages.
fn summary(rule: &Rule, o: &Observation) -> String {
    let values: Vec<String> = evidence_values(rule, o)
        .into_iter()
        .map(|(k, v)| match v {
            Json::String(s) => format!("{k}: {s}"),
            other => format!("{k}: {other}"),
        })
        .collect();
    format!("{} ({})", o.subject, values.join(", "))
}

/// The rule's evidence fields that are `null` in the observation, for "does not say" errors.
fn unknown_fields(rule: &Rule, o: &Observation) -> String {
    let unknown: Vec<&str> = rule
        .evidence
        .iter()
        .filter(|f| o.data.get(f.as_str()).is_none_or(Json::is_null))
        .map(String::as_str)
        .collect();
    if unknown.is_empty() {
        "no verdict".to_string()
    } else {
        format!("unknown: {}", unknown.join(", "))
    }
}

/// JSON to a CEL value, borrowing its strings: integers as `int` (unsigned only past
/// `i64::MAX`), other numbers as `double`; strings stay strings (conditions call `timestamp()` on
/// time fields).
pub(crate) fn json_to_val(v: &Json) -> Box<dyn Val + '_> {
    use cel::common::types::{CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt};
    match v {
        Json::Null => Box::new(CelNull),
        Json::Bool(b) => Box::new(CelBool::from(*b)),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Box::new(CelInt::from(i))
            } else if let Some(u) = n.as_u64() {
                Box::new(CelUInt::from(u))
            } else {
                Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN)))
            }
        }
        Json::String(s) => Box::new(CelString::from(s.as_str())),
        Json::Array(items) => Box::new(CelList::from(items.iter().map(json_to_val).collect::<Vec<_>>())),
        Json::Object(map) => Box::new(CelMap::from(
            map.iter()
                .map(|(k, v)| (CelMapKey::from(k.as_str()), json_to_val(v)))
                .collect::<HashMap<_, _>>(),
        )),
    }
}
