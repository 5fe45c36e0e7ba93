//! PostgreSQL: compliance reports (issue 14 on issue 17's backend; the same functions as
//! `store/sqlite/issued.rs`): the record of issued reports and scheduled deliveries, and the
//! history reads a report is built from.

use chrono::{DateTime, NaiveDate, Utc};
use rounds_protocol::{Observation, ObservationStatus};
use tokio_postgres::Row;

use super::codec::{db, from_ms, ms};
use super::pool::Conn;
use crate::store::{DbErrorKind, IssuedReport, ReportDelivery, StoreError, StoreResult, StoredObservation};

pub async fn record(c: &Conn, r: &IssuedReport) -> StoreResult<()> {
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
    c.execute(
        "INSERT INTO issued_reports (id, practice_id, practice, period_from, period_to, format, content_sha256,
                                     file_sha256, size_bytes, issued_at, issued_by, collector_version)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        &[
            report_id,
            practice_id,
            practice,
            &period_from.to_string(),
            &period_to.to_string(),
            format,
            content_sha256,
            file_sha256,
            &i64::try_from(*size_bytes).unwrap_or(i64::MAX),
            &ms(*issued_at),
            issued_by,
            collector_version,
        ],
    )
    .await
    .map(|_| ())
    .map_err(db)
}

const ISSUED_COLUMNS: &str = "id, practice_id, practice, period_from, period_to, format, content_sha256, file_sha256,
                              size_bytes, issued_at, issued_by, collector_version";

fn date(what: &str, text: &str) -> StoreResult<NaiveDate> {
    text.parse()
        .map_err(|e| StoreError::corrupt(what, crate::store::error::Message(format!("`{text}`: {e}"))))
}

fn issued_row(r: &Row) -> StoreResult<IssuedReport> {
    let from: String = r.try_get(3).map_err(db)?;
    let to: String = r.try_get(4).map_err(db)?;
    Ok(IssuedReport {
        report_id: r.try_get(0).map_err(db)?,
        practice_id: r.try_get(1).map_err(db)?,
        practice: r.try_get(2).map_err(db)?,
        period_from: date("issued report period", &from)?,
        period_to: date("issued report period", &to)?,
        format: r.try_get(5).map_err(db)?,
        content_sha256: r.try_get(6).map_err(db)?,
        file_sha256: r.try_get(7).map_err(db)?,
        size_bytes: r.try_get::<_, i64>(8).map_err(db)?.max(0) as u64,
        issued_at: from_ms(r.try_get(9).map_err(db)?),
        issued_by: r.try_get(10).map_err(db)?,
        collector_version: r.try_get(11).map_err(db)?,
    })
}

/// The issued reports whose file has this SHA-256 (normally one).
pub async fn by_file_hash(c: &Conn, file_sha256: &str) -> StoreResult<Vec<IssuedReport>> {
    let sql = format!("SELECT {ISSUED_COLUMNS} FROM issued_reports WHERE file_sha256 = $1 ORDER BY issued_at, id");
    c.query(&sql, &[&file_sha256])
        .await
        .map_err(db)?
        .iter()
        .map(issued_row)
        .collect()
}

pub async fn by_id(c: &Conn, report_id: &str) -> StoreResult<Option<IssuedReport>> {
    let sql = format!("SELECT {ISSUED_COLUMNS} FROM issued_reports WHERE id = $1");
    c.query_opt(&sql, &[&report_id])
        .await
        .map_err(db)?
        .as_ref()
        .map(issued_row)
        .transpose()
}

/// Issued reports of a practice, oldest first.
pub async fn of_practice(c: &Conn, practice_id: i64) -> StoreResult<Vec<IssuedReport>> {
    let sql = format!("SELECT {ISSUED_COLUMNS} FROM issued_reports WHERE practice_id = $1 ORDER BY issued_at, id");
    c.query(&sql, &[&practice_id])
        .await
        .map_err(db)?
        .iter()
        .map(issued_row)
        .collect()
}

pub async fn record_delivery(c: &Conn, d: &ReportDelivery) -> StoreResult<()> {
    let ReportDelivery {
        report_id,
        schedule,
        recipients,
        attempted_at,
        delivered,
        detail,
    } = d;
    c.execute(
        "INSERT INTO report_deliveries (report_id, schedule, recipients, attempted_at, delivered, detail)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            report_id,
            schedule,
            &recipients.join(", "),
            &ms(*attempted_at),
            &i64::from(*delivered),
            detail,
        ],
    )
    .await
    .map(|_| ())
    .map_err(db)
}

