//! Windows Server Backup: `powershell Get-WBSummary | ConvertTo-Json` (last attempt and its
//! result code, last success, number of versions, target) and `wbadmin get versions` (each
//! version's time and target). Both need administrator rights (Backup Operators); without them
//! the tools refuse, which is reported.

use chrono::{DateTime, NaiveDateTime, Utc};
use rounds_agent_config::backup::{BackupSource, Destination};
use rounds_protocol::obs::Backup;
use serde_json::Value;

use crate::checks::{Host, Invocation};

/// A time as PowerShell's ConvertTo-Json writes a DateTime: `/Date(1599012000000)/` (Windows
/// PowerShell 5.1) or ISO 8601 (PowerShell 7).
pub fn parse_ps_time(v: &Value) -> Option<DateTime<Utc>> {
    let s = v.as_str()?;
    if let Some(ms) = s.strip_prefix("/Date(").and_then(|r| r.strip_suffix(")/")) {
        let ms: i64 = ms.split(['+', '-']).next()?.parse().ok()?;
        // 0001-01-01 (no backup yet) is a negative number: unknown.
        return (ms > 0).then(|| DateTime::from_timestamp_millis(ms)).flatten();
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|n| n.and_utc())
        })
        .filter(|t| t.timestamp() > 0)
}

/// Parses `Get-WBSummary | ConvertTo-Json`.
pub fn parse_summary(json: &str) -> Result<Backup, String> {
    let v: Value = serde_json::from_str(json.trim()).map_err(|e| format!("unrecognised Get-WBSummary output: {e}"))?;
    if v.get("LastBackupResultHR").is_none() {
        return Err("unrecognised Get-WBSummary output: no LastBackupResultHR".into());
    }
    let hr = v["LastBackupResultHR"].as_i64().unwrap_or(-1);
    let detailed = v.get("LastBackupResultDetailedHR").and_then(Value::as_i64).unwrap_or(0);
    let last_attempt_at = parse_ps_time(&v["LastBackupTime"]);
    let last_success_at = parse_ps_time(&v["LastSuccessfulBackupTime"]);
    let message = v
        .get("DetailedMessage")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let result = if last_attempt_at.is_none() {
        "unknown"
    } else if hr == 0 && detailed == 0 {
        "success"
    } else if hr == 0 {
        // The job ran but some items failed (a detailed code is set).
        "partial"
    } else {
        "failed"
    };
    let target = v
        .get("LastBackupTarget")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Ok(Backup {
        tool: "windows-server-backup".into(),
        repository: target.clone(),
        last_success_at,
        last_attempt_at,
        last_result: result.into(),
        last_error: (result != "success")
            .then(|| {
                message
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("result code 0x{:08X}", hr as u32))
            })
            .filter(|_| result != "unknown"),
        backup_count: v.get("NumberOfVersions").and_then(Value::as_u64),
        destination: destination_of(&target).map(|d| d.as_str().to_string()),
        ..Backup::default()
    })
}

/// The destination a wbadmin target description names.
pub fn destination_of(target: &str) -> Option<Destination> {
    let t = target.to_lowercase();
    if t.starts_with("\\\\") || t.contains("network") {
        Some(Destination::Nas)
    } else if t.contains("usb") || t.contains("1394") {
        Some(Destination::Usb)
    } else if t.contains("fixed disk") || t.contains("disk") {
        Some(Destination::OtherDisk)
    } else {
        None
    }
}

/// One version of `wbadmin get versions`: its time (the version identifier, UTC) and target.
pub fn parse_versions(text: &str) -> Vec<(DateTime<Utc>, String)> {
    let mut out = Vec::new();
    let mut target = String::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else { continue };
        match k.trim() {
            "Backup target" => target = v.trim().to_string(),
            "Version identifier" => {
                if let Ok(n) = NaiveDateTime::parse_from_str(v.trim(), "%m/%d/%Y-%H:%M") {
                    out.push((n.and_utc(), std::mem::take(&mut target)));
                }
            }
            _ => {}
        }
    }
    out.sort_by_key(|(t, _)| *t);
    out
}

