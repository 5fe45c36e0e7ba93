//! Integration tests of `rounds-policies`: one binary, one module per concern.

mod catalogue;
mod load_errors;
mod policy;
mod report;
mod rules;
mod support;
