//! The Rounds agent: runs compliance checks on a practice machine and reports to the collector.
//!
//! Entry points, used by the `rounds-agent` binary and in-process by `rounds demo`:
//! - [`enroll()`]: trade an enrollment token for an identity kept in the state dir;
//! - [`run()`]: heartbeats and scheduled reports until a `CancellationToken` is cancelled;
//! - [`status()`]: what the state dir says about this agent;
//! - [`config::load`]: read and validate the configuration file into [`AgentSettings`].
//!
//! Modules: [`checks`] (what is observed), [`config`] (the file and its validated form),
//! [`state`] (the state dir and its files), [`client`] (TLS and HTTP to the collector),
//! [`enroll`], [`probes`] (EHR connectivity and the network baseline), [`run`] (the task runtime), [`schedule`] (per-agent schedule offsets), [`sender`] (report delivery), [`backoff`], [`status`].

pub mod backoff;
pub mod central;
pub mod checks;
pub mod client;
pub mod clock;
pub mod config;
pub mod enroll;
pub mod local_check;
// Fingerprint enrollment and service installation (deploy).
pub mod pin;
pub mod probes;
pub mod run;
pub mod schedule;
pub mod sender;
pub mod service;
pub mod spool;
pub mod state;
pub mod status;
pub mod watch;

pub use config::AgentSettings;
pub use enroll::{EnrollError, EnrollOptions, FingerprintEnrollOptions, enroll, enroll_by_fingerprint};
pub use run::{RunError, RunOptions, run};
pub use state::{Identity, StateDir};
pub use status::{AgentStatus, status};
