//! Integration tests of the collector: one binary, modules per area.

mod agent_config;
mod api;
mod delivery;
mod ingest;
mod policy;
mod security;
mod serve;
mod store;
mod support;
mod web;
