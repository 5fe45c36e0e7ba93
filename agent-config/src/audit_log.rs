//! `[[audit_log]]`: logs whose integrity the agent watches (owned by the audit-log check).
//!
//! ```toml
//! [[audit_log]]
//! path = "/var/log/audit/audit.log"   # a path, or a glob in its last component
//!
//! [[audit_log]]
//! name = "EHR application log"
//! path = "/var/log/ehr/*.log"
//! rotated = ["/var/log/ehr/archive/*"]   # where rotated copies go, besides the default
//! ```
//!
//! A glob may hold `*` and `?` in the file name only (`/var/log/ehr/*.log`), never in a
//! directory, so the set of watched directories is fixed. Rotated copies are looked for beside
//! the log (`app.log.1`, `app.log-20261201`) and in every `rotated` glob.

use serde::Deserialize;
use toml::Spanned;

use crate::Problem;

/// One watched log as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuditLog {
    /// Absolute path of the log, or a glob in its file name (`/var/log/ehr/*.log`).
    pub path: Spanned<String>,
    /// A name for people; default the path.
    #[serde(default)]
    pub name: Option<Spanned<String>>,
    /// Absolute globs where rotated copies are found besides the log's own directory
    /// (logrotate `olddir`).
    #[serde(default)]
    pub rotated: Vec<Spanned<String>>,
}

/// A validated watched log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditLogSpec {
    pub name: String,
    /// Absolute path or glob (wildcards in the file name only).
    pub path: String,
    /// Extra absolute globs of rotated copies.
    pub rotated: Vec<String>,
}

impl AuditLogSpec {
    /// A spec watching exactly `path`, named by it, with the default rotation places.
    pub fn file(path: impl Into<String>) -> Self {
        let path = path.into();
        AuditLogSpec {
            name: path.clone(),
            path,
            rotated: Vec::new(),
        }
    }

    /// Whether `path` is a glob.
    pub fn is_glob(&self) -> bool {
        has_wildcard(&self.path)
    }
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?'])
}

fn is_absolute(p: &str) -> bool {
    p.starts_with('/') || p.get(1..3) == Some(":\\")
}

/// Why `p` is not an acceptable path or glob, if it is not.
fn path_problem(p: &str) -> Option<String> {
    if !is_absolute(p) {
        return Some(format!("`{p}` must be an absolute path"));
    }
    if p.contains(['[', ']', '{', '}']) {
        return Some(format!("`{p}`: only `*` and `?` are understood as wildcards"));
    }
    let dir = p.rsplit_once(['/', '\\']).map_or("", |(d, _)| d);
    if has_wildcard(dir) {
        return Some(format!(
            "`{p}`: wildcards are allowed in the file name only, not in a directory"
        ));
    }
    if p.ends_with(['/', '\\']) {
        return Some(format!("`{p}` names a directory, not a log file"));
    }
    None
}

/// Validates every `[[audit_log]]` table; problems go to `problems`.
pub(crate) fn validate(raw: Vec<Spanned<RawAuditLog>>, text: &str, problems: &mut Vec<Problem>) -> Vec<AuditLogSpec> {
    let mut out: Vec<AuditLogSpec> = Vec::new();
    for table in raw {
        let RawAuditLog { path, name, rotated } = table.into_inner();
        let p = path.get_ref();
        if let Some(message) = path_problem(p) {
            problems.push(Problem::at(text, path.span().start, "audit_log.path", message));
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
        let mut globs = Vec::new();
        let mut bad = false;
        for r in rotated {
            if let Some(message) = path_problem(r.get_ref()) {
                problems.push(Problem::at(text, r.span().start, "audit_log.rotated", message));
                bad = true;
            } else {
                globs.push(r.into_inner());
            }
        }
        if bad {
            continue;
        }
        out.push(AuditLogSpec {
            name: name.map_or_else(|| p.clone(), Spanned::into_inner),
            path: path.into_inner(),
            rotated: globs,
        });
    }
    out
}

#[cfg(test)]
mod tests {

    fn problems(toml: &str) -> Vec<String> {
        match crate::parse(toml, std::path::Path::new("agent.toml")) {
            Ok(_) => Vec::new(),
            Err(crate::ConfigError::Invalid { problems, .. }) => problems
                .iter()
                .map(|p| format!("{}: {p}", p.line.unwrap_or(0)))
                .collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    #[test]
    fn globs_in_the_file_name_and_rotation_places_are_accepted() {
        let cfg = crate::parse(
            "[[audit_log]]\npath = \"/var/log/ehr/*.log\"\nrotated = [\"/var/log/ehr/old/*\"]\n",
            std::path::Path::new("agent.toml"),
        )
        .unwrap();
        assert_eq!(cfg.audit_logs[0].rotated, vec!["/var/log/ehr/old/*".to_string()]);
        assert!(cfg.audit_logs[0].is_glob());
    }

    #[test]
    fn bad_paths_and_globs_are_named_with_their_line() {
        let p = problems(
            "[[audit_log]]\npath = \"/var/*/app.log\"\n\n[[audit_log]]\npath = \"/var/log/a.log\"\nrotated = [\"old/*\"]\n\n[[audit_log]]\npath = \"/var/log/[ab].log\"\n",
        );
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(
            p[0].starts_with("2: `audit_log.path`") && p[0].contains("not in a directory"),
            "{p:?}"
        );
        assert!(
            p[1].starts_with("6: `audit_log.rotated`") && p[1].contains("absolute"),
            "{p:?}"
        );
        assert!(
            p[2].starts_with("9: `audit_log.path`") && p[2].contains("only `*` and `?`"),
            "{p:?}"
        );
    }
}
