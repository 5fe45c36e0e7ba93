//! Current findings per agent and rule, and their history (PostgreSQL; mirrors
//! `store/sqlite/findings.rs`: [`replace`] records every appearance, status change, exception
//! change and retirement in `finding_changes` in the same transaction; "as at T" is the newest
//! change per rule recorded at or before T).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rounds_policies::{Finding, Status};

use tokio_postgres::Row;

use super::agents::scope_clause;
use super::codec::{db, from_json, from_ms, from_name, ms, to_json};
use super::pool::{Conn, Pending, pipeline_all};
use crate::store::common::{StoredFinding, finding_write, retirement};
use crate::store::{ChangeQuery, FindingChange, FindingRow, Scope, StoreError, StoreResult};

const AGENT_EXISTS: &str = "SELECT id FROM agents WHERE id = $1";
const PREVIOUS: &str = "SELECT rule, status, status_since, severity, title, citations, evidence, message, remediation,
            exception
     FROM findings WHERE agent_id = $1";
/// Rows whose finding is unchanged are not rewritten; the time of this evaluation is kept once
/// for the agent (migration 0014), which [`current`] reads for every row. Sent beside the
/// reads, so it names the agent through `agents`: an unknown one is answered "not found" below,
/// not refused by the foreign key.
const EVALUATED: &str =
    "INSERT INTO agent_evaluations (agent_id, evaluated_at) SELECT id, $2::BIGINT FROM agents WHERE id = $1
     ON CONFLICT (agent_id) DO UPDATE SET evaluated_at = excluded.evaluated_at";
const UPSERT: &str = "INSERT INTO findings (agent_id, rule, status, severity, title, citations, evidence, message,
                           remediation, exception, evaluated_at, status_since)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
     ON CONFLICT (agent_id, rule) DO UPDATE SET
       status = excluded.status, severity = excluded.severity, title = excluded.title,
       citations = excluded.citations, evidence = excluded.evidence, message = excluded.message,
       remediation = excluded.remediation, exception = excluded.exception,
       evaluated_at = excluded.evaluated_at, status_since = excluded.status_since";
const DELETE: &str = "DELETE FROM findings WHERE agent_id = $1 AND rule = $2";
const RECORD: &str =
    "INSERT INTO finding_changes (agent_id, rule, at, old_status, new_status, status_since, severity, title,
                                 citations, evidence, message, remediation, old_exception, exception)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";
/// The practice's tally lock (see [`super::PRACTICE_LOCK_CLASS`]), taken before a write that
/// makes the triggers of migrations 0011 and 0012 recount a (practice, rule) tally: the
/// recount reads every agent of the practice, so two recounts of one practice never run at
/// once, and the second reads what the first committed.
const LOCK_PRACTICE: &str = "SELECT pg_advisory_xact_lock($2::INT4, (s.practice_id % 2147483647)::INT4)
     FROM agents a JOIN sites s ON s.id = a.site_id WHERE a.id = $1";

/// One write of [`replace`], in the order they are sent.
enum Write {
    Upsert(usize, Encoded),
    Delete(String),
    /// The change at this index of the changes returned, with its status_since.
    Record(usize, i64),
}

/// What [`finding_write`] decided for one finding, kept for the pipeline.
struct Encoded {
    since: i64,
    citations: String,
    evidence: String,
    exception: Option<String>,
}

