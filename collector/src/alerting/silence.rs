//! Runtime silences (maintenance windows created while the collector runs): what a person
//! asks for through the API, the CLI or the dashboard, validated here with errors that name
//! the field, stored through the store ([`crate::store::Tx::create_silence`]) and applied by
//! the engine exactly as the configuration file's `[[silence]]` tables: notifications held,
//! incidents still recorded, start and end written in the affected incidents' timelines.

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;

use super::model::{Incident, NewSilence, StoredSilence};
use crate::store::{PracticeRow, Role, Scope, StoreError};

/// Incident sources a silence's `source` may name.
pub const SOURCES: &[&str] = &[
    "agent_offline",
    "site_offline",
    "ehr_endpoint",
    "ehr_vendor",
    "backup",
    "encryption",
    "audit_tamper",
    "certificate",
    "disk_space",
    "finding",
    "channel_failing",
];

/// The longest runtime silence: a longer window belongs in the configuration file.
pub const MAX_DAYS: i64 = 31;

/// A silence as asked for: text as typed (API body, CLI flags, dashboard form). Empty text is
/// the same as absent. Give `end` or `duration`, not both.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceRequest {
    /// The practice's name.
    pub practice: Option<String>,
    /// The site's name (within `practice` when given).
    pub site: Option<String>,
    /// An incident source such as `agent_offline` (see [`SOURCES`]).
    pub source: Option<String>,
    /// An incident's subject, or an agent id (every incident of that machine).
    pub subject: Option<String>,
    /// RFC 3339 start; now when absent.
    pub start: Option<String>,
    /// RFC 3339 end.
    pub end: Option<String>,
    /// How long from the start, such as `90m`, `2h` or `1d`.
    pub duration: Option<String>,
    /// Why (kept in the timelines and the audit log).
    pub reason: Option<String>,
    /// Who asks, through the API or the CLI (the dashboard names its user).
    pub by: Option<String>,
}

/// Why a silence was not created or ended.
#[derive(Debug, thiserror::Error)]
pub enum SilenceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Every problem of the request, each starting with the field it is about.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error("silences need the admin or technician role")]
    Forbidden,
    #[error("silence #{0} is already over")]
    Over(i64),
    #[error("no silence #{0}")]
    NotFound(i64),
}

/// Admins and technicians only.
pub fn may_silence(scope: &Scope) -> Result<(), SilenceError> {
    match scope.role {
        Role::Admin | Role::Technician => Ok(()),
        Role::PracticeManager => Err(SilenceError::Forbidden),
    }
}

fn given(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn time(field: &str, text: &str, problems: &mut Vec<String>) -> Option<DateTime<Utc>> {
    match DateTime::parse_from_rfc3339(text) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(_) => {
            problems.push(format!(
                "{field}: `{}` is not an RFC 3339 time such as 2026-12-24T18:00:00Z",
                crate::security::echo::capped(text)
            ));
            None
        }
    }
}

fn printable(field: &str, v: &str, max: usize, problems: &mut Vec<String>) {
    if v.chars().count() > max || v.chars().any(char::is_control) {
        problems.push(format!("{field}: at most {max} printable characters"));
    }
}

