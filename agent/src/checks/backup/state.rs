//! What a backup source's observations need from earlier runs, kept in the state dir as
//! `backup/<name>.json` (mode 0600, written atomically): the newest backup seen and its size
//! (so the next backup's size change is known), the last integrity check, the last restore
//! test. Never a password, never a file name from the backup.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rounds_protocol::obs::Backup;
use serde::{Deserialize, Serialize};

/// One recorded check or test.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Outcome {
    pub at: Option<DateTime<Utc>>,
    /// `success` or `failed`.
    pub result: String,
    pub duration_secs: Option<f64>,
    pub error: Option<String>,
}

/// What is remembered of one source.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SourceState {
    /// Time of the newest backup seen, and its size.
    #[serde(default)]
    pub latest_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub latest_size: Option<u64>,
    /// Size of the backup before it.
    #[serde(default)]
    pub previous_size: Option<u64>,
    #[serde(default)]
    pub integrity: Option<Outcome>,
    #[serde(default)]
    pub restore_test: Option<Outcome>,
    #[serde(default)]
    pub last_successful_restore_test_at: Option<DateTime<Utc>>,
}

impl SourceState {
    /// The state file of source `name` under state dir `dir`.
    pub fn path(dir: &Path, name: &str) -> PathBuf {
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        dir.join("backup").join(format!("{safe}.json"))
    }

    /// The state in `path`; empty when there is none or it cannot be read (it is only a memory).
    pub fn load(path: &Path) -> Self {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Writes the state atomically (temporary file, then rename), mode 0600.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = path.with_extension("json.tmp");
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        {
            use std::io::Write as _;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                opts.mode(0o600);
            }
            let mut f = opts.open(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    }

    /// Fills `b` from what is remembered (restore test, integrity check, previous size when
    /// the tool did not say) and remembers `b`'s newest backup.
    pub fn merge_into(&mut self, b: &mut Backup) {
        if b.last_success_at.is_some() && b.last_success_at != self.latest_at {
            if self.latest_at.is_some() {
                self.previous_size = self.latest_size;
            }
            self.latest_at = b.last_success_at;
            self.latest_size = b.size_bytes;
        } else if b.last_success_at == self.latest_at && b.size_bytes.is_some() {
            self.latest_size = b.size_bytes;
        }
        if b.previous_size_bytes.is_none() && b.last_success_at == self.latest_at {
            b.previous_size_bytes = self.previous_size;
        }
        if let Some(t) = &self.restore_test {
            b.last_restore_test_result = Some(t.result.clone());
            b.last_restore_test_duration_secs = t.duration_secs;
            b.last_restore_test_error = t.error.clone();
        }
        if let Some(at) = self.last_successful_restore_test_at {
            b.last_restore_test_at = Some(at);
            b.last_successful_restore_test_at = Some(at);
        }
        // A check run in this very observation (restic) is newer than what is remembered.
        if b.integrity_checked_at.is_some() {
            self.integrity = Some(Outcome {
                at: b.integrity_checked_at,
                result: if b.integrity_ok == Some(true) {
                    "success"
                } else {
                    "failed"
                }
                .into(),
                duration_secs: None,
                error: b.integrity_error.clone(),
            });
        } else if let Some(i) = &self.integrity {
            b.integrity_checked_at = i.at;
            b.integrity_ok = Some(i.result == "success");
            b.integrity_error = i.error.clone();
        }
    }

    /// Records a restore test.
    pub fn record_restore_test(&mut self, outcome: Outcome) {
        if outcome.result == "success" {
            self.last_successful_restore_test_at = outcome.at;
        }
        self.restore_test = Some(outcome);
    }
}
