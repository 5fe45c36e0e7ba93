//! PostgreSQL: runtime silences (issue 12 on issue 17's backend; the same functions as
//! `store/sqlite/silences.rs`).

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::codec::{db, from_ms, ms};
use super::pool::Conn;
use crate::alerting::model::{NewSilence, SilenceQuery, StoredSilence};
use crate::store::{StoreError, StoreResult};

const COLUMNS: &str = "id, practice, site, source, subject, starts_at, ends_at, reason, created_by, created_at, \
     ended_at, ended_by, start_recorded_at, end_recorded_at";

fn row(r: &Row) -> StoreResult<StoredSilence> {
    let t = |i: usize| -> StoreResult<Option<DateTime<Utc>>> {
        Ok(r.try_get::<_, Option<i64>>(i).map_err(db)?.map(from_ms))
    };
    let get_ms = |i: usize| -> StoreResult<DateTime<Utc>> { Ok(from_ms(r.try_get::<_, i64>(i).map_err(db)?)) };
    Ok(StoredSilence {
        id: r.try_get(0).map_err(db)?,
        practice: r.try_get(1).map_err(db)?,
        site: r.try_get(2).map_err(db)?,
        source: r.try_get(3).map_err(db)?,
        subject: r.try_get(4).map_err(db)?,
        starts_at: get_ms(5)?,
        ends_at: get_ms(6)?,
        reason: r.try_get(7).map_err(db)?,
        created_by: r.try_get(8).map_err(db)?,
        created_at: get_ms(9)?,
        ended_at: t(10)?,
        ended_by: r.try_get(11).map_err(db)?,
        start_recorded_at: t(12)?,
        end_recorded_at: t(13)?,
    })
}

pub async fn create(c: &Conn, new: &NewSilence, now: DateTime<Utc>) -> StoreResult<StoredSilence> {
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
    let r = c
        .query_one(
            "INSERT INTO silences (practice, site, source, subject, starts_at, ends_at, reason, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            &[
                practice,
                site,
                source,
                subject,
                &ms(*starts_at),
                &ms(*ends_at),
                reason,
                created_by,
                &ms(now),
            ],
        )
        .await
        .map_err(db)?;
    let id: i64 = r.try_get(0).map_err(db)?;
    list(
        c,
        &SilenceQuery {
            id: Some(id),
            ..SilenceQuery::default()
        },
    )
    .await?
    .pop()
    .ok_or_else(|| StoreError::NotFound {
        what: "silence",
        name: id.to_string(),
    })
}

/// Saves what may change of a silence: its early end and the engine's records.
pub async fn save(c: &Conn, s: &StoredSilence) -> StoreResult<()> {
    let n = c
        .execute(
            "UPDATE silences SET ended_at = $2, ended_by = $3, start_recorded_at = $4, end_recorded_at = $5 WHERE id = $1",
            &[
                &s.id,
                &s.ended_at.map(ms),
                &s.ended_by,
                &s.start_recorded_at.map(ms),
                &s.end_recorded_at.map(ms),
            ],
        )
        .await
        .map_err(db)?;
    if n == 0 {
        return Err(StoreError::NotFound {
            what: "silence",
            name: s.id.to_string(),
        });
    }
    Ok(())
}

pub async fn list(c: &Conn, q: &SilenceQuery) -> StoreResult<Vec<StoredSilence>> {
    let SilenceQuery {
        id,
        not_over_at,
        end_unrecorded,
        limit,
    } = q;
    let sql = format!(
        "SELECT {COLUMNS} FROM silences
         WHERE ($1::BIGINT IS NULL OR id = $1)
           AND ($2::BIGINT IS NULL OR LEAST(ends_at, COALESCE(ended_at, ends_at)) > $2)
           AND (NOT $3::BOOLEAN OR end_recorded_at IS NULL)
         ORDER BY id DESC LIMIT $4"
    );
    let limit = i64::from(limit.unwrap_or(500));
    let rows = c
        .query(&sql, &[id, &not_over_at.map(ms), end_unrecorded, &limit])
        .await
        .map_err(db)?;
    rows.iter().map(row).collect()
}
