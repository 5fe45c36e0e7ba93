//! Integration tests of the collector: one binary, modules per area.

mod agent_config;
mod api;
// Technician dashboard (issue 13).
mod browser;
mod dash;
mod delivery;
mod ingest;
mod policy;
mod serve;
mod store;
mod support;
mod web;
