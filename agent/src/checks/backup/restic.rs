//! restic: `restic snapshots --json --no-lock` (filtered by host, paths and tags), with
//! `stats = true` also `restic stats --json --mode restore-size` of the newest snapshot and the
//! one before, and with a `check_schedule` `restic check` whenever it is due.
//!
//! The password goes to restic as `RESTIC_PASSWORD_FILE` (the path of `password_file`) or
//! `RESTIC_PASSWORD` (the value of `password_env`), in the child's environment only. Reading
//! snapshots takes no lock, so a backup running at the same time is not disturbed. restic
//! repositories are always encrypted. restic records only completed snapshots, so a failed
//! run is seen as a snapshot that does not come (`hipaa.backup.recent`).

use chrono::{DateTime, Utc};
use rounds_agent_config::backup::BackupSource;
use rounds_protocol::obs::Backup;
use serde::Deserialize;

use super::{Cause, explain_with, password_env, run_tool, state};
use crate::checks::{CommandError, Host};

/// One snapshot as `restic snapshots --json` lists it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Snapshot {
    pub time: DateTime<Utc>,
    pub id: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

/// Parses `restic snapshots --json`: snapshots, oldest first.
pub fn parse_snapshots(json: &str) -> Result<Vec<Snapshot>, String> {
    let mut list: Vec<Snapshot> = serde_json::from_str(json.trim())
        .map_err(|e| format!("unrecognised output of restic snapshots --json: {e}"))?;
    list.sort_by_key(|s| s.time);
    Ok(list)
}

/// What `restic stats --json` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Stats {
    pub total_size: u64,
    #[serde(default)]
    pub total_file_count: u64,
}

/// Parses `restic stats --json`.
pub fn parse_stats(json: &str) -> Result<Stats, String> {
    serde_json::from_str(json.trim()).map_err(|e| format!("unrecognised output of restic stats --json: {e}"))
}

/// What a failed restic command means, in words that name the cause.
pub fn explain(repository: &str, what: &str, e: &CommandError) -> String {
    const CAUSES: &[Cause] = &[
        (&["wrong password"], "wrong password for restic repository {repo}"),
        (
            &[
                "is there a repository at the following location",
                "unable to open config file",
                "repository does not exist",
            ],
            "restic repository {repo} is missing: no repository at that location",
        ),
        (
            &["already locked", "unable to create lock"],
            "restic repository {repo} is locked by another process",
        ),
        (
            &["empty password", "reading password"],
            "no password for restic repository {repo}: set password_file or password_env",
        ),
    ];
    explain_with("restic", CAUSES, repository, what, e)
}

/// The repository argument and the password environment of `source`.
pub(crate) fn access(source: &BackupSource) -> Result<(String, Vec<(String, String)>), String> {
    let repo = source.repository.clone().unwrap_or_default();
    let env = password_env(source, Some("RESTIC_PASSWORD_FILE"), "RESTIC_PASSWORD")?;
    Ok((repo, env))
}

/// Runs `restic -r REPO ARGS...` for `source`.
pub(crate) fn restic(
    host: &Host,
    source: &BackupSource,
    args: &[&str],
    timeout: std::time::Duration,
) -> Result<String, String> {
    let (repo, env) = access(source)?;
    let mut all = vec!["-r", repo.as_str()];
    all.extend_from_slice(args);
    let what = format!("restic {}", args.first().copied().unwrap_or(""));
    run_tool(host, "restic", &all, &env, timeout).map_err(|e| explain(&repo, &what, &e))
}

/// Snapshots of `source`, oldest first, filtered as configured.
pub(crate) fn snapshots(host: &Host, source: &BackupSource) -> Result<Vec<Snapshot>, String> {
    let f = &source.filter;
    let mut args: Vec<&str> = vec!["snapshots", "--json", "--no-lock"];
    if let Some(h) = &f.host {
        args.extend(["--host", h.as_str()]);
    }
    for p in &f.paths {
        args.extend(["--path", p.as_str()]);
    }
    for t in &f.tags {
        args.extend(["--tag", t.as_str()]);
    }
    parse_snapshots(&restic(host, source, &args, source.timeout)?)
}

