//! `GET /`: the overview of the practices, sites and agents the user may see.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};

use super::session::Session;
use super::{WebError, page};
use crate::api::admin::{AgentView, agent_views, by_site};
use crate::app::AppState;
use crate::store::{FindingCounts, PracticeRow, Role};

/// Seconds between automatic reloads of the overview.
pub const REFRESH_SECS: u32 = 10;

/// The overview page.
#[derive(Template)]
#[template(path = "overview.html")]
pub struct OverviewPage {
    pub username: String,
    pub role: &'static str,
    /// The session's CSRF token, for the logout form.
    pub csrf: String,
    pub refresh_secs: u32,
    pub generated_at: String,
    pub online: usize,
    pub offline: usize,
    pub practices: Vec<PracticeSection>,
}

/// A practice: its counts for the summary and a table of its sites' agents.
#[derive(Debug)]
pub struct PracticeSection {
    pub name: String,
    pub online: usize,
    pub offline: usize,
    pub sites: Vec<SiteSection>,
}

/// A site and its agents.
#[derive(Debug)]
pub struct SiteSection {
    pub name: String,
    pub agents: Vec<AgentLine>,
}

/// One agent's row.
#[derive(Debug)]
pub struct AgentLine {
    /// For the link to the agent's page.
    pub agent_id: String,
    pub hostname: String,
    pub os: String,
    pub agent_version: String,
    pub online: bool,
    pub last_seen: Option<Seen>,
    pub findings: FindingsSummary,
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

/// Groups agents under their practice and site, in the store's order, and counts them.
pub fn sections(practices: Vec<PracticeRow>, agents: Vec<AgentView>, now: DateTime<Utc>) -> Vec<PracticeSection> {
    let grouped = by_site(&agents, |a| (a.practice.as_str(), a.site.as_str()));
    practices
        .into_iter()
        .map(|p| {
            let sites: Vec<SiteSection> = p
                .sites
                .iter()
                .map(|site| SiteSection {
                    name: site.clone(),
                    agents: grouped
                        .get(&(p.name.as_str(), site.as_str()))
                        .map(Vec::as_slice)
                        .unwrap_or(&[])
                        .iter()
                        .map(|a| AgentLine {
                            agent_id: a.agent_id.clone(),
                            hostname: a.hostname.clone(),
                            os: a.os_description.clone().unwrap_or_else(|| a.os.clone()),
                            agent_version: a.agent_version.clone(),
                            online: a.online,
                            last_seen: a.last_seen_at.map(|t| Seen::new(t, now)),
                            findings: FindingsSummary::new(&a.findings),
                        })
                        .collect(),
                })
                .collect();
            let online = sites.iter().flat_map(|s| &s.agents).filter(|a| a.online).count();
            let total: usize = sites.iter().map(|s| s.agents.len()).sum();
            PracticeSection {
                name: p.name,
                online,
                offline: total - online,
                sites,
            }
        })
        .collect()
}

/// `GET /`: practices, sites and agents visible to the user, with online state.
pub async fn overview(State(state): State<AppState>, session: Session) -> Result<Response, WebError> {
    let scope = session.scope();
    let now = state.now();
    let practices = state.store.practices(&scope).await?;
    let agents = agent_views(&state, &scope)
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?;
    let practices = sections(practices, agents, now);
    let html = OverviewPage {
        online: practices.iter().map(|p| p.online).sum(),
        offline: practices.iter().map(|p| p.offline).sum(),
        practices,
        username: session.user.username,
        role: role_label(session.user.role),
        csrf: session.user.csrf_token,
        refresh_secs: REFRESH_SECS,
        generated_at: Seen::new(now, now).absolute,
    }
    .render()?;
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
