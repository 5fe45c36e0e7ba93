//! PostgreSQL: `reports` (stub; same functions as `store/sqlite/reports.rs`).
#![allow(unused_variables, unused_imports, dead_code, clippy::too_many_arguments)]

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

#[allow(unused_imports)]
use crate::store::*;

pub async fn ingest(c: &Client, agent_id: &str, r: IncomingReport<'_>) -> StoreResult<Ingested> {
    unimplemented!("postgres: reports::ingest")
}

pub async fn latest(c: &Client, agent_id: &str, kind: Option<&str>) -> StoreResult<Vec<StoredObservation>> {
    unimplemented!("postgres: reports::latest")
}

pub async fn count(c: &Client) -> StoreResult<u64> {
    unimplemented!("postgres: reports::count")
}
