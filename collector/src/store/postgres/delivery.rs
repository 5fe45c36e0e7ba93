//! PostgreSQL: `delivery` (stub; same functions as `store/sqlite/delivery.rs`).
#![allow(unused_variables, unused_imports, dead_code, clippy::too_many_arguments)]

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

#[allow(unused_imports)]
use crate::delivery::IntegrityProblem;
#[allow(unused_imports)]
use crate::store::*;

pub async fn deliver(c: &Client, agent_id: &str, d: IncomingReport<'_>) -> StoreResult<DeliveryOutcome> {
    unimplemented!("postgres: delivery::deliver")
}

pub async fn record(c: &Client, agent_id: &str, problems: &[IntegrityProblem], now: DateTime<Utc>) -> StoreResult<()> {
    unimplemented!("postgres: delivery::record")
}

pub async fn journal_observation(c: &Client, agent_id: &str, now: DateTime<Utc>) -> StoreResult<()> {
    unimplemented!("postgres: delivery::journal_observation")
}

pub async fn reported_state(c: &Client, agent_id: &str, state: &AgentReportedState) -> StoreResult<()> {
    unimplemented!("postgres: delivery::reported_state")
}

pub async fn status(c: &Client, agent_id: &str) -> StoreResult<DeliveryStatus> {
    unimplemented!("postgres: delivery::status")
}
