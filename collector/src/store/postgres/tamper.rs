//! PostgreSQL: tamper events of agents' watched logs and their acknowledgements (issue 11 on
//! issue 17's backend; the same functions as `store/sqlite/tamper.rs`).

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::codec::{db, from_json, from_ms, ms, to_json};
use super::pool::Conn;
use crate::store::{StoreError, StoreResult, TamperAck, TamperRow, TamperSeen};

const COLUMNS: &str = "agent_id, tamper_id, path, kind, detected_at, first_seen_at, event, acknowledged_at, \
                       acknowledged_by, ack_reason";

async fn agent_exists(c: &Conn, agent_id: &str) -> StoreResult<()> {
    c.query_opt("SELECT 1 FROM agents WHERE id = $1", &[&agent_id])
        .await
        .map_err(db)?
        .map(|_| ())
        .ok_or_else(|| StoreError::NotFound {
            what: "agent",
            name: agent_id.to_string(),
        })
}

/// Records events not recorded yet.
pub async fn note(c: &Conn, agent_id: &str, seen: &[TamperSeen], now: DateTime<Utc>) -> StoreResult<()> {
    agent_exists(c, agent_id).await?;
    if seen.is_empty() {
        return Ok(());
    }
    for t in seen {
        let event = to_json(&t.event)?;
        c.execute(
            "INSERT INTO tamper_events (agent_id, tamper_id, path, kind, detected_at, first_seen_at, event)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (agent_id, tamper_id) DO NOTHING",
            &[
                &agent_id,
                &t.tamper_id,
                &t.path,
                &t.kind,
                &ms(t.detected_at),
                &ms(now),
                &event,
            ],
        )
        .await
        .map_err(db)?;
    }
    Ok(())
}

fn decode(r: &Row) -> StoreResult<TamperRow> {
    let event: String = r.try_get(6).map_err(db)?;
    let ack_at: Option<i64> = r.try_get(7).map_err(db)?;
    let ack_by: Option<String> = r.try_get(8).map_err(db)?;
    let reason: Option<String> = r.try_get(9).map_err(db)?;
    Ok(TamperRow {
        agent_id: r.try_get(0).map_err(db)?,
        tamper_id: r.try_get(1).map_err(db)?,
        path: r.try_get(2).map_err(db)?,
        kind: r.try_get(3).map_err(db)?,
        detected_at: from_ms(r.try_get(4).map_err(db)?),
        first_seen_at: from_ms(r.try_get(5).map_err(db)?),
        event: from_json("tamper event", &event)?,
        acknowledged: ack_at.map(|at| TamperAck {
            by: ack_by.unwrap_or_default(),
            at: from_ms(at),
            reason: reason.unwrap_or_default(),
        }),
    })
}

/// An agent's events, newest detected first.
pub async fn list(c: &Conn, agent_id: &str) -> StoreResult<Vec<TamperRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM tamper_events WHERE agent_id = $1 ORDER BY detected_at DESC, tamper_id COLLATE \"C\""
    );
    c.query(&sql, &[&agent_id])
        .await
        .map_err(db)?
        .iter()
        .map(decode)
        .collect()
}

/// Acknowledges an open event once.
pub async fn acknowledge(c: &Conn, agent_id: &str, tamper_id: &str, ack: &TamperAck) -> StoreResult<TamperRow> {
    agent_exists(c, agent_id).await?;
    let sql = format!("SELECT {COLUMNS} FROM tamper_events WHERE agent_id = $1 AND tamper_id = $2 FOR UPDATE");
    let found = c.query_opt(&sql, &[&agent_id, &tamper_id]).await.map_err(db)?;
    let row = decode(&found.ok_or_else(|| StoreError::NotFound {
        what: "tamper event",
        name: tamper_id.to_string(),
    })?)?;
    if row.acknowledged.is_some() {
        return Err(StoreError::Conflict {
            what: "acknowledgement of tamper event",
            name: tamper_id.to_string(),
        });
    }
    c.execute(
        "UPDATE tamper_events SET acknowledged_at = $3, acknowledged_by = $4, ack_reason = $5
         WHERE agent_id = $1 AND tamper_id = $2 AND acknowledged_at IS NULL",
        &[&agent_id, &tamper_id, &ms(ack.at), &ack.by, &ack.reason],
    )
    .await
    .map_err(db)?;
    Ok(TamperRow {
        acknowledged: Some(ack.clone()),
        ..row
    })
}
