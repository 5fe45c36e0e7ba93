//! Dashboard tests.