/// Replaces an agent's findings in the open transaction of `c` and records the changes: the
/// reads in one round trip, every write in one more.
pub async fn replace(
    c: &Conn,
    agent_id: &str,
    findings: &[Finding],
    now: DateTime<Utc>,
) -> StoreResult<Vec<FindingChange>> {
    c.prepare_all(&[AGENT_EXISTS, PREVIOUS, EVALUATED]).await.map_err(db)?;
    let (exists, previous, _) = tokio::try_join!(
        async { c.query_opt(AGENT_EXISTS, &[&agent_id]).await },
        async { c.query(PREVIOUS, &[&agent_id]).await },
        async { c.execute(EVALUATED, &[&agent_id, &ms(now)]).await },
    )
    .map_err(db)?;
    if exists.is_none() {
        return Err(StoreError::NotFound {
            what: "agent",
            name: agent_id.to_string(),
        });
    }
    let mut previous: HashMap<String, StoredFinding> = previous
        .into_iter()
        .map(|r| {
            (
                r.get::<_, String>(0),
                StoredFinding {
                    status: r.get(1),
                    status_since: r.get(2),
                    severity: r.get(3),
                    title: r.get(4),
                    citations: r.get(5),
                    evidence: r.get(6),
                    message: r.get(7),
                    remediation: r.get(8),
                    exception: r.get(9),
                },
            )
        })
        .collect();
    let mut writes = Vec::new();
    let mut changes = Vec::new();
    // Whether a write fires the tally triggers: an insert, a delete, or an update of status,
    // exception or status_since (the WHEN of 0012's update trigger).
    let mut recounts = false;
    for (i, f) in findings.iter().enumerate() {
        let old = previous.remove(&f.rule);
        let w = finding_write(agent_id, f, old.as_ref(), now)?;
        if w.rewrite {
            recounts |= old.as_ref().is_none_or(|o| {
                o.status != f.status.as_str() || o.exception != w.exception || o.status_since != w.since
            });
            writes.push(Write::Upsert(
                i,
                Encoded {
                    since: w.since,
                    citations: w.citations,
                    evidence: w.evidence,
                    exception: w.exception,
                },
            ));
        }
        if let Some(change) = w.change {
            writes.push(Write::Record(changes.len(), w.since));
            changes.push(change);
        }
    }
    let mut retired: Vec<(String, StoredFinding)> = previous.into_iter().collect();
    retired.sort_by(|a, b| a.0.cmp(&b.0));
    for (rule, o) in retired {
        recounts = true;
        writes.push(Write::Delete(rule.clone()));
        writes.push(Write::Record(changes.len(), ms(now)));
        changes.push(retirement(agent_id, rule, o, now)?);
    }
    if writes.is_empty() {
        return Ok(changes);
    }
    c.prepare_all(&[UPSERT, DELETE, RECORD, LOCK_PRACTICE])
        .await
        .map_err(db)?;
    let at = ms(now);
    let mut pipeline: Vec<Pending<'_, u64, StoreError>> = Vec::with_capacity(writes.len() + 1);
    if recounts {
        pipeline.push(Box::pin(async move {
            c.execute(LOCK_PRACTICE, &[&agent_id, &super::PRACTICE_LOCK_CLASS])
                .await
                .map_err(db)
        }));
    }
    for w in &writes {
        match w {
            Write::Upsert(i, w) => {
                let f = &findings[*i];
                pipeline.push(Box::pin(async move {
                    c.execute(
                        UPSERT,
                        &[
                            &agent_id,
                            &f.rule,
                            &f.status.as_str(),
                            &f.severity.as_str(),
                            &f.title,
                            &w.citations,
                            &w.evidence,
                            &f.message,
                            &f.remediation,
                            &w.exception,
                            &at,
                            &w.since,
                        ],
                    )
                    .await
                    .map_err(db)
                }));
            }
            Write::Delete(rule) => {
                pipeline.push(Box::pin(async move {
                    c.execute(DELETE, &[&agent_id, rule]).await.map_err(db)
                }));
            }
            Write::Record(i, since) => pipeline.push(Box::pin(record(c, &changes[*i], *since))),
        }
    }
    pipeline_all(pipeline).await?;
    Ok(changes)
}

async fn record(c: &Conn, change: &FindingChange, status_since: i64) -> StoreResult<u64> {
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
    } = change;
    let (citations, evidence) = (to_json(citations)?, to_json(evidence)?);
    let old_exception = old_exception.as_ref().map(to_json).transpose()?;
    let exception = exception.as_ref().map(to_json).transpose()?;
    c.execute(
        RECORD,
        &[
            agent_id,
            rule,
            &ms(*at),
            &old_status.map(Status::as_str),
            &new_status.map(Status::as_str),
            &status_since,
            &severity.as_str(),
            title,
            &citations,
            &evidence,
            message,
            remediation,
            &old_exception,
            &exception,
        ],
    )
    .await
    .map_err(db)
}