/// Checks a request against the practices that exist; every problem names its field.
pub fn validate(
    req: &SilenceRequest,
    practices: &[PracticeRow],
    created_by: &str,
    now: DateTime<Utc>,
) -> Result<NewSilence, Vec<String>> {
    let SilenceRequest {
        practice,
        site,
        source,
        subject,
        start,
        end,
        duration,
        reason,
        by: _,
    } = req;
    let (practice, site, source, subject) = (given(practice), given(site), given(source), given(subject));
    let (start, end, duration, reason) = (given(start), given(end), given(duration), given(reason));
    let mut problems = Vec::new();
    if practice.is_none() && site.is_none() && source.is_none() && subject.is_none() {
        problems.push(
            "practice, site, source, subject: give at least one (a silence of everything belongs in the configuration file)"
                .to_string(),
        );
    }
    let known = practice.as_ref().map(|p| practices.iter().find(|r| &r.name == p));
    if let (Some(p), Some(None)) = (&practice, known) {
        problems.push(format!(
            "practice: no practice named `{}`",
            crate::security::echo::capped(p)
        ));
    }
    if let Some(s) = &site {
        match known {
            Some(Some(p)) if !p.sites.contains(s) => problems.push(format!(
                "site: practice `{}` has no site named `{}`",
                p.name,
                crate::security::echo::capped(s)
            )),
            None if !practices.iter().any(|p| p.sites.contains(s)) => problems.push(format!(
                "site: no practice has a site named `{}`",
                crate::security::echo::capped(s)
            )),
            _ => {}
        }
    }
    if let Some(s) = &source
        && !SOURCES.contains(&s.as_str())
    {
        problems.push(format!(
            "source: `{}` is not one of {}",
            crate::security::echo::capped(s),
            SOURCES.join(", ")
        ));
    }
    if let Some(s) = &subject {
        printable("subject", s, 300, &mut problems);
    }
    let reason = match reason {
        None => {
            problems.push("reason: say why (kept in the incidents' timelines and the audit log)".into());
            String::new()
        }
        Some(r) => {
            printable("reason", &r, 500, &mut problems);
            r
        }
    };
    let starts_at = match &start {
        None => Some(now),
        Some(t) => time("start", t, &mut problems),
    };
    let ends_at = match (&end, &duration) {
        (Some(_), Some(_)) => {
            problems.push("end, duration: give one of them, not both".into());
            None
        }
        (None, None) => {
            problems.push("duration: give a duration such as 2h (or an end time)".into());
            None
        }
        (Some(e), None) => time("end", e, &mut problems),
        (None, Some(d)) => match crate::config::parse_duration(d) {
            Ok(d) => starts_at.and_then(|s| Some(s + Duration::from_std(d).ok()?)),
            Err(e) => {
                problems.push(format!("duration: {}", crate::security::echo::capped(&e)));
                None
            }
        },
    };
    if let (Some(s), Some(e)) = (starts_at, ends_at) {
        let field = if end.is_some() { "end" } else { "duration" };
        if e <= s {
            problems.push(format!("{field}: the silence must end after it starts"));
        } else if e <= now {
            problems.push(format!("{field}: the silence would be over already"));
        } else if e - s > Duration::days(MAX_DAYS) {
            problems.push(format!(
                "{field}: at most {MAX_DAYS} days; a longer or recurring window belongs in the configuration file's [[silence]]"
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(NewSilence {
        practice,
        site,
        source,
        subject,
        starts_at: starts_at.unwrap_or(now),
        ends_at: ends_at.unwrap_or(now),
        reason,
        created_by: created_by.to_string(),
    })
}

/// What a silence selects, configured or runtime: `None` is "any".
#[derive(Debug, Clone, Copy)]
pub struct Matchers<'a> {
    pub practice: Option<&'a str>,
    pub site: Option<&'a str>,
    pub source: Option<&'a str>,
    pub subject: Option<&'a str>,
}

impl<'a> Matchers<'a> {
    pub fn of_runtime(s: &'a StoredSilence) -> Self {
        Matchers {
            practice: s.practice.as_deref(),
            site: s.site.as_deref(),
            source: s.source.as_deref(),
            subject: s.subject.as_deref(),
        }
    }

    pub fn of_config(s: &'a super::config::Silence) -> Self {
        Matchers {
            practice: s.practice.as_deref(),
            site: s.site.as_deref(),
            source: s.source.as_deref(),
            subject: None,
        }
    }

    /// Whether the incident is selected. An MSP-wide incident matches a practice only when
    /// every practice it names is that one.
    pub fn matches(&self, inc: &Incident) -> bool {
        let practice_ok = self.practice.is_none_or(|p| {
            inc.practice.as_deref() == Some(p)
                || (!inc.practices_affected.is_empty() && inc.practices_affected.iter().all(|a| a == p))
        });
        practice_ok
            && self.site.is_none_or(|x| inc.site.as_deref() == Some(x))
            && self.source.is_none_or(|x| inc.source == x)
            && self
                .subject
                .is_none_or(|x| inc.subject == x || inc.agent_id.as_deref() == Some(x))
    }
}

/// One line describing a runtime silence (CLI, audit log).
pub fn describe(s: &StoredSilence) -> String {
    let mut m = Vec::new();
    for (k, v) in [
        ("practice", &s.practice),
        ("site", &s.site),
        ("source", &s.source),
        ("subject", &s.subject),
    ] {
        if let Some(v) = v {
            m.push(format!("{k}={v}"));
        }
    }
    format!(
        "silence {} ({}) from {} to {}: {} (by {})",
        s.name(),
        m.join(" "),
        s.starts_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        s.effective_end().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        s.reason,
        s.created_by
    )
}
