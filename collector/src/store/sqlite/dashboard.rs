//! Reads for the technician dashboard: every current finding in brief, the current findings
//! tallied per practice and rule, and a practice's observation history of one kind over a period.

use chrono::{DateTime, Utc};
use rounds_protocol::{Observation, ObservationStatus};
use rusqlite::{Connection, params};

use super::agents::scope_clause;
use super::codec::{db, from_ms, from_name, ms};
use crate::store::{
    DbErrorKind, FindingBrief, ObservedFields, Role, RuleTally, Scope, StoreError, StoreResult, StoredObservation,
    UserSummary,
};

/// Every current finding of the agents `scope` sees, without evidence.
pub fn briefs(conn: &Connection, scope: &Scope) -> StoreResult<Vec<FindingBrief>> {
    let (clause, arg) = scope_clause(scope);
    let sql = format!(
        "SELECT f.agent_id, f.rule, f.status, f.severity, f.exception IS NOT NULL, f.status_since
         FROM findings f JOIN agents a ON a.id = f.agent_id JOIN sites s ON s.id = a.site_id
         JOIN practices p ON p.id = s.practice_id WHERE {clause}"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(db)?;
    let rows = stmt
        .query_map(params![arg], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, bool>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })
        .map_err(db)?;
    rows.map(|row| {
        let (agent_id, rule, status, severity, accepted, since) = row.map_err(db)?;
        Ok(FindingBrief {
            agent_id,
            rule,
            status: from_name("finding status", &status)?,
            severity: from_name("finding severity", &severity)?,
            accepted,
            status_since: from_ms(since),
        })
    })
    .collect()
}

/// The current findings of the practices `scope` sees per (practice, rule), from
/// `practice_rule_tallies` (kept by triggers on `findings`, migration 0011).
pub fn rule_tallies(conn: &Connection, scope: &Scope) -> StoreResult<Vec<RuleTally>> {
    let (clause, arg) = scope_clause(scope);
    let sql = format!(
        "SELECT t.practice_id, t.rule, t.pass, t.fail, t.error, t.not_applicable, t.accepted, t.bad_since
         FROM practice_rule_tallies t JOIN practices p ON p.id = t.practice_id WHERE {clause}"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(db)?;
    let count = |r: &rusqlite::Row<'_>, i: usize| -> rusqlite::Result<u32> {
        Ok(u32::try_from(r.get::<_, i64>(i)?).unwrap_or(0))
    };
    let rows = stmt
        .query_map(params![arg], |r| {
            Ok(RuleTally {
                practice_id: r.get(0)?,
                rule: r.get(1)?,
                pass: count(r, 2)?,
                fail: count(r, 3)?,
                error: count(r, 4)?,
                not_applicable: count(r, 5)?,
                accepted: count(r, 6)?,
                bad_since: r.get::<_, Option<i64>>(7)?.map(from_ms),
            })
        })
        .map_err(db)?;
    rows.collect::<Result<_, _>>().map_err(db)
}

/// [`history`]'s query (?1 practice, ?2 kind, ?3 from, ?4 to).
pub(crate) const HISTORY: &str =
    "SELECT o.agent_id, o.sequence, o.subject, o.observed_at, o.status, o.data, o.error, o.future_dated
             FROM observations o JOIN agents a ON a.id = o.agent_id JOIN sites s ON s.id = a.site_id
             WHERE s.practice_id = ?1 AND o.kind = ?2 AND o.observed_at >= ?3 AND o.observed_at < ?4
             ORDER BY o.observed_at, o.id";

/// The observations of `kind` of practice `practice_id`'s agents observed in `from..to`,
/// oldest first. `NotFound` when `scope` does not see the practice.
pub fn history(
    conn: &Connection,
    scope: &Scope,
    practice_id: i64,
    kind: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> StoreResult<Vec<StoredObservation>> {
    visible(conn, scope, practice_id)?;
    let mut stmt = conn.prepare_cached(HISTORY).map_err(db)?;
    let rows = stmt
        .query_map(params![practice_id, kind, ms(from), ms(to)], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, bool>(7)?,
            ))
        })
        .map_err(db)?;
    rows.map(|row| {
        let (agent_id, sequence, subject, observed_at, status, data, error, future_dated) = row.map_err(db)?;
        let data = serde_json::from_str(&data).map_err(|e| {
            StoreError::database(
                DbErrorKind::Corrupt,
                format!("decoding stored observation {kind} / {subject}"),
                e,
            )
        })?;
        Ok(StoredObservation {
            agent_id,
            sequence: sequence.max(0) as u64,
            confirmed_at: None,
            future_dated,
            observation: Observation {
                kind: kind.to_string(),
                subject,
                observed_at: from_ms(observed_at),
                status: if status == "ok" {
                    ObservationStatus::Ok
                } else {
                    ObservationStatus::Error
                },
                data,
                error,
            },
        })
    })
    .collect()
}

