//! Reports, observations, and the current state per (agent, kind, subject).
//!
//! The current state (`latest_observations`) follows the highest sequence number, never the
//! agent's clock. An observation row is written only when its payload (status, data, error)
//! differs from the current one for its subject; otherwise the current state only records
//! that a newer report confirmed it (`confirmed_at`, `confirmed_sequence`). A complete report
//! of a check retires that check's subjects it no longer names and that no newer report
//! carried (never for the collector's own check, `collector.chain`, whose journal row an agent
//! must not remove).
//!
//! A complete report of a check confirms the check's unchanged subjects once, in
//! `check_confirmations` (sequence, observation time, receive time, per agent and check),
//! instead of on each of their rows (core, issue 7: those `UPDATE`s were most of the writer's
//! work per report). A current row reads its check's confirmation when the confirmation
//! covers it ([`Confirmations::covering`]): the row is of that check, older than the
//! confirming report, and was written before that report was stored (every write of a row
//! records its check's `epoch` then, and each new confirmation takes the next epoch; a late,
//! older report written after it is not covered). Every reader of the current state reads
//! through [`Confirmations`].

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use rounds_protocol::{Observation, ObservationStatus};
use rusqlite::{Connection, params};

use super::codec::{db, from_ms, ms, payload_text, status_str};
use crate::store::common::JOURNAL_CHECK;
use crate::store::{DbErrorKind, IncomingReport, Ingested, StoreError, StoreResult, StoredObservation};

/// A report as the store keeps it, owned so it can move to the blocking pool.
#[derive(Debug)]
pub struct OwnedReport {
    report: rounds_protocol::Report,
    payloads: Vec<String>,
    received_at: DateTime<Utc>,
    future_after: DateTime<Utc>,
}

impl OwnedReport {
    pub fn new(incoming: IncomingReport<'_>) -> Self {
        OwnedReport {
            report: incoming.report.clone(),
            payloads: payloads(incoming.report),
            received_at: incoming.received_at,
            future_after: incoming.future_after,
        }
    }
}

/// The stored text of each observation's payload, in the report's order: made before the
/// unit of work reaches the writer, so the writer only compares and writes them.
pub fn payloads(report: &rounds_protocol::Report) -> Vec<String> {
    report.observations.iter().map(|o| payload_text(&o.data)).collect()
}

/// Stores a report in the open transaction of `conn`.
pub fn ingest(conn: &Connection, agent_id: &str, r: &OwnedReport) -> StoreResult<Ingested> {
    ingest_incoming(
        conn,
        agent_id,
        &IncomingReport {
            report: &r.report,
            received_at: r.received_at,
            future_after: r.future_after,
        },
        &r.payloads,
    )
}

