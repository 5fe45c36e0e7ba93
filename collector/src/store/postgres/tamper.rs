//! PostgreSQL: `tamper` (stub; same functions as `store/sqlite/tamper.rs`).
#![allow(unused_variables, unused_imports, dead_code, clippy::too_many_arguments)]

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

#[allow(unused_imports)]
use crate::store::*;

pub async fn note(c: &Client, agent_id: &str, seen: &[TamperSeen], now: DateTime<Utc>) -> StoreResult<()> {
    unimplemented!("postgres: tamper::note")
}

pub async fn list(c: &Client, agent_id: &str) -> StoreResult<Vec<TamperRow>> {
    unimplemented!("postgres: tamper::list")
}

pub async fn acknowledge(c: &Client, agent_id: &str, tamper_id: &str, ack: &TamperAck) -> StoreResult<TamperRow> {
    unimplemented!("postgres: tamper::acknowledge")
}
