//! How PostgreSQL errors become [`StoreError`]s. How values are stored (milliseconds, JSON
//! text, enum names) is [`crate::store::codec`]'s, shared with SQLite.

use tokio_postgres::error::SqlState;

pub use crate::store::codec::{from_json, from_ms, from_name, ms, payload_text, status_str, to_json};
use crate::store::{DbErrorKind, StoreError};

/// The backend-independent kind of a PostgreSQL error, from its SQLSTATE.
pub fn kind(e: &tokio_postgres::Error) -> DbErrorKind {
    if e.is_closed() {
        return DbErrorKind::Unavailable;
    }
    let Some(state) = e.code() else {
        // No SQLSTATE: the server could not be reached or the connection broke.
        let io = std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>());
        return if io || e.to_string().starts_with("error connecting") {
            DbErrorKind::Unavailable
        } else {
            DbErrorKind::Other
        };
    };
    kind_of_state(state.code())
}

/// The kind of a SQLSTATE code.
pub fn kind_of_state(code: &str) -> DbErrorKind {
    match code {
        // serialization_failure, deadlock_detected, lock_not_available
        "40001" | "40P01" | "55P03" => DbErrorKind::Busy,
        "53100" => DbErrorKind::Full,
        "25006" => DbErrorKind::ReadOnly,
        "57P01" | "57P02" | "57P03" | "53300" => DbErrorKind::Unavailable,
        "XX001" | "XX002" => DbErrorKind::Corrupt,
        c if c.starts_with("23") => DbErrorKind::Constraint,
        c if c.starts_with("08") => DbErrorKind::Unavailable,
        // invalid_authorization_specification, invalid_password, invalid_catalog_name
        c if c.starts_with("28") || c == SqlState::INVALID_CATALOG_NAME.code() => DbErrorKind::Unavailable,
        _ => DbErrorKind::Other,
    }
}

/// A PostgreSQL error while running a statement.
pub fn db(e: tokio_postgres::Error) -> StoreError {
    db_in(e, "running a statement")
}

/// A PostgreSQL error while doing `context`.
pub fn db_in(e: tokio_postgres::Error, context: impl Into<String>) -> StoreError {
    StoreError::database(kind(&e), context, e)
}

/// A value read from a column that does not fit the Rust type (e.g. a negative count).
pub fn out_of_range(what: &str, v: i64) -> StoreError {
    StoreError::corrupt(what, crate::store::error::Message(format!("{v} is out of range")))
}

/// `url` with its password replaced by `***`, for errors and logs.
pub fn redact_url(url: &str) -> String {
    // postgres://user:password@host/db?...
    let Some(scheme_end) = url.find("://") else {
        return redact_params(url);
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let redacted_authority = match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.find(':') {
                Some(colon) => format!("{}:***{}", &userinfo[..colon], &authority[at..]),
                None => authority.to_string(),
            }
        }
        None => authority.to_string(),
    };
    let tail = redact_params(&rest[authority_end..]);
    format!("{}{}{}", &url[..scheme_end + 3], redacted_authority, tail)
}

/// `password=...` in a query string or key-value connection string replaced by `***`.
fn redact_params(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("password=") {
        let before_ok = i == 0 || matches!(rest.as_bytes()[i - 1], b'?' | b'&' | b' ');
        out.push_str(&rest[..i + "password=".len()]);
        rest = &rest[i + "password=".len()..];
        if before_ok {
            let end = rest.find(['&', ' ']).unwrap_or(rest.len());
            out.push_str("***");
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://rounds:s3cret@db.example:5432/rounds?sslmode=disable"),
            "postgres://rounds:***@db.example:5432/rounds?sslmode=disable"
        );
        assert_eq!(
            redact_url("postgres://rounds@db/rounds?password=s3cret&x=1"),
            "postgres://rounds@db/rounds?password=***&x=1"
        );
        assert_eq!(redact_url("postgres://db/rounds"), "postgres://db/rounds");
        assert_eq!(
            redact_url("host=db password=s3cret user=r"),
            "host=db password=*** user=r"
        );
    }

    #[test]
    fn sqlstates_map_to_kinds() {
        assert_eq!(kind_of_state("40001"), DbErrorKind::Busy);
        assert_eq!(kind_of_state("40P01"), DbErrorKind::Busy);
        assert_eq!(kind_of_state("23505"), DbErrorKind::Constraint);
        assert_eq!(kind_of_state("23000"), DbErrorKind::Constraint);
        assert_eq!(kind_of_state("53100"), DbErrorKind::Full);
        assert_eq!(kind_of_state("25006"), DbErrorKind::ReadOnly);
        assert_eq!(kind_of_state("08006"), DbErrorKind::Unavailable);
        assert_eq!(kind_of_state("57P01"), DbErrorKind::Unavailable);
        assert_eq!(kind_of_state("XX001"), DbErrorKind::Corrupt);
        assert_eq!(kind_of_state("42P01"), DbErrorKind::Other);
    }
}