/// [`ingest`] of a borrowed report (the delivery path, which already owns its copy), with its
/// [`payloads`].
pub fn ingest_incoming(
    conn: &Connection,
    agent_id: &str,
    incoming: &IncomingReport<'_>,
    payloads: &[String],
) -> StoreResult<Ingested> {
    if payloads.len() != incoming.report.observations.len() {
        return Err(StoreError::Invalid(format!(
            "report {} of agent {agent_id}: {} payloads for {} observations",
            incoming.report.sequence,
            payloads.len(),
            incoming.report.observations.len()
        )));
    }
    let r = Incoming {
        sequence: incoming.report.sequence,
        created_at: incoming.report.created_at,
        check: &incoming.report.check,
        complete: incoming.report.complete,
        prev_hash: &incoming.report.prev_hash,
        hash: &incoming.report.hash,
        observations: &incoming.report.observations,
        received_at: incoming.received_at,
        future_after: incoming.future_after,
    };
    let seq =
        i64::try_from(r.sequence).map_err(|_| StoreError::Invalid(format!("sequence {} out of range", r.sequence)))?;
    let received = ms(r.received_at);
    let inserted = conn
        .prepare_cached(
            "INSERT INTO reports (agent_id, sequence, created_at, received_at, observation_count, check_name, complete,
                                  prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (agent_id, sequence) DO NOTHING",
        )
        .and_then(|mut s| {
            s.execute(params![
                agent_id,
                seq,
                ms(r.created_at),
                received,
                r.observations.len() as i64,
                r.check,
                r.complete,
                r.prev_hash,
                r.hash
            ])
        })
        .map_err(db)?;
    if inserted == 0 {
        return Ok(Ingested::Duplicate);
    }
    // The checks' confirmations of the agent, then the current payloads of the report's kinds,
    // read at once (a range of the primary key: one check's kinds sort together), then
    // compared here.
    let confirmations = Confirmations::of(conn, agent_id)?;
    let mut current = current_of(
        conn,
        agent_id,
        r.check.as_deref(),
        kind_range(r.observations),
        &confirmations,
    )?;
    let own = r.check.as_deref().and_then(|c| confirmations.get(c));
    // What every row this report writes records of its check (see the module's doc).
    let epoch = own.map_or(0, |c| c.epoch);
    // The confirmation this report becomes: a complete run of its check newer than the last
    // one, dated as its first observation. The collector's own journal row is never covered.
    let confirms = match (r.complete, r.check.as_deref(), r.observations.first()) {
        (true, Some(check), Some(first)) if check != JOURNAL_CHECK && own.is_none_or(|c| seq > c.sequence) => {
            let future = first.observed_at > r.future_after;
            Some(Confirmation {
                epoch: epoch + 1,
                sequence: seq,
                observed_at: if future { received } else { ms(first.observed_at) },
                confirmed_at: received,
                future_dated: future,
            })
        }
        _ => None,
    };
    // A single-row `INSERT ... VALUES`: an `INSERT ... SELECT ... WHERE NOT EXISTS` here (tried
    // for ingest throughput, core issue 7) opens a statement journal per row and multiplied
    // the writes (strace: 4.4 times the pwrite calls per report).
    let mut history = conn
        .prepare_cached(
            "INSERT INTO observations (agent_id, sequence, kind, subject, observed_at, status, data, error, future_dated)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .map_err(db)?;
    let mut latest = conn
        .prepare_cached(
            "INSERT INTO latest_observations (agent_id, sequence, kind, subject, observed_at, status, data, error,
                                              check_name, confirmed_at, confirmed_sequence, future_dated, check_epoch)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?2, ?11, ?12)
             ON CONFLICT (agent_id, kind, subject) DO UPDATE SET
               sequence = excluded.sequence, observed_at = excluded.observed_at, status = excluded.status,
               data = excluded.data, error = excluded.error, check_name = excluded.check_name,
               confirmed_at = excluded.confirmed_at, confirmed_sequence = excluded.confirmed_sequence,
               future_dated = excluded.future_dated, check_epoch = excluded.check_epoch",
        )
        .map_err(db)?;
    // The same payload again, not covered by this report's confirmation: only the row's
    // confirmation moves (what the upsert above would write, without rewriting the payload).
    let mut confirm = conn
        .prepare_cached(
            "UPDATE latest_observations SET sequence = ?4, observed_at = ?5, check_name = ?6, confirmed_at = ?7,
               confirmed_sequence = ?4, future_dated = ?8, check_epoch = ?9
             WHERE agent_id = ?1 AND kind = ?2 AND subject = ?3",
        )
        .map_err(db)?;
    for (o, data) in r.observations.iter().zip(payloads) {
        let future = o.observed_at > r.future_after;
        let observed_at = if future { received } else { ms(o.observed_at) };
        let status = status_str(o.status);
        let now = current.get(&o.kind, &o.subject);
        // A newer report holds the subject: this one only adds to the history.
        let newer = now.is_some_and(|c| c.sequence > seq);
        let unchanged = now.is_some_and(|c| c.status == status && c.data == *data && c.error == o.error);
        if unchanged {
            if newer {
                continue;
            }
            let covered = confirms.as_ref().is_some_and(|c| {
                now.is_some_and(|n| n.sequence < seq && n.owner == Owner::Report)
                    && (c.observed_at, c.future_dated) == (observed_at, future)
            });
            if !covered {
                confirm
                    .execute(params![
                        agent_id,
                        o.kind,
                        o.subject,
                        seq,
                        observed_at,
                        r.check,
                        received,
                        future,
                        epoch
                    ])
                    .map_err(db)?;
            }
            current.confirm(&o.kind, &o.subject, seq);
            continue;
        }
        history
            .execute(params![
                agent_id,
                seq,
                o.kind,
                o.subject,
                observed_at,
                status,
                data,
                o.error,
                future
            ])
            .map_err(db)?;
        if newer {
            continue;
        }
        latest
            .execute(params![
                agent_id,
                seq,
                o.kind,
                o.subject,
                observed_at,
                status,
                data,
                o.error,
                r.check,
                received,
                future,
                epoch
            ])
            .map_err(db)?;
        // A subject named twice in one report compares its second payload with the first.
        current.set(
            &o.kind,
            &o.subject,
            Current {
                sequence: seq,
                status: status.to_string(),
                data: data.clone(),
                error: o.error.clone(),
                owner: if r.check.is_some() {
                    Owner::Report
                } else {
                    Owner::Unnamed
                },
            },
        );
    }
    // A report naming the collector's own check retires nothing: an agent cannot remove the
    // collector's verdict on its journal.
    if r.complete
        && let Some(check) = &r.check
        && check != JOURNAL_CHECK
    {
        // Before the new confirmation is recorded: the rows it covers are named, the others
        // retire.
        retire(conn, agent_id, seq, check, r.observations, &current, &confirmations)?;
    }
    if let (Some(c), Some(check)) = (&confirms, r.check.as_deref()) {
        conn.prepare_cached(
            "INSERT INTO check_confirmations (agent_id, check_name, epoch, sequence, observed_at, confirmed_at,
                                              future_dated)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (agent_id, check_name) DO UPDATE SET
               epoch = excluded.epoch, sequence = excluded.sequence, observed_at = excluded.observed_at,
               confirmed_at = excluded.confirmed_at, future_dated = excluded.future_dated",
        )
        .and_then(|mut s| {
            s.execute(params![
                agent_id,
                check,
                c.epoch,
                c.sequence,
                c.observed_at,
                c.confirmed_at,
                c.future_dated
            ])
        })
        .map_err(db)?;
    }
    conn.prepare_cached(
        "UPDATE agents SET last_seen_at = MAX(COALESCE(last_seen_at, 0), ?1), last_report_at = ?1,
         last_sequence = MAX(last_sequence, ?2) WHERE id = ?3",
    )
    .and_then(|mut s| s.execute(params![received, seq, agent_id]))
    .map_err(db)?;
    Ok(Ingested::Stored)
}

