//! End-to-end tests over real processes and real TLS: the `rounds-collector` and
//! `rounds-agent` binaries, and `rounds demo`.

mod support;

mod backup_secrets;
// Two collectors on one PostgreSQL database (issue 17).
mod cluster;
mod config;
mod delivery;
mod demo;
mod deploy;
mod enrollment;
mod footprint;
mod ingest;
mod probes;
mod security_secrets;
