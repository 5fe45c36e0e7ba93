//! How values are stored in SQLite and how its errors become [`StoreError`]s.

use chrono::{DateTime, Utc};
use rounds_protocol::ObservationStatus;
use rusqlite::ErrorCode;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::store::{DbErrorKind, StoreError, StoreResult};

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

/// Milliseconds since the epoch.
pub fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// A time from milliseconds since the epoch.
pub fn from_ms(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(v).unwrap_or_default()
}

/// An observation status as stored.
pub fn status_str(s: ObservationStatus) -> &'static str {
    match s {
        ObservationStatus::Ok => "ok",
        ObservationStatus::Error => "error",
    }
}

/// A value as JSON text.
pub fn to_json<T: Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::database(DbErrorKind::Other, "encoding json", e))
}

/// A stored JSON text as a value.
pub fn from_json<T: DeserializeOwned>(what: &str, text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| StoreError::corrupt(what, e))
}

/// A snake_case enum name as stored, read back through its serde name.
pub fn from_name<T: DeserializeOwned>(what: &str, name: &str) -> StoreResult<T> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|_| StoreError::corrupt(what, crate::store::error::Message(format!("`{name}` is not known"))))
}
