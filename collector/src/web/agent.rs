//! `GET /agents/{agent_id}`: one machine: where it is, what it is (from its newest inventory),
//! whether it is online, and its current findings, worst first.
//!
//! A practice manager sees only their practice's agents; any other agent id answers 404, the
//! same as an id that does not exist, so the page does not tell which ids exist elsewhere.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDate, Utc};
use rounds_policies::Status;
use rounds_protocol::obs;

use super::overview::{FindingsSummary, Seen, role_label};
use super::session::Session;
use super::{WebError, page};
use crate::app::AppState;
use crate::store::{AgentRow, FindingRow, StoredObservation};

/// The agent page.
#[derive(Template)]
#[template(path = "agent.html")]
pub struct AgentPage {
    pub username: String,
    pub role: &'static str,
    /// The session's CSRF token, for the logout form.
    pub csrf: String,
    pub generated_at: String,
    pub agent: AgentDetails,
    pub summary: FindingsSummary,
    pub findings: Vec<FindingLine>,
    /// Delivery state and chain integrity.
    pub delivery: super::delivery::DeliveryCard,
    // Technician dashboard (issue 13).
    pub is_admin: bool,
    /// The practice's id, for the link back.
    pub practice_id: i64,
    /// Every check's latest observation.
    pub checks: Vec<CheckLine>,
    /// The finding history, newest first (at most [`HISTORY_LIMIT`]).
    pub history: Vec<HistoryLine>,
    /// Technicians and admins may revoke.
    pub can_act: bool,
    /// The agent's credentials are revoked.
    pub revoked: bool,
    /// What an action said.
    pub notice: Option<String>,
    /// Tamper acknowledgement (core, issue 11): one line per tamper event nobody acknowledged.
    pub open_tampers: Vec<String>,
}

/// Finding changes the machine page lists at most.
pub const HISTORY_LIMIT: usize = 200;

/// One check's latest observation (kind and subject).
#[derive(Debug)]
pub struct CheckLine {
    pub kind: String,
    pub subject: String,
    pub at: Seen,
    /// `ok`, or the error the check reported.
    pub ok: bool,
    pub error: Option<String>,
    /// The payload as compact JSON, cut at 400 characters.
    pub data: String,
}

/// One change of a finding.
#[derive(Debug)]
pub struct HistoryLine {
    pub at: Seen,
    pub rule: String,
    pub title: String,
    /// `appeared as Fail`, `Pass → Fail`, `retired (was Pass)`, `accepted risk changed`.
    pub change: String,
    pub class: &'static str,
    pub message: String,
}

/// How a change reads.
pub fn change_text(c: &crate::store::FindingChange) -> (String, &'static str) {
    let label = |s: Status| status_badge(s).1;
    match (c.old_status, c.new_status) {
        (None, Some(n)) => (format!("appeared as {}", label(n)), status_badge(n).0),
        (Some(o), None) => (format!("retired (was {})", label(o)), "na"),
        (Some(o), Some(n)) if o != n => (format!("{} → {}", label(o), label(n)), status_badge(n).0),
        (_, Some(n)) => ("accepted risk changed".to_string(), status_badge(n).0),
        (None, None) => ("recorded".to_string(), "na"),
    }
}

/// Every check's latest observation, by kind and subject.
pub fn check_lines(rows: Vec<StoredObservation>, now: DateTime<Utc>) -> Vec<CheckLine> {
    rows.into_iter()
        .map(|o| {
            let mut data = serde_json::to_string(&o.observation.data).unwrap_or_default();
            if data.chars().count() > 400 {
                data = data.chars().take(400).collect::<String>() + "…";
            }
            CheckLine {
                kind: o.observation.kind,
                subject: o.observation.subject,
                at: Seen::new(o.observation.observed_at, now),
                ok: o.observation.status == rounds_protocol::ObservationStatus::Ok,
                error: o.observation.error,
                data,
            }
        })
        .collect()
}

/// What the page says about the machine.
#[derive(Debug)]
pub struct AgentDetails {
    pub agent_id: String,
    pub hostname: String,
    pub practice: String,
    pub site: String,
    /// OS name and version from the inventory, else the OS named at enrollment.
    pub os: String,
    pub kernel: Option<String>,
    pub role: Option<String>,
    pub hardware: Option<String>,
    pub cpu: Option<String>,
    pub memory: Option<String>,
    /// One line per file system: mount point, type, free of total.
    pub disks: Vec<String>,
    pub agent_version: String,
    pub online: bool,
    pub last_seen: Option<Seen>,
    pub last_report: Option<Seen>,
    pub enrolled: Seen,
    /// When the inventory shown was observed; `None` when there is none yet.
    pub inventory_at: Option<Seen>,
}

