//! Reports, observations, and the current state per (agent, kind, subject) (PostgreSQL;
//! mirrors `store/sqlite/reports.rs`: the current state follows the highest sequence, an
//! observation row is written only when the payload changes, a complete report of a check
//! retires that check's subjects it no longer names).

use std::collections::{HashMap, HashSet};

use rounds_protocol::{Observation, ObservationStatus};

use super::codec::{db, from_ms, ms, payload_text, status_str};
use super::pool::Conn;
use crate::store::common::JOURNAL_CHECK;
use crate::store::{DbErrorKind, IncomingReport, Ingested, StoreError, StoreResult, StoredObservation};

/// What a delivered report also records (see [`super::delivery::deliver`]): its digest, and
/// the hash that becomes the head of the agent's chain.
#[derive(Debug, Clone, Copy)]
pub struct Delivered<'a> {
    pub digest: &'a str,
    pub own_hash: &'a str,
}

const INSERT_REPORT: &str =
    "INSERT INTO reports (agent_id, sequence, created_at, received_at, observation_count, check_name,
                                  complete, prev_hash, hash, digest)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (agent_id, sequence) DO NOTHING";

/// The current state of the (kind, subject) pairs a report names.
const CURRENT: &str = "SELECT l.kind, l.subject, l.status, l.data, l.error, l.sequence
     FROM latest_observations l JOIN UNNEST($2::TEXT[], $3::TEXT[]) AS n(kind, subject)
       ON l.kind = n.kind AND l.subject = n.subject
     WHERE l.agent_id = $1";

/// The history rows of a report, in the report's order (one statement for all of them).
const HISTORY: &str = "INSERT INTO observations (agent_id, sequence, kind, subject, observed_at, status, data, error,
                                       future_dated)
     SELECT $1::TEXT, $2::BIGINT, n.kind, n.subject, n.observed_at, n.status, n.data, n.error, n.future_dated
     FROM UNNEST($3::TEXT[], $4::TEXT[], $5::BIGINT[], $6::TEXT[], $7::TEXT[], $8::TEXT[], $9::BIGINT[])
          WITH ORDINALITY AS n(kind, subject, observed_at, status, data, error, future_dated, ord)
     ORDER BY n.ord";

/// The current state of every (kind, subject) of a report (each pair once: the upsert may not
/// touch a row twice), unless a newer report set it. PostgreSQL writes every row of a report
/// (it keeps no confirmation per check, migration 0018); a row records its check's epoch so
/// that a confirmation a transfer carried never covers it.
const LATEST: &str =
    "INSERT INTO latest_observations (agent_id, sequence, kind, subject, observed_at, status, data, error,
                                          check_name, confirmed_at, confirmed_sequence, future_dated, check_epoch)
     SELECT $1::TEXT, $2::BIGINT, n.kind, n.subject, n.observed_at, n.status, n.data, n.error, $3::TEXT, $4::BIGINT,
            $2::BIGINT, n.future_dated,
            COALESCE((SELECT c.epoch FROM check_confirmations c WHERE c.agent_id = $1 AND c.check_name = $3), 0)
     FROM UNNEST($5::TEXT[], $6::TEXT[], $7::BIGINT[], $8::TEXT[], $9::TEXT[], $10::TEXT[], $11::BIGINT[])
          AS n(kind, subject, observed_at, status, data, error, future_dated)
     ON CONFLICT (agent_id, kind, subject) DO UPDATE SET
       sequence = excluded.sequence, observed_at = excluded.observed_at, status = excluded.status,
       data = excluded.data, error = excluded.error, check_name = excluded.check_name,
       confirmed_at = excluded.confirmed_at, confirmed_sequence = excluded.confirmed_sequence,
       future_dated = excluded.future_dated, check_epoch = excluded.check_epoch
     WHERE excluded.sequence >= latest_observations.sequence";

/// A complete report of a check retires that check's subjects (or, for subjects stored before
/// reports named their check, the subjects of the kinds it reported) it does not name and that
/// no newer report carried.
const RETIRE: &str = "DELETE FROM latest_observations l
     WHERE l.agent_id = $1 AND l.sequence < $2
       AND (l.check_name = $3 OR (l.check_name IS NULL AND l.kind = ANY($4::TEXT[])))
       AND NOT EXISTS (SELECT 1 FROM UNNEST($5::TEXT[], $6::TEXT[]) AS n(kind, subject)
                       WHERE n.kind = l.kind AND n.subject = l.subject)";

