//! Backup status: one `backup` observation per configured `[[backup]]` source, plus
//! `backup.discovered` for backup tools found installed but not configured.
//!
//! One module per kind, each a pure parser of what its tool prints (tested on recorded
//! outputs) and a collector that runs the tool through the host's [`CommandRunner`] under the
//! source's timeout: [`restic`], [`borg`], [`folder`], [`status_file`], [`time_machine`],
//! [`wbadmin`] (Windows Server Backup), [`veeam`]. [`restore`] runs restore tests
//! (`rounds-agent backup restore-test NAME`); [`state`] keeps what must outlive a run (the
//! last restore test, the last integrity check, the previous size) in the state dir;
//! [`discover`] finds unwatched tools.
//!
//! Invariants:
//! - A password is handed to its tool only through the child's environment
//!   ([`Invocation::env`]): never in arguments, observations, logs or the state dir.
//! - Every command runs under the source's timeout and is killed when it passes; a source that
//!   cannot be read is an `error` observation whose message names the cause (wrong password,
//!   repository missing or locked, tool not installed), and never holds up the other sources.
//! - A machine with no source configured reports `not_configured`, which fails
//!   `hipaa.backup.recent` on servers ("no backup is configured for this server").

pub mod borg;
pub mod discover;
pub mod folder;
pub mod restic;
pub mod restore;
pub mod state;
pub mod status_file;
pub mod time_machine;
pub mod veeam;
pub mod wbadmin;

use std::path::PathBuf;
use std::time::Duration;

use rounds_agent_config::backup::{BackupKind, BackupSource, Destination, PasswordSource};
use rounds_protocol::Observation;
use rounds_protocol::obs::{Backup, BackupDiscovered, Payload};

use super::{Check, CommandError, Host, Invocation, Platform, platform};

/// The message of the observation a machine without backup sources reports.
pub const NOT_CONFIGURED: &str = "no backup is configured for this server";

/// Observes the configured backup sources.
#[derive(Debug, Clone, Default)]
pub struct BackupCheck {
    sources: Vec<BackupSource>,
}

impl BackupCheck {
    pub fn new(sources: Vec<BackupSource>) -> Self {
        BackupCheck { sources }
    }

    /// The configured source named `name`.
    pub fn source(&self, name: &str) -> Option<&BackupSource> {
        self.sources.iter().find(|s| s.name == name)
    }
}

impl Check for BackupCheck {
    fn name(&self) -> &'static str {
        "backup"
    }

    fn kinds(&self) -> &'static [&'static str] {
        &[Backup::KIND, BackupDiscovered::KIND]
    }

    /// Enough for every command of every source at its own limit, one after another.
    fn timeout(&self) -> Duration {
        let sum: Duration = self
            .sources
            .iter()
            .map(|s| {
                let integrity = if s.check_schedule.is_some() {
                    s.check_timeout
                } else {
                    Duration::ZERO
                };
                s.timeout * 3 + integrity
            })
            .sum();
        sum + Duration::from_secs(20)
    }

    fn run(&self, host: &Host) -> Vec<Observation> {
        let mut out: Vec<Observation> = if self.sources.is_empty() {
            vec![Observation::ok("host", host.now, &not_configured())]
        } else {
            self.sources
                .iter()
                .map(|s| Observation::from_result(s.name.clone(), host.now, observe(s, host)))
                .collect()
        };
        out.extend(
            discover::discover(host, platform(), &self.sources)
                .into_iter()
                .map(|(subject, d)| Observation::ok(subject, host.now, &d)),
        );
        out
    }

    /// Folders and status files: a change there is a new backup.
    fn watch_paths(&self, host: &Host) -> Vec<PathBuf> {
        self.sources
            .iter()
            .filter(|s| matches!(s.kind, BackupKind::Folder | BackupKind::StatusFile))
            .filter_map(|s| s.path.as_ref().map(|p| host.path(p)))
            .collect()
    }
}

