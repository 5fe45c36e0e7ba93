//! Integration tests of `rounds-policies`: one binary, one module per concern.

mod catalogue;
mod fidelity;
mod load_errors;
mod observable;
mod policy;
mod report;
mod rules;
mod support;
