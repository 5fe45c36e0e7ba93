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
use crate::store::common::{JOURNAL_CHECK, JOURNAL_SUBJECT};
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
    let mut state = AgentState::load(conn, agent_id)?;
    ingest_incoming(
        conn,
        agent_id,
        &IncomingReport {
            report: &r.report,
            received_at: r.received_at,
            future_after: r.future_after,
        },
        &r.payloads,
        &mut state,
    )
}

/// [`ingest`] of a borrowed report (the delivery path, which already owns its copy), with its
/// [`payloads`], against the agent's current `state` as this transaction has it, which it
/// leaves as its statements leave the rows.
pub fn ingest_incoming(
    conn: &Connection,
    agent_id: &str,
    incoming: &IncomingReport<'_>,
    payloads: &[String],
    state: &mut AgentState,
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
    // The agent's current rows were read once for the unit of work (one range of the primary
    // key) and are compared here.
    state.begin(r.check.as_deref());
    let own = r.check.as_deref().and_then(|c| state.confirmations.get(c)).cloned();
    // What every row this report writes records of its check (see the module's doc).
    let epoch = own.as_ref().map_or(0, |c| c.epoch);
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
        let at = state.position(&o.kind, &o.subject);
        let now = at.ok().map(|i| &state.rows[i]);
        // A newer report holds the subject: this one only adds to the history.
        let newer = now.is_some_and(|c| c.current > seq);
        let unchanged = now.is_some_and(|c| c.status == status && c.data == *data && c.error == o.error);
        if let (true, Ok(i)) = (unchanged, at) {
            if newer {
                continue;
            }
            let covered = confirms.as_ref().is_some_and(|c| {
                now.is_some_and(|n| n.current < seq && n.owner == Owner::Report)
                    && (c.observed_at, c.future_dated) == (observed_at, future)
            });
            let row = &mut state.rows[i];
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
                row.sequence = seq;
                row.observed_at = observed_at;
                row.check_name.clone_from(r.check);
                row.confirmed_at = Some(received);
                row.future_dated = future;
                row.check_epoch = epoch;
            }
            // Covered: the row is left as it is, and reads the confirmation recorded below.
            row.current = seq;
            row.owner = Owner::Report;
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
        let written = Row {
            kind: o.kind.clone(),
            subject: o.subject.clone(),
            sequence: seq,
            observed_at,
            status: status.to_string(),
            data: data.clone(),
            error: o.error.clone(),
            check_name: r.check.clone(),
            confirmed_at: Some(received),
            future_dated: future,
            check_epoch: epoch,
            current: seq,
            owner: if r.check.is_some() {
                Owner::Report
            } else {
                Owner::Unnamed
            },
        };
        match at {
            Ok(i) => state.rows[i] = written,
            Err(i) => state.rows.insert(i, written),
        }
    }
    // A report naming the collector's own check retires nothing: an agent cannot remove the
    // collector's verdict on its journal.
    if r.complete
        && let Some(check) = &r.check
        && check != JOURNAL_CHECK
    {
        // Before the new confirmation is recorded: the rows it covers are named, the others
        // retire.
        retire(conn, agent_id, seq, r.observations, state)?;
    }
    if let (Some(c), Some(check)) = (confirms, r.check.as_deref()) {
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
        state.confirmations.set(check, c);
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

    /// What the upsert of `check`'s confirmation leaves.
    fn set(&mut self, check: &str, confirmation: Confirmation) {
        match self.0.iter_mut().find(|(name, _)| name == check) {
            Some((_, c)) => *c = confirmation,
            None => self.0.push((check.to_string(), confirmation)),
        }
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

/// An agent's current rows (`latest_observations`) and its checks' confirmations, read once
/// for a unit of work (one range of the primary key) and kept as that unit's statements leave
/// them: every write [`ingest_incoming`] and the journal make is applied here too, so that the
/// evaluation's input after a delivery is taken from it instead of being read again on the
/// writer (core, issue 7: the two reads were 0.67 M of the writer's 1.5 M instructions per
/// report). A debug build reads the rows again after each delivery and checks they agree
/// (`store::sqlite::deliver`).
#[derive(Debug)]
pub struct AgentState {
    /// Ordered by (kind, subject), as the primary key.
    rows: Vec<Row>,
    confirmations: Confirmations,
}

/// One current row as stored, with what the report being stored reads of it.
#[derive(Debug)]
struct Row {
    kind: String,
    subject: String,
    sequence: i64,
    observed_at: i64,
    status: String,
    data: String,
    error: Option<String>,
    check_name: Option<String>,
    confirmed_at: Option<i64>,
    future_dated: bool,
    check_epoch: i64,
    /// For the report being stored ([`AgentState::begin`]): the row's sequence, or its
    /// covering confirmation's, or the report's once it confirmed the row.
    current: i64,
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

impl AgentState {
    /// The agent's current rows and confirmations, in the open transaction (or snapshot) of
    /// `conn`.
    pub fn load(conn: &Connection, agent_id: &str) -> StoreResult<Self> {
        let confirmations = Confirmations::of(conn, agent_id)?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT kind, subject, sequence, observed_at, status, data, error, check_name, confirmed_at,
                        future_dated, check_epoch
                 FROM latest_observations WHERE agent_id = ?1 ORDER BY kind, subject",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map([agent_id], |r| {
                Ok(Row {
                    kind: r.get(0)?,
                    subject: r.get(1)?,
                    sequence: r.get(2)?,
                    observed_at: r.get(3)?,
                    status: r.get(4)?,
                    data: r.get(5)?,
                    error: r.get(6)?,
                    check_name: r.get(7)?,
                    confirmed_at: r.get(8)?,
                    future_dated: r.get(9)?,
                    check_epoch: r.get(10)?,
                    current: 0,
                    owner: Owner::Unnamed,
                })
            })
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)?;
        Ok(AgentState { rows, confirmations })
    }

    /// Debug builds: panics unless the rows and confirmations are what the store holds now
    /// (every stored column), so that every delivery a test makes checks the copy.
    #[cfg(debug_assertions)]
    pub fn assert_stored(&self, conn: &Connection, agent_id: &str) -> StoreResult<()> {
        let stored = |s: &AgentState| {
            let rows: Vec<_> = s
                .rows
                .iter()
                .map(|r| {
                    let Row {
                        kind,
                        subject,
                        sequence,
                        observed_at,
                        status,
                        data,
                        error,
                        check_name,
                        confirmed_at,
                        future_dated,
                        check_epoch,
                        current: _,
                        owner: _,
                    } = r;
                    format!(
                        "{kind} {subject} {sequence} {observed_at} {status} {data} {error:?} {check_name:?} \
                         {confirmed_at:?} {future_dated} {check_epoch}"
                    )
                })
                .collect();
            let mut confirmations: Vec<String> = s.confirmations.0.iter().map(|c| format!("{c:?}")).collect();
            confirmations.sort();
            (rows, confirmations)
        };
        assert_eq!(
            stored(self),
            stored(&AgentState::load(conn, agent_id)?),
            "the current state kept by the deliveries of agent {agent_id} differs from the store's"
        );
        Ok(())
    }

    /// Reads every row for a report of `check`: the sequence it stands at and whose it is.
    fn begin(&mut self, check: Option<&str>) {
        let AgentState { rows, confirmations } = self;
        for row in rows {
            row.current = confirmations.sequence(row.check_name.as_deref(), row.sequence, row.check_epoch);
            row.owner = match row.check_name.as_deref() {
                None => Owner::Unnamed,
                Some(name) if Some(name) == check => Owner::Report,
                Some(_) => Owner::Other,
            };
        }
    }

    fn position(&self, kind: &str, subject: &str) -> Result<usize, usize> {
        self.rows
            .binary_search_by(|row| (row.kind.as_str(), row.subject.as_str()).cmp(&(kind, subject)))
    }

    /// What [`super::delivery::journal_observation`]'s upsert leaves: the journal row at
    /// `sequence`, observed and confirmed at `at`, with the payload `data`.
    pub fn journal(&mut self, sequence: i64, at: i64, data: String) {
        use rounds_protocol::obs::{AuditLog, Payload};
        let row = Row {
            kind: AuditLog::KIND.to_string(),
            subject: JOURNAL_SUBJECT.to_string(),
            sequence,
            observed_at: at,
            status: "ok".to_string(),
            data,
            error: None,
            check_name: Some(JOURNAL_CHECK.to_string()),
            confirmed_at: Some(at),
            future_dated: false,
            check_epoch: 0,
            current: sequence,
            owner: Owner::Other,
        };
        match self.position(&row.kind, &row.subject) {
            // The upsert leaves the row's `future_dated` and `check_epoch` as they were.
            Ok(i) => {
                let old = &self.rows[i];
                self.rows[i] = Row {
                    future_dated: old.future_dated,
                    check_epoch: old.check_epoch,
                    ..row
                };
            }
            Err(i) => self.rows.insert(i, row),
        }
    }

    /// The current observations, optionally of one kind, as the store reads them (each
    /// payload still its stored text): a row covered by its check's confirmation reads the
    /// confirmation's sequence and times.
    pub fn into_undecoded(self, agent_id: &str, kind: Option<&str>) -> Vec<(StoredObservation, String)> {
        let AgentState { rows, confirmations } = self;
        rows.into_iter()
            .filter(|row| kind.is_none_or(|k| row.kind == k))
            .map(|row| {
                let own = (row.sequence, row.observed_at, row.confirmed_at, row.future_dated);
                let (sequence, observed_at, confirmed_at, future_dated) =
                    match confirmations.covering(row.check_name.as_deref(), row.sequence, row.check_epoch) {
                        Some(c) => (c.sequence, c.observed_at, Some(c.confirmed_at), c.future_dated),
                        None => own,
                    };
                (
                    StoredObservation {
                        agent_id: agent_id.to_string(),
                        sequence: sequence.max(0) as u64,
                        confirmed_at: confirmed_at.map(from_ms),
                        future_dated,
                        observation: Observation {
                            kind: row.kind,
                            subject: row.subject,
                            observed_at: from_ms(observed_at),
                            status: if row.status == "ok" {
                                ObservationStatus::Ok
                            } else {
                                ObservationStatus::Error
                            },
                            data: serde_json::Value::Null,
                            error: row.error,
                        },
                    },
                    row.data,
                )
            })
            .collect()
    }
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

/// Removes from the current state the subjects of the report's check (or of the kinds it
/// reported, for subjects stored before reports named their check) that this complete report
/// does not name and that no newer report carried (nor a newer confirmation covers), from
/// `state` (as read before the report, and as the report left it) and from the store.
fn retire(
    conn: &Connection,
    agent_id: &str,
    seq: i64,
    observations: &[Observation],
    state: &mut AgentState,
) -> StoreResult<()> {
    let named: HashSet<(&str, &str)> = observations
        .iter()
        .map(|o| (o.kind.as_str(), o.subject.as_str()))
        .collect();
    let kinds: HashSet<&str> = observations.iter().map(|o| o.kind.as_str()).collect();
    let retiring = |row: &Row| {
        let ours = match row.owner {
            Owner::Report => true,
            Owner::Other => false,
            Owner::Unnamed => kinds.contains(row.kind.as_str()),
        };
        ours && row.current < seq && !named.contains(&(row.kind.as_str(), row.subject.as_str()))
    };
    if !state.rows.iter().any(retiring) {
        return Ok(());
    }
    let mut delete = conn
        .prepare_cached("DELETE FROM latest_observations WHERE agent_id = ?1 AND kind = ?2 AND subject = ?3")
        .map_err(db)?;
    for row in state.rows.iter().filter(|row| retiring(row)) {
        delete.execute(params![agent_id, row.kind, row.subject]).map_err(db)?;
    }
    state.rows.retain(|row| !retiring(row));
    Ok(())
}

/// The current observation per (kind, subject) of an agent, optionally of one kind.
pub fn latest(conn: &Connection, agent_id: &str, kind: Option<&str>) -> StoreResult<Vec<StoredObservation>> {
    decode_latest(latest_undecoded(conn, agent_id, kind)?)
}

/// [`latest`] with each payload still as its stored JSON text, to be decoded by
/// [`decode_latest`] away from the writer.
pub fn latest_undecoded(
    conn: &Connection,
    agent_id: &str,
    kind: Option<&str>,
) -> StoreResult<Vec<(StoredObservation, String)>> {
    Ok(AgentState::load(conn, agent_id)?.into_undecoded(agent_id, kind))
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
