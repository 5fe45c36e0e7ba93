//! `[[backup]]`: the backup sources the agent watches (owned by the backup check).
//!
//! ```toml
//! [[backup]]
//! name = "nightly"
//! kind = "restic"
//! repository = "/mnt/nas/restic"
//! password_file = "/etc/rounds/restic.pass"
//! ```
//!
//! A password is named by where it is (a file or an environment variable), never written in
//! the configuration: the configuration travels to the collector and back.
//!
//! Keys per kind (others are refused, so a misplaced key is noticed):
//!
//! | kind | required | optional |
//! | --- | --- | --- |
//! | `restic` | `repository` | `password_file` or `password_env`, `host`, `paths`, `tags`, `stats`, `check_schedule`, `check_timeout_secs` |
//! | `borg` | `repository` | `password_file` or `password_env`, `glob_archives`, `stats` |
//! | `folder` | `path` | |
//! | `status_file` | `path` | `format`, `time_field`, `result_field`, `error_field`, `time_pattern`, `result_pattern`, `error_pattern`, `success_values` |
//! | `time_machine`, `windows_server_backup`, `veeam` | | |
//!
//! Every kind also takes `destination` (`same_disk`, `usb`, `nas`, `cloud`, `other_disk`;
//! inferred when absent), `timeout_secs` (each command's limit, default 120) and
//! `restore_sample_files` (how many files `rounds-agent backup restore-test` restores, default
//! 20; restic and borg).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::Problem;

/// Default limit of each backup command, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 120;
/// Default limit of `restic check`, in seconds.
pub const DEFAULT_CHECK_TIMEOUT_SECS: u64 = 3600;
/// Default number of files a restore test restores.
pub const DEFAULT_RESTORE_SAMPLE_FILES: usize = 20;
/// Results of a status file that count as success when `success_values` is not given.
pub const DEFAULT_SUCCESS_VALUES: &[&str] = &["success", "succeeded", "ok", "completed", "true", "0"];

/// One backup source as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackup {
    /// Name of the source, unique among `[[backup]]` tables; the subject of its observations.
    pub name: Spanned<String>,
    /// `restic`, `borg`, `folder`, `status_file`, `time_machine`, `windows_server_backup`, `veeam`.
    pub kind: Spanned<String>,
    /// Repository (restic, borg): a path or a URL the tool understands.
    #[serde(default)]
    pub repository: Option<Spanned<String>>,
    /// File holding the repository password or passphrase (restic, borg).
    #[serde(default)]
    pub password_file: Option<Spanned<String>>,
    /// Environment variable holding the repository password or passphrase (restic, borg).
    #[serde(default)]
    pub password_env: Option<Spanned<String>>,
    /// Folder (folder) or status file (status_file).
    #[serde(default)]
    pub path: Option<Spanned<String>>,
    /// Only snapshots of this host (restic `--host`).
    #[serde(default)]
    pub host: Option<Spanned<String>>,
    /// Only snapshots of these paths (restic `--path`, each).
    #[serde(default)]
    pub paths: Option<Spanned<Vec<String>>>,
    /// Only snapshots with these tags (restic `--tag`, each).
    #[serde(default)]
    pub tags: Option<Spanned<Vec<String>>>,
    /// Only archives whose name matches this glob (borg `--glob-archives`).
    #[serde(default)]
    pub glob_archives: Option<Spanned<String>>,
    /// Read sizes too (`restic stats`, `borg info`); default false.
    #[serde(default)]
    pub stats: Option<bool>,
    /// When to verify the repository's integrity (`restic check`): a cron expression with
    /// seconds, e.g. `"0 0 3 * * Sun"`; none: never.
    #[serde(default)]
    pub check_schedule: Option<Spanned<String>>,
    /// Limit of `restic check`, seconds; default 3600.
    #[serde(default)]
    pub check_timeout_secs: Option<Spanned<i64>>,
    /// Where the copies are: `same_disk`, `usb`, `nas`, `cloud`, `other_disk`; inferred from the
    /// repository or path when absent.
    #[serde(default)]
    pub destination: Option<Spanned<String>>,
    /// Limit of each command, seconds; default 120.
    #[serde(default)]
    pub timeout_secs: Option<Spanned<i64>>,
    /// Files a restore test restores (restic, borg); default 20.
    #[serde(default)]
    pub restore_sample_files: Option<Spanned<i64>>,
    /// Status file format, `json` or `text`; default by extension (`.json`: json).
    #[serde(default)]
    pub format: Option<Spanned<String>>,
    /// JSON status file: dotted key of the time of the last run; default `time`.
    #[serde(default)]
    pub time_field: Option<Spanned<String>>,
    /// JSON status file: dotted key of the result; default `result`.
    #[serde(default)]
    pub result_field: Option<Spanned<String>>,
    /// JSON status file: dotted key of the error text; default `error`.
    #[serde(default)]
    pub error_field: Option<Spanned<String>>,
    /// Text status file: regular expression whose first group (or group `time`) is the time
    /// of the last run (RFC 3339, `YYYY-MM-DD HH:MM:SS` UTC, or Unix seconds).
    #[serde(default)]
    pub time_pattern: Option<Spanned<String>>,
    /// Text status file: regular expression whose first group (or group `result`) is the result.
    #[serde(default)]
    pub result_pattern: Option<Spanned<String>>,
    /// Text status file: regular expression whose first group (or group `error`) is the error.
    #[serde(default)]
    pub error_pattern: Option<Spanned<String>>,
    /// Results that mean success (case-insensitive); default `success`, `succeeded`, `ok`,
    /// `completed`, `true`, `0`.
    #[serde(default)]
    pub success_values: Option<Vec<String>>,
}