/// A finding row: rule, status, severity, title, citations, evidence, message, remediation,
/// exception, evaluated/changed at, status since.
fn row(r: &Row) -> StoreResult<FindingRow> {
    let exception: Option<&str> = r.get(8);
    Ok(FindingRow {
        rule: r.get(0),
        status: from_name("status", r.get(1))?,
        severity: from_name("severity", r.get(2))?,
        title: r.get(3),
        citations: from_json("citations", r.get(4))?,
        evidence: from_json("evidence", r.get(5))?,
        message: r.get(6),
        remediation: r.get(7),
        exception: exception.map(|e| from_json("exception", e)).transpose()?,
        evaluated_at: from_ms(r.get(9)),
        status_since: from_ms(r.get(10)),
    })
}

/// The current findings of an agent, by rule; `evaluated_at` is the agent's last evaluation
/// (migration 0014: every evaluation covers all of the agent's rules).
pub async fn current(c: &Conn, agent_id: &str) -> StoreResult<Vec<FindingRow>> {
    c.query(
        "SELECT f.rule, f.status, f.severity, f.title, f.citations, f.evidence, f.message, f.remediation,
                f.exception, COALESCE(e.evaluated_at, f.evaluated_at), f.status_since
         FROM findings f LEFT JOIN agent_evaluations e ON e.agent_id = f.agent_id
         WHERE f.agent_id = $1 ORDER BY f.rule",
        &[&agent_id],
    )
    .await
    .map_err(db)?
    .iter()
    .map(row)
    .collect()
}

/// The findings of an agent as they stood at `at`, by rule.
pub async fn as_at(c: &Conn, agent_id: &str, at: DateTime<Utc>) -> StoreResult<Vec<FindingRow>> {
    c.query(
        "SELECT fc.rule, fc.new_status, fc.severity, fc.title, fc.citations, fc.evidence, fc.message,
                fc.remediation, fc.exception, fc.at, fc.status_since
         FROM finding_changes fc
         JOIN (SELECT rule, MAX(id) AS id FROM finding_changes WHERE agent_id = $1 AND at <= $2 GROUP BY rule) last
           ON last.id = fc.id
         WHERE fc.new_status IS NOT NULL ORDER BY fc.rule",
        &[&agent_id, &ms(at)],
    )
    .await
    .map_err(db)?
    .iter()
    .map(row)
    .collect()
}

/// Finding changes visible to `scope` matching `query`, oldest first.
pub async fn changes(c: &Conn, scope: &Scope, query: &ChangeQuery) -> StoreResult<Vec<FindingChange>> {
    let ChangeQuery {
        agent_id,
        practice_id,
        from,
        to,
    } = query;
    let (clause, arg) = scope_clause(scope);
    let sql = format!(
        "SELECT fc.agent_id, fc.rule, fc.at, fc.old_status, fc.new_status, fc.severity, fc.title, fc.citations,
                fc.evidence, fc.message, fc.remediation, fc.old_exception, fc.exception
         FROM finding_changes fc JOIN agents a ON a.id = fc.agent_id JOIN sites s ON s.id = a.site_id
           JOIN practices p ON p.id = s.practice_id
         WHERE {clause} AND ($2::TEXT IS NULL OR fc.agent_id = $2) AND ($3::BIGINT IS NULL OR p.id = $3)
           AND fc.at >= $4 AND fc.at < $5
         ORDER BY fc.at, fc.id"
    );
    let rows = c
        .query(&sql, &[&arg, agent_id, practice_id, &ms(*from), &ms(*to)])
        .await
        .map_err(db)?;
    rows.iter()
        .map(|r| {
            let old_status: Option<&str> = r.get(3);
            let new_status: Option<&str> = r.get(4);
            let old_exception: Option<&str> = r.get(11);
            let exception: Option<&str> = r.get(12);
            Ok(FindingChange {
                agent_id: r.get(0),
                rule: r.get(1),
                at: from_ms(r.get(2)),
                old_status: old_status.map(|s| from_name("status", s)).transpose()?,
                new_status: new_status.map(|s| from_name("status", s)).transpose()?,
                severity: from_name("severity", r.get(5))?,
                title: r.get(6),
                citations: from_json("citations", r.get(7))?,
                evidence: from_json("evidence", r.get(8))?,
                message: r.get(9),
                remediation: r.get(10),
                old_exception: old_exception.map(|e| from_json("exception", e)).transpose()?,
                exception: exception.map(|e| from_json("exception", e)).transpose()?,
            })
        })
        .collect()
}
