//! Veeam Agent for Windows: the job sessions it writes to its event log (`Veeam Agent`), event
//! 190 per finished job ("... finished with Success." / "Warning." / "Failed."), read with
//! `powershell Get-WinEvent -LogName 'Veeam Agent' -FilterXPath '*[System[EventID=190]]'
//! -MaxEvents 50 | Select-Object TimeCreated, Message | ConvertTo-Json`. No privilege beyond
//! reading that log (local users can by default).

use chrono::{DateTime, Utc};
use rounds_agent_config::backup::BackupSource;
use rounds_protocol::obs::Backup;
use serde_json::Value;

use super::wbadmin::parse_ps_time;
use crate::checks::{Host, Invocation};

/// The PowerShell command that lists finished job sessions.
pub const SESSIONS: &str = "Get-WinEvent -LogName 'Veeam Agent' -FilterXPath '*[System[EventID=190]]' -MaxEvents 50 | Select-Object TimeCreated, Message | ConvertTo-Json";

/// One finished session: when, and `success`, `partial` (Warning) or `failed`.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub at: DateTime<Utc>,
    pub result: &'static str,
    pub message: String,
}

/// The result a session message names.
pub fn result_of(message: &str) -> Option<&'static str> {
    let m = message.to_lowercase();
    let (_, tail) = m.rsplit_once("finished with ")?;
    if tail.starts_with("success") {
        Some("success")
    } else if tail.starts_with("warning") {
        Some("partial")
    } else if tail.starts_with("fail") || tail.starts_with("error") {
        Some("failed")
    } else {
        None
    }
}

/// Parses the sessions' JSON (an object for one event, a list for several), newest last.
pub fn parse_sessions(json: &str) -> Result<Vec<Session>, String> {
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    let v: Value = serde_json::from_str(json.trim()).map_err(|e| format!("unrecognised Veeam session output: {e}"))?;
    let items = match v {
        Value::Array(a) => a,
        one => vec![one],
    };
    let mut out = Vec::new();
    for item in items {
        let message = item.get("Message").and_then(Value::as_str).unwrap_or("").to_string();
        let (Some(at), Some(result)) = (parse_ps_time(&item["TimeCreated"]), result_of(&message)) else {
            continue;
        };
        out.push(Session { at, result, message });
    }
    out.sort_by_key(|s| s.at);
    Ok(out)
}

/// The observation the sessions give.
pub fn to_backup(sessions: &[Session]) -> Backup {
    let last = sessions.last();
    let success = sessions.iter().rev().find(|s| s.result == "success");
    Backup {
        tool: "veeam".into(),
        repository: "Veeam Agent".into(),
        last_success_at: success.map(|s| s.at),
        last_attempt_at: last.map(|s| s.at),
        last_result: last.map_or("unknown", |s| s.result).into(),
        last_error: last.filter(|s| s.result != "success").map(|s| s.message.clone()),
        backup_count: Some(sessions.len() as u64),
        ..Backup::default()
    }
}

/// Observes Veeam Agent for Windows.
pub fn collect(source: &BackupSource, host: &Host) -> Result<Backup, String> {
    let out = host
        .runner
        .run_with(&Invocation::new("powershell", &["-NoProfile", "-Command", SESSIONS]).timeout(source.timeout))
        .map_err(|e| format!("reading the Veeam Agent event log: {e}"))?;
    Ok(to_backup(&parse_sessions(&out)?))
}

/// Inputs written by us in the shape `Get-WinEvent | Select-Object TimeCreated, Message |
/// ConvertTo-Json` prints (no Veeam Agent to record on here): success, warning (partial) and
/// failed sessions.
#[cfg(test)]
mod tests {
    use super::*;

    fn event(ms: i64, message: &str) -> serde_json::Value {
        serde_json::json!({"TimeCreated": format!("/Date({ms})/"), "Message": message})
    }

    #[test]
    fn the_newest_session_decides_and_the_last_success_is_kept() {
        let json = serde_json::json!([
            event(1_795_485_600_000, "Veeam Agent 'Backup Job SRV1' finished with Failed. Error: Unable to access the backup repository \\\\nas\\veeam."),
            event(1_795_399_200_000, "Veeam Agent 'Backup Job SRV1' finished with Success."),
            event(1_795_312_800_000, "Veeam Agent 'Backup Job SRV1' finished with Warning. Processed with warnings: 3 files skipped."),
        ])
        .to_string();
        let s = parse_sessions(&json).unwrap();
        assert_eq!(
            s.iter().map(|s| s.result).collect::<Vec<_>>(),
            ["partial", "success", "failed"]
        );
        let b = to_backup(&s);
        assert_eq!(b.last_result, "failed");
        assert_eq!(b.last_success_at, DateTime::from_timestamp_millis(1_795_399_200_000));
        assert!(b.last_error.unwrap().contains("Unable to access the backup repository"));
    }

    #[test]
    fn one_session_is_an_object_and_a_warning_is_partial() {
        let json = event(
            1_795_312_800_000,
            "Veeam Agent 'Backup Job SRV1' finished with Warning.",
        )
        .to_string();
        let b = to_backup(&parse_sessions(&json).unwrap());
        assert_eq!((b.last_result.as_str(), b.last_success_at), ("partial", None));
        let none = to_backup(&parse_sessions("").unwrap());
        assert_eq!((none.last_result.as_str(), none.backup_count), ("unknown", Some(0)));
        assert!(
            parse_sessions(
                "Get-WinEvent : There is not an event log on the localhost computer that matches \"Veeam Agent\"."
            )
            .is_err()
        );
    }
}
