//! Files the collector writes into its data dir, written safely (issue 15, item 5).
//!
//! - A file is written to a temporary file created exclusively (`O_CREAT|O_EXCL`, a random
//!   name, so a planted file or symlink is never followed or reused), synced, then renamed
//!   over the target.
//! - The data dir, the database and the key files must not be readable by others: when they
//!   are, their mode is fixed (0700 for the dir, 0600 for files) and a warning says so.
//! - The database file is created 0600 before SQLite opens it (its `-wal` and `-shm` files
//!   take the same mode).

use std::io::Write;
use std::path::Path;

/// Writes `contents` to `path` through an exclusively created temporary file; `private` files
/// get mode 0600, others 0644.
pub fn write_atomically(path: &Path, contents: &[u8], private: bool) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", crate::secrets::random_id()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    let _ = private;
    let result = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Makes sure `path` (a file, or the data dir when `dir`) is not readable by group or others:
/// fixes the mode and says so. A symlink is not followed for the check; its target is the
/// operator's.
pub fn keep_private(path: &Path, dir: bool) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        if meta.file_type().is_symlink() {
            return Ok(());
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            let fixed = if dir { 0o700 } else { 0o600 };
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(fixed))?;
            tracing::warn!(
                path = %path.display(),
                was = format!("{mode:o}"),
                now = format!("{fixed:o}"),
                "was readable by other users; mode fixed"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (path, dir);
    Ok(())
}

/// Creates the database file 0600 if it does not exist yet, else keeps it private.
pub fn prepare_database(path: &Path) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            for suffix in ["", "-wal", "-shm"] {
                let mut p = path.as_os_str().to_owned();
                p.push(suffix);
                keep_private(Path::new(&p), false)?;
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}
