//! `GET /`: the fleet at a glance. Every practice the user may see is one row with a status per
//! domain ([`super::domains`]) and its compliance score, worst first; below, the machines that
//! match the search, offline and failing first. Search and filters are GET query parameters
//! (`q`, `practice`, `site`, `domain`, `status`, `os`), applied on the server.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::domains::{Domain, DomainStatus, Level, Tally, agents_status, tally_by_agent};
use super::session::Session;
use super::{WebError, page};
use crate::api::admin::{AgentView, agent_views};
use crate::app::AppState;
use crate::store::{FindingCounts, Role};

/// Machines listed at most on the overview; the search narrows the rest.
pub const MACHINE_LIMIT: usize = 200;

/// The overview page.
#[derive(Template)]
#[template(path = "overview.html")]
pub struct OverviewPage {
    pub username: String,
    pub role: &'static str,
    /// The session's CSRF token, for the logout form.
    pub csrf: String,
    pub is_admin: bool,
    pub generated_at: String,
    pub online: usize,
    pub offline: usize,
    /// Practices the user sees in all (before filters).
    pub practice_total: usize,
    pub domains: Vec<(&'static str, &'static str)>,
    pub filter: Filter,
    pub practices: Vec<PracticeLine>,
    pub machines: Vec<AgentLine>,
    /// Machines that matched beyond [`MACHINE_LIMIT`].
    pub machines_more: usize,
    /// Open and acknowledged incidents with their probable cause, newest first.
    pub incidents: Vec<super::incidents::IncidentLine>,
}

/// The search and filters, as given in the query string.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Filter {
    /// Text found in a practice, site or host name.
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub practice: String,
    #[serde(default)]
    pub site: String,
    /// A [`Domain::key`].
    #[serde(default)]
    pub domain: String,
    /// A [`Level::key`].
    #[serde(default)]
    pub status: String,
    /// Text found in the machine's OS.
    #[serde(default)]
    pub os: String,
}

fn has(haystack: &str, needle: &str) -> bool {
    needle.is_empty() || haystack.to_lowercase().contains(&needle.to_lowercase())
}

impl Filter {
    fn machine_filtered(&self) -> bool {
        !(self.q.is_empty() && self.site.is_empty() && self.os.is_empty())
    }

    fn keeps_agent(&self, a: &AgentView) -> bool {
        has(&a.practice, &self.practice)
            && has(&a.site, &self.site)
            && (has(&a.os, &self.os) || a.os_description.as_deref().is_some_and(|d| has(d, &self.os)))
            && (self.q.is_empty() || has(&a.hostname, &self.q) || has(&a.site, &self.q) || has(&a.practice, &self.q))
    }

    fn keeps_statuses(&self, statuses: &[DomainStatus]) -> bool {
        let domain = Domain::parse(&self.domain);
        let level = Level::parse(&self.status);
        statuses.iter().any(|s| {
            domain.is_none_or(|d| d == s.domain)
                && match level {
                    Some(l) => s.level == l,
                    // A domain alone asks for what needs attention there.
                    None => domain.is_none() || matches!(s.level, Level::Fail | Level::Warn),
                }
        })
    }
}

/// One practice's row.
#[derive(Debug)]
pub struct PracticeLine {
    pub id: i64,
    pub name: String,
    pub sites: usize,
    pub online: usize,
    pub total: usize,
    pub score: Option<u8>,
    /// `pass`, `warn` or `fail`, from the score.
    pub score_class: &'static str,
    pub statuses: Vec<StatusCell>,
}

/// One domain cell.
#[derive(Debug)]
pub struct StatusCell {
    pub key: &'static str,
    pub label: &'static str,
    pub class: &'static str,
    pub icon: &'static str,
    pub text: String,
    pub since: Option<Seen>,
}

impl StatusCell {
    pub fn new(s: &DomainStatus, now: DateTime<Utc>) -> Self {
        StatusCell {
            key: s.domain.key(),
            label: s.domain.label(),
            class: s.level.class(),
            icon: s.level.icon(),
            text: s.text.clone(),
            since: s.since.map(|t| Seen::new(t, now)),
        }
    }
}

