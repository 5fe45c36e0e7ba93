//! Integration tests of rounds-agent: one binary, one module per area.

// The check tests read Linux fixture trees: which OS's collection runs is chosen at compile
// time (`checks::platform`), so on other platforms the checks do not read them.
#[cfg(unix)]
mod audit;
mod backup;
#[cfg(target_os = "linux")]
mod check;
mod cli;
mod config;
mod enroll;
#[cfg(target_os = "linux")]
mod findings;
mod probes;
mod run;
mod state;
mod support;
mod tls;
