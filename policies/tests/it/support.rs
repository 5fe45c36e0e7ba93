//! Shared helpers: a fixed clock, observation builders, and `check`, which evaluates one rule of
//! the built-in pack over some observations and asserts its status.

use std::sync::OnceLock;

use chrono::{DateTime, Duration, Utc};
use rounds_policies::{EvalContext, Finding, Os, Overrides, Pack, Policy, Role, Status, evaluate};
use rounds_protocol::Observation;
use serde_json::Value;

/// The evaluation time of every test: 2026-11-24T12:00:00Z.
pub fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-24T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// `now()` minus `d`, as RFC 3339 JSON.
pub fn ago(d: Duration) -> Value {
    Value::String((now() - d).to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// `now()` plus `d`, as RFC 3339 JSON.
pub fn ahead(d: Duration) -> Value {
    Value::String((now() + d).to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

pub fn pack() -> &'static Pack {
    static PACK: OnceLock<Pack> = OnceLock::new();
    PACK.get_or_init(|| match Pack::builtin() {
        Ok(p) => p,
        Err(e) => panic!("built-in pack does not load:\n{e}"),
    })
}

/// An `ok` observation of `kind` about `subject`, with `data`, seen an hour ago.
pub fn ok(kind: &str, subject: &str, data: Value) -> Observation {
    Observation {
        kind: kind.into(),
        subject: subject.into(),
        observed_at: now() - Duration::hours(1),
        status: rounds_protocol::ObservationStatus::Ok,
        data,
        error: None,
    }
}

/// An `error` observation of `kind`.
pub fn err(kind: &str, subject: &str, why: &str) -> Observation {
    Observation::error(kind, subject, now() - Duration::hours(1), why)
}

/// Merges `patch` over `base` (one level deep).
pub fn with(base: &Value, patch: Value) -> Value {
    let mut v = base.clone();
    if let (Some(m), Some(p)) = (v.as_object_mut(), patch.as_object()) {
        for (k, x) in p {
            m.insert(k.clone(), x.clone());
        }
    }
    v
}

pub fn ctx(os: Os, role: Option<Role>) -> EvalContext {
    EvalContext { now: now(), os, role }
}

/// Evaluates rule `rule` of the built-in pack with the given overrides TOML (`""` for none).
pub fn finding_with(rule: &str, observations: &[Observation], overrides: &str, ctx: &EvalContext) -> Finding {
    let p = pack();
    assert!(p.rule(rule).is_some(), "no rule {rule} in the built-in pack");
    let o = match Overrides::from_toml("test-overrides.toml", overrides, p) {
        Ok(o) => o,
        Err(e) => panic!("overrides do not load:\n{e}"),
    };
    let policy = Policy::new(p, None, &[&o]).unwrap();
    let findings = evaluate(observations, &policy, ctx);
    assert_eq!(findings.len(), p.rules.len());
    findings.into_iter().find(|f| f.rule == rule).unwrap()
}

/// Asserts rule `rule`'s status on a Linux server over `observations`, with parameter
/// overrides given as TOML key/values for that rule (`""` for defaults).
#[track_caller]
pub fn check(rule: &str, observations: &[Observation], params: &str, expect: Status) -> Finding {
    let overrides = if params.is_empty() {
        String::new()
    } else {
        format!("[params.\"{rule}\"]\n{params}\n")
    };
    let f = finding_with(rule, observations, &overrides, &ctx(Os::Linux, Some(Role::Server)));
    assert_eq!(
        f.status, expect,
        "rule {rule} with params `{params}`: expected {expect}, got {} ({})\nevidence: {}",
        f.status, f.message, f.evidence
    );
    assert!(!f.message.is_empty());
    assert!(!f.citations.is_empty());
    f
}
