//! Delivery state per agent: idempotent storing with conflict detection, gaps, announced
//! drops, the chain head, integrity problems, and what the agent reports in its heartbeats.
//! The decisions are [`crate::delivery`]'s pure functions; this module reads and writes rows.

use chrono::{DateTime, Utc};
use rounds_protocol::{DroppedRange, Report};
use rusqlite::{Connection, OptionalExtension, params};

use super::codec::{db, from_ms, ms};
use super::reports;
use crate::delivery::{self, ChainContext, IntegrityProblem, Neighbour};
use crate::store::common::{JOURNAL_CHECK, JOURNAL_SUBJECT, journal_payload};
use crate::store::{
    AgentReportedState, Delivery, DeliveryOutcome, DeliveryStatus, IncomingReport, Ingested, IntegrityEvent,
    StoreError, StoreResult,
};

/// A report with what the collector decided about it, owned for the blocking pool.
#[derive(Debug)]
pub struct OwnedDelivery {
    /// The report without its payloads: every observation's `data` is `null` here, its stored
    /// text is in `payloads` (the writer compares and writes texts; copying every payload's
    /// tree only to drop it after the commit was a measurable share of ingest, core, issue 7).
    pub report: Report,
    /// [`delivery::digest`] of the report, computed once, around `payloads`.
    pub digest: String,
    /// [`reports::payloads`] of the report, made before the writer.
    pub payloads: Vec<String>,
    pub received_at: DateTime<Utc>,
    pub future_after: DateTime<Utc>,
}

impl OwnedDelivery {
    pub fn new(incoming: IncomingReport<'_>) -> Self {
        let IncomingReport {
            report,
            received_at,
            future_after,
        } = incoming;
        let payloads = reports::payloads(report);
        OwnedDelivery {
            digest: delivery::digest_with_payloads(report, &payloads),
            payloads,
            report: without_payloads(report),
            received_at,
            future_after,
        }
    }
}

/// A copy of `report` whose observations carry no payload (`data` is `null`).
fn without_payloads(report: &Report) -> Report {
    Report {
        protocol: report.protocol,
        agent_id: report.agent_id.clone(),
        sequence: report.sequence,
        created_at: report.created_at,
        check: report.check.clone(),
        complete: report.complete,
        prev_hash: report.prev_hash.clone(),
        hash: report.hash.clone(),
        dropped: report.dropped.clone(),
        observations: report
            .observations
            .iter()
            .map(|o| rounds_protocol::Observation {
                kind: o.kind.clone(),
                subject: o.subject.clone(),
                observed_at: o.observed_at,
                status: o.status,
                data: serde_json::Value::Null,
                error: o.error.clone(),
            })
            .collect(),
    }
}

fn not_found(agent_id: &str) -> StoreError {
    StoreError::NotFound {
        what: "agent",
        name: agent_id.to_string(),
    }
}

fn seq_i64(sequence: u64) -> StoreResult<i64> {
    i64::try_from(sequence).map_err(|_| StoreError::Invalid(format!("sequence {sequence} out of range")))
}

fn neighbour(conn: &Connection, agent_id: &str, sequence: i64) -> StoreResult<Option<Neighbour>> {
    if sequence < 1 {
        return Ok(None);
    }
    conn.prepare_cached("SELECT hash, digest, prev_hash FROM reports WHERE agent_id = ?1 AND sequence = ?2")
        .and_then(|mut s| {
            s.query_row(params![agent_id, sequence], |r| {
                let hash: Option<String> = r.get(0)?;
                let digest: Option<String> = r.get(1)?;
                Ok(Neighbour {
                    sequence: sequence as u64,
                    hash: hash.or(digest),
                    prev_hash: r.get(2)?,
                })
            })
            .optional()
        })
        .map_err(db)
}

