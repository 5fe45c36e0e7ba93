//! Runtime silences (issue 12, migration 0010): created, ended early, and marked by the
//! engine when it has recorded their start and end in the incidents' timelines.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, Row, params};

use super::codec::{db, from_ms, ms};
use crate::alerting::model::{NewSilence, SilenceQuery, StoredSilence};
use crate::store::{StoreError, StoreResult};

const COLUMNS: &str = "id, practice, site, source, subject, starts_at, ends_at, reason, created_by, created_at, \
     ended_at, ended_by, start_recorded_at, end_recorded_at";

fn row(r: &Row<'_>) -> rusqlite::Result<StoredSilence> {
    let t = |i: usize| -> rusqlite::Result<Option<DateTime<Utc>>> { Ok(r.get::<_, Option<i64>>(i)?.map(from_ms)) };
    Ok(StoredSilence {
        id: r.get(0)?,
        practice: r.get(1)?,
        site: r.get(2)?,
        source: r.get(3)?,
        subject: r.get(4)?,
        starts_at: from_ms(r.get(5)?),
        ends_at: from_ms(r.get(6)?),
        reason: r.get(7)?,
        created_by: r.get(8)?,
        created_at: from_ms(r.get(9)?),
        ended_at: t(10)?,
        ended_by: r.get(11)?,
        start_recorded_at: t(12)?,
        end_recorded_at: t(13)?,
    })
}

pub fn create(conn: &Connection, new: &NewSilence, now: DateTime<Utc>) -> StoreResult<StoredSilence> {
    let NewSilence {
        practice,
        site,
        source,
        subject,
        starts_at,
        ends_at,
        reason,
        created_by,
    } = new;
    conn.prepare_cached(
        "INSERT INTO silences (practice, site, source, subject, starts_at, ends_at, reason, created_by, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut s| {
        s.execute(params![
            practice,
            site,
            source,
            subject,
            ms(*starts_at),
            ms(*ends_at),
            reason,
            created_by,
            ms(now)
        ])
    })
    .map_err(db)?;
    let id = conn.last_insert_rowid();
    list(
        conn,
        &SilenceQuery {
            id: Some(id),
            ..SilenceQuery::default()
        },
    )?
    .pop()
    .ok_or_else(|| StoreError::NotFound {
        what: "silence",
        name: id.to_string(),
    })
}

/// Saves what may change of a silence: its early end and the engine's records.
pub fn save(conn: &Connection, s: &StoredSilence) -> StoreResult<()> {
    let n = conn
        .prepare_cached(
            "UPDATE silences SET ended_at = ?2, ended_by = ?3, start_recorded_at = ?4, end_recorded_at = ?5 WHERE id = ?1",
        )
        .and_then(|mut st| {
            st.execute(params![
                s.id,
                s.ended_at.map(ms),
                s.ended_by,
                s.start_recorded_at.map(ms),
                s.end_recorded_at.map(ms)
            ])
        })
        .map_err(db)?;
    if n == 0 {
        return Err(StoreError::NotFound {
            what: "silence",
            name: s.id.to_string(),
        });
    }
    Ok(())
}

pub fn list(conn: &Connection, q: &SilenceQuery) -> StoreResult<Vec<StoredSilence>> {
    let SilenceQuery {
        id,
        not_over_at,
        end_unrecorded,
        limit,
    } = q;
    let sql = format!(
        "SELECT {COLUMNS} FROM silences
         WHERE (?1 IS NULL OR id = ?1)
           AND (?2 IS NULL OR MIN(ends_at, COALESCE(ended_at, ends_at)) > ?2)
           AND (?3 = 0 OR end_recorded_at IS NULL)
         ORDER BY id DESC LIMIT ?4"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(db)?;
    let rows = stmt
        .query_map(
            params![id, not_over_at.map(ms), *end_unrecorded, limit.unwrap_or(500)],
            row,
        )
        .map_err(db)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db)?;
    Ok(rows)
}
