//! Policy settings per practice and per site, as set by `rounds-collector policy set`.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::agents::practice_and_site;
use super::codec::{db, from_ms, ms};
use crate::store::{AgentPolicySettings, PolicySettingsRow, StoreError, StoreResult};

pub fn set(
    conn: &Connection,
    practice: &str,
    site: Option<&str>,
    profile: Option<&str>,
    overrides: Option<&str>,
    actor: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let (pid, sid) = practice_and_site(conn, practice, site)?;
    conn.execute(
        "DELETE FROM policy_settings WHERE practice_id = ?1 AND site_id IS ?2",
        params![pid, sid],
    )
    .map_err(db)?;
    if profile.is_some() || overrides.is_some() {
        let scope = if sid.is_some() { "site" } else { "practice" };
        conn.execute(
            "INSERT INTO policy_settings (scope, practice_id, site_id, profile, overrides_toml, updated_at, updated_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![scope, pid, sid, profile, overrides, ms(now), actor],
        )
        .map_err(db)?;
    }
    Ok(())
}

pub fn get(conn: &Connection, practice: &str, site: Option<&str>) -> StoreResult<Option<PolicySettingsRow>> {
    let (pid, sid) = practice_and_site(conn, practice, site)?;
    conn.query_row(
        "SELECT profile, overrides_toml, updated_at, updated_by FROM policy_settings
         WHERE practice_id = ?1 AND site_id IS ?2",
        params![pid, sid],
        |r| {
            Ok(PolicySettingsRow {
                practice: practice.to_string(),
                site: site.map(str::to_string),
                profile: r.get(0)?,
                overrides_toml: r.get(1)?,
                updated_at: from_ms(r.get(2)?),
                updated_by: r.get(3)?,
            })
        },
    )
    .optional()
    .map_err(db)
}

pub fn for_agent(conn: &Connection, agent_id: &str) -> StoreResult<AgentPolicySettings> {
    conn.prepare_cached(
        "SELECT p.name, s.name, ps.profile, ps.overrides_toml, ss.overrides_toml
         FROM agents a JOIN sites s ON s.id = a.site_id JOIN practices p ON p.id = s.practice_id
         LEFT JOIN policy_settings ps ON ps.practice_id = p.id AND ps.site_id IS NULL
         LEFT JOIN policy_settings ss ON ss.site_id = s.id
         WHERE a.id = ?1",
    )
    .and_then(|mut s| {
        s.query_row([agent_id], |r| {
            Ok(AgentPolicySettings {
                practice: r.get(0)?,
                site: r.get(1)?,
                profile: r.get(2)?,
                practice_overrides: r.get(3)?,
                site_overrides: r.get(4)?,
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
