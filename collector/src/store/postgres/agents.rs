//! Practices, sites, enrollment tokens, agents and heartbeats (PostgreSQL; mirrors
//! `store/sqlite/agents.rs`).

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::codec::{db, from_ms, ms};
use super::pool::Conn;
use crate::store::{
    AgentAuth, AgentRow, Enrolled, FindingCounts, HeartbeatPrior, NewAgent, NewToken, PracticeRow, Role, Scope,
    StoreError, StoreResult, TokenRefusal,
};

pub async fn ensure_practice(c: &Conn, name: &str, now: DateTime<Utc>) -> StoreResult<i64> {
    c.execute(
        "INSERT INTO practices (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        &[&name, &ms(now)],
    )
    .await
    .map_err(db)?;
    let row = c
        .query_one("SELECT id FROM practices WHERE name = $1", &[&name])
        .await
        .map_err(db)?;
    Ok(row.get(0))
}

pub async fn ensure_site(c: &Conn, practice: &str, site: &str, now: DateTime<Utc>) -> StoreResult<i64> {
    let pid = ensure_practice(c, practice, now).await?;
    c.execute(
        "INSERT INTO sites (practice_id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (practice_id, name) DO NOTHING",
        &[&pid, &site, &ms(now)],
    )
    .await
    .map_err(db)?;
    let row = c
        .query_one(
            "SELECT id FROM sites WHERE practice_id = $1 AND name = $2",
            &[&pid, &site],
        )
        .await
        .map_err(db)?;
    Ok(row.get(0))
}

pub async fn practice_id(c: &Conn, name: &str) -> StoreResult<i64> {
    c.query_opt("SELECT id FROM practices WHERE name = $1", &[&name])
        .await
        .map_err(db)?
        .map(|r| r.get(0))
        .ok_or_else(|| StoreError::NotFound {
            what: "practice",
            name: name.to_string(),
        })
}

/// The id of a practice and, when `site` is given, of that site of it. `NotFound` for either.
pub async fn practice_and_site(c: &Conn, practice: &str, site: Option<&str>) -> StoreResult<(i64, Option<i64>)> {
    let pid = practice_id(c, practice).await?;
    let Some(site) = site else {
        return Ok((pid, None));
    };
    let sid: Option<i64> = c
        .query_opt(
            "SELECT id FROM sites WHERE practice_id = $1 AND name = $2",
            &[&pid, &site],
        )
        .await
        .map_err(db)?
        .map(|r| r.get(0));
    let sid = sid.ok_or_else(|| StoreError::NotFound {
        what: "site",
        name: format!("{practice} / {site}"),
    })?;
    Ok((pid, Some(sid)))
}

pub async fn create_token(c: &Conn, token: &NewToken, now: DateTime<Utc>) -> StoreResult<()> {
    let NewToken {
        practice,
        site,
        token_hash,
        expires_at,
    } = token;
    let site_id = ensure_site(c, practice, site, now).await?;
    c.execute(
        "INSERT INTO enrollment_tokens (token_hash, site_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        &[token_hash, &site_id, &ms(now), &ms(*expires_at)],
    )
    .await
    .map_err(db)?;
    Ok(())
}

pub async fn enroll(c: &Conn, token_hash: &str, agent: &NewAgent, now: DateTime<Utc>) -> StoreResult<Enrolled> {
    // FOR UPDATE: a token is redeemed once even by units of work that do not hold the writer lock.
    let row = c
        .query_opt(
            "SELECT id, site_id, expires_at, used_at FROM enrollment_tokens WHERE token_hash = $1 FOR UPDATE",
            &[&token_hash],
        )
        .await
        .map_err(db)?;
    let Some(row) = row else {
        return Err(StoreError::Token(TokenRefusal::Unknown));
    };
    let (token_id, site_id, expires_at, used_at): (i64, i64, i64, Option<i64>) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    if used_at.is_some() {
        return Err(StoreError::Token(TokenRefusal::AlreadyUsed));
    }
    if expires_at <= ms(now) {
        return Err(StoreError::Token(TokenRefusal::Expired));
    }
    c.execute(
        "UPDATE enrollment_tokens SET used_at = $1, used_by_agent = $2 WHERE id = $3",
        &[&ms(now), &agent.agent_id, &token_id],
    )
    .await
    .map_err(db)?;
    c.execute(
        "INSERT INTO agents (id, site_id, hostname, os, agent_version, secret_hash, enrolled_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &agent.agent_id,
            &site_id,
            &agent.hostname,
            &agent.os,
            &agent.agent_version,
            &agent.secret_hash,
            &ms(now),
        ],
    )
    .await
    .map_err(db)?;
    let row = c
        .query_one(
            "SELECT p.name, s.name FROM sites s JOIN practices p ON p.id = s.practice_id WHERE s.id = $1",
            &[&site_id],
        )
        .await
        .map_err(db)?;
    Ok(Enrolled {
        practice: row.get(0),
        site: row.get(1),
    })
}

