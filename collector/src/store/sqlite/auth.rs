//! Dashboard users, their sessions, and API keys. Only hashes are stored.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::agents::practice_id;
use super::codec::{db, from_ms, ms};
use crate::store::{Role, Scope, SessionRow, StoreError, StoreResult, UserRow};

pub fn add_user(
    conn: &Connection,
    username: &str,
    password_hash: &str,
    role: Role,
    practice: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<i64> {
    let pid = practice.map(|p| practice_id(conn, p)).transpose()?;
    let exists: Option<i64> = conn
        .query_row("SELECT id FROM users WHERE username = ?1", [username], |r| r.get(0))
        .optional()
        .map_err(db)?;
    if exists.is_some() {
        return Err(StoreError::Conflict {
            what: "user",
            name: username.to_string(),
        });
    }
    conn.execute(
        "INSERT INTO users (username, password_hash, role, practice_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![username, password_hash, role.as_str(), pid, ms(now)],
    )
    .map_err(db)?;
    Ok(conn.last_insert_rowid())
}

pub fn set_password(conn: &Connection, username: &str, password_hash: &str) -> StoreResult<()> {
    let n = conn
        .execute(
            "UPDATE users SET password_hash = ?1 WHERE username = ?2",
            params![password_hash, username],
        )
        .map_err(db)?;
    if n == 0 {
        return Err(StoreError::NotFound {
            what: "user",
            name: username.to_string(),
        });
    }
    // A new password ends every session of that user.
    conn.execute(
        "DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE username = ?1)",
        params![username],
    )
    .map_err(db)?;
    Ok(())
}

pub fn user_count(conn: &Connection) -> StoreResult<u64> {
    conn.query_row("SELECT COUNT(*) FROM users", [], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
        .map_err(db)
}

pub fn user(conn: &Connection, username: &str) -> StoreResult<Option<UserRow>> {
    conn.query_row(
        "SELECT id, username, password_hash, role, practice_id FROM users WHERE username = ?1",
        [username],
        |r| {
            let role: String = r.get(3)?;
            Ok(UserRow {
                id: r.get(0)?,
                username: r.get(1)?,
                password_hash: r.get(2)?,
                role: Role::parse(&role).unwrap_or(Role::PracticeManager),
                practice_id: r.get(4)?,
            })
        },
    )
    .optional()
    .map_err(db)
}

pub fn create_session(
    conn: &Connection,
    token_hash: &str,
    user_id: i64,
    csrf_token: &str,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> StoreResult<()> {
    let now = ms(now);
    conn.execute("DELETE FROM sessions WHERE expires_at <= ?1", [now])
        .map_err(db)?;
    conn.execute(
        "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![token_hash, user_id, csrf_token, now, ms(expires_at)],
    )
    .map_err(db)?;
    Ok(())
}

pub fn session(conn: &Connection, token_hash: &str, now: DateTime<Utc>) -> StoreResult<Option<SessionRow>> {
    conn.query_row(
        "SELECT u.id, u.username, u.role, u.practice_id, s.csrf_token, s.expires_at
         FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?1 AND s.expires_at > ?2",
        params![token_hash, ms(now)],
        |r| {
            let role: String = r.get(2)?;
            Ok(SessionRow {
                user_id: r.get(0)?,
                username: r.get(1)?,
                role: Role::parse(&role).unwrap_or(Role::PracticeManager),
                practice_id: r.get(3)?,
                csrf_token: r.get(4)?,
                expires_at: from_ms(r.get(5)?),
            })
        },
    )
    .optional()
    .map_err(db)
}

pub fn delete_session(conn: &Connection, token_hash: &str) -> StoreResult<()> {
    conn.execute("DELETE FROM sessions WHERE token_hash = ?1", [token_hash])
        .map(|_| ())
        .map_err(db)
}

pub fn create_api_key(
    conn: &Connection,
    key_hash: &str,
    role: Role,
    practice: Option<&str>,
    label: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let pid = practice.map(|p| practice_id(conn, p)).transpose()?;
    conn.execute(
        "INSERT INTO api_keys (key_hash, role, practice_id, label, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![key_hash, role.as_str(), pid, label, ms(now)],
    )
    .map_err(db)?;
    Ok(())
}

pub fn api_key(conn: &Connection, key_hash: &str) -> StoreResult<Option<Scope>> {
    conn.query_row(
        "SELECT role, practice_id FROM api_keys WHERE key_hash = ?1",
        [key_hash],
        |r| {
            let role: String = r.get(0)?;
            Ok(Scope {
                role: Role::parse(&role).unwrap_or(Role::PracticeManager),
                practice_id: r.get(1)?,
            })
        },
    )
    .optional()
    .map_err(db)
}
