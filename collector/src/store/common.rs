//! Pieces of the store that do not depend on the backend, used by SQLite and PostgreSQL alike
//! (issue 17): what replacing a finding writes and records, and the journal's `audit.log`
//! observation.

use chrono::{DateTime, Utc};
use rounds_policies::{Finding, Status};

use super::codec::{from_json, from_ms, from_name, ms, to_json};
use super::{FindingChange, StoreError, StoreResult};

/// A current finding as stored, in its stored encoding.
#[derive(Debug)]
pub struct StoredFinding {
    pub status: String,
    pub status_since: i64,
    pub severity: String,
    pub title: String,
    pub citations: String,
    pub evidence: String,
    pub message: String,
    pub remediation: Option<String>,
    pub exception: Option<String>,
}

/// What replacing one rule's finding writes: its encodings, since when its status holds,
/// whether the row must be rewritten, and the change to record, if any.
#[derive(Debug)]
pub struct FindingWrite {
    pub since: i64,
    pub citations: String,
    pub evidence: String,
    pub exception: Option<String>,
    /// The stored row differs from the new finding (otherwise only `evaluated_at` moves).
    pub rewrite: bool,
    /// Appearance, status change or accepted-risk change.
    pub change: Option<FindingChange>,
}

/// Decides what replacing `old` (the stored finding of the rule, if any) with `f` writes.
pub fn finding_write(
    agent_id: &str,
    f: &Finding,
    old: Option<&StoredFinding>,
    now: DateTime<Utc>,
) -> StoreResult<FindingWrite> {
    let Finding {
        rule,
        title,
        status,
        severity,
        citations,
        // Partial marks are the pack's: reports read them from the rule by id.
        partial_citations: _,
        evidence,
        message,
        remediation,
        exception,
    } = f;
    let since = match old {
        Some(o) if o.status == status.as_str() => o.status_since,
        _ => ms(now),
    };
    let exception_json = exception.as_ref().map(to_json).transpose()?;
    let (citations_json, evidence_json) = (to_json(citations)?, to_json(evidence)?);
    let same_row = old.is_some_and(|o| {
        o.status == status.as_str()
            && o.severity == severity.as_str()
            && o.title == *title
            && o.citations == citations_json
            && o.evidence == evidence_json
            && o.message == *message
            && o.remediation == *remediation
            && o.exception == exception_json
    });
    let changed = match old {
        None => true,
        Some(o) => o.status != status.as_str() || o.exception != exception_json,
    };
    let change = if changed {
        let old_status = old.map(|o| from_name::<Status>("status", &o.status)).transpose()?;
        let old_exception = old
            .and_then(|o| o.exception.as_deref())
            .map(|e| from_json("exception", e))
            .transpose()?;
        Some(FindingChange {
            agent_id: agent_id.to_string(),
            rule: rule.clone(),
            at: from_ms(ms(now)),
            old_status,
            new_status: Some(*status),
            severity: *severity,
            title: title.clone(),
            citations: citations.clone(),
            evidence: evidence.clone(),
            message: message.clone(),
            remediation: remediation.clone(),
            old_exception,
            exception: exception.clone(),
        })
    } else {
        None
    };
    Ok(FindingWrite {
        since,
        citations: citations_json,
        evidence: evidence_json,
        exception: exception_json,
        rewrite: !same_row,
        change,
    })
}

/// The change that records the retirement of `rule`'s stored finding `o`.
pub fn retirement(agent_id: &str, rule: String, o: StoredFinding, now: DateTime<Utc>) -> StoreResult<FindingChange> {
    let exception = o.exception.as_deref().map(|e| from_json("exception", e)).transpose()?;
    Ok(FindingChange {
        agent_id: agent_id.to_string(),
        rule,
        at: from_ms(ms(now)),
        old_status: Some(from_name("status", &o.status)?),
        new_status: None,
        severity: from_name("severity", &o.severity)?,
        title: o.title,
        citations: from_json("citations", &o.citations)?,
        evidence: from_json("evidence", &o.evidence)?,
        message: o.message,
        remediation: o.remediation,
        old_exception: exception,
        exception: None,
    })
}

