//! Deployment helpers: the one-line agent install command printed with a new enrollment
//! token, the lock a serving collector holds on its data dir, and online backup and restore
//! of the SQLite store.
//!
//! Backup is `VACUUM INTO` on a connection of its own: one read transaction, so the copy is
//! the store as of one commit, taken while the server keeps ingesting (WAL lets the writer go
//! on); the file is created 0600 before SQLite writes it. Restore checks the file (SQLite
//! `integrity_check`, a Rounds schema no newer than this build), refuses while a collector
//! serves the data dir (it holds `collector.lock`) and refuses to replace a store holding
//! data without `--force`; then it copies the backup beside the store, removes the old WAL
//! and shared-memory files, renames the copy into place, and migrates it to this build's schema.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use sha2::{Digest, Sha256};

use crate::config::{Settings, TlsSettings};
use crate::serve::DB_FILE;

/// The file a serving collector keeps locked in its data dir.
pub const LOCK_FILE: &str = "collector.lock";

/// Why a deployment step failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {detail}")]
    Db { path: PathBuf, detail: String },
    #[error("{path} already exists; choose a new file name for the backup")]
    Exists { path: PathBuf },
    #[error("there is no store to back up in {data_dir} (no {DB_FILE})")]
    NoStore { data_dir: PathBuf },
    #[error("{path} is not a Rounds collector backup: {detail}")]
    NotABackup { path: PathBuf, detail: String },
    #[error(
        "{path} has schema version {found}, newer than this collector ({known}); restore it with the collector version that made it"
    )]
    NewerSchema { path: PathBuf, found: usize, known: usize },
    #[error(
        "a collector is serving {data_dir} (it holds {LOCK_FILE}); stop it first (`systemctl stop rounds-collector`)"
    )]
    Running { data_dir: PathBuf },
    #[error(
        "{path} already holds {agents} agents and {reports} reports; restoring replaces them. Run again with --force to do that"
    )]
    NotEmpty { path: PathBuf, agents: i64, reports: i64 },
}

impl DeployError {
    /// Whether the error is in what the operator asked (a file, a running server, a store
    /// with data) rather than a failure while doing it.
    pub fn is_usage(&self) -> bool {
        !matches!(self, DeployError::Io { .. } | DeployError::Db { .. })
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DeployError + '_ {
    move |source| DeployError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn dberr(path: &Path) -> impl Fn(rusqlite::Error) -> DeployError + '_ {
    move |e| DeployError::Db {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// The SHA-256 fingerprint (`sha256:` + lower-case hex) of the CA agents pin at enrollment:
/// the generated `ca.pem` in the data dir, or the last certificate of a configured chain (the
/// CA, when the chain file includes it). `None` when there is no certificate yet (before the
/// first `serve`).
pub fn ca_fingerprint(settings: &Settings) -> Option<String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let (file, last) = match &settings.tls {
        TlsSettings::Generated { .. } => (settings.data_dir.join("ca.pem"), false),
        TlsSettings::Files { cert_file, .. } => (cert_file.clone(), true),
    };
    let bytes = std::fs::read(file).ok()?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes).filter_map(Result::ok).collect();
    let cert = if last { certs.last() } else { certs.first() }?;
    Some(format!("sha256:{}", hex::encode(Sha256::digest(cert.as_ref()))))
}

/// The collector URL agents use: `url` when given, else `https://HOSTNAME:PORT` from the
/// machine's name and the listen port.
pub fn public_url(url: Option<&str>, settings: &Settings) -> String {
    if let Some(u) = url {
        return u.trim_end_matches('/').to_string();
    }
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("https://{host}:{}", settings.listen.port())
}

/// The one-line install command for a machine of the token's site.
pub fn install_command(url: &str, token: &str, fingerprint: &str) -> String {
    format!("rounds-agent install --collector {url} --token {token} --ca-fingerprint {fingerprint}")
}

/// The exclusive lock a serving collector holds on its data dir; released on drop.
#[derive(Debug)]
pub struct ServeLock {
    _file: File,
}

impl ServeLock {
    /// Takes the lock; [`DeployError::Running`] when another process holds it.
    pub fn acquire(data_dir: &Path) -> Result<Self, DeployError> {
        let path = data_dir.join(LOCK_FILE);
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let file = opts.open(&path).map_err(io(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(ServeLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(DeployError::Running {
                data_dir: data_dir.to_path_buf(),
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(io(&path)(e)),
        }
    }
}

/// Creates `path` empty with mode 0600, refusing an existing file.
fn create_private(path: &Path) -> Result<(), DeployError> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(DeployError::Exists {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(io(path)(e)),
    }
}

fn vacuum_into(conn: &Connection, source: &Path, dest: &Path) -> Result<(), DeployError> {
    let dest_str = dest.to_str().ok_or_else(|| DeployError::Db {
        path: dest.to_path_buf(),
        detail: "the path is not UTF-8".into(),
    })?;
    conn.execute("VACUUM INTO ?1", [dest_str]).map_err(dberr(source))?;
    File::open(dest).and_then(|f| f.sync_all()).map_err(io(dest))
}

/// What a backup holds, as printed after `backup` and `restore`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    pub schema_version: usize,
    pub practices: i64,
    pub agents: i64,
    pub reports: i64,
    pub bytes: u64,
}

impl std::fmt::Display for BackupSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "schema version {}, {} practices, {} agents, {} reports, {} bytes",
            self.schema_version, self.practices, self.agents, self.reports, self.bytes
        )
    }
}

fn summary(conn: &Connection, path: &Path) -> Result<BackupSummary, DeployError> {
    let count = |table: &str| -> Result<i64, DeployError> {
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .map_err(|e| DeployError::NotABackup {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })
    };
    let schema_version: usize = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(dberr(path))?;
    Ok(BackupSummary {
        schema_version,
        practices: count("practices")?,
        agents: count("agents")?,
        reports: count("reports")?,
        bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
    })
}

/// Writes a consistent copy of the data dir's store to `dest` (a new file, mode 0600), while
/// a collector may be serving it.
pub fn backup(data_dir: &Path, dest: &Path) -> Result<BackupSummary, DeployError> {
    let db = data_dir.join(DB_FILE);
    if !db.is_file() {
        return Err(DeployError::NoStore {
            data_dir: data_dir.to_path_buf(),
        });
    }
    let conn = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(dberr(&db))?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(dberr(&db))?;
    create_private(dest)?;
    if let Err(e) = vacuum_into(&conn, &db, dest) {
        let _ = std::fs::remove_file(dest);
        return Err(e);
    }
    let copy = Connection::open_with_flags(dest, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(dberr(dest))?;
    summary(&copy, dest)
}

/// Checks that `file` is a sound Rounds store no newer than this build.
pub fn check_backup(file: &Path) -> Result<BackupSummary, DeployError> {
    let not = |detail: String| DeployError::NotABackup {
        path: file.to_path_buf(),
        detail,
    };
    if !file.is_file() {
        return Err(not("no such file".into()));
    }
    let conn = Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| not(e.to_string()))?;
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| not(e.to_string()))?;
    if check != "ok" {
        return Err(not(format!("integrity check: {check}")));
    }
    let s = summary(&conn, file)?;
    let known = crate::store::sqlite::schema_version();
    if s.schema_version == 0 {
        return Err(not("it has no Rounds schema (user_version 0)".into()));
    }
    if s.schema_version > known {
        return Err(DeployError::NewerSchema {
            path: file.to_path_buf(),
            found: s.schema_version,
            known,
        });
    }
    Ok(s)
}