const AGENT_SEEN: &str =
    "UPDATE agents SET last_seen_at = GREATEST(COALESCE(last_seen_at, 0), $1), last_report_at = $1,
       last_sequence = GREATEST(last_sequence, $2) WHERE id = $3";

/// [`AGENT_SEEN`] and a delivery's count and chain head, in one statement.
const AGENT_DELIVERED: &str =
    "UPDATE agents SET last_seen_at = GREATEST(COALESCE(last_seen_at, 0), $1), last_report_at = $1,
       last_sequence = GREATEST(last_sequence, $2), reports_stored = reports_stored + 1,
       chain_hash = CASE WHEN chain_sequence IS NULL OR $2 >= chain_sequence THEN $4 ELSE chain_hash END,
       chain_sequence = GREATEST(COALESCE(chain_sequence, 0), $2)
     WHERE id = $3";

/// The current state of a subject as a report's observations compare with it: sequence,
/// status, data, error.
type Current = (i64, String, String, Option<String>);

/// One observation as it is written.
struct Written<'a> {
    kind: &'a str,
    subject: &'a str,
    observed_at: i64,
    status: &'static str,
    data: String,
    error: Option<&'a str>,
    future: i64,
}

/// Columns of rows, as the arrays `UNNEST` takes.
#[derive(Default)]
struct Columns<'a> {
    kind: Vec<&'a str>,
    subject: Vec<&'a str>,
    observed_at: Vec<i64>,
    status: Vec<&'a str>,
    data: Vec<&'a str>,
    error: Vec<Option<&'a str>>,
    future: Vec<i64>,
}

impl<'a> Columns<'a> {
    fn push(&mut self, r: &'a Written<'a>) {
        self.kind.push(r.kind);
        self.subject.push(r.subject);
        self.observed_at.push(r.observed_at);
        self.status.push(r.status);
        self.data.push(&r.data);
        self.error.push(r.error);
        self.future.push(r.future);
    }

    fn is_empty(&self) -> bool {
        self.kind.is_empty()
    }
}

/// Stores a report in the open transaction of `c`.
pub async fn ingest(c: &Conn, agent_id: &str, r: IncomingReport<'_>) -> StoreResult<Ingested> {
    ingest_with(c, agent_id, r, None).await
}

