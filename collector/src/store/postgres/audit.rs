//! PostgreSQL: `audit` (stub; same functions as `store/sqlite/audit.rs`).
#![allow(unused_variables, unused_imports, dead_code, clippy::too_many_arguments)]

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

#[allow(unused_imports)]
use crate::store::*;

pub async fn append(c: &Client, actor: &str, action: &str, detail: &str, now: DateTime<Utc>) -> StoreResult<()> {
    unimplemented!("postgres: audit::append")
}

pub async fn entries(c: &Client, limit: u32) -> StoreResult<Vec<AuditEntry>> {
    unimplemented!("postgres: audit::entries")
}
