//! `[[audit_log]]`: logs whose integrity the agent watches (owned by the audit-log check).
//!
//! ```toml
//! [[audit_log]]
//! path = "/var/log/audit/audit.log"   # a path or a glob
//! ```

use serde::Deserialize;
use toml::Spanned;

use crate::Problem;

/// One watched log as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuditLog {
    /// Absolute path of the log, or a glob (`/var/log/ehr/*.log`).
    pub path: Spanned<String>,
    /// A name for people; default the path.
    #[serde(default)]
    pub name: Option<Spanned<String>>,
}

/// A validated watched log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditLogSpec {
    pub name: String,
    /// Absolute path or glob.
    pub path: String,
}

/// Validates every `[[audit_log]]` table; problems go to `problems`.
pub(crate) fn validate(raw: Vec<Spanned<RawAuditLog>>, text: &str, problems: &mut Vec<Problem>) -> Vec<AuditLogSpec> {
    let mut out: Vec<AuditLogSpec> = Vec::new();
    for table in raw {
        let RawAuditLog { path, name } = table.into_inner();
        let p = path.get_ref();
        let absolute = p.starts_with('/') || p.get(1..3) == Some(":\\");
        if !absolute {
            problems.push(Problem::at(
                text,
                path.span().start,
                "audit_log.path",
                format!("`{p}` must be an absolute path"),
            ));
            continue;
        }
        if out.iter().any(|a| &a.path == p) {
            problems.push(Problem::at(
                text,
                path.span().start,
                "audit_log.path",
                format!("`{p}` is watched by another [[audit_log]]"),
            ));
            continue;
        }
        out.push(AuditLogSpec {
            name: name.map_or_else(|| p.clone(), Spanned::into_inner),
            path: path.into_inner(),
        });
    }
    out
}
