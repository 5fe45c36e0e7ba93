//! Incidents, their timeline, the notification outbox, the N-of-M windows and job leases
//! (issue 12).

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::codec::{db, from_json, from_ms, from_name, ms, to_json};
use crate::alerting::model::{
    AlertWindow, CauseKind, Incident, IncidentDetail, IncidentEvent, IncidentQuery, IncidentState, NewIncident,
    NewIncidentEvent, NewOutboxItem, OutboxItem, OutboxStatus,
};
use crate::notify::NotificationKind;
use crate::store::{Role, Scope, StoreError, StoreResult};

const INCIDENT_COLUMNS: &str = "id, source, subject, state, flapping, severity, title, probable_cause, cause_kind, \
     practice_id, practice, site, agent_id, practices_affected, parent_id, manual_resolve, opened_at, updated_at, \
     acknowledged_at, acknowledged_by, resolved_at, resolved_by, last_notified_at, escalated_at, detail";

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::corrupt(what, crate::store::error::Message(format!("`{value}` is not known")))
}

fn state(v: String) -> StoreResult<IncidentState> {
    IncidentState::parse(&v).ok_or_else(|| corrupt("incident state", &v))
}

fn cause(v: String) -> StoreResult<CauseKind> {
    CauseKind::parse(&v).ok_or_else(|| corrupt("incident cause", &v))
}

/// An incident from a row of [`INCIDENT_COLUMNS`]; the outer error is SQLite's, the inner a
/// value that does not decode.
fn incident_row(r: &Row<'_>) -> rusqlite::Result<StoreResult<Incident>> {
    let state = state(r.get(3)?);
    let severity: String = r.get(5)?;
    let cause_kind = cause(r.get(8)?);
    let practices: String = r.get(13)?;
    let detail: String = r.get(24)?;
    let decoded = (|| {
        Ok(Incident {
            id: r.get(0)?,
            source: r.get(1)?,
            subject: r.get(2)?,
            state: state?,
            flapping: r.get(4)?,
            severity: from_name("incident severity", &severity)?,
            title: r.get(6)?,
            probable_cause: r.get(7)?,
            cause_kind: cause_kind?,
            practice_id: r.get(9)?,
            practice: r.get(10)?,
            site: r.get(11)?,
            agent_id: r.get(12)?,
            practices_affected: from_json("incident practices", &practices)?,
            parent_id: r.get(14)?,
            manual_resolve: r.get(15)?,
            opened_at: from_ms(r.get(16)?),
            updated_at: from_ms(r.get(17)?),
            acknowledged_at: r.get::<_, Option<i64>>(18)?.map(from_ms),
            acknowledged_by: r.get(19)?,
            resolved_at: r.get::<_, Option<i64>>(20)?.map(from_ms),
            resolved_by: r.get(21)?,
            last_notified_at: r.get::<_, Option<i64>>(22)?.map(from_ms),
            escalated_at: r.get::<_, Option<i64>>(23)?.map(from_ms),
            detail: from_json("incident detail", &detail)?,
        })
    })();
    match decoded {
        Ok(i) => Ok(Ok(i)),
        Err(Decode::Sql(e)) => Err(e),
        Err(Decode::Store(e)) => Ok(Err(e)),
    }
}

enum Decode {
    Sql(rusqlite::Error),
    Store(StoreError),
}

impl From<rusqlite::Error> for Decode {
    fn from(e: rusqlite::Error) -> Self {
        Decode::Sql(e)
    }
}

impl From<StoreError> for Decode {
    fn from(e: StoreError) -> Self {
        Decode::Store(e)
    }
}

fn query_incidents(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> StoreResult<Vec<Incident>> {
    let mut stmt = conn.prepare_cached(sql).map_err(db)?;
    let rows = stmt
        .query_map(params, incident_row)
        .map_err(db)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db)?;
    rows.into_iter().collect()
}

