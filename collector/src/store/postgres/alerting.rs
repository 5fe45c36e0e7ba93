//! PostgreSQL: incidents, their timeline, the notification outbox, the N-of-M windows and job
//! leases (issue 12 on issue 17's backend; the same functions as `store/sqlite/alerting.rs`).
//!
//! Booleans are stored as BIGINT 0/1, as SQLite stores them. A job lease is claimed by one
//! atomic upsert, so that of several collectors on one database exactly one holds it, and a
//! lease whose holder died moves to the next claimant once it expired.

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::codec::{db, from_json, from_ms, from_name, ms, to_json};
use super::pool::Conn;
use crate::alerting::model::{
    AlertWindow, CauseKind, Incident, IncidentDetail, IncidentEvent, IncidentQuery, IncidentState, NewIncident,
    NewIncidentEvent, NewOutboxItem, OutboxItem, OutboxStatus,
};
use crate::notify::NotificationKind;
use crate::store::{Scope, StoreError, StoreResult};

const INCIDENT_COLUMNS: &str = "id, source, subject, state, flapping, severity, title, probable_cause, cause_kind, \
     practice_id, practice, site, agent_id, practices_affected, parent_id, manual_resolve, opened_at, updated_at, \
     acknowledged_at, acknowledged_by, resolved_at, resolved_by, last_notified_at, escalated_at, detail";

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::corrupt(what, crate::store::error::Message(format!("`{value}` is not known")))
}

fn ms_opt(r: &Row, i: usize) -> StoreResult<Option<DateTime<Utc>>> {
    Ok(r.try_get::<_, Option<i64>>(i).map_err(db)?.map(from_ms))
}

/// An incident from a row of [`INCIDENT_COLUMNS`].
fn incident_row(r: &Row) -> StoreResult<Incident> {
    let state: String = r.try_get(3).map_err(db)?;
    let severity: String = r.try_get(5).map_err(db)?;
    let cause_kind: String = r.try_get(8).map_err(db)?;
    let practices: String = r.try_get(13).map_err(db)?;
    let detail: String = r.try_get(24).map_err(db)?;
    Ok(Incident {
        id: r.try_get(0).map_err(db)?,
        source: r.try_get(1).map_err(db)?,
        subject: r.try_get(2).map_err(db)?,
        state: IncidentState::parse(&state).ok_or_else(|| corrupt("incident state", &state))?,
        flapping: r.try_get::<_, i64>(4).map_err(db)? != 0,
        severity: from_name("incident severity", &severity)?,
        title: r.try_get(6).map_err(db)?,
        probable_cause: r.try_get(7).map_err(db)?,
        cause_kind: CauseKind::parse(&cause_kind).ok_or_else(|| corrupt("incident cause", &cause_kind))?,
        practice_id: r.try_get(9).map_err(db)?,
        practice: r.try_get(10).map_err(db)?,
        site: r.try_get(11).map_err(db)?,
        agent_id: r.try_get(12).map_err(db)?,
        practices_affected: from_json("incident practices", &practices)?,
        parent_id: r.try_get(14).map_err(db)?,
        manual_resolve: r.try_get::<_, i64>(15).map_err(db)? != 0,
        opened_at: from_ms(r.try_get(16).map_err(db)?),
        updated_at: from_ms(r.try_get(17).map_err(db)?),
        acknowledged_at: ms_opt(r, 18)?,
        acknowledged_by: r.try_get(19).map_err(db)?,
        resolved_at: ms_opt(r, 20)?,
        resolved_by: r.try_get(21).map_err(db)?,
        last_notified_at: ms_opt(r, 22)?,
        escalated_at: ms_opt(r, 23)?,
        detail: from_json("incident detail", &detail)?,
    })
}

