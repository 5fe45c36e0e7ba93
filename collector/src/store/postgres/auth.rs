//! Dashboard users, their sessions, and API keys; only hashes are stored (PostgreSQL; mirrors
//! `store/sqlite/auth.rs`).

use chrono::{DateTime, Utc};

use super::agents::practice_id;
use super::codec::{db, from_ms, ms};
use super::pool::Conn;
use crate::store::{Role, Scope, SessionRow, StoreError, StoreResult, UserRow};

pub async fn add_user(
    c: &Conn,
    username: &str,
    password_hash: &str,
    role: Role,
    practice: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<i64> {
    let pid = match practice {
        Some(p) => Some(practice_id(c, p).await?),
        None => None,
    };
    let exists = c
        .query_opt("SELECT id FROM users WHERE username = $1", &[&username])
        .await
        .map_err(db)?;
    if exists.is_some() {
        return Err(StoreError::Conflict {
            what: "user",
            name: username.to_string(),
        });
    }
    let row = c
        .query_one(
            "INSERT INTO users (username, password_hash, role, practice_id, created_at) VALUES ($1, $2, $3, $4, $5)
             RETURNING id",
            &[&username, &password_hash, &role.as_str(), &pid, &ms(now)],
        )
        .await
        .map_err(db)?;
    Ok(row.get(0))
}

pub async fn set_password(c: &Conn, username: &str, password_hash: &str) -> StoreResult<()> {
    let n = c
        .execute(
            "UPDATE users SET password_hash = $1 WHERE username = $2",
            &[&password_hash, &username],
        )
        .await
        .map_err(db)?;
    if n == 0 {
        return Err(StoreError::NotFound {
            what: "user",
            name: username.to_string(),
        });
    }
    // A new password ends every session of that user.
    c.execute(
        "DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE username = $1)",
        &[&username],
    )
    .await
    .map_err(db)?;
    Ok(())
}

pub async fn user_count(c: &Conn) -> StoreResult<u64> {
    let n: i64 = c.query_one("SELECT COUNT(*) FROM users", &[]).await.map_err(db)?.get(0);
    Ok(n.max(0) as u64)
}

pub async fn user(c: &Conn, username: &str) -> StoreResult<Option<UserRow>> {
    let row = c
        .query_opt(
            "SELECT id, username, password_hash, role, practice_id FROM users WHERE username = $1",
            &[&username],
        )
        .await
        .map_err(db)?;
    Ok(row.map(|r| UserRow {
        id: r.get(0),
        username: r.get(1),
        password_hash: r.get(2),
        role: Role::parse(r.get(3)).unwrap_or(Role::PracticeManager),
        practice_id: r.get(4),
    }))
}

pub async fn create_session(
    c: &Conn,
    token_hash: &str,
    user_id: i64,
    csrf_token: &str,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> StoreResult<()> {
    let now = ms(now);
    c.execute("DELETE FROM sessions WHERE expires_at <= $1", &[&now])
        .await
        .map_err(db)?;
    c.execute(
        "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        &[&token_hash, &user_id, &csrf_token, &now, &ms(expires_at)],
    )
    .await
    .map_err(db)?;
    Ok(())
}

pub async fn session(c: &Conn, token_hash: &str, now: DateTime<Utc>) -> StoreResult<Option<SessionRow>> {
    let row = c
        .query_opt(
            "SELECT u.id, u.username, u.role, u.practice_id, s.csrf_token, s.expires_at
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1 AND s.expires_at > $2",
            &[&token_hash, &ms(now)],
        )
        .await
        .map_err(db)?;
    Ok(row.map(|r| SessionRow {
        user_id: r.get(0),
        username: r.get(1),
        role: Role::parse(r.get(2)).unwrap_or(Role::PracticeManager),
        practice_id: r.get(3),
        csrf_token: r.get(4),
        expires_at: from_ms(r.get(5)),
    }))
}

pub async fn delete_session(c: &Conn, token_hash: &str) -> StoreResult<()> {
    c.execute("DELETE FROM sessions WHERE token_hash = $1", &[&token_hash])
        .await
        .map(|_| ())
        .map_err(db)
}

pub async fn create_api_key(
    c: &Conn,
    key_hash: &str,
    role: Role,
    practice: Option<&str>,
    label: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let pid = match practice {
        Some(p) => Some(practice_id(c, p).await?),
        None => None,
    };
    c.execute(
        "INSERT INTO api_keys (key_hash, role, practice_id, label, created_at) VALUES ($1, $2, $3, $4, $5)",
        &[&key_hash, &role.as_str(), &pid, &label, &ms(now)],
    )
    .await
    .map_err(db)?;
    Ok(())
}

pub async fn api_key(c: &Conn, key_hash: &str) -> StoreResult<Option<Scope>> {
    let row = c
        .query_opt(
            "SELECT role, practice_id FROM api_keys WHERE key_hash = $1",
            &[&key_hash],
        )
        .await
        .map_err(db)?;
    Ok(row.map(|r| Scope {
        role: Role::parse(r.get(0)).unwrap_or(Role::PracticeManager),
        practice_id: r.get(1),
    }))
}
