//! PostgreSQL: `alerting` (stub; same functions as `store/sqlite/alerting.rs`).
#![allow(unused_variables, unused_imports, dead_code, clippy::too_many_arguments)]

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

#[allow(unused_imports)]
use crate::store::*;

pub async fn active(c: &Client, source: &str, subject: &str) -> StoreResult<Option<Incident>> {
    unimplemented!("postgres: alerting::active")
}

pub async fn by_id(c: &Client, id: i64) -> StoreResult<Option<Incident>> {
    unimplemented!("postgres: alerting::by_id")
}

pub async fn all_active(c: &Client) -> StoreResult<Vec<Incident>> {
    unimplemented!("postgres: alerting::all_active")
}

pub async fn open(c: &Client, new: &NewIncident, now: DateTime<Utc>) -> StoreResult<Incident> {
    unimplemented!("postgres: alerting::open")
}

pub async fn save(c: &Client, i: &Incident) -> StoreResult<()> {
    unimplemented!("postgres: alerting::save")
}

pub async fn event(c: &Client, incident_id: i64, e: &NewIncidentEvent, now: DateTime<Utc>) -> StoreResult<()> {
    unimplemented!("postgres: alerting::event")
}

pub async fn enqueue(c: &Client, item: &NewOutboxItem, now: DateTime<Utc>) -> StoreResult<i64> {
    unimplemented!("postgres: alerting::enqueue")
}

pub async fn due(c: &Client, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<OutboxItem>> {
    unimplemented!("postgres: alerting::due")
}

pub async fn of_incident(c: &Client, incident_id: i64) -> StoreResult<Vec<OutboxItem>> {
    unimplemented!("postgres: alerting::of_incident")
}

pub async fn save_item(c: &Client, item: &OutboxItem) -> StoreResult<()> {
    unimplemented!("postgres: alerting::save_item")
}

pub async fn window(c: &Client, source: &str, subject: &str) -> StoreResult<Option<AlertWindow>> {
    unimplemented!("postgres: alerting::window")
}

pub async fn save_window(c: &Client, w: &AlertWindow) -> StoreResult<()> {
    unimplemented!("postgres: alerting::save_window")
}

pub async fn claim_lease(
    c: &Client,
    name: &str,
    holder: &str,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    unimplemented!("postgres: alerting::claim_lease")
}

pub async fn list(c: &Client, scope: &Scope, q: &IncidentQuery) -> StoreResult<Vec<Incident>> {
    unimplemented!("postgres: alerting::list")
}

pub async fn detail(c: &Client, scope: &Scope, id: i64) -> StoreResult<IncidentDetail> {
    unimplemented!("postgres: alerting::detail")
}
