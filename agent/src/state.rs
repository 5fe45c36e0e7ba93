//! The agent's state directory: where it is, and the files in it.
//!
//! Owns every file the agent keeps between runs and how each is written:
//!
//! | file | what | format |
//! | --- | --- | --- |
//! | `identity.json` | the enrollment: collector URL, agent id, secret, practice, site | JSON, mode 0600 |
//! | `ca.pem` | the CA certificate the collector's server certificate must chain to | PEM, mode 0600 |
//! | `sequence` | the next sequence of an agent from before the spool, read once to start the spool | decimal number and a newline |
//! | `status.json` | last heartbeat and delivery, configuration in use, last errors, for `rounds-agent status` | JSON padded to 4 KiB |
//! | `spool.jsonl` | undelivered reports, the sequence and the hash chain (`crate::spool`) | JSON lines, mode 0600 |
//! | `central-config.json` | the last good configuration from the collector (`crate::central`) | JSON, mode 0600 |
//!
//! The directory is created with mode 0700 and every file with mode 0600 from the start (never
//! widened and then narrowed). Every write is atomic and durable: a temporary file in the same
//! directory, fsync, rename over the old file, fsync of the directory. A crash leaves either the
//! old or the new content, never a torn file.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// File name of the enrollment identity inside the state dir.
pub const IDENTITY_FILE: &str = "identity.json";
/// File name of the trusted CA certificate inside the state dir.
pub const CA_FILE: &str = "ca.pem";
/// File name of the next report sequence number inside the state dir.
pub const SEQUENCE_FILE: &str = "sequence";
/// File name of the run status record inside the state dir.
pub const STATUS_FILE: &str = "status.json";
/// Environment variable that overrides the default state dir.
pub const STATE_DIR_ENV: &str = "ROUNDS_AGENT_STATE_DIR";
/// State dir of an agent running as root.
pub const SYSTEM_STATE_DIR: &str = "/var/lib/rounds-agent";

/// Errors reading or writing the state dir.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot create state directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("{path} is corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("not enrolled: no {IDENTITY_FILE} in {dir} (run `rounds-agent enroll` first)")]
    NotEnrolled { dir: PathBuf },
    #[error("no state directory: set {STATE_DIR_ENV} or HOME, or pass --state-dir")]
    NoDefaultDir,
}

/// Where the state dir is when none is given on the command line.
///
/// In order: `$ROUNDS_AGENT_STATE_DIR`; `/var/lib/rounds-agent` when running as root;
/// `$XDG_STATE_HOME/rounds-agent`; `$HOME/.local/state/rounds-agent`. `env` reads an environment
/// variable; `proc_self_status` is the text of `/proc/self/status` when available (to read the
/// effective uid without libc).
pub fn default_state_dir(
    env: &dyn Fn(&str) -> Option<String>,
    proc_self_status: Option<&str>,
) -> Result<PathBuf, StateError> {
    let var = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(dir) = var(STATE_DIR_ENV) {
        return Ok(PathBuf::from(dir));
    }
    let root = match proc_self_status.and_then(effective_uid) {
        Some(uid) => uid == 0,
        None => var("USER").is_some_and(|u| u == "root"),
    };
    if root {
        return Ok(PathBuf::from(SYSTEM_STATE_DIR));
    }
    if let Some(xdg) = var("XDG_STATE_HOME") {
        return Ok(Path::new(&xdg).join("rounds-agent"));
    }
    if let Some(home) = var("HOME") {
        return Ok(Path::new(&home).join(".local/state/rounds-agent"));
    }
    Err(StateError::NoDefaultDir)
}

/// [`default_state_dir`] for this process: the real environment and `/proc/self/status`.
pub fn system_default_state_dir() -> Result<PathBuf, StateError> {
    // Windows (issue 19): no HOME and no uid; the service's state dir unless the variable says
    // otherwise, so `status` and `enroll` find what the service uses.
    #[cfg(windows)]
    {
        Ok(std::env::var_os(STATE_DIR_ENV)
            .filter(|v| !v.is_empty())
            .map_or_else(|| crate::service::Platform::Windows.default_state_dir(), PathBuf::from))
    }
    #[cfg(not(windows))]
    {
        let status = fs::read_to_string("/proc/self/status").ok();
        default_state_dir(&|k| std::env::var(k).ok(), status.as_deref())
    }
}

