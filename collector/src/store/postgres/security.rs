//! PostgreSQL: revocation of agents, API keys and users, and API-key expiry (issue 15 on issue
//! 17's backend; the same functions as `store/sqlite/security.rs`).

use chrono::{DateTime, Utc};
use tokio_postgres::types::{FromSqlOwned, ToSql};

use super::agents::practice_id;
use super::codec::{db, from_ms, ms, out_of_range};
use super::pool::Conn;
use crate::store::{ApiKeyGrant, ApiKeyRow, Role, Scope, StoreError, StoreResult};

/// The first column of the row `sql` finds, if any.
async fn first<T: FromSqlOwned>(c: &Conn, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<Option<T>> {
    c.query_opt(sql, params)
        .await
        .map_err(db)?
        .map(|r| r.try_get(0))
        .transpose()
        .map_err(db)
}

pub async fn revoke_agent(c: &Conn, agent_id: &str, now: DateTime<Utc>) -> StoreResult<bool> {
    let was: Option<i64> = first(c, "SELECT revoked FROM agents WHERE id = $1", &[&agent_id]).await?;
    match was {
        None => Err(StoreError::NotFound {
            what: "agent",
            name: agent_id.to_string(),
        }),
        Some(1) => Ok(false),
        Some(_) => {
            c.execute(
                "UPDATE agents SET revoked = 1, revoked_at = $2 WHERE id = $1",
                &[&agent_id, &ms(now)],
            )
            .await
            .map_err(db)?;
            Ok(true)
        }
    }
}

pub async fn create_api_key(
    c: &Conn,
    key_hash: &str,
    role: Role,
    practice: Option<&str>,
    label: &str,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> StoreResult<i64> {
    let pid = match practice {
        Some(p) => Some(practice_id(c, p).await?),
        None => None,
    };
    c.query_one(
        "INSERT INTO api_keys (key_hash, role, practice_id, label, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        &[&key_hash, &role.as_str(), &pid, &label, &ms(now), &expires_at.map(ms)],
    )
    .await
    .map_err(db)?
    .try_get(0)
    .map_err(db)
}

pub async fn revoke_api_key(c: &Conn, id: i64, now: DateTime<Utc>) -> StoreResult<bool> {
    let was: Option<Option<i64>> = first(c, "SELECT revoked_at FROM api_keys WHERE id = $1", &[&id]).await?;
    match was {
        None => Err(StoreError::NotFound {
            what: "API key",
            name: id.to_string(),
        }),
        Some(Some(_)) => Ok(false),
        Some(None) => {
            c.execute("UPDATE api_keys SET revoked_at = $2 WHERE id = $1", &[&id, &ms(now)])
                .await
                .map_err(db)?;
            Ok(true)
        }
    }
}

pub async fn remove_user(c: &Conn, username: &str) -> StoreResult<()> {
    let id: Option<i64> = first(c, "SELECT id FROM users WHERE username = $1", &[&username]).await?;
    let Some(id) = id else {
        return Err(StoreError::NotFound {
            what: "user",
            name: username.to_string(),
        });
    };
    c.execute("DELETE FROM sessions WHERE user_id = $1", &[&id])
        .await
        .map_err(db)?;
    c.execute("DELETE FROM users WHERE id = $1", &[&id]).await.map_err(db)?;
    Ok(())
}

pub async fn api_keys(c: &Conn) -> StoreResult<Vec<ApiKeyRow>> {
    let rows = c
        .query(
            "SELECT k.id, k.label, k.role, p.name, k.created_at, k.expires_at, k.revoked_at
             FROM api_keys k LEFT JOIN practices p ON p.id = k.practice_id ORDER BY k.id",
            &[],
        )
        .await
        .map_err(db)?;
    rows.iter()
        .map(|r| {
            let role: String = r.try_get(2).map_err(db)?;
            Ok(ApiKeyRow {
                id: r.try_get(0).map_err(db)?,
                label: r.try_get(1).map_err(db)?,
                role: Role::parse(&role).unwrap_or(Role::PracticeManager),
                practice: r.try_get(3).map_err(db)?,
                created_at: from_ms(r.try_get(4).map_err(db)?),
                expires_at: r.try_get::<_, Option<i64>>(5).map_err(db)?.map(from_ms),
                revoked_at: r.try_get::<_, Option<i64>>(6).map_err(db)?.map(from_ms),
            })
        })
        .collect()
}

/// The scope of a key that is neither revoked nor expired at `now`.
pub async fn api_key_valid(c: &Conn, key_hash: &str, now: DateTime<Utc>) -> StoreResult<Option<ApiKeyGrant>> {
    let row = c
        .query_opt(
            "SELECT role, practice_id, label FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL
             AND (expires_at IS NULL OR expires_at > $2)",
            &[&key_hash, &ms(now)],
        )
        .await
        .map_err(db)?;
    row.map(|r| {
        let role: String = r.try_get(0).map_err(db)?;
        Ok(ApiKeyGrant {
            scope: Scope {
                role: Role::parse(&role).unwrap_or(Role::PracticeManager),
                practice_id: r.try_get(1).map_err(db)?,
            },
            label: r.try_get(2).map_err(db)?,
        })
    })
    .transpose()
}

pub async fn admin_count(c: &Conn) -> StoreResult<u64> {
    let n: i64 = c
        .query_one("SELECT COUNT(*) FROM users WHERE role = 'admin'", &[])
        .await
        .map_err(db)?
        .try_get(0)
        .map_err(db)?;
    u64::try_from(n).map_err(|_| out_of_range("admin count", n))
}
