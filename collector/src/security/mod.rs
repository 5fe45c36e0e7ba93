//! Security services of the collector (issue 15): revocation of credentials, caps on echoed
//! values, request limits, safe key files, server-certificate renewal. HTTP handlers and CLI
//! commands call these; each owns its state.

pub mod echo;
pub mod files;
pub mod limits;
pub mod login;
pub mod metrics;
pub mod renew;
pub mod revoke;
