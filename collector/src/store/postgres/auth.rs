//! PostgreSQL: `auth` (stub; same functions as `store/sqlite/auth.rs`).
#![allow(unused_variables, unused_imports, dead_code, clippy::too_many_arguments)]

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

#[allow(unused_imports)]
use crate::store::*;

pub async fn add_user(
    c: &Client,
    username: &str,
    password_hash: &str,
    role: Role,
    practice: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<i64> {
    unimplemented!("postgres: auth::add_user")
}

pub async fn set_password(c: &Client, username: &str, password_hash: &str) -> StoreResult<()> {
    unimplemented!("postgres: auth::set_password")
}

pub async fn user_count(c: &Client) -> StoreResult<u64> {
    unimplemented!("postgres: auth::user_count")
}

pub async fn user(c: &Client, username: &str) -> StoreResult<Option<UserRow>> {
    unimplemented!("postgres: auth::user")
}

pub async fn create_session(
    c: &Client,
    token_hash: &str,
    user_id: i64,
    csrf_token: &str,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> StoreResult<()> {
    unimplemented!("postgres: auth::create_session")
}

pub async fn session(c: &Client, token_hash: &str, now: DateTime<Utc>) -> StoreResult<Option<SessionRow>> {
    unimplemented!("postgres: auth::session")
}

pub async fn delete_session(c: &Client, token_hash: &str) -> StoreResult<()> {
    unimplemented!("postgres: auth::delete_session")
}

pub async fn create_api_key(
    c: &Client,
    key_hash: &str,
    role: Role,
    practice: Option<&str>,
    label: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    unimplemented!("postgres: auth::create_api_key")
}

pub async fn api_key(c: &Client, key_hash: &str) -> StoreResult<Option<Scope>> {
    unimplemented!("postgres: auth::api_key")
}
