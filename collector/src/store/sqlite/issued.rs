//! Compliance reports (issue 14): the record of issued reports and scheduled deliveries, and
//! the history reads a report is built from (observations and report receipts of a period).

use chrono::{DateTime, NaiveDate, Utc};
use rounds_protocol::{Observation, ObservationStatus};
use rusqlite::{Connection, OptionalExtension, params};

use super::codec::{db, from_ms, ms};
use crate::store::{DbErrorKind, IssuedReport, ReportDelivery, StoreError, StoreResult, StoredObservation};

pub fn record(conn: &Connection, r: &IssuedReport) -> StoreResult<()> {
    let IssuedReport {
        report_id,
        practice_id,
        practice,
        period_from,
        period_to,
        format,
        content_sha256,
        file_sha256,
        size_bytes,
        issued_at,
        issued_by,
        collector_version,
    } = r;
    conn.prepare_cached(
        "INSERT INTO issued_reports (id, practice_id, practice, period_from, period_to, format, content_sha256,
                                     file_sha256, size_bytes, issued_at, issued_by, collector_version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )
    .and_then(|mut s| {
        s.execute(params![
            report_id,
            practice_id,
            practice,
            period_from.to_string(),
            period_to.to_string(),
            format,
            content_sha256,
            file_sha256,
            i64::try_from(*size_bytes).unwrap_or(i64::MAX),
            ms(*issued_at),
            issued_by,
            collector_version
        ])
    })
    .map(|_| ())
    .map_err(db)
}

const ISSUED_COLUMNS: &str = "id, practice_id, practice, period_from, period_to, format, content_sha256, file_sha256,
                              size_bytes, issued_at, issued_by, collector_version";

fn date(what: &str, text: &str) -> StoreResult<NaiveDate> {
    text.parse()
        .map_err(|e| StoreError::corrupt(what, crate::store::error::Message(format!("`{text}`: {e}"))))
}

fn issued_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(IssuedReport, String, String)> {
    Ok((
        IssuedReport {
            report_id: r.get(0)?,
            practice_id: r.get(1)?,
            practice: r.get(2)?,
            period_from: NaiveDate::MIN,
            period_to: NaiveDate::MIN,
            format: r.get(5)?,
            content_sha256: r.get(6)?,
            file_sha256: r.get(7)?,
            size_bytes: r.get::<_, i64>(8)?.max(0) as u64,
            issued_at: from_ms(r.get(9)?),
            issued_by: r.get(10)?,
            collector_version: r.get(11)?,
        },
        r.get(3)?,
        r.get(4)?,
    ))
}

fn finish(raw: (IssuedReport, String, String)) -> StoreResult<IssuedReport> {
    let (mut row, from, to) = raw;
    row.period_from = date("issued report period", &from)?;
    row.period_to = date("issued report period", &to)?;
    Ok(row)
}

/// The issued reports whose file has this SHA-256 (normally one).
pub fn by_file_hash(conn: &Connection, file_sha256: &str) -> StoreResult<Vec<IssuedReport>> {
    let sql = format!("SELECT {ISSUED_COLUMNS} FROM issued_reports WHERE file_sha256 = ?1 ORDER BY issued_at, id");
    let mut stmt = conn.prepare_cached(&sql).map_err(db)?;
    let rows = stmt.query_map([file_sha256], issued_row).map_err(db)?;
    let raw: Vec<_> = rows.collect::<Result<_, _>>().map_err(db)?;
    raw.into_iter().map(finish).collect()
}

pub fn by_id(conn: &Connection, report_id: &str) -> StoreResult<Option<IssuedReport>> {
    let sql = format!("SELECT {ISSUED_COLUMNS} FROM issued_reports WHERE id = ?1");
    let raw = conn
        .prepare_cached(&sql)
        .and_then(|mut s| s.query_row([report_id], issued_row).optional())
        .map_err(db)?;
    raw.map(finish).transpose()
}

/// Issued reports of a practice, oldest first.
pub fn of_practice(conn: &Connection, practice_id: i64) -> StoreResult<Vec<IssuedReport>> {
    let sql = format!("SELECT {ISSUED_COLUMNS} FROM issued_reports WHERE practice_id = ?1 ORDER BY issued_at, id");
    let mut stmt = conn.prepare_cached(&sql).map_err(db)?;
    let rows = stmt.query_map([practice_id], issued_row).map_err(db)?;
    let raw: Vec<_> = rows.collect::<Result<_, _>>().map_err(db)?;
    raw.into_iter().map(finish).collect()
}

