//! Storage interface of the collector, and its implementations.
//!
//! Callers use only the [`Store`] trait; [`sqlite::SqliteStore`] is the embedded default (one
//! file in the data dir, WAL, versioned migrations). A PostgreSQL implementation implements
//! the same trait and passes the same conformance suite (`tests/it/store.rs`).
//!
//! Invariants every implementation keeps:
//! - secrets (agent secrets, enrollment tokens, API keys, session tokens) are stored only as
//!   hashes; passwords only as argon2 hashes;
//! - a report is stored once per `(agent_id, sequence)`, atomically with its observations;
//! - an enrollment token is redeemed at most once, in the same transaction that creates the
//!   agent;
//! - an agent's findings are replaced as a whole, in one transaction, and a finding's
//!   `status_since` moves only when its status changes; every appearance, status or exception
//!   change and retirement is recorded in the finding history in that same transaction;
//! - "newest" is decided by the agent's sequence number, never by the agent's clock;
//! - the store never reads the wall clock: every time is a parameter;
//! - several writes commit together through a [`Tx`] (unit of work) or not at all;
//! - policy settings exist once per practice and once per site, only for practices and sites
//!   that exist, and a profile is set only at practice level.

pub mod error;
pub mod sqlite;
// PostgreSQL backend (issue 17), and the value encodings both backends share.
pub mod codec;
pub mod common;
pub mod postgres;
// Export and import between stores (issue 17).
pub mod transfer;
// Retention (issue 17): rollups and pruning, shared by both backends.
pub mod rollup;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rounds_policies::{Exception, Finding, Severity, Status};
use rounds_protocol::Observation;
use serde::Serialize;

pub use error::{DbErrorKind, StoreError, StoreResult, TokenRefusal};
// Alerting (issue 12): the engine's stored shapes.
pub use crate::alerting::model::{
    AlertWindow, Incident, IncidentDetail, IncidentEvent, IncidentQuery, NewIncident, NewIncidentEvent, NewOutboxItem,
    OutboxItem,
};
// Runtime silences (alerting, issue 12).
pub use crate::alerting::model::{NewSilence, SilenceQuery, StoredSilence};
// Retention (issue 17).
pub use rollup::{
    Bucket, RawObservation, RecordKind, RetentionCutoffs, RolledObservation, Rollup, StorageReport, StoredRollup,
    TableRows, TableSize,
};

/// Roles of dashboard users and API keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, across every practice.
    Admin,
    /// Sees and operates every practice; cannot manage users.
    Technician,
    /// Sees only their own practice.
    PracticeManager,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Technician => "technician",
            Role::PracticeManager => "practice_manager",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "technician" => Some(Role::Technician),
            "practice_manager" | "practice-manager" => Some(Role::PracticeManager),
            _ => None,
        }
    }
}

/// A valid API key: what it may see, and its label, by which the audit log and the records it
/// creates (silences, acknowledgements) name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyGrant {
    pub scope: Scope,
    pub label: String,
}

/// Who is asking: the role and, for a practice manager, the one practice they may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub role: Role,
    pub practice_id: Option<i64>,
}

impl Scope {
    /// Whether this scope may see the given practice.
    pub fn sees(&self, practice_id: i64) -> bool {
        match self.role {
            Role::Admin | Role::Technician => true,
            Role::PracticeManager => self.practice_id == Some(practice_id),
        }
    }
}

/// A new enrollment token, as stored.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub practice: String,
    pub site: String,
    pub token_hash: String,
    pub expires_at: DateTime<Utc>,
}

/// A new agent, created when a token is redeemed.
#[derive(Debug, Clone)]
pub struct NewAgent {
    pub agent_id: String,
    pub secret_hash: String,
    pub hostname: String,
    pub os: String,
    pub agent_version: String,
}

/// Where an enrolled agent belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    pub practice: String,
    pub site: String,
}

/// What the collector knows to authenticate an agent.
#[derive(Debug, Clone)]
pub struct AgentAuth {
    pub agent_id: String,
    pub secret_hash: String,
    pub revoked: bool,
}

/// An agent as listed in the API and dashboard.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentRow {
    pub agent_id: String,
    pub hostname: String,
    /// OS family given at enrollment (`linux`, `windows`, `macos`).
    pub os: String,
    /// OS name and version from the newest inventory, e.g. `Debian GNU/Linux 12`.
    pub os_description: Option<String>,
    pub agent_version: String,
    pub practice_id: i64,
    pub practice: String,
    pub site: String,
    pub enrolled_at: DateTime<Utc>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub last_report_at: Option<DateTime<Utc>>,
    pub last_sequence: u64,
    /// The agent's clock minus the collector's at its last heartbeat, in milliseconds.
    pub clock_skew_ms: Option<i64>,
    /// How many of the agent's current findings have each status.
    pub findings: FindingCounts,
}

/// Who an agent is and when it was last seen: what the alert engine's tick reads of every
/// agent (issue 12), without the finding counts and inventory of an [`AgentRow`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPresence {
    pub agent_id: String,
    pub hostname: String,
    pub practice: String,
    pub site: String,
    pub enrolled_at: DateTime<Utc>,
    pub last_seen_at: Option<DateTime<Utc>>,
}

/// Numbers of an agent's current findings by status. All zero before its first evaluation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FindingCounts {
    pub pass: u32,
    pub fail: u32,
    pub error: u32,
    pub not_applicable: u32,
    /// Failing or erroring findings that carry an accepted risk (counted in `fail`/`error` too).
    pub accepted: u32,
}

impl FindingCounts {
    /// Number of findings: zero when the agent has not been evaluated yet.
    pub fn total(&self) -> u32 {
        self.pass + self.fail + self.error + self.not_applicable
    }
}

/// An agent's current finding for one rule, as stored: the policy engine's [`Finding`] and
/// when it was decided.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FindingRow {
    pub rule: String,
    pub title: String,
    pub status: Status,
    pub severity: Severity,
    /// Canonical Security Rule references, e.g. `164.312(a)(2)(iv)`.
    pub citations: Vec<String>,
    pub evidence: serde_json::Value,
    pub message: String,
    pub remediation: Option<String>,
    /// The accepted risk attached at evaluation; the status stays what evaluation said.
    pub exception: Option<Exception>,
    /// When the rule last took its current status (kept across evaluations that agree).
    pub status_since: DateTime<Utc>,
    /// When this finding was last evaluated.
    pub evaluated_at: DateTime<Utc>,
}

