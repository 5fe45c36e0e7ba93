//! The alert engine's settings: `[alerting]`, `[[route]]` and `[[silence]]` of the collector's
//! TOML, raw as written and validated (errors name the file and line).

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rounds_policies::Severity;
use serde::Deserialize;

/// The `[alerting]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerting {
    /// Seconds between engine ticks (offline detection, probe sampling, reminders), default 5.
    pub tick_secs: Option<u64>,
    /// Seconds an open, unacknowledged incident waits before a reminder, default 3600.
    pub renotify_secs: Option<u64>,
    /// Seconds a notification waits before it is sent; one whose incident resolves meanwhile
    /// is not sent (default 0).
    pub hold_secs: Option<u64>,
    /// Failing findings at or above this severity raise an incident (default `high`).
    pub finding_severity: Option<String>,
    /// Failed samples out of `window` that open a probe incident (default 3 of 5).
    pub fail_of_window: Option<usize>,
    pub window: Option<usize>,
    /// Passing samples in a row that end it (default 2).
    pub recover_after: Option<usize>,
    /// Delivery attempts before a notification is given up (default 8).
    pub max_attempts: Option<u32>,
    /// Consecutive failed attempts after which a channel raises its own incident (default 3).
    pub channel_failing_after: Option<u32>,
    /// The dashboard's public URL, for links in notifications.
    pub public_url: Option<String>,
}

/// One `[[route]]`: incidents matching every field given go to `channels`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub practice: Option<String>,
    pub site: Option<String>,
    /// Incidents at or above this severity.
    pub severity: Option<String>,
    /// `agent_offline`, `site_offline`, `ehr_endpoint`, `ehr_vendor`, `backup`, ...
    pub source: Option<String>,
    pub channels: Vec<String>,
    /// Minutes an incident may stay unacknowledged before it goes to `escalate_to` as well.
    pub escalate_after_mins: Option<u64>,
    #[serde(default)]
    pub escalate_to: Vec<String>,
    /// Line of the table in the file (filled in by the parser).
    #[serde(skip)]
    pub line: usize,
}

/// One `[[silence]]` (maintenance window): one-off (`start`, `end`) or recurring (`cron`,
/// `duration_mins`); incidents are recorded, their notifications are held.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSilence {
    pub name: String,
    pub practice: Option<String>,
    pub site: Option<String>,
    pub source: Option<String>,
    /// RFC 3339 times of a one-off silence.
    pub start: Option<String>,
    pub end: Option<String>,
    /// Cron expression (seconds first, as the agent's schedules) of a recurring window's start.
    pub cron: Option<String>,
    pub duration_mins: Option<u64>,
    pub reason: Option<String>,
    #[serde(skip)]
    pub line: usize,
}

/// A validated route.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub practice: Option<String>,
    pub site: Option<String>,
    pub severity: Option<Severity>,
    pub source: Option<String>,
    pub channels: Vec<String>,
    pub escalate_after: Option<Duration>,
    pub escalate_to: Vec<String>,
}

