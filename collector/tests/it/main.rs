//! Integration tests of the collector: one binary, modules per area.

mod agent_config;
mod alert_harness;
mod alerting;
mod api;
// Technician dashboard (issue 13).
mod browser;
mod dash;
mod delivery;
mod ingest;
mod notify;
mod policy;
mod security;
// Compliance reports (issue 14).
mod report_seed;
mod reports;
mod serve;
mod store;
mod support;
mod web;
