//! A destination folder (NAS share, USB disk) that a backup tool writes into: the newest file's
//! modification time is the last backup, with the total size and the number of files. The
//! folder is walked (symbolic links are not followed); the check's `watch_paths` include it, so
//! a file that arrives re-runs the check at once.

use std::path::Path;
use std::time::UNIX_EPOCH;

use chrono::{DateTime, Utc};
use rounds_agent_config::backup::BackupSource;
use rounds_protocol::obs::Backup;

use crate::checks::Host;

/// What a walk of a folder found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scan {
    pub files: u64,
    pub bytes: u64,
    pub newest: Option<DateTime<Utc>>,
}

/// Walks `dir`: regular files only, links not followed.
pub fn scan(dir: &Path) -> Result<Scan, String> {
    let mut scan = Scan::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| format!("cannot list {}: {e}", d.display()))?;
        for entry in entries.filter_map(Result::ok) {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                scan.files += 1;
                scan.bytes += meta.len();
                let mtime = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .and_then(|d| DateTime::from_timestamp(d.as_secs() as i64, d.subsec_nanos()));
                scan.newest = scan.newest.max(mtime);
            }
        }
    }
    Ok(scan)
}

/// Observes a backup folder.
pub fn collect(source: &BackupSource, host: &Host) -> Result<Backup, String> {
    let shown = source.path.clone().unwrap_or_default();
    let dir = host.path(&shown);
    if !dir.is_dir() {
        return Err(format!(
            "backup folder {} does not exist or is not a folder (disk or share not mounted?)",
            shown.display()
        ));
    }
    let s = scan(&dir)?;
    Ok(Backup {
        tool: "folder".into(),
        repository: shown.display().to_string(),
        last_success_at: s.newest,
        last_attempt_at: s.newest,
        // A folder shows what arrived, not how the run that wrote it went.
        last_result: "unknown".into(),
        last_error: (s.files == 0).then(|| "the backup folder holds no file".into()),
        size_bytes: Some(s.bytes),
        file_count: Some(s.files),
        ..Backup::default()
    })
}
