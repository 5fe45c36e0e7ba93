//! `GET /practices/{practice_id}`: one practice: its sites and machines, the failing findings
//! with evidence, citation and remediation, EHR availability (status bars over 24 hours and 30
//! days, a latency chart) from the probe observations, a backup timeline per source, the
//! compliance score over 30 days replayed from the finding history, and the accepted risks in
//! force with their expiry. Technicians and admins also get the day-to-day actions (enrollment
//! token, policy settings); a practice manager reads only, and only their own practice: any
//! other id answers 404.

use std::collections::{BTreeMap, HashMap};

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Duration, Utc};
use rounds_policies::Status;
use rounds_protocol::obs;

use super::charts::{self, Cell};
use super::domains::{Level, Tally, tally_by_agent};
use super::overview::{AgentLine, Seen, StatusCell, agents_tallies, group_statuses, role_label, score_class};
use super::session::Session;
use super::{WebError, page};
use crate::api::admin::{AgentView, agent_view};
use crate::app::AppState;
use crate::store::{AgentPolicySettings, ChangeQuery, FindingBrief, ObservedFields, Role, StoredObservation};

/// The practice page.
#[derive(Template)]
#[template(path = "practice.html")]
pub struct PracticePage {
    pub username: String,
    pub role: &'static str,
    pub csrf: String,
    pub is_admin: bool,
    /// Technicians and admins may act; practice managers read.
    pub can_act: bool,
    pub generated_at: String,
    pub id: i64,
    pub name: String,
    pub score: Option<u8>,
    pub score_class: &'static str,
    pub statuses: Vec<StatusCell>,
    pub sites: Vec<SiteBlock>,
    pub failing: Vec<FailingLine>,
    /// Findings in error (the check could not run) across the practice's machines.
    pub cannot_check: usize,
    pub ehr: Vec<Availability>,
    /// Latency over 24 hours, as SVG (every text in it escaped by [`charts`]).
    pub latency_svg: Option<String>,
    pub backups: Vec<BackupRow>,
    pub score_svg: String,
    pub risks: Vec<RiskLine>,
    pub profile: String,
    pub overrides: String,
    /// Shown once after an action (e.g. the enrollment command).
    pub notice: Option<Notice>,
}

/// What an action left to show.
#[derive(Debug, Default)]
pub struct Notice {
    pub text: String,
    /// The command to copy on the machine.
    pub command: Option<String>,
    pub error: bool,
}

/// A site and its machines.
#[derive(Debug)]
pub struct SiteBlock {
    pub name: String,
    pub machines: Vec<AgentLine>,
}

/// A failing (or erroring) finding of one machine.
#[derive(Debug)]
pub struct FailingLine {
    pub agent_id: String,
    pub hostname: String,
    pub line: super::agent::FindingLine,
}

/// One EHR endpoint's availability.
#[derive(Debug)]
pub struct Availability {
    pub endpoint: String,
    pub now_text: String,
    pub now_class: &'static str,
    pub day_svg: String,
    pub month_svg: String,
}

/// One backup source's timeline.
#[derive(Debug)]
pub struct BackupRow {
    pub source: String,
    pub svg: String,
    pub last: String,
}

/// One accepted risk in force.
#[derive(Debug)]
pub struct RiskLine {
    pub rule: String,
    pub title: String,
    pub level: String,
    pub reason: String,
    pub accepted_by: String,
    pub expires: String,
    pub expired: bool,
}

/// Slots of `[from, to)` of length `step`, oldest first.
fn slots(to: DateTime<Utc>, step: Duration, n: i32) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    (0..n).rev().map(|i| (to - step * (i + 1), to - step * i)).collect()
}