/// A check's last complete run of an agent, as `check_confirmations` keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Confirmation {
    epoch: i64,
    sequence: i64,
    observed_at: i64,
    confirmed_at: i64,
    future_dated: bool,
}

/// The confirmations of one agent's checks, read once per report or read of its state (a
/// range of the primary key: one row per check, a handful per agent, so searched in turn).
#[derive(Debug, Default)]
pub struct Confirmations(Vec<(String, Confirmation)>);

impl Confirmations {
    pub fn of(conn: &Connection, agent_id: &str) -> StoreResult<Self> {
        let mut stmt = conn
            .prepare_cached(
                "SELECT check_name, epoch, sequence, observed_at, confirmed_at, future_dated
                 FROM check_confirmations WHERE agent_id = ?1",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map([agent_id], |r| {
                Ok((
                    r.get(0)?,
                    Confirmation {
                        epoch: r.get(1)?,
                        sequence: r.get(2)?,
                        observed_at: r.get(3)?,
                        confirmed_at: r.get(4)?,
                        future_dated: r.get(5)?,
                    },
                ))
            })
            .map_err(db)?;
        Ok(Confirmations(rows.collect::<Result<_, _>>().map_err(db)?))
    }

    fn get(&self, check: &str) -> Option<&Confirmation> {
        self.0.iter().find(|(name, _)| name == check).map(|(_, c)| c)
    }

    /// The confirmation that stands for a row's own (see the module's doc).
    fn covering(&self, check_name: Option<&str>, sequence: i64, check_epoch: i64) -> Option<&Confirmation> {
        self.get(check_name?)
            .filter(|c| c.epoch > check_epoch && c.sequence > sequence)
    }

    /// The sequence a row stands at: its own, or its covering confirmation's.
    fn sequence(&self, check_name: Option<&str>, sequence: i64, check_epoch: i64) -> i64 {
        self.covering(check_name, sequence, check_epoch)
            .map_or(sequence, |c| c.sequence)
    }
}

/// A text column read without a copy (`None` for NULL).
fn text<'r>(r: &'r rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<&'r str>> {
    r.get_ref(i)?
        .as_str_or_null()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
}

/// An agent's current payload per (kind, subject), for the kinds of one report: the rows of
/// its [`kind_range`], which it keeps.
struct CurrentState<'a> {
    rows: Vec<(String, String, Current)>,
    range: Option<(&'a str, &'a str)>,
}

struct Current {
    /// The row's sequence, or its covering confirmation's.
    sequence: i64,
    status: String,
    data: String,
    error: Option<String>,
    owner: Owner,
}

/// Which check a current row is of: the check of the report being stored, another, or none.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Owner {
    Report,
    Other,
    /// Stored before reports named their check.
    Unnamed,
}

