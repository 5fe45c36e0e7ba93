//! The agent's configuration format, in two stages, shared by the agent and the collector.
//!
//! One format: what an agent's local TOML file says is what the collector stores and serves per
//! practice and site (`rounds-collector agent-config set`), validated by this same code on both
//! sides. [`RawConfig`] is what the TOML says (unknown keys are errors); [`AgentConfig`] is the
//! validated form: durations, parsed cron schedules, backup sources, EHR endpoints, watched
//! logs, spool limits. [`parse`] collects every problem at once, each naming the key, the file
//! and the line.
//!
//! This crate knows check *names* ([`CHECKS`]) but not the checks themselves: the agent maps a
//! validated configuration onto its check objects, the collector only validates and stores.
//!
//! ```toml
//! heartbeat_interval_secs = 30
//!
//! [checks.inventory]
//! schedule = "0 0 * * * *"   # cron with seconds: hourly
//!
//! [[backup]]
//! name = "nightly"
//! kind = "restic"
//! repository = "/mnt/nas/restic"
//! password_file = "/etc/rounds/restic.pass"
//!
//! [[endpoint]]
//! name = "EHR"
//! kind = "fhir"
//! url = "https://ehr.example.com/fhir/r4"
//!
//! [[audit_log]]
//! path = "/var/log/audit/audit.log"
//! ```
//!
//! Modules: [`backup`] (`[[backup]]`), [`endpoint`] (`[[endpoint]]` and `[probes]`),
//! [`audit_log`] (`[[audit_log]]`), [`spool`] (`[spool]`); each owns its raw and validated
//! types and its validation.

pub mod audit_log;
pub mod backup;
pub mod endpoint;
pub mod spool;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// Seconds between heartbeats when nothing says.
pub const DEFAULT_HEARTBEAT_INTERVAL_SECS: u64 = 30;
/// Longest accepted heartbeat interval, in seconds (one day).
pub const MAX_HEARTBEAT_INTERVAL_SECS: u64 = 86_400;
/// Schedule of a check when the file does not say: hourly, on the hour.
pub const DEFAULT_SCHEDULE: &str = "0 0 * * * *";

/// Names of every scheduled check the agent has, in the order it runs them. The agent's
/// registry of check objects is tested to match this list.
pub const CHECKS: &[&str] = &[
    "inventory",
    "encryption",
    "firewall",
    "updates",
    "screen_lock",
    "malware",
    "time_sync",
    "passwords",
    "accounts",
    "disk_space",
    "audit_log",
    "mfa",
    "usb_storage",
    "admin_accounts",
    "account_activity",
    "log_forwarding",
    "os_release",
    "remote_access",
    "backup",
];

/// The configuration file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Seconds between heartbeats to the collector; 1 to 86400, default 30.
    #[serde(default)]
    pub heartbeat_interval_secs: Option<Spanned<i64>>,
    /// Per-check settings, keyed by check name: `[checks.inventory]`.
    #[serde(default)]
    pub checks: BTreeMap<Spanned<String>, RawCheck>,
    /// Backup sources to watch: `[[backup]]`, one table each.
    #[serde(default)]
    pub backup: Vec<Spanned<backup::RawBackup>>,
    /// EHR and other endpoints to probe: `[[endpoint]]`, one table each.
    #[serde(default)]
    pub endpoint: Vec<Spanned<endpoint::RawEndpoint>>,
    /// Defaults for every probe and the network baseline: `[probes]`.
    #[serde(default)]
    pub probes: Option<Spanned<endpoint::RawProbes>>,
    /// Logs whose integrity is watched: `[[audit_log]]`, one table each.
    #[serde(default)]
    pub audit_log: Vec<Spanned<audit_log::RawAuditLog>>,
    /// Limits of the on-disk spool of undelivered reports: `[spool]`.
    #[serde(default)]
    pub spool: Option<Spanned<spool::RawSpool>>,
}

/// One check's settings as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    /// When the check runs, in the machine's local time: a cron expression with seconds (6 or 7
    /// fields), e.g. `"0 0 * * * *"` for hourly; default hourly.
    #[serde(default)]
    pub schedule: Option<Spanned<String>>,
    /// Whether the check runs at all; default true.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// A check's validated settings.
#[derive(Debug, Clone)]
pub struct CheckSetting {
    pub enabled: bool,
    /// `None`: the default schedule.
    pub schedule: Option<cron::Schedule>,
}

