//! Reports, observations, and the current state per (agent, kind, subject) (PostgreSQL;
//! mirrors `store/sqlite/reports.rs`: the current state follows the highest sequence, an
//! observation row is written only when the payload changes, a complete report of a check
//! retires that check's subjects it no longer names).

use std::collections::HashSet;

use rounds_protocol::{Observation, ObservationStatus};
use tokio_postgres::Client;

use super::codec::{db, from_ms, ms, status_str};
use crate::store::{DbErrorKind, IncomingReport, Ingested, StoreError, StoreResult, StoredObservation};

/// Stores a report in the open transaction of `c`.
pub async fn ingest(c: &Client, agent_id: &str, r: IncomingReport<'_>) -> StoreResult<Ingested> {
    let report = r.report;
    let seq = i64::try_from(report.sequence)
        .map_err(|_| StoreError::Invalid(format!("sequence {} out of range", report.sequence)))?;
    let received = ms(r.received_at);
    let inserted = c
        .execute(
            "INSERT INTO reports (agent_id, sequence, created_at, received_at, observation_count, check_name, complete,
                                  prev_hash, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (agent_id, sequence) DO NOTHING",
            &[
                &agent_id,
                &seq,
                &ms(report.created_at),
                &received,
                &(report.observations.len() as i64),
                &report.check,
                &i64::from(report.complete),
                &report.prev_hash,
                &report.hash,
            ],
        )
        .await
        .map_err(db)?;
    if inserted == 0 {
        return Ok(Ingested::Duplicate);
    }
    let current = c
        .prepare(
            "SELECT sequence, status, data, error FROM latest_observations
             WHERE agent_id = $1 AND kind = $2 AND subject = $3",
        )
        .await
        .map_err(db)?;
    let history = c
        .prepare(
            "INSERT INTO observations (agent_id, sequence, kind, subject, observed_at, status, data, error, future_dated)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .await
        .map_err(db)?;
    let latest = c
        .prepare(
            "INSERT INTO latest_observations (agent_id, sequence, kind, subject, observed_at, status, data, error,
                                              check_name, confirmed_at, confirmed_sequence, future_dated)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $2, $11)
             ON CONFLICT (agent_id, kind, subject) DO UPDATE SET
               sequence = excluded.sequence, observed_at = excluded.observed_at, status = excluded.status,
               data = excluded.data, error = excluded.error, check_name = excluded.check_name,
               confirmed_at = excluded.confirmed_at, confirmed_sequence = excluded.confirmed_sequence,
               future_dated = excluded.future_dated
             WHERE excluded.sequence >= latest_observations.sequence",
        )
        .await
        .map_err(db)?;
    for o in &report.observations {
        let future = o.observed_at > r.future_after;
        let observed_at = if future { received } else { ms(o.observed_at) };
        let data = o.data.to_string();
        let status = status_str(o.status);
        let now = c
            .query_opt(&current, &[&agent_id, &o.kind, &o.subject])
            .await
            .map_err(db)?;
        let unchanged = now.as_ref().is_some_and(|row| {
            row.get::<_, &str>(1) == status
                && row.get::<_, &str>(2) == data
                && row.get::<_, Option<String>>(3) == o.error
        });
        if !unchanged {
            c.execute(
                &history,
                &[
                    &agent_id,
                    &seq,
                    &o.kind,
                    &o.subject,
                    &observed_at,
                    &status,
                    &data,
                    &o.error,
                    &i64::from(future),
                ],
            )
            .await
            .map_err(db)?;
        }
        c.execute(
            &latest,
            &[
                &agent_id,
                &seq,
                &o.kind,
                &o.subject,
                &observed_at,
                &status,
                &data,
                &o.error,
                &report.check,
                &received,
                &i64::from(future),
            ],
        )
        .await
        .map_err(db)?;
    }
    if report.complete
        && let Some(check) = &report.check
    {
        retire(c, agent_id, seq, check, &report.observations).await?;
    }
    c.execute(
        "UPDATE agents SET last_seen_at = GREATEST(COALESCE(last_seen_at, 0), $1), last_report_at = $1,
         last_sequence = GREATEST(last_sequence, $2) WHERE id = $3",
        &[&received, &seq, &agent_id],
    )
    .await
    .map_err(db)?;
    Ok(Ingested::Stored)
}

/// Removes from the current state the subjects of `check` (or of the kinds it reported, for
/// subjects stored before reports named their check) that this complete report does not name
/// and that no newer report carried.
async fn retire(c: &Client, agent_id: &str, seq: i64, check: &str, observations: &[Observation]) -> StoreResult<()> {
    let named: HashSet<(&str, &str)> = observations
        .iter()
        .map(|o| (o.kind.as_str(), o.subject.as_str()))
        .collect();
    let kinds: HashSet<&str> = observations.iter().map(|o| o.kind.as_str()).collect();
    let candidates = c
        .query(
            "SELECT kind, subject, check_name FROM latest_observations
             WHERE agent_id = $1 AND sequence < $2 AND (check_name = $3 OR check_name IS NULL)",
            &[&agent_id, &seq, &check],
        )
        .await
        .map_err(db)?;
    for row in candidates {
        let (kind, subject, check_name): (&str, &str, Option<&str>) = (row.get(0), row.get(1), row.get(2));
        let ours = check_name.is_some() || kinds.contains(kind);
        if ours && !named.contains(&(kind, subject)) {
            c.execute(
                "DELETE FROM latest_observations WHERE agent_id = $1 AND kind = $2 AND subject = $3",
                &[&agent_id, &kind, &subject],
            )
            .await
            .map_err(db)?;
        }
    }
    Ok(())
}

/// The current observation per (kind, subject) of an agent, optionally of one kind.
pub async fn latest(c: &Client, agent_id: &str, kind: Option<&str>) -> StoreResult<Vec<StoredObservation>> {
    let rows = c
        .query(
            "SELECT sequence, kind, subject, observed_at, status, data, error, confirmed_at, future_dated
             FROM latest_observations WHERE agent_id = $1 AND ($2::TEXT IS NULL OR kind = $2) ORDER BY kind, subject",
            &[&agent_id, &kind],
        )
        .await
        .map_err(db)?;
    rows.iter()
        .map(|r| {
            let kind: String = r.get(1);
            let subject: String = r.get(2);
            let data = serde_json::from_str(r.get::<_, &str>(5)).map_err(|e| {
                StoreError::database(
                    DbErrorKind::Corrupt,
                    format!("decoding stored observation {kind} / {subject}"),
                    e,
                )
            })?;
            Ok(StoredObservation {
                agent_id: agent_id.to_string(),
                sequence: r.get::<_, i64>(0).max(0) as u64,
                confirmed_at: r.get::<_, Option<i64>>(7).map(from_ms),
                future_dated: r.get::<_, i64>(8) != 0,
                observation: Observation {
                    kind,
                    subject,
                    observed_at: from_ms(r.get(3)),
                    status: if r.get::<_, &str>(4) == "ok" {
                        ObservationStatus::Ok
                    } else {
                        ObservationStatus::Error
                    },
                    data,
                    error: r.get(6),
                },
            })
        })
        .collect()
}

pub async fn count(c: &Client) -> StoreResult<u64> {
    let n: i64 = c
        .query_one("SELECT COUNT(*) FROM reports", &[])
        .await
        .map_err(db)?
        .get(0);
    Ok(n.max(0) as u64)
}
