//! PostgreSQL: reads for the technician dashboard (issue 13 on issue 17's backend; the same
//! functions as `store/sqlite/dashboard.rs`): every current finding in brief, and a
//! practice's observation history of one kind over a period.

use chrono::{DateTime, Utc};
use rounds_protocol::{Observation, ObservationStatus};

use super::codec::{db, from_ms, from_name, ms};
use super::pool::Conn;
use crate::store::{DbErrorKind, FindingBrief, Role, Scope, StoreError, StoreResult, StoredObservation, UserSummary};

/// The practice a scope is limited to (`None`: every practice); a practice manager without a
/// practice sees none.
fn scope_practice(scope: &Scope) -> Option<i64> {
    match scope.role {
        Role::PracticeManager => Some(scope.practice_id.unwrap_or(-1)),
        Role::Admin | Role::Technician => None,
    }
}

/// Every current finding of the agents `scope` sees, without evidence.
pub async fn briefs(c: &Conn, scope: &Scope) -> StoreResult<Vec<FindingBrief>> {
    let rows = c
        .query(
            "SELECT f.agent_id, f.rule, f.status, f.severity, f.exception IS NOT NULL, f.status_since
             FROM findings f JOIN agents a ON a.id = f.agent_id JOIN sites s ON s.id = a.site_id
             JOIN practices p ON p.id = s.practice_id WHERE ($1::BIGINT IS NULL OR p.id = $1)",
            &[&scope_practice(scope)],
        )
        .await
        .map_err(db)?;
    rows.iter()
        .map(|r| {
            let status: String = r.try_get(2).map_err(db)?;
            let severity: String = r.try_get(3).map_err(db)?;
            Ok(FindingBrief {
                agent_id: r.try_get(0).map_err(db)?,
                rule: r.try_get(1).map_err(db)?,
                status: from_name("finding status", &status)?,
                severity: from_name("finding severity", &severity)?,
                accepted: r.try_get(4).map_err(db)?,
                status_since: from_ms(r.try_get(5).map_err(db)?),
            })
        })
        .collect()
}

/// The observations of `kind` of practice `practice_id`'s agents observed in `from..to`,
/// oldest first. `NotFound` when `scope` does not see the practice.
pub async fn history(
    c: &Conn,
    scope: &Scope,
    practice_id: i64,
    kind: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> StoreResult<Vec<StoredObservation>> {
    let exists = c
        .query_opt("SELECT 1 FROM practices WHERE id = $1", &[&practice_id])
        .await
        .map_err(db)?
        .is_some();
    if !exists || !scope.sees(practice_id) {
        return Err(StoreError::NotFound {
            what: "practice",
            name: practice_id.to_string(),
        });
    }
    let rows = c
        .query(
            "SELECT o.agent_id, o.sequence, o.subject, o.observed_at, o.status, o.data, o.error, o.future_dated
             FROM observations o JOIN agents a ON a.id = o.agent_id JOIN sites s ON s.id = a.site_id
             WHERE s.practice_id = $1 AND o.kind = $2 AND o.observed_at >= $3 AND o.observed_at < $4
             ORDER BY o.observed_at, o.id",
            &[&practice_id, &kind, &ms(from), &ms(to)],
        )
        .await
        .map_err(db)?;
    rows.iter()
        .map(|r| {
            let subject: String = r.try_get(2).map_err(db)?;
            let status: String = r.try_get(4).map_err(db)?;
            let data: String = r.try_get(5).map_err(db)?;
            let data = serde_json::from_str(&data).map_err(|e| {
                StoreError::database(
                    DbErrorKind::Corrupt,
                    format!("decoding stored observation {kind} / {subject}"),
                    e,
                )
            })?;
            Ok(StoredObservation {
                agent_id: r.try_get(0).map_err(db)?,
                sequence: r.try_get::<_, i64>(1).map_err(db)?.max(0) as u64,
                confirmed_at: None,
                future_dated: r.try_get::<_, i64>(7).map_err(db)? != 0,
                observation: Observation {
                    kind: kind.to_string(),
                    subject,
                    observed_at: from_ms(r.try_get(3).map_err(db)?),
                    status: if status == "ok" {
                        ObservationStatus::Ok
                    } else {
                        ObservationStatus::Error
                    },
                    data,
                    error: r.try_get(6).map_err(db)?,
                },
            })
        })
        .collect()
}

/// Every user, by name (byte order, as SQLite sorts), without password hashes.
pub async fn users(c: &Conn) -> StoreResult<Vec<UserSummary>> {
    let rows = c
        .query(
            "SELECT u.username, u.role, p.name, u.created_at FROM users u
             LEFT JOIN practices p ON p.id = u.practice_id ORDER BY u.username COLLATE \"C\"",
            &[],
        )
        .await
        .map_err(db)?;
    rows.iter()
        .map(|r| {
            let role: String = r.try_get(1).map_err(db)?;
            Ok(UserSummary {
                username: r.try_get(0).map_err(db)?,
                role: Role::parse(&role).unwrap_or(Role::PracticeManager),
                practice: r.try_get(2).map_err(db)?,
                created_at: from_ms(r.try_get(3).map_err(db)?),
            })
        })
        .collect()
}

/// The per-practice rule tallies the triggers of migration 0011 keep, within `scope`.
pub async fn rule_tallies(c: &Conn, scope: &Scope) -> StoreResult<Vec<crate::store::RuleTally>> {
    let (clause, arg) = super::agents::scope_clause(scope);
    let sql = format!(
        "SELECT t.practice_id, t.rule, t.pass, t.fail, t.error, t.not_applicable, t.accepted, t.bad_since
         FROM practice_rule_tallies t JOIN practices p ON p.id = t.practice_id WHERE {clause}"
    );
    let count = |r: &tokio_postgres::Row, i: usize| -> StoreResult<u32> {
        Ok(u32::try_from(r.try_get::<_, i64>(i).map_err(db)?).unwrap_or(0))
    };
    c.query(&sql, &[&arg])
        .await
        .map_err(db)?
        .iter()
        .map(|r| {
            Ok(crate::store::RuleTally {
                practice_id: r.try_get(0).map_err(db)?,
                rule: r.try_get(1).map_err(db)?,
                pass: count(r, 2)?,
                fail: count(r, 3)?,
                error: count(r, 4)?,
                not_applicable: count(r, 5)?,
                accepted: count(r, 6)?,
                bad_since: r.try_get::<_, Option<i64>>(7).map_err(db)?.map(from_ms),
            })
        })
        .collect()
}