async fn query_incidents(
    c: &Conn,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> StoreResult<Vec<Incident>> {
    c.query(sql, params)
        .await
        .map_err(db)?
        .iter()
        .map(incident_row)
        .collect()
}

pub async fn active(c: &Conn, source: &str, subject: &str) -> StoreResult<Option<Incident>> {
    let sql =
        format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE source = $1 AND subject = $2 AND state != 'resolved'");
    Ok(query_incidents(c, &sql, &[&source, &subject]).await?.pop())
}

pub async fn by_id(c: &Conn, id: i64) -> StoreResult<Option<Incident>> {
    let sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1");
    Ok(query_incidents(c, &sql, &[&id]).await?.pop())
}

pub async fn all_active(c: &Conn) -> StoreResult<Vec<Incident>> {
    let sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE state != 'resolved' ORDER BY id");
    query_incidents(c, &sql, &[]).await
}

pub async fn open(c: &Conn, new: &NewIncident, now: DateTime<Utc>) -> StoreResult<Incident> {
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
        Some(name) => c
            .query_opt("SELECT id FROM practices WHERE name = $1", &[name])
            .await
            .map_err(db)?
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(db)?,
        None => None,
    };
    let practices = to_json(practices_affected).unwrap_or_else(|_| "[]".into());
    let detail = to_json(detail).unwrap_or_else(|_| "{}".into());
    let row = c
        .query_one(
            "INSERT INTO incidents (source, subject, state, severity, title, probable_cause, cause_kind, practice_id, \
             practice, site, agent_id, practices_affected, parent_id, manual_resolve, opened_at, updated_at, detail) \
             VALUES ($1, $2, 'open', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $15) RETURNING id",
            &[
                source,
                subject,
                &severity.as_str(),
                title,
                probable_cause,
                &cause_kind.as_str(),
                &practice_id,
                practice,
                site,
                agent_id,
                &practices,
                parent_id,
                &i64::from(*manual_resolve),
                &ms(now),
                &detail,
            ],
        )
        .await
        .map_err(db)?;
    let id: i64 = row.try_get(0).map_err(db)?;
    by_id(c, id).await?.ok_or_else(|| StoreError::NotFound {
        what: "incident",
        name: id.to_string(),
    })
}

pub async fn save(c: &Conn, i: &Incident) -> StoreResult<()> {
    let changed = c
        .execute(
            "UPDATE incidents SET state = $2, flapping = $3, severity = $4, title = $5, probable_cause = $6, \
             cause_kind = $7, practices_affected = $8, parent_id = $9, updated_at = $10, acknowledged_at = $11, \
             acknowledged_by = $12, resolved_at = $13, resolved_by = $14, last_notified_at = $15, escalated_at = $16, \
             detail = $17 WHERE id = $1",
            &[
                &i.id,
                &i.state.as_str(),
                &i64::from(i.flapping),
                &i.severity.as_str(),
                &i.title,
                &i.probable_cause,
                &i.cause_kind.as_str(),
                &to_json(&i.practices_affected).unwrap_or_else(|_| "[]".into()),
                &i.parent_id,
                &ms(i.updated_at),
                &i.acknowledged_at.map(ms),
                &i.acknowledged_by,
                &i.resolved_at.map(ms),
                &i.resolved_by,
                &i.last_notified_at.map(ms),
                &i.escalated_at.map(ms),
                &to_json(&i.detail).unwrap_or_else(|_| "{}".into()),
            ],
        )
        .await
        .map_err(db)?;
    if changed == 0 {
        return Err(StoreError::NotFound {
            what: "incident",
            name: i.id.to_string(),
        });
    }
    Ok(())
}

pub async fn event(c: &Conn, incident_id: i64, e: &NewIncidentEvent, now: DateTime<Utc>) -> StoreResult<()> {
    let NewIncidentEvent {
        kind,
        actor,
        channel,
        message,
    } = e;
    c.execute(
        "INSERT INTO incident_events (incident_id, at, kind, actor, channel, message) VALUES ($1, $2, $3, $4, $5, $6)",
        &[&incident_id, &ms(now), kind, actor, channel, message],
    )
    .await
    .map(|_| ())
    .map_err(db)
}