/// The observation of a machine with no backup source.
pub fn not_configured() -> Backup {
    Backup {
        tool: "none".into(),
        last_result: "none".into(),
        not_configured: true,
        last_error: Some(NOT_CONFIGURED.into()),
        ..Backup::default()
    }
}

/// Reads one source, merges what the state dir remembers, and records what it must remember.
pub fn observe(source: &BackupSource, host: &Host) -> Result<Backup, String> {
    let mut b = collect(source, host)?;
    if b.destination.is_none() {
        b.destination = source
            .destination
            .or_else(|| infer_destination(source, host))
            .map(|d| d.as_str().to_string());
    }
    if let Some(dir) = &host.state_dir {
        let store = state::SourceState::path(dir, &source.name);
        let mut remembered = state::SourceState::load(&store);
        remembered.merge_into(&mut b);
        if let Err(e) = remembered.save(&store) {
            tracing::warn!(source = %source.name, error = %e, "cannot record backup state");
        }
    }
    if let (Some(now), Some(prev)) = (b.size_bytes, b.previous_size_bytes) {
        b.size_change_bytes = Some(now as i64 - prev as i64);
        b.shrank_by_half = Some(now.saturating_mul(2) < prev);
    }
    Ok(b)
}

fn collect(source: &BackupSource, host: &Host) -> Result<Backup, String> {
    match source.kind {
        BackupKind::Restic => restic::collect(source, host),
        BackupKind::Borg => borg::collect(source, host),
        BackupKind::Folder => folder::collect(source, host),
        BackupKind::StatusFile => status_file::collect(source, host),
        BackupKind::TimeMachine => match platform() {
            Platform::MacOs => time_machine::collect(source, host),
            _ => Err(only_on("time_machine", "macOS")),
        },
        BackupKind::WindowsServerBackup => match platform() {
            Platform::Windows => wbadmin::collect(source, host),
            _ => Err(only_on("windows_server_backup", "Windows")),
        },
        BackupKind::Veeam => match platform() {
            Platform::Windows => veeam::collect(source, host),
            _ => Err(only_on("veeam", "Windows (Veeam Agent for Windows)")),
        },
    }
}

fn only_on(kind: &str, os: &str) -> String {
    format!(
        "a `{kind}` backup is read on {os} only; this machine runs {}",
        std::env::consts::OS
    )
}

/// The environment that hands `source`'s password to its tool: `file_var` names a file (the
/// tool reads it), `value_var` carries the value. The value is read here and exists only in
/// the child's environment.
pub(crate) fn password_env(
    source: &BackupSource,
    file_var: Option<&str>,
    value_var: &str,
) -> Result<Vec<(String, String)>, String> {
    match &source.password {
        None => Ok(Vec::new()),
        Some(PasswordSource::File(path)) => match file_var {
            Some(var) => {
                if !path.exists() {
                    return Err(format!(
                        "password file {} (password_file of backup `{}`) does not exist",
                        path.display(),
                        source.name
                    ));
                }
                Ok(vec![(var.to_string(), path.display().to_string())])
            }
            None => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    format!(
                        "cannot read password file {} (password_file of backup `{}`): {e}",
                        path.display(),
                        source.name
                    )
                })?;
                let value = text.strip_suffix('\n').unwrap_or(&text);
                let value = value.strip_suffix('\r').unwrap_or(value);
                Ok(vec![(value_var.to_string(), value.to_string())])
            }
        },
        Some(PasswordSource::Env(name)) => match std::env::var(name) {
            Ok(value) => Ok(vec![(value_var.to_string(), value)]),
            Err(_) => Err(format!(
                "environment variable {name} (password_env of backup `{}`) is not set",
                source.name
            )),
        },
    }
}

/// Runs one command of `source` with its password environment and timeout.
pub(crate) fn run_tool(
    host: &Host,
    program: &str,
    args: &[&str],
    env: &[(String, String)],
    timeout: Duration,
) -> Result<String, CommandError> {
    let mut cmd = Invocation::new(program, args).timeout(timeout);
    for (k, v) in env {
        cmd = cmd.env(k, v.clone());
    }
    host.runner.run_with(&cmd)
}