pub fn active(conn: &Connection, source: &str, subject: &str) -> StoreResult<Option<Incident>> {
    let sql =
        format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE source = ?1 AND subject = ?2 AND state != 'resolved'");
    Ok(query_incidents(conn, &sql, params![source, subject])?.pop())
}

pub fn by_id(conn: &Connection, id: i64) -> StoreResult<Option<Incident>> {
    let sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?1");
    Ok(query_incidents(conn, &sql, [id])?.pop())
}

pub fn all_active(conn: &Connection) -> StoreResult<Vec<Incident>> {
    let sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE state != 'resolved' ORDER BY id");
    query_incidents(conn, &sql, [])
}

pub fn open(conn: &Connection, new: &NewIncident, now: DateTime<Utc>) -> StoreResult<Incident> {
    let NewIncident {
        source,
        subject,
        severity,
        title,
        probable_cause,
        cause_kind,
        practice,
        site,
        agent_id,
        practices_affected,
        parent_id,
        manual_resolve,
        detail,
    } = new;
    let practice_id: Option<i64> = match practice {
        Some(name) => conn
            .prepare_cached("SELECT id FROM practices WHERE name = ?1")
            .and_then(|mut s| s.query_row([name], |r| r.get(0)).optional())
            .map_err(db)?,
        None => None,
    };
    conn.prepare_cached(
        "INSERT INTO incidents (source, subject, state, severity, title, probable_cause, cause_kind, practice_id, \
         practice, site, agent_id, practices_affected, parent_id, manual_resolve, opened_at, updated_at, detail) \
         VALUES (?1, ?2, 'open', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14, ?15)",
    )
    .and_then(|mut s| {
        s.execute(params![
            source,
            subject,
            severity.as_str(),
            title,
            probable_cause,
            cause_kind.as_str(),
            practice_id,
            practice,
            site,
            agent_id,
            to_json(practices_affected).unwrap_or_else(|_| "[]".into()),
            parent_id,
            manual_resolve,
            ms(now),
            to_json(detail).unwrap_or_else(|_| "{}".into()),
        ])
    })
    .map_err(db)?;
    let id = conn.last_insert_rowid();
    by_id(conn, id)?.ok_or_else(|| StoreError::NotFound {
        what: "incident",
        name: id.to_string(),
    })
}

pub fn save(conn: &Connection, i: &Incident) -> StoreResult<()> {
    let changed = conn
        .prepare_cached(
            "UPDATE incidents SET state = ?2, flapping = ?3, severity = ?4, title = ?5, probable_cause = ?6, \
             cause_kind = ?7, practices_affected = ?8, parent_id = ?9, updated_at = ?10, acknowledged_at = ?11, \
             acknowledged_by = ?12, resolved_at = ?13, resolved_by = ?14, last_notified_at = ?15, escalated_at = ?16, \
             detail = ?17 WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.execute(params![
                i.id,
                i.state.as_str(),
                i.flapping,
                i.severity.as_str(),
                i.title,
                i.probable_cause,
                i.cause_kind.as_str(),
                to_json(&i.practices_affected).unwrap_or_else(|_| "[]".into()),
                i.parent_id,
                ms(i.updated_at),
                i.acknowledged_at.map(ms),
                i.acknowledged_by,
                i.resolved_at.map(ms),
                i.resolved_by,
                i.last_notified_at.map(ms),
                i.escalated_at.map(ms),
                to_json(&i.detail).unwrap_or_else(|_| "{}".into()),
            ])
        })
        .map_err(db)?;
    if changed == 0 {
        return Err(StoreError::NotFound {
            what: "incident",
            name: i.id.to_string(),
        });
    }
    Ok(())
}

