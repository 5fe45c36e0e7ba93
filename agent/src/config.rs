//! The agent's configuration file, in two stages.
//!
//! [`RawConfig`] is what the TOML file says (unknown keys are errors); [`AgentSettings`] is the
//! validated form `run` uses: durations, parsed cron schedules, resolved checks. [`load`] reads and
//! validates a file, collecting every problem at once, each naming the key, the file and the line;
//! `rounds-agent validate` calls the same code.
//!
//! ```toml
//! heartbeat_interval_secs = 30
//!
//! [checks.inventory]
//! schedule = "0 0 * * * *"   # cron with seconds: hourly
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::checks::{self, Check};

/// Seconds between heartbeats when the file does not say.
pub const DEFAULT_HEARTBEAT_INTERVAL_SECS: u64 = 30;
/// Longest accepted heartbeat interval, in seconds (one day).
pub const MAX_HEARTBEAT_INTERVAL_SECS: u64 = 86_400;
/// Schedule of a check when the file does not say: hourly, on the hour.
pub const DEFAULT_SCHEDULE: &str = "0 0 * * * *";

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

/// A check and when it runs.
#[derive(Debug, Clone)]
pub struct ScheduledCheck {
    pub check: Arc<dyn Check>,
    pub schedule: cron::Schedule,
}

impl ScheduledCheck {
    pub fn name(&self) -> &'static str {
        self.check.name()
    }
}

/// Validated settings that `run` uses.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// Time between heartbeats; the first is sent at start.
    pub heartbeat_interval: Duration,
    /// Checks to run, each once at start and then on its schedule; each run is one report.
    pub checks: Vec<ScheduledCheck>,
}

impl Default for AgentSettings {
    /// A heartbeat every 30 s and every check (`checks::all()`) hourly.
    fn default() -> Self {
        let schedule = cron::Schedule::from_str(DEFAULT_SCHEDULE).expect("default schedule parses");
        AgentSettings {
            heartbeat_interval: Duration::from_secs(DEFAULT_HEARTBEAT_INTERVAL_SECS),
            checks: checks::all()
                .into_iter()
                .map(|check| ScheduledCheck {
                    check,
                    schedule: schedule.clone(),
                })
                .collect(),
        }
    }
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
pub fn load(path: &Path) -> Result<AgentSettings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Validates configuration `text`; `path` is named in errors.
pub fn parse(text: &str, path: &Path) -> Result<AgentSettings, ConfigError> {
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

/// Turns a parsed file into settings, or every problem in it. `text` is the file's text, for lines.
pub fn validate(raw: RawConfig, text: &str) -> Result<AgentSettings, Vec<Problem>> {
    let RawConfig {
        heartbeat_interval_secs,
        checks: raw_checks,
    } = raw;
    let mut problems = Vec::new();
    let mut settings = AgentSettings::default();

    if let Some(secs) = heartbeat_interval_secs {
        let line = Some(line_of(text, secs.span().start));
        let v = *secs.get_ref();
        match u64::try_from(v) {
            Ok(s) if (1..=MAX_HEARTBEAT_INTERVAL_SECS).contains(&s) => {
                settings.heartbeat_interval = Duration::from_secs(s);
            }
            _ => problems.push(Problem {
                line,
                key: Some("heartbeat_interval_secs".into()),
                message: format!("must be between 1 and {MAX_HEARTBEAT_INTERVAL_SECS} seconds, got {v}"),
            }),
        }
    }

    for (name, raw_check) in raw_checks {
        let line = Some(line_of(text, name.span().start));
        let name = name.into_inner();
        let RawCheck { schedule, enabled } = raw_check;
        let Some(check) = checks::by_name(&name) else {
            let known: Vec<_> = checks::all().iter().map(|c| c.name()).collect();
            problems.push(Problem {
                line,
                key: Some(format!("checks.{name}")),
                message: format!("unknown check `{name}`; known checks: {}", known.join(", ")),
            });
            continue;
        };
        let schedule = match schedule {
            None => Ok(cron::Schedule::from_str(DEFAULT_SCHEDULE).expect("default schedule parses")),
            Some(expr) => parse_schedule(expr.get_ref()).map_err(|message| Problem {
                line: Some(line_of(text, expr.span().start)),
                key: Some(format!("checks.{name}.schedule")),
                message,
            }),
        };
        // Keep the order of `checks::all()`: replace the default entry in place.
        let slot = settings.checks.iter().position(|c| c.name() == check.name());
        match (schedule, enabled.unwrap_or(true), slot) {
            (Err(p), _, _) => problems.push(p),
            (Ok(_), false, Some(i)) => {
                settings.checks.remove(i);
            }
            (Ok(_), false, None) => {}
            (Ok(schedule), true, Some(i)) => settings.checks[i] = ScheduledCheck { check, schedule },
            (Ok(schedule), true, None) => settings.checks.push(ScheduledCheck { check, schedule }),
        }
    }

    if problems.is_empty() {
        Ok(settings)
    } else {
        Err(problems)
    }
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
        if l.starts_with("[[") {
            return None;
        }
        l.strip_prefix('[')
            .and_then(|r| r.split_once(']'))
            .map(|(t, _)| t.trim().to_string())
    });
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_string(),
    })
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
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
}