/// Deliveries of a schedule, oldest first.
pub async fn deliveries(c: &Conn, schedule: &str) -> StoreResult<Vec<ReportDelivery>> {
    let rows = c
        .query(
            "SELECT report_id, schedule, recipients, attempted_at, delivered, detail FROM report_deliveries
             WHERE schedule = $1 ORDER BY attempted_at, id",
            &[&schedule],
        )
        .await
        .map_err(db)?;
    rows.iter()
        .map(|r| {
            let recipients: String = r.try_get(2).map_err(db)?;
            Ok(ReportDelivery {
                report_id: r.try_get(0).map_err(db)?,
                schedule: r.try_get(1).map_err(db)?,
                recipients: recipients.split(", ").map(str::to_string).collect(),
                attempted_at: from_ms(r.try_get(3).map_err(db)?),
                delivered: r.try_get::<_, i64>(4).map_err(db)? != 0,
                detail: r.try_get(5).map_err(db)?,
            })
        })
        .collect()
}

/// Observations of `kinds` an agent made in `from..to`, and for each (kind, subject) the last
/// one made before `from` (the state the period started in), oldest first.
pub async fn observation_history(
    c: &Conn,
    agent_id: &str,
    kinds: &[String],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> StoreResult<Vec<StoredObservation>> {
    let mut out = Vec::new();
    // The rows of the period, and the last row before it of each subject: one lookup per
    // subject (the subjects from `observations_by_subject`), not one per row before the period.
    let sql = "SELECT o.sequence, o.kind, o.subject, o.observed_at, o.status, o.data, o.error, o.future_dated
             FROM observations o
             WHERE o.agent_id = $1 AND o.kind = $2 AND o.observed_at >= $3 AND o.observed_at < $4
             UNION ALL
             SELECT o.sequence, o.kind, o.subject, o.observed_at, o.status, o.data, o.error, o.future_dated
             FROM observations o
             WHERE o.observed_at < $4 AND o.id IN (
               SELECT (SELECT p.id FROM observations p
                       WHERE p.agent_id = $1 AND p.kind = $2 AND p.subject = s.subject AND p.observed_at < $3
                       ORDER BY p.observed_at DESC, p.id DESC LIMIT 1)
               FROM (SELECT DISTINCT subject FROM observations WHERE agent_id = $1 AND kind = $2) s)";
    for kind in kinds {
        let rows = c.query(sql, &[&agent_id, kind, &ms(from), &ms(to)]).await.map_err(db)?;
        for r in &rows {
            let status: String = r.try_get(4).map_err(db)?;
            let data: String = r.try_get(5).map_err(db)?;
            out.push(StoredObservation {
                agent_id: agent_id.to_string(),
                sequence: r.try_get::<_, i64>(0).map_err(db)?.max(0) as u64,
                confirmed_at: None,
                future_dated: r.try_get::<_, i64>(7).map_err(db)? != 0,
                observation: Observation {
                    kind: r.try_get(1).map_err(db)?,
                    subject: r.try_get(2).map_err(db)?,
                    observed_at: from_ms(r.try_get(3).map_err(db)?),
                    status: if status == "ok" {
                        ObservationStatus::Ok
                    } else {
                        ObservationStatus::Error
                    },
                    data: serde_json::from_str(&data)
                        .map_err(|e| StoreError::database(DbErrorKind::Corrupt, "decoding a stored observation", e))?,
                    error: r.try_get(6).map_err(db)?,
                },
            });
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
pub async fn receipts(
    c: &Conn,
    agent_id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> StoreResult<Vec<DateTime<Utc>>> {
    let rows = c
        .query(
            "SELECT received_at FROM reports WHERE agent_id = $1 AND received_at >= $2 AND received_at < $3
             ORDER BY received_at",
            &[&agent_id, &ms(from), &ms(to)],
        )
        .await
        .map_err(db)?;
    rows.iter()
        .map(|r| r.try_get::<_, i64>(0).map(from_ms).map_err(db))
        .collect()
}
