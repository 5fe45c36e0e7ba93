//! Current findings per agent and rule, and their history.
//!
//! [`replace`] compares the new findings with the current ones and records, in the same
//! transaction, every appearance, status change, exception change and retirement in
//! `finding_changes`, each with the finding as it was at that moment. "As at T" is the newest
//! change per rule recorded at or before T (in recorded order).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rounds_policies::{Finding, Status};

use crate::store::common::{StoredFinding, finding_write, retirement};
use rusqlite::{Connection, OptionalExtension, params};

use super::agents::scope_clause;
use super::codec::{db, from_json, from_ms, from_name, ms, to_json};
use crate::store::{ChangeQuery, FindingChange, FindingRow, Scope, StoreError, StoreResult};

/// Replaces an agent's findings in the open transaction of `conn` and records the changes.
pub fn replace(
    conn: &Connection,
    agent_id: &str,
    findings: &[Finding],
    now: DateTime<Utc>,
) -> StoreResult<Vec<FindingChange>> {
    let exists: Option<String> = conn
        .prepare_cached("SELECT id FROM agents WHERE id = ?1")
        .and_then(|mut s| s.query_row([agent_id], |r| r.get(0)).optional())
        .map_err(db)?;
    if exists.is_none() {
        return Err(StoreError::NotFound {
            what: "agent",
            name: agent_id.to_string(),
        });
    }
    let mut previous: HashMap<String, StoredFinding> = {
        let mut stmt = conn
            .prepare_cached(
                "SELECT rule, status, status_since, severity, title, citations, evidence, message, remediation, exception
                 FROM findings WHERE agent_id = ?1",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map([agent_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    StoredFinding {
                        status: r.get(1)?,
                        status_since: r.get(2)?,
                        severity: r.get(3)?,
                        title: r.get(4)?,
                        citations: r.get(5)?,
                        evidence: r.get(6)?,
                        message: r.get(7)?,
                        remediation: r.get(8)?,
                        exception: r.get(9)?,
                    },
                ))
            })
            .map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)?
    };
    // Rows whose finding is unchanged are not rewritten; the time of this evaluation is kept
    // once for the agent (migration 0014), which `current` reads for every row.
    conn.prepare_cached(
        "INSERT INTO agent_evaluations (agent_id, evaluated_at) VALUES (?1, ?2)
         ON CONFLICT (agent_id) DO UPDATE SET evaluated_at = excluded.evaluated_at",
    )
    .and_then(|mut s| s.execute(params![agent_id, ms(now)]))
    .map_err(db)?;
    let mut ins = conn
        .prepare_cached(
            "INSERT INTO findings (agent_id, rule, status, severity, title, citations, evidence, message,
                                   remediation, exception, evaluated_at, status_since)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT (agent_id, rule) DO UPDATE SET
               status = excluded.status, severity = excluded.severity, title = excluded.title,
               citations = excluded.citations, evidence = excluded.evidence, message = excluded.message,
               remediation = excluded.remediation, exception = excluded.exception,
               evaluated_at = excluded.evaluated_at, status_since = excluded.status_since",
        )
        .map_err(db)?;
    let mut changes = Vec::new();
    for f in findings {
        let w = finding_write(agent_id, f, previous.remove(&f.rule).as_ref(), now)?;
        if w.rewrite {
            ins.execute(params![
                agent_id,
                f.rule,
                f.status.as_str(),
                f.severity.as_str(),
                f.title,
                w.citations,
                w.evidence,
                f.message,
                f.remediation,
                w.exception,
                ms(now),
                w.since
            ])
            .map_err(db)?;
        }
        if let Some(change) = w.change {
            record(conn, &change, w.since)?;
            changes.push(change);
        }
    }
    let mut retired: Vec<(String, StoredFinding)> = previous.into_iter().collect();
    retired.sort_by(|a, b| a.0.cmp(&b.0));
    let mut delete = conn
        .prepare_cached("DELETE FROM findings WHERE agent_id = ?1 AND rule = ?2")
        .map_err(db)?;
    for (rule, o) in retired {
        delete.execute(params![agent_id, rule]).map_err(db)?;
        let change = retirement(agent_id, rule, o, now)?;
        record(conn, &change, ms(now))?;
        changes.push(change);
    }
    Ok(changes)
}

fn record(conn: &Connection, c: &FindingChange, status_since: i64) -> StoreResult<()> {
    let FindingChange {
        agent_id,
        rule,
        at,
        old_status,
        new_status,
        severity,
        title,
        citations,
        evidence,
        message,
        remediation,
        old_exception,
        exception,
    } = c;
    conn.prepare_cached(
        "INSERT INTO finding_changes (agent_id, rule, at, old_status, new_status, status_since, severity, title,
                                      citations, evidence, message, remediation, old_exception, exception)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )
    .and_then(|mut s| {
        s.execute(params![
            agent_id,
            rule,
            ms(*at),
            old_status.map(Status::as_str),
            new_status.map(Status::as_str),
            status_since,
            severity.as_str(),
            title,
            to_json(citations).unwrap_or_default(),
            to_json(evidence).unwrap_or_default(),
            message,
            remediation,
            old_exception.as_ref().map(to_json).transpose().unwrap_or_default(),
            exception.as_ref().map(to_json).transpose().unwrap_or_default(),
        ])
    })
    .map_err(db)?;
    Ok(())
}

/// Columns of a finding row, for [`row`].
type Raw = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
    i64,
);

