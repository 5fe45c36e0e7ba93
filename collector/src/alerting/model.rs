//! The alert engine's stored shapes: incidents, their timeline, the outbox of notifications,
//! the N-of-M windows. The store reads and writes these; the API serves them as JSON.

use chrono::{DateTime, Utc};
use rounds_policies::Severity;
use serde::Serialize;

use crate::notify::NotificationKind;

/// Where an incident is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentState {
    Open,
    Acknowledged,
    Resolved,
}

impl IncidentState {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentState::Open => "open",
            IncidentState::Acknowledged => "acknowledged",
            IncidentState::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(IncidentState::Open),
            "acknowledged" => Some(IncidentState::Acknowledged),
            "resolved" => Some(IncidentState::Resolved),
            _ => None,
        }
    }

    /// Open or acknowledged.
    pub fn is_active(self) -> bool {
        self != IncidentState::Resolved
    }
}

/// What the evidence points to, as a category the harness and the dashboard can count; the
/// incident's `probable_cause` says it in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CauseKind {
    /// Every machine of a site went silent and recorded nothing: power, or the whole network.
    SitePower,
    /// The site's own network or router: machines ran but their gateway did not answer.
    SiteNetwork,
    /// The site's internet link: gateway and local network up, nothing outside answers.
    IspLink,
    /// The ISP's name service: gateway up, the DNS resolvers do not answer.
    IspDns,
    /// The EHR vendor: the same endpoint fails from several practices whose internet works.
    EhrVendor,
    /// A server on the premises: its TCP probe fails from the site's machines while their
    /// internet works.
    OnPremServer,
    /// One machine: the site's other machines are fine.
    OneMachine,
    /// A policy finding (backup, encryption, audit log, certificate, disk, any rule).
    Finding,
    /// A notification channel keeps failing.
    Channel,
    /// Not enough evidence yet.
    Unknown,
}

impl CauseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CauseKind::SitePower => "site_power",
            CauseKind::SiteNetwork => "site_network",
            CauseKind::IspLink => "isp_link",
            CauseKind::IspDns => "isp_dns",
            CauseKind::EhrVendor => "ehr_vendor",
            CauseKind::OnPremServer => "on_prem_server",
            CauseKind::OneMachine => "one_machine",
            CauseKind::Finding => "finding",
            CauseKind::Channel => "channel",
            CauseKind::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "site_power" => CauseKind::SitePower,
            "site_network" => CauseKind::SiteNetwork,
            "isp_link" => CauseKind::IspLink,
            "isp_dns" => CauseKind::IspDns,
            "ehr_vendor" => CauseKind::EhrVendor,
            "on_prem_server" => CauseKind::OnPremServer,
            "one_machine" => CauseKind::OneMachine,
            "finding" => CauseKind::Finding,
            "channel" => CauseKind::Channel,
            "unknown" => CauseKind::Unknown,
            _ => return None,
        })
    }
}

/// An incident as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Incident {
    pub id: i64,
    /// `agent_offline`, `site_offline`, `ehr_endpoint`, `ehr_vendor`, `backup`, `encryption`,
    /// `audit_tamper`, `certificate`, `disk_space`, `finding`, `channel_failing`.
    pub source: String,
    /// What it is about within its source (dedup key with `source`).
    pub subject: String,
    pub state: IncidentState,
    /// The source keeps going down and up; the incident stays open meanwhile.
    pub flapping: bool,
    pub severity: Severity,
    pub title: String,
    pub probable_cause: String,
    pub cause_kind: CauseKind,
    /// `None` for an MSP-wide incident.
    pub practice_id: Option<i64>,
    pub practice: Option<String>,
    pub site: Option<String>,
    pub agent_id: Option<String>,
    /// For an MSP-wide incident, every practice affected.
    pub practices_affected: Vec<String>,
    /// The incident this one is folded into.
    pub parent_id: Option<i64>,
    /// Resolved only by a person.
    pub manual_resolve: bool,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<String>,
    pub last_notified_at: Option<DateTime<Utc>>,
    pub escalated_at: Option<DateTime<Utc>>,
    pub detail: serde_json::Value,
}

impl Incident {
    /// The key that stays the same for the incident's whole life (PagerDuty `dedup_key`).
    pub fn dedup_key(&self) -> String {
        format!("rounds-incident-{}", self.id)
    }

    /// Whether `scope` sees this incident: its practice's, or an MSP-wide one that names the
    /// practice manager's practice (`practice_name`). Used by the PostgreSQL backend (issue 17).
    pub fn visible_to(&self, scope: &crate::store::Scope, practice_name: Option<&str>) -> bool {
        use crate::store::Role;
        match self.practice_id {
            Some(p) => scope.sees(p),
            None => match scope.role {
                Role::Admin | Role::Technician => true,
                Role::PracticeManager => practice_name.is_some_and(|n| self.practices_affected.iter().any(|p| p == n)),
            },
        }
    }
}

/// An incident to open.
#[derive(Debug, Clone, PartialEq)]
pub struct NewIncident {
    pub source: String,
    pub subject: String,
    pub severity: Severity,
    pub title: String,
    pub probable_cause: String,
    pub cause_kind: CauseKind,
    /// The practice's name; the store resolves its id (`None` for MSP-wide).
    pub practice: Option<String>,
    pub site: Option<String>,
    pub agent_id: Option<String>,
    pub practices_affected: Vec<String>,
    pub parent_id: Option<i64>,
    pub manual_resolve: bool,
    pub detail: serde_json::Value,
}

