//! Tests of the audit check on fixture trees and recorded outputs.
