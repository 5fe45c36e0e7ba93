//! PostgreSQL: `security` (stub; same functions as `store/sqlite/security.rs`).
#![allow(unused_variables, unused_imports, dead_code, clippy::too_many_arguments)]

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

#[allow(unused_imports)]
use crate::store::*;

pub async fn revoke_agent(c: &Client, agent_id: &str, now: DateTime<Utc>) -> StoreResult<bool> {
    unimplemented!("postgres: security::revoke_agent")
}

pub async fn create_api_key(
    c: &Client,
    key_hash: &str,
    role: Role,
    practice: Option<&str>,
    label: &str,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> StoreResult<i64> {
    unimplemented!("postgres: security::create_api_key")
}

pub async fn revoke_api_key(c: &Client, id: i64, now: DateTime<Utc>) -> StoreResult<bool> {
    unimplemented!("postgres: security::revoke_api_key")
}

pub async fn remove_user(c: &Client, username: &str) -> StoreResult<()> {
    unimplemented!("postgres: security::remove_user")
}

pub async fn api_keys(c: &Client) -> StoreResult<Vec<ApiKeyRow>> {
    unimplemented!("postgres: security::api_keys")
}

pub async fn api_key_valid(c: &Client, key_hash: &str, now: DateTime<Utc>) -> StoreResult<Option<Scope>> {
    unimplemented!("postgres: security::api_key_valid")
}

pub async fn admin_count(c: &Client) -> StoreResult<u64> {
    unimplemented!("postgres: security::admin_count")
}
