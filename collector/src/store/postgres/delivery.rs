//! Delivery state per agent (PostgreSQL; mirrors `store/sqlite/delivery.rs`): idempotent
//! storing with conflict detection, gaps, announced drops, the chain head, integrity
//! problems, and what the agent reports in its heartbeats. The decisions are
//! [`crate::delivery`]'s pure functions; this module reads and writes rows.

use chrono::{DateTime, Utc};
use rounds_protocol::DroppedRange;

use super::codec::{db, from_ms, ms};
use super::pool::Conn;
use super::reports;
use crate::delivery::{self, ChainContext, IntegrityProblem, Neighbour};
use crate::store::common::{JOURNAL_CHECK, JOURNAL_SUBJECT, journal_payload};
use crate::store::{
    AgentReportedState, Delivery, DeliveryOutcome, DeliveryStatus, IncomingReport, Ingested, IntegrityEvent,
    StoreError, StoreResult,
};

fn not_found(agent_id: &str) -> StoreError {
    StoreError::NotFound {
        what: "agent",
        name: agent_id.to_string(),
    }
}

fn seq_i64(sequence: u64) -> StoreResult<i64> {
    i64::try_from(sequence).map_err(|_| StoreError::Invalid(format!("sequence {sequence} out of range")))
}

const LAST_SEQUENCE: &str = "SELECT last_sequence FROM agents WHERE id = $1";
const STORED: &str = "SELECT digest, hash FROM reports WHERE agent_id = $1 AND sequence = $2";
const NEIGHBOUR: &str = "SELECT hash, digest, prev_hash FROM reports WHERE agent_id = $1 AND sequence = $2";

async fn neighbour(c: &Conn, agent_id: &str, sequence: i64) -> StoreResult<Option<Neighbour>> {
    if sequence < 1 {
        return Ok(None);
    }
    let row = c.query_opt(NEIGHBOUR, &[&agent_id, &sequence]).await.map_err(db)?;
    Ok(row.map(|r| {
        let hash: Option<String> = r.get(0);
        let digest: Option<String> = r.get(1);
        Neighbour {
            sequence: sequence as u64,
            hash: hash.or(digest),
            prev_hash: r.get(2),
        }
    }))
}

/// Stores a report in the open transaction, as [`crate::store::Tx::deliver_report`] says.
/// The reads that decide it (the agent's last sequence, a report already stored at this
/// sequence, its neighbours) are pipelined: one round trip.
pub async fn deliver(c: &Conn, agent_id: &str, d: IncomingReport<'_>) -> StoreResult<DeliveryOutcome> {
    let report = d.report;
    let seq = seq_i64(report.sequence)?;
    c.prepare_all(&[LAST_SEQUENCE, STORED, NEIGHBOUR]).await.map_err(db)?;
    let (last, existing, previous, next) = tokio::try_join!(
        async {
            c.query_opt(LAST_SEQUENCE, &[&agent_id])
                .await
                .map_err(db)?
                .map(|r| r.get::<_, i64>(0))
                .ok_or_else(|| not_found(agent_id))
        },
        async { c.query_opt(STORED, &[&agent_id, &seq]).await.map_err(db) },
        neighbour(c, agent_id, seq - 1),
        neighbour(c, agent_id, seq + 1),
    )?;
    let last = last.max(0) as u64;
    let new_digest = delivery::digest(report);
    if let Some(row) = existing {
        let (stored_digest, stored_hash): (Option<String>, Option<String>) = (row.get(0), row.get(1));
        let same = match (&stored_digest, &stored_hash) {
            (Some(d), _) => *d == new_digest,
            // Stored before digests were kept: the agent's hash decides, else it is a resend.
            (None, Some(h)) => report.hash.as_ref() == Some(h),
            (None, None) => true,
        };
        let delivery = if same {
            Delivery::Duplicate
        } else {
            Delivery::Conflict {
                stored_digest,
                new_digest,
            }
        };
        return Ok(DeliveryOutcome {
            delivery,
            next_expected: last + 1,
        });
    }

    let mut ctx = ChainContext {
        previous,
        next,
        older_match: None,
    };
    if let (Some(prev_hash), Some(previous)) = (&report.prev_hash, &ctx.previous)
        && previous.hash.as_ref().is_some_and(|h| h != prev_hash)
    {
        let older: Option<i64> = c
            .query_one(
                "SELECT MAX(sequence) FROM reports WHERE agent_id = $1 AND sequence < $2 AND (hash = $3 OR digest = $3)",
                &[&agent_id, &(seq - 1), prev_hash],
            )
            .await
            .map_err(db)?
            .get(0);
        ctx.older_match = older.map(|v| v.max(0) as u64);
    }
    let mut problems = delivery::verify(agent_id, report, &ctx);

    // The report, its digest, and the agent's count and chain head with its last sequence.
    let own_hash = report.hash.clone().unwrap_or_else(|| new_digest.clone());
    let delivered = reports::Delivered {
        digest: &new_digest,
        own_hash: &own_hash,
    };
    if reports::ingest_with(c, agent_id, d, Some(delivered)).await? != Ingested::Stored {
        return Err(StoreError::Invalid(format!(
            "report {} of agent {agent_id} was stored concurrently",
            report.sequence
        )));
    }
    for range in &report.dropped {
        let DroppedRange { first, last, reason } = range;
        if first > last || *last > i64::MAX as u64 {
            continue;
        }
        c.execute(
            "INSERT INTO delivery_dropped (agent_id, first, last, reason, announced_in) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (agent_id, first, last) DO NOTHING",
            &[&agent_id, &(*first as i64), &(*last as i64), reason, &seq],
        )
        .await
        .map_err(db)?;
    }
    let received = ms(d.received_at);
    if let Some((first, gap_last)) = delivery::opens_gap(last, report.sequence) {
        c.execute(
            "INSERT INTO delivery_gaps (agent_id, first, last, detected_at) VALUES ($1, $2, $3, $4)",
            &[&agent_id, &(first as i64), &(gap_last as i64), &received],
        )
        .await
        .map_err(db)?;
        let dropped = dropped_ranges(c, agent_id).await?;
        problems.extend(delivery::unexplained(
            report.sequence,
            &delivery::explain(first, gap_last, &dropped),
        ));
    } else if report.sequence <= last {
        fill_gap(c, agent_id, seq).await?;
    }
    record(c, agent_id, &problems, d.received_at).await?;
    if report.prev_hash.is_some() || !problems.is_empty() {
        journal_observation(c, agent_id, d.received_at).await?;
    }
    Ok(DeliveryOutcome {
        delivery: Delivery::Stored { problems },
        next_expected: last.max(report.sequence) + 1,
    })
}

