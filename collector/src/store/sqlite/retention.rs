//! Retention (issue 17): rolling up and pruning history on SQLite, with the SQL of
//! [`crate::store::rollup`], and the storage per table (`dbstat`).

use chrono::{DateTime, Utc};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, Row, params, params_from_iter};

use super::codec::{db, from_ms, ms};
use crate::store::rollup::{self, Bucket, RawObservation, RecordKind, RolledObservation, Rollup, StoredRollup};
use crate::store::{RetentionCutoffs, StorageReport, StoreResult, TableRows, TableSize};

fn u(v: i64) -> u64 {
    v.max(0) as u64
}

pub fn observations_to_roll_up(
    conn: &Connection,
    before: DateTime<Utc>,
    after: (DateTime<Utc>, i64),
    limit: u32,
) -> StoreResult<Vec<RawObservation>> {
    let mut stmt = conn.prepare_cached(&rollup::select_raw()).map_err(db)?;
    let rows = stmt
        .query_map(params![ms(before), ms(after.0), after.1, limit], |r| {
            Ok(RawObservation {
                id: r.get(0)?,
                agent_id: r.get(1)?,
                kind: r.get(2)?,
                subject: r.get(3)?,
                observation: RolledObservation {
                    sequence: u(r.get(4)?),
                    observed_at: from_ms(r.get(5)?),
                    status: r.get(6)?,
                    data: r.get(7)?,
                    error: r.get(8)?,
                },
            })
        })
        .map_err(db)?;
    rows.collect::<Result<_, _>>().map_err(db)
}

/// A rollup from a row of `id, ROLLUP_COLUMNS`.
fn rollup_row(r: &Row<'_>) -> rusqlite::Result<(i64, String, Rollup)> {
    let side = |o: usize| -> rusqlite::Result<RolledObservation> {
        Ok(RolledObservation {
            sequence: u(r.get(o)?),
            observed_at: from_ms(r.get(o + 1)?),
            status: r.get(o + 2)?,
            data: r.get(o + 3)?,
            error: r.get(o + 4)?,
        })
    };
    let bucket: String = r.get(4)?;
    Ok((
        r.get(0)?,
        bucket,
        Rollup {
            agent_id: r.get(1)?,
            kind: r.get(2)?,
            subject: r.get(3)?,
            bucket: Bucket::Hour,
            bucket_start: from_ms(r.get(5)?),
            count: u(r.get(6)?),
            first: side(7)?,
            last: side(12)?,
        },
    ))
}

fn rollups(conn: &Connection, sql: &str, args: &[i64], kind: Option<(&str, &str)>) -> StoreResult<Vec<StoredRollup>> {
    let mut stmt = conn.prepare_cached(sql).map_err(db)?;
    let mut values: Vec<rusqlite::types::Value> = Vec::new();
    if let Some((agent, k)) = kind {
        values.push(agent.to_string().into());
        values.push(k.to_string().into());
    }
    values.extend(args.iter().map(|v| rusqlite::types::Value::from(*v)));
    let rows = stmt.query_map(params_from_iter(values), rollup_row).map_err(db)?;
    let mut out = Vec::new();
    for row in rows {
        let (id, bucket, mut rollup) = row.map_err(db)?;
        rollup.bucket = Bucket::parse(&bucket)?;
        out.push(StoredRollup { id, rollup });
    }
    Ok(out)
}

pub fn hourly_before(conn: &Connection, before: DateTime<Utc>, limit: u32) -> StoreResult<Vec<StoredRollup>> {
    rollups(conn, &rollup::select_hourly(), &[ms(before), i64::from(limit)], None)
}

/// The rollups of `agent_id`'s `kind` that the history of `from..to` reads.
pub fn history_rollups(
    conn: &Connection,
    agent_id: &str,
    kind: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> StoreResult<Vec<Rollup>> {
    Ok(rollups(
        conn,
        rollup::SELECT_HISTORY_ROLLUPS,
        &[ms(from), ms(to)],
        Some((agent_id, kind)),
    )?
    .into_iter()
    .map(|r| r.rollup)
    .collect())
}

pub fn merge(conn: &Connection, rollups: &[Rollup]) -> StoreResult<()> {
    let mut stmt = conn.prepare_cached(&rollup::merge_rollup()).map_err(db)?;
    for r in rollups {
        let values = rollup::merge_params(r).map(|p| {
            ToSqlOutput::Borrowed(match p {
                rollup::Param::Int(v) => ValueRef::Integer(v),
                rollup::Param::Text(v) => ValueRef::Text(v.as_bytes()),
                rollup::Param::OptText(v) => v.map_or(ValueRef::Null, |v| ValueRef::Text(v.as_bytes())),
            })
        });
        stmt.execute(params_from_iter(values)).map_err(db)?;
    }
    Ok(())
}

/// Removes rows of `table` whose `column` is one of `ids`; how many.
fn remove<T: rusqlite::ToSql>(conn: &Connection, table: &str, column: &str, ids: &[T]) -> StoreResult<u64> {
    let mut n = 0;
    for chunk in ids.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(", ");
        n += conn
            .prepare_cached(&format!("DELETE FROM {table} WHERE {column} IN ({marks})"))
            .and_then(|mut s| s.execute(params_from_iter(chunk.iter())))
            .map_err(db)? as u64;
    }
    Ok(n)
}