/// Phrases a tool prints for one cause (matched case-insensitively), and the message naming
/// that cause (`{repo}` stands for the repository).
pub(crate) type Cause = (&'static [&'static str], &'static str);

/// The message for a failed command of `tool`: the first of `causes` whose phrase its stderr
/// holds, with the tool's own words; else what failed and how.
pub(crate) fn explain_with(tool: &str, causes: &[Cause], repository: &str, what: &str, e: &CommandError) -> String {
    let CommandError::Failed { stderr, .. } = e else {
        return format!("{what}: {e}");
    };
    let lower = stderr.to_lowercase();
    match causes
        .iter()
        .find(|(phrases, _)| phrases.iter().any(|p| lower.contains(p)))
    {
        Some((_, message)) => format!(
            "{} ({tool}: {})",
            message.replace("{repo}", repository),
            first_lines(stderr)
        ),
        None => format!("{what} failed: {e}"),
    }
}

/// The first lines of a tool's complaint, for messages.
pub(crate) fn first_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).take(3).collect();
    lines.join(" / ")
}

/// Where a local repository or folder is, from the mount table: a network file system is a
/// NAS, the root file system is the same disk as the data, a removable device is USB, any
/// other local file system another disk. URLs of cloud stores are cloud; other remote
/// repositories (sftp, rest, ssh) are a NAS.
pub fn infer_destination(source: &BackupSource, host: &Host) -> Option<Destination> {
    let location = source
        .repository
        .clone()
        .or_else(|| source.path.as_ref().map(|p| p.display().to_string()))?;
    if let Some((scheme, _)) = location.split_once(':')
        && !location.starts_with('/')
    {
        return match scheme {
            "s3" | "b2" | "azure" | "gs" | "swift" | "rclone" => Some(Destination::Cloud),
            "sftp" | "rest" | "ssh" => Some(Destination::Nas),
            _ if location.contains('@') || scheme.len() > 1 => Some(Destination::Nas),
            _ => None,
        };
    }
    if location.starts_with("ssh://") {
        return Some(Destination::Nas);
    }
    let mounts = host.read("/proc/mounts").ok()?;
    destination_from_mounts(&mounts, &location, |dev| {
        let name = dev.trim_start_matches("/dev/");
        let disk: String = name.trim_end_matches(|c: char| c.is_ascii_digit()).to_string();
        let disk = disk
            .strip_suffix('p')
            .filter(|d| d.starts_with("nvme"))
            .unwrap_or(&disk);
        host.read(format!("/sys/block/{disk}/removable"))
            .is_ok_and(|v| v.trim() == "1")
    })
}