/// Replaces the data dir's store with the backup `file`. Refuses while a collector serves the
/// data dir, and refuses a store that holds agents or reports unless `force`.
pub fn restore(data_dir: &Path, file: &Path, force: bool) -> Result<BackupSummary, DeployError> {
    let summary = check_backup(file)?;
    crate::serve::ensure_data_dir(data_dir).map_err(|e| DeployError::Io {
        path: data_dir.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let _lock = ServeLock::acquire(data_dir)?;
    let db = data_dir.join(DB_FILE);
    if db.is_file() && !force {
        let conn = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(dberr(&db))?;
        let count = |t: &str| conn.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get::<_, i64>(0));
        let (agents, reports) = (count("agents").unwrap_or(0), count("reports").unwrap_or(0));
        if agents > 0 || reports > 0 {
            return Err(DeployError::NotEmpty {
                path: db,
                agents,
                reports,
            });
        }
    }
    let tmp = data_dir.join(format!("{DB_FILE}.restoring"));
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&tmp)(e)),
    }
    create_private(&tmp)?;
    let src = Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(dberr(file))?;
    if let Err(e) = vacuum_into(&src, file, &tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    drop(src);
    // The old store's WAL must not be replayed onto the restored file.
    for suffix in ["-wal", "-shm"] {
        let p = data_dir.join(format!("{DB_FILE}{suffix}"));
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&p)(e)),
        }
    }
    std::fs::rename(&tmp, &db).map_err(io(&db))?;
    File::open(data_dir).and_then(|d| d.sync_all()).map_err(io(data_dir))?;
    // Bring an older backup to this build's schema now, not at the next start.
    crate::store::sqlite::SqliteStore::open(&db).map_err(|e| DeployError::Db {
        path: db.clone(),
        detail: e.to_string(),
    })?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_install_command_is_one_line_with_the_fingerprint() {
        let c = install_command("https://rounds.example:8443", "rnd_tok_x", "sha256:ab");
        assert_eq!(
            c,
            "rounds-agent install --collector https://rounds.example:8443 --token rnd_tok_x --ca-fingerprint sha256:ab"
        );
    }

    #[test]
    fn a_second_lock_on_the_data_dir_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = ServeLock::acquire(dir.path()).unwrap();
        let e = ServeLock::acquire(dir.path()).unwrap_err();
        assert!(matches!(e, DeployError::Running { .. }), "{e}");
        drop(first);
        ServeLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn backup_refuses_an_existing_file_and_restore_a_non_rounds_file() {
        let dir = tempfile::tempdir().unwrap();
        crate::serve::open_sqlite(dir.path()).unwrap();
        let dest = dir.path().join("b.db");
        std::fs::write(&dest, "x").unwrap();
        let e = backup(dir.path(), &dest).unwrap_err().to_string();
        assert!(e.contains("b.db already exists"), "{e}");
        assert_eq!(std::fs::read(&dest).unwrap(), b"x");
        let e = restore(dir.path(), &dest, true).unwrap_err().to_string();
        assert!(e.contains("b.db is not a Rounds collector backup"), "{e}");
    }

    #[test]
    fn a_backup_newer_than_this_build_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        crate::serve::open_sqlite(dir.path()).unwrap();
        let dest = dir.path().join("b.db");
        backup(dir.path(), &dest).unwrap();
        let c = Connection::open(&dest).unwrap();
        c.pragma_update(None, "user_version", 999).unwrap();
        drop(c);
        let e = restore(&dir.path().join("new"), &dest, false).unwrap_err().to_string();
        assert!(e.contains("schema version 999, newer than this collector"), "{e}");
        assert!(!dir.path().join("new").join(DB_FILE).exists());
    }
}
