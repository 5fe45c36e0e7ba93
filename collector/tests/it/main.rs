//! Integration tests of the collector: one binary, modules per area.

mod agent_config;
mod api;
mod delivery;
// Group commit of ingest (core, issue 7).
mod group_commit;
mod ingest;
mod policy;
mod serve;
mod store;
mod support;
// Tamper acknowledgement (core, issue 11).
mod tamper;
mod web;
