//! Time Machine (macOS): `tmutil latestbackup` (the newest completed backup: its folder name is
//! its local time, `YYYY-MM-DD-HHMMSS`), `tmutil status` (a backup running now) and
//! `tmutil destinationinfo` (where: `Kind : Local` or `Network`). No privilege for `status`
//! and `destinationinfo`; `latestbackup` needs the destination mounted (and Full Disk Access on
//! recent macOS), and says so when it cannot.

use chrono::{DateTime, Local, NaiveDateTime, TimeZone, Utc};
use rounds_agent_config::backup::{BackupSource, Destination};
use rounds_protocol::obs::Backup;

use crate::checks::{Host, Invocation};

/// The time of the backup `tmutil latestbackup` names.
pub fn parse_latestbackup(text: &str) -> Result<DateTime<Utc>, String> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    let name = line
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("")
        .trim_end_matches(".backup")
        .trim_end_matches(".inProgress");
    let naive = NaiveDateTime::parse_from_str(name, "%Y-%m-%d-%H%M%S").map_err(|_| {
        format!(
            "unrecognised tmutil latestbackup output: {}",
            if line.is_empty() { "empty output" } else { line }
        )
    })?;
    Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| format!("time {name} does not exist in the local time zone"))
}

/// Whether `tmutil status` says a backup is running, and its phase.
pub fn parse_status(text: &str) -> Result<(bool, Option<String>), String> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.trim().split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_end_matches(';').trim().trim_matches('"').to_string())
        })
    };
    let running = field("Running").ok_or_else(|| "unrecognised tmutil status output: no Running".to_string())?;
    Ok((running == "1", field("BackupPhase")))
}

/// The destinations `tmutil destinationinfo` lists: `(name, kind)`.
pub fn parse_destinations(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut name = None;
    for line in text.lines() {
        if let Some((k, v)) = line.split_once(':') {
            match k.trim() {
                "Name" => name = Some(v.trim().to_string()),
                "Kind" => out.push((name.take().unwrap_or_default(), v.trim().to_string())),
                _ => {}
            }
        }
    }
    out
}

/// Observes Time Machine.
pub fn collect(source: &BackupSource, host: &Host) -> Result<Backup, String> {
    let run = |args: &[&str]| {
        host.runner
            .run_with(&Invocation::new("tmutil", args).timeout(source.timeout))
            .map_err(|e| format!("tmutil {}: {e}", args.join(" ")))
    };
    let destinations = parse_destinations(&run(&["destinationinfo"])?);
    if destinations.is_empty() {
        return Err("Time Machine has no backup destination configured".into());
    }
    let (running, phase) = parse_status(&run(&["status"])?)?;
    let latest = run(&["latestbackup"]).and_then(|t| parse_latestbackup(&t));
    let destination = if destinations.iter().any(|(_, k)| k == "Network") {
        Destination::Nas
    } else {
        Destination::Usb
    };
    let (last_success_at, error) = match latest {
        Ok(t) => (Some(t), None),
        Err(e) => (None, Some(e)),
    };
    Ok(Backup {
        tool: "time-machine".into(),
        repository: destinations
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        last_success_at,
        last_attempt_at: last_success_at,
        last_result: if running {
            "running"
        } else if last_success_at.is_some() {
            "success"
        } else {
            "unknown"
        }
        .into(),
        last_error: error.or_else(|| running.then(|| format!("backup running, phase {}", phase.unwrap_or_default()))),
        destination: Some(destination.as_str().into()),
        ..Backup::default()
    })
}

