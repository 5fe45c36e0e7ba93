//! How SQLite errors become [`StoreError`]s; how values are stored is [`crate::store::codec`]'s.

use rusqlite::ErrorCode;

pub use crate::store::codec::{from_json, from_ms, from_name, ms, payload_text, status_str, to_json};
use crate::store::{DbErrorKind, StoreError};

/// The backend-independent kind of a SQLite error.
pub fn kind(e: &rusqlite::Error) -> DbErrorKind {
    match e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => DbErrorKind::Busy,
            ErrorCode::ConstraintViolation => DbErrorKind::Constraint,
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => DbErrorKind::Corrupt,
            ErrorCode::DiskFull => DbErrorKind::Full,
            ErrorCode::ReadOnly => DbErrorKind::ReadOnly,
            ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::SystemIoFailure => {
                DbErrorKind::Unavailable
            }
            _ => DbErrorKind::Other,
        },
        rusqlite::Error::FromSqlConversionFailure(..) | rusqlite::Error::InvalidColumnType(..) => DbErrorKind::Corrupt,
        _ => DbErrorKind::Other,
    }
}

/// A SQLite error while running a statement.
pub fn db(e: rusqlite::Error) -> StoreError {
    db_in(e, "running a statement")
}

/// A SQLite error while doing `context`.
pub fn db_in(e: rusqlite::Error, context: impl Into<String>) -> StoreError {
    StoreError::database(kind(&e), context, e)
}