/// Observes a restic repository.
pub fn collect(source: &BackupSource, host: &Host) -> Result<Backup, String> {
    let list = snapshots(host, source)?;
    let newest = list.last();
    let mut b = Backup {
        tool: "restic".into(),
        repository: source.repository.clone().unwrap_or_default(),
        last_success_at: newest.map(|s| s.time),
        last_attempt_at: newest.map(|s| s.time),
        last_result: if newest.is_some() { "success" } else { "unknown" }.into(),
        last_error: newest
            .is_none()
            .then(|| "no snapshot in the repository matches the configured filters".into()),
        encrypted: Some(true),
        backup_count: Some(list.len() as u64),
        ..Backup::default()
    };
    if source.stats
        && let Some(newest) = newest
    {
        let size = |id: &str| -> Result<Stats, String> {
            parse_stats(&restic(
                host,
                source,
                &["stats", "--json", "--no-lock", "--mode", "restore-size", id],
                source.timeout,
            )?)
        };
        let latest = size(&newest.id)?;
        b.size_bytes = Some(latest.total_size);
        b.file_count = Some(latest.total_file_count);
        if list.len() >= 2 {
            b.previous_size_bytes = Some(size(&list[list.len() - 2].id)?.total_size);
        }
    }
    if let Some(schedule) = &source.check_schedule {
        let remembered = host
            .state_dir
            .as_ref()
            .map(|d| state::SourceState::load(&state::SourceState::path(d, &source.name)))
            .and_then(|s| s.integrity)
            .and_then(|i| i.at);
        let due = remembered.is_none_or(|last| schedule.after(&last).next().is_some_and(|next| next <= host.now));
        if due {
            b.integrity_checked_at = Some(host.now);
            match restic(host, source, &["check"], source.check_timeout) {
                Ok(_) => b.integrity_ok = Some(true),
                Err(e) => {
                    b.integrity_ok = Some(false);
                    b.integrity_error = Some(e);
                }
            }
        }
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testutil::recorded;

    #[test]
    fn snapshots_are_parsed_oldest_first() {
        let list = parse_snapshots(&recorded("backup/restic/snapshots.json")).unwrap();
        assert_eq!(list.len(), 2);
        assert!(list[0].time < list[1].time);
        assert!(list[1].paths[0].ends_with("/srv/ehr"));
        assert_eq!(list[1].hostname, "srv1");
        assert!(parse_snapshots("[]").unwrap().is_empty());
        assert!(parse_snapshots("Fatal: nope").unwrap_err().contains("unrecognised"));
    }

    #[test]
    fn failures_name_their_cause() {
        let failed = |stderr: &str| CommandError::Failed {
            program: "restic".into(),
            status: "exit status: 1".into(),
            stderr: stderr.into(),
            stdout: String::new(),
        };
        let e = explain(
            "/r",
            "restic snapshots",
            &failed("Fatal: wrong password or no key found"),
        );
        assert!(e.starts_with("wrong password for restic repository /r"), "{e}");
        let e = explain(
            "/r",
            "restic snapshots",
            &failed(
                "Fatal: unable to open config file: stat /r/config: no such file or directory\nIs there a repository at the following location?\n/r",
            ),
        );
        assert!(e.starts_with("restic repository /r is missing"), "{e}");
        let e = explain(
            "/r",
            "restic check",
            &failed(
                "unable to create lock in backend: repository is already locked exclusively by PID 11 on srv by root (UID 0, GID 0)",
            ),
        );
        assert!(e.starts_with("restic repository /r is locked"), "{e}");
        let e = explain(
            "/r",
            "restic snapshots",
            &CommandError::NotFound {
                program: "restic".into(),
            },
        );
        assert_eq!(e, "restic snapshots: restic is not installed (not found on PATH)");
    }
}
