//! Tamper acknowledgement (issue 11): the collector, not the agent, holds the last word on a
//! tampered audit log.
//!
//! The agent's audit-log check reports a tamper event on a watched log (`tamper` in the run
//! that found it, `last_tamper` in every later observation of that path, with a stable `id`).
//! The evaluator records every event it sees ([`seen`], `Store::note_tampers`) and, while an
//! agent has an event nobody acknowledged, holds its [`LOG_INTEGRITY_RULE`] finding failing
//! ([`hold`]) whatever later observations say, even once the agent stops naming the event. A
//! person acknowledges an event ([`acknowledge`]: `rounds-collector audit ack`, or
//! `POST /api/v1/agents/{id}/tamper/{tamper_id}/acknowledge`), which is written once (who, when,
//! why), audit-logged in the same unit of work, and re-evaluates the agent: the finding passes
//! again when nothing else fails, and that change, recorded in the finding history, carries the
//! acknowledgement in its evidence. A later tamper has a new id and opens again.

use rounds_policies::{Finding, Status};
use rounds_protocol::Observation;
use serde_json::{Value, json};

use crate::ingest::Evaluator;
use crate::store::{Scope, StoreError, TamperAck, TamperRow, TamperSeen};

/// The rule a tamper event holds failing.
pub const LOG_INTEGRITY_RULE: &str = "hipaa.audit.log_integrity";

/// How many acknowledged events a finding's evidence lists (newest first).
const ACKNOWLEDGED_IN_EVIDENCE: usize = 10;

/// The tamper events named by `observations` (`audit.log`'s `tamper` and `last_tamper`), once
/// per id.
pub fn seen(observations: &[Observation]) -> Vec<TamperSeen> {
    let mut out: Vec<TamperSeen> = Vec::new();
    for o in observations.iter().filter(|o| o.kind == "audit.log") {
        for key in ["tamper", "last_tamper"] {
            let t = &o.data[key];
            let Some(id) = t["id"].as_str().filter(|id| !id.is_empty()) else {
                continue;
            };
            if out.iter().any(|s| s.tamper_id == id) {
                continue;
            }
            let detected_at = t["detected_at"]
                .as_str()
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.with_timezone(&chrono::Utc))
                .unwrap_or(o.observed_at);
            out.push(TamperSeen {
                tamper_id: id.to_string(),
                path: o.data["path"].as_str().unwrap_or(&o.subject).to_string(),
                kind: t["kind"].as_str().unwrap_or("unknown").to_string(),
                detected_at,
                event: t.clone(),
            });
        }
    }
    out
}

fn open_view(t: &TamperRow) -> Value {
    json!({"id": t.tamper_id, "path": t.path, "kind": t.kind, "detected_at": t.detected_at, "event": t.event})
}

/// Holds the [`LOG_INTEGRITY_RULE`] finding failing while any of `tampers` is open, and lists
/// the open and the latest acknowledged events in its evidence. A rule the policy does not
/// evaluate (turned off) gets no finding.
pub fn hold(findings: &mut [Finding], tampers: &[TamperRow]) {
    if tampers.is_empty() {
        return;
    }
    let Some(f) = findings.iter_mut().find(|f| f.rule == LOG_INTEGRITY_RULE) else {
        return;
    };
    let open: Vec<&TamperRow> = tampers.iter().filter(|t| t.acknowledged.is_none()).collect();
    let acknowledged: Vec<Value> = tampers
        .iter()
        .filter_map(|t| {
            t.acknowledged.as_ref().map(|a| {
                json!({"id": t.tamper_id, "path": t.path, "kind": t.kind, "detected_at": t.detected_at,
                       "acknowledged_by": a.by, "acknowledged_at": a.at, "reason": a.reason})
            })
        })
        .take(ACKNOWLEDGED_IN_EVIDENCE)
        .collect();
    if !f.evidence.is_object() {
        f.evidence = json!({"observed": f.evidence.take()});
    }
    f.evidence["open_tampers"] = Value::Array(open.iter().map(|t| open_view(t)).collect());
    f.evidence["acknowledged_tampers"] = Value::Array(acknowledged);
    if open.is_empty() {
        return;
    }
    f.status = Status::Fail;
    let first = open[0];
    f.message = format!(
        "held failing until a person acknowledges {}: {} tamper {} on {} detected {}{}",
        if open.len() == 1 {
            "the tamper event".to_string()
        } else {
            format!("{} tamper events", open.len())
        },
        first.kind,
        first.tamper_id,
        first.path,
        first.detected_at.to_rfc3339(),
        if open.len() > 1 { " (and others)" } else { "" }
    );
    f.remediation = Some(format!(
        "Find out who changed the log and why, then acknowledge it: rounds-collector audit ack --agent {} --tamper {} --reason TEXT --by NAME",
        first.agent_id, first.tamper_id
    ));
}

/// Why a tamper event could not be acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum AckError {
    #[error("unknown agent `{0}`")]
    UnknownAgent(String),
    #[error("agent `{agent_id}` has no tamper event `{tamper_id}`; {}", open_list(.open))]
    UnknownTamper {
        agent_id: String,
        tamper_id: String,
        open: Vec<String>,
    },
    #[error("tamper event `{tamper_id}` of agent `{agent_id}` was already acknowledged by {by} at {at}")]
    AlreadyAcknowledged {
        agent_id: String,
        tamper_id: String,
        by: String,
        at: chrono::DateTime<chrono::Utc>,
    },
    #[error("--{0} must not be empty: an acknowledgement says who and why")]
    Missing(&'static str),
    #[error(transparent)]
    Store(StoreError),
}