impl FindingRow {
    /// A stored finding from an evaluated one.
    pub fn new(finding: Finding, status_since: DateTime<Utc>, evaluated_at: DateTime<Utc>) -> Self {
        let Finding {
            rule,
            title,
            status,
            severity,
            citations,
            // Partial marks are the pack's: reports read them from the rule by id.
            partial_citations: _,
            evidence,
            message,
            remediation,
            exception,
        } = finding;
        FindingRow {
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
            evaluated_at,
        }
    }
}

/// A practice with its sites.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PracticeRow {
    pub id: i64,
    pub name: String,
    pub sites: Vec<String>,
    pub created_at: DateTime<Utc>,
}

/// An observation as stored, with the report it came in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredObservation {
    pub agent_id: String,
    pub sequence: u64,
    /// When a report last carried this same payload (receive time); observation rows are
    /// written only when the payload changes.
    pub confirmed_at: Option<DateTime<Utc>>,
    /// The agent dated it too far in the future: `observed_at` is the receive time instead.
    pub future_dated: bool,
    #[serde(flatten)]
    pub observation: Observation,
}

/// A dashboard user, as needed to log in.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub role: Role,
    pub practice_id: Option<i64>,
}

/// A live session, looked up by its token's hash.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub user_id: i64,
    pub username: String,
    pub role: Role,
    pub practice_id: Option<i64>,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

/// The policy settings of one practice or one site, as stored. Settings are stored as given
/// (the overrides TOML verbatim) and validated by whoever sets them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicySettingsRow {
    pub practice: String,
    /// `None` for the practice-level settings.
    pub site: Option<String>,
    /// The pack profile, e.g. `hipaa-2025-proposed`; only at practice level.
    pub profile: Option<String>,
    /// The overrides file's text (parameter changes, accepted risks).
    pub overrides_toml: Option<String>,
    pub updated_at: DateTime<Utc>,
    /// Who set them (`cli`, a user name).
    pub updated_by: String,
}

/// Everything that decides an agent's effective policy: its practice's profile and overrides,
/// then its site's overrides. All `None` when neither level has settings. Equal values build
/// equal policies, so it doubles as a cache key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AgentPolicySettings {
    pub practice: String,
    pub site: String,
    pub profile: Option<String>,
    pub practice_overrides: Option<String>,
    pub site_overrides: Option<String>,
}

impl AgentPolicySettings {
    /// Whether nothing differs from the built-in policy.
    pub fn is_default(&self) -> bool {
        self.profile.is_none() && self.practice_overrides.is_none() && self.site_overrides.is_none()
    }
}

/// Outcome of storing a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    /// Stored now.
    Stored,
    /// This `(agent, sequence)` was stored before; nothing changed.
    Duplicate,
}

/// One change of an agent's finding for one rule: its status or its accepted risk changed, it
/// appeared, or it was retired. Recorded in the transaction that replaced the findings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FindingChange {
    pub agent_id: String,
    pub rule: String,
    /// When the change was recorded (the collector's clock at evaluation).
    pub at: DateTime<Utc>,
    /// `None` when the rule had no finding on this agent before.
    pub old_status: Option<Status>,
    /// `None` when the finding was retired (its rule or subject is gone).
    pub new_status: Option<Status>,
    pub severity: Severity,
    pub title: String,
    pub citations: Vec<String>,
    /// The evidence at the moment of the change (the last evidence, for a retired finding).
    pub evidence: serde_json::Value,
    pub message: String,
    pub remediation: Option<String>,
    pub old_exception: Option<Exception>,
    pub exception: Option<Exception>,
}

/// Which finding changes to read: of one agent, or of one practice, or of everything the
/// scope sees, recorded in `from..to` (from inclusive, to exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeQuery {
    pub agent_id: Option<String>,
    pub practice_id: Option<i64>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// A report as the store takes it: the wire report with what the collector decided about it.
#[derive(Debug, Clone, Copy)]
pub struct IncomingReport<'a> {
    pub report: &'a rounds_protocol::Report,
    /// When the collector received it.
    pub received_at: DateTime<Utc>,
    /// Observations dated later than this are stored with `received_at` and flagged as
    /// future-dated (the agent's clock runs ahead).
    pub future_after: DateTime<Utc>,
}

