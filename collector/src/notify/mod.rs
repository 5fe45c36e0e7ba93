//! Notifications leaving the collector: the shape the alert engine hands to a channel.
//!
//! The alert engine (`crate::alerting`) owns incidents, the outbox of pending notifications,
//! retries with backoff and their records in the store. A [`Notifier`] makes exactly one
//! delivery attempt of one notification to one named channel (e-mail, webhook, Slack, Teams,
//! PagerDuty) and says whether it worked; it keeps no state of its own that a restart could
//! lose. No notification carries patient data: only machine, site, practice and endpoint names,
//! the incident's cause and its times.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use rounds_policies::Severity;

pub mod channels;
pub mod email;
pub mod render;
pub mod roots;
pub mod settings;

pub use channels::Channels;
pub use email::{Attachment, Mail, SmtpSettings, SmtpTls, send_mail};

/// Why a notification is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// An incident opened.
    Opened,
    /// An open incident's probable cause or scope changed.
    Updated,
    /// The re-notify interval passed and the incident is still open.
    Reminder,
    /// Not acknowledged in time: sent to the escalation channel.
    Escalated,
    /// A person acknowledged the incident.
    Acknowledged,
    /// The incident is over.
    Resolved,
    /// `rounds-collector alert test --channel NAME`.
    Test,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Opened => "opened",
            NotificationKind::Updated => "updated",
            NotificationKind::Reminder => "reminder",
            NotificationKind::Escalated => "escalated",
            NotificationKind::Acknowledged => "acknowledged",
            NotificationKind::Resolved => "resolved",
            NotificationKind::Test => "test",
        }
    }

    /// A kind from its stored name (PostgreSQL backend, issue 17).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "opened" => NotificationKind::Opened,
            "updated" => NotificationKind::Updated,
            "reminder" => NotificationKind::Reminder,
            "escalated" => NotificationKind::Escalated,
            "acknowledged" => NotificationKind::Acknowledged,
            "resolved" => NotificationKind::Resolved,
            "test" => NotificationKind::Test,
            _ => return None,
        })
    }
}

/// One notification about one incident, as every channel renders it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    /// The incident's id in the store.
    pub incident_id: i64,
    /// Stable for the incident's whole life (PagerDuty `dedup_key`, e-mail thread id).
    pub dedup_key: String,
    pub kind: NotificationKind,
    pub severity: Severity,
    /// What raised it: `agent_offline`, `site_offline`, `ehr_endpoint`, `ehr_vendor`,
    /// `backup`, `encryption`, `audit_tamper`, `certificate`, `disk_space`, `finding`,
    /// `channel_failing`.
    pub source: String,
    /// What it is about: an agent id, a site, an endpoint.
    pub subject: String,
    /// One line a technician reads first.
    pub title: String,
    /// The probable cause in words a technician acts on.
    pub probable_cause: String,
    pub practice: Option<String>,
    pub site: Option<String>,
    /// For MSP-wide incidents (an EHR vendor outage): every practice affected.
    pub practices_affected: Vec<String>,
    pub opened_at: DateTime<Utc>,
    /// When this notification was produced.
    pub at: DateTime<Utc>,
    /// A link to the incident on the dashboard, when the collector knows its public URL.
    pub url: Option<String>,
}

/// Why one delivery attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryError {
    /// What went wrong, naming the channel and the destination host (never a secret).
    pub message: String,
    /// The destination asked to wait this long (HTTP `Retry-After`).
    pub retry_after: Option<Duration>,
    /// Retrying cannot help (a rejected address, a 4xx other than 408/429, an unknown channel).
    pub permanent: bool,
}

impl std::fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeliveryError {}

/// Makes one delivery attempt of a notification to a named channel.
#[async_trait::async_trait]
pub trait Notifier: Send + Sync + std::fmt::Debug {
    /// The configured channels' names, in configuration order.
    fn channel_names(&self) -> Vec<String>;
    /// One attempt; the caller retries, records and schedules.
    async fn send(&self, channel: &str, notification: &Notification) -> Result<(), DeliveryError>;
}
