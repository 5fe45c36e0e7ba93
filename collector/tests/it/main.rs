//! Integration tests of the collector: one binary, modules per area.

mod agent_config;
mod api;
mod delivery;
mod ingest;
mod notify;
mod policy;
// Compliance reports (issue 14).
mod report_seed;
mod reports;
mod serve;
mod store;
mod support;
mod web;
