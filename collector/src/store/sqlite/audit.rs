//! The collector's own audit log of who did what.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use super::codec::{db, from_ms, ms};
use crate::store::{AuditEntry, StoreResult};

pub fn append(conn: &Connection, actor: &str, action: &str, detail: &str, now: DateTime<Utc>) -> StoreResult<()> {
    conn.prepare_cached("INSERT INTO audit_log (at, actor, action, detail) VALUES (?1, ?2, ?3, ?4)")
        .and_then(|mut s| s.execute(params![ms(now), actor, action, detail]))
        .map(|_| ())
        .map_err(db)
}

pub fn entries(conn: &Connection, limit: u32) -> StoreResult<Vec<AuditEntry>> {
    let mut stmt = conn
        .prepare_cached("SELECT at, actor, action, detail FROM audit_log ORDER BY id DESC LIMIT ?1")
        .map_err(db)?;
    let rows = stmt
        .query_map([limit], |r| {
            Ok(AuditEntry {
                at: from_ms(r.get(0)?),
                actor: r.get(1)?,
                action: r.get(2)?,
                detail: r.get(3)?,
            })
        })
        .map_err(db)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db)
}