/// The top-level `fields` of the payloads of the observations of `kind` that ran, of practice
/// `practice_id`'s agents, observed in `from..to`, oldest first. SQLite's `json_extract` with
/// several paths returns them as one JSON array: a few values are decoded, not the payload.
#[allow(clippy::too_many_arguments)]
pub fn fields(
    conn: &Connection,
    scope: &Scope,
    practice_id: i64,
    kind: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    fields: &[String],
) -> StoreResult<Vec<ObservedFields>> {
    visible(conn, scope, practice_id)?;
    // `?5`, `?6`, ...: the JSON paths, bound (a field name is never SQL; the callers' names
    // are identifiers, quoted as JSON path labels). With one path json_extract returns the bare
    // SQL value (`true` as 1), so one path is asked twice and the second value dropped.
    let mut paths: Vec<String> = fields.iter().map(|f| format!("$.\"{f}\"")).collect();
    if paths.len() == 1 {
        paths.push(paths[0].clone());
    }
    let placeholders: Vec<String> = (0..paths.len()).map(|i| format!("?{}", i + 5)).collect();
    let values = if paths.is_empty() {
        "'[]'".to_string()
    } else {
        format!("json_extract(o.data, {})", placeholders.join(", "))
    };
    let sql = format!(
        "SELECT o.agent_id, o.subject, o.observed_at, {values}
         FROM observations o JOIN agents a ON a.id = o.agent_id JOIN sites s ON s.id = a.site_id
         WHERE s.practice_id = ?1 AND o.kind = ?2 AND o.observed_at >= ?3 AND o.observed_at < ?4 AND o.status = 'ok'
         ORDER BY o.observed_at, o.id"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(db)?;
    let mut args: Vec<rusqlite::types::Value> = vec![
        practice_id.into(),
        kind.to_string().into(),
        ms(from).into(),
        ms(to).into(),
    ];
    args.extend(paths.into_iter().map(rusqlite::types::Value::from));
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .map_err(db)?;
    rows.map(|row| {
        let (agent_id, subject, observed_at, values) = row.map_err(db)?;
        let mut values: Vec<serde_json::Value> = serde_json::from_str(&values).map_err(|e| {
            StoreError::database(
                DbErrorKind::Corrupt,
                format!("decoding stored observation {kind} / {subject}"),
                e,
            )
        })?;
        values.truncate(fields.len());
        Ok(ObservedFields {
            agent_id,
            subject,
            observed_at: from_ms(observed_at),
            values,
        })
    })
    .collect()
}

/// `NotFound` unless practice `practice_id` exists and `scope` sees it.
fn visible(conn: &Connection, scope: &Scope, practice_id: i64) -> StoreResult<()> {
    let exists: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM practices WHERE id = ?1")
        .and_then(|mut s| s.query_row([practice_id], |r| r.get(0)))
        .map_err(db)?;
    if exists == 0 || !scope.sees(practice_id) {
        return Err(StoreError::NotFound {
            what: "practice",
            name: practice_id.to_string(),
        });
    }
    Ok(())
}

/// Every user, by name, without password hashes.
pub fn users(conn: &Connection) -> StoreResult<Vec<UserSummary>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT u.username, u.role, p.name, u.created_at FROM users u
             LEFT JOIN practices p ON p.id = u.practice_id ORDER BY u.username",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map([], |r| {
            let role: String = r.get(1)?;
            Ok(UserSummary {
                username: r.get(0)?,
                role: Role::parse(&role).unwrap_or(Role::PracticeManager),
                practice: r.get(2)?,
                created_at: from_ms(r.get(3)?),
            })
        })
        .map_err(db)?;
    rows.collect::<Result<_, _>>().map_err(db)
}