/// A late arrival at `seq` narrows the gap that holds it.
async fn fill_gap(c: &Conn, agent_id: &str, seq: i64) -> StoreResult<()> {
    let gap = c
        .query_opt(
            "SELECT first, last, detected_at FROM delivery_gaps WHERE agent_id = $1 AND first <= $2 AND last >= $2",
            &[&agent_id, &seq],
        )
        .await
        .map_err(db)?;
    let Some(gap) = gap else {
        return Ok(());
    };
    let (first, last, detected): (i64, i64, i64) = (gap.get(0), gap.get(1), gap.get(2));
    c.execute(
        "DELETE FROM delivery_gaps WHERE agent_id = $1 AND first = $2",
        &[&agent_id, &first],
    )
    .await
    .map_err(db)?;
    for (a, b) in [(first, seq - 1), (seq + 1, last)] {
        if a <= b {
            c.execute(
                "INSERT INTO delivery_gaps (agent_id, first, last, detected_at) VALUES ($1, $2, $3, $4)",
                &[&agent_id, &a, &b, &detected],
            )
            .await
            .map_err(db)?;
        }
    }
    Ok(())
}

async fn dropped_ranges(c: &Conn, agent_id: &str) -> StoreResult<Vec<DroppedRange>> {
    let rows = c
        .query(
            "SELECT first, last, reason FROM delivery_dropped WHERE agent_id = $1 ORDER BY first",
            &[&agent_id],
        )
        .await
        .map_err(db)?;
    Ok(rows
        .iter()
        .map(|r| DroppedRange {
            first: r.get::<_, i64>(0).max(0) as u64,
            last: r.get::<_, i64>(1).max(0) as u64,
            reason: r.get(2),
        })
        .collect())
}

/// Appends integrity problems.
pub async fn record(c: &Conn, agent_id: &str, problems: &[IntegrityProblem], now: DateTime<Utc>) -> StoreResult<()> {
    for p in problems {
        let IntegrityProblem { kind, sequence, detail } = p;
        let sequence = seq_i64(*sequence)?;
        c.execute(
            "INSERT INTO integrity_events (agent_id, sequence, kind, detail, at) VALUES ($1, $2, $3, $4, $5)",
            &[&agent_id, &sequence, &kind.as_str(), detail, &ms(now)],
        )
        .await
        .map_err(db)?;
    }
    Ok(())
}