/// The effective uid from the `Uid:` line of `/proc/self/status` (real, effective, saved, fs).
fn effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// What enrollment gave this agent. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Base URL of the collector, e.g. `https://collector.example:8443`.
    pub collector: String,
    pub agent_id: String,
    /// The per-agent secret; the password of HTTP Basic auth.
    pub agent_secret: String,
    pub practice: String,
    pub site: String,
    /// When the agent enrolled.
    pub enrolled_at: DateTime<Utc>,
    /// The heartbeat interval the collector announced at enrollment, in seconds; used when
    /// no configuration file sets one. Absent in identities written by older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_secs: Option<u64>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Identity {
            collector,
            agent_id,
            agent_secret: _,
            practice,
            site,
            enrolled_at,
            heartbeat_interval_secs,
        } = self;
        f.debug_struct("Identity")
            .field("collector", collector)
            .field("agent_id", agent_id)
            .field("agent_secret", &"<redacted>")
            .field("practice", practice)
            .field("site", site)
            .field("enrolled_at", enrolled_at)
            .field("heartbeat_interval_secs", heartbeat_interval_secs)
            .finish()
    }
}

/// What `run` records for `rounds-agent status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStatus {
    /// When the collector last acknowledged a heartbeat.
    #[serde(default)]
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    /// When the collector last acknowledged a report.
    #[serde(default)]
    pub last_report_at: Option<DateTime<Utc>>,
    /// The sequence number of that report.
    #[serde(default)]
    pub last_report_sequence: Option<u64>,
    /// The last thing that went wrong (delivery, configuration, spool), and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<DateTime<Utc>>,
    /// Why reports cannot be spooled right now (disk full), while that lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spool_error: Option<String>,
    /// Version of the configuration in use, when it came from the collector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_version: Option<String>,
    /// Where the configuration in use came from, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_origin: Option<String>,
    /// Why the collector's newest configuration was refused, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_error: Option<String>,
}

/// The agent's state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    /// A state dir at `path`; nothing is touched until something is read or written.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StateDir { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn identity_path(&self) -> PathBuf {
        self.path.join(IDENTITY_FILE)
    }

    pub fn ca_path(&self) -> PathBuf {
        self.path.join(CA_FILE)
    }

    pub fn sequence_path(&self) -> PathBuf {
        self.path.join(SEQUENCE_FILE)
    }

    pub fn status_path(&self) -> PathBuf {
        self.path.join(STATUS_FILE)
    }

    /// Creates the directory (and parents) with mode 0700, or narrows an existing one to 0700.
    pub fn create(&self) -> Result<(), StateError> {
        let err = |source| StateError::CreateDir {
            path: self.path.clone(),
            source,
        };
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&self.path).map_err(err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&self.path).map_err(err)?.permissions().mode();
            if mode & 0o077 != 0 {
                fs::set_permissions(&self.path, fs::Permissions::from_mode(0o700)).map_err(err)?;
            }
        }
        // Windows state dir ACL (deploy): explicit, SYSTEM and Administrators only, instead of
        // whatever the parent folder passes on (see crate::service::windows).
        #[cfg(windows)]
        crate::service::windows::protect_dir(&self.path).map_err(err)?;
        Ok(())
    }

    /// Whether an identity file exists.
    pub fn is_enrolled(&self) -> bool {
        self.identity_path().is_file()
    }

    /// Saves the identity and the CA certificate, then forgets the previous enrollment's sequence
    /// and status (a new agent id starts at sequence 1).
    pub fn save_enrollment(&self, identity: &Identity, ca_pem: &[u8]) -> Result<(), StateError> {
        self.create()?;
        write_atomic(&self.ca_path(), ca_pem)?;
        let mut json = serde_json::to_vec_pretty(identity).map_err(|e| StateError::Corrupt {
            path: self.identity_path(),
            detail: e.to_string(),
        })?;
        json.push(b'\n');
        write_atomic(&self.identity_path(), &json)?;
        // Windows secret file ACL (deploy): SYSTEM and Administrators only.
        #[cfg(windows)]
        crate::service::windows::protect_file(&self.identity_path()).map_err(|source| StateError::Write {
            path: self.identity_path(),
            source,
        })?;
        for stale in [
            self.sequence_path(),
            self.status_path(),
            self.path.join(crate::spool::SPOOL_FILE),
            self.path.join(crate::central::CACHE_FILE),
        ] {
            match fs::remove_file(&stale) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(StateError::Write { path: stale, source }),
            }
        }
        sync_dir(&self.path)
    }

    /// Loads the identity; [`StateError::NotEnrolled`] when there is none.
    pub fn load_identity(&self) -> Result<Identity, StateError> {
        let path = self.identity_path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StateError::NotEnrolled { dir: self.path.clone() });
            }
            Err(source) => return Err(StateError::Read { path, source }),
        };
        serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
            path,
            detail: e.to_string(),
        })
    }

    /// Reads the CA certificate saved at enrollment.
    pub fn load_ca(&self) -> Result<Vec<u8>, StateError> {
        let path = self.ca_path();
        fs::read(&path).map_err(|source| StateError::Read { path, source })
    }

    /// Reads the next sequence number to hand out (1 when none was ever handed out).
    pub fn load_next_sequence(&self) -> Result<u64, StateError> {
        let path = self.sequence_path();
        match fs::read_to_string(&path) {
            Ok(text) => match text.trim().parse::<u64>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(StateError::Corrupt {
                    path,
                    detail: format!("expected a number >= 1, found {:?}", text.trim()),
                }),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(1),
            Err(source) => Err(StateError::Read { path, source }),
        }
    }

    /// Durably records `next` as the next sequence number to hand out.
    pub fn store_next_sequence(&self, next: u64) -> Result<(), StateError> {
        write_atomic(&self.sequence_path(), format!("{next}\n").as_bytes())
    }

    /// Reads the run status; empty when `run` never recorded one.
    pub fn load_status(&self) -> Result<RunStatus, StateError> {
        let path = self.status_path();
        match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| StateError::Corrupt {
                path,
                detail: e.to_string(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(RunStatus::default()),
            Err(source) => Err(StateError::Read { path, source }),
        }
    }

    /// Writes the run status: atomically, and when that fails (a full disk has no room for
    /// the temporary file) in place over the old file, which is padded to whole 4 KiB blocks
    /// so a rewrite needs no new space. That way `status` can still say the disk is full.
    pub fn store_status(&self, status: &RunStatus) -> Result<(), StateError> {
        let mut json = serde_json::to_vec_pretty(status).map_err(|e| StateError::Corrupt {
            path: self.status_path(),
            detail: e.to_string(),
        })?;
        json.push(b'\n');
        let padded = json.len().div_ceil(4096) * 4096;
        json.resize(padded, b' ');
        if let Some(last) = json.last_mut() {
            *last = b'\n';
        }
        match write_atomic(&self.status_path(), &json) {
            Ok(()) => Ok(()),
            Err(first) => {
                let path = self.status_path();
                let in_place = (|| {
                    let mut f = fs::OpenOptions::new().write(true).open(&path)?;
                    if f.metadata()?.len() < json.len() as u64 {
                        return Err(io::Error::other("no room to grow"));
                    }
                    f.write_all(&json)?;
                    f.set_len(json.len() as u64)?;
                    f.sync_data()
                })();
                in_place.map_err(|_| first)
            }
        }
    }
}

