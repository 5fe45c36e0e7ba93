//! PostgreSQL: `policy` (stub; same functions as `store/sqlite/policy.rs`).
#![allow(unused_variables, unused_imports, dead_code, clippy::too_many_arguments)]

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

#[allow(unused_imports)]
use crate::store::*;

pub async fn set(
    c: &Client,
    practice: &str,
    site: Option<&str>,
    profile: Option<&str>,
    overrides: Option<&str>,
    actor: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    unimplemented!("postgres: policy::set")
}

pub async fn get(c: &Client, practice: &str, site: Option<&str>) -> StoreResult<Option<PolicySettingsRow>> {
    unimplemented!("postgres: policy::get")
}

pub async fn for_agent(c: &Client, agent_id: &str) -> StoreResult<AgentPolicySettings> {
    unimplemented!("postgres: policy::for_agent")
}
