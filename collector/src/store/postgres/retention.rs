//! PostgreSQL: retention (issue 17; the same functions as `store/sqlite/retention.rs`, with the
//! SQL of [`crate::store::rollup`]), and the storage per table (`pg_total_relation_size`).

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::pool::Conn;

use super::codec::{db, from_ms, ms};
use crate::store::rollup::{self, Bucket, RawObservation, RecordKind, RolledObservation, Rollup, StoredRollup, pg};
use crate::store::{RetentionCutoffs, StorageReport, StoreResult, TableRows, TableSize};

fn u(v: i64) -> u64 {
    v.max(0) as u64
}

pub async fn observations_to_roll_up(
    c: &Conn,
    before: DateTime<Utc>,
    after: (DateTime<Utc>, i64),
    limit: u32,
) -> StoreResult<Vec<RawObservation>> {
    let rows = c
        .query(
            &pg(&rollup::select_raw()),
            &[&ms(before), &ms(after.0), &after.1, &i64::from(limit)],
        )
        .await
        .map_err(db)?;
    rows.iter()
        .map(|r| {
            Ok(RawObservation {
                id: r.try_get(0).map_err(db)?,
                agent_id: r.try_get(1).map_err(db)?,
                kind: r.try_get(2).map_err(db)?,
                subject: r.try_get(3).map_err(db)?,
                observation: RolledObservation {
                    sequence: u(r.try_get(4).map_err(db)?),
                    observed_at: from_ms(r.try_get(5).map_err(db)?),
                    status: r.try_get(6).map_err(db)?,
                    data: r.try_get(7).map_err(db)?,
                    error: r.try_get(8).map_err(db)?,
                },
            })
        })
        .collect()
}

/// A rollup from a row of `id, ROLLUP_COLUMNS`.
fn rollup_row(r: &Row) -> StoreResult<StoredRollup> {
    let side = |o: usize| -> StoreResult<RolledObservation> {
        Ok(RolledObservation {
            sequence: u(r.try_get(o).map_err(db)?),
            observed_at: from_ms(r.try_get(o + 1).map_err(db)?),
            status: r.try_get(o + 2).map_err(db)?,
            data: r.try_get(o + 3).map_err(db)?,
            error: r.try_get(o + 4).map_err(db)?,
        })
    };
    let bucket: String = r.try_get(4).map_err(db)?;
    Ok(StoredRollup {
        id: r.try_get(0).map_err(db)?,
        rollup: Rollup {
            agent_id: r.try_get(1).map_err(db)?,
            kind: r.try_get(2).map_err(db)?,
            subject: r.try_get(3).map_err(db)?,
            bucket: Bucket::parse(&bucket)?,
            bucket_start: from_ms(r.try_get(5).map_err(db)?),
            count: u(r.try_get(6).map_err(db)?),
            first: side(7)?,
            last: side(12)?,
        },
    })
}

pub async fn hourly_before(c: &Conn, before: DateTime<Utc>, limit: u32) -> StoreResult<Vec<StoredRollup>> {
    let rows = c
        .query(&pg(&rollup::select_hourly()), &[&ms(before), &i64::from(limit)])
        .await
        .map_err(db)?;
    rows.iter().map(rollup_row).collect()
}

/// The rollups of `agent_id`'s `kind` that the history of `from..to` reads.
pub async fn history_rollups(
    c: &Conn,
    agent_id: &str,
    kind: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> StoreResult<Vec<Rollup>> {
    let rows = c
        .query(
            &pg(rollup::SELECT_HISTORY_ROLLUPS),
            &[&agent_id, &kind, &ms(from), &ms(to)],
        )
        .await
        .map_err(db)?;
    rows.iter().map(|r| rollup_row(r).map(|s| s.rollup)).collect()
}

pub async fn merge(c: &Conn, rollups: &[Rollup]) -> StoreResult<()> {
    use tokio_postgres::types::ToSql;
    // Prepared once per connection by `Conn`'s statement cache.
    let stmt = pg(&rollup::merge_rollup());
    for r in rollups {
        let params = rollup::merge_params(r);
        let values: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| match p {
                rollup::Param::Int(v) => v as &(dyn ToSql + Sync),
                rollup::Param::Text(v) => v,
                rollup::Param::OptText(v) => v,
            })
            .collect();
        c.execute(&stmt, &values).await.map_err(db)?;
    }
    Ok(())
}

pub async fn remove_observations(c: &Conn, ids: &[i64]) -> StoreResult<u64> {
    c.execute("DELETE FROM observations WHERE id = ANY($1)", &[&ids])
        .await
        .map_err(db)
}

pub async fn remove_rollups(c: &Conn, ids: &[i64]) -> StoreResult<u64> {
    c.execute("DELETE FROM observation_rollups WHERE id = ANY($1)", &[&ids])
        .await
        .map_err(db)
}

