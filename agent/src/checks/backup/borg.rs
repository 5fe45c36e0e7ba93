//! borg: `borg list --json --bypass-lock REPO` (archives, encryption mode), with
//! `stats = true` also `borg info --json --bypass-lock --last 2 REPO` (sizes of the newest two
//! archives).
//!
//! The passphrase goes to borg as `BORG_PASSPHRASE` in the child's environment only (read from
//! `password_file` or `password_env`). borg prints archive times in the machine's local time
//! without an offset; they are read as local time. A repository is encrypted unless its mode
//! is `none` or `authenticated*`.

use chrono::{DateTime, Local, NaiveDateTime, TimeZone, Utc};
use rounds_agent_config::backup::BackupSource;
use rounds_protocol::obs::Backup;
use serde::Deserialize;

use super::{Cause, explain_with, password_env, run_tool};
use crate::checks::{CommandError, Host};

#[derive(Debug, Deserialize)]
struct List {
    archives: Vec<Archive>,
    #[serde(default)]
    encryption: Option<Encryption>,
}

#[derive(Debug, Deserialize)]
struct Encryption {
    mode: String,
}

/// One archive as `borg list --json` or `borg info --json` gives it.
#[derive(Debug, Clone, Deserialize)]
pub struct Archive {
    pub name: String,
    /// Local time without offset (borg 1.x).
    pub start: String,
    #[serde(default)]
    pub stats: Option<ArchiveStats>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct ArchiveStats {
    pub original_size: u64,
    #[serde(default)]
    pub nfiles: u64,
}

/// What `borg list --json` says: archive times (oldest first) and whether it is encrypted.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    pub times: Vec<DateTime<Utc>>,
    pub names: Vec<String>,
    pub encrypted: Option<bool>,
}

/// A borg time (`2026-11-23T02:00:00.000000`, local time, or with an offset).
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .map_err(|e| format!("unrecognised borg time {s:?}: {e}"))?;
    Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| format!("borg time {s:?} does not exist in the local time zone"))
}

/// Parses `borg list --json`.
pub fn parse_list(json: &str) -> Result<Listing, String> {
    let list: List =
        serde_json::from_str(json.trim()).map_err(|e| format!("unrecognised output of borg list --json: {e}"))?;
    let mut archives: Vec<(DateTime<Utc>, String)> = list
        .archives
        .iter()
        .map(|a| parse_time(&a.start).map(|t| (t, a.name.clone())))
        .collect::<Result<_, _>>()?;
    archives.sort();
    Ok(Listing {
        times: archives.iter().map(|(t, _)| *t).collect(),
        names: archives.into_iter().map(|(_, n)| n).collect(),
        encrypted: list
            .encryption
            .map(|e| e.mode != "none" && !e.mode.starts_with("authenticated")),
    })
}

/// Parses `borg info --json`: the archives' `(start, original size, files)`, oldest first.
pub fn parse_info(json: &str) -> Result<Vec<(DateTime<Utc>, u64, u64)>, String> {
    let list: List =
        serde_json::from_str(json.trim()).map_err(|e| format!("unrecognised output of borg info --json: {e}"))?;
    let mut out = Vec::new();
    for a in list.archives {
        let s = a
            .stats
            .ok_or_else(|| format!("borg info --json: archive {} has no stats", a.name))?;
        out.push((parse_time(&a.start)?, s.original_size, s.nfiles));
    }
    out.sort_by_key(|(t, _, _)| *t);
    Ok(out)
}

/// What a failed borg command means, in words that name the cause.
pub fn explain(repository: &str, what: &str, e: &CommandError) -> String {
    const CAUSES: &[Cause] = &[
        (
            &["is incorrect", "passphrase is incorrect"],
            "wrong passphrase for borg repository {repo}",
        ),
        (
            &["does not exist", "is not a valid repository"],
            "borg repository {repo} is missing: no repository at that location",
        ),
        (
            &["failed to create/acquire the lock", "lock.exclusive"],
            "borg repository {repo} is locked by another process",
        ),
        (
            &["enter passphrase"],
            "no passphrase for borg repository {repo}: set password_file or password_env",
        ),
    ];
    explain_with("borg", CAUSES, repository, what, e)
}