/// Subject of the observation that judges the agent's own journal.
pub const JOURNAL_SUBJECT: &str = "rounds-agent journal";
/// `check_name` of that observation: no agent check retires it.
pub const JOURNAL_CHECK: &str = "collector.chain";
/// Check names an agent may not use (the API refuses them): the collector's own checks, such
/// as [`JOURNAL_CHECK`].
pub const RESERVED_CHECK_PREFIX: &str = "collector.";

/// The newest integrity problem of an agent, as its row says: id, kind, at, sequence.
pub type NewestProblem = (i64, String, i64, i64);

/// The `audit.log` payload (JSON) that keeps the agent's journal, as the collector verified
/// it, in the current state (`rounds_protocol::obs::AuditLog`), so the policy rule
/// `hipaa.audit.log_integrity` judges it with the agent's watched logs. Tamper
/// acknowledgement (core, issue 11): the newest chain problem is the journal's `last_tamper`
/// (id `chain-<event id>`), which the evaluator holds open until a person acknowledges it
/// (crate::tamper); the look itself is append-only, so an acknowledged journal passes again
/// and a later problem opens a new event.
pub fn journal_payload(newest: Option<NewestProblem>, now: DateTime<Utc>) -> StoreResult<String> {
    use rounds_protocol::obs::{AuditLog, TamperEvent};
    let last_tamper = newest.map(|(id, kind, at, sequence)| TamperEvent {
        id: format!("chain-{id}"),
        kind: if kind == "gap" { "truncated" } else { "rewritten" }.to_string(),
        detected_at: from_ms(at),
        range_start: Some(sequence.max(0) as u64),
        range_end: Some(sequence.max(0) as u64 + 1),
        ..TamperEvent::default()
    });
    let data = AuditLog {
        path: "rounds-agent journal (hash chain verified by the collector)".into(),
        present: true,
        append_only: Some(true),
        truncated: Some(false),
        rewritten: Some(false),
        world_writable: None,
        last_entry_at: Some(now),
        longest_gap_secs: None,
        cleared: None,
        last_tamper,
        ..AuditLog::default()
    };
    serde_json::to_string(&data).map_err(|e| StoreError::Invalid(e.to_string()))
}

// --- Heartbeats at scale (issue 16) ---
/// The SQL of an incident list (`Store::incidents`), both backends: the query's source, states
/// and top-level filter, and the scope's practice, in the `WHERE` clause, newest first, so a
/// list decodes only incidents it may answer. The alert engine asks for a site's last 20
/// `site_offline` incidents at every probe report; selecting and decoding every incident ever
/// opened each time was 43 % of the collector's CPU at 10,000 agents (BENCHMARKS.md).
/// `source_param` is the backend's placeholder for the source (`?1`, `$1`). Where the scope
/// sees every incident the limit is applied in SQL too; a practice manager's list still
/// filters MSP-wide incidents by the practices they name, after decoding.
pub fn incident_list_sql(
    columns: &str,
    scope: &super::Scope,
    q: &crate::alerting::model::IncidentQuery,
    source_param: &str,
) -> String {
    let mut clauses = Vec::new();
    if q.source.is_some() {
        clauses.push(format!("source = {source_param}"));
    }
    if !q.states.is_empty() {
        // Constants of the enum, never user text.
        let states: Vec<String> = q.states.iter().map(|s| format!("'{}'", s.as_str())).collect();
        clauses.push(format!("state IN ({})", states.join(", ")));
    }
    if q.top_level_only {
        clauses.push("parent_id IS NULL".into());
    }
    let sees_all = match scope.role {
        super::Role::Admin | super::Role::Technician => true,
        super::Role::PracticeManager => {
            // An integer, not text: the practice's own incidents and the MSP-wide ones.
            let own = scope.practice_id.map_or("NULL".to_string(), |id| id.to_string());
            clauses.push(format!("(practice_id = {own} OR practice_id IS NULL)"));
            false
        }
    };
    let mut sql = format!("SELECT {columns} FROM incidents");
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    sql.push_str(" ORDER BY id DESC");
    if sees_all {
        sql.push_str(&format!(" LIMIT {}", incident_list_limit(q)));
    }
    sql
}

/// How many incidents a list answers at most (500 unless the query says).
pub fn incident_list_limit(q: &crate::alerting::model::IncidentQuery) -> usize {
    q.limit.unwrap_or(500) as usize
}
