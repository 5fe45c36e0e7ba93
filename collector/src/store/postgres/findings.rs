//! PostgreSQL: `findings` (stub; same functions as `store/sqlite/findings.rs`).
#![allow(unused_variables, unused_imports, dead_code, clippy::too_many_arguments)]

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

#[allow(unused_imports)]
use crate::store::*;

pub async fn replace(
    c: &Client,
    agent_id: &str,
    findings: &[Finding],
    now: DateTime<Utc>,
) -> StoreResult<Vec<FindingChange>> {
    unimplemented!("postgres: findings::replace")
}

pub async fn current(c: &Client, agent_id: &str) -> StoreResult<Vec<FindingRow>> {
    unimplemented!("postgres: findings::current")
}

pub async fn as_at(c: &Client, agent_id: &str, at: DateTime<Utc>) -> StoreResult<Vec<FindingRow>> {
    unimplemented!("postgres: findings::as_at")
}

pub async fn changes(c: &Client, scope: &Scope, query: &ChangeQuery) -> StoreResult<Vec<FindingChange>> {
    unimplemented!("postgres: findings::changes")
}