/// What kind of backup a source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupKind {
    Restic,
    Borg,
    Folder,
    StatusFile,
    TimeMachine,
    WindowsServerBackup,
    Veeam,
}

impl BackupKind {
    /// Every kind with its name in the file.
    pub const ALL: &[(BackupKind, &str)] = &[
        (BackupKind::Restic, "restic"),
        (BackupKind::Borg, "borg"),
        (BackupKind::Folder, "folder"),
        (BackupKind::StatusFile, "status_file"),
        (BackupKind::TimeMachine, "time_machine"),
        (BackupKind::WindowsServerBackup, "windows_server_backup"),
        (BackupKind::Veeam, "veeam"),
    ];

    /// The kind's name in the file.
    pub fn as_str(self) -> &'static str {
        Self::ALL.iter().find(|(k, _)| *k == self).map_or("", |(_, n)| n)
    }
}

/// Where a backup's copies are kept. A copy on the same disk as the data is not a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    SameDisk,
    Usb,
    Nas,
    Cloud,
    OtherDisk,
}

impl Destination {
    /// Every destination with its name in the file and on the wire.
    pub const ALL: &[(Destination, &str)] = &[
        (Destination::SameDisk, "same_disk"),
        (Destination::Usb, "usb"),
        (Destination::Nas, "nas"),
        (Destination::Cloud, "cloud"),
        (Destination::OtherDisk, "other_disk"),
    ];

    /// The destination's name.
    pub fn as_str(self) -> &'static str {
        Self::ALL.iter().find(|(k, _)| *k == self).map_or("", |(_, n)| n)
    }
}

/// Where a repository password is read from. The password itself is never kept here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    File(PathBuf),
    Env(String),
}

/// Restic snapshot filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotFilter {
    pub host: Option<String>,
    pub paths: Vec<String>,
    pub tags: Vec<String>,
    /// borg `--glob-archives`.
    pub glob_archives: Option<String>,
}

/// How a status file says when the last run was and how it went.
#[derive(Debug, Clone)]
pub enum StatusFormat {
    /// A JSON object; each field a dotted key.
    Json {
        time_field: String,
        result_field: String,
        error_field: String,
    },
    /// Text; each pattern a regular expression with one group.
    Text {
        time: regex::Regex,
        result: Option<regex::Regex>,
        error: Option<regex::Regex>,
    },
}

/// A validated status-file layout.
#[derive(Debug, Clone)]
pub struct StatusFileSpec {
    pub format: StatusFormat,
    /// Lowercase results that mean success.
    pub success_values: Vec<String>,
}

/// A validated backup source.
#[derive(Debug, Clone)]
pub struct BackupSource {
    pub name: String,
    pub kind: BackupKind,
    pub repository: Option<String>,
    pub password: Option<PasswordSource>,
    pub path: Option<PathBuf>,
    pub filter: SnapshotFilter,
    /// Read sizes (`restic stats`, `borg info`).
    pub stats: bool,
    /// When `restic check` is due.
    pub check_schedule: Option<cron::Schedule>,
    pub check_timeout: Duration,
    /// Given in the file; `None`: inferred by the agent.
    pub destination: Option<Destination>,
    /// Limit of each command.
    pub timeout: Duration,
    pub restore_sample_files: usize,
    /// Layout of a `status_file`.
    pub status: Option<StatusFileSpec>,
}