/// The badge class of a score.
pub fn score_class(score: Option<u8>) -> &'static str {
    match score {
        None => "na",
        Some(90..) => "pass",
        Some(70..90) => "warn",
        Some(_) => "fail",
    }
}

/// One agent's row.
#[derive(Debug)]
pub struct AgentLine {
    /// For the link to the agent's page.
    pub agent_id: String,
    pub practice_id: i64,
    pub practice: String,
    pub site: String,
    pub hostname: String,
    pub os: String,
    pub agent_version: String,
    pub online: bool,
    pub last_seen: Option<Seen>,
    pub findings: FindingsSummary,
}

impl AgentLine {
    pub fn new(a: &AgentView, practice_id: i64, now: DateTime<Utc>) -> Self {
        AgentLine {
            agent_id: a.agent_id.clone(),
            practice_id,
            practice: a.practice.clone(),
            site: a.site.clone(),
            hostname: a.hostname.clone(),
            os: a.os_description.clone().unwrap_or_else(|| a.os.clone()),
            agent_version: a.agent_version.clone(),
            online: a.online,
            last_seen: a.last_seen_at.map(|t| Seen::new(t, now)),
            findings: FindingsSummary::new(&a.findings),
        }
    }
}

/// An agent's findings in a few words, and the badge class that colours them (the words
/// carry the meaning; the colour only repeats it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingsSummary {
    pub text: String,
    /// `fail` (red), `warn` (amber), `pass` (green) or `na` (grey).
    pub class: &'static str,
}

impl FindingsSummary {
    pub fn new(c: &FindingCounts) -> Self {
        if c.total() == 0 {
            return FindingsSummary {
                text: "not evaluated yet".into(),
                class: "na",
            };
        }
        if c.fail == 0 && c.error == 0 {
            return if c.pass > 0 {
                FindingsSummary {
                    text: "all pass".into(),
                    class: "pass",
                }
            } else {
                FindingsSummary {
                    text: "nothing applicable".into(),
                    class: "na",
                }
            };
        }
        let mut parts = Vec::new();
        if c.fail > 0 {
            parts.push(format!("{} fail", c.fail));
        }
        if c.error > 0 {
            parts.push(format!("{} error", c.error));
        }
        let mut text = parts.join(", ");
        if c.accepted > 0 {
            text.push_str(&format!(" ({} accepted)", c.accepted));
        }
        FindingsSummary {
            text,
            class: if c.fail > 0 { "fail" } else { "warn" },
        }
    }
}

/// A point in time as the page shows it.
#[derive(Debug)]
pub struct Seen {
    /// RFC 3339, for `<time datetime>`.
    pub iso: String,
    /// `2026-11-24 15:02:11 UTC`.
    pub absolute: String,
    /// `2 min ago`.
    pub relative: String,
}

impl Seen {
    pub fn new(t: DateTime<Utc>, now: DateTime<Utc>) -> Self {
        Seen {
            iso: t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            absolute: t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            relative: ago(t, now),
        }
    }
}

/// How long before `now` `t` was, in the largest whole unit: `just now`, `42 s ago`,
/// `2 min ago`, `3 h ago`, `5 d ago`. Times in the future (clock skew) are `just now`.
pub fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - t).num_seconds();
    match secs {
        ..5 => "just now".to_string(),
        5..60 => format!("{secs} s ago"),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86_400 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86_400),
    }
}

/// How a role is named on the page.
pub fn role_label(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        Role::Technician => "technician",
        Role::PracticeManager => "practice manager",
    }
}

/// The findings of a group of agents per domain, from each agent's tallies.
pub fn agents_tallies(
    agents: &[&AgentView],
    tallies: &HashMap<&str, HashMap<Domain, Tally>>,
) -> HashMap<Domain, Tally> {
    let mut per: HashMap<Domain, Tally> = HashMap::new();
    for a in agents {
        if let Some(t) = tallies.get(a.agent_id.as_str()) {
            for (d, t) in t {
                per.entry(*d).or_default().merge(t);
            }
        }
    }
    per
}

