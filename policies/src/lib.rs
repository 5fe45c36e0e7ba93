//! Policy rules and their evaluation: `(observations, policy, now) -> findings`.
//!
//! This crate does no I/O beyond reading pack files and nothing async. The full rule
//! format and the HIPAA pack arrive with the policy-engine issue.
