//! Discovery: backup tools installed on the machine that no `[[backup]]` source watches, so the
//! technician sees "Veeam Agent installed, not watched by Rounds".
//!
//! - Linux: `restic` and `borg` programs in /usr/bin, /usr/local/bin, /bin, and repositories in
//!   common places (/srv, /var/backups, /backup, /mnt/*, /media/*/*, one level down): a restic
//!   repository has `config`, `keys/` and `data/`; a borg repository a `README` that says so.
//! - Windows: the Veeam Agent service (`sc query VeeamEndpointBackupSvc`) and Windows Server
//!   Backup policies (`wbadmin get versions` lists some).
//! - macOS: Time Machine destinations (`tmutil destinationinfo`).
//!
//! Everything is metadata: program and folder names.

use rounds_agent_config::backup::{BackupKind, BackupSource};
use rounds_protocol::obs::BackupDiscovered;

use crate::checks::{Host, Invocation, Platform};

/// A Windows probe: the kind it stands for, the command, what its output shows when the tool
/// is there, the subject (`tool:location`) and the note.
struct Probe(
    BackupKind,
    &'static str,
    &'static [&'static str],
    &'static str,
    &'static str,
    &'static str,
);

fn found(tool: &str, location: &str, note: String) -> (String, BackupDiscovered) {
    (
        format!("{tool}:{location}"),
        BackupDiscovered {
            tool: tool.into(),
            location: location.into(),
            watched: false,
            note,
        },
    )
}

/// What a folder holds: `restic`, `borg` or neither.
pub fn repository_kind(host: &Host, dir: &str) -> Option<&'static str> {
    if host.exists(format!("{dir}/config"))
        && host.path(format!("{dir}/keys")).is_dir()
        && host.path(format!("{dir}/data")).is_dir()
    {
        return Some("restic");
    }
    let readme = host.read(format!("{dir}/README")).ok()?;
    readme.starts_with("This is a Borg Backup repository").then_some("borg")
}

/// Tools and repositories found and not configured, as `(subject, payload)`.
pub fn discover(host: &Host, platform: Platform, sources: &[BackupSource]) -> Vec<(String, BackupDiscovered)> {
    let has = |k: BackupKind| sources.iter().any(|s| s.kind == k);
    let mut out = Vec::new();
    match platform {
        Platform::Linux => {
            // A folder and its children, each a candidate repository.
            let with_children = |base: String| {
                let children = host.list_dir(&base).unwrap_or_default();
                std::iter::once(base.clone()).chain(children.into_iter().map(move |n| format!("{base}/{n}")))
            };
            let mut candidates: Vec<String> = Vec::new();
            for base in ["/srv", "/var/backups", "/backup", "/backups"] {
                candidates.extend(with_children(base.to_string()));
            }
            for mnt in host.list_dir("/mnt").unwrap_or_default() {
                candidates.extend(with_children(format!("/mnt/{mnt}")));
            }
            for user in host.list_dir("/media").unwrap_or_default() {
                for disk in host.list_dir(format!("/media/{user}")).unwrap_or_default() {
                    candidates.extend(with_children(format!("/media/{user}/{disk}")));
                }
            }
            let mut repos_seen = false;
            for dir in candidates {
                let Some(kind) = repository_kind(host, &dir) else {
                    continue;
                };
                repos_seen = true;
                let watched = sources
                    .iter()
                    .any(|s| s.repository.as_deref().map(|r| r.trim_end_matches('/')) == Some(dir.as_str()));
                if !watched {
                    out.push(found(
                        kind,
                        &dir,
                        format!("{kind} repository at {dir}, not watched by Rounds"),
                    ));
                }
            }
            if !repos_seen {
                for (tool, kind) in [("restic", BackupKind::Restic), ("borg", BackupKind::Borg)] {
                    if has(kind) {
                        continue;
                    }
                    if let Some(bin) = ["/usr/bin", "/usr/local/bin", "/bin"]
                        .iter()
                        .map(|d| format!("{d}/{tool}"))
                        .find(|p| host.exists(p))
                    {
                        out.push(found(
                            tool,
                            &bin,
                            format!("{tool} installed ({bin}), not watched by Rounds"),
                        ));
                    }
                }
            }
        }
        Platform::Windows => {
            let probes: [Probe; 2] = [
                Probe(
                    BackupKind::Veeam,
                    "sc",
                    &["query", "VeeamEndpointBackupSvc"],
                    "SERVICE_NAME",
                    "veeam:VeeamEndpointBackupSvc",
                    "Veeam Agent installed, not watched by Rounds",
                ),
                Probe(
                    BackupKind::WindowsServerBackup,
                    "wbadmin",
                    &["get", "versions"],
                    "Version identifier",
                    "windows-server-backup:wbadmin",
                    "Windows Server Backup has backups, not watched by Rounds",
                ),
            ];
            for Probe(kind, program, args, needle, subject, note) in probes {
                if has(kind)
                    || !host
                        .runner
                        .run_with(&Invocation::new(program, args))
                        .is_ok_and(|o| o.contains(needle))
                {
                    continue;
                }
                let (tool, location) = subject.split_once(':').unwrap_or((subject, ""));
                out.push(found(tool, location, note.to_string()));
            }
        }
        Platform::MacOs => {
            if !has(BackupKind::TimeMachine)
                && let Ok(text) = host.runner.run_with(&Invocation::new("tmutil", &["destinationinfo"]))
            {
                for (name, _) in super::time_machine::parse_destinations(&text) {
                    out.push(found(
                        "time-machine",
                        &name,
                        format!("Time Machine destination {name}, not watched by Rounds"),
                    ));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unwatched_repository_is_reported_and_a_watched_one_is_not() {
        let root = tempfile::tempdir().unwrap();
        let repo = root.path().join("srv/restic-repo");
        std::fs::create_dir_all(repo.join("keys")).unwrap();
        std::fs::create_dir_all(repo.join("data")).unwrap();
        std::fs::write(repo.join("config"), b"x").unwrap();
        let borg = root.path().join("mnt/usb/borg");
        std::fs::create_dir_all(&borg).unwrap();
        std::fs::write(
            borg.join("README"),
            "This is a Borg Backup repository.\nSee https://borgbackup.readthedocs.io/\n",
        )
        .unwrap();
        let host = Host {
            root: root.path().to_path_buf(),
            ..Host::system()
        };
        let found = discover(&host, Platform::Linux, &[]);
        let subjects: Vec<&str> = found.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(subjects, ["restic:/srv/restic-repo", "borg:/mnt/usb/borg"]);
        assert_eq!(
            found[0].1.note,
            "restic repository at /srv/restic-repo, not watched by Rounds"
        );
        let watched = rounds_agent_config::parse(
            "[[backup]]\nname = \"n\"\nkind = \"restic\"\nrepository = \"/srv/restic-repo\"\n",
            std::path::Path::new("a.toml"),
        )
        .unwrap()
        .backups;
        let found = discover(&host, Platform::Linux, &watched);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].1.tool, "borg");
    }

    #[test]
    fn an_installed_veeam_agent_is_named_on_windows() {
        let runner = crate::checks::testutil::FakeRunner::default().with(
            "sc query VeeamEndpointBackupSvc",
            Ok("SERVICE_NAME: VeeamEndpointBackupSvc\n        TYPE               : 10  WIN32_OWN_PROCESS\n        STATE              : 4  RUNNING\n"),
        );
        let host = Host {
            runner: std::sync::Arc::new(runner),
            ..Host::system()
        };
        let found = discover(&host, Platform::Windows, &[]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1.note, "Veeam Agent installed, not watched by Rounds");
    }
}