/// Observes Windows Server Backup.
pub fn collect(source: &BackupSource, host: &Host) -> Result<Backup, String> {
    let summary = host
        .runner
        .run_with(
            &Invocation::new(
                "powershell",
                &["-NoProfile", "-Command", "Get-WBSummary | ConvertTo-Json"],
            )
            .timeout(source.timeout),
        )
        .map_err(|e| format!("Get-WBSummary: {e}"))?;
    let mut b = parse_summary(&summary)?;
    if let Ok(text) = host
        .runner
        .run_with(&Invocation::new("wbadmin", &["get", "versions"]).timeout(source.timeout))
    {
        let versions = parse_versions(&text);
        if let Some((_, target)) = versions.last()
            && b.destination.is_none()
        {
            b.destination = destination_of(target).map(|d| d.as_str().to_string());
        }
        b.backup_count = b.backup_count.or(Some(versions.len() as u64));
    }
    Ok(b)
}

/// Inputs written by us in the documented shapes of Get-WBSummary's properties and wbadmin's
/// output (no Windows Server to record on here), including failed and partial runs.
#[cfg(test)]
mod tests {
    use super::*;

    fn summary(hr: i64, detailed: i64, last: &str, success: &str, message: &str) -> String {
        serde_json::json!({
            "NextBackupTime": "/Date(1795572000000)/",
            "NumberOfVersions": 14,
            "LastSuccessfulBackupTime": success,
            "LastSuccessfulBackupTargetPath": "\\\\?\\Volume{5d3c}",
            "LastSuccessfulBackupTargetLabel": "Backup(E:)",
            "LastBackupTime": last,
            "LastBackupTarget": "1394/USB Disk labeled Backup(E:)",
            "DetailedMessage": message,
            "LastBackupResultHR": hr,
            "LastBackupResultDetailedHR": detailed,
            "CurrentOperationStatus": 0
        })
        .to_string()
    }

    #[test]
    fn a_successful_run() {
        let b = parse_summary(&summary(0, 0, "/Date(1795399200000)/", "/Date(1795399200000)/", "")).unwrap();
        assert_eq!(b.last_result, "success");
        assert_eq!(b.last_success_at, DateTime::from_timestamp_millis(1_795_399_200_000));
        assert_eq!(
            (b.backup_count, b.destination.as_deref(), b.last_error),
            (Some(14), Some("usb"), None)
        );
    }

    #[test]
    fn a_failed_run_keeps_the_earlier_success_and_says_why() {
        let b = parse_summary(&summary(
            -2147024784,
            0,
            "/Date(1795485600000)/",
            "/Date(1795399200000)/",
            "There is not enough disk space to create the volume shadow copy on the storage location.",
        ))
        .unwrap();
        assert_eq!(b.last_result, "failed");
        assert!(b.last_attempt_at > b.last_success_at);
        assert!(b.last_error.unwrap().contains("not enough disk space"));
        let b = parse_summary(&summary(
            -2147024784,
            0,
            "2026-11-24T02:00:00",
            "2026-11-23T02:00:00",
            "",
        ))
        .unwrap();
        assert_eq!(b.last_error.as_deref(), Some("result code 0x80070070"));
    }

    #[test]
    fn a_partial_run_and_a_server_that_never_backed_up() {
        let b = parse_summary(&summary(
            0,
            -2147467259,
            "/Date(1795485600000)/",
            "/Date(1795399200000)/",
            "Some files were skipped.",
        ))
        .unwrap();
        assert_eq!(b.last_result, "partial");
        let never = parse_summary(&summary(0, 0, "/Date(-62135596800000)/", "/Date(-62135596800000)/", "")).unwrap();
        assert_eq!((never.last_result.as_str(), never.last_success_at), ("unknown", None));
        assert!(parse_summary("Get-WBSummary : The term is not recognized").is_err());
    }

    #[test]
    fn versions_give_their_utc_identifier_and_target() {
        let text = "wbadmin 1.0 - Backup command-line tool\n(C) Copyright Microsoft Corporation. All rights reserved.\n\nBackup time: 11/22/2026 2:00 AM\nBackup target: Network Share labeled \\\\nas\\wsb\nVersion identifier: 11/22/2026-07:00\nCan recover: Volume(s), File(s), Application(s), Bare Metal Recovery, System State\nSnapshot ID: {a1b2}\n\nBackup time: 11/23/2026 2:00 AM\nBackup target: 1394/USB Disk labeled Backup(E:)\nVersion identifier: 11/23/2026-07:00\nCan recover: Volume(s), File(s)\nSnapshot ID: {c3d4}\n";
        let v = parse_versions(text);
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].0.to_rfc3339(), "2026-11-23T07:00:00+00:00");
        assert_eq!(destination_of(&v[0].1), Some(Destination::Nas));
        assert_eq!(destination_of(&v[1].1), Some(Destination::Usb));
    }
}