impl CurrentState<'_> {
    fn position(&self, kind: &str, subject: &str) -> Result<usize, usize> {
        self.rows
            .binary_search_by(|(k, s, _)| (k.as_str(), s.as_str()).cmp(&(kind, subject)))
    }

    fn get(&self, kind: &str, subject: &str) -> Option<&Current> {
        self.position(kind, subject).ok().map(|i| &self.rows[i].2)
    }

    /// What the row holds after a write of `new` (kept when a newer sequence holds it).
    fn set(&mut self, kind: &str, subject: &str, new: Current) {
        match self.position(kind, subject) {
            Ok(i) if self.rows[i].2.sequence <= new.sequence => self.rows[i].2 = new,
            Ok(_) => {}
            Err(i) => self.rows.insert(i, (kind.to_string(), subject.to_string(), new)),
        }
    }

    /// The row confirmed by the report at `sequence` (its payload unchanged).
    fn confirm(&mut self, kind: &str, subject: &str, sequence: i64) {
        if let Ok(i) = self.position(kind, subject)
            && self.rows[i].2.sequence <= sequence
        {
            self.rows[i].2.sequence = sequence;
            self.rows[i].2.owner = Owner::Report;
        }
    }
}

/// The smallest and the largest kind of a report's observations (`None` for no observation):
/// the range of the primary key that [`current_of`] reads and [`retire`] reads around.
fn kind_range(observations: &[Observation]) -> Option<(&str, &str)> {
    let kinds = || observations.iter().map(|o| o.kind.as_str());
    kinds().min().zip(kinds().max())
}

/// The current rows of `agent_id` whose kind is in `range` (the report's [`kind_range`]): one
/// range of the primary key (agent, kind, subject) from the smallest kind to the largest.
fn current_of<'a>(
    conn: &Connection,
    agent_id: &str,
    check: Option<&str>,
    range: Option<(&'a str, &'a str)>,
    confirmations: &Confirmations,
) -> StoreResult<CurrentState<'a>> {
    let Some((first, last)) = range else {
        return Ok(CurrentState {
            rows: Vec::new(),
            range,
        });
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT kind, subject, sequence, status, data, error, check_name, check_epoch FROM latest_observations
             WHERE agent_id = ?1 AND kind >= ?2 AND kind <= ?3",
        )
        .map_err(db)?;
    let mut rows: Vec<(String, String, Current)> = stmt
        .query_map(params![agent_id, first, last], |r| {
            let check_name = text(r, 6)?;
            Ok((
                r.get(0)?,
                r.get(1)?,
                Current {
                    sequence: confirmations.sequence(check_name, r.get(2)?, r.get(7)?),
                    status: r.get(3)?,
                    data: r.get(4)?,
                    error: r.get(5)?,
                    owner: match check_name {
                        None => Owner::Unnamed,
                        Some(name) if Some(name) == check => Owner::Report,
                        Some(_) => Owner::Other,
                    },
                },
            ))
        })
        .map_err(db)?
        .collect::<Result<_, _>>()
        .map_err(db)?;
    rows.sort_unstable_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    Ok(CurrentState { rows, range })
}

/// The fields of a report that [`ingest_incoming`] reads.
struct Incoming<'a> {
    sequence: u64,
    created_at: DateTime<Utc>,
    check: &'a Option<String>,
    complete: bool,
    prev_hash: &'a Option<String>,
    hash: &'a Option<String>,
    observations: &'a [Observation],
    received_at: DateTime<Utc>,
    future_after: DateTime<Utc>,
}

