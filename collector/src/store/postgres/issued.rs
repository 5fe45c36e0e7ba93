//! PostgreSQL: `issued` (stub; same functions as `store/sqlite/issued.rs`).
#![allow(unused_variables, unused_imports, dead_code, clippy::too_many_arguments)]

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

#[allow(unused_imports)]
use crate::store::*;

pub async fn record(c: &Client, r: &IssuedReport) -> StoreResult<()> {
    unimplemented!("postgres: issued::record")
}

pub async fn by_file_hash(c: &Client, file_sha256: &str) -> StoreResult<Vec<IssuedReport>> {
    unimplemented!("postgres: issued::by_file_hash")
}

pub async fn by_id(c: &Client, report_id: &str) -> StoreResult<Option<IssuedReport>> {
    unimplemented!("postgres: issued::by_id")
}

pub async fn of_practice(c: &Client, practice_id: i64) -> StoreResult<Vec<IssuedReport>> {
    unimplemented!("postgres: issued::of_practice")
}

pub async fn record_delivery(c: &Client, d: &ReportDelivery) -> StoreResult<()> {
    unimplemented!("postgres: issued::record_delivery")
}

pub async fn deliveries(c: &Client, schedule: &str) -> StoreResult<Vec<ReportDelivery>> {
    unimplemented!("postgres: issued::deliveries")
}

pub async fn observation_history(
    c: &Client,
    agent_id: &str,
    kinds: &[String],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> StoreResult<Vec<StoredObservation>> {
    unimplemented!("postgres: issued::observation_history")
}

pub async fn receipts(
    c: &Client,
    agent_id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> StoreResult<Vec<DateTime<Utc>>> {
    unimplemented!("postgres: issued::receipts")
}
