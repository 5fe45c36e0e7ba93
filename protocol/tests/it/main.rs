//! Integration tests of the wire types: golden JSON files and the compatibility rules.

mod golden;
