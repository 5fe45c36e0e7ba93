//! Revocation of agents, API keys and users, and API-key expiry (issue 15).

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::agents::practice_id;
use super::codec::{db, from_ms, ms};
use crate::store::{ApiKeyGrant, ApiKeyRow, Role, Scope, StoreError, StoreResult};

pub fn revoke_agent(conn: &Connection, agent_id: &str, now: DateTime<Utc>) -> StoreResult<bool> {
    let was: Option<i64> = conn
        .query_row("SELECT revoked FROM agents WHERE id = ?1", [agent_id], |r| r.get(0))
        .optional()
        .map_err(db)?;
    match was {
        None => Err(StoreError::NotFound {
            what: "agent",
            name: agent_id.to_string(),
        }),
        Some(1) => Ok(false),
        Some(_) => {
            conn.execute(
                "UPDATE agents SET revoked = 1, revoked_at = ?2 WHERE id = ?1",
                params![agent_id, ms(now)],
            )
            .map_err(db)?;
            Ok(true)
        }
    }
}

pub fn create_api_key(
    conn: &Connection,
    key_hash: &str,
    role: Role,
    practice: Option<&str>,
    label: &str,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> StoreResult<i64> {
    let pid = practice.map(|p| practice_id(conn, p)).transpose()?;
    conn.execute(
        "INSERT INTO api_keys (key_hash, role, practice_id, label, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![key_hash, role.as_str(), pid, label, ms(now), expires_at.map(ms)],
    )
    .map_err(db)?;
    Ok(conn.last_insert_rowid())
}

pub fn revoke_api_key(conn: &Connection, id: i64, now: DateTime<Utc>) -> StoreResult<bool> {
    let was: Option<Option<i64>> = conn
        .query_row("SELECT revoked_at FROM api_keys WHERE id = ?1", [id], |r| r.get(0))
        .optional()
        .map_err(db)?;
    match was {
        None => Err(StoreError::NotFound {
            what: "API key",
            name: id.to_string(),
        }),
        Some(Some(_)) => Ok(false),
        Some(None) => {
            conn.execute(
                "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1",
                params![id, ms(now)],
            )
            .map_err(db)?;
            Ok(true)
        }
    }
}

pub fn remove_user(conn: &Connection, username: &str) -> StoreResult<()> {
    let id: Option<i64> = conn
        .query_row("SELECT id FROM users WHERE username = ?1", [username], |r| r.get(0))
        .optional()
        .map_err(db)?;
    let Some(id) = id else {
        return Err(StoreError::NotFound {
            what: "user",
            name: username.to_string(),
        });
    };
    conn.execute("DELETE FROM sessions WHERE user_id = ?1", [id])
        .map_err(db)?;
    conn.execute("DELETE FROM users WHERE id = ?1", [id]).map_err(db)?;
    Ok(())
}

pub fn api_keys(conn: &Connection) -> StoreResult<Vec<ApiKeyRow>> {
    let mut s = conn
        .prepare(
            "SELECT k.id, k.label, k.role, p.name, k.created_at, k.expires_at, k.revoked_at
             FROM api_keys k LEFT JOIN practices p ON p.id = k.practice_id ORDER BY k.id",
        )
        .map_err(db)?;
    let rows = s
        .query_map([], |r| {
            let role: String = r.get(2)?;
            Ok(ApiKeyRow {
                id: r.get(0)?,
                label: r.get(1)?,
                role: Role::parse(&role).unwrap_or(Role::PracticeManager),
                practice: r.get(3)?,
                created_at: from_ms(r.get(4)?),
                expires_at: r.get::<_, Option<i64>>(5)?.map(from_ms),
                revoked_at: r.get::<_, Option<i64>>(6)?.map(from_ms),
            })
        })
        .map_err(db)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db)
}

/// The scope of a key that is neither revoked nor expired at `now`.
pub fn api_key_valid(conn: &Connection, key_hash: &str, now: DateTime<Utc>) -> StoreResult<Option<ApiKeyGrant>> {
    conn.query_row(
        "SELECT role, practice_id, label FROM api_keys WHERE key_hash = ?1 AND revoked_at IS NULL
         AND (expires_at IS NULL OR expires_at > ?2)",
        params![key_hash, ms(now)],
        |r| {
            let role: String = r.get(0)?;
            Ok(ApiKeyGrant {
                scope: Scope {
                    role: Role::parse(&role).unwrap_or(Role::PracticeManager),
                    practice_id: r.get(1)?,
                },
                label: r.get(2)?,
            })
        },
    )
    .optional()
    .map_err(db)
}

pub fn admin_count(conn: &Connection) -> StoreResult<u64> {
    conn.query_row("SELECT COUNT(*) FROM users WHERE role = 'admin'", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n as u64)
    .map_err(db)
}
