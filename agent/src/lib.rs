//! The Rounds agent: runs compliance checks on a practice machine and reports to the collector.

pub mod checks;
