//! Practices, sites, enrollment tokens, agents and heartbeats.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::codec::{db, from_ms, ms};
use crate::store::{
    AgentAuth, AgentRow, Enrolled, FindingCounts, HeartbeatPrior, NewAgent, NewToken, PracticeRow, Role, Scope,
    StoreError, StoreResult, TokenRefusal,
};

pub fn ensure_practice(conn: &Connection, name: &str, now: DateTime<Utc>) -> StoreResult<i64> {
    conn.prepare_cached("INSERT INTO practices (name, created_at) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING")
        .and_then(|mut s| s.execute(params![name, ms(now)]))
        .map_err(db)?;
    conn.query_row("SELECT id FROM practices WHERE name = ?1", [name], |r| r.get(0))
        .map_err(db)
}

pub fn ensure_site(conn: &Connection, practice: &str, site: &str, now: DateTime<Utc>) -> StoreResult<i64> {
    let pid = ensure_practice(conn, practice, now)?;
    conn.execute(
        "INSERT INTO sites (practice_id, name, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (practice_id, name) DO NOTHING",
        params![pid, site, ms(now)],
    )
    .map_err(db)?;
    conn.query_row(
        "SELECT id FROM sites WHERE practice_id = ?1 AND name = ?2",
        params![pid, site],
        |r| r.get(0),
    )
    .map_err(db)
}

pub fn practice_id(conn: &Connection, name: &str) -> StoreResult<i64> {
    conn.query_row("SELECT id FROM practices WHERE name = ?1", [name], |r| r.get(0))
        .optional()
        .map_err(db)?
        .ok_or_else(|| StoreError::NotFound {
            what: "practice",
            name: name.to_string(),
        })
}

/// The id of a practice and, when `site` is given, of that site of it. `NotFound` for either.
pub fn practice_and_site(conn: &Connection, practice: &str, site: Option<&str>) -> StoreResult<(i64, Option<i64>)> {
    let pid = practice_id(conn, practice)?;
    let Some(site) = site else {
        return Ok((pid, None));
    };
    let sid: Option<i64> = conn
        .query_row(
            "SELECT id FROM sites WHERE practice_id = ?1 AND name = ?2",
            params![pid, site],
            |r| r.get(0),
        )
        .optional()
        .map_err(db)?;
    let sid = sid.ok_or_else(|| StoreError::NotFound {
        what: "site",
        name: format!("{practice} / {site}"),
    })?;
    Ok((pid, Some(sid)))
}

pub fn create_token(conn: &Connection, token: &NewToken, now: DateTime<Utc>) -> StoreResult<()> {
    let NewToken {
        practice,
        site,
        token_hash,
        expires_at,
    } = token;
    let site_id = ensure_site(conn, practice, site, now)?;
    conn.execute(
        "INSERT INTO enrollment_tokens (token_hash, site_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
        params![token_hash, site_id, ms(now), ms(*expires_at)],
    )
    .map_err(db)?;
    Ok(())
}

pub fn enroll(conn: &Connection, token_hash: &str, agent: &NewAgent, now: DateTime<Utc>) -> StoreResult<Enrolled> {
    let row: Option<(i64, i64, i64, Option<i64>)> = conn
        .query_row(
            "SELECT id, site_id, expires_at, used_at FROM enrollment_tokens WHERE token_hash = ?1",
            [token_hash],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()
        .map_err(db)?;
    let Some((token_id, site_id, expires_at, used_at)) = row else {
        return Err(StoreError::Token(TokenRefusal::Unknown));
    };
    if used_at.is_some() {
        return Err(StoreError::Token(TokenRefusal::AlreadyUsed));
    }
    if expires_at <= ms(now) {
        return Err(StoreError::Token(TokenRefusal::Expired));
    }
    conn.execute(
        "UPDATE enrollment_tokens SET used_at = ?1, used_by_agent = ?2 WHERE id = ?3",
        params![ms(now), agent.agent_id, token_id],
    )
    .map_err(db)?;
    conn.execute(
        "INSERT INTO agents (id, site_id, hostname, os, agent_version, secret_hash, enrolled_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            agent.agent_id,
            site_id,
            agent.hostname,
            agent.os,
            agent.agent_version,
            agent.secret_hash,
            ms(now)
        ],
    )
    .map_err(db)?;
    conn.query_row(
        "SELECT p.name, s.name FROM sites s JOIN practices p ON p.id = s.practice_id WHERE s.id = ?1",
        [site_id],
        |r| {
            Ok(Enrolled {
                practice: r.get(0)?,
                site: r.get(1)?,
            })
        },
    )
    .map_err(db)
}

