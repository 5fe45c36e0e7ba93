//! Errors of the storage layer, typed so that callers can match what went wrong.
//!
//! A database failure keeps its source error and carries a [`DbErrorKind`] (busy, constraint,
//! corrupt, ...) that does not depend on the backend, so that a caller can retry on `Busy` or
//! answer 409 on `Constraint` without parsing messages.

use serde::Serialize;

/// What kind of database failure happened, independent of the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbErrorKind {
    /// The database is locked by another writer beyond the busy timeout.
    Busy,
    /// A constraint (unique, foreign key, check, a trigger's abort) refused the write.
    Constraint,
    /// The file or stored data is damaged or not a database.
    Corrupt,
    /// The disk is full.
    Full,
    /// The database cannot be written (read-only file or mount).
    ReadOnly,
    /// The schema is not one this collector can use (e.g. newer than it).
    Schema,
    /// The database cannot be opened or reached.
    Unavailable,
    /// Anything else.
    Other,
}

impl std::fmt::Display for DbErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DbErrorKind::Busy => "busy",
            DbErrorKind::Constraint => "constraint",
            DbErrorKind::Corrupt => "corrupt",
            DbErrorKind::Full => "disk full",
            DbErrorKind::ReadOnly => "read-only",
            DbErrorKind::Schema => "schema",
            DbErrorKind::Unavailable => "unavailable",
            DbErrorKind::Other => "other",
        })
    }
}

/// The source of a database error that has no error value of its own.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Message(pub String);

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened, migrated, queried or written, or holds data that does
    /// not decode.
    #[error("database error ({kind}) {context}: {source}")]
    Database {
        kind: DbErrorKind,
        /// What the store was doing, e.g. `opening /var/lib/rounds/rounds.db`.
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A named thing does not exist.
    #[error("{what} not found: {name}")]
    NotFound { what: &'static str, name: String },
    /// A unique name is taken.
    #[error("{what} already exists: {name}")]
    Conflict { what: &'static str, name: String },
    /// The enrollment token cannot be redeemed, and why.
    #[error("{0}")]
    Token(TokenRefusal),
    /// The request contradicts the data model (e.g. a profile for a site).
    #[error("{0}")]
    Invalid(String),
}

impl StoreError {
    /// A database error of `kind` while doing `context`.
    pub fn database(
        kind: DbErrorKind,
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StoreError::Database {
            kind,
            context: context.into(),
            source: source.into(),
        }
    }

    /// A database error whose source is a message.
    pub fn message(kind: DbErrorKind, context: impl Into<String>, message: impl Into<String>) -> Self {
        Self::database(kind, context, Message(message.into()))
    }

    /// Stored data that does not decode.
    pub fn corrupt(what: &str, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::database(DbErrorKind::Corrupt, format!("decoding stored {what}"), source)
    }

    /// The kind of a database error; `None` for the other variants.
    pub fn kind(&self) -> Option<DbErrorKind> {
        match self {
            StoreError::Database { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

/// Why an enrollment token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenRefusal {
    Unknown,
    Expired,
    AlreadyUsed,
}

impl std::fmt::Display for TokenRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TokenRefusal::Unknown => "enrollment token unknown",
            TokenRefusal::Expired => "enrollment token expired",
            TokenRefusal::AlreadyUsed => "enrollment token already used",
        })
    }
}

/// Results of the storage layer.
pub type StoreResult<T> = Result<T, StoreError>;