fn raw(r: &rusqlite::Row<'_>) -> rusqlite::Result<Raw> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
    ))
}

fn row(raw: Raw) -> StoreResult<FindingRow> {
    let (rule, status, severity, title, citations, evidence, message, remediation, exception, at, since) = raw;
    Ok(FindingRow {
        status: from_name("status", &status)?,
        severity: from_name("severity", &severity)?,
        citations: from_json("citations", &citations)?,
        evidence: from_json("evidence", &evidence)?,
        exception: exception.as_deref().map(|e| from_json("exception", e)).transpose()?,
        rule,
        title,
        message,
        remediation,
        evaluated_at: from_ms(at),
        status_since: from_ms(since),
    })
}

/// The current findings of an agent, by rule; `evaluated_at` is the agent's last evaluation
/// (migration 0014: every evaluation covers all of the agent's rules).
pub fn current(conn: &Connection, agent_id: &str) -> StoreResult<Vec<FindingRow>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT f.rule, f.status, f.severity, f.title, f.citations, f.evidence, f.message, f.remediation,
                    f.exception, COALESCE(e.evaluated_at, f.evaluated_at), f.status_since
             FROM findings f LEFT JOIN agent_evaluations e ON e.agent_id = f.agent_id
             WHERE f.agent_id = ?1 ORDER BY f.rule",
        )
        .map_err(db)?;
    let rows = stmt.query_map([agent_id], raw).map_err(db)?;
    let raw: Vec<Raw> = rows.collect::<Result<_, _>>().map_err(db)?;
    raw.into_iter().map(row).collect()
}

/// The findings of an agent as they stood at `at`, by rule.
pub fn as_at(conn: &Connection, agent_id: &str, at: DateTime<Utc>) -> StoreResult<Vec<FindingRow>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT fc.rule, fc.new_status, fc.severity, fc.title, fc.citations, fc.evidence, fc.message,
                    fc.remediation, fc.exception, fc.at, fc.status_since
             FROM finding_changes fc
             JOIN (SELECT rule, MAX(id) AS id FROM finding_changes WHERE agent_id = ?1 AND at <= ?2 GROUP BY rule) last
               ON last.id = fc.id
             WHERE fc.new_status IS NOT NULL ORDER BY fc.rule",
        )
        .map_err(db)?;
    let rows = stmt.query_map(params![agent_id, ms(at)], raw).map_err(db)?;
    let raw: Vec<Raw> = rows.collect::<Result<_, _>>().map_err(db)?;
    raw.into_iter().map(row).collect()
}

/// Finding changes visible to `scope` matching `query`, oldest first.
pub fn changes(conn: &Connection, scope: &Scope, query: &ChangeQuery) -> StoreResult<Vec<FindingChange>> {
    let ChangeQuery {
        agent_id,
        practice_id,
        from,
        to,
    } = query;
    let (clause, arg) = scope_clause(scope);
    // An agent or a practice narrows the rows through `finding_changes_by_agent_time` (an
    // `?N IS NULL OR` term would leave SQLite the time index over every agent's history).
    let agent_term = match agent_id {
        Some(_) => "fc.agent_id = ?2",
        None => "?2 IS NULL",
    };
    let practice_term = match practice_id {
        Some(_) => {
            "fc.agent_id IN (SELECT a3.id FROM sites s3 JOIN agents a3 ON a3.site_id = s3.id WHERE s3.practice_id = ?3)"
        }
        None => "?3 IS NULL",
    };
    let sql = format!(
        "SELECT fc.agent_id, fc.rule, fc.at, fc.old_status, fc.new_status, fc.severity, fc.title, fc.citations,
                fc.evidence, fc.message, fc.remediation, fc.old_exception, fc.exception
         FROM finding_changes fc JOIN agents a ON a.id = fc.agent_id JOIN sites s ON s.id = a.site_id
           JOIN practices p ON p.id = s.practice_id
         WHERE {clause} AND {agent_term} AND {practice_term}
           AND fc.at >= ?4 AND fc.at < ?5
         ORDER BY fc.at, fc.id"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(db)?;
    type ChangeRaw = (
        String,
        String,
        i64,
        Option<String>,
        Option<String>,
        String,
        String,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let rows = stmt
        .query_map(params![arg, agent_id, practice_id, ms(*from), ms(*to)], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
                r.get(11)?,
                r.get(12)?,
            ))
        })
        .map_err(db)?;
    let raw: Vec<ChangeRaw> = rows.collect::<Result<_, _>>().map_err(db)?;
    raw.into_iter()
        .map(
            |(
                agent_id,
                rule,
                at,
                old_status,
                new_status,
                severity,
                title,
                citations,
                evidence,
                message,
                remediation,
                old_exception,
                exception,
            )| {
                Ok(FindingChange {
                    agent_id,
                    rule,
                    at: from_ms(at),
                    old_status: old_status.as_deref().map(|s| from_name("status", s)).transpose()?,
                    new_status: new_status.as_deref().map(|s| from_name("status", s)).transpose()?,
                    severity: from_name("severity", &severity)?,
                    title,
                    citations: from_json("citations", &citations)?,
                    evidence: from_json("evidence", &evidence)?,
                    message,
                    remediation,
                    old_exception: old_exception
                        .as_deref()
                        .map(|e| from_json("exception", e))
                        .transpose()?,
                    exception: exception.as_deref().map(|e| from_json("exception", e)).transpose()?,
                })
            },
        )
        .collect()
}
