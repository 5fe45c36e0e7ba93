//! Restore tests (`rounds-agent backup restore-test NAME`): restore a sample of files of the
//! newest backup into a private folder in the state dir, compare them with the repository's
//! own record, delete them, and record the result and its duration in the state dir, where the
//! next `backup` observation picks it up.
//!
//! - restic: `restic ls --json ID` lists the snapshot's files with their sizes; an evenly
//!   spread sample is restored with `restic restore ID --target DIR --verify --include ...`
//!   (restic re-reads and checks every restored file against the blobs' hashes) and each
//!   restored file must have the size `ls` recorded.
//! - borg: `borg list --json-lines REPO::ARCHIVE` and `borg extract` of the sample in the
//!   folder (borg verifies every chunk's hash while extracting), then the same size
//!   comparison.
//!
//! The restored files are patient data: the folder is mode 0700 inside the state dir, nothing
//! in them is read but their sizes, and they are deleted before the result is recorded.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rounds_agent_config::backup::{BackupKind, BackupSource};
use serde::Deserialize;

use super::state::{Outcome, SourceState};
use super::{borg, restic};
use crate::checks::Host;

/// The result of one restore test.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreTest {
    pub outcome: Outcome,
    /// Files restored and compared, and their total size.
    pub files: usize,
    pub bytes: u64,
}

/// Why a restore test could not even start.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("a restore test needs a state dir to record its result")]
    NoStateDir,
    #[error("restore tests are run for restic and borg backups; `{name}` is a {kind} backup")]
    Unsupported { name: String, kind: &'static str },
    #[error("cannot prepare the restore folder {path}: {source}")]
    Folder { path: PathBuf, source: std::io::Error },
    #[error("cannot record the restore test in {path}: {source}")]
    Record { path: PathBuf, source: std::io::Error },
}

/// One file of a backup's own record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub path: String,
    pub size: u64,
}

#[derive(Deserialize)]
struct ResticNode {
    #[serde(default)]
    r#type: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    struct_type: Option<String>,
}

/// Files of `restic ls --json` output (one JSON object a line; the first is the snapshot).
pub fn parse_restic_ls(text: &str) -> Vec<Recorded> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<ResticNode>(l).ok())
        .filter(|n| n.struct_type.as_deref() != Some("snapshot") && n.r#type == "file")
        .map(|n| Recorded {
            path: n.path,
            size: n.size,
        })
        .collect()
}

#[derive(Deserialize)]
struct BorgItem {
    #[serde(default)]
    r#type: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    size: u64,
}

/// Regular files of `borg list --json-lines` output.
pub fn parse_borg_items(text: &str) -> Vec<Recorded> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<BorgItem>(l).ok())
        .filter(|i| i.r#type == "-")
        .map(|i| Recorded {
            path: i.path,
            size: i.size,
        })
        .collect()
}

/// Up to `n` files spread evenly over `files` (deterministic, so a failure can be repeated).
pub fn sample(files: &[Recorded], n: usize) -> Vec<Recorded> {
    if files.len() <= n {
        return files.to_vec();
    }
    (0..n).map(|i| files[i * files.len() / n].clone()).collect()
}

/// Compares restored files under `dir` with the record: each must exist with its size.
pub fn compare(dir: &Path, files: &[Recorded]) -> Result<u64, String> {
    let mut bytes = 0;
    for f in files {
        let restored = dir.join(f.path.trim_start_matches('/'));
        let meta = std::fs::symlink_metadata(&restored).map_err(|e| format!("{} was not restored: {e}", f.path))?;
        if meta.len() != f.size {
            return Err(format!(
                "{} was restored with {} bytes, the backup records {}",
                f.path,
                meta.len(),
                f.size
            ));
        }
        bytes += f.size;
    }
    Ok(bytes)
}

