//! The collector's own audit log of who did what (PostgreSQL; mirrors `store/sqlite/audit.rs`).

use chrono::{DateTime, Utc};

use super::codec::{db, from_ms, ms};
use super::pool::Conn;
use crate::store::{AuditEntry, StoreResult};

pub async fn append(c: &Conn, actor: &str, action: &str, detail: &str, now: DateTime<Utc>) -> StoreResult<()> {
    c.execute(
        "INSERT INTO audit_log (at, actor, action, detail) VALUES ($1, $2, $3, $4)",
        &[&ms(now), &actor, &action, &detail],
    )
    .await
    .map(|_| ())
    .map_err(db)
}

pub async fn entries(c: &Conn, limit: u32) -> StoreResult<Vec<AuditEntry>> {
    let rows = c
        .query(
            "SELECT at, actor, action, detail FROM audit_log ORDER BY id DESC LIMIT $1",
            &[&i64::from(limit)],
        )
        .await
        .map_err(db)?;
    Ok(rows
        .iter()
        .map(|r| AuditEntry {
            at: from_ms(r.get(0)),
            actor: r.get(1),
            action: r.get(2),
            detail: r.get(3),
        })
        .collect())
}