/// Inline inputs are written by us in the documented shapes of tmutil's output; the
/// `recorded` ones are outputs real Macs printed, published by others (sources in
/// `agent/tests/fixtures/recorded/SOURCE.md`), and pin Apple's exact wording.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testutil::{FakeRunner, recorded};

    fn local(name: &str) -> DateTime<Utc> {
        Local
            .from_local_datetime(&NaiveDateTime::parse_from_str(name, "%Y-%m-%d-%H%M%S").unwrap())
            .earliest()
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn recorded_outputs_parse_as_the_mac_meant_them() {
        let status = |f: &str| parse_status(&recorded(&format!("backup/tmutil/{f}"))).unwrap();
        assert_eq!(status("status-idle.txt"), (false, None));
        assert_eq!(
            status("status-finding-changes.txt"),
            (true, Some("FindingChanges".into()))
        );
        // The nested `Progress` dictionary (its own `Percent`, `bytes` ...) does not confuse it.
        assert_eq!(status("status-copying.txt"), (true, Some("Copying".into())));

        let dest = |f: &str| parse_destinations(&recorded(&format!("backup/tmutil/{f}")));
        assert_eq!(
            dest("destinationinfo-local.txt"),
            [("9168227426-F4".into(), "Local".into())]
        );
        assert_eq!(
            dest("destinationinfo-network.txt"),
            [("Time Machine".into(), "Network".into())]
        );

        // HFS+ destination: spaces in the volume and machine names.
        let latest = parse_latestbackup(&recorded("backup/tmutil/latestbackup-hfs.txt")).unwrap();
        assert_eq!(latest, local("2019-07-29-100231"));
    }

    #[test]
    fn a_recorded_mac_backing_up_to_a_network_share_reports_running_on_a_nas() {
        let host = Host {
            runner: std::sync::Arc::new(
                FakeRunner::default()
                    .with(
                        "tmutil destinationinfo",
                        Ok(&recorded("backup/tmutil/destinationinfo-network.txt")),
                    )
                    .with("tmutil status", Ok(&recorded("backup/tmutil/status-copying.txt")))
                    .with(
                        "tmutil latestbackup",
                        Ok(&recorded("backup/tmutil/latestbackup-hfs.txt")),
                    ),
            ),
            ..Host::system()
        };
        let source = rounds_agent_config::parse(
            "[[backup]]\nname = \"tm\"\nkind = \"time_machine\"\n",
            std::path::Path::new("a.toml"),
        )
        .unwrap()
        .backups
        .remove(0);
        let b = collect(&source, &host).unwrap();
        assert_eq!(b.repository, "Time Machine");
        assert_eq!(b.destination.as_deref(), Some("nas"));
        assert_eq!(b.last_result, "running");
        assert_eq!(b.last_success_at, Some(local("2019-07-29-100231")));
        assert_eq!(b.last_error.as_deref(), Some("backup running, phase Copying"));
    }

    #[test]
    fn the_latest_backup_time_is_its_folder_name() {
        let hfs = "/Volumes/TM/Backups.backupdb/reception-imac/2026-11-23-020512\n";
        let apfs = "/Volumes/.timemachine/ABC/2026-11-23-020512.backup/2026-11-23-020512.backup\n";
        let want = Local
            .from_local_datetime(&NaiveDateTime::parse_from_str("2026-11-23-020512", "%Y-%m-%d-%H%M%S").unwrap())
            .earliest()
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_latestbackup(hfs).unwrap(), want);
        assert_eq!(parse_latestbackup(apfs).unwrap(), want);
        // A failed lookup (destination unplugged) is an error that quotes tmutil.
        let e =
            parse_latestbackup("Failed to mount backup destination, error: Error Domain=TMBackupErrorDomain Code=18\n")
                .unwrap_err();
        assert!(e.contains("Failed to mount backup destination"), "{e}");
        assert!(parse_latestbackup("").unwrap_err().contains("empty output"));
    }

    #[test]
    fn status_says_whether_a_backup_runs_and_its_phase() {
        let idle = "Backup session status:\n{\n    ClientID = \"com.apple.backupd\";\n    Percent = \"-1\";\n    Running = 0;\n}\n";
        assert_eq!(parse_status(idle).unwrap(), (false, None));
        let copying = "Backup session status:\n{\n    BackupPhase = Copying;\n    ClientID = \"com.apple.backupd\";\n    Running = 1;\n}\n";
        assert_eq!(parse_status(copying).unwrap(), (true, Some("Copying".into())));
        assert!(parse_status("tmutil: status requires Full Disk Access").is_err());
    }

    #[test]
    fn destinations_are_local_or_network() {
        let text = "====================================================\nName          : Reception USB\nKind          : Local\nMount Point   : /Volumes/Reception USB\nID            : 1A2B\n====================================================\nName          : NAS\nKind          : Network\nURL           : smb://backup@nas._smb._tcp.local./TimeMachine\nID            : 3C4D\n";
        assert_eq!(
            parse_destinations(text),
            [
                ("Reception USB".to_string(), "Local".to_string()),
                ("NAS".to_string(), "Network".to_string())
            ]
        );
        assert!(parse_destinations("tmutil: No destinations configured.\n").is_empty());
    }
}