/// Several writes that commit together or not at all. Dropping it without
/// [`commit`](Tx::commit) rolls everything back.
///
/// Obtained from [`Store::begin`]. While a unit of work is open it may hold the database's
/// write lock: keep it short and never wait on anything but the store inside it.
#[async_trait]
pub trait Tx: Send {
    /// Creates a practice if new and returns its id.
    async fn ensure_practice(&mut self, name: &str, now: DateTime<Utc>) -> StoreResult<i64>;
    /// Creates a practice and site if new and returns the site id.
    async fn ensure_site(&mut self, practice: &str, site: &str, now: DateTime<Utc>) -> StoreResult<i64>;
    /// Stores an enrollment token (creating practice and site if new).
    async fn create_token(&mut self, token: NewToken, now: DateTime<Utc>) -> StoreResult<()>;
    /// Redeems a token and creates the agent.
    async fn enroll(&mut self, token_hash: &str, agent: NewAgent, now: DateTime<Utc>) -> StoreResult<Enrolled>;
    /// Records a heartbeat, and the agent's clock skew (agent minus collector) when known;
    /// answers what the agent's row held before (its previous skew, whether it has reported).
    async fn heartbeat(
        &mut self,
        agent_id: &str,
        agent_version: &str,
        clock_skew: Option<chrono::Duration>,
        now: DateTime<Utc>,
    ) -> StoreResult<HeartbeatPrior>;
    /// Stores a report and its observations once per `(agent_id, sequence)`. The current
    /// state per (kind, subject) follows the highest sequence, not the agent's clock; a
    /// complete report of a check retires that check's subjects it no longer names.
    async fn ingest_report(&mut self, agent_id: &str, report: IncomingReport<'_>) -> StoreResult<Ingested>;
    /// Replaces an agent's current findings with `findings`, evaluated at `now`: rules not in
    /// `findings` lose their finding; a rule whose status is unchanged keeps its
    /// `status_since`, any other gets `now`. Every appearance, status change, exception change
    /// and retirement is recorded in the history and returned. `NotFound` when the agent does
    /// not exist.
    async fn replace_findings(
        &mut self,
        agent_id: &str,
        findings: &[Finding],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<FindingChange>>;
    /// Adds a dashboard user.
    async fn add_user(
        &mut self,
        username: &str,
        password_hash: &str,
        role: Role,
        practice: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<i64>;
    /// Replaces a user's password hash and ends their sessions.
    async fn set_password(&mut self, username: &str, password_hash: &str) -> StoreResult<()>;
    /// Stores an API key's hash.
    async fn create_api_key(
        &mut self,
        key_hash: &str,
        role: Role,
        practice: Option<&str>,
        label: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Appends to the collector's own audit log of who did what.
    async fn audit(&mut self, actor: &str, action: &str, detail: &str, now: DateTime<Utc>) -> StoreResult<()>;
    /// Replaces the policy settings of a practice (`site` `None`) or of one of its sites; both
    /// `profile` and `overrides_toml` `None` removes them. `NotFound` for an unknown practice or
    /// site; `Invalid` for a profile at site level.
    #[allow(clippy::too_many_arguments)]
    async fn set_policy_settings(
        &mut self,
        practice: &str,
        site: Option<&str>,
        profile: Option<&str>,
        overrides_toml: Option<&str>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    // --- Reliable delivery and central agent configuration (issue 8, issue 11's chain) ---
    /// Stores a report once per `(agent_id, sequence)` like [`ingest_report`](Tx::ingest_report),
    /// and keeps the delivery state: a resend with the same content is a `Duplicate`, other
    /// content at a stored sequence a `Conflict` (nothing stored); a new report updates the
    /// gaps, the announced drops, the chain head and the report count, and records the
    /// integrity problems [`crate::delivery`] finds. `NotFound` when the agent does not exist.
    async fn deliver_report(&mut self, agent_id: &str, report: IncomingReport<'_>) -> StoreResult<DeliveryOutcome>;
    /// Records integrity problems of an agent found outside [`deliver_report`](Tx::deliver_report)
    /// (a conflicting resend, answered 409 after its unit of work rolled back).
    async fn record_integrity(
        &mut self,
        agent_id: &str,
        problems: &[crate::delivery::IntegrityProblem],
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Stores what the agent said about itself in its last heartbeat.
    async fn agent_reported_state(&mut self, agent_id: &str, state: &AgentReportedState) -> StoreResult<()>;
    /// Adds a version of the central agent configuration of a practice (`site` `None`) or site;
    /// `toml` `None` clears it. Earlier versions are kept. `NotFound` for an unknown practice
    /// or site. Returns the version's id.
    #[allow(clippy::too_many_arguments)]
    async fn set_agent_config(
        &mut self,
        practice: &str,
        site: Option<&str>,
        toml: Option<&str>,
        source: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<i64>;
    // --- Security: revocation and API-key expiry (issue 15) ---
    /// Revokes an agent: its credentials are refused from the next request on; its row and
    /// history stay. `Ok(false)` when it was revoked before; `NotFound` when it does not exist.
    async fn revoke_agent(&mut self, agent_id: &str, now: DateTime<Utc>) -> StoreResult<bool>;
    /// Stores an API key's hash with an optional expiry; returns the key's id.
    #[allow(clippy::too_many_arguments)]
    async fn create_api_key_expiring(
        &mut self,
        key_hash: &str,
        role: Role,
        practice: Option<&str>,
        label: &str,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> StoreResult<i64>;
    /// Revokes an API key by id. `Ok(false)` when it was revoked before; `NotFound` when unknown.
    async fn revoke_api_key(&mut self, id: i64, now: DateTime<Utc>) -> StoreResult<bool>;
    /// Removes a dashboard user and ends their sessions. `NotFound` when unknown.
    async fn remove_user(&mut self, username: &str) -> StoreResult<()>;

    // --- Alerting: incidents, timeline, outbox, windows, job leases (issue 12) ---
    /// The incident of `(source, subject)` that is not resolved, if any.
    async fn active_incident(&mut self, source: &str, subject: &str) -> StoreResult<Option<Incident>>;
    /// One incident by id, whatever its state.
    async fn incident_by_id(&mut self, id: i64) -> StoreResult<Option<Incident>>;
    /// Every incident not resolved, oldest first.
    async fn active_incidents(&mut self) -> StoreResult<Vec<Incident>>;
    /// Opens an incident (state `open`); `Conflict`-kind database error when one of the same
    /// `(source, subject)` is not resolved.
    async fn open_incident(&mut self, new: &NewIncident, now: DateTime<Utc>) -> StoreResult<Incident>;
    /// Writes an incident's mutable fields (state, cause, parent, times, detail).
    async fn save_incident(&mut self, incident: &Incident) -> StoreResult<()>;
    /// Appends to an incident's timeline.
    async fn incident_event(
        &mut self,
        incident_id: i64,
        event: &NewIncidentEvent,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Adds a notification to the outbox; returns its id.
    async fn enqueue_notification(&mut self, item: &NewOutboxItem, now: DateTime<Utc>) -> StoreResult<i64>;
    /// Pending notifications due at `now`, oldest due first.
    async fn due_notifications(&mut self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<OutboxItem>>;
    /// Every notification of an incident, oldest first.
    async fn incident_notifications(&mut self, incident_id: i64) -> StoreResult<Vec<OutboxItem>>;
    /// Writes a notification's status, attempts, next attempt and last error.
    async fn save_notification(&mut self, item: &OutboxItem) -> StoreResult<()>;
    /// The N-of-M window of `(source, subject)`, if any.
    async fn alert_window(&mut self, source: &str, subject: &str) -> StoreResult<Option<AlertWindow>>;
    /// Creates or replaces a window.
    async fn save_alert_window(&mut self, window: &AlertWindow) -> StoreResult<()>;
    /// Takes or renews the job lease `name` for `holder` until `until` when it is free, expired
    /// at `now` or already `holder`'s; whether `holder` holds it.
    async fn claim_lease(
        &mut self,
        name: &str,
        holder: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    // --- Compliance reports (issue 14) ---
    /// Records a report the collector issued (its file's and its content's SHA-256).
    async fn record_issued_report(&mut self, report: &IssuedReport) -> StoreResult<()>;
    /// Records one attempt of a scheduled delivery of an issued report.
    async fn record_report_delivery(&mut self, delivery: &ReportDelivery) -> StoreResult<()>;
    /// Makes every write of this unit of work durable and visible.
    async fn commit(self: Box<Self>) -> StoreResult<()>;

    // --- Tamper acknowledgement (core, issue 11) ---
    /// Records the tamper events an agent's audit-log check reported that are not recorded
    /// yet (a known id changes nothing: what was recorded first stays). `NotFound` when the
    /// agent does not exist.
    async fn note_tampers(&mut self, agent_id: &str, seen: &[TamperSeen], now: DateTime<Utc>) -> StoreResult<()>;
    /// Records that a person acknowledged a tamper event, once: `NotFound` for an unknown agent
    /// or tamper id, `Conflict` when it was acknowledged before (the first acknowledgement
    /// stays). Returns the event as acknowledged.
    async fn acknowledge_tamper(&mut self, agent_id: &str, tamper_id: &str, ack: &TamperAck) -> StoreResult<TamperRow>;

    // --- Runtime silences (alerting, issue 12) ---
    /// Stores a new runtime silence (already validated) and returns it with its id.
    async fn create_silence(&mut self, new: &NewSilence, now: DateTime<Utc>) -> StoreResult<StoredSilence>;
    /// Saves a silence's `ended_at`, `ended_by`, `start_recorded_at` and `end_recorded_at`
    /// (nothing else of it changes). `NotFound` for an unknown id.
    async fn save_silence(&mut self, silence: &StoredSilence) -> StoreResult<()>;
    /// Runtime silences matching `query`, newest first.
    async fn silences(&mut self, query: &SilenceQuery) -> StoreResult<Vec<StoredSilence>>;

    // --- Retention (issue 17) ---
    /// At most `limit` raw observations observed before `before` and after the cursor
    /// `after` (time, row id), oldest first, that are not the newest row of their (agent,
    /// kind, subject): the current state is never rolled up.
    async fn observations_to_roll_up(
        &mut self,
        before: DateTime<Utc>,
        after: (DateTime<Utc>, i64),
        limit: u32,
    ) -> StoreResult<Vec<RawObservation>>;
    /// At most `limit` hourly rollups of hours before `before`, oldest first.
    async fn hourly_rollups_before(&mut self, before: DateTime<Utc>, limit: u32) -> StoreResult<Vec<StoredRollup>>;
    /// Adds rollups; a bucket already stored absorbs the new one (counts add, the earliest
    /// first and the latest last stay).
    async fn merge_rollups(&mut self, rollups: &[Rollup]) -> StoreResult<()>;
    /// Removes raw observation rows by id; how many were removed.
    async fn remove_observations(&mut self, ids: &[i64]) -> StoreResult<u64>;
    /// Removes rollup rows by id; how many were removed.
    async fn remove_rollups(&mut self, ids: &[i64]) -> StoreResult<u64>;
    /// Removes at most `limit` records of `kind` older than `before` (see [`RecordKind`]),
    /// with what depends on them; the rows removed per table, the principal table first.
    async fn prune_records(
        &mut self,
        kind: RecordKind,
        before: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<TableRows>>;
}

/// Runs one [`Tx`] method in its own unit of work.
macro_rules! in_tx {
    ($store:expr, |$tx:ident| $call:expr) => {{
        let mut $tx = $store.begin().await?;
        let out = $call.await?;
        $tx.commit().await?;
        Ok(out)
    }};
    // One agent's writes (PostgreSQL, issue 17: see `Store::begin_for_agent`).
    ($store:expr, agent $agent:expr, |$tx:ident| $call:expr) => {{
        let mut $tx = $store.begin_for_agent($agent).await?;
        let out = $call.await?;
        $tx.commit().await?;
        Ok(out)
    }};
}

/// The collector's storage. Every method is atomic; [`begin`](Store::begin) opens a unit of
/// work for writes that must commit together. The write methods here are each their own unit
/// of work (an implementation may run them faster, with the same effect).
///
/// Object-safe (`Arc<dyn Store>`): a PostgreSQL implementation provides `begin` with a
/// transaction of its own and the reads, and inherits the rest.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Opens a unit of work.
    async fn begin(&self) -> StoreResult<Box<dyn Tx>>;
    /// Opens a unit of work that writes only what belongs to `agent_id` (its reports,
    /// observations, delivery state, findings and tamper events), which an implementation may
    /// run beside other agents' units (PostgreSQL, issue 17: per-agent locks). The default is
    /// [`begin`](Store::begin).
    async fn begin_for_agent(&self, agent_id: &str) -> StoreResult<Box<dyn Tx>> {
        let _ = agent_id;
        self.begin().await
    }

    /// Creates a practice if new and returns its id.
    async fn ensure_practice(&self, name: &str, now: DateTime<Utc>) -> StoreResult<i64> {
        in_tx!(self, |tx| tx.ensure_practice(name, now))
    }
    /// Creates a practice and site if new and returns the site id.
    async fn ensure_site(&self, practice: &str, site: &str, now: DateTime<Utc>) -> StoreResult<i64> {
        in_tx!(self, |tx| tx.ensure_site(practice, site, now))
    }
    /// Stores an enrollment token (creating practice and site if new).
    async fn create_token(&self, token: NewToken, now: DateTime<Utc>) -> StoreResult<()> {
        in_tx!(self, |tx| tx.create_token(token, now))
    }
    /// Redeems a token and creates the agent in one transaction.
    async fn enroll(&self, token_hash: &str, agent: NewAgent, now: DateTime<Utc>) -> StoreResult<Enrolled> {
        in_tx!(self, |tx| tx.enroll(token_hash, agent, now))
    }
    /// Records a heartbeat (see [`Tx::heartbeat`]).
    async fn heartbeat(
        &self,
        agent_id: &str,
        agent_version: &str,
        clock_skew: Option<chrono::Duration>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        in_tx!(self, agent agent_id, |tx| tx.heartbeat(agent_id, agent_version, clock_skew, now)).map(|_| ())
    }
    /// Stores a report (see [`Tx::ingest_report`]).
    async fn ingest_report(&self, agent_id: &str, report: IncomingReport<'_>) -> StoreResult<Ingested> {
        in_tx!(self, agent agent_id, |tx| tx.ingest_report(agent_id, report))
    }
    /// Replaces an agent's findings (see [`Tx::replace_findings`]).
    async fn replace_findings(
        &self,
        agent_id: &str,
        findings: &[Finding],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<FindingChange>> {
        in_tx!(self, agent agent_id, |tx| tx.replace_findings(agent_id, findings, now))
    }
    /// Adds a dashboard user.
    async fn add_user(
        &self,
        username: &str,
        password_hash: &str,
        role: Role,
        practice: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<i64> {
        in_tx!(self, |tx| tx.add_user(username, password_hash, role, practice, now))
    }
    /// Replaces a user's password hash and ends their sessions.
    async fn set_password(&self, username: &str, password_hash: &str) -> StoreResult<()> {
        in_tx!(self, |tx| tx.set_password(username, password_hash))
    }
    /// Stores an API key's hash.
    async fn create_api_key(
        &self,
        key_hash: &str,
        role: Role,
        practice: Option<&str>,
        label: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        in_tx!(self, |tx| tx.create_api_key(key_hash, role, practice, label, now))
    }
    /// Appends to the collector's own audit log of who did what.
    async fn audit(&self, actor: &str, action: &str, detail: &str, now: DateTime<Utc>) -> StoreResult<()> {
        in_tx!(self, |tx| tx.audit(actor, action, detail, now))
    }
    /// Replaces policy settings (see [`Tx::set_policy_settings`]).
    #[allow(clippy::too_many_arguments)]
    async fn set_policy_settings(
        &self,
        practice: &str,
        site: Option<&str>,
        profile: Option<&str>,
        overrides_toml: Option<&str>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        in_tx!(self, |tx| tx.set_policy_settings(
            practice,
            site,
            profile,
            overrides_toml,
            actor,
            now
        ))
    }

    /// Credentials of an agent, if it exists.
    async fn agent_auth(&self, agent_id: &str) -> StoreResult<Option<AgentAuth>>;
    /// Practices visible to `scope`, with their sites.
    async fn practices(&self, scope: &Scope) -> StoreResult<Vec<PracticeRow>>;
    /// Agents visible to `scope`.
    async fn agents(&self, scope: &Scope) -> StoreResult<Vec<AgentRow>>;
    /// One agent visible to `scope`. `NotFound` when it does not exist or is not visible.
    async fn agent(&self, scope: &Scope, agent_id: &str) -> StoreResult<AgentRow>;
    /// The current observation per (kind, subject) of an agent visible to `scope` (from its
    /// highest sequence; retired subjects excluded), optionally of one kind. `NotFound` when
    /// the agent does not exist or is not visible.
    async fn latest_observations(
        &self,
        scope: &Scope,
        agent_id: &str,
        kind: Option<&str>,
    ) -> StoreResult<Vec<StoredObservation>>;
    /// The current findings of an agent visible to `scope`, by rule id. `NotFound` when the
    /// agent does not exist or is not visible.
    async fn findings(&self, scope: &Scope, agent_id: &str) -> StoreResult<Vec<FindingRow>>;
    /// The findings of an agent visible to `scope` as they stood at `at`, by rule id (built
    /// from the history; `evaluated_at` is the time of the change that set each one).
    async fn findings_at(&self, scope: &Scope, agent_id: &str, at: DateTime<Utc>) -> StoreResult<Vec<FindingRow>>;
    /// Finding changes visible to `scope` that match `query`, oldest first.
    async fn finding_changes(&self, scope: &Scope, query: &ChangeQuery) -> StoreResult<Vec<FindingChange>>;
    /// Number of stored reports (all agents).
    async fn report_count(&self) -> StoreResult<u64>;
    /// Number of dashboard users.
    async fn user_count(&self) -> StoreResult<u64>;
    /// A user by name.
    async fn user(&self, username: &str) -> StoreResult<Option<UserRow>>;
    /// Creates a session, and drops sessions expired at `now`.
    async fn create_session(
        &self,
        token_hash: &str,
        user_id: i64,
        csrf_token: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// A session that has not expired at `now`.
    async fn session(&self, token_hash: &str, now: DateTime<Utc>) -> StoreResult<Option<SessionRow>>;
    /// Ends a session.
    async fn delete_session(&self, token_hash: &str) -> StoreResult<()>;
    /// The scope of an API key.
    async fn api_key(&self, key_hash: &str) -> StoreResult<Option<Scope>>;
    /// The newest `limit` audit-log entries, newest first.
    async fn audit_entries(&self, limit: u32) -> StoreResult<Vec<AuditEntry>>;
    /// The policy settings of a practice (`site` `None`) or site, if any are set. `NotFound` for
    /// an unknown practice or site.
    async fn policy_settings(&self, practice: &str, site: Option<&str>) -> StoreResult<Option<PolicySettingsRow>>;
    /// The settings that decide an agent's policy. `NotFound` when the agent does not exist.
    async fn policy_settings_for_agent(&self, agent_id: &str) -> StoreResult<AgentPolicySettings>;

    // --- Reliable delivery and central agent configuration (issue 8, issue 11's chain) ---
    /// An agent's delivery state: sequence, reports stored, gaps, integrity problems, what it
    /// said in its last heartbeat. `NotFound` when the agent does not exist or is not visible.
    async fn delivery_status(&self, scope: &Scope, agent_id: &str) -> StoreResult<DeliveryStatus>;
    /// The central configuration in force for a practice (`site` `None`) or site, if set.
    /// `NotFound` for an unknown practice or site.
    async fn agent_config(&self, practice: &str, site: Option<&str>) -> StoreResult<Option<AgentConfigRow>>;
    /// Every version set for a practice or site, oldest first (a cleared one has no `toml`).
    async fn agent_config_history(&self, practice: &str, site: Option<&str>) -> StoreResult<Vec<AgentConfigRow>>;
    /// The configuration in force for each site of a practice that has one, by site name.
    async fn site_agent_configs(&self, practice: &str) -> StoreResult<Vec<AgentConfigRow>>;
    /// What decides an agent's central configuration. `NotFound` when the agent does not exist.
    async fn agent_config_sources(&self, agent_id: &str) -> StoreResult<AgentConfigSources>;

    // --- Technician dashboard (issue 13) ---
    /// Every current finding of the agents visible to `scope`, in brief (no evidence), for
    /// fleet-wide roll-ups: one query instead of one per agent.
    async fn finding_briefs(&self, scope: &Scope) -> StoreResult<Vec<FindingBrief>>;
    /// The current findings of the practices visible to `scope` tallied per (practice, rule)
    /// (issue 13: the overview reads these counts instead of every finding). The default
    /// counts [`Store::finding_briefs`]; SQLite reads a table its triggers keep.
    async fn rule_tallies(&self, scope: &Scope) -> StoreResult<Vec<RuleTally>> {
        let practice_of: std::collections::HashMap<String, i64> = self
            .agents(scope)
            .await?
            .into_iter()
            .map(|a| (a.agent_id, a.practice_id))
            .collect();
        let mut tallies: std::collections::BTreeMap<(i64, String), RuleTally> = Default::default();
        for b in self.finding_briefs(scope).await? {
            let Some(&practice_id) = practice_of.get(&b.agent_id) else {
                continue;
            };
            tallies
                .entry((practice_id, b.rule.clone()))
                .or_insert_with(|| RuleTally {
                    practice_id,
                    rule: b.rule.clone(),
                    ..Default::default()
                })
                .add(b.status, b.accepted, b.status_since);
        }
        Ok(tallies.into_values().collect())
    }
    /// The stored observations of `kind` of every agent of practice `practice_id` visible to
    /// `scope`, observed in `from..to`, oldest first (rows are written when a payload changes,
    /// so this is the history of changes). `NotFound` when the practice is not visible.
    async fn observation_history(
        &self,
        scope: &Scope,
        practice_id: i64,
        kind: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<StoredObservation>>;
    /// Of what [`Store::observation_history`] returns, the observations that ran (status ok),
    /// with only the top-level `fields` of each payload, in the order of `fields` (`null` where
    /// absent), in the same order (issue 13: the practice page's charts read a few numbers of
    /// thousands of payloads). The default picks them from `observation_history`; SQLite has
    /// `json_extract` pick them.
    async fn observation_fields(
        &self,
        scope: &Scope,
        practice_id: i64,
        kind: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        fields: &[&str],
    ) -> StoreResult<Vec<ObservedFields>> {
        Ok(self
            .observation_history(scope, practice_id, kind, from, to)
            .await?
            .into_iter()
            .filter(|o| o.observation.status == rounds_protocol::ObservationStatus::Ok)
            .map(|o| ObservedFields {
                values: fields
                    .iter()
                    .map(|f| o.observation.data.get(f).cloned().unwrap_or_default())
                    .collect(),
                agent_id: o.agent_id,
                subject: o.observation.subject,
                observed_at: o.observation.observed_at,
            })
            .collect())
    }
    /// Every dashboard user (no password hashes), by name, with their practice's name.
    async fn users(&self) -> StoreResult<Vec<UserSummary>>;

    // --- Security: revocation and API-key expiry (issue 15) ---
    /// Revokes an agent (see [`Tx::revoke_agent`]).
    async fn revoke_agent(&self, agent_id: &str, now: DateTime<Utc>) -> StoreResult<bool> {
        in_tx!(self, |tx| tx.revoke_agent(agent_id, now))
    }
    /// Revokes an API key (see [`Tx::revoke_api_key`]).
    async fn revoke_api_key(&self, id: i64, now: DateTime<Utc>) -> StoreResult<bool> {
        in_tx!(self, |tx| tx.revoke_api_key(id, now))
    }
    /// Removes a dashboard user (see [`Tx::remove_user`]).
    async fn remove_user(&self, username: &str) -> StoreResult<()> {
        in_tx!(self, |tx| tx.remove_user(username))
    }
    /// Every API key (never the key itself), oldest first.
    async fn api_keys(&self) -> StoreResult<Vec<ApiKeyRow>>;
    /// The scope and label of an API key that is neither revoked nor expired at `now`.
    async fn api_key_valid(&self, key_hash: &str, now: DateTime<Utc>) -> StoreResult<Option<ApiKeyGrant>>;
    /// Number of users with the admin role.
    async fn admin_count(&self) -> StoreResult<u64>;

    // --- Alerting: incidents, timeline, outbox, windows, job leases (issue 12) ---
    /// Incidents visible to `scope` that match `query`, newest first. A practice manager sees
    /// their practice's incidents and the MSP-wide ones naming it.
    async fn incidents(&self, scope: &Scope, query: &IncidentQuery) -> StoreResult<Vec<Incident>>;
    /// One incident visible to `scope` with its timeline, children and notifications.
    /// `NotFound` when it does not exist or is not visible.
    async fn incident(&self, scope: &Scope, id: i64) -> StoreResult<IncidentDetail>;
    /// Takes or renews a job lease (see [`Tx::claim_lease`]).
    async fn claim_lease(
        &self,
        name: &str,
        holder: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        in_tx!(self, |tx| tx.claim_lease(name, holder, until, now))
    }
    // Alerting (issue 12): what the engine's tick reads of every agent.
    /// Every agent's identity and last heartbeat (all practices). The default reads
    /// [`agents`](Store::agents); a backend may answer it with a lighter query.
    async fn agent_presence(&self) -> StoreResult<Vec<AgentPresence>> {
        let all = Scope {
            role: Role::Admin,
            practice_id: None,
        };
        Ok(self
            .agents(&all)
            .await?
            .into_iter()
            .map(|a| AgentPresence {
                agent_id: a.agent_id,
                hostname: a.hostname,
                practice: a.practice,
                site: a.site,
                enrolled_at: a.enrolled_at,
                last_seen_at: a.last_seen_at,
            })
            .collect())
    }
    // Runtime silences (alerting, issue 12).
    /// Runtime silences matching `query`, newest first (see [`Tx::silences`]).
    async fn silences(&self, query: &SilenceQuery) -> StoreResult<Vec<StoredSilence>> {
        in_tx!(self, |tx| tx.silences(query))
    }
    // --- Compliance reports (issue 14) ---
    /// Observations of `kinds` an agent made in `from..to` (observation time), and for each
    /// (kind, subject) the last one made before `from`, oldest first. Callers check the scope.
    async fn agent_observation_history(
        &self,
        agent_id: &str,
        kinds: &[&str],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<StoredObservation>>;
    /// When the collector received each report of an agent in `from..to`, oldest first.
    async fn report_receipts(
        &self,
        agent_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<DateTime<Utc>>>;
    /// The issued reports whose file has this hex SHA-256.
    async fn issued_reports_by_file_hash(&self, file_sha256: &str) -> StoreResult<Vec<IssuedReport>>;
    /// An issued report by its id.
    async fn issued_report(&self, report_id: &str) -> StoreResult<Option<IssuedReport>>;
    /// The issued reports of a practice, oldest first.
    async fn issued_reports_of_practice(&self, practice_id: i64) -> StoreResult<Vec<IssuedReport>>;
    /// The delivery attempts of a report schedule, oldest first.
    async fn report_deliveries(&self, schedule: &str) -> StoreResult<Vec<ReportDelivery>>;
    // --- Tamper acknowledgement (core, issue 11) ---
    /// The tamper events recorded for an agent visible to `scope`, newest detected first.
    /// `NotFound` when the agent does not exist or is not visible.
    async fn tampers(&self, scope: &Scope, agent_id: &str) -> StoreResult<Vec<TamperRow>>;
    /// Records tamper events in their own unit of work (see [`Tx::note_tampers`]).
    async fn note_tampers(&self, agent_id: &str, seen: &[TamperSeen], now: DateTime<Utc>) -> StoreResult<()> {
        in_tx!(self, agent agent_id, |tx| tx.note_tampers(agent_id, seen, now))
    }

    // --- Retention (issue 17) ---
    /// What a retention run at `cutoffs` would remove, per table (`retention run --dry-run`):
    /// the same conditions as the run, counted, nothing changed.
    async fn retention_preview(&self, cutoffs: &RetentionCutoffs) -> StoreResult<Vec<TableRows>>;
    /// The storage each table takes, and how it was measured (the admin page).
    async fn storage(&self) -> StoreResult<StorageReport>;

    // --- Group commit of ingest (core, issue 7) ---
    /// Delivers `reports` of one agent, in order, as one unit of work (see
    /// [`Tx::deliver_report`]): every report is stored or none. At the first `Conflict` it
    /// stops and keeps nothing; the outcomes up to and including the conflict are returned.
    /// An implementation may commit several callers' units together (SQLite: group commit),
    /// but answers only after the unit is durable.
    async fn deliver_reports(
        &self,
        agent_id: &str,
        reports: &[IncomingReport<'_>],
    ) -> StoreResult<Vec<DeliveryOutcome>> {
        let mut tx = self.begin_for_agent(agent_id).await?;
        let mut outcomes = Vec::with_capacity(reports.len());
        for r in reports {
            let out = tx.deliver_report(agent_id, *r).await?;
            let conflict = matches!(out.delivery, Delivery::Conflict { .. });
            outcomes.push(out);
            if conflict {
                return Ok(outcomes);
            }
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    // --- Ingest throughput (core, issue 7) ---
    /// [`deliver_reports`](Self::deliver_reports), and, when it stored a report, what the
    /// evaluation that follows reads ([`evaluation_input`](Self::evaluation_input)) as it stands
    /// after those writes. The outcomes are as `deliver_reports` answers them; a failed read
    /// fails only the input (the reports stay stored). The default asks the two in turn; SQLite
    /// reads on its writer inside the same unit of work, whose page cache still holds what it
    /// just wrote, instead of on a read connection after the commit.
    async fn deliver_reports_and_read(
        &self,
        agent_id: &str,
        reports: &[IncomingReport<'_>],
    ) -> StoreResult<(Vec<DeliveryOutcome>, Option<StoreResult<EvaluationInput>>)> {
        let outcomes = self.deliver_reports(agent_id, reports).await?;
        let input = match kept_a_report(&outcomes) {
            true => Some(self.evaluation_input(agent_id).await),
            false => None,
        };
        Ok((outcomes, input))
    }

    /// Everything an evaluation of `agent_id` reads, as the collector sees it (no scope):
    /// its row, its current observations, its policy settings and its tamper events. The
    /// default asks the four methods above; an implementation may answer in one round trip
    /// (SQLite: one read on one connection).
    async fn evaluation_input(&self, agent_id: &str) -> StoreResult<EvaluationInput> {
        let scope = Scope {
            role: Role::Admin,
            practice_id: None,
        };
        let agent = self.agent(&scope, agent_id).await?;
        Ok(EvaluationInput {
            os: agent.os,
            clock_skew_ms: agent.clock_skew_ms,
            observations: self.latest_observations(&scope, agent_id, None).await?,
            policy_settings: self.policy_settings_for_agent(agent_id).await?,
            tampers: self.tampers(&scope, agent_id).await?,
        })
    }

    // --- Heartbeats at scale (issue 16) ---
    /// Records a heartbeat and what it says of the agent's configuration and spool as one
    /// unit of work, and answers what the agent's row held before ([`HeartbeatPrior`]), so
    /// the heartbeat path reads and writes nothing else. The default runs
    /// [`Tx::heartbeat`] and [`Tx::agent_reported_state`] in one unit of work for the agent;
    /// an implementation may run it faster with the same effect (SQLite: one unit of a group
    /// commit, so one commit serves many agents' heartbeats).
    async fn record_heartbeat(
        &self,
        agent_id: &str,
        agent_version: &str,
        clock_skew: Option<chrono::Duration>,
        reported: &AgentReportedState,
        now: DateTime<Utc>,
    ) -> StoreResult<HeartbeatPrior> {
        in_tx!(self, agent agent_id, |tx| async {
            let prior = tx.heartbeat(agent_id, agent_version, clock_skew, now).await?;
            tx.agent_reported_state(agent_id, reported).await?;
            StoreResult::Ok(prior)
        })
    }
}

// --- Heartbeats at scale (issue 16) ---
/// What an agent's row held before a heartbeat was recorded: what the heartbeat path needs
/// to decide whether the agent's clock finding may have changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeartbeatPrior {
    /// The clock skew (agent minus collector) measured at the previous heartbeat, in ms.
    pub clock_skew_ms: Option<i64>,
    /// Whether the agent has had a report stored.
    pub reported: bool,
}

// --- Ingest throughput (core, issue 7) ---
/// Whether a unit of deliveries kept a newly stored report: one was stored and no conflict
/// refused the unit (a conflict keeps nothing).
pub fn kept_a_report(outcomes: &[DeliveryOutcome]) -> bool {
    !outcomes.iter().any(|o| matches!(o.delivery, Delivery::Conflict { .. }))
        && outcomes.iter().any(|o| matches!(o.delivery, Delivery::Stored { .. }))
}

/// What [`Store::evaluation_input`] answers.
#[derive(Debug, Clone)]
pub struct EvaluationInput {
    /// The OS family given at enrollment ([`AgentRow::os`]).
    pub os: String,
    /// The agent's clock skew at its last heartbeat ([`AgentRow::clock_skew_ms`]).
    pub clock_skew_ms: Option<i64>,
    pub observations: Vec<StoredObservation>,
    pub policy_settings: AgentPolicySettings,
    pub tampers: Vec<TamperRow>,
}

// --- PostgreSQL backend (issue 17) ---

/// What opening a store did to its schema: the version it had and the version it has now
/// (`rounds-collector migrate` prints both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    pub from: usize,
    pub to: usize,
}

/// One entry of the collector's audit log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub detail: String,
}

// --- Reliable delivery and central agent configuration (issue 8, issue 11's chain) ---

/// What storing a report came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Stored now, with the integrity problems found (already recorded).
    Stored {
        problems: Vec<crate::delivery::IntegrityProblem>,
    },
    /// Stored before with the same content: nothing changed.
    Duplicate,
    /// Stored before with other content: nothing changed; answered `409`.
    Conflict {
        /// Digest of the stored report.
        stored_digest: Option<String>,
        /// Digest of the one sent now.
        new_digest: String,
    },
}

/// A [`Delivery`] and the next sequence the collector expects from the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryOutcome {
    pub delivery: Delivery,
    pub next_expected: u64,
}

/// What an agent said about itself in its last heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AgentReportedState {
    /// Version of the central configuration it runs with.
    pub config_version: Option<String>,
    /// Why it refused the newest central configuration.
    pub config_error: Option<String>,
    /// Reports waiting in its spool.
    pub spool_depth: Option<u64>,
    /// Why it cannot spool reports right now.
    pub spool_error: Option<String>,
}

/// One integrity problem as recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntegrityEvent {
    pub sequence: u64,
    pub kind: String,
    pub detail: String,
    pub at: DateTime<Utc>,
}

/// An agent's delivery state, for `GET /api/v1/agents/{id}` and the machine page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryStatus {
    /// The highest sequence stored.
    pub last_sequence: u64,
    /// How many reports are stored.
    pub reports_stored: u64,
    /// Sequence and hash of the chain head (the highest stored report).
    pub chain_sequence: Option<u64>,
    pub chain_hash: Option<String>,
    /// Missing sequence ranges, with the agent's reason where it gave one.
    pub gaps: Vec<crate::delivery::GapPiece>,
    /// How many integrity problems were ever recorded.
    pub integrity_problems: u64,
    /// The newest integrity problems (at most 50), newest first.
    pub integrity: Vec<IntegrityEvent>,
    /// What the agent said in its last heartbeat.
    pub reported: AgentReportedState,
}

/// One version of a practice's or site's central agent configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentConfigRow {
    pub id: i64,
    pub practice: String,
    pub site: Option<String>,
    /// The configuration file's text; `None` when this version cleared it.
    pub toml: Option<String>,
    /// Where it came from (the file given to `agent-config set`).
    pub source: String,
    pub set_at: DateTime<Utc>,
    pub set_by: String,
}

/// What decides an agent's central configuration: its practice's and its site's, if set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfigSources {
    pub practice: String,
    pub site: String,
    pub practice_toml: Option<String>,
    pub site_toml: Option<String>,
}

// --- Technician dashboard (issue 13) ---

/// One current finding in brief: which agent, which rule, its status and since when, and
/// whether an accepted risk is attached.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FindingBrief {
    pub agent_id: String,
    pub rule: String,
    pub status: Status,
    pub severity: Severity,
    pub accepted: bool,
    pub status_since: DateTime<Utc>,
}

/// Some top-level fields of one stored observation's payload (issue 13).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObservedFields {
    pub agent_id: String,
    pub subject: String,
    pub observed_at: DateTime<Utc>,
    /// One value per field asked for, `null` where the payload has none.
    pub values: Vec<serde_json::Value>,
}

/// The current findings of one rule on one practice's agents (issue 13), by outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RuleTally {
    pub practice_id: i64,
    pub rule: String,
    pub pass: u32,
    /// Failing without an accepted risk.
    pub fail: u32,
    /// Erroring (the check could not run) without an accepted risk.
    pub error: u32,
    pub not_applicable: u32,
    /// Failing or erroring with an accepted risk.
    pub accepted: u32,
    /// The oldest `status_since` of the failing or erroring findings without an accepted risk.
    pub bad_since: Option<DateTime<Utc>>,
}

impl RuleTally {
    /// Counts one finding.
    pub fn add(&mut self, status: Status, accepted: bool, since: DateTime<Utc>) {
        match (status, accepted) {
            (Status::Pass, _) => self.pass += 1,
            (Status::NotApplicable, _) => self.not_applicable += 1,
            (Status::Fail | Status::Error, true) => self.accepted += 1,
            (Status::Fail, false) => self.fail += 1,
            (Status::Error, false) => self.error += 1,
        }
        if matches!(status, Status::Fail | Status::Error) && !accepted {
            self.bad_since = Some(self.bad_since.map_or(since, |s| s.min(since)));
        }
    }
}

/// A dashboard user as the admin page lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserSummary {
    pub username: String,
    pub role: Role,
    pub practice: Option<String>,
    pub created_at: DateTime<Utc>,
}

// --- Security: revocation and API-key expiry (issue 15) ---

/// An API key as listed (`apikey list`, `GET /api/v1/apikeys`); the key itself is never stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiKeyRow {
    pub id: i64,
    pub label: String,
    pub role: Role,
    pub practice: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

// --- Compliance reports (issue 14) ---

/// A report the collector issued, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssuedReport {
    /// The report's id, printed in the file (`RR-` and 16 hex digits).
    pub report_id: String,
    pub practice_id: i64,
    pub practice: String,
    /// First and last day of the period (UTC, inclusive).
    pub period_from: chrono::NaiveDate,
    pub period_to: chrono::NaiveDate,
    /// `pdf`, `html` or `csv`.
    pub format: String,
    /// Hex SHA-256 of the canonical content (printed in the file).
    pub content_sha256: String,
    /// Hex SHA-256 of the exact bytes issued.
    pub file_sha256: String,
    pub size_bytes: u64,
    pub issued_at: DateTime<Utc>,
    /// Who asked for it: `cli`, a user name, `schedule:NAME`.
    pub issued_by: String,
    pub collector_version: String,
}

/// One attempt of a scheduled delivery of an issued report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportDelivery {
    pub report_id: String,
    /// The schedule's name.
    pub schedule: String,
    pub recipients: Vec<String>,
    pub attempted_at: DateTime<Utc>,
    pub delivered: bool,
    /// What the mail server answered, or why it failed.
    pub detail: String,
}

// --- Tamper acknowledgement (core, issue 11) ---

/// A tamper event as an agent's audit-log check reported it (`tamper` or `last_tamper` of an
/// `audit.log` observation).
#[derive(Debug, Clone, PartialEq)]
pub struct TamperSeen {
    /// The agent's stable id of the event.
    pub tamper_id: String,
    /// The watched log it happened to.
    pub path: String,
    /// `rewritten`, `truncated`, `deleted`, `replaced`, `owner_changed`, `mode_widened`.
    pub kind: String,
    /// When the agent detected it (by the agent's clock).
    pub detected_at: DateTime<Utc>,
    /// The event as the agent sent it (byte range, sizes, inodes).
    pub event: serde_json::Value,
}

/// Who acknowledged a tamper event, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TamperAck {
    pub by: String,
    pub at: DateTime<Utc>,
    pub reason: String,
}

/// A recorded tamper event of an agent, open until acknowledged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TamperRow {
    pub agent_id: String,
    pub tamper_id: String,
    pub path: String,
    pub kind: String,
    pub detected_at: DateTime<Utc>,
    /// When the collector first received it.
    pub first_seen_at: DateTime<Utc>,
    pub event: serde_json::Value,
    /// `None` while open.
    pub acknowledged: Option<TamperAck>,
}