/// [`ingest`], also recording what a delivery records. A few round trips whatever the number
/// of observations: the report row and the current state of its subjects together, then the
/// changed observations, the current state, the retirements and the agent's row together.
pub async fn ingest_with(
    c: &Conn,
    agent_id: &str,
    r: IncomingReport<'_>,
    delivered: Option<Delivered<'_>>,
) -> StoreResult<Ingested> {
    let report = r.report;
    let seq = i64::try_from(report.sequence)
        .map_err(|_| StoreError::Invalid(format!("sequence {} out of range", report.sequence)))?;
    let received = ms(r.received_at);
    let rows: Vec<Written<'_>> = report
        .observations
        .iter()
        .map(|o| {
            let future = o.observed_at > r.future_after;
            Written {
                kind: &o.kind,
                subject: &o.subject,
                observed_at: if future { received } else { ms(o.observed_at) },
                status: status_str(o.status),
                data: payload_text(&o.data),
                error: o.error.as_deref(),
                future: i64::from(future),
            }
        })
        .collect();
    // Each (kind, subject) once, at its last place in the report.
    let mut last_of: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        last_of.insert((row.kind, row.subject), i);
    }
    let mut pairs: Vec<(&str, &str)> = last_of.keys().copied().collect();
    pairs.sort_unstable();
    let (kinds, subjects): (Vec<&str>, Vec<&str>) = pairs.iter().copied().unzip();
    c.prepare_all(&[INSERT_REPORT, CURRENT]).await.map_err(db)?;
    let digest = delivered.map(|d| d.digest);
    let (inserted, current) = tokio::try_join!(
        async {
            c.execute(
                INSERT_REPORT,
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
                    &digest,
                ],
            )
            .await
        },
        async {
            if rows.is_empty() {
                return Ok(Vec::new());
            }
            c.query(CURRENT, &[&agent_id, &kinds, &subjects]).await
        }
    )
    .map_err(db)?;
    if inserted == 0 {
        return Ok(Ingested::Duplicate);
    }
    // The current payload per subject, as each observation in turn finds it: an observation
    // row is written only when its payload differs (the same rule as SQLite's, one row at a
    // time; a subject named twice compares with its earlier place in the report).
    let mut now: HashMap<(&str, &str), Current> = current
        .iter()
        .map(|row| {
            (
                (row.get(0), row.get(1)),
                (row.get(5), row.get(2), row.get(3), row.get(4)),
            )
        })
        .collect();
    let mut history = Columns::default();
    let mut latest = Columns::default();
    for (i, row) in rows.iter().enumerate() {
        let key = (row.kind, row.subject);
        let unchanged = now
            .get(&key)
            .is_some_and(|(_, s, d, e)| s == row.status && *d == row.data && e.as_deref() == row.error);
        if !unchanged {
            history.push(row);
        }
        if now.get(&key).is_none_or(|(s, ..)| seq >= *s) {
            now.insert(
                key,
                (
                    seq,
                    row.status.to_string(),
                    row.data.clone(),
                    row.error.map(str::to_string),
                ),
            );
        }
        if last_of[&key] == i {
            latest.push(row);
        }
    }
    // A report naming the collector's own check retires nothing (the journal's verdict stays).
    let retire = report.complete && report.check.as_deref().is_some_and(|c| c != JOURNAL_CHECK);
    let report_kinds: Vec<&str> = {
        let set: HashSet<&str> = rows.iter().map(|r| r.kind).collect();
        let mut v: Vec<&str> = set.into_iter().collect();
        v.sort_unstable();
        v
    };
    let agent_sql = if delivered.is_some() {
        AGENT_DELIVERED
    } else {
        AGENT_SEEN
    };
    c.prepare_all(&[HISTORY, LATEST, RETIRE, agent_sql]).await.map_err(db)?;
    let own_hash = delivered.map(|d| d.own_hash);
    // In this order on the connection: the upsert sees the history rows' report, the
    // retirement the upserted state (`biased`: first polled, so sent, in this order).
    tokio::try_join!(
        biased;
        async {
            if history.is_empty() {
                return Ok(0);
            }
            c.execute(
                HISTORY,
                &[
                    &agent_id,
                    &seq,
                    &history.kind,
                    &history.subject,
                    &history.observed_at,
                    &history.status,
                    &history.data,
                    &history.error,
                    &history.future,
                ],
            )
            .await
        },
        async {
            if latest.is_empty() {
                return Ok(0);
            }
            c.execute(
                LATEST,
                &[
                    &agent_id,
                    &seq,
                    &report.check,
                    &received,
                    &latest.kind,
                    &latest.subject,
                    &latest.observed_at,
                    &latest.status,
                    &latest.data,
                    &latest.error,
                    &latest.future,
                ],
            )
            .await
        },
        async {
            if !retire {
                return Ok(0);
            }
            c.execute(
                RETIRE,
                &[&agent_id, &seq, &report.check, &report_kinds, &kinds, &subjects],
            )
            .await
        },
        async {
            match own_hash {
                Some(hash) => c.execute(agent_sql, &[&received, &seq, &agent_id, &hash]).await,
                None => c.execute(agent_sql, &[&received, &seq, &agent_id]).await,
            }
        },
    )
    .map_err(db)?;
    Ok(Ingested::Stored)
}

/// The current observation per (kind, subject) of an agent, optionally of one kind.
pub async fn latest(c: &Conn, agent_id: &str, kind: Option<&str>) -> StoreResult<Vec<StoredObservation>> {
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

pub async fn count(c: &Conn) -> StoreResult<u64> {
    let n: i64 = c
        .query_one("SELECT COUNT(*) FROM reports", &[])
        .await
        .map_err(db)?
        .get(0);
    Ok(n.max(0) as u64)
}
