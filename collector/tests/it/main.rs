//! Integration tests of the collector: one binary, modules per area.

mod api;
mod ingest;
mod policy;
mod serve;
mod store;
mod support;
mod web;