/// One finding's row.
#[derive(Debug)]
pub struct FindingLine {
    pub rule: String,
    pub title: String,
    /// Badge class: `fail` (red), `warn` (amber), `pass` (green), `na` (grey).
    pub status_class: &'static str,
    /// The status in words: `Fail`, `Error`, `Pass`, `Not applicable`.
    pub status_label: &'static str,
    pub severity: &'static str,
    pub citations: Vec<String>,
    pub since: Seen,
    pub message: String,
    /// How to fix it, shown for failures.
    pub remediation: Option<String>,
    /// `exception (accepted by X until DATE)`, or that it lapsed.
    pub exception: Option<String>,
    pub exception_reason: Option<String>,
    /// The evidence as indented JSON.
    pub evidence: String,
}

/// Order of statuses on the page: what needs work first.
fn status_rank(s: Status) -> u8 {
    match s {
        Status::Fail => 0,
        Status::Error => 1,
        Status::Pass => 2,
        Status::NotApplicable => 3,
    }
}

/// The badge class and the words of a status.
pub fn status_badge(s: Status) -> (&'static str, &'static str) {
    match s {
        Status::Fail => ("fail", "Fail"),
        Status::Error => ("warn", "Error"),
        Status::Pass => ("pass", "Pass"),
        Status::NotApplicable => ("na", "Not applicable"),
    }
}

/// How an accepted risk reads next to the (unchanged) status, on `today`.
pub fn exception_text(accepted_by: &str, expires: NaiveDate, today: NaiveDate) -> String {
    if today < expires {
        format!("exception (accepted by {accepted_by} until {expires})")
    } else {
        format!("exception lapsed on {expires} (was accepted by {accepted_by})")
    }
}

/// A byte count in binary units, one decimal from KiB up: `512 B`, `1.5 KiB`, `15.6 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The findings, worst first: fail, error, pass, not applicable; then by severity and rule.
pub fn finding_lines(mut rows: Vec<FindingRow>, now: DateTime<Utc>) -> Vec<FindingLine> {
    rows.sort_by(|a, b| {
        (status_rank(a.status), a.severity, &a.rule).cmp(&(status_rank(b.status), b.severity, &b.rule))
    });
    rows.into_iter()
        .map(|f| {
            let FindingRow {
                rule,
                title,
                status,
                severity,
                citations,
                evidence,
                message,
                remediation,
                exception,
                status_since,
                evaluated_at: _,
            } = f;
            let (status_class, status_label) = status_badge(status);
            FindingLine {
                rule,
                title,
                status_class,
                status_label,
                severity: severity.as_str(),
                citations,
                since: Seen::new(status_since, now),
                message,
                remediation: remediation.filter(|_| status == Status::Fail),
                exception: exception
                    .as_ref()
                    .map(|e| exception_text(&e.accepted_by, e.expires, now.date_naive())),
                exception_reason: exception.map(|e| e.reason),
                evidence: serde_json::to_string_pretty(&evidence).unwrap_or_default(),
            }
        })
        .collect()
}