/// A validated configuration. What a file does not say keeps its default.
#[derive(Debug, Clone, Default)]
pub struct AgentConfig {
    /// Time between heartbeats, when the file sets it.
    pub heartbeat_interval: Option<Duration>,
    /// Settings of the checks the file names, by check name (every name is in [`CHECKS`]).
    pub checks: BTreeMap<String, CheckSetting>,
    /// Backup sources, in file order.
    pub backups: Vec<backup::BackupSource>,
    /// Endpoints to probe, in file order.
    pub endpoints: Vec<endpoint::Endpoint>,
    /// Probe defaults and the network baseline.
    pub probes: endpoint::ProbeSettings,
    /// Watched logs, in file order.
    pub audit_logs: Vec<audit_log::AuditLogSpec>,
    /// Spool limits.
    pub spool: spool::SpoolSettings,
}

impl AgentConfig {
    /// The schedule of check `name`: its own, else the default.
    pub fn schedule_of(&self, name: &str) -> cron::Schedule {
        self.checks
            .get(name)
            .and_then(|c| c.schedule.clone())
            .unwrap_or_else(default_schedule)
    }

    /// Whether check `name` runs (checks run unless the file disables them).
    pub fn is_enabled(&self, name: &str) -> bool {
        self.checks.get(name).is_none_or(|c| c.enabled)
    }
}

/// The default check schedule, hourly.
pub fn default_schedule() -> cron::Schedule {
    cron::Schedule::from_str(DEFAULT_SCHEDULE).expect("default schedule parses")
}

/// One thing wrong in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// The key the problem is about, e.g. `checks.inventory.schedule`, when known.
    pub key: Option<String>,
    pub message: String,
}

impl Problem {
    /// A problem at byte `offset` of `text`, about `key`.
    pub fn at(text: &str, offset: usize, key: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            line: Some(line_of(text, offset)),
            key: Some(key.into()),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    /// The key and the message; [`ConfigError`] adds the file and line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(key) = &self.key {
            write!(f, "`{key}`: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Why a configuration file was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// Every problem found, each shown as `file:line: problem`.
    #[error("{}", render(.path, .problems))]
    Invalid { path: PathBuf, problems: Vec<Problem> },
}

impl ConfigError {
    /// The problems found, empty when the file could not be read.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid { problems, .. } => problems,
        }
    }
}

fn render(path: &Path, problems: &[Problem]) -> String {
    let at = |p: &Problem| match p.line {
        Some(line) => format!("{}:{line}: {p}", path.display()),
        None => format!("{}: {p}", path.display()),
    };
    match problems {
        [one] => format!("invalid configuration: {}", at(one)),
        many => {
            let lines: Vec<String> = many.iter().map(at).collect();
            format!(
                "invalid configuration ({} problems):\n  {}",
                many.len(),
                lines.join("\n  ")
            )
        }
    }
}

/// Reads and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Validates configuration `text`; `path` is named in errors (a file name, or a description
/// such as `central configuration of practice Smith`).
pub fn parse(text: &str, path: &Path) -> Result<AgentConfig, ConfigError> {
    let invalid = |problems| ConfigError::Invalid {
        path: path.to_path_buf(),
        problems,
    };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let start = e.span().map(|s| s.start);
        invalid(vec![Problem {
            line: start.map(|s| line_of(text, s)),
            key: start.and_then(|s| key_at(text, s)),
            message: e.message().trim_end().to_string(),
        }])
    })?;
    validate(raw, text).map_err(invalid)
}

/// Turns a parsed file into a configuration, or every problem in it. `text` is the file's text,
/// for lines.
pub fn validate(raw: RawConfig, text: &str) -> Result<AgentConfig, Vec<Problem>> {
    let RawConfig {
        heartbeat_interval_secs,
        checks: raw_checks,
        backup,
        endpoint,
        probes,
        audit_log,
        spool,
    } = raw;
    let mut problems = Vec::new();
    let mut config = AgentConfig::default();

    if let Some(secs) = heartbeat_interval_secs {
        let v = *secs.get_ref();
        match u64::try_from(v) {
            Ok(s) if (1..=MAX_HEARTBEAT_INTERVAL_SECS).contains(&s) => {
                config.heartbeat_interval = Some(Duration::from_secs(s));
            }
            _ => problems.push(Problem::at(
                text,
                secs.span().start,
                "heartbeat_interval_secs",
                format!("must be between 1 and {MAX_HEARTBEAT_INTERVAL_SECS} seconds, got {v}"),
            )),
        }
    }

    for (name, raw_check) in raw_checks {
        let offset = name.span().start;
        let name = name.into_inner();
        let RawCheck { schedule, enabled } = raw_check;
        if !CHECKS.contains(&name.as_str()) {
            problems.push(Problem::at(
                text,
                offset,
                format!("checks.{name}"),
                format!("unknown check `{name}`; known checks: {}", CHECKS.join(", ")),
            ));
            continue;
        }
        let schedule = match schedule {
            None => None,
            Some(expr) => match parse_schedule(expr.get_ref()) {
                Ok(s) => Some(s),
                Err(message) => {
                    problems.push(Problem::at(
                        text,
                        expr.span().start,
                        format!("checks.{name}.schedule"),
                        message,
                    ));
                    continue;
                }
            },
        };
        config.checks.insert(
            name,
            CheckSetting {
                enabled: enabled.unwrap_or(true),
                schedule,
            },
        );
    }

    config.backups = backup::validate(backup, text, &mut problems);
    config.probes = endpoint::validate_probes(probes, text, &mut problems);
    config.endpoints = endpoint::validate(endpoint, &config.probes, text, &mut problems);
    config.audit_logs = audit_log::validate(audit_log, text, &mut problems);
    config.spool = spool::validate(spool, text, &mut problems);

    if problems.is_empty() { Ok(config) } else { Err(problems) }
}