/// Runs a restore test of `source` and records it in the state dir.
pub fn run(source: &BackupSource, host: &Host) -> Result<RestoreTest, RestoreError> {
    let state_dir = host.state_dir.clone().ok_or(RestoreError::NoStateDir)?;
    if !matches!(source.kind, BackupKind::Restic | BackupKind::Borg) {
        return Err(RestoreError::Unsupported {
            name: source.name.clone(),
            kind: source.kind.as_str(),
        });
    }
    let dir = state_dir.join("restore-test");
    let _ = std::fs::remove_dir_all(&dir);
    make_private_dir(&dir).map_err(|source| RestoreError::Folder {
        path: dir.clone(),
        source,
    })?;
    let start = Instant::now();
    let result = match source.kind {
        BackupKind::Restic => restic_test(source, host, &dir),
        _ => borg_test(source, host, &dir),
    };
    let duration = start.elapsed().as_secs_f64();
    let removed = std::fs::remove_dir_all(&dir);
    let (files, bytes, error) = match (result, removed) {
        (Ok((files, bytes)), Ok(())) => (files, bytes, None),
        (Ok((files, bytes)), Err(e)) => (
            files,
            bytes,
            Some(format!(
                "the restored files could not be removed from {}: {e}",
                dir.display()
            )),
        ),
        (Err(e), _) => (0, 0, Some(e)),
    };
    let outcome = Outcome {
        at: Some(host.now),
        result: if error.is_none() { "success" } else { "failed" }.into(),
        duration_secs: Some(duration),
        error,
    };
    let path = SourceState::path(&state_dir, &source.name);
    let mut state = SourceState::load(&path);
    state.record_restore_test(outcome.clone());
    state
        .save(&path)
        .map_err(|source| RestoreError::Record { path, source })?;
    tracing::info!(source = %source.name, result = %outcome.result, duration_secs = duration, files, "restore test recorded");
    Ok(RestoreTest { outcome, files, bytes })
}

fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        b.mode(0o700);
    }
    b.create(dir)
}

fn restic_test(source: &BackupSource, host: &Host, dir: &Path) -> Result<(usize, u64), String> {
    let snapshots = restic::snapshots(host, source)?;
    let newest = snapshots
        .last()
        .ok_or_else(|| "no snapshot to restore from".to_string())?;
    let listing = restic::restic(host, source, &["ls", "--json", "--no-lock", &newest.id], source.timeout)?;
    let files = sample(&parse_restic_ls(&listing), source.restore_sample_files);
    if files.is_empty() {
        return Err(format!("snapshot {} holds no file to restore", newest.id));
    }
    let target = dir.display().to_string();
    let mut args: Vec<&str> = vec!["restore", &newest.id, "--target", &target, "--verify"];
    for f in &files {
        args.extend(["--include", f.path.as_str()]);
    }
    let out = restic::restic(host, source, &args, source.timeout)?;
    // restic <0.17 reports verification errors on stdout and may still exit 0.
    if let Some(line) = out.lines().find(|l| l.to_lowercase().contains("error")) {
        return Err(format!("restic restore --verify reported: {}", line.trim()));
    }
    Ok((files.len(), compare(dir, &files)?))
}

fn borg_test(source: &BackupSource, host: &Host, dir: &Path) -> Result<(usize, u64), String> {
    let repo = source.repository.clone().unwrap_or_default();
    let listing = borg::parse_list(&borg::borg(host, source, &["list", "--json", "--bypass-lock"], &repo)?)?;
    let newest = listing
        .names
        .last()
        .ok_or_else(|| "no archive to restore from".to_string())?;
    let archive = format!("{repo}::{newest}");
    let items = borg::borg(host, source, &["list", "--json-lines", "--bypass-lock"], &archive)?;
    let files = sample(&parse_borg_items(&items), source.restore_sample_files);
    if files.is_empty() {
        return Err(format!("archive {newest} holds no file to restore"));
    }
    let mut args: Vec<&str> = vec!["extract", &archive];
    for f in &files {
        args.push(f.path.as_str());
    }
    let mut env = super::password_env(source, None, "BORG_PASSPHRASE")?;
    env.push(("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK".into(), "yes".into()));
    let mut cmd = crate::checks::Invocation::new("borg", &args)
        .timeout(source.timeout)
        .cwd(dir);
    for (k, v) in env {
        cmd = cmd.env(&k, v);
    }
    host.runner
        .run_with(&cmd)
        .map_err(|e| borg::explain(&repo, "borg extract", &e))?;
    Ok((files.len(), compare(dir, &files)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_is_spread_and_bounded() {
        let files: Vec<Recorded> = (0..10)
            .map(|i| Recorded {
                path: format!("/f{i}"),
                size: i,
            })
            .collect();
        let s: Vec<String> = sample(&files, 3).into_iter().map(|f| f.path).collect();
        assert_eq!(s, ["/f0", "/f3", "/f6"]);
        assert_eq!(sample(&files, 20).len(), 10);
    }

    #[test]
    fn restic_ls_lists_files_only() {
        let text = r#"{"time":"2026-11-23T02:00:00Z","tree":"ab","paths":["/srv"],"hostname":"h","id":"1","short_id":"1","struct_type":"snapshot"}
{"name":"srv","type":"dir","path":"/srv","uid":0,"gid":0,"mode":2147484141,"struct_type":"node"}
{"name":"a.txt","type":"file","path":"/srv/a.txt","uid":0,"gid":0,"size":12,"mode":420,"struct_type":"node"}"#;
        assert_eq!(
            parse_restic_ls(text),
            [Recorded {
                path: "/srv/a.txt".into(),
                size: 12
            }]
        );
    }
}