pub async fn prune(c: &Conn, kind: RecordKind, before: DateTime<Utc>, limit: u32) -> StoreResult<Vec<TableRows>> {
    let cut = ms(before);
    let limit = i64::from(limit);
    Ok(match kind {
        RecordKind::FindingChanges => {
            let n = c
                .execute(&pg(&rollup::delete_finding_changes()), &[&cut, &limit])
                .await
                .map_err(db)?;
            vec![("finding_changes", n)]
        }
        RecordKind::Incidents => {
            let ids: Vec<i64> = c
                .query(&pg(&rollup::select_incidents()), &[&cut, &limit])
                .await
                .map_err(db)?
                .iter()
                .map(|r| r.try_get(0).map_err(db))
                .collect::<StoreResult<_>>()?;
            let events = c
                .execute("DELETE FROM incident_events WHERE incident_id = ANY($1)", &[&ids])
                .await
                .map_err(db)?;
            let outbox = c
                .execute("DELETE FROM alert_outbox WHERE incident_id = ANY($1)", &[&ids])
                .await
                .map_err(db)?;
            c.execute(
                "UPDATE incidents SET parent_id = NULL WHERE parent_id = ANY($1)",
                &[&ids],
            )
            .await
            .map_err(db)?;
            let incidents = c
                .execute("DELETE FROM incidents WHERE id = ANY($1)", &[&ids])
                .await
                .map_err(db)?;
            vec![
                ("incidents", incidents),
                ("incident_events", events),
                ("alert_outbox", outbox),
            ]
        }
        RecordKind::IssuedReports => {
            let ids: Vec<String> = c
                .query(&pg(rollup::SELECT_ISSUED), &[&cut, &limit])
                .await
                .map_err(db)?
                .iter()
                .map(|r| r.try_get(0).map_err(db))
                .collect::<StoreResult<_>>()?;
            let deliveries = c
                .execute("DELETE FROM report_deliveries WHERE report_id = ANY($1)", &[&ids])
                .await
                .map_err(db)?;
            let reports = c
                .execute("DELETE FROM issued_reports WHERE id = ANY($1)", &[&ids])
                .await
                .map_err(db)?;
            vec![("issued_reports", reports), ("report_deliveries", deliveries)]
        }
        RecordKind::AuditLog => {
            let n = c
                .execute(&pg(rollup::DELETE_AUDIT), &[&cut, &limit])
                .await
                .map_err(db)?;
            vec![("audit_log", n)]
        }
        RecordKind::ExpiredLeases => {
            let n = c.execute(&pg(rollup::DELETE_LEASES), &[&cut]).await.map_err(db)?;
            vec![("job_leases", n)]
        }
    })
}

pub async fn preview(c: &Conn, cut: &RetentionCutoffs) -> StoreResult<Vec<TableRows>> {
    async fn count(c: &Conn, sql: &str, at: DateTime<Utc>) -> StoreResult<u64> {
        let n: i64 = c
            .query_one(&pg(sql), &[&ms(at)])
            .await
            .map_err(db)?
            .try_get(0)
            .map_err(db)?;
        Ok(u(n))
    }
    let mut out = vec![
        (
            "observations",
            count(c, &rollup::count_raw(), cut.observations_before).await?,
        ),
        (
            "observation_rollups",
            count(c, rollup::COUNT_HOURLY, cut.hourly_before).await?,
        ),
    ];
    for (table, sql) in rollup::preview_counts() {
        out.push((table, count(c, &sql, rollup::preview_cutoff(table, cut)).await?));
    }
    Ok(out)
}

/// Storage per table: `pg_total_relation_size` (table, indexes and TOAST), rows as the
/// planner last estimated them.
pub async fn storage(c: &Conn) -> StoreResult<StorageReport> {
    let rows = c
        .query(
            "SELECT c.relname::TEXT, pg_total_relation_size(c.oid)::BIGINT, c.reltuples::BIGINT
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = current_schema() AND c.relkind = 'r'",
            &[],
        )
        .await
        .map_err(db)?;
    let mut tables = Vec::new();
    for r in &rows {
        let bytes: i64 = r.try_get(1).map_err(db)?;
        let estimate: i64 = r.try_get(2).map_err(db)?;
        tables.push(TableSize {
            table: r.try_get(0).map_err(db)?,
            rows: (estimate >= 0).then_some(estimate as u64),
            bytes: Some(u(bytes)),
        });
    }
    tables.sort_by(|a, b| (b.bytes, b.rows).cmp(&(a.bytes, a.rows)).then(a.table.cmp(&b.table)));
    let total: i64 = c
        .query_one("SELECT pg_database_size(current_database())::BIGINT", &[])
        .await
        .map_err(db)?
        .try_get(0)
        .map_err(db)?;
    Ok(StorageReport {
        method: "PostgreSQL pg_total_relation_size (each table with its indexes and TOAST); rows as last estimated \
                 by ANALYZE (none before the first); the total is the whole database"
            .to_string(),
        total_bytes: u(total),
        tables,
    })
}