/// Replaces `path` with `contents` atomically and durably; a new file gets mode 0600.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), StateError> {
    let err = |source| StateError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let result = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(err(e));
    }
    sync_dir(dir)
}

/// Makes a rename in `dir` durable. A no-op where directories cannot be opened (Windows).
fn sync_dir(dir: &Path) -> Result<(), StateError> {
    #[cfg(unix)]
    {
        let d = fs::File::open(dir).map_err(|source| StateError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        d.sync_all().map_err(|source| StateError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn dir_for(vars: &[(&str, &str)], status: Option<&str>) -> Result<PathBuf, StateError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        default_state_dir(&|k| map.get(k).cloned(), status)
    }

    const ROOT: &str = "Name:\tx\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n";
    const USER: &str = "Name:\tx\nUid:\t1000\t1000\t1000\t1000\n";

    #[test]
    fn default_state_dir_follows_env_uid_and_xdg() {
        let env_dir = dir_for(&[(STATE_DIR_ENV, "/srv/agent"), ("HOME", "/home/a")], Some(ROOT)).unwrap();
        assert_eq!(env_dir, PathBuf::from("/srv/agent"));
        assert_eq!(
            dir_for(&[("HOME", "/root")], Some(ROOT)).unwrap(),
            PathBuf::from(SYSTEM_STATE_DIR)
        );
        assert_eq!(
            dir_for(&[("HOME", "/home/a"), ("USER", "root")], Some(USER)).unwrap(),
            PathBuf::from("/home/a/.local/state/rounds-agent"),
            "the uid wins over $USER"
        );
        assert_eq!(
            dir_for(&[("USER", "root")], None).unwrap(),
            PathBuf::from(SYSTEM_STATE_DIR)
        );
        assert_eq!(
            dir_for(&[("HOME", "/home/a"), ("XDG_STATE_HOME", "/x/state")], Some(USER)).unwrap(),
            PathBuf::from("/x/state/rounds-agent")
        );
        assert_eq!(
            dir_for(&[("HOME", "/home/a"), ("XDG_STATE_HOME", "")], Some(USER)).unwrap(),
            PathBuf::from("/home/a/.local/state/rounds-agent")
        );
        assert!(matches!(dir_for(&[], Some(USER)), Err(StateError::NoDefaultDir)));
    }

    #[test]
    fn effective_uid_reads_the_second_field() {
        assert_eq!(effective_uid("Uid:\t1000\t0\t0\t0\n"), Some(0));
        assert_eq!(effective_uid("Name: x\n"), None);
    }

    #[test]
    fn corrupt_sequence_file_is_an_error_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(tmp.path());
        fs::write(state.sequence_path(), "zero\n").unwrap();
        let err = state.load_next_sequence().unwrap_err().to_string();
        assert!(err.contains("sequence") && err.contains("corrupt"), "{err}");
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp_file() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f")]);
    }
}