pub fn auth(conn: &Connection, agent_id: &str) -> StoreResult<Option<AgentAuth>> {
    conn.prepare_cached("SELECT id, secret_hash, revoked FROM agents WHERE id = ?1")
        .and_then(|mut s| {
            s.query_row([agent_id], |r| {
                Ok(AgentAuth {
                    agent_id: r.get(0)?,
                    secret_hash: r.get(1)?,
                    revoked: r.get::<_, i64>(2)? != 0,
                })
            })
            .optional()
        })
        .map_err(db)
}

pub fn heartbeat(
    conn: &Connection,
    agent_id: &str,
    agent_version: &str,
    clock_skew: Option<chrono::Duration>,
    now: DateTime<Utc>,
) -> StoreResult<HeartbeatPrior> {
    let prior = conn
        .prepare_cached("SELECT clock_skew_ms, last_report_at IS NOT NULL FROM agents WHERE id = ?1")
        .and_then(|mut s| {
            s.query_row([agent_id], |r| {
                Ok(HeartbeatPrior {
                    clock_skew_ms: r.get(0)?,
                    reported: r.get(1)?,
                })
            })
            .optional()
        })
        .map_err(db)?
        .ok_or_else(|| StoreError::NotFound {
            what: "agent",
            name: agent_id.to_string(),
        })?;
    let skew = clock_skew.map(|d| d.num_milliseconds());
    let n = conn
        .prepare_cached(
            "UPDATE agents SET last_seen_at = MAX(COALESCE(last_seen_at, 0), ?1), agent_version = ?2,
               clock_skew_ms = COALESCE(?4, clock_skew_ms),
               clock_skew_at = CASE WHEN ?4 IS NULL THEN clock_skew_at ELSE ?1 END
             WHERE id = ?3",
        )
        .and_then(|mut s| s.execute(params![ms(now), agent_version, agent_id, skew]))
        .map_err(db)?;
    if n == 0 {
        return Err(StoreError::NotFound {
            what: "agent",
            name: agent_id.to_string(),
        });
    }
    Ok(prior)
}

/// Columns of an [`AgentRow`], read by [`agent_row`]. The finding counts are `finding_counts`,
/// kept by triggers on `findings` (migration 0011), so reading the fleet never counts its
/// findings again.
const AGENT_COLUMNS: &str = "a.id, a.hostname, a.os, a.agent_version, p.id, p.name, s.name, a.enrolled_at,
    a.last_seen_at, a.last_report_at, a.last_sequence,
    COALESCE(fc.pass, 0), COALESCE(fc.fail, 0), COALESCE(fc.error, 0), COALESCE(fc.not_applicable, 0),
    COALESCE(fc.accepted, 0),
    NULLIF(TRIM(COALESCE(json_extract(inv.data, '$.os_name'), '') || ' ' || COALESCE(json_extract(inv.data, '$.os_version'), '')), ''),
    a.clock_skew_ms";

/// Agents with their site, practice and newest inventory, for `SELECT {AGENT_COLUMNS} FROM {AGENT_TABLES}`.
const AGENT_TABLES: &str = "agents a JOIN sites s ON s.id = a.site_id JOIN practices p ON p.id = s.practice_id
    LEFT JOIN finding_counts fc ON fc.agent_id = a.id
    LEFT JOIN latest_observations inv
      ON inv.agent_id = a.id AND inv.kind = 'inventory' AND inv.subject = 'host' AND inv.status = 'ok'";

fn agent_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AgentRow> {
    let count = |i: usize| -> rusqlite::Result<u32> { Ok(u32::try_from(r.get::<_, i64>(i)?).unwrap_or(0)) };
    Ok(AgentRow {
        agent_id: r.get(0)?,
        hostname: r.get(1)?,
        os: r.get(2)?,
        os_description: r.get(16)?,
        agent_version: r.get(3)?,
        practice_id: r.get(4)?,
        practice: r.get(5)?,
        site: r.get(6)?,
        enrolled_at: from_ms(r.get(7)?),
        last_seen_at: r.get::<_, Option<i64>>(8)?.map(from_ms),
        last_report_at: r.get::<_, Option<i64>>(9)?.map(from_ms),
        last_sequence: r.get::<_, i64>(10)?.max(0) as u64,
        clock_skew_ms: r.get(17)?,
        findings: FindingCounts {
            pass: count(11)?,
            fail: count(12)?,
            error: count(13)?,
            not_applicable: count(14)?,
            accepted: count(15)?,
        },
    })
}