/// The domain statuses of a group of agents: online counts and their findings' tallies per
/// domain; and all their findings in one tally (for the score).
pub fn group_statuses(agents: &[&AgentView], per: &HashMap<Domain, Tally>) -> (Vec<DomainStatus>, Tally) {
    let online = agents.iter().filter(|a| a.online).count();
    let offline_since = agents.iter().filter(|a| !a.online).filter_map(|a| a.last_seen_at).min();
    let mut all = Tally::default();
    for t in per.values() {
        all.merge(t);
    }
    let mut statuses = vec![agents_status(online, agents.len(), offline_since)];
    statuses.extend(
        Domain::ALL[1..]
            .iter()
            .map(|d| per.get(d).copied().unwrap_or_default().status(*d)),
    );
    (statuses, all)
}

/// Builds the overview from what the store returned.
pub async fn build(state: &AppState, session: &Session, filter: Filter) -> Result<OverviewPage, WebError> {
    let scope = session.scope();
    let now = state.now();
    let practices = state.store.practices(&scope).await?;
    let agents = agent_views(state, &scope)
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?;
    // Each practice's findings per domain. Unless the search narrows the machines, these are
    // the store's counts per practice and rule (not every finding of the fleet); a machine
    // search tallies the findings of the machines it keeps.
    let mut per_practice: HashMap<i64, HashMap<Domain, Tally>> = HashMap::new();
    let briefs = if filter.machine_filtered() {
        state.store.finding_briefs(&scope).await?
    } else {
        for t in state.store.rule_tallies(&scope).await? {
            per_practice
                .entry(t.practice_id)
                .or_default()
                .entry(Domain::of_rule(&t.rule))
                .or_default()
                .merge(&Tally::from(&t));
        }
        Vec::new()
    };
    let per_agent = tally_by_agent(&briefs);
    let ids: HashMap<&str, i64> = practices.iter().map(|p| (p.name.as_str(), p.id)).collect();
    let kept: Vec<&AgentView> = agents.iter().filter(|a| filter.keeps_agent(a)).collect();
    let mut by_practice: HashMap<&str, Vec<&AgentView>> = HashMap::new();
    for a in &kept {
        by_practice.entry(a.practice.as_str()).or_default().push(a);
    }
    let mut lines = Vec::new();
    for p in &practices {
        let group = by_practice.remove(p.name.as_str()).unwrap_or_default();
        if !has(&p.name, &filter.practice) || (filter.machine_filtered() && group.is_empty()) {
            continue;
        }
        let per = match per_practice.remove(&p.id) {
            Some(per) => per,
            None => agents_tallies(&group, &per_agent),
        };
        let (statuses, all) = group_statuses(&group, &per);
        if !filter.keeps_statuses(&statuses) {
            continue;
        }
        let score = all.score();
        lines.push(PracticeLine {
            id: p.id,
            name: p.name.clone(),
            sites: p.sites.len(),
            online: group.iter().filter(|a| a.online).count(),
            total: group.len(),
            score,
            score_class: score_class(score),
            statuses: statuses.iter().map(|s| StatusCell::new(s, now)).collect(),
        });
    }
    // Worst first: the most domains failing, then cannot be checked, then the lowest score,
    // then by name.
    lines.sort_by_cached_key(|l| {
        let count = |class: &str| std::cmp::Reverse(l.statuses.iter().filter(|s| s.class == class).count());
        (count("fail"), count("warn"), l.score.unwrap_or(101), l.name.clone())
    });
    let shown: std::collections::HashSet<i64> = lines.iter().map(|l| l.id).collect();
    let mut machines: Vec<&AgentView> = kept
        .iter()
        .copied()
        .filter(|a| ids.get(a.practice.as_str()).is_some_and(|id| shown.contains(id)))
        .collect();
    let badness = |c: &FindingCounts| (c.fail, c.error);
    machines.sort_by(|a, b| {
        (
            a.online,
            std::cmp::Reverse(badness(&a.findings)),
            &a.practice,
            &a.site,
            &a.hostname,
        )
            .cmp(&(
                b.online,
                std::cmp::Reverse(badness(&b.findings)),
                &b.practice,
                &b.site,
                &b.hostname,
            ))
    });
    let machines_more = machines.len().saturating_sub(MACHINE_LIMIT);
    let machines = machines
        .into_iter()
        .take(MACHINE_LIMIT)
        .map(|a| AgentLine::new(a, ids.get(a.practice.as_str()).copied().unwrap_or(0), now))
        .collect();
    let online = agents.iter().filter(|a| a.online).count();
    Ok(OverviewPage {
        online,
        offline: agents.len() - online,
        practice_total: practices.len(),
        domains: Domain::ALL.iter().map(|d| (d.key(), d.label())).collect(),
        filter,
        practices: lines,
        machines,
        machines_more,
        incidents: super::incidents::active(state, &scope, now, 20).await?,
        username: session.user.username.clone(),
        role: role_label(session.user.role),
        csrf: session.user.csrf_token.clone(),
        is_admin: session.user.role == Role::Admin,
        generated_at: Seen::new(now, now).absolute,
    })
}