fn compile(
    pattern: Option<Spanned<String>>,
    key: &str,
    text: &str,
    problems: &mut Vec<Problem>,
) -> Option<regex::Regex> {
    let p = pattern?;
    match regex::Regex::new(p.get_ref()) {
        Ok(re) if re.captures_len() >= 2 => Some(re),
        Ok(_) => {
            problems.push(Problem::at(
                text,
                p.span().start,
                format!("backup.{key}"),
                "the pattern needs a group `(...)` around the value",
            ));
            None
        }
        Err(e) => {
            problems.push(Problem::at(
                text,
                p.span().start,
                format!("backup.{key}"),
                format!("invalid regular expression: {e}"),
            ));
            None
        }
    }
}

/// Validates every `[[backup]]` table; problems go to `problems`.
pub(crate) fn validate(raw: Vec<Spanned<RawBackup>>, text: &str, problems: &mut Vec<Problem>) -> Vec<BackupSource> {
    crate::duplicate_names(
        raw.iter()
            .map(|b| (b.get_ref().name.get_ref().as_str(), b.get_ref().name.span().start)),
        "backup",
        text,
        problems,
    );
    let mut out = Vec::new();
    for table in raw {
        let at = table.span().start;
        let RawBackup {
            name,
            kind,
            repository,
            password_file,
            password_env,
            path,
            host,
            paths,
            tags,
            glob_archives,
            stats,
            check_schedule,
            check_timeout_secs,
            destination,
            timeout_secs,
            restore_sample_files,
            format,
            time_field,
            result_field,
            error_field,
            time_pattern,
            result_pattern,
            error_pattern,
            success_values,
        } = table.into_inner();
        let before = problems.len();
        if name.get_ref().trim().is_empty() {
            problems.push(Problem::at(text, name.span().start, "backup.name", "must not be empty"));
        }
        let Some(kind_v) = BackupKind::ALL
            .iter()
            .find(|(_, n)| n == kind.get_ref())
            .map(|(k, _)| *k)
        else {
            let known: Vec<&str> = BackupKind::ALL.iter().map(|(_, n)| *n).collect();
            problems.push(Problem::at(
                text,
                kind.span().start,
                "backup.kind",
                format!(
                    "unknown backup kind `{}`; known kinds: {}",
                    kind.get_ref(),
                    known.join(", ")
                ),
            ));
            continue;
        };
        let needs = |field: &str, present: bool, problems: &mut Vec<Problem>| {
            if !present {
                problems.push(Problem::at(
                    text,
                    at,
                    format!("backup.{field}"),
                    format!("a `{}` backup needs `{field}`", kind_v.as_str()),
                ));
            }
        };
        // Keys that only some kinds read: given for another kind, they are a mistake.
        let only = |field: &str, offset: Option<usize>, kinds: &[BackupKind], problems: &mut Vec<Problem>| {
            if let Some(offset) = offset
                && !kinds.contains(&kind_v)
            {
                let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
                problems.push(Problem::at(
                    text,
                    offset,
                    format!("backup.{field}"),
                    format!(
                        "`{field}` applies to {} backups only, not `{}`",
                        names.join(", "),
                        kind_v.as_str()
                    ),
                ));
            }
        };
        use BackupKind::{Borg, Restic, StatusFile};
        let span = |s: &Option<Spanned<String>>| s.as_ref().map(|v| v.span().start);
        match kind_v {
            Restic | Borg => needs("repository", repository.is_some(), problems),
            BackupKind::Folder | StatusFile => needs("path", path.is_some(), problems),
            BackupKind::TimeMachine | BackupKind::WindowsServerBackup | BackupKind::Veeam => {}
        }
        only("repository", span(&repository), &[Restic, Borg], problems);
        only("password_file", span(&password_file), &[Restic, Borg], problems);
        only("password_env", span(&password_env), &[Restic, Borg], problems);
        only("path", span(&path), &[BackupKind::Folder, StatusFile], problems);
        only("host", span(&host), &[Restic], problems);
        only("paths", paths.as_ref().map(|v| v.span().start), &[Restic], problems);
        only("tags", tags.as_ref().map(|v| v.span().start), &[Restic], problems);
        only("glob_archives", span(&glob_archives), &[Borg], problems);
        only("stats", stats.map(|_| at), &[Restic, Borg], problems);
        only("check_schedule", span(&check_schedule), &[Restic], problems);
        only(
            "check_timeout_secs",
            check_timeout_secs.as_ref().map(|v| v.span().start),
            &[Restic],
            problems,
        );
        only(
            "restore_sample_files",
            restore_sample_files.as_ref().map(|v| v.span().start),
            &[Restic, Borg],
            problems,
        );
        for (field, v) in [
            ("format", &format),
            ("time_field", &time_field),
            ("result_field", &result_field),
            ("error_field", &error_field),
            ("time_pattern", &time_pattern),
            ("result_pattern", &result_pattern),
            ("error_pattern", &error_pattern),
        ] {
            only(field, span(v), &[StatusFile], problems);
        }
        only(
            "success_values",
            success_values.as_ref().map(|_| at),
            &[StatusFile],
            problems,
        );

        let password = match (password_file, password_env) {
            (Some(_), Some(e)) => {
                problems.push(Problem::at(
                    text,
                    e.span().start,
                    "backup.password_env",
                    "give `password_file` or `password_env`, not both",
                ));
                None
            }
            (Some(f), None) => Some(PasswordSource::File(PathBuf::from(f.into_inner()))),
            (None, Some(e)) => Some(PasswordSource::Env(e.into_inner())),
            (None, None) => None,
        };
        let check_schedule = check_schedule.and_then(|c| match crate::parse_schedule(c.get_ref()) {
            Ok(s) => Some(s),
            Err(message) => {
                problems.push(Problem::at(text, c.span().start, "backup.check_schedule", message));
                None
            }
        });
        let secs = |v: Option<Spanned<i64>>, key: &str, default: u64, problems: &mut Vec<Problem>| match v {
            None => Duration::from_secs(default),
            Some(v) => crate::secs_in(&v, 1..=86_400, key, text, problems).unwrap_or_default(),
        };
        let timeout = secs(timeout_secs, "backup.timeout_secs", DEFAULT_TIMEOUT_SECS, problems);
        let check_timeout = secs(
            check_timeout_secs,
            "backup.check_timeout_secs",
            DEFAULT_CHECK_TIMEOUT_SECS,
            problems,
        );
        let restore_sample_files = match restore_sample_files {
            None => DEFAULT_RESTORE_SAMPLE_FILES,
            Some(n) => match usize::try_from(*n.get_ref()) {
                Ok(v) if (1..=10_000).contains(&v) => v,
                _ => {
                    problems.push(Problem::at(
                        text,
                        n.span().start,
                        "backup.restore_sample_files",
                        format!("must be between 1 and 10000, got {}", n.get_ref()),
                    ));
                    0
                }
            },
        };
        let destination = destination.and_then(|d| {
            let found = Destination::ALL.iter().find(|(_, n)| n == d.get_ref()).map(|(k, _)| *k);
            if found.is_none() {
                let known: Vec<&str> = Destination::ALL.iter().map(|(_, n)| *n).collect();
                problems.push(Problem::at(
                    text,
                    d.span().start,
                    "backup.destination",
                    format!("unknown destination `{}`; known: {}", d.get_ref(), known.join(", ")),
                ));
            }
            found
        });
        let status = (kind_v == StatusFile).then(|| {
            let json = match &format {
                None => path.as_ref().is_some_and(|p| p.get_ref().ends_with(".json")),
                Some(f) if f.get_ref() == "json" => true,
                Some(f) if f.get_ref() == "text" => false,
                Some(f) => {
                    problems.push(Problem::at(
                        text,
                        f.span().start,
                        "backup.format",
                        format!("unknown status file format `{}`; known: json, text", f.get_ref()),
                    ));
                    false
                }
            };
            let field = |f: Option<Spanned<String>>, default: &str| f.map_or(default.to_string(), Spanned::into_inner);
            let format = if json {
                for (key, v) in [
                    ("time_pattern", &time_pattern),
                    ("result_pattern", &result_pattern),
                    ("error_pattern", &error_pattern),
                ] {
                    if let Some(v) = v {
                        problems.push(Problem::at(
                            text,
                            v.span().start,
                            format!("backup.{key}"),
                            "patterns apply to text status files; a JSON file names fields (`time_field`, `result_field`, `error_field`)",
                        ));
                    }
                }
                StatusFormat::Json {
                    time_field: field(time_field, "time"),
                    result_field: field(result_field, "result"),
                    error_field: field(error_field, "error"),
                }
            } else {
                for (key, v) in [
                    ("time_field", &time_field),
                    ("result_field", &result_field),
                    ("error_field", &error_field),
                ] {
                    if let Some(v) = v {
                        problems.push(Problem::at(
                            text,
                            v.span().start,
                            format!("backup.{key}"),
                            "fields apply to JSON status files; a text file takes patterns (`time_pattern`, ...)",
                        ));
                    }
                }
                if time_pattern.is_none() {
                    problems.push(Problem::at(
                        text,
                        at,
                        "backup.time_pattern",
                        "a text `status_file` needs `time_pattern`",
                    ));
                }
                let time = compile(time_pattern, "time_pattern", text, problems);
                let result = compile(result_pattern, "result_pattern", text, problems);
                let error = compile(error_pattern, "error_pattern", text, problems);
                match time {
                    Some(time) => StatusFormat::Text { time, result, error },
                    None => StatusFormat::Json {
                        time_field: String::new(),
                        result_field: String::new(),
                        error_field: String::new(),
                    },
                }
            };
            StatusFileSpec {
                format,
                success_values: success_values
                    .unwrap_or_else(|| DEFAULT_SUCCESS_VALUES.iter().map(|s| s.to_string()).collect())
                    .into_iter()
                    .map(|s| s.to_lowercase())
                    .collect(),
            }
        });
        if problems.len() == before {
            out.push(BackupSource {
                name: name.into_inner(),
                kind: kind_v,
                repository: repository.map(Spanned::into_inner),
                password,
                path: path.map(|p| PathBuf::from(p.into_inner())),
                filter: SnapshotFilter {
                    host: host.map(Spanned::into_inner),
                    paths: paths.map(Spanned::into_inner).unwrap_or_default(),
                    tags: tags.map(Spanned::into_inner).unwrap_or_default(),
                    glob_archives: glob_archives.map(Spanned::into_inner),
                },
                stats: stats.unwrap_or(false),
                check_schedule,
                check_timeout,
                destination,
                timeout,
                restore_sample_files,
                status,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn problems(text: &str) -> Vec<String> {
        match crate::parse(text, Path::new("agent.toml")) {
            Ok(_) => Vec::new(),
            Err(e) => e
                .problems()
                .iter()
                .map(|p| format!("{}:{}", p.line.unwrap_or(0), p))
                .collect(),
        }
    }

    #[test]
    fn a_full_restic_source_validates() {
        let text = r#"
[[backup]]
name = "nightly"
kind = "restic"
repository = "/mnt/nas/restic"
password_file = "/etc/rounds/restic.pass"
host = "srv1"
paths = ["/srv/ehr"]
tags = ["daily"]
stats = true
check_schedule = "0 0 3 * * Sun"
destination = "nas"
timeout_secs = 60
"#;
        let c = crate::parse(text, Path::new("agent.toml")).unwrap();
        let b = &c.backups[0];
        assert_eq!(b.filter.host.as_deref(), Some("srv1"));
        assert_eq!(b.filter.paths, ["/srv/ehr"]);
        assert_eq!(b.filter.tags, ["daily"]);
        assert!(b.stats && b.check_schedule.is_some());
        assert_eq!(b.destination, Some(Destination::Nas));
        assert_eq!(b.timeout, Duration::from_secs(60));
        assert_eq!(b.password, Some(PasswordSource::File("/etc/rounds/restic.pass".into())));
    }

    #[test]
    fn misplaced_and_bad_keys_are_named_with_their_line() {
        let text = r#"[[backup]]
name = "usb"
kind = "folder"
path = "/mnt/usb"
tags = ["x"]
destination = "moon"
timeout_secs = 0

[[backup]]
name = "s"
kind = "status_file"
path = "/var/log/rsync-status.txt"
time_pattern = "no group"
check_schedule = "* * * * *"
"#;
        let got = problems(text);
        let want = [
            "5:`backup.tags`: `tags` applies to restic backups only, not `folder`",
            "6:`backup.destination`: unknown destination `moon`; known: same_disk, usb, nas, cloud, other_disk",
            "7:`backup.timeout_secs`: must be between 1 and 86400 seconds, got 0",
            "14:`backup.check_schedule`: `check_schedule` applies to restic backups only, not `status_file`",
            "14:`backup.check_schedule`: invalid cron expression",
            "13:`backup.time_pattern`: the pattern needs a group `(...)` around the value",
        ];
        for w in want {
            assert!(got.iter().any(|g| g.starts_with(w)), "{w:?} not in {got:#?}");
        }
    }

    #[test]
    fn status_files_are_json_by_extension_and_text_needs_a_time_pattern() {
        let json = "[[backup]]\nname = \"s\"\nkind = \"status_file\"\npath = \"/var/lib/x/status.json\"\ntime_field = \"last.finished\"\n";
        let c = crate::parse(json, Path::new("a.toml")).unwrap();
        let spec = c.backups[0].status.as_ref().unwrap();
        assert!(matches!(&spec.format, StatusFormat::Json { time_field, .. } if time_field == "last.finished"));
        let text = "[[backup]]\nname = \"s\"\nkind = \"status_file\"\npath = \"/var/log/status.txt\"\n";
        assert_eq!(
            problems(text),
            ["1:`backup.time_pattern`: a text `status_file` needs `time_pattern`"]
        );
    }
}