/// `NotFound` unless the agent exists and `scope` sees its practice.
pub fn check_visible(conn: &Connection, scope: &Scope, agent_id: &str) -> StoreResult<()> {
    let practice: Option<i64> = conn
        .prepare_cached("SELECT s.practice_id FROM agents a JOIN sites s ON s.id = a.site_id WHERE a.id = ?1")
        .and_then(|mut s| s.query_row([agent_id], |r| r.get(0)).optional())
        .map_err(db)?;
    match practice {
        Some(p) if scope.sees(p) => Ok(()),
        _ => Err(StoreError::NotFound {
            what: "agent",
            name: agent_id.to_string(),
        }),
    }
}

/// A `WHERE` clause on `p.id` (bound as `?1`) limiting rows to what `scope` sees.
pub fn scope_clause(scope: &Scope) -> (&'static str, Option<i64>) {
    match scope.role {
        Role::PracticeManager => ("p.id = ?1", Some(scope.practice_id.unwrap_or(-1))),
        Role::Admin | Role::Technician => ("(?1 IS NULL OR 1 = 1)", None),
    }
}

pub fn practices(conn: &Connection, scope: &Scope) -> StoreResult<Vec<PracticeRow>> {
    let (clause, arg) = scope_clause(scope);
    let sql = format!(
        "SELECT p.id, p.name, p.created_at, s.name FROM practices p LEFT JOIN sites s ON s.practice_id = p.id
         WHERE {clause} ORDER BY p.name, s.name"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(db)?;
    let rows = stmt
        .query_map(params![arg], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })
        .map_err(db)?;
    let mut out: Vec<PracticeRow> = Vec::new();
    for row in rows {
        let (id, name, created, site) = row.map_err(db)?;
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

pub fn list(conn: &Connection, scope: &Scope) -> StoreResult<Vec<AgentRow>> {
    let (clause, arg) = scope_clause(scope);
    let sql =
        format!("SELECT {AGENT_COLUMNS} FROM {AGENT_TABLES} WHERE {clause} ORDER BY p.name, s.name, a.hostname, a.id");
    let mut stmt = conn.prepare_cached(&sql).map_err(db)?;
    let rows = stmt.query_map(params![arg], agent_row).map_err(db)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db)
}

/// Ingest throughput (core, issue 7): what evaluation reads of the agent's row, without the
/// finding counts and inventory of [`one`].
pub fn os_and_skew(conn: &Connection, agent_id: &str) -> StoreResult<(String, Option<i64>)> {
    conn.prepare_cached("SELECT os, clock_skew_ms FROM agents WHERE id = ?1")
        .and_then(|mut s| s.query_row([agent_id], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(db)?
        .ok_or_else(|| StoreError::NotFound {
            what: "agent",
            name: agent_id.to_string(),
        })
}

pub fn one(conn: &Connection, scope: &Scope, agent_id: &str) -> StoreResult<AgentRow> {
    check_visible(conn, scope, agent_id)?;
    conn.prepare_cached(&format!("SELECT {AGENT_COLUMNS} FROM {AGENT_TABLES} WHERE a.id = ?1"))
        .and_then(|mut s| s.query_row([agent_id], agent_row))
        .map_err(db)
}

/// Every agent's identity and last heartbeat, for the alert engine's tick (issue 12): one
/// plain join, none of [`list`]'s per-agent finding counts.
pub fn presence(conn: &Connection) -> StoreResult<Vec<crate::store::AgentPresence>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT a.id, a.hostname, p.name, s.name, a.enrolled_at, a.last_seen_at
             FROM agents a JOIN sites s ON s.id = a.site_id JOIN practices p ON p.id = s.practice_id",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map([], |r| {
            Ok(crate::store::AgentPresence {
                agent_id: r.get(0)?,
                hostname: r.get(1)?,
                practice: r.get(2)?,
                site: r.get(3)?,
                enrolled_at: from_ms(r.get(4)?),
                last_seen_at: r.get::<_, Option<i64>>(5)?.map(from_ms),
            })
        })
        .map_err(db)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db)?;
    Ok(rows)
}