/// The destination of `path` given the mount table (`/proc/mounts`) and whether a device is
/// removable.
pub fn destination_from_mounts(mounts: &str, path: &str, removable: impl Fn(&str) -> bool) -> Option<Destination> {
    let mount = mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?, f.next()?, f.next()?))
        })
        .filter(|(_, at, _)| {
            let at = at.trim_end_matches('/');
            path == at || path.starts_with(&format!("{at}/")) || at.is_empty()
        })
        .max_by_key(|(_, at, _)| at.len())?;
    let (device, at, fs) = mount;
    Some(
        if matches!(fs, "nfs" | "nfs4" | "cifs" | "smb3" | "smbfs" | "fuse.sshfs" | "9p") {
            Destination::Nas
        } else if removable(device) {
            Destination::Usb
        } else if at == "/" {
            Destination::SameDisk
        } else {
            Destination::OtherDisk
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "/dev/sda2 / ext4 rw 0 0\n/dev/sdb1 /mnt/usb vfat rw 0 0\nnas:/export /mnt/nas nfs4 rw 0 0\n/dev/sdc1 /srv/backup ext4 rw 0 0\n";

    #[test]
    fn destinations_follow_the_mount_table() {
        let removable = |d: &str| d == "/dev/sdb1";
        let d = |p| destination_from_mounts(MOUNTS, p, removable);
        assert_eq!(d("/var/backups/restic"), Some(Destination::SameDisk));
        assert_eq!(d("/mnt/usb/restic"), Some(Destination::Usb));
        assert_eq!(d("/mnt/nas/restic"), Some(Destination::Nas));
        assert_eq!(d("/srv/backup"), Some(Destination::OtherDisk));
        assert_eq!(d("/mnt/nasty"), Some(Destination::SameDisk), "a prefix is not a mount");
    }

    /// The Windows and macOS collectors go through the runner, so they run here with a fake one.
    #[test]
    fn windows_and_macos_collection_goes_through_the_runner() {
        use crate::checks::testutil::FakeRunner;
        let source = |kind: &str| {
            rounds_agent_config::parse(
                &format!("[[backup]]\nname = \"x\"\nkind = \"{kind}\"\n"),
                std::path::Path::new("a.toml"),
            )
            .unwrap()
            .backups
            .remove(0)
        };
        let host = |runner: FakeRunner| Host {
            runner: std::sync::Arc::new(runner),
            ..Host::system()
        };
        let summary = r#"{"NumberOfVersions": 3, "LastSuccessfulBackupTime": "/Date(1795399200000)/", "LastBackupTime": "/Date(1795399200000)/", "LastBackupTarget": "Network Share", "DetailedMessage": "", "LastBackupResultHR": 0, "LastBackupResultDetailedHR": 0}"#;
        let h = host(FakeRunner::default().with(
            "powershell -NoProfile -Command Get-WBSummary | ConvertTo-Json",
            Ok(summary),
        ));
        let b = wbadmin::collect(&source("windows_server_backup"), &h).unwrap();
        assert_eq!(
            (b.last_result.as_str(), b.destination.as_deref()),
            ("success", Some("nas"))
        );

        let events =
            r#"{"TimeCreated": "/Date(1795399200000)/", "Message": "Veeam Agent 'Job' finished with Failed."}"#;
        let h = host(FakeRunner::default().with(
            &format!("powershell -NoProfile -Command {}", veeam::SESSIONS),
            Ok(events),
        ));
        assert_eq!(veeam::collect(&source("veeam"), &h).unwrap().last_result, "failed");

        let h = host(
            FakeRunner::default()
                .with(
                    "tmutil destinationinfo",
                    Ok("Name          : NAS\nKind          : Network\n"),
                )
                .with("tmutil status", Ok("Backup session status:\n{\n    Running = 0;\n}\n"))
                .with("tmutil latestbackup", Err("No machine directory found for host.")),
        );
        let b = time_machine::collect(&source("time_machine"), &h).unwrap();
        assert_eq!((b.last_result.as_str(), b.last_success_at), ("unknown", None));
        assert!(b.last_error.unwrap().contains("No machine directory found"));
        let e = time_machine::collect(&source("time_machine"), &host(FakeRunner::default())).unwrap_err();
        assert!(e.contains("tmutil destinationinfo"), "{e}");
    }

    #[test]
    fn shrinking_by_more_than_half_is_flagged() {
        let src = rounds_agent_config::parse(
            "[[backup]]\nname = \"f\"\nkind = \"folder\"\npath = \"/nope\"\n",
            std::path::Path::new("a.toml"),
        )
        .unwrap()
        .backups;
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("f");
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("a"), vec![0u8; 1000]).unwrap();
        let mut source = src[0].clone();
        source.path = Some(folder.clone());
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let host = Host {
            state_dir: Some(state),
            ..Host::system()
        };
        let first = observe(&source, &host).unwrap();
        assert_eq!((first.size_bytes, first.shrank_by_half), (Some(1000), None));
        std::fs::write(folder.join("a"), vec![0u8; 400]).unwrap();
        std::fs::write(folder.join("b"), b"x").unwrap();
        let second = observe(&source, &host).unwrap();
        assert_eq!(second.previous_size_bytes, Some(1000));
        assert_eq!(second.size_change_bytes, Some(-599));
        assert_eq!(second.shrank_by_half, Some(true));
    }
}