/// The availability of one endpoint in one slot from its summaries and probe changes.
fn availability_cell(
    probes: &[(DateTime<Utc>, bool)],
    summaries: &[(DateTime<Utc>, u64, u64)],
    (a, b): (DateTime<Utc>, DateTime<Utc>),
) -> Cell {
    let (up, all) = summaries
        .iter()
        .filter(|(t, _, _)| *t >= a && *t < b)
        .fold((0, 0), |(u, n), (_, up, probes)| (u + up, n + probes));
    let label = format!("{} – {} UTC", a.format("%m-%d %H:%M"), b.format("%m-%d %H:%M"));
    if all > 0 {
        let pct = up as f64 * 100.0 / all as f64;
        let level = if up == all {
            Level::Ok
        } else if up == 0 {
            Level::Fail
        } else {
            Level::Warn
        };
        return Cell {
            level,
            title: format!("{label}: {pct:.1} % up ({up} of {all} probes)"),
        };
    }
    // No summary: the state changes the agents sent (the state holds until the next change).
    let before = probes.iter().rev().find(|(t, _)| *t < a).map(|(_, up)| *up);
    let inside: Vec<bool> = probes
        .iter()
        .filter(|(t, _)| *t >= a && *t < b)
        .map(|(_, u)| *u)
        .collect();
    let states: Vec<bool> = before.into_iter().chain(inside).collect();
    let level = match (states.iter().any(|u| *u), states.iter().any(|u| !*u)) {
        (false, false) => Level::NoData,
        (true, false) => Level::Ok,
        (false, true) => Level::Fail,
        (true, true) => Level::Warn,
    };
    let words = match level {
        Level::Ok => "up",
        Level::Fail => "down",
        Level::Warn => "down part of the time",
        Level::NoData => "no data",
    };
    Cell {
        level,
        title: format!("{label}: {words}"),
    }
}

/// Per endpoint: its probe state changes `(at, up)` and summaries `(period end, up, probes)`.
type EndpointHistory = (Vec<(DateTime<Utc>, bool)>, Vec<(DateTime<Utc>, u64, u64)>);

/// The fields of an `ehr.probe` payload [`ehr_availability`] reads.
pub const PROBE_FIELDS: &[&str] = &["up", "latency_ms"];
/// The fields of an `ehr.summary` payload [`ehr_availability`] reads.
pub const SUMMARY_FIELDS: &[&str] = &["role", "period_end", "up", "probes", "latency_ms_p50"];

/// EHR availability per endpoint, and the latency chart over 24 hours, from the probes'
/// [`PROBE_FIELDS`] and the summaries' [`SUMMARY_FIELDS`].
fn ehr_availability(
    probes: &[ObservedFields],
    summaries: &[ObservedFields],
    now: DateTime<Utc>,
) -> (Vec<Availability>, Option<String>) {
    let mut by_endpoint: BTreeMap<String, EndpointHistory> = BTreeMap::new();
    let mut latency: BTreeMap<String, Vec<(DateTime<Utc>, f64)>> = BTreeMap::new();
    let day_ago = now - Duration::hours(24);
    let field = |o: &ObservedFields, i: usize| o.values.get(i).cloned().unwrap_or_default();
    for o in probes {
        let Some(up) = field(o, 0).as_bool() else {
            continue;
        };
        let t = o.observed_at;
        by_endpoint.entry(o.subject.clone()).or_default().0.push((t, up));
        if let (Some(ms), true) = (field(o, 1).as_f64(), t >= day_ago) {
            latency.entry(o.subject.clone()).or_default().push((t, ms));
        }
    }
    for o in summaries {
        if field(o, 0).as_str() != Some("endpoint") {
            continue;
        }
        let (Some(up), Some(n)) = (field(o, 2).as_u64(), field(o, 3).as_u64()) else {
            continue;
        };
        let t = field(o, 1)
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map_or(o.observed_at, |t| t.to_utc());
        by_endpoint.entry(o.subject.clone()).or_default().1.push((t, up, n));
        if let (Some(ms), true) = (field(o, 4).as_f64(), t >= day_ago) {
            latency.entry(o.subject.clone()).or_default().push((t, ms));
        }
    }
    let out = by_endpoint
        .into_iter()
        .map(|(endpoint, (probes, summaries))| {
            let hours: Vec<Cell> = slots(now, Duration::hours(1), 24)
                .into_iter()
                .map(|s| availability_cell(&probes, &summaries, s))
                .collect();
            let days: Vec<Cell> = slots(now, Duration::days(1), 30)
                .into_iter()
                .map(|s| availability_cell(&probes, &summaries, s))
                .collect();
            let last = hours.last().map_or(Level::NoData, |c| c.level);
            let (now_text, now_class) = match probes.last() {
                Some((_, true)) => ("✔ up now", "pass"),
                Some((_, false)) => ("✖ down now", "fail"),
                None => match last {
                    Level::Ok => ("✔ up", "pass"),
                    Level::Fail => ("✖ down", "fail"),
                    Level::Warn => ("▲ unstable", "warn"),
                    Level::NoData => ("– no data", "na"),
                },
            };
            Availability {
                day_svg: charts::status_bar(&hours, &format!("{endpoint}: availability by hour, last 24 hours")),
                month_svg: charts::status_bar(&days, &format!("{endpoint}: availability by day, last 30 days")),
                endpoint,
                now_text: now_text.to_string(),
                now_class,
            }
        })
        .collect();
    let series: Vec<charts::Series> = latency
        .into_iter()
        .map(|(k, mut v)| {
            v.sort_by_key(|(t, _)| *t);
            (k, v)
        })
        .collect();
    let chart = (!series.is_empty()).then(|| charts::line_chart(&series, day_ago, now, "ms"));
    (out, chart)
}