async fn events(c: &Conn, incident_id: i64) -> StoreResult<Vec<IncidentEvent>> {
    let rows = c
        .query(
            "SELECT id, incident_id, at, kind, actor, channel, message FROM incident_events \
             WHERE incident_id = $1 ORDER BY id",
            &[&incident_id],
        )
        .await
        .map_err(db)?;
    rows.iter()
        .map(|r| {
            Ok(IncidentEvent {
                id: r.try_get(0).map_err(db)?,
                incident_id: r.try_get(1).map_err(db)?,
                at: from_ms(r.try_get(2).map_err(db)?),
                kind: r.try_get(3).map_err(db)?,
                actor: r.try_get(4).map_err(db)?,
                channel: r.try_get(5).map_err(db)?,
                message: r.try_get(6).map_err(db)?,
            })
        })
        .collect()
}

pub async fn enqueue(c: &Conn, item: &NewOutboxItem, now: DateTime<Utc>) -> StoreResult<i64> {
    let NewOutboxItem {
        incident_id,
        channel,
        kind,
        status,
        next_attempt_at,
    } = item;
    let finished = (*status != OutboxStatus::Pending).then_some(ms(now));
    let row = c
        .query_one(
            "INSERT INTO alert_outbox (incident_id, channel, kind, status, created_at, next_attempt_at, finished_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            &[
                incident_id,
                channel,
                &kind.as_str(),
                &status.as_str(),
                &ms(now),
                &ms(*next_attempt_at),
                &finished,
            ],
        )
        .await
        .map_err(db)?;
    row.try_get(0).map_err(db)
}

const OUTBOX_COLUMNS: &str =
    "id, incident_id, channel, kind, status, attempts, created_at, next_attempt_at, last_error, finished_at";

fn outbox_row(r: &Row) -> StoreResult<OutboxItem> {
    let kind: String = r.try_get(3).map_err(db)?;
    let status: String = r.try_get(4).map_err(db)?;
    let attempts: i64 = r.try_get(5).map_err(db)?;
    Ok(OutboxItem {
        id: r.try_get(0).map_err(db)?,
        incident_id: r.try_get(1).map_err(db)?,
        channel: r.try_get(2).map_err(db)?,
        kind: NotificationKind::parse(&kind).ok_or_else(|| corrupt("notification kind", &kind))?,
        status: OutboxStatus::parse(&status).ok_or_else(|| corrupt("outbox status", &status))?,
        attempts: u32::try_from(attempts).map_err(|_| super::codec::out_of_range("outbox attempts", attempts))?,
        created_at: from_ms(r.try_get(6).map_err(db)?),
        next_attempt_at: from_ms(r.try_get(7).map_err(db)?),
        last_error: r.try_get(8).map_err(db)?,
        finished_at: ms_opt(r, 9)?,
    })
}