pub fn remove_observations(conn: &Connection, ids: &[i64]) -> StoreResult<u64> {
    remove(conn, "observations", "id", ids)
}

pub fn remove_rollups(conn: &Connection, ids: &[i64]) -> StoreResult<u64> {
    remove(conn, "observation_rollups", "id", ids)
}

fn ids<T: rusqlite::types::FromSql>(
    conn: &Connection,
    sql: &str,
    before: DateTime<Utc>,
    limit: u32,
) -> StoreResult<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(db)?;
    let rows = stmt.query_map(params![ms(before), limit], |r| r.get(0)).map_err(db)?;
    rows.collect::<Result<_, _>>().map_err(db)
}

pub fn prune(conn: &Connection, kind: RecordKind, before: DateTime<Utc>, limit: u32) -> StoreResult<Vec<TableRows>> {
    let cut = ms(before);
    Ok(match kind {
        RecordKind::FindingChanges => {
            let n = conn
                .prepare_cached(&rollup::delete_finding_changes())
                .and_then(|mut s| s.execute(params![cut, limit]))
                .map_err(db)?;
            vec![("finding_changes", n as u64)]
        }
        RecordKind::Incidents => {
            let ids: Vec<i64> = ids(conn, &rollup::select_incidents(), before, limit)?;
            let events = remove(conn, "incident_events", "incident_id", &ids)?;
            let outbox = remove(conn, "alert_outbox", "incident_id", &ids)?;
            for chunk in ids.chunks(500) {
                let marks = vec!["?"; chunk.len()].join(", ");
                conn.prepare_cached(&format!(
                    "UPDATE incidents SET parent_id = NULL WHERE parent_id IN ({marks})"
                ))
                .and_then(|mut s| s.execute(params_from_iter(chunk.iter())))
                .map_err(db)?;
            }
            let incidents = remove(conn, "incidents", "id", &ids)?;
            vec![
                ("incidents", incidents),
                ("incident_events", events),
                ("alert_outbox", outbox),
            ]
        }
        RecordKind::IssuedReports => {
            let ids: Vec<String> = ids(conn, rollup::SELECT_ISSUED, before, limit)?;
            let deliveries = remove(conn, "report_deliveries", "report_id", &ids)?;
            let reports = remove(conn, "issued_reports", "id", &ids)?;
            vec![("issued_reports", reports), ("report_deliveries", deliveries)]
        }
        RecordKind::AuditLog => {
            let n = conn
                .prepare_cached(rollup::DELETE_AUDIT)
                .and_then(|mut s| s.execute(params![cut, limit]))
                .map_err(db)?;
            vec![("audit_log", n as u64)]
        }
        RecordKind::ExpiredLeases => {
            let n = conn
                .prepare_cached(rollup::DELETE_LEASES)
                .and_then(|mut s| s.execute(params![cut]))
                .map_err(db)?;
            vec![("job_leases", n as u64)]
        }
    })
}

pub fn preview(conn: &Connection, c: &RetentionCutoffs) -> StoreResult<Vec<TableRows>> {
    let count = |sql: &str, at: DateTime<Utc>| -> StoreResult<u64> {
        conn.prepare_cached(sql)
            .and_then(|mut s| s.query_row(params![ms(at)], |r| r.get::<_, i64>(0)))
            .map(u)
            .map_err(db)
    };
    let mut out = vec![
        ("observations", count(&rollup::count_raw(), c.observations_before)?),
        ("observation_rollups", count(rollup::COUNT_HOURLY, c.hourly_before)?),
    ];
    for (table, sql) in rollup::preview_counts() {
        out.push((table, count(&sql, rollup::preview_cutoff(table, c))?));
    }
    Ok(out)
}

/// Storage per table: `dbstat` (bytes of each table and its indexes) when this SQLite has it,
/// else only the file's size from `page_count` × `page_size`.
pub fn storage(conn: &Connection) -> StoreResult<StorageReport> {
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(db)?;
    let page_count: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0)).map_err(db)?;
    let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0)).map_err(db)?;
    let dbstat: Option<std::collections::HashMap<String, i64>> = conn
        .prepare(
            "SELECT m.tbl_name, SUM(d.pgsize) FROM dbstat d JOIN sqlite_master m ON m.name = d.name
             GROUP BY m.tbl_name",
        )
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .ok();
    let mut out = Vec::new();
    for t in tables {
        let quoted = format!("\"{}\"", t.replace('"', "\"\""));
        let rows: i64 = conn
            .query_row(&format!("SELECT COUNT(*) FROM {quoted}"), [], |r| r.get(0))
            .map_err(db)?;
        let bytes = dbstat.as_ref().map(|d| u(d.get(&t).copied().unwrap_or(0)));
        out.push(TableSize {
            table: t,
            rows: Some(u(rows)),
            bytes,
        });
    }
    out.sort_by(|a, b| (b.bytes, b.rows).cmp(&(a.bytes, a.rows)).then(a.table.cmp(&b.table)));
    Ok(StorageReport {
        method: if dbstat.is_some() {
            "SQLite dbstat: the pages of each table and its indexes".to_string()
        } else {
            "estimate: this SQLite has no dbstat table, so only the whole file (page_count × page_size) is measured"
                .to_string()
        },
        total_bytes: u(page_count * page_size),
        tables: out,
    })
}