/// The level of one backup observation.
fn backup_level(o: &StoredObservation) -> (Level, String) {
    match o.observation.payload::<obs::Backup>() {
        Some(Ok(b)) if b.not_configured => (Level::Warn, "not configured".into()),
        Some(Ok(b)) => match b.last_result.as_str() {
            "success" | "ok" | "completed" => (Level::Ok, format!("{} succeeded", b.tool)),
            "unknown" | "none" | "running" => (Level::Warn, format!("{}: {}", b.tool, b.last_result)),
            other => (
                Level::Fail,
                format!(
                    "{} {other}{}",
                    b.tool,
                    b.last_error.map(|e| format!(": {e}")).unwrap_or_default()
                ),
            ),
        },
        _ => (
            Level::Warn,
            o.observation.error.clone().unwrap_or_else(|| "check failed".into()),
        ),
    }
}

/// A timeline per backup source (machine and repository) over 30 days, one cell a day.
fn backup_timeline(rows: &[StoredObservation], hosts: &HashMap<&str, &str>, now: DateTime<Utc>) -> Vec<BackupRow> {
    let mut by_source: BTreeMap<String, Vec<&StoredObservation>> = BTreeMap::new();
    for o in rows {
        let host = hosts.get(o.agent_id.as_str()).copied().unwrap_or("?");
        by_source
            .entry(format!("{host}: {}", o.observation.subject))
            .or_default()
            .push(o);
    }
    by_source
        .into_iter()
        .map(|(source, obs)| {
            let cells: Vec<Cell> = slots(now, Duration::days(1), 30)
                .into_iter()
                .map(|(a, b)| {
                    let day: Vec<(Level, String)> = obs
                        .iter()
                        .filter(|o| o.observation.observed_at >= a && o.observation.observed_at < b)
                        .map(|o| backup_level(o))
                        .collect();
                    let worst = day.iter().min_by_key(|(l, _)| *l);
                    match worst {
                        Some((level, text)) => Cell {
                            level: *level,
                            title: format!("{}: {text}", a.format("%Y-%m-%d")),
                        },
                        None => Cell {
                            level: Level::NoData,
                            title: format!("{}: nothing new reported", a.format("%Y-%m-%d")),
                        },
                    }
                })
                .collect();
            let last = obs.last().map(|o| backup_level(o).1).unwrap_or_default();
            BackupRow {
                svg: charts::status_bar(&cells, &format!("{source}: backups by day, last 30 days")),
                source,
                last,
            }
        })
        .collect()
}

