//! Policy settings per practice and per site, as set by `rounds-collector policy set`
//! (PostgreSQL; mirrors `store/sqlite/policy.rs`).

use chrono::{DateTime, Utc};

use super::agents::practice_and_site;
use super::codec::{db, from_ms, ms};
use super::pool::Conn;
use crate::store::{AgentPolicySettings, PolicySettingsRow, StoreError, StoreResult};

pub async fn set(
    c: &Conn,
    practice: &str,
    site: Option<&str>,
    profile: Option<&str>,
    overrides: Option<&str>,
    actor: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let (pid, sid) = practice_and_site(c, practice, site).await?;
    c.execute(
        "DELETE FROM policy_settings WHERE practice_id = $1 AND site_id IS NOT DISTINCT FROM $2",
        &[&pid, &sid],
    )
    .await
    .map_err(db)?;
    if profile.is_some() || overrides.is_some() {
        let scope = if sid.is_some() { "site" } else { "practice" };
        c.execute(
            "INSERT INTO policy_settings (scope, practice_id, site_id, profile, overrides_toml, updated_at, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[&scope, &pid, &sid, &profile, &overrides, &ms(now), &actor],
        )
        .await
        .map_err(db)?;
    }
    Ok(())
}

pub async fn get(c: &Conn, practice: &str, site: Option<&str>) -> StoreResult<Option<PolicySettingsRow>> {
    let (pid, sid) = practice_and_site(c, practice, site).await?;
    let row = c
        .query_opt(
            "SELECT profile, overrides_toml, updated_at, updated_by FROM policy_settings
             WHERE practice_id = $1 AND site_id IS NOT DISTINCT FROM $2",
            &[&pid, &sid],
        )
        .await
        .map_err(db)?;
    Ok(row.map(|r| PolicySettingsRow {
        practice: practice.to_string(),
        site: site.map(str::to_string),
        profile: r.get(0),
        overrides_toml: r.get(1),
        updated_at: from_ms(r.get(2)),
        updated_by: r.get(3),
    }))
}

pub async fn for_agent(c: &Conn, agent_id: &str) -> StoreResult<AgentPolicySettings> {
    let row = c
        .query_opt(
            "SELECT p.name, s.name, ps.profile, ps.overrides_toml, ss.overrides_toml
             FROM agents a JOIN sites s ON s.id = a.site_id JOIN practices p ON p.id = s.practice_id
             LEFT JOIN policy_settings ps ON ps.practice_id = p.id AND ps.site_id IS NULL
             LEFT JOIN policy_settings ss ON ss.site_id = s.id
             WHERE a.id = $1",
            &[&agent_id],
        )
        .await
        .map_err(db)?;
    row.map(|r| AgentPolicySettings {
        practice: r.get(0),
        site: r.get(1),
        profile: r.get(2),
        practice_overrides: r.get(3),
        site_overrides: r.get(4),
    })
    .ok_or_else(|| StoreError::NotFound {
        what: "agent",
        name: agent_id.to_string(),
    })
}