/// Stores a report in the open transaction, as [`crate::store::Tx::deliver_report`] says,
/// against the agent's current `state` as the transaction has it (which it keeps up to date).
pub fn deliver(
    conn: &Connection,
    agent_id: &str,
    d: &OwnedDelivery,
    state: &mut reports::AgentState,
) -> StoreResult<DeliveryOutcome> {
    let report = &d.report;
    let seq = seq_i64(report.sequence)?;
    let last: i64 = conn
        .prepare_cached("SELECT last_sequence FROM agents WHERE id = ?1")
        .and_then(|mut s| s.query_row([agent_id], |r| r.get(0)).optional())
        .map_err(db)?
        .ok_or_else(|| not_found(agent_id))?;
    let last = last.max(0) as u64;
    let new_digest = d.digest.clone();
    let existing: Option<(Option<String>, Option<String>)> = conn
        .prepare_cached("SELECT digest, hash FROM reports WHERE agent_id = ?1 AND sequence = ?2")
        .and_then(|mut s| {
            s.query_row(params![agent_id, seq], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(db)?;
    if let Some((stored_digest, stored_hash)) = existing {
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
        previous: neighbour(conn, agent_id, seq - 1)?,
        next: neighbour(conn, agent_id, seq + 1)?,
        older_match: None,
    };
    if let (Some(prev_hash), Some(previous)) = (&report.prev_hash, &ctx.previous)
        && previous.hash.as_ref().is_some_and(|h| h != prev_hash)
    {
        ctx.older_match = conn
            .prepare_cached(
                "SELECT MAX(sequence) FROM reports WHERE agent_id = ?1 AND sequence < ?2 AND (hash = ?3 OR digest = ?3)",
            )
            .and_then(|mut s| s.query_row(params![agent_id, seq - 1, prev_hash], |r| r.get::<_, Option<i64>>(0)))
            .map_err(db)?
            .map(|v| v.max(0) as u64);
    }
    let mut problems = delivery::verify_digested(agent_id, report, &new_digest, &ctx);

    let incoming = IncomingReport {
        report,
        received_at: d.received_at,
        future_after: d.future_after,
    };
    if reports::ingest_incoming(conn, agent_id, &incoming, &d.payloads, state)? != Ingested::Stored {
        return Err(StoreError::Invalid(format!(
            "report {} of agent {agent_id} was stored concurrently",
            report.sequence
        )));
    }
    conn.prepare_cached("UPDATE reports SET digest = ?3 WHERE agent_id = ?1 AND sequence = ?2")
        .and_then(|mut s| s.execute(params![agent_id, seq, new_digest]))
        .map_err(db)?;
    for range in &report.dropped {
        let DroppedRange { first, last, reason } = range;
        if first > last || *last > i64::MAX as u64 {
            continue;
        }
        conn.prepare_cached(
            "INSERT INTO delivery_dropped (agent_id, first, last, reason, announced_in) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (agent_id, first, last) DO NOTHING",
        )
        .and_then(|mut s| s.execute(params![agent_id, *first as i64, *last as i64, reason, seq]))
        .map_err(db)?;
    }
    let received = ms(d.received_at);
    if let Some((first, gap_last)) = delivery::opens_gap(last, report.sequence) {
        conn.prepare_cached("INSERT INTO delivery_gaps (agent_id, first, last, detected_at) VALUES (?1, ?2, ?3, ?4)")
            .and_then(|mut s| s.execute(params![agent_id, first as i64, gap_last as i64, received]))
            .map_err(db)?;
        let dropped = dropped_ranges(conn, agent_id)?;
        problems.extend(delivery::unexplained(
            report.sequence,
            &delivery::explain(first, gap_last, &dropped),
        ));
    } else if report.sequence <= last {
        fill_gap(conn, agent_id, seq)?;
    }
    let own_hash = report.hash.clone().unwrap_or_else(|| new_digest.clone());
    conn.prepare_cached(
        "UPDATE agents SET reports_stored = reports_stored + 1,
           chain_hash = CASE WHEN chain_sequence IS NULL OR ?2 >= chain_sequence THEN ?3 ELSE chain_hash END,
           chain_sequence = MAX(COALESCE(chain_sequence, 0), ?2)
         WHERE id = ?1",
    )
    .and_then(|mut s| s.execute(params![agent_id, seq, own_hash]))
    .map_err(db)?;
    record(conn, agent_id, &problems, d.received_at)?;
    if report.prev_hash.is_some() || !problems.is_empty() {
        let data = journal_observation(conn, agent_id, d.received_at)?;
        // The row's sequence is the agent's last, which storing the report moved.
        state.journal(seq_i64(last.max(report.sequence))?, ms(d.received_at), data);
    }
    Ok(DeliveryOutcome {
        delivery: Delivery::Stored { problems },
        next_expected: last.max(report.sequence) + 1,
    })
}

/// A late arrival at `seq` narrows the gap that holds it.
fn fill_gap(conn: &Connection, agent_id: &str, seq: i64) -> StoreResult<()> {
    let gap: Option<(i64, i64, i64)> = conn
        .prepare_cached(
            "SELECT first, last, detected_at FROM delivery_gaps WHERE agent_id = ?1 AND first <= ?2 AND last >= ?2",
        )
        .and_then(|mut s| {
            s.query_row(params![agent_id, seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
        })
        .map_err(db)?;
    let Some((first, last, detected)) = gap else {
        return Ok(());
    };
    conn.prepare_cached("DELETE FROM delivery_gaps WHERE agent_id = ?1 AND first = ?2")
        .and_then(|mut s| s.execute(params![agent_id, first]))
        .map_err(db)?;
    for (a, b) in [(first, seq - 1), (seq + 1, last)] {
        if a <= b {
            conn.prepare_cached(
                "INSERT INTO delivery_gaps (agent_id, first, last, detected_at) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| s.execute(params![agent_id, a, b, detected]))
            .map_err(db)?;
        }
    }
    Ok(())
}

fn dropped_ranges(conn: &Connection, agent_id: &str) -> StoreResult<Vec<DroppedRange>> {
    let mut stmt = conn
        .prepare_cached("SELECT first, last, reason FROM delivery_dropped WHERE agent_id = ?1 ORDER BY first")
        .map_err(db)?;
    stmt.query_map([agent_id], |r| {
        Ok(DroppedRange {
            first: r.get::<_, i64>(0)?.max(0) as u64,
            last: r.get::<_, i64>(1)?.max(0) as u64,
            reason: r.get(2)?,
        })
    })
    .map_err(db)?
    .collect::<Result<_, _>>()
    .map_err(db)
}

/// Appends integrity problems.
pub fn record(conn: &Connection, agent_id: &str, problems: &[IntegrityProblem], now: DateTime<Utc>) -> StoreResult<()> {
    for p in problems {
        let IntegrityProblem { kind, sequence, detail } = p;
        let sequence = seq_i64(*sequence)?;
        conn.prepare_cached(
            "INSERT INTO integrity_events (agent_id, sequence, kind, detail, at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .and_then(|mut s| s.execute(params![agent_id, sequence, kind.as_str(), detail, ms(now)]))
        .map_err(db)?;
    }
    Ok(())
}

/// Keeps the agent's journal, as the collector verified it, in the current state as an
/// `audit.log` observation (see [`journal_payload`]): `rewritten` when a report was forged,
/// altered, forked, rolled back or resent with other content; `truncated` when reports went
/// missing without the agent saying it dropped them. Never clears by itself. Returns the
/// payload it wrote.
pub fn journal_observation(conn: &Connection, agent_id: &str, now: DateTime<Utc>) -> StoreResult<String> {
    use rounds_protocol::obs::{AuditLog, Payload};
    let newest: Option<(i64, String, i64, i64)> = conn
        .prepare_cached(
            "SELECT id, kind, at, sequence FROM integrity_events WHERE agent_id = ?1 ORDER BY id DESC LIMIT 1",
        )
        .and_then(|mut s| {
            s.query_row([agent_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .optional()
        })
        .map_err(db)?;
    let json = journal_payload(newest, now)?;
    conn.prepare_cached(
        "INSERT INTO latest_observations (agent_id, sequence, kind, subject, observed_at, status, data, error,
                                          check_name, confirmed_at, confirmed_sequence, future_dated)
         SELECT ?1, a.last_sequence, ?2, ?3, ?4, 'ok', ?5, NULL, ?6, ?4, a.last_sequence, 0 FROM agents a WHERE a.id = ?1
         ON CONFLICT (agent_id, kind, subject) DO UPDATE SET
           sequence = excluded.sequence, observed_at = excluded.observed_at, status = 'ok', data = excluded.data,
           error = NULL, check_name = excluded.check_name, confirmed_at = excluded.confirmed_at,
           confirmed_sequence = excluded.confirmed_sequence",
    )
    .and_then(|mut s| s.execute(params![agent_id, AuditLog::KIND, JOURNAL_SUBJECT, ms(now), json, JOURNAL_CHECK]))
    .map_err(db)?;
    Ok(json)
}

pub fn reported_state(conn: &Connection, agent_id: &str, state: &AgentReportedState) -> StoreResult<()> {
    let AgentReportedState {
        config_version,
        config_error,
        spool_depth,
        spool_error,
    } = state;
    let n = conn
        .prepare_cached(
            "UPDATE agents SET config_version = ?2, config_error = ?3, spool_depth = ?4, spool_error = ?5 WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.execute(params![
                agent_id,
                config_version,
                config_error,
                spool_depth.map(|d| d.min(i64::MAX as u64) as i64),
                spool_error
            ])
        })
        .map_err(db)?;
    if n == 0 {
        return Err(not_found(agent_id));
    }
    Ok(())
}

/// The delivery state of an agent (visibility checked by the caller).
pub fn status(conn: &Connection, agent_id: &str) -> StoreResult<DeliveryStatus> {
    type Row = (
        i64,
        i64,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<i64>,
        Option<String>,
    );
    let row: Row = conn
        .prepare_cached(
            "SELECT last_sequence, reports_stored, chain_sequence, chain_hash, config_version, config_error,
                    spool_depth, spool_error FROM agents WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.query_row([agent_id], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            })
            .optional()
        })
        .map_err(db)?
        .ok_or_else(|| not_found(agent_id))?;
    let (last, stored, chain_sequence, chain_hash, config_version, config_error, spool_depth, spool_error) = row;
    let dropped = dropped_ranges(conn, agent_id)?;
    let mut gaps = Vec::new();
    {
        let mut stmt = conn
            .prepare_cached("SELECT first, last FROM delivery_gaps WHERE agent_id = ?1 ORDER BY first")
            .map_err(db)?;
        let rows = stmt
            .query_map([agent_id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
            .map_err(db)?;
        for row in rows {
            let (a, b) = row.map_err(db)?;
            gaps.extend(delivery::explain(a.max(0) as u64, b.max(0) as u64, &dropped));
        }
    }
    let integrity_problems: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM integrity_events WHERE agent_id = ?1")
        .and_then(|mut s| s.query_row([agent_id], |r| r.get(0)))
        .map_err(db)?;
    let mut stmt = conn
        .prepare_cached(
            "SELECT sequence, kind, detail, at FROM integrity_events WHERE agent_id = ?1 ORDER BY id DESC LIMIT 50",
        )
        .map_err(db)?;
    let integrity = stmt
        .query_map([agent_id], |r| {
            Ok(IntegrityEvent {
                sequence: r.get::<_, i64>(0)?.max(0) as u64,
                kind: r.get(1)?,
                detail: r.get(2)?,
                at: from_ms(r.get(3)?),
            })
        })
        .map_err(db)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db)?;
    Ok(DeliveryStatus {
        last_sequence: last.max(0) as u64,
        reports_stored: stored.max(0) as u64,
        chain_sequence: chain_sequence.map(|s| s.max(0) as u64),
        chain_hash,
        gaps,
        integrity_problems: integrity_problems.max(0) as u64,
        integrity,
        reported: AgentReportedState {
            config_version,
            config_error,
            spool_depth: spool_depth.map(|d| d.max(0) as u64),
            spool_error,
        },
    })
}
