//! Central agent configuration per practice and site, one row per version, never overwritten
//! (PostgreSQL; mirrors `store/sqlite/agent_config.rs`).

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::agents::practice_and_site;
use super::codec::{db, from_ms, ms};
use super::pool::Conn;
use crate::store::{AgentConfigRow, AgentConfigSources, StoreError, StoreResult};

pub async fn set(
    c: &Conn,
    practice: &str,
    site: Option<&str>,
    toml: Option<&str>,
    source: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> StoreResult<i64> {
    let (pid, sid) = practice_and_site(c, practice, site).await?;
    let row = c
        .query_one(
            "INSERT INTO agent_config_versions (practice_id, site_id, toml, source, set_at, set_by)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            &[&pid, &sid, &toml, &source, &ms(now), &actor],
        )
        .await
        .map_err(db)?;
    Ok(row.get(0))
}

const COLUMNS: &str = "v.id, p.name, s.name, v.toml, v.source, v.set_at, v.set_by";
const TABLES: &str = "agent_config_versions v JOIN practices p ON p.id = v.practice_id
    LEFT JOIN sites s ON s.id = v.site_id";

fn row(r: &Row) -> AgentConfigRow {
    AgentConfigRow {
        id: r.get(0),
        practice: r.get(1),
        site: r.get(2),
        toml: r.get(3),
        source: r.get(4),
        set_at: from_ms(r.get(5)),
        set_by: r.get(6),
    }
}

pub async fn history(c: &Conn, practice: &str, site: Option<&str>) -> StoreResult<Vec<AgentConfigRow>> {
    let (pid, sid) = practice_and_site(c, practice, site).await?;
    let rows = c
        .query(
            &format!(
                "SELECT {COLUMNS} FROM {TABLES} WHERE v.practice_id = $1 AND v.site_id IS NOT DISTINCT FROM $2
                 ORDER BY v.id"
            ),
            &[&pid, &sid],
        )
        .await
        .map_err(db)?;
    Ok(rows.iter().map(row).collect())
}

pub async fn current(c: &Conn, practice: &str, site: Option<&str>) -> StoreResult<Option<AgentConfigRow>> {
    let (pid, sid) = practice_and_site(c, practice, site).await?;
    let newest = c
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM {TABLES} WHERE v.practice_id = $1 AND v.site_id IS NOT DISTINCT FROM $2
                 ORDER BY v.id DESC LIMIT 1"
            ),
            &[&pid, &sid],
        )
        .await
        .map_err(db)?;
    Ok(newest.as_ref().map(row).filter(|r| r.toml.is_some()))
}

pub async fn of_sites(c: &Conn, practice: &str) -> StoreResult<Vec<AgentConfigRow>> {
    let (pid, _) = practice_and_site(c, practice, None).await?;
    let rows = c
        .query(
            &format!(
                "SELECT {COLUMNS} FROM {TABLES} WHERE v.practice_id = $1 AND v.site_id IS NOT NULL
                   AND v.id = (SELECT MAX(w.id) FROM agent_config_versions w WHERE w.site_id = v.site_id)
                   AND v.toml IS NOT NULL
                 ORDER BY s.name"
            ),
            &[&pid],
        )
        .await
        .map_err(db)?;
    Ok(rows.iter().map(row).collect())
}

pub async fn sources(c: &Conn, agent_id: &str) -> StoreResult<AgentConfigSources> {
    let row = c
        .query_opt(
            "SELECT p.name, s.name,
               (SELECT v.toml FROM agent_config_versions v WHERE v.practice_id = p.id AND v.site_id IS NULL
                 ORDER BY v.id DESC LIMIT 1),
               (SELECT v.toml FROM agent_config_versions v WHERE v.site_id = s.id ORDER BY v.id DESC LIMIT 1)
             FROM agents a JOIN sites s ON s.id = a.site_id JOIN practices p ON p.id = s.practice_id WHERE a.id = $1",
            &[&agent_id],
        )
        .await
        .map_err(db)?;
    row.map(|r| AgentConfigSources {
        practice: r.get(0),
        site: r.get(1),
        practice_toml: r.get(2),
        site_toml: r.get(3),
    })
    .ok_or_else(|| StoreError::NotFound {
        what: "agent",
        name: agent_id.to_string(),
    })
}
