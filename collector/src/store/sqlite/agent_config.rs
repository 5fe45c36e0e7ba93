//! Central agent configuration per practice and site, one row per version (never overwritten):
//! the newest row of a level is in force, a row without text clears it.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::agents::practice_and_site;
use super::codec::{db, from_ms, ms};
use crate::store::{AgentConfigRow, AgentConfigSources, StoreError, StoreResult};

pub fn set(
    conn: &Connection,
    practice: &str,
    site: Option<&str>,
    toml: Option<&str>,
    source: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> StoreResult<i64> {
    let (pid, sid) = practice_and_site(conn, practice, site)?;
    conn.execute(
        "INSERT INTO agent_config_versions (practice_id, site_id, toml, source, set_at, set_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![pid, sid, toml, source, ms(now), actor],
    )
    .map_err(db)?;
    Ok(conn.last_insert_rowid())
}

const COLUMNS: &str = "v.id, p.name, s.name, v.toml, v.source, v.set_at, v.set_by";
const TABLES: &str = "agent_config_versions v JOIN practices p ON p.id = v.practice_id
    LEFT JOIN sites s ON s.id = v.site_id";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AgentConfigRow> {
    Ok(AgentConfigRow {
        id: r.get(0)?,
        practice: r.get(1)?,
        site: r.get(2)?,
        toml: r.get(3)?,
        source: r.get(4)?,
        set_at: from_ms(r.get(5)?),
        set_by: r.get(6)?,
    })
}

pub fn history(conn: &Connection, practice: &str, site: Option<&str>) -> StoreResult<Vec<AgentConfigRow>> {
    let (pid, sid) = practice_and_site(conn, practice, site)?;
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM {TABLES} WHERE v.practice_id = ?1 AND v.site_id IS ?2 ORDER BY v.id"
        ))
        .map_err(db)?;
    stmt.query_map(params![pid, sid], row)
        .map_err(db)?
        .collect::<Result<_, _>>()
        .map_err(db)
}

pub fn current(conn: &Connection, practice: &str, site: Option<&str>) -> StoreResult<Option<AgentConfigRow>> {
    let (pid, sid) = practice_and_site(conn, practice, site)?;
    let newest = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM {TABLES} WHERE v.practice_id = ?1 AND v.site_id IS ?2 ORDER BY v.id DESC LIMIT 1"
        ))
        .and_then(|mut s| s.query_row(params![pid, sid], row).optional())
        .map_err(db)?;
    Ok(newest.filter(|r| r.toml.is_some()))
}

pub fn of_sites(conn: &Connection, practice: &str) -> StoreResult<Vec<AgentConfigRow>> {
    let (pid, _) = practice_and_site(conn, practice, None)?;
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM {TABLES} WHERE v.practice_id = ?1 AND v.site_id IS NOT NULL
               AND v.id = (SELECT MAX(w.id) FROM agent_config_versions w WHERE w.site_id = v.site_id)
               AND v.toml IS NOT NULL
             ORDER BY s.name"
        ))
        .map_err(db)?;
    stmt.query_map(params![pid], row)
        .map_err(db)?
        .collect::<Result<_, _>>()
        .map_err(db)
}

pub fn sources(conn: &Connection, agent_id: &str) -> StoreResult<AgentConfigSources> {
    conn.prepare_cached(
        "SELECT p.name, s.name,
           (SELECT v.toml FROM agent_config_versions v WHERE v.practice_id = p.id AND v.site_id IS NULL
             ORDER BY v.id DESC LIMIT 1),
           (SELECT v.toml FROM agent_config_versions v WHERE v.site_id = s.id ORDER BY v.id DESC LIMIT 1)
         FROM agents a JOIN sites s ON s.id = a.site_id JOIN practices p ON p.id = s.practice_id WHERE a.id = ?1",
    )
    .and_then(|mut s| {
        s.query_row([agent_id], |r| {
            Ok(AgentConfigSources {
                practice: r.get(0)?,
                site: r.get(1)?,
                practice_toml: r.get(2)?,
                site_toml: r.get(3)?,
            })
        })
        .optional()
    })
    .map_err(db)?
    .ok_or_else(|| StoreError::NotFound {
        what: "agent",
        name: agent_id.to_string(),
    })
}
