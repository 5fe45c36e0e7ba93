//! File watching: wakes a check when the files it looks at change.
//!
//! [`Watcher::new`] watches host paths with `notify` (inotify on Linux, FSEvents on macOS,
//! ReadDirectoryChangesW on Windows). A path that does not exist yet is watched through its
//! parent directory, so a backup file that arrives or a log that is recreated still wakes the
//! check. Events are coalesced: [`Watcher::changed`] returns once per burst, after `settle` of
//! quiet, so a backup tool writing a thousand files triggers one re-run, not a thousand; under a
//! stream that never pauses (a busy log) it still returns [`MAX_COALESCE`] after the first
//! event, so the check neither starves nor runs more than about once a second.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

/// Longest a burst is coalesced before [`Watcher::changed`] returns anyway.
pub const MAX_COALESCE: Duration = Duration::from_secs(1);

/// Why paths cannot be watched.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {path}: {source}")]
pub struct WatchError {
    pub path: PathBuf,
    #[source]
    pub source: notify::Error,
}

/// Watches a set of paths; drop it to stop.
#[derive(Debug)]
pub struct Watcher {
    _inner: notify::RecommendedWatcher,
    events: mpsc::Receiver<()>,
    settle: Duration,
}

impl Watcher {
    /// Watches `paths` (files or directories; directories recursively). `settle` is how long
    /// events must stop before [`changed`](Self::changed) reports a burst.
    pub fn new(paths: &[PathBuf], settle: Duration) -> Result<Self, WatchError> {
        // One pending wake-up is enough: the check re-reads everything when it runs.
        let (tx, events) = mpsc::channel(1);
        let mut inner = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(event) = res
                && !event.kind.is_access()
            {
                let _ = tx.try_send(());
            }
        })
        .map_err(|source| WatchError {
            path: PathBuf::new(),
            source,
        })?;
        for p in paths {
            let (target, mode) = watch_target(p);
            inner.watch(&target, mode).map_err(|source| WatchError {
                path: target.clone(),
                source,
            })?;
        }
        Ok(Watcher {
            _inner: inner,
            events,
            settle,
        })
    }

    /// Waits for the next burst of changes. Never returns if the watcher's thread is gone.
    pub async fn changed(&mut self) {
        if self.events.recv().await.is_none() {
            std::future::pending::<()>().await;
        }
        // Coalesce the rest of the burst, for at most MAX_COALESCE.
        let deadline = tokio::time::Instant::now() + MAX_COALESCE;
        loop {
            let quiet = (tokio::time::Instant::now() + self.settle).min(deadline);
            match tokio::time::timeout_at(quiet, self.events.recv()).await {
                Ok(Some(())) if tokio::time::Instant::now() < deadline => {}
                _ => return,
            }
        }
    }
}

/// What to hand to notify for `p`: a directory recursively, an existing file as itself, a
/// missing path through its nearest existing ancestor.
fn watch_target(p: &Path) -> (PathBuf, RecursiveMode) {
    if p.is_dir() {
        return (p.to_path_buf(), RecursiveMode::Recursive);
    }
    if p.exists() {
        // Watch the parent too, so a rotation (rename, recreate) is seen.
        if let Some(parent) = p.parent().filter(|d| d.is_dir()) {
            return (parent.to_path_buf(), RecursiveMode::NonRecursive);
        }
        return (p.to_path_buf(), RecursiveMode::NonRecursive);
    }
    let mut dir = p.parent();
    while let Some(d) = dir {
        if d.is_dir() {
            return (d.to_path_buf(), RecursiveMode::NonRecursive);
        }
        dir = d.parent();
    }
    (PathBuf::from("/"), RecursiveMode::NonRecursive)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_new_file_in_a_watched_folder_wakes_the_watcher() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Watcher::new(&[dir.path().to_path_buf()], Duration::from_millis(50)).unwrap();
        std::fs::write(dir.path().join("backup-1.tar"), b"x").unwrap();
        tokio::time::timeout(Duration::from_secs(5), w.changed())
            .await
            .expect("woken within 5 s");
    }

    #[tokio::test]
    async fn a_stream_that_never_pauses_still_wakes_the_watcher() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("busy.log");
        std::fs::write(&log, b"").unwrap();
        let mut w = Watcher::new(std::slice::from_ref(&log), Duration::from_millis(200)).unwrap();
        let writer = {
            let log = log.clone();
            std::thread::spawn(move || {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
                for _ in 0..400 {
                    writeln!(f, "line").unwrap();
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        // Writes every 10 ms never leave 200 ms of quiet: the watcher must still return.
        tokio::time::timeout(Duration::from_secs(3), w.changed())
            .await
            .expect("woken despite the stream");
        writer.join().unwrap();
    }

    #[tokio::test]
    async fn a_file_that_does_not_exist_yet_is_watched_through_its_parent() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        let mut w = Watcher::new(std::slice::from_ref(&log), Duration::from_millis(50)).unwrap();
        std::fs::write(&log, b"line\n").unwrap();
        tokio::time::timeout(Duration::from_secs(5), w.changed())
            .await
            .expect("woken within 5 s");
    }
}