/// One entry of an incident's timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentEvent {
    pub id: i64,
    pub incident_id: i64,
    pub at: DateTime<Utc>,
    /// `opened`, `cause_changed`, `child_folded`, `notified`, `notify_failed`, `held`,
    /// `acknowledged`, `note`, `flapping`, `escalated`, `silenced`, `resolved`.
    pub kind: String,
    /// `engine` or the person who did it.
    pub actor: String,
    /// The channel, for notification events.
    pub channel: Option<String>,
    pub message: String,
}

/// A timeline entry to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIncidentEvent {
    pub kind: String,
    pub actor: String,
    pub channel: Option<String>,
    pub message: String,
}

impl NewIncidentEvent {
    /// An event by the engine.
    pub fn engine(kind: &str, message: impl Into<String>) -> Self {
        NewIncidentEvent {
            kind: kind.to_string(),
            actor: "engine".to_string(),
            channel: None,
            message: message.into(),
        }
    }
}

/// Where a notification is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxStatus {
    /// To send at `next_attempt_at`.
    Pending,
    Delivered,
    /// Given up: a permanent error, or too many attempts.
    Failed,
    /// Not sent: its incident resolved within the hold time, or its parent is open.
    Cancelled,
    /// Not sent: a silence or maintenance window held it.
    Silenced,
}

impl OutboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Delivered => "delivered",
            OutboxStatus::Failed => "failed",
            OutboxStatus::Cancelled => "cancelled",
            OutboxStatus::Silenced => "silenced",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => OutboxStatus::Pending,
            "delivered" => OutboxStatus::Delivered,
            "failed" => OutboxStatus::Failed,
            "cancelled" => OutboxStatus::Cancelled,
            "silenced" => OutboxStatus::Silenced,
            _ => return None,
        })
    }
}

/// One notification of one incident to one channel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxItem {
    pub id: i64,
    pub incident_id: i64,
    pub channel: String,
    pub kind: NotificationKind,
    pub status: OutboxStatus,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A notification to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutboxItem {
    pub incident_id: i64,
    pub channel: String,
    pub kind: NotificationKind,
    pub status: OutboxStatus,
    /// Not before this time (the hold time).
    pub next_attempt_at: DateTime<Utc>,
}

/// An N-of-M window of one source and subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertWindow {
    pub source: String,
    pub subject: String,
    /// The last results, oldest first: `F` failed, `P` passed.
    pub results: String,
    pub failing: bool,
    pub updated_at: DateTime<Utc>,
}

/// Which incidents to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncidentQuery {
    /// Only these states; all when empty.
    pub states: Vec<IncidentState>,
    pub source: Option<String>,
    /// Only top-level incidents (not folded into another).
    pub top_level_only: bool,
    /// At most this many, newest first; 500 when `None`.
    pub limit: Option<u32>,
}

/// An incident with its timeline, its children and its notifications.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentDetail {
    #[serde(flatten)]
    pub incident: Incident,
    pub timeline: Vec<IncidentEvent>,
    pub children: Vec<Incident>,
    pub notifications: Vec<OutboxItem>,
}

/// A silence created at run time (API, CLI, dashboard), as stored. Its matchers are `None`
/// for "any"; `subject` matches an incident's subject or its agent id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredSilence {
    pub id: i64,
    pub practice: Option<String>,
    pub site: Option<String>,
    pub source: Option<String>,
    pub subject: Option<String>,
    pub starts_at: DateTime<Utc>,
    /// When it expires by itself.
    pub ends_at: DateTime<Utc>,
    pub reason: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// When a person ended it early, and who.
    pub ended_at: Option<DateTime<Utc>>,
    pub ended_by: Option<String>,
    /// When the engine recorded its start and its end in the affected incidents' timelines.
    pub start_recorded_at: Option<DateTime<Utc>>,
    pub end_recorded_at: Option<DateTime<Utc>>,
}

impl StoredSilence {
    /// When it stops holding notifications: its end, or when it was ended early.
    pub fn effective_end(&self) -> DateTime<Utc> {
        self.ended_at.map_or(self.ends_at, |e| e.min(self.ends_at))
    }

    /// Whether it holds notifications at `now`.
    pub fn active(&self, now: DateTime<Utc>) -> bool {
        self.starts_at <= now && now < self.effective_end()
    }

    /// Its name in timelines and the audit log.
    pub fn name(&self) -> String {
        format!("#{}", self.id)
    }
}

/// A runtime silence to store (validated by [`crate::alerting::silence`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSilence {
    pub practice: Option<String>,
    pub site: Option<String>,
    pub source: Option<String>,
    pub subject: Option<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub reason: String,
    pub created_by: String,
}

/// Which runtime silences to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SilenceQuery {
    /// Only this one.
    pub id: Option<i64>,
    /// Only those not over at this time (in force, or still to start).
    pub not_over_at: Option<DateTime<Utc>>,
    /// Only those whose end the engine has not recorded yet.
    pub end_unrecorded: bool,
    /// At most this many, newest first; 500 when `None`.
    pub limit: Option<u32>,
}