pub fn event(conn: &Connection, incident_id: i64, e: &NewIncidentEvent, now: DateTime<Utc>) -> StoreResult<()> {
    let NewIncidentEvent {
        kind,
        actor,
        channel,
        message,
    } = e;
    conn.prepare_cached(
        "INSERT INTO incident_events (incident_id, at, kind, actor, channel, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut s| s.execute(params![incident_id, ms(now), kind, actor, channel, message]))
    .map(|_| ())
    .map_err(db)
}

fn events(conn: &Connection, incident_id: i64) -> StoreResult<Vec<IncidentEvent>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, incident_id, at, kind, actor, channel, message FROM incident_events \
             WHERE incident_id = ?1 ORDER BY id",
        )
        .map_err(db)?;
    stmt.query_map([incident_id], |r| {
        Ok(IncidentEvent {
            id: r.get(0)?,
            incident_id: r.get(1)?,
            at: from_ms(r.get(2)?),
            kind: r.get(3)?,
            actor: r.get(4)?,
            channel: r.get(5)?,
            message: r.get(6)?,
        })
    })
    .map_err(db)?
    .collect::<Result<Vec<_>, _>>()
    .map_err(db)
}

pub fn enqueue(conn: &Connection, item: &NewOutboxItem, now: DateTime<Utc>) -> StoreResult<i64> {
    let NewOutboxItem {
        incident_id,
        channel,
        kind,
        status,
        next_attempt_at,
    } = item;
    let finished = (*status != OutboxStatus::Pending).then_some(ms(now));
    conn.prepare_cached(
        "INSERT INTO alert_outbox (incident_id, channel, kind, status, created_at, next_attempt_at, finished_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| {
        s.execute(params![
            incident_id,
            channel,
            kind.as_str(),
            status.as_str(),
            ms(now),
            ms(*next_attempt_at),
            finished
        ])
    })
    .map_err(db)?;
    Ok(conn.last_insert_rowid())
}

fn kind_of(s: &str) -> StoreResult<NotificationKind> {
    NotificationKind::parse(s).ok_or_else(|| corrupt("notification kind", s))
}

type RawOutbox = (
    i64,
    i64,
    String,
    String,
    String,
    u32,
    i64,
    i64,
    Option<String>,
    Option<i64>,
);

fn outbox_rows(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> StoreResult<Vec<OutboxItem>> {
    let mut stmt = conn.prepare_cached(sql).map_err(db)?;
    let rows: Vec<RawOutbox> = stmt
        .query_map(params, |r| {
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
            ))
        })
        .map_err(db)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db)?;
    rows.into_iter()
        .map(
            |(id, incident_id, channel, kind, status, attempts, created, next, last_error, finished)| {
                Ok(OutboxItem {
                    id,
                    incident_id,
                    channel,
                    kind: kind_of(&kind)?,
                    status: OutboxStatus::parse(&status).ok_or_else(|| corrupt("outbox status", &status))?,
                    attempts,
                    created_at: from_ms(created),
                    next_attempt_at: from_ms(next),
                    last_error,
                    finished_at: finished.map(from_ms),
                })
            },
        )
        .collect()
}

const OUTBOX_COLUMNS: &str =
    "id, incident_id, channel, kind, status, attempts, created_at, next_attempt_at, last_error, finished_at";