pub async fn due(c: &Conn, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<OutboxItem>> {
    let sql = format!(
        "SELECT {OUTBOX_COLUMNS} FROM alert_outbox WHERE status = 'pending' AND next_attempt_at <= $1 \
         ORDER BY next_attempt_at, id LIMIT $2"
    );
    let rows = c.query(&sql, &[&ms(now), &i64::from(limit)]).await.map_err(db)?;
    rows.iter().map(outbox_row).collect()
}

pub async fn of_incident(c: &Conn, incident_id: i64) -> StoreResult<Vec<OutboxItem>> {
    let sql = format!("SELECT {OUTBOX_COLUMNS} FROM alert_outbox WHERE incident_id = $1 ORDER BY id");
    let rows = c.query(&sql, &[&incident_id]).await.map_err(db)?;
    rows.iter().map(outbox_row).collect()
}

pub async fn save_item(c: &Conn, item: &OutboxItem) -> StoreResult<()> {
    c.execute(
        "UPDATE alert_outbox SET status = $2, attempts = $3, next_attempt_at = $4, last_error = $5, \
         finished_at = $6 WHERE id = $1",
        &[
            &item.id,
            &item.status.as_str(),
            &i64::from(item.attempts),
            &ms(item.next_attempt_at),
            &item.last_error,
            &item.finished_at.map(ms),
        ],
    )
    .await
    .map(|_| ())
    .map_err(db)
}

pub async fn window(c: &Conn, source: &str, subject: &str) -> StoreResult<Option<AlertWindow>> {
    let row = c
        .query_opt(
            "SELECT results, failing, updated_at FROM alert_windows WHERE source = $1 AND subject = $2",
            &[&source, &subject],
        )
        .await
        .map_err(db)?;
    row.map(|r| {
        Ok(AlertWindow {
            source: source.to_string(),
            subject: subject.to_string(),
            results: r.try_get(0).map_err(db)?,
            failing: r.try_get::<_, i64>(1).map_err(db)? != 0,
            updated_at: from_ms(r.try_get(2).map_err(db)?),
        })
    })
    .transpose()
}

pub async fn save_window(c: &Conn, w: &AlertWindow) -> StoreResult<()> {
    c.execute(
        "INSERT INTO alert_windows (source, subject, results, failing, updated_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (source, subject) DO UPDATE SET results = excluded.results, failing = excluded.failing, \
         updated_at = excluded.updated_at",
        &[
            &w.source,
            &w.subject,
            &w.results,
            &i64::from(w.failing),
            &ms(w.updated_at),
        ],
    )
    .await
    .map(|_| ())
    .map_err(db)
}

/// Takes or renews the lease `name` for `holder` until `until`, when it is free, expired at
/// `now`, or already `holder`'s. Whether `holder` holds it now. One statement: the row lock
/// of the upsert decides between collectors claiming at once (the loser's `WHERE` sees the
/// winner's row and returns nothing).
pub async fn claim_lease(
    c: &Conn,
    name: &str,
    holder: &str,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let row = c
        .query_opt(
            "INSERT INTO job_leases (name, holder, until) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until \
             WHERE job_leases.holder = excluded.holder OR job_leases.until <= $4 \
             RETURNING holder",
            &[&name, &holder, &ms(until), &ms(now)],
        )
        .await
        .map_err(db)?;
    Ok(row.is_some())
}

/// Incidents visible to `scope`: a practice manager sees their practice's incidents and the
/// MSP-wide ones that name it.
pub async fn list(c: &Conn, scope: &Scope, q: &IncidentQuery) -> StoreResult<Vec<Incident>> {
    let sql = crate::store::common::incident_list_sql(INCIDENT_COLUMNS, scope, q, "$1");
    let rows = match &q.source {
        Some(source) => c.query(&sql, &[source]).await,
        None => c.query(&sql, &[]).await,
    }
    .map_err(db)?;
    let practice_name = practice_name(c, scope).await?;
    let limit = crate::store::common::incident_list_limit(q);
    // Decoded one row at a time, up to the limit.
    let mut out = Vec::new();
    for row in &rows {
        if out.len() >= limit {
            break;
        }
        let incident = incident_row(row)?;
        if incident.visible_to(scope, practice_name.as_deref()) {
            out.push(incident);
        }
    }
    Ok(out)
}

async fn practice_name(c: &Conn, scope: &Scope) -> StoreResult<Option<String>> {
    match (scope.role, scope.practice_id) {
        (crate::store::Role::PracticeManager, Some(id)) => c
            .query_opt("SELECT name FROM practices WHERE id = $1", &[&id])
            .await
            .map_err(db)?
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(db),
        _ => Ok(None),
    }
}

pub async fn detail(c: &Conn, scope: &Scope, id: i64) -> StoreResult<IncidentDetail> {
    let not_found = || StoreError::NotFound {
        what: "incident",
        name: id.to_string(),
    };
    let incident = by_id(c, id).await?.ok_or_else(not_found)?;
    if !incident.visible_to(scope, practice_name(c, scope).await?.as_deref()) {
        return Err(not_found());
    }
    let sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE parent_id = $1 ORDER BY id");
    Ok(IncidentDetail {
        timeline: events(c, id).await?,
        children: query_incidents(c, &sql, &[&id]).await?,
        notifications: of_incident(c, id).await?,
        incident,
    })
}