pub async fn auth(c: &Conn, agent_id: &str) -> StoreResult<Option<AgentAuth>> {
    let row = c
        .query_opt(
            "SELECT id, secret_hash, revoked FROM agents WHERE id = $1",
            &[&agent_id],
        )
        .await
        .map_err(db)?;
    Ok(row.map(|r| AgentAuth {
        agent_id: r.get(0),
        secret_hash: r.get(1),
        revoked: r.get::<_, i64>(2) != 0,
    }))
}

pub async fn heartbeat(
    c: &Conn,
    agent_id: &str,
    agent_version: &str,
    clock_skew: Option<chrono::Duration>,
    now: DateTime<Utc>,
) -> StoreResult<HeartbeatPrior> {
    let prior = c
        .query_opt(
            "SELECT clock_skew_ms, last_report_at IS NOT NULL FROM agents WHERE id = $1",
            &[&agent_id],
        )
        .await
        .map_err(db)?
        .map(|r| HeartbeatPrior {
            clock_skew_ms: r.get(0),
            reported: r.get(1),
        })
        .ok_or_else(|| StoreError::NotFound {
            what: "agent",
            name: agent_id.to_string(),
        })?;
    let skew = clock_skew.map(|d| d.num_milliseconds());
    let n = c
        .execute(
            "UPDATE agents SET last_seen_at = GREATEST(COALESCE(last_seen_at, 0), $1), agent_version = $2,
               clock_skew_ms = COALESCE($4, clock_skew_ms),
               clock_skew_at = CASE WHEN $4::BIGINT IS NULL THEN clock_skew_at ELSE $1 END
             WHERE id = $3",
            &[&ms(now), &agent_version, &agent_id, &skew],
        )
        .await
        .map_err(db)?;
    if n == 0 {
        return Err(StoreError::NotFound {
            what: "agent",
            name: agent_id.to_string(),
        });
    }
    Ok(prior)
}

/// Columns of an [`AgentRow`], read by [`agent_row`] (as SQLite's; the OS description from
/// the inventory's JSON with `->>`).
const AGENT_COLUMNS: &str = "a.id, a.hostname, a.os, a.agent_version, p.id, p.name, s.name, a.enrolled_at,
    a.last_seen_at, a.last_report_at, a.last_sequence,
    (SELECT COUNT(*) FROM findings f WHERE f.agent_id = a.id AND f.status = 'pass'),
    (SELECT COUNT(*) FROM findings f WHERE f.agent_id = a.id AND f.status = 'fail'),
    (SELECT COUNT(*) FROM findings f WHERE f.agent_id = a.id AND f.status = 'error'),
    (SELECT COUNT(*) FROM findings f WHERE f.agent_id = a.id AND f.status = 'not_applicable'),
    (SELECT COUNT(*) FROM findings f
      WHERE f.agent_id = a.id AND f.exception IS NOT NULL AND f.status IN ('fail', 'error')),
    NULLIF(TRIM(COALESCE(inv.data::jsonb ->> 'os_name', '') || ' ' || COALESCE(inv.data::jsonb ->> 'os_version', '')), ''),
    a.clock_skew_ms";

/// Agents with their site, practice and newest inventory.
const AGENT_TABLES: &str = "agents a JOIN sites s ON s.id = a.site_id JOIN practices p ON p.id = s.practice_id
    LEFT JOIN latest_observations inv
      ON inv.agent_id = a.id AND inv.kind = 'inventory' AND inv.subject = 'host' AND inv.status = 'ok'";

fn agent_row(r: &Row) -> AgentRow {
    let count = |i: usize| -> u32 { u32::try_from(r.get::<_, i64>(i)).unwrap_or(0) };
    AgentRow {
        agent_id: r.get(0),
        hostname: r.get(1),
        os: r.get(2),
        os_description: r.get(16),
        agent_version: r.get(3),
        practice_id: r.get(4),
        practice: r.get(5),
        site: r.get(6),
        enrolled_at: from_ms(r.get(7)),
        last_seen_at: r.get::<_, Option<i64>>(8).map(from_ms),
        last_report_at: r.get::<_, Option<i64>>(9).map(from_ms),
        last_sequence: r.get::<_, i64>(10).max(0) as u64,
        clock_skew_ms: r.get(17),
        findings: FindingCounts {
            pass: count(11),
            fail: count(12),
            error: count(13),
            not_applicable: count(14),
            accepted: count(15),
        },
    }
}

