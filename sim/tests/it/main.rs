//! Integration tests of `rounds-sim`: one binary, modules per subject.
//!
//! The simulator is driven against a real `rounds-collector serve` process over real TLS on
//! 127.0.0.1 (the collector binary of this workspace; built by `cargo test --workspace`, or
//! built here when missing).

mod collector;
mod sim;