/// Keeps the agent's journal, as the collector verified it, in the current state as an
/// `audit.log` observation (see [`journal_payload`]; as SQLite's).
pub async fn journal_observation(c: &Conn, agent_id: &str, now: DateTime<Utc>) -> StoreResult<()> {
    use rounds_protocol::obs::{AuditLog, Payload};
    let newest = c
        .query_opt(
            "SELECT id, kind, at, sequence FROM integrity_events WHERE agent_id = $1 ORDER BY id DESC LIMIT 1",
            &[&agent_id],
        )
        .await
        .map_err(db)?
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)));
    let json = journal_payload(newest, now)?;
    c.execute(
        "INSERT INTO latest_observations (agent_id, sequence, kind, subject, observed_at, status, data, error,
                                          check_name, confirmed_at, confirmed_sequence, future_dated)
         SELECT $1::TEXT, a.last_sequence, $2::TEXT, $3::TEXT, $4::BIGINT, 'ok', $5::TEXT, NULL, $6::TEXT, $4::BIGINT,
                a.last_sequence, 0 FROM agents a WHERE a.id = $1::TEXT
         ON CONFLICT (agent_id, kind, subject) DO UPDATE SET
           sequence = excluded.sequence, observed_at = excluded.observed_at, status = 'ok', data = excluded.data,
           error = NULL, check_name = excluded.check_name, confirmed_at = excluded.confirmed_at,
           confirmed_sequence = excluded.confirmed_sequence",
        &[
            &agent_id,
            &AuditLog::KIND,
            &JOURNAL_SUBJECT,
            &ms(now),
            &json,
            &JOURNAL_CHECK,
        ],
    )
    .await
    .map_err(db)?;
    Ok(())
}

pub async fn reported_state(c: &Conn, agent_id: &str, state: &AgentReportedState) -> StoreResult<()> {
    let AgentReportedState {
        config_version,
        config_error,
        spool_depth,
        spool_error,
    } = state;
    let n = c
        .execute(
            "UPDATE agents SET config_version = $2, config_error = $3, spool_depth = $4, spool_error = $5 WHERE id = $1",
            &[
                &agent_id,
                config_version,
                config_error,
                &spool_depth.map(|d| d.min(i64::MAX as u64) as i64),
                spool_error,
            ],
        )
        .await
        .map_err(db)?;
    if n == 0 {
        return Err(not_found(agent_id));
    }
    Ok(())
}

/// The delivery state of an agent (visibility checked by the caller).
pub async fn status(c: &Conn, agent_id: &str) -> StoreResult<DeliveryStatus> {
    let row = c
        .query_opt(
            "SELECT last_sequence, reports_stored, chain_sequence, chain_hash, config_version, config_error,
                    spool_depth, spool_error FROM agents WHERE id = $1",
            &[&agent_id],
        )
        .await
        .map_err(db)?
        .ok_or_else(|| not_found(agent_id))?;
    let last: i64 = row.get(0);
    let stored: i64 = row.get(1);
    let chain_sequence: Option<i64> = row.get(2);
    let spool_depth: Option<i64> = row.get(6);
    let dropped = dropped_ranges(c, agent_id).await?;
    let mut gaps = Vec::new();
    for r in c
        .query(
            "SELECT first, last FROM delivery_gaps WHERE agent_id = $1 ORDER BY first",
            &[&agent_id],
        )
        .await
        .map_err(db)?
    {
        let (a, b): (i64, i64) = (r.get(0), r.get(1));
        gaps.extend(delivery::explain(a.max(0) as u64, b.max(0) as u64, &dropped));
    }
    let integrity_problems: i64 = c
        .query_one(
            "SELECT COUNT(*) FROM integrity_events WHERE agent_id = $1",
            &[&agent_id],
        )
        .await
        .map_err(db)?
        .get(0);
    let integrity = c
        .query(
            "SELECT sequence, kind, detail, at FROM integrity_events WHERE agent_id = $1 ORDER BY id DESC LIMIT 50",
            &[&agent_id],
        )
        .await
        .map_err(db)?
        .iter()
        .map(|r| IntegrityEvent {
            sequence: r.get::<_, i64>(0).max(0) as u64,
            kind: r.get(1),
            detail: r.get(2),
            at: from_ms(r.get(3)),
        })
        .collect();
    Ok(DeliveryStatus {
        last_sequence: last.max(0) as u64,
        reports_stored: stored.max(0) as u64,
        chain_sequence: chain_sequence.map(|s| s.max(0) as u64),
        chain_hash: row.get(3),
        gaps,
        integrity_problems: integrity_problems.max(0) as u64,
        integrity,
        reported: AgentReportedState {
            config_version: row.get(4),
            config_error: row.get(5),
            spool_depth: spool_depth.map(|d| d.max(0) as u64),
            spool_error: row.get(7),
        },
    })
}
