//! Integration tests of rounds-agent: one binary, one module per area.

mod cli;
mod config;
mod enroll;
mod run;
mod state;
mod support;
mod tls;