pub fn due(conn: &Connection, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<OutboxItem>> {
    let sql = format!(
        "SELECT {OUTBOX_COLUMNS} FROM alert_outbox WHERE status = 'pending' AND next_attempt_at <= ?1 \
         ORDER BY next_attempt_at, id LIMIT ?2"
    );
    outbox_rows(conn, &sql, params![ms(now), limit])
}

pub fn of_incident(conn: &Connection, incident_id: i64) -> StoreResult<Vec<OutboxItem>> {
    let sql = format!("SELECT {OUTBOX_COLUMNS} FROM alert_outbox WHERE incident_id = ?1 ORDER BY id");
    outbox_rows(conn, &sql, [incident_id])
}

pub fn save_item(conn: &Connection, item: &OutboxItem) -> StoreResult<()> {
    conn.prepare_cached(
        "UPDATE alert_outbox SET status = ?2, attempts = ?3, next_attempt_at = ?4, last_error = ?5, \
         finished_at = ?6 WHERE id = ?1",
    )
    .and_then(|mut s| {
        s.execute(params![
            item.id,
            item.status.as_str(),
            item.attempts,
            ms(item.next_attempt_at),
            item.last_error,
            item.finished_at.map(ms),
        ])
    })
    .map(|_| ())
    .map_err(db)
}

pub fn window(conn: &Connection, source: &str, subject: &str) -> StoreResult<Option<AlertWindow>> {
    conn.prepare_cached("SELECT results, failing, updated_at FROM alert_windows WHERE source = ?1 AND subject = ?2")
        .and_then(|mut s| {
            s.query_row(params![source, subject], |r| {
                Ok(AlertWindow {
                    source: source.to_string(),
                    subject: subject.to_string(),
                    results: r.get(0)?,
                    failing: r.get(1)?,
                    updated_at: from_ms(r.get(2)?),
                })
            })
            .optional()
        })
        .map_err(db)
}

pub fn save_window(conn: &Connection, w: &AlertWindow) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO alert_windows (source, subject, results, failing, updated_at) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (source, subject) DO UPDATE SET results = excluded.results, failing = excluded.failing, \
         updated_at = excluded.updated_at",
    )
    .and_then(|mut s| s.execute(params![w.source, w.subject, w.results, w.failing, ms(w.updated_at)]))
    .map(|_| ())
    .map_err(db)
}

/// Takes or renews the lease `name` for `holder` until `until`, when it is free, expired at
/// `now`, or already `holder`'s. Whether `holder` holds it now.
pub fn claim_lease(
    conn: &Connection,
    name: &str,
    holder: &str,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let changed = conn
        .prepare_cached(
            "INSERT INTO job_leases (name, holder, until) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until \
             WHERE job_leases.holder = excluded.holder OR job_leases.until <= ?4",
        )
        .and_then(|mut s| s.execute(params![name, holder, ms(until), ms(now)]))
        .map_err(db)?;
    Ok(changed > 0)
}

/// Incidents visible to `scope`: a practice manager sees their practice's incidents and the
/// MSP-wide ones that name it.
pub fn list(conn: &Connection, scope: &Scope, q: &IncidentQuery) -> StoreResult<Vec<Incident>> {
    let sql = crate::store::common::incident_list_sql(INCIDENT_COLUMNS, scope, q, "?1");
    let practice_name = practice_name(conn, scope)?;
    let limit = crate::store::common::incident_list_limit(q);
    let mut stmt = conn.prepare_cached(&sql).map_err(db)?;
    let mut rows = match &q.source {
        Some(source) => stmt.query([source]),
        None => stmt.query([]),
    }
    .map_err(db)?;
    // Decoded one row at a time, up to the limit.
    let mut out = Vec::new();
    while out.len() < limit
        && let Some(row) = rows.next().map_err(db)?
    {
        let incident = incident_row(row).map_err(db)??;
        if visible(scope, practice_name.as_deref(), &incident) {
            out.push(incident);
        }
    }
    Ok(out)
}

fn practice_name(conn: &Connection, scope: &Scope) -> StoreResult<Option<String>> {
    match (scope.role, scope.practice_id) {
        (Role::PracticeManager, Some(id)) => conn
            .prepare_cached("SELECT name FROM practices WHERE id = ?1")
            .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
            .map_err(db),
        _ => Ok(None),
    }
}

fn visible(scope: &Scope, practice_name: Option<&str>, i: &Incident) -> bool {
    i.visible_to(scope, practice_name)
}

pub fn detail(conn: &Connection, scope: &Scope, id: i64) -> StoreResult<IncidentDetail> {
    let not_found = || StoreError::NotFound {
        what: "incident",
        name: id.to_string(),
    };
    let incident = by_id(conn, id)?.ok_or_else(not_found)?;
    if !visible(scope, practice_name(conn, scope)?.as_deref(), &incident) {
        return Err(not_found());
    }
    let sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE parent_id = ?1 ORDER BY id");
    Ok(IncidentDetail {
        timeline: events(conn, id)?,
        children: query_incidents(conn, &sql, [id])?,
        notifications: of_incident(conn, id)?,
        incident,
    })
}