/// When a silence is in force.
#[derive(Debug, Clone)]
pub enum SilenceWhen {
    Once {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
    Recurring {
        schedule: Box<cron::Schedule>,
        duration: Duration,
    },
}

/// A validated silence.
#[derive(Debug, Clone)]
pub struct Silence {
    pub name: String,
    pub practice: Option<String>,
    pub site: Option<String>,
    pub source: Option<String>,
    pub when: SilenceWhen,
    pub reason: Option<String>,
}

impl Silence {
    /// Whether the silence is in force at `now`.
    pub fn active(&self, now: DateTime<Utc>) -> bool {
        match &self.when {
            SilenceWhen::Once { start, end } => *start <= now && now < *end,
            SilenceWhen::Recurring { schedule, duration } => {
                let Ok(d) = chrono::Duration::from_std(*duration) else {
                    return false;
                };
                // The last start at or before now, if it is less than `duration` ago.
                schedule.after(&(now - d)).next().is_some_and(|start| start <= now)
            }
        }
    }
}

/// The engine's validated settings.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    pub tick: Duration,
    /// No heartbeat for this long: offline (the collector's `offline_after`, 3 intervals).
    pub offline_after: Duration,
    /// No heartbeat for this long: missed one (heartbeat interval + 5 s); a site whose
    /// machines all missed one while one is offline is offline as a whole.
    pub suspect_after: Duration,
    pub renotify: Duration,
    pub hold: Duration,
    pub finding_severity: Severity,
    pub window: usize,
    pub fail_of_window: usize,
    pub recover_after: usize,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_cap: Duration,
    pub channel_failing_after: u32,
    pub public_url: Option<String>,
    pub routes: Vec<Route>,
    pub silences: Vec<Silence>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            tick: Duration::from_secs(5),
            offline_after: Duration::from_secs(90),
            suspect_after: Duration::from_secs(35),
            renotify: Duration::from_secs(3600),
            hold: Duration::ZERO,
            finding_severity: Severity::High,
            window: 5,
            fail_of_window: 3,
            recover_after: 2,
            max_attempts: 8,
            retry_base: Duration::from_secs(5),
            retry_cap: Duration::from_secs(600),
            channel_failing_after: 3,
            public_url: None,
            routes: Vec::new(),
            silences: Vec::new(),
        }
    }
}

/// A severity as written in files.
pub fn parse_severity(s: &str) -> Option<Severity> {
    Some(match s {
        "critical" => Severity::Critical,
        "high" => Severity::High,
        "medium" => Severity::Medium,
        "low" => Severity::Low,
        _ => return None,
    })
}

/// Validates the alerting tables, pushing every problem (prefixed `at`, the file) to `problems`.
pub fn validate(
    raw: Option<RawAlerting>,
    routes: Vec<RawRoute>,
    silences: Vec<RawSilence>,
    heartbeat: Duration,
    offline_after: Duration,
    at: &str,
    problems: &mut Vec<String>,
) -> AlertSettings {
    let d = AlertSettings::default();
    let RawAlerting {
        tick_secs,
        renotify_secs,
        hold_secs,
        finding_severity,
        fail_of_window,
        window,
        recover_after,
        max_attempts,
        channel_failing_after,
        public_url,
    } = raw.unwrap_or_default();
    let positive = |name: &str, v: Option<u64>, default: Duration, problems: &mut Vec<String>| match v {
        Some(0) => {
            problems.push(format!("{at}alerting.{name}: must be at least 1"));
            default
        }
        Some(v) => Duration::from_secs(v),
        None => default,
    };
    let tick = positive("tick_secs", tick_secs, d.tick, problems);
    let renotify = positive("renotify_secs", renotify_secs, d.renotify, problems);
    let hold = hold_secs.map(Duration::from_secs).unwrap_or(d.hold);
    let finding_severity = match finding_severity.as_deref().map(|s| (s, parse_severity(s))) {
        None => d.finding_severity,
        Some((_, Some(s))) => s,
        Some((s, None)) => {
            problems.push(format!(
                "{at}alerting.finding_severity: `{s}` is not critical, high, medium or low"
            ));
            d.finding_severity
        }
    };
    let window = window.unwrap_or(d.window);
    let fail_of_window = fail_of_window.unwrap_or(d.fail_of_window);
    let recover_after = recover_after.unwrap_or(d.recover_after);
    if window == 0 || window > 32 || fail_of_window == 0 || fail_of_window > window {
        problems.push(format!(
            "{at}alerting: fail_of_window ({fail_of_window}) must be between 1 and window ({window}), window at most 32"
        ));
    }
    if recover_after == 0 || recover_after > window {
        problems.push(format!(
            "{at}alerting.recover_after: {recover_after} must be between 1 and window ({window})"
        ));
    }
    let routes = routes.into_iter().filter_map(|r| route(r, at, problems)).collect();
    let silences = silences.into_iter().filter_map(|s| silence(s, at, problems)).collect();
    AlertSettings {
        tick,
        offline_after,
        suspect_after: heartbeat + Duration::from_secs(5),
        renotify,
        hold,
        finding_severity,
        window,
        fail_of_window,
        recover_after,
        max_attempts: max_attempts.unwrap_or(d.max_attempts).max(1),
        retry_base: d.retry_base,
        retry_cap: d.retry_cap,
        channel_failing_after: channel_failing_after.unwrap_or(d.channel_failing_after).max(1),
        public_url,
        routes,
        silences,
    }
}