/// The compliance score at the end of each of the last `days` days, replayed backwards from
/// the current findings through the finding history.
pub fn score_history(
    current: &[FindingBrief],
    changes: &[crate::store::FindingChange],
    now: DateTime<Utc>,
    days: i32,
) -> Vec<(DateTime<Utc>, Option<u8>)> {
    let mut state: HashMap<(String, String), (Status, bool)> = current
        .iter()
        .map(|b| ((b.agent_id.clone(), b.rule.clone()), (b.status, b.accepted)))
        .collect();
    let score = |state: &HashMap<(String, String), (Status, bool)>| {
        let mut t = Tally::default();
        for (s, acc) in state.values() {
            t.add(*s, *acc, now);
        }
        t.score()
    };
    let mut points = vec![(now, score(&state))];
    let mut changes: Vec<&crate::store::FindingChange> = changes.iter().collect();
    changes.sort_by_key(|c| c.at);
    let mut idx = changes.len();
    for d in 1..=days {
        let at = now - Duration::days(d.into());
        // Undo every change recorded after `at`.
        while idx > 0 && changes[idx - 1].at > at {
            idx -= 1;
            let c = changes[idx];
            let key = (c.agent_id.clone(), c.rule.clone());
            match c.old_status {
                Some(s) => {
                    state.insert(key, (s, c.old_exception.is_some()));
                }
                None => {
                    state.remove(&key);
                }
            }
        }
        points.push((at, score(&state)));
    }
    points.reverse();
    points
}

/// The accepted risks in force for a practice and its sites.
fn risks(
    state: &AppState,
    practice: &str,
    sites: &[String],
    settings: &[AgentPolicySettings],
    now: DateTime<Utc>,
) -> Vec<RiskLine> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, s) in settings.iter().enumerate() {
        let Ok(Some(policy)) = state.evaluator.policies().policy_for(s) else {
            continue;
        };
        let level = if i == 0 {
            practice.to_string()
        } else {
            format!("{practice} / {}", sites[i - 1])
        };
        for r in &policy.rules {
            let Some(e) = &r.exception else { continue };
            if !seen.insert((r.rule.id.clone(), e.source.clone())) {
                continue;
            }
            out.push(RiskLine {
                rule: r.rule.id.clone(),
                title: r.rule.title.clone(),
                level: level.clone(),
                reason: e.reason.clone(),
                accepted_by: e.accepted_by.clone(),
                expires: e.expires.to_string(),
                expired: now.date_naive() >= e.expires,
            });
        }
    }
    out
}

