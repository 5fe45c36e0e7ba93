//! `rounds-sim`: many simulated Rounds agents in one process, driving a real
//! `rounds-collector serve` over real TLS on the loopback interface, exactly as agents do.
//!
//! Each simulated agent has its own enrollment (one enrollment token each) and credentials,
//! a host profile (OS family, role, which checks pass and which fail), heartbeats on the real
//! interval and one report per check on its schedule, with start times and report phases
//! spread out. Failure injection ([`faults`]) silences agents, darkens a site, takes the EHR
//! endpoint of several practices down and restarts a share of the fleet at once. Every request
//! is timed; [`stats`] turns the timings into percentiles per request type, errors by status and
//! throughput, printed and written as JSON.
//!
//! Invariants: only loopback collectors are driven ([`config`] refuses other hosts and the
//! client pins the name to the loopback address); concurrency is bounded by one semaphore over
//! every request; the run is bounded in agents and time and stops by itself; every agent is a
//! task on one [`tokio_util::task::TaskTracker`], awaited before the results are written.

pub mod client;
pub mod config;
pub mod faults;
pub mod fleet;
pub mod payload;
pub mod run;
pub mod stats;

pub use run::{RunError, run};