fn open_list(open: &[String]) -> String {
    if open.is_empty() {
        "it has no open tamper events".to_string()
    } else {
        format!("its open tamper events: {}", open.join(", "))
    }
}

impl AckError {
    /// A mistake of the caller (exit 64 / 4xx), not a failure of the collector.
    pub fn is_usage(&self) -> bool {
        !matches!(self, AckError::Store(_))
    }
}

/// Acknowledges tamper event `tamper_id` of `agent_id` (visible to `scope`) by `by` for
/// `reason`: written once with the collector's time and audit-logged (actor `by`, through
/// `via`: `cli`, `api`) in the same unit of work; then the agent is re-evaluated so the held
/// finding is released.
#[allow(clippy::too_many_arguments)]
pub async fn acknowledge(
    evaluator: &Evaluator,
    scope: &Scope,
    via: &str,
    agent_id: &str,
    tamper_id: &str,
    by: &str,
    reason: &str,
) -> Result<TamperRow, AckError> {
    let (by, reason) = (by.trim(), reason.trim());
    if by.is_empty() {
        return Err(AckError::Missing("by"));
    }
    if reason.is_empty() {
        return Err(AckError::Missing("reason"));
    }
    let store = evaluator.store();
    let known = store.tampers(scope, agent_id).await.map_err(|e| match e {
        StoreError::NotFound { what: "agent", .. } => AckError::UnknownAgent(agent_id.to_string()),
        e => AckError::Store(e),
    })?;
    let Some(found) = known.iter().find(|t| t.tamper_id == tamper_id) else {
        return Err(AckError::UnknownTamper {
            agent_id: agent_id.to_string(),
            tamper_id: tamper_id.to_string(),
            open: known
                .iter()
                .filter(|t| t.acknowledged.is_none())
                .map(|t| format!("{} ({} on {})", t.tamper_id, t.kind, t.path))
                .collect(),
        });
    };
    if let Some(a) = &found.acknowledged {
        return Err(AckError::AlreadyAcknowledged {
            agent_id: agent_id.to_string(),
            tamper_id: tamper_id.to_string(),
            by: a.by.clone(),
            at: a.at,
        });
    }
    let ack = TamperAck {
        by: by.to_string(),
        at: evaluator.now(),
        reason: reason.to_string(),
    };
    let mut tx = store.begin().await.map_err(AckError::Store)?;
    let row = tx
        .acknowledge_tamper(agent_id, tamper_id, &ack)
        .await
        .map_err(AckError::Store)?;
    tx.audit(
        by,
        "tamper.acknowledge",
        &format!(
            "via {via}: agent {agent_id}: tamper {tamper_id} ({} on {}): {reason}",
            row.kind, row.path
        ),
        ack.at,
    )
    .await
    .map_err(AckError::Store)?;
    tx.commit().await.map_err(AckError::Store)?;
    // Stored: a failed evaluation is logged and counted, and the next report evaluates again.
    let _ = evaluator.evaluate_agent(agent_id).await;
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use rounds_policies::Severity;

    fn finding(status: Status) -> Finding {
        Finding {
            rule: LOG_INTEGRITY_RULE.into(),
            title: "t".into(),
            status,
            severity: Severity::High,
            citations: vec![],
            partial_citations: vec![],
            evidence: json!({"path": "/var/log/a.log"}),
            message: "ok".into(),
            remediation: None,
            exception: None,
        }
    }

    fn row(id: &str, ack: Option<&str>) -> TamperRow {
        let at = Utc.with_ymd_and_hms(2026, 11, 30, 10, 0, 0).unwrap();
        TamperRow {
            agent_id: "agt".into(),
            tamper_id: id.into(),
            path: "/var/log/a.log".into(),
            kind: "rewritten".into(),
            detected_at: at,
            first_seen_at: at,
            event: json!({}),
            acknowledged: ack.map(|by| TamperAck {
                by: by.into(),
                at,
                reason: "why".into(),
            }),
        }
    }

    #[test]
    fn an_open_tamper_holds_a_passing_finding_failing_and_an_acknowledged_one_does_not() {
        let mut f = vec![finding(Status::Pass)];
        hold(&mut f, &[row("t1", None)]);
        assert_eq!(f[0].status, Status::Fail);
        assert!(f[0].message.contains("t1"), "{}", f[0].message);
        assert_eq!(f[0].evidence["path"], "/var/log/a.log", "the policy's evidence is kept");

        let mut f = vec![finding(Status::Pass)];
        hold(&mut f, &[row("t1", Some("ana"))]);
        assert_eq!(f[0].status, Status::Pass);
        assert_eq!(f[0].evidence["acknowledged_tampers"][0]["acknowledged_by"], "ana");

        let mut f = vec![finding(Status::Pass)];
        hold(&mut f, &[]);
        assert_eq!(f[0], finding(Status::Pass), "no tamper, no change");
    }

    #[test]
    fn tampers_are_read_from_tamper_and_last_tamper_once_per_id() {
        let at = Utc.with_ymd_and_hms(2026, 11, 30, 10, 0, 0).unwrap();
        let t = json!({"id": "x1", "kind": "truncated", "detected_at": "2026-11-30T09:00:00Z"});
        let o = Observation {
            kind: "audit.log".into(),
            subject: "/var/log/a.log".into(),
            observed_at: at,
            status: rounds_protocol::ObservationStatus::Ok,
            data: json!({"path": "/var/log/a.log", "tamper": t, "last_tamper": t}),
            error: None,
        };
        let s = seen(&[o]);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].kind, "truncated");
        assert_eq!(s[0].detected_at, Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).unwrap());
    }
}