fn route(raw: RawRoute, at: &str, problems: &mut Vec<String>) -> Option<Route> {
    let RawRoute {
        practice,
        site,
        severity,
        source,
        channels,
        escalate_after_mins,
        escalate_to,
        line,
    } = raw;
    let at = &loc(at, line);
    let before = problems.len();
    let severity = match severity.as_deref() {
        None => None,
        Some(s) => {
            let v = parse_severity(s);
            if v.is_none() {
                problems.push(format!("{at}route severity `{s}` is not critical, high, medium or low"));
            }
            v
        }
    };
    if channels.is_empty() {
        problems.push(format!("{at}route: name at least one channel in `channels`"));
    }
    if escalate_after_mins.is_some() == escalate_to.is_empty() {
        problems.push(format!("{at}route: set escalate_after_mins and escalate_to together"));
    }
    if escalate_after_mins == Some(0) {
        problems.push(format!("{at}route: escalate_after_mins must be at least 1"));
    }
    (problems.len() == before).then(|| Route {
        practice,
        site,
        severity,
        source,
        channels,
        escalate_after: escalate_after_mins.map(|m| Duration::from_secs(m * 60)),
        escalate_to,
    })
}

/// `file:line: ` (or `line N: ` without a file) before a problem of one table.
fn loc(at: &str, line: usize) -> String {
    match at.strip_suffix(": ") {
        Some(file) if !file.is_empty() => format!("{file}:{line}: "),
        _ => format!("line {line}: "),
    }
}

fn time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

fn silence(raw: RawSilence, at: &str, problems: &mut Vec<String>) -> Option<Silence> {
    let RawSilence {
        name,
        practice,
        site,
        source,
        start,
        end,
        cron,
        duration_mins,
        reason,
        line,
    } = raw;
    let at = &loc(at, line);
    let when = match (start, end, cron, duration_mins) {
        (Some(start), Some(end), None, None) => match (time(&start), time(&end)) {
            (Some(s), Some(e)) if s < e => Some(SilenceWhen::Once { start: s, end: e }),
            (Some(_), Some(_)) => {
                problems.push(format!("{at}silence `{name}`: end must be after start"));
                None
            }
            _ => {
                problems.push(format!(
                    "{at}silence `{name}`: start and end must be RFC 3339 times such as 2026-12-24T18:00:00Z"
                ));
                None
            }
        },
        (None, None, Some(expr), Some(mins)) if mins > 0 => match cron::Schedule::from_str(&expr) {
            Ok(schedule) => Some(SilenceWhen::Recurring {
                schedule: Box::new(schedule),
                duration: Duration::from_secs(mins * 60),
            }),
            Err(e) => {
                problems.push(format!("{at}silence `{name}`: cron `{expr}` does not parse: {e}"));
                None
            }
        },
        _ => {
            problems.push(format!(
                "{at}silence `{name}`: give either start and end, or cron and duration_mins (at least 1)"
            ));
            None
        }
    };
    Some(Silence {
        name,
        practice,
        site,
        source,
        when: when?,
        reason,
    })
}

/// Fills in the line of each `[[route]]` and `[[silence]]` table: the n-th header in `text`.
pub fn number_lines(text: &str, routes: &mut [RawRoute], silences: &mut [RawSilence]) {
    let headers = |name: &str| -> Vec<usize> {
        text.lines()
            .enumerate()
            .filter(|(_, l)| l.trim() == format!("[[{name}]]"))
            .map(|(i, _)| i + 1)
            .collect()
    };
    for (r, line) in routes.iter_mut().zip(headers("route")) {
        r.line = line;
    }
    for (s, line) in silences.iter_mut().zip(headers("silence")) {
        s.line = line;
    }
}