/// Removes from the current state the subjects of `check` (or of the kinds it reported, for
/// subjects stored before reports named their check) that this complete report does not name
/// and that no newer report carried (nor a newer confirmation covers). The rows of the
/// report's range of kinds are `current` (as read before the report, and as it left them);
/// the check's rows of other kinds are read, a range of the primary key either side of
/// `current.range`.
fn retire(
    conn: &Connection,
    agent_id: &str,
    seq: i64,
    check: &str,
    observations: &[Observation],
    current: &CurrentState,
    confirmations: &Confirmations,
) -> StoreResult<()> {
    let named: HashSet<(&str, &str)> = observations
        .iter()
        .map(|o| (o.kind.as_str(), o.subject.as_str()))
        .collect();
    let kinds: HashSet<&str> = observations.iter().map(|o| o.kind.as_str()).collect();
    let mut retiring: Vec<(String, String)> = current
        .rows
        .iter()
        .filter(|(kind, subject, c)| {
            let ours = match c.owner {
                Owner::Report => true,
                Owner::Other => false,
                Owner::Unnamed => kinds.contains(kind.as_str()),
            };
            ours && c.sequence < seq && !named.contains(&(kind.as_str(), subject.as_str()))
        })
        .map(|(kind, subject, _)| (kind.clone(), subject.clone()))
        .collect();
    // Outside the report's kinds (all of them, for a run that found no subject), only the
    // check's own rows can be ours (a row of no check is ours by its kind).
    let row = |r: &rusqlite::Row<'_>| {
        let sequence = confirmations.sequence(Some(check), r.get(2)?, r.get(3)?);
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, sequence))
    };
    let rows: Vec<(String, String, i64)> = match current.range {
        // Two ranges of the primary key (a condition that may match all would scan the agent).
        Some((first, last)) => conn
            .prepare_cached(
                "SELECT kind, subject, sequence, check_epoch FROM latest_observations
                 WHERE agent_id = ?1 AND kind < ?2 AND check_name = ?4 AND sequence < ?5
                 UNION ALL
                 SELECT kind, subject, sequence, check_epoch FROM latest_observations
                 WHERE agent_id = ?1 AND kind > ?3 AND check_name = ?4 AND sequence < ?5",
            )
            .and_then(|mut s| s.query_map(params![agent_id, first, last, check, seq], row)?.collect()),
        None => conn
            .prepare_cached(
                "SELECT kind, subject, sequence, check_epoch FROM latest_observations
                 WHERE agent_id = ?1 AND check_name = ?2 AND sequence < ?3",
            )
            .and_then(|mut s| s.query_map(params![agent_id, check, seq], row)?.collect()),
    }
    .map_err(db)?;
    for (kind, subject, sequence) in rows {
        if sequence < seq {
            retiring.push((kind, subject));
        }
    }
    let mut delete = conn
        .prepare_cached("DELETE FROM latest_observations WHERE agent_id = ?1 AND kind = ?2 AND subject = ?3")
        .map_err(db)?;
    for (kind, subject) in retiring {
        delete.execute(params![agent_id, kind, subject]).map_err(db)?;
    }
    Ok(())
}

/// The current observation per (kind, subject) of an agent, optionally of one kind.
pub fn latest(conn: &Connection, agent_id: &str, kind: Option<&str>) -> StoreResult<Vec<StoredObservation>> {
    decode_latest(latest_undecoded(conn, agent_id, kind)?)
}

/// [`latest`] with each payload still as its stored JSON text, to be decoded by
/// [`decode_latest`] away from the writer (ingest reads the evaluation's input on the writer).
pub fn latest_undecoded(
    conn: &Connection,
    agent_id: &str,
    kind: Option<&str>,
) -> StoreResult<Vec<(StoredObservation, String)>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT sequence, kind, subject, observed_at, status, data, error, confirmed_at, future_dated,
                    check_name, check_epoch
             FROM latest_observations WHERE agent_id = ?1 AND (?2 IS NULL OR kind = ?2) ORDER BY kind, subject",
        )
        .map_err(db)?;
    let confirmations = Confirmations::of(conn, agent_id)?;
    let rows = stmt
        .query_map(params![agent_id, kind], |r| {
            let data: String = r.get(5)?;
            let status: String = r.get(4)?;
            let own = (r.get::<_, i64>(0)?, r.get(3)?, r.get::<_, Option<i64>>(7)?, r.get(8)?);
            let (sequence, observed_at, confirmed_at, future_dated) =
                match confirmations.covering(text(r, 9)?, own.0, r.get(10)?) {
                    Some(c) => (c.sequence, c.observed_at, Some(c.confirmed_at), c.future_dated),
                    None => own,
                };
            Ok((
                StoredObservation {
                    agent_id: agent_id.to_string(),
                    sequence: sequence.max(0) as u64,
                    confirmed_at: confirmed_at.map(from_ms),
                    future_dated,
                    observation: Observation {
                        kind: r.get(1)?,
                        subject: r.get(2)?,
                        observed_at: from_ms(observed_at),
                        status: if status == "ok" {
                            ObservationStatus::Ok
                        } else {
                            ObservationStatus::Error
                        },
                        data: serde_json::Value::Null,
                        error: r.get(6)?,
                    },
                },
                data,
            ))
        })
        .map_err(db)?;
    rows.collect::<Result<_, _>>().map_err(db)
}

/// The payloads of [`latest_undecoded`] rows decoded.
pub fn decode_latest(rows: Vec<(StoredObservation, String)>) -> StoreResult<Vec<StoredObservation>> {
    rows.into_iter()
        .map(|(mut stored, data)| {
            stored.observation.data = serde_json::from_str(&data).map_err(|e| {
                StoreError::database(
                    DbErrorKind::Corrupt,
                    format!(
                        "decoding stored observation {} / {}",
                        stored.observation.kind, stored.observation.subject
                    ),
                    e,
                )
            })?;
            Ok(stored)
        })
        .collect()
}

pub fn count(conn: &Connection) -> StoreResult<u64> {
    conn.query_row("SELECT COUNT(*) FROM reports", [], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
        .map_err(db)
}
