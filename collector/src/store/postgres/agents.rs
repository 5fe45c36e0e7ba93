//! PostgreSQL: `agents` (stub; same functions as `store/sqlite/agents.rs`).
#![allow(unused_variables, unused_imports, dead_code, clippy::too_many_arguments)]

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

#[allow(unused_imports)]
use crate::store::*;

pub async fn ensure_practice(c: &Client, name: &str, now: DateTime<Utc>) -> StoreResult<i64> {
    unimplemented!("postgres: agents::ensure_practice")
}

pub async fn ensure_site(c: &Client, practice: &str, site: &str, now: DateTime<Utc>) -> StoreResult<i64> {
    unimplemented!("postgres: agents::ensure_site")
}

pub async fn practice_id(c: &Client, name: &str) -> StoreResult<i64> {
    unimplemented!("postgres: agents::practice_id")
}

pub async fn practice_and_site(c: &Client, practice: &str, site: Option<&str>) -> StoreResult<(i64, Option<i64>)> {
    unimplemented!("postgres: agents::practice_and_site")
}

pub async fn create_token(c: &Client, token: &NewToken, now: DateTime<Utc>) -> StoreResult<()> {
    unimplemented!("postgres: agents::create_token")
}

pub async fn enroll(c: &Client, token_hash: &str, agent: &NewAgent, now: DateTime<Utc>) -> StoreResult<Enrolled> {
    unimplemented!("postgres: agents::enroll")
}

pub async fn auth(c: &Client, agent_id: &str) -> StoreResult<Option<AgentAuth>> {
    unimplemented!("postgres: agents::auth")
}

pub async fn heartbeat(
    c: &Client,
    agent_id: &str,
    agent_version: &str,
    clock_skew: Option<chrono::Duration>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    unimplemented!("postgres: agents::heartbeat")
}

pub async fn check_visible(c: &Client, scope: &Scope, agent_id: &str) -> StoreResult<()> {
    unimplemented!("postgres: agents::check_visible")
}

pub async fn practices(c: &Client, scope: &Scope) -> StoreResult<Vec<PracticeRow>> {
    unimplemented!("postgres: agents::practices")
}

pub async fn list(c: &Client, scope: &Scope) -> StoreResult<Vec<AgentRow>> {
    unimplemented!("postgres: agents::list")
}

pub async fn one(c: &Client, scope: &Scope, agent_id: &str) -> StoreResult<AgentRow> {
    unimplemented!("postgres: agents::one")
}
