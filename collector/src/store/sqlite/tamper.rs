//! Tamper events of agents' watched logs and their acknowledgements (issue 11).

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::codec::{db, from_json, from_ms, ms, to_json};
use crate::store::{StoreError, StoreResult, TamperAck, TamperRow, TamperSeen};

const COLUMNS: &str = "agent_id, tamper_id, path, kind, detected_at, first_seen_at, event, acknowledged_at, \
                       acknowledged_by, ack_reason";

fn agent_exists(conn: &Connection, agent_id: &str) -> StoreResult<()> {
    conn.prepare_cached("SELECT 1 FROM agents WHERE id = ?1")
        .and_then(|mut s| s.query_row([agent_id], |_| Ok(())).optional())
        .map_err(db)?
        .ok_or_else(|| StoreError::NotFound {
            what: "agent",
            name: agent_id.to_string(),
        })
}

/// Records events not recorded yet.
pub fn note(conn: &Connection, agent_id: &str, seen: &[TamperSeen], now: DateTime<Utc>) -> StoreResult<()> {
    agent_exists(conn, agent_id)?;
    for t in seen {
        let event = to_json(&t.event)?;
        conn.prepare_cached(
            "INSERT INTO tamper_events (agent_id, tamper_id, path, kind, detected_at, first_seen_at, event)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (agent_id, tamper_id) DO NOTHING",
        )
        .and_then(|mut s| {
            s.execute(params![
                agent_id,
                t.tamper_id,
                t.path,
                t.kind,
                ms(t.detected_at),
                ms(now),
                event
            ])
        })
        .map_err(db)?;
    }
    Ok(())
}

type Raw = (
    String,
    String,
    String,
    String,
    i64,
    i64,
    String,
    Option<i64>,
    Option<String>,
    Option<String>,
);

fn decode(raw: Raw) -> StoreResult<TamperRow> {
    let (agent_id, tamper_id, path, kind, detected_at, first_seen_at, event, ack_at, ack_by, reason) = raw;
    Ok(TamperRow {
        event: from_json("tamper event", &event)?,
        acknowledged: ack_at.map(|at| TamperAck {
            by: ack_by.unwrap_or_default(),
            at: from_ms(at),
            reason: reason.unwrap_or_default(),
        }),
        agent_id,
        tamper_id,
        path,
        kind,
        detected_at: from_ms(detected_at),
        first_seen_at: from_ms(first_seen_at),
    })
}

fn raw(r: &rusqlite::Row<'_>) -> rusqlite::Result<Raw> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
    ))
}

/// An agent's events, newest detected first.
pub fn list(conn: &Connection, agent_id: &str) -> StoreResult<Vec<TamperRow>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM tamper_events WHERE agent_id = ?1 ORDER BY detected_at DESC, tamper_id"
        ))
        .map_err(db)?;
    let rows = stmt
        .query_map([agent_id], raw)
        .map_err(db)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db)?;
    rows.into_iter().map(decode).collect()
}

/// Acknowledges an open event once.
pub fn acknowledge(conn: &Connection, agent_id: &str, tamper_id: &str, ack: &TamperAck) -> StoreResult<TamperRow> {
    agent_exists(conn, agent_id)?;
    let found: Option<Raw> = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM tamper_events WHERE agent_id = ?1 AND tamper_id = ?2"
        ))
        .and_then(|mut s| s.query_row(params![agent_id, tamper_id], raw).optional())
        .map_err(db)?;
    let row = decode(found.ok_or_else(|| StoreError::NotFound {
        what: "tamper event",
        name: tamper_id.to_string(),
    })?)?;
    if row.acknowledged.is_some() {
        return Err(StoreError::Conflict {
            what: "acknowledgement of tamper event",
            name: tamper_id.to_string(),
        });
    }
    conn.prepare_cached(
        "UPDATE tamper_events SET acknowledged_at = ?3, acknowledged_by = ?4, ack_reason = ?5
         WHERE agent_id = ?1 AND tamper_id = ?2 AND acknowledged_at IS NULL",
    )
    .and_then(|mut s| s.execute(params![agent_id, tamper_id, ms(ack.at), ack.by, ack.reason]))
    .map_err(db)?;
    Ok(TamperRow {
        acknowledged: Some(ack.clone()),
        ..row
    })
}