/// Runs `borg ARGS... REPO` for `source`.
pub(crate) fn borg(host: &Host, source: &BackupSource, args: &[&str], target: &str) -> Result<String, String> {
    let repo = source.repository.clone().unwrap_or_default();
    let mut env = password_env(source, None, "BORG_PASSPHRASE")?;
    // Read-only access: an unencrypted repository is reported as such instead of a prompt.
    env.push(("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK".into(), "yes".into()));
    let mut all: Vec<&str> = args.to_vec();
    all.push(target);
    let what = format!("borg {}", args.first().copied().unwrap_or(""));
    run_tool(host, "borg", &all, &env, source.timeout).map_err(|e| explain(&repo, &what, &e))
}

/// Observes a borg repository.
pub fn collect(source: &BackupSource, host: &Host) -> Result<Backup, String> {
    let repo = source.repository.clone().unwrap_or_default();
    let mut args = vec!["list", "--json", "--bypass-lock"];
    if let Some(g) = &source.filter.glob_archives {
        args.extend(["--glob-archives", g.as_str()]);
    }
    let listing = parse_list(&borg(host, source, &args, &repo)?)?;
    let newest = listing.times.last().copied();
    let mut b = Backup {
        tool: "borg".into(),
        repository: repo.clone(),
        last_success_at: newest,
        last_attempt_at: newest,
        last_result: if newest.is_some() { "success" } else { "unknown" }.into(),
        last_error: newest
            .is_none()
            .then(|| "no archive in the repository matches the configured filters".into()),
        encrypted: listing.encrypted,
        backup_count: Some(listing.times.len() as u64),
        ..Backup::default()
    };
    if source.stats && newest.is_some() {
        let mut args = vec!["info", "--json", "--bypass-lock", "--last", "2"];
        if let Some(g) = &source.filter.glob_archives {
            args.extend(["--glob-archives", g.as_str()]);
        }
        let info = parse_info(&borg(host, source, &args, &repo)?)?;
        if let Some((_, size, files)) = info.last() {
            b.size_bytes = Some(*size);
            b.file_count = Some(*files);
        }
        if info.len() >= 2 {
            b.previous_size_bytes = Some(info[info.len() - 2].1);
        }
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_gives_times_and_encryption() {
        let json = r#"{"archives": [{"archive": "b", "barchive": "b", "id": "1", "name": "b", "start": "2026-11-23T02:00:00.000000", "time": "2026-11-23T02:00:00.000000"},
            {"archive": "a", "barchive": "a", "id": "2", "name": "a", "start": "2026-11-22T02:00:00.000000", "time": "2026-11-22T02:00:00.000000"}],
            "encryption": {"mode": "repokey"}, "repository": {"id": "x", "last_modified": "2026-11-23T02:00:01.000000", "location": "/r"}}"#;
        let l = parse_list(json).unwrap();
        assert_eq!(l.names, ["a", "b"]);
        assert_eq!(l.encrypted, Some(true));
        let plain = json.replace("repokey", "none");
        assert_eq!(parse_list(&plain).unwrap().encrypted, Some(false));
        let auth = json.replace("repokey", "authenticated-blake2");
        assert_eq!(parse_list(&auth).unwrap().encrypted, Some(false));
    }

    #[test]
    fn failures_name_their_cause() {
        let failed = |stderr: &str| CommandError::Failed {
            program: "borg".into(),
            status: "exit status: 2".into(),
            stderr: stderr.into(),
            stdout: String::new(),
        };
        let e = explain(
            "/r",
            "borg list",
            &failed(
                "passphrase supplied in BORG_PASSPHRASE, by BORG_PASSCOMMAND or via BORG_PASSPHRASE_FD is incorrect.",
            ),
        );
        assert!(e.starts_with("wrong passphrase for borg repository /r"), "{e}");
        let e = explain("/r", "borg list", &failed("Repository /r does not exist."));
        assert!(e.starts_with("borg repository /r is missing"), "{e}");
        let e = explain(
            "/r",
            "borg list",
            &failed("Failed to create/acquire the lock /r/lock.exclusive (timeout)."),
        );
        assert!(e.starts_with("borg repository /r is locked"), "{e}");
    }
}
