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