/// Builds the practice page; `NotFound` when the user may not see it.
pub async fn build(
    state: &AppState,
    session: &Session,
    practice_id: i64,
    notice: Option<Notice>,
) -> Result<PracticePage, WebError> {
    let scope = session.scope();
    let now = state.now();
    if !scope.sees(practice_id) {
        return Err(WebError::NotFound);
    }
    // The user sees the practice: read it alone (a practice scope narrows the SQL to it).
    let narrow = crate::store::Scope {
        role: Role::PracticeManager,
        practice_id: Some(practice_id),
    };
    let practice = state
        .store
        .practices(&narrow)
        .await?
        .into_iter()
        .find(|p| p.id == practice_id)
        .ok_or(WebError::NotFound)?;
    let rows: Vec<_> = state
        .store
        .agents(&narrow)
        .await?
        .into_iter()
        .filter(|a| a.practice_id == practice_id)
        .collect();
    let views: Vec<AgentView> = rows.iter().cloned().map(|a| agent_view(state, a)).collect();
    let ids: std::collections::HashSet<&str> = views.iter().map(|a| a.agent_id.as_str()).collect();
    let briefs: Vec<FindingBrief> = state
        .store
        .finding_briefs(&narrow)
        .await?
        .into_iter()
        .filter(|b| ids.contains(b.agent_id.as_str()))
        .collect();
    let tallies = tally_by_agent(&briefs);
    let refs: Vec<&AgentView> = views.iter().collect();
    let (statuses, all) = group_statuses(&refs, &agents_tallies(&refs, &tallies));
    let sites = practice
        .sites
        .iter()
        .map(|s| SiteBlock {
            name: s.clone(),
            machines: views
                .iter()
                .filter(|a| &a.site == s)
                .map(|a| AgentLine::new(a, practice_id, now))
                .collect(),
        })
        .collect();
    let mut failing = Vec::new();
    for a in &views {
        let findings = state.store.findings(&scope, &a.agent_id).await?;
        let bad: Vec<_> = findings.into_iter().filter(|f| f.status == Status::Fail).collect();
        for line in super::agent::finding_lines(bad, now) {
            failing.push(FailingLine {
                agent_id: a.agent_id.clone(),
                hostname: a.hostname.clone(),
                line,
            });
        }
    }
    let cannot_check = briefs.iter().filter(|b| b.status == Status::Error).count();
    failing.sort_by(|a, b| {
        (a.line.status_label, &a.line.rule, &a.hostname).cmp(&(b.line.status_label, &b.line.rule, &b.hostname))
    });
    let month_ago = now - Duration::days(30);
    let probes = state
        .store
        .observation_fields(
            &scope,
            practice_id,
            <obs::EhrProbe as obs::Payload>::KIND,
            month_ago,
            now,
            PROBE_FIELDS,
        )
        .await?;
    let summaries = state
        .store
        .observation_fields(
            &scope,
            practice_id,
            <obs::ProbeSummary as obs::Payload>::KIND,
            month_ago,
            now,
            SUMMARY_FIELDS,
        )
        .await?;
    let (ehr, latency_svg) = ehr_availability(&probes, &summaries, now);
    let backup_rows = state
        .store
        .observation_history(&scope, practice_id, <obs::Backup as obs::Payload>::KIND, month_ago, now)
        .await?;
    let hosts: HashMap<&str, &str> = views
        .iter()
        .map(|a| (a.agent_id.as_str(), a.hostname.as_str()))
        .collect();
    let backups = backup_timeline(&backup_rows, &hosts, now);
    let changes = state
        .store
        .finding_changes(
            &scope,
            &ChangeQuery {
                agent_id: None,
                practice_id: Some(practice_id),
                from: month_ago,
                to: now + Duration::seconds(1),
            },
        )
        .await?;
    let history = score_history(&briefs, &changes, now, 30);
    let score_points: Vec<(DateTime<Utc>, f64)> = history
        .iter()
        .filter_map(|(t, s)| s.map(|s| (*t, f64::from(s))))
        .collect();
    let score_svg = charts::line_chart(&[("compliance score".to_string(), score_points)], month_ago, now, "%");
    let practice_settings = state.store.policy_settings(&practice.name, None).await?;
    let mut settings = vec![AgentPolicySettings {
        practice: practice.name.clone(),
        site: String::new(),
        profile: practice_settings.as_ref().and_then(|s| s.profile.clone()),
        practice_overrides: practice_settings.as_ref().and_then(|s| s.overrides_toml.clone()),
        site_overrides: None,
    }];
    for site in &practice.sites {
        let site_settings = state.store.policy_settings(&practice.name, Some(site)).await?;
        settings.push(AgentPolicySettings {
            site: site.clone(),
            site_overrides: site_settings.and_then(|s| s.overrides_toml),
            ..settings[0].clone()
        });
    }
    let risks = risks(state, &practice.name, &practice.sites, &settings, now);
    let score = all.score();
    Ok(PracticePage {
        username: session.user.username.clone(),
        role: role_label(session.user.role),
        csrf: session.user.csrf_token.clone(),
        is_admin: session.user.role == Role::Admin,
        can_act: session.user.role != Role::PracticeManager,
        generated_at: Seen::new(now, now).absolute,
        id: practice_id,
        score,
        score_class: score_class(score),
        statuses: statuses.iter().map(|s| StatusCell::new(s, now)).collect(),
        sites,
        failing,
        cannot_check,
        ehr,
        latency_svg,
        backups,
        score_svg,
        risks,
        profile: practice_settings
            .as_ref()
            .and_then(|s| s.profile.clone())
            .unwrap_or_default(),
        overrides: practice_settings.and_then(|s| s.overrides_toml).unwrap_or_default(),
        name: practice.name,
        notice,
    })
}

