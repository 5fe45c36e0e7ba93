//! Integration tests of the collector: one binary, modules per area.

mod agent_config;
mod alert_harness;
// Every alert source through real channels (issue 12).
mod alert_sources;
mod alerting;
mod api;
// Technician dashboard (issue 13).
mod browser;
// Live changes across collectors on one PostgreSQL database (issue 17).
mod cluster;
mod dash;
mod delivery;
// Group commit of ingest (core, issue 7).
mod group_commit;
mod ingest;
// Ingest throughput (core, issue 7): evaluation time per agent, input read with the delivery.
mod ingest_throughput;
mod notify;
mod policy;
// PostgreSQL backend (issue 17).
mod postgres;
// TLS to PostgreSQL: sslmode, sslrootcert.
mod postgres_tls;
mod security;
// Compliance reports (issue 14).
mod report_seed;
mod reports;
// Retention (issue 17).
mod retention;
mod serve;
// Runtime silences (alerting, issue 12).
mod silences;
mod store;
// Conformance of the later storage areas on both backends (issue 17).
mod store_ext;
// Export and import between stores (issue 17).
mod support;
mod transfer;
// Two collectors on one PostgreSQL database (issue 17).
mod shared_db;
// Tamper acknowledgement (core, issue 11).
mod tamper;
mod web;