/// `GET /`: the overview, filtered by the query string.
pub async fn overview(
    State(state): State<AppState>,
    session: Session,
    Query(filter): Query<Filter>,
) -> Result<Response, WebError> {
    let html = build(&state, &session, filter).await?.render()?;
    Ok(page(StatusCode::OK, html))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times() {
        let now = DateTime::parse_from_rfc3339("2026-11-24T12:00:00Z").unwrap().to_utc();
        for (secs_before, expect) in [
            (-30, "just now"),
            (0, "just now"),
            (4, "just now"),
            (5, "5 s ago"),
            (59, "59 s ago"),
            (60, "1 min ago"),
            (150, "2 min ago"),
            (1000, "16 min ago"),
            (3600, "1 h ago"),
            (86_399, "23 h ago"),
            (86_400, "1 d ago"),
            (10 * 86_400, "10 d ago"),
        ] {
            let t = now - chrono::Duration::seconds(secs_before);
            assert_eq!(ago(t, now), expect, "{secs_before} s before");
        }
    }

    #[test]
    fn findings_summaries_say_it_in_words() {
        let c = |pass, fail, error, not_applicable, accepted| FindingCounts {
            pass,
            fail,
            error,
            not_applicable,
            accepted,
        };
        for (counts, text, class) in [
            (c(0, 0, 0, 0, 0), "not evaluated yet", "na"),
            (c(0, 0, 0, 4, 0), "nothing applicable", "na"),
            (c(5, 0, 0, 2, 0), "all pass", "pass"),
            (c(5, 3, 2, 1, 0), "3 fail, 2 error", "fail"),
            (c(5, 0, 2, 1, 0), "2 error", "warn"),
            (c(5, 1, 0, 0, 1), "1 fail (1 accepted)", "fail"),
        ] {
            assert_eq!(
                FindingsSummary::new(&counts),
                FindingsSummary {
                    text: text.into(),
                    class
                },
                "{counts:?}"
            );
        }
    }

    #[test]
    fn absolute_time_is_utc() {
        let now = DateTime::parse_from_rfc3339("2026-11-24T12:00:00Z").unwrap().to_utc();
        let t = DateTime::parse_from_rfc3339("2026-11-24T13:02:03+02:00")
            .unwrap()
            .to_utc();
        let s = Seen::new(t, now);
        assert_eq!(s.absolute, "2026-11-24 11:02:03 UTC");
        assert_eq!(s.iso, "2026-11-24T11:02:03Z");
        assert_eq!(s.relative, "57 min ago");
    }
}