pub fn record_delivery(conn: &Connection, d: &ReportDelivery) -> StoreResult<()> {
    let ReportDelivery {
        report_id,
        schedule,
        recipients,
        attempted_at,
        delivered,
        detail,
    } = d;
    conn.prepare_cached(
        "INSERT INTO report_deliveries (report_id, schedule, recipients, attempted_at, delivered, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut s| {
        s.execute(params![
            report_id,
            schedule,
            recipients.join(", "),
            ms(*attempted_at),
            delivered,
            detail
        ])
    })
    .map(|_| ())
    .map_err(db)
}

/// Deliveries of a schedule, oldest first.
pub fn deliveries(conn: &Connection, schedule: &str) -> StoreResult<Vec<ReportDelivery>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT report_id, schedule, recipients, attempted_at, delivered, detail FROM report_deliveries
             WHERE schedule = ?1 ORDER BY attempted_at, id",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map([schedule], |r| {
            let recipients: String = r.get(2)?;
            Ok(ReportDelivery {
                report_id: r.get(0)?,
                schedule: r.get(1)?,
                recipients: recipients.split(", ").map(str::to_string).collect(),
                attempted_at: from_ms(r.get(3)?),
                delivered: r.get(4)?,
                detail: r.get(5)?,
            })
        })
        .map_err(db)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db)
}

/// [`observation_history`]'s query (one kind: ?1 agent, ?2 kind, ?3 from, ?4 to).
pub(crate) const OBSERVATION_HISTORY: &str =
    "SELECT o.sequence, o.kind, o.subject, o.observed_at, o.status, o.data, o.error, o.future_dated
             FROM observations o
             WHERE o.agent_id = ?1 AND o.kind = ?2 AND o.observed_at >= ?3 AND o.observed_at < ?4
             UNION ALL
             SELECT o.sequence, o.kind, o.subject, o.observed_at, o.status, o.data, o.error, o.future_dated
             FROM observations o
             WHERE o.observed_at < ?4 AND o.id IN (
               SELECT (SELECT p.id FROM observations p
                       WHERE p.agent_id = ?1 AND p.kind = ?2 AND p.subject = s.subject AND p.observed_at < ?3
                       ORDER BY p.observed_at DESC, p.id DESC LIMIT 1)
               FROM (SELECT DISTINCT subject FROM observations WHERE agent_id = ?1 AND kind = ?2) s)";

/// Observations of `kinds` an agent made in `from..to`, and for each (kind, subject) the last
/// one made before `from` (the state the period started in), oldest first.
pub fn observation_history(
    conn: &Connection,
    agent_id: &str,
    kinds: &[String],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> StoreResult<Vec<StoredObservation>> {
    let mut out = Vec::new();
    // The rows of the period, and the last row before it of each subject: one lookup per
    // subject (the subjects from `observations_by_subject`), not one per row before the period.
    let mut stmt = conn.prepare_cached(OBSERVATION_HISTORY).map_err(db)?;
    for kind in kinds {
        let rows = stmt
            .query_map(params![agent_id, kind, ms(from), ms(to)], |r| {
                let status: String = r.get(4)?;
                Ok((
                    StoredObservation {
                        agent_id: agent_id.to_string(),
                        sequence: r.get::<_, i64>(0)?.max(0) as u64,
                        confirmed_at: None,
                        future_dated: r.get(7)?,
                        observation: Observation {
                            kind: r.get(1)?,
                            subject: r.get(2)?,
                            observed_at: from_ms(r.get(3)?),
                            status: if status == "ok" {
                                ObservationStatus::Ok
                            } else {
                                ObservationStatus::Error
                            },
                            data: serde_json::Value::Null,
                            error: r.get(6)?,
                        },
                    },
                    r.get::<_, String>(5)?,
                ))
            })
            .map_err(db)?;
        for row in rows {
            let (mut stored, data) = row.map_err(db)?;
            stored.observation.data = serde_json::from_str(&data)
                .map_err(|e| StoreError::database(DbErrorKind::Corrupt, "decoding a stored observation", e))?;
            out.push(stored);
        }
    }
    out.sort_by(|a, b| {
        (a.observation.observed_at, &a.observation.kind, &a.observation.subject).cmp(&(
            b.observation.observed_at,
            &b.observation.kind,
            &b.observation.subject,
        ))
    });
    Ok(out)
}

/// When the collector received each report of an agent in `from..to`, oldest first.
pub fn receipts(
    conn: &Connection,
    agent_id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> StoreResult<Vec<DateTime<Utc>>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT received_at FROM reports WHERE agent_id = ?1 AND received_at >= ?2 AND received_at < ?3
             ORDER BY received_at",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map(params![agent_id, ms(from), ms(to)], |r| r.get::<_, i64>(0))
        .map_err(db)?;
    rows.map(|r| r.map(from_ms).map_err(db)).collect()
}
