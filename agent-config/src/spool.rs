//! `[spool]`: limits of the on-disk spool of undelivered reports (owned by the spool).
//!
//! ```toml
//! [spool]
//! max_bytes = 67108864      # 64 MiB
//! max_age_secs = 604800     # 7 days
//! ```

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::Problem;

/// Default size limit of the spool: 64 MiB.
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Default age limit of a spooled report: 7 days.
pub const DEFAULT_SPOOL_MAX_AGE_SECS: u64 = 7 * 86_400;

/// `[spool]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpool {
    /// Largest size of the spool on disk, in bytes; 1 MiB to 16 GiB, default 64 MiB.
    #[serde(default)]
    pub max_bytes: Option<Spanned<i64>>,
    /// Oldest a spooled report may be before it is dropped, in seconds; 1 hour to 90 days,
    /// default 7 days.
    #[serde(default)]
    pub max_age_secs: Option<Spanned<i64>>,
}

/// Validated spool limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolSettings {
    pub max_bytes: u64,
    pub max_age: Duration,
}

impl Default for SpoolSettings {
    fn default() -> Self {
        SpoolSettings {
            max_bytes: DEFAULT_SPOOL_MAX_BYTES,
            max_age: Duration::from_secs(DEFAULT_SPOOL_MAX_AGE_SECS),
        }
    }
}

pub(crate) fn validate(raw: Option<Spanned<RawSpool>>, text: &str, problems: &mut Vec<Problem>) -> SpoolSettings {
    let mut s = SpoolSettings::default();
    let Some(raw) = raw else { return s };
    let RawSpool {
        max_bytes,
        max_age_secs,
    } = raw.into_inner();
    if let Some(v) = max_bytes {
        let n = *v.get_ref();
        match u64::try_from(n) {
            Ok(b) if (1 << 20..=16 << 30).contains(&b) => s.max_bytes = b,
            _ => problems.push(Problem::at(
                text,
                v.span().start,
                "spool.max_bytes",
                format!("must be between 1 MiB (1048576) and 16 GiB, got {n}"),
            )),
        }
    }
    if let Some(v) = max_age_secs
        && let Some(d) = crate::secs_in(&v, 3600..=90 * 86_400, "spool.max_age_secs", text, problems)
    {
        s.max_age = d;
    }
    s
}
