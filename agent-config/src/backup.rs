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

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use crate::Problem;

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

/// Where a repository password is read from. The password itself is never kept here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    File(PathBuf),
    Env(String),
}

/// A validated backup source.
#[derive(Debug, Clone)]
pub struct BackupSource {
    pub name: String,
    pub kind: BackupKind,
    pub repository: Option<String>,
    pub password: Option<PasswordSource>,
    pub path: Option<PathBuf>,
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
        match kind_v {
            BackupKind::Restic | BackupKind::Borg => {
                needs("repository", repository.is_some(), problems);
            }
            BackupKind::Folder | BackupKind::StatusFile => needs("path", path.is_some(), problems),
            BackupKind::TimeMachine | BackupKind::WindowsServerBackup | BackupKind::Veeam => {}
        }
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
        if problems.len() == before {
            out.push(BackupSource {
                name: name.into_inner(),
                kind: kind_v,
                repository: repository.map(Spanned::into_inner),
                password,
                path: path.map(|p| PathBuf::from(p.into_inner())),
            });
        }
    }
    out
}