/// Parses a cron expression with seconds (6 or 7 fields).
pub fn parse_schedule(expr: &str) -> Result<cron::Schedule, String> {
    let fields = expr.split_whitespace().count();
    if !(6..=7).contains(&fields) {
        return Err(format!(
            "invalid cron expression {expr:?}: expected 6 or 7 fields (sec min hour day month weekday [year]), found {fields}"
        ));
    }
    cron::Schedule::from_str(expr).map_err(|e| format!("invalid cron expression {expr:?}: {e}"))
}

/// Problems for names that appear more than once in a list of tables (`[[backup]]` names must be
/// unique): `(name, offset)` pairs, `table` for the key.
pub(crate) fn duplicate_names<'a>(
    names: impl IntoIterator<Item = (&'a str, usize)>,
    table: &str,
    text: &str,
    problems: &mut Vec<Problem>,
) {
    let mut seen = std::collections::BTreeSet::new();
    for (name, offset) in names {
        if !seen.insert(name) {
            problems.push(Problem::at(
                text,
                offset,
                format!("{table}.name"),
                format!("`{name}` is used by another [[{table}]]; names must be unique"),
            ));
        }
    }
}

/// A whole number of seconds within `range`, or a problem naming `key`.
pub(crate) fn secs_in(
    v: &Spanned<i64>,
    range: std::ops::RangeInclusive<u64>,
    key: &str,
    text: &str,
    problems: &mut Vec<Problem>,
) -> Option<Duration> {
    let n = *v.get_ref();
    match u64::try_from(n) {
        Ok(s) if range.contains(&s) => Some(Duration::from_secs(s)),
        _ => {
            problems.push(Problem::at(
                text,
                v.span().start,
                key,
                format!("must be between {} and {} seconds, got {n}", range.start(), range.end()),
            ));
            None
        }
    }
}

/// The dotted key whose value starts at byte `offset` (`checks.inventory.schedule`), found from the
/// `key =` before it on its line and the nearest `[table]` header above; `None` when `offset` is
/// not in a value (an unknown key's error already names the key).
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let (key, _) = text[line_start..offset].split_once('=')?;
    let key = key.trim().trim_matches('"');
    if key.is_empty() {
        return None;
    }
    let table = text[..line_start].lines().rev().find_map(|l| {
        let l = l.trim();
        let l = l
            .strip_prefix("[[")
            .and_then(|r| r.split_once("]]"))
            .map(|(t, _)| t)
            .or_else(|| l.strip_prefix('[').and_then(|r| r.split_once(']')).map(|(t, _)| t))?;
        Some(l.trim().to_string())
    });
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_string(),
    })
}

/// The 1-based line of byte `offset` in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_of_counts_newlines_before_the_offset() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 4), 3);
        assert_eq!(line_of("a", 99), 1);
    }

    #[test]
    fn five_field_cron_is_refused_with_a_hint() {
        let err = parse_schedule("0 * * * *").unwrap_err();
        assert!(err.contains("6 or 7 fields"), "{err}");
        assert!(parse_schedule("*/5 * * * * *").is_ok());
        assert!(parse_schedule("0 0 3 * * * 2030").is_ok());
    }

    #[test]
    fn an_empty_file_is_every_default() {
        let c = parse("", Path::new("agent.toml")).unwrap();
        assert!(c.heartbeat_interval.is_none());
        assert!(CHECKS.iter().all(|n| c.is_enabled(n)));
        assert!(c.backups.is_empty() && c.endpoints.is_empty() && c.audit_logs.is_empty());
    }

    #[test]
    fn problems_in_array_tables_name_the_table_and_line() {
        let text = "[[backup]]\nname = \"a\"\nkind = \"restic\"\nrepository = \"/r\"\npassword_file = \"/p\"\n\n[[backup]]\nname = \"a\"\nkind = \"folder\"\npath = \"/mnt\"\n";
        let err = parse(text, Path::new("agent.toml")).unwrap_err();
        let p = &err.problems()[0];
        assert_eq!(p.line, Some(8), "{err}");
        assert_eq!(p.key.as_deref(), Some("backup.name"));
    }
}
