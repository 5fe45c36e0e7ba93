//! PostgreSQL: `dashboard` (stub; same functions as `store/sqlite/dashboard.rs`).
#![allow(unused_variables, unused_imports, dead_code, clippy::too_many_arguments)]

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

#[allow(unused_imports)]
use crate::store::*;

pub async fn briefs(c: &Client, scope: &Scope) -> StoreResult<Vec<FindingBrief>> {
    unimplemented!("postgres: dashboard::briefs")
}

pub async fn history(
    c: &Client,
    scope: &Scope,
    practice_id: i64,
    kind: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> StoreResult<Vec<StoredObservation>> {
    unimplemented!("postgres: dashboard::history")
}

pub async fn users(c: &Client) -> StoreResult<Vec<UserSummary>> {
    unimplemented!("postgres: dashboard::users")
}