/// `GET /practices/{practice_id}`.
pub async fn practice_page(
    State(state): State<AppState>,
    session: Session,
    Path(practice_id): Path<String>,
) -> Result<Response, WebError> {
    let id: i64 = practice_id.parse().map_err(|_| WebError::NotFound)?;
    let html = build(&state, &session, id, None).await?.render()?;
    Ok(page(StatusCode::OK, html))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FindingChange;
    use rounds_policies::Severity;

    fn brief(rule: &str, status: Status, at: DateTime<Utc>) -> FindingBrief {
        FindingBrief {
            agent_id: "a".into(),
            rule: rule.into(),
            status,
            severity: Severity::High,
            accepted: false,
            status_since: at,
        }
    }

    fn change(rule: &str, at: DateTime<Utc>, old: Option<Status>, new: Option<Status>) -> FindingChange {
        FindingChange {
            agent_id: "a".into(),
            rule: rule.into(),
            at,
            old_status: old,
            new_status: new,
            severity: Severity::High,
            title: String::new(),
            citations: vec![],
            evidence: serde_json::Value::Null,
            message: String::new(),
            remediation: None,
            old_exception: None,
            exception: None,
        }
    }

    #[test]
    fn score_history_replays_changes_backwards() {
        let now = DateTime::parse_from_rfc3339("2026-11-30T12:00:00Z").unwrap().to_utc();
        let current = [brief("r1", Status::Pass, now), brief("r2", Status::Fail, now)];
        let changes = [
            // Both appeared 5 days ago, passing; r2 failed 2 days ago.
            change("r1", now - Duration::days(5), None, Some(Status::Pass)),
            change("r2", now - Duration::days(5), None, Some(Status::Pass)),
            change("r2", now - Duration::hours(36), Some(Status::Pass), Some(Status::Fail)),
        ];
        let h = score_history(&current, &changes, now, 6);
        let scores: Vec<Option<u8>> = h.iter().map(|(_, s)| *s).collect();
        assert_eq!(
            scores,
            vec![None, Some(100), Some(100), Some(100), Some(100), Some(50), Some(50)]
        );
        assert_eq!(h.last().unwrap().0, now);
    }

    #[test]
    fn availability_cells_from_summaries_and_state_changes() {
        let t = DateTime::parse_from_rfc3339("2026-11-30T12:00:00Z").unwrap().to_utc();
        let slot = (t, t + Duration::hours(1));
        let c = availability_cell(&[], &[(t + Duration::minutes(5), 9, 10)], slot);
        assert_eq!(c.level, Level::Warn);
        assert!(c.title.ends_with("90.0 % up (9 of 10 probes)"), "{}", c.title);
        assert_eq!(availability_cell(&[], &[], slot).level, Level::NoData);
        let down_before = [(t - Duration::hours(2), false)];
        assert_eq!(availability_cell(&down_before, &[], slot).level, Level::Fail);
        let recovered = [(t - Duration::hours(2), false), (t + Duration::minutes(10), true)];
        assert_eq!(availability_cell(&recovered, &[], slot).level, Level::Warn);
        assert_eq!(
            availability_cell(&recovered, &[], (t + Duration::hours(1), t + Duration::hours(2))).level,
            Level::Ok
        );
    }
}
