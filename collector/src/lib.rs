//! The Rounds collector: ingest API, store, policy evaluation, dashboard, and the
//! administrative commands.
//!
//! Entry points: [`serve::run`] serves on a bound listener until cancelled; [`admin`] holds
//! the subcommands that work on the same data dir whether or not the server runs.

pub mod admin;
pub mod agent_config;
pub mod alerting;
pub mod api;
pub mod app;
pub mod clock;
// Several collectors on one PostgreSQL database: live changes across them (issue 17).
pub mod cluster;
pub mod config;
pub mod delivery;
// Deployment: install command, serve lock, backup and restore (deploy).
pub mod deploy;
pub mod error;
pub mod evaluation;
pub mod events;
pub mod ingest;
pub mod notify;
// Compliance reports (issue 14).
pub mod reports;
pub mod request;
// Retention (issue 17).
pub mod retention;
pub mod score;
pub mod secrets;
// Security services (issue 15).
pub mod security;
pub mod serve;
pub mod store;
// Tamper acknowledgement (core, issue 11).
pub mod tamper;
pub mod tls;
pub mod web;