/// `NotFound` unless the agent exists and `scope` sees its practice.
pub async fn check_visible(c: &Conn, scope: &Scope, agent_id: &str) -> StoreResult<()> {
    let practice: Option<i64> = c
        .query_opt(
            "SELECT s.practice_id FROM agents a JOIN sites s ON s.id = a.site_id WHERE a.id = $1",
            &[&agent_id],
        )
        .await
        .map_err(db)?
        .map(|r| r.get(0));
    match practice {
        Some(p) if scope.sees(p) => Ok(()),
        _ => Err(StoreError::NotFound {
            what: "agent",
            name: agent_id.to_string(),
        }),
    }
}

/// A `WHERE` clause on `p.id` (bound as `$1`) limiting rows to what `scope` sees.
pub fn scope_clause(scope: &Scope) -> (&'static str, Option<i64>) {
    match scope.role {
        Role::PracticeManager => ("p.id = $1", Some(scope.practice_id.unwrap_or(-1))),
        Role::Admin | Role::Technician => ("($1::BIGINT IS NULL OR 1 = 1)", None),
    }
}

pub async fn practices(c: &Conn, scope: &Scope) -> StoreResult<Vec<PracticeRow>> {
    let (clause, arg) = scope_clause(scope);
    let sql = format!(
        "SELECT p.id, p.name, p.created_at, s.name FROM practices p LEFT JOIN sites s ON s.practice_id = p.id
         WHERE {clause} ORDER BY p.name, s.name"
    );
    let rows = c.query(&sql, &[&arg]).await.map_err(db)?;
    let mut out: Vec<PracticeRow> = Vec::new();
    for row in rows {
        let (id, name, created, site): (i64, String, i64, Option<String>) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if out.last().map(|p| p.id) != Some(id) {
            out.push(PracticeRow {
                id,
                name,
                sites: Vec::new(),
                created_at: from_ms(created),
            });
        }
        if let (Some(site), Some(p)) = (site, out.last_mut()) {
            p.sites.push(site);
        }
    }
    Ok(out)
}

pub async fn list(c: &Conn, scope: &Scope) -> StoreResult<Vec<AgentRow>> {
    let (clause, arg) = scope_clause(scope);
    let sql =
        format!("SELECT {AGENT_COLUMNS} FROM {AGENT_TABLES} WHERE {clause} ORDER BY p.name, s.name, a.hostname, a.id");
    let rows = c.query(&sql, &[&arg]).await.map_err(db)?;
    Ok(rows.iter().map(agent_row).collect())
}

pub async fn one(c: &Conn, scope: &Scope, agent_id: &str) -> StoreResult<AgentRow> {
    check_visible(c, scope, agent_id).await?;
    let row = c
        .query_one(
            &format!("SELECT {AGENT_COLUMNS} FROM {AGENT_TABLES} WHERE a.id = $1"),
            &[&agent_id],
        )
        .await
        .map_err(db)?;
    Ok(agent_row(&row))
}

/// Every agent's identity and last heartbeat, for the alert engine's tick (issue 12): one
/// plain join, none of [`list`]'s per-agent finding counts.
pub async fn presence(c: &Conn) -> StoreResult<Vec<crate::store::AgentPresence>> {
    c.query(
        "SELECT a.id, a.hostname, p.name, s.name, a.enrolled_at, a.last_seen_at
         FROM agents a JOIN sites s ON s.id = a.site_id JOIN practices p ON p.id = s.practice_id",
        &[],
    )
    .await
    .map_err(db)?
    .iter()
    .map(|r| {
        Ok(crate::store::AgentPresence {
            agent_id: r.try_get(0).map_err(db)?,
            hostname: r.try_get(1).map_err(db)?,
            practice: r.try_get(2).map_err(db)?,
            site: r.try_get(3).map_err(db)?,
            enrolled_at: from_ms(r.try_get(4).map_err(db)?),
            last_seen_at: r.try_get::<_, Option<i64>>(5).map_err(db)?.map(from_ms),
        })
    })
    .collect()
}