/// The machine's facts: the agent row, completed from the newest inventory observation.
pub fn details(
    agent: AgentRow,
    online: bool,
    inventory: Option<&StoredObservation>,
    now: DateTime<Utc>,
) -> AgentDetails {
    let inv: Option<obs::Inventory> = inventory.and_then(|o| o.observation.payload::<obs::Inventory>()?.ok());
    let os = inv
        .as_ref()
        .and_then(|i| {
            let name = i.os_name.as_deref().filter(|s| !s.is_empty())?;
            Some(match i.os_version.as_deref().filter(|s| !s.is_empty()) {
                Some(v) => format!("{name} {v}"),
                None => name.to_string(),
            })
        })
        .unwrap_or_else(|| agent.os.clone());
    let cpu = inv.as_ref().and_then(|i| match (&i.cpu_model, i.cpu_cores) {
        (Some(m), 0) => Some(m.clone()),
        (Some(m), n) => Some(format!("{m} ({n} cores)")),
        (None, 0) => None,
        (None, n) => Some(format!("{n} cores")),
    });
    let hardware = inv.as_ref().and_then(|i| {
        let parts: Vec<&str> = [i.hardware_vendor.as_deref(), i.hardware_model.as_deref()]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    });
    AgentDetails {
        os,
        kernel: inv.as_ref().and_then(|i| i.kernel_version.clone()),
        role: inv.as_ref().and_then(|i| i.role.clone()),
        hardware,
        cpu,
        memory: inv
            .as_ref()
            .filter(|i| i.memory_total_bytes > 0)
            .map(|i| human_bytes(i.memory_total_bytes)),
        disks: inv
            .as_ref()
            .map(|i| {
                i.disks
                    .iter()
                    .map(|d| {
                        format!(
                            "{} ({}, {}): {} free of {}",
                            d.mount_point,
                            d.device,
                            d.file_system,
                            human_bytes(d.available_bytes),
                            human_bytes(d.total_bytes)
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        inventory_at: inventory.map(|o| Seen::new(o.observation.observed_at, now)),
        online,
        last_seen: agent.last_seen_at.map(|t| Seen::new(t, now)),
        last_report: agent.last_report_at.map(|t| Seen::new(t, now)),
        enrolled: Seen::new(agent.enrolled_at, now),
        agent_id: agent.agent_id,
        hostname: agent.hostname,
        practice: agent.practice,
        site: agent.site,
        agent_version: agent.agent_version,
    }
}

/// `GET /agents/{agent_id}`: the agent's details and findings, 404 when the user may not see it.
pub async fn agent_page(
    State(state): State<AppState>,
    session: Session,
    Path(agent_id): Path<String>,
) -> Result<Response, WebError> {
    let html = build(&state, &session, agent_id, None).await?.render()?;
    Ok(page(StatusCode::OK, html))
}

/// The agent page, with a notice left by an action; `NotFound` when the user may not see it.
pub async fn build(
    state: &AppState,
    session: &Session,
    agent_id: String,
    notice: Option<String>,
) -> Result<AgentPage, WebError> {
    let scope = session.scope();
    let now = state.now();
    let agent = state.store.agent(&scope, &agent_id).await?;
    let inventory = state
        .store
        .latest_observations(&scope, &agent_id, Some(<obs::Inventory as obs::Payload>::KIND))
        .await?;
    let newest = inventory.iter().max_by_key(|o| o.observation.observed_at);
    let findings = state.store.findings(&scope, &agent_id).await?;
    let summary = FindingsSummary::new(&agent.findings);
    let online = state.is_online(agent.last_seen_at);
    let delivery = super::delivery::DeliveryCard::new(state.store.delivery_status(&scope, &agent_id).await?);
    let checks = check_lines(state.store.latest_observations(&scope, &agent_id, None).await?, now);
    let changes = state
        .store
        .finding_changes(
            &scope,
            &crate::store::ChangeQuery {
                agent_id: Some(agent_id.clone()),
                practice_id: None,
                from: agent.enrolled_at - chrono::Duration::days(1),
                to: now + chrono::Duration::seconds(1),
            },
        )
        .await?;
    let history = changes
        .iter()
        .rev()
        .take(HISTORY_LIMIT)
        .map(|c| {
            let (change, class) = change_text(c);
            HistoryLine {
                at: Seen::new(c.at, now),
                rule: c.rule.clone(),
                title: c.title.clone(),
                change,
                class,
                message: c.message.clone(),
            }
        })
        .collect();
    let practice_id = agent.practice_id;
    let revoked = state.store.agent_auth(&agent_id).await?.is_some_and(|a| a.revoked);
    // Tamper acknowledgement (core, issue 11).
    let open_tampers = state
        .store
        .tampers(&scope, &agent_id)
        .await?
        .into_iter()
        .filter(|t| t.acknowledged.is_none())
        .map(|t| {
            format!(
                "{} ({} on {}, detected {}): rounds-collector audit ack --agent {} --tamper {} --reason TEXT --by NAME",
                t.tamper_id,
                t.kind,
                t.path,
                t.detected_at.to_rfc3339(),
                t.agent_id,
                t.tamper_id
            )
        })
        .collect();
    Ok(AgentPage {
        open_tampers,
        is_admin: session.user.role == crate::store::Role::Admin,
        can_act: session.user.role != crate::store::Role::PracticeManager,
        revoked,
        notice,
        practice_id,
        checks,
        history,
        username: session.user.username.clone(),
        role: role_label(session.user.role),
        csrf: session.user.csrf_token.clone(),
        generated_at: Seen::new(now, now).absolute,
        agent: details(agent, online, newest, now),
        summary,
        findings: finding_lines(findings, now),
        delivery,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_in_binary_units() {
        for (n, expect) in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (1536, "1.5 KiB"),
            (16 * 1024 * 1024 * 1024, "16.0 GiB"),
            // Past the largest unit the number grows instead.
            (2048 * 1024u64.pow(5), "2048.0 PiB"),
        ] {
            assert_eq!(human_bytes(n), expect, "{n}");
        }
    }

    #[test]
    fn exceptions_name_who_and_until_when_and_lapse() {
        let expires = NaiveDate::from_ymd_opt(2027, 1, 1).unwrap();
        let before = NaiveDate::from_ymd_opt(2026, 12, 31).unwrap();
        assert_eq!(
            exception_text("Dr. Smith", expires, before),
            "exception (accepted by Dr. Smith until 2027-01-01)"
        );
        assert_eq!(
            exception_text("Dr. Smith", expires, expires),
            "exception lapsed on 2027-01-01 (was accepted by Dr. Smith)"
        );
    }
}
