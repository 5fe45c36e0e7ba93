//! PostgreSQL: `agent_config` (stub; same functions as `store/sqlite/agent_config.rs`).
#![allow(unused_variables, unused_imports, dead_code, clippy::too_many_arguments)]

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

#[allow(unused_imports)]
use crate::store::*;

pub async fn set(
    c: &Client,
    practice: &str,
    site: Option<&str>,
    toml: Option<&str>,
    source: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> StoreResult<i64> {
    unimplemented!("postgres: agent_config::set")
}

pub async fn history(c: &Client, practice: &str, site: Option<&str>) -> StoreResult<Vec<AgentConfigRow>> {
    unimplemented!("postgres: agent_config::history")
}

pub async fn current(c: &Client, practice: &str, site: Option<&str>) -> StoreResult<Option<AgentConfigRow>> {
    unimplemented!("postgres: agent_config::current")
}

pub async fn of_sites(c: &Client, practice: &str) -> StoreResult<Vec<AgentConfigRow>> {
    unimplemented!("postgres: agent_config::of_sites")
}

pub async fn sources(c: &Client, agent_id: &str) -> StoreResult<AgentConfigSources> {
    unimplemented!("postgres: agent_config::sources")
}
