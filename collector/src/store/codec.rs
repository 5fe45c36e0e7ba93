//! How values are stored, whatever the backend: times as integer milliseconds since the epoch,
//! JSON as text, enum names through their serde names (shared by SQLite and PostgreSQL, issue 17).

use chrono::{DateTime, Utc};
use rounds_protocol::ObservationStatus;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::store::{DbErrorKind, StoreError, StoreResult};

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

/// The stored text of an observation's payload: compact JSON, the bytes `Value`'s `Display`
/// writes (a repeat is told by comparing it with the stored text), but written into a buffer
/// at once instead of through `fmt`, which cost twice as much per payload (core, issue 7).
pub fn payload_text(data: &serde_json::Value) -> String {
    serde_json::to_string(data).unwrap_or_else(|_| data.to_string())
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

#[cfg(test)]
mod tests {
    /// Payloads stored before [`super::payload_text`] were `Value`'s `Display`: the same bytes,
    /// or every unchanged payload would read as changed once after an upgrade.
    #[test]
    fn payload_text_is_the_display_text() {
        let v = serde_json::json!({
            "b": [1, -2.5, 1e300, null, true],
            "a": "quote \" backslash \\ tab \t nul \u{0} bell \u{7} é 🦀 </script>",
            "nested": {"z": {}, "y": [], "x": [{"k": "v"}]},
            "n": u64::MAX,
        });
        assert_eq!(super::payload_text(&v), v.to_string());
        for v in [serde_json::Value::Null, serde_json::json!(0.1), serde_json::json!("")] {
            assert_eq!(super::payload_text(&v), v.to_string());
        }
    }
}
