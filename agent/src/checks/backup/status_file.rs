//! A status file written by another tool (an rsync wrapper, a vendor script): JSON with
//! configurable dotted keys, or text with configurable patterns, for the time of the last run,
//! its result and its error text. A result among `success_values` is a success; the last run
//! is the last successful backup only then.

use chrono::{DateTime, NaiveDateTime, Utc};
use rounds_agent_config::backup::{BackupSource, StatusFileSpec, StatusFormat};
use rounds_protocol::obs::Backup;
use serde_json::Value;

use crate::checks::Host;

/// What a status file says about the last run.
#[derive(Debug, Clone, PartialEq)]
pub struct LastRun {
    pub at: DateTime<Utc>,
    pub result: Option<String>,
    pub error: Option<String>,
}

/// A time as status files write it: RFC 3339, `YYYY-MM-DD HH:MM:SS` (UTC) or Unix seconds.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(s, f) {
            return Some(n.and_utc());
        }
    }
    s.parse::<i64>().ok().and_then(|secs| DateTime::from_timestamp(secs, 0))
}

fn dotted<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    key.split('.').try_fold(v, |v, k| v.get(k))
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Parses a status file's text with its layout.
pub fn parse(text: &str, spec: &StatusFileSpec) -> Result<LastRun, String> {
    match &spec.format {
        StatusFormat::Json {
            time_field,
            result_field,
            error_field,
        } => {
            let v: Value = serde_json::from_str(text).map_err(|e| format!("the status file is not JSON: {e}"))?;
            let raw = dotted(&v, time_field)
                .and_then(as_text)
                .ok_or_else(|| format!("the status file has no `{time_field}`"))?;
            let at = parse_time(&raw).ok_or_else(|| format!("`{time_field}` is not a time: {raw:?}"))?;
            Ok(LastRun {
                at,
                result: dotted(&v, result_field).and_then(as_text),
                error: dotted(&v, error_field).and_then(as_text),
            })
        }
        StatusFormat::Text { time, result, error } => {
            let group = |re: &regex::Regex, name: &str| {
                re.captures_iter(text)
                    .last()
                    .and_then(|c| c.name(name).or_else(|| c.get(1)).map(|m| m.as_str().trim().to_string()))
            };
            let raw = group(time, "time")
                .ok_or_else(|| format!("no line of the status file matches time_pattern `{time}`"))?;
            let at = parse_time(&raw).ok_or_else(|| format!("the time in the status file is not a time: {raw:?}"))?;
            Ok(LastRun {
                at,
                result: result.as_ref().and_then(|re| group(re, "result")),
                error: error.as_ref().and_then(|re| group(re, "error")),
            })
        }
    }
}

/// The observation a last run gives.
pub fn to_backup(run: &LastRun, spec: &StatusFileSpec, path: &str) -> Backup {
    let result = match &run.result {
        None => "unknown",
        Some(r) if spec.success_values.contains(&r.to_lowercase()) => "success",
        Some(r) if r.eq_ignore_ascii_case("partial") || r.eq_ignore_ascii_case("warning") => "partial",
        Some(_) => "failed",
    };
    Backup {
        tool: "status-file".into(),
        repository: path.to_string(),
        last_success_at: (result == "success").then_some(run.at),
        last_attempt_at: Some(run.at),
        last_result: result.into(),
        last_error: run
            .error
            .clone()
            .or_else(|| (result == "failed").then(|| format!("result {:?}", run.result.clone().unwrap_or_default()))),
        ..Backup::default()
    }
}

/// Observes a status file.
pub fn collect(source: &BackupSource, host: &Host) -> Result<Backup, String> {
    let path = source.path.clone().unwrap_or_default();
    let spec = source
        .status
        .as_ref()
        .ok_or_else(|| "status file layout missing".to_string())?;
    let text = host.read_opt(&path)?.ok_or_else(|| {
        format!(
            "status file {} does not exist (has the backup tool ever run?)",
            path.display()
        )
    })?;
    let run = parse(&text, spec).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(to_backup(&run, spec, &path.display().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(toml_extra: &str, path: &str) -> StatusFileSpec {
        let text = format!("[[backup]]\nname = \"s\"\nkind = \"status_file\"\npath = \"{path}\"\n{toml_extra}");
        let c = rounds_agent_config::parse(&text, std::path::Path::new("a.toml")).unwrap();
        c.backups[0].status.clone().unwrap()
    }

    #[test]
    fn json_with_dotted_keys() {
        let s = spec(
            "time_field = \"last.finished\"\nresult_field = \"last.status\"\nerror_field = \"last.message\"\n",
            "/x/status.json",
        );
        let run = parse(r#"{"last": {"finished": "2026-11-23T02:10:00Z", "status": "FAILED", "message": "rsync: connection refused"}}"#, &s).unwrap();
        let b = to_backup(&run, &s, "/x/status.json");
        assert_eq!((b.last_result.as_str(), b.last_success_at), ("failed", None));
        assert_eq!(b.last_error.as_deref(), Some("rsync: connection refused"));
        let run = parse(r#"{"last": {"finished": 1795399800, "status": "ok"}}"#, &s).unwrap();
        assert_eq!(to_backup(&run, &s, "").last_result, "success");
        assert!(parse("{}", &s).unwrap_err().contains("no `last.finished`"));
    }

    #[test]
    fn text_with_patterns_takes_the_last_match() {
        let s = spec(
            "time_pattern = '(?m)^finished: (.+)$'\nresult_pattern = '(?m)^result: (\\w+)'\n",
            "/x/status.txt",
        );
        let text = "finished: 2026-11-22 02:00:00\nresult: failed\nfinished: 2026-11-23 02:00:00\nresult: success\n";
        let run = parse(text, &s).unwrap();
        assert_eq!(run.at.to_rfc3339(), "2026-11-23T02:00:00+00:00");
        assert_eq!(to_backup(&run, &s, "").last_result, "success");
    }
}
