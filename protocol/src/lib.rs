//! Wire types shared by the Rounds agent and collector.
//!
//! Everything that crosses the network between `rounds-agent` and `rounds-collector` is defined
//! here: enrollment, heartbeats, reports of observations, the agent's configuration and error
//! bodies. Every request body carries `protocol`, the major version of this protocol; a
//! collector refuses a major version it does not speak with a 4xx answer that says so.
//!
//! Compatibility rules:
//! - Wire types never use `deny_unknown_fields`: a newer agent may send fields an older
//!   collector ignores, and the other way round.
//! - Adding an optional field is a minor change; renaming or removing one, or changing its
//!   meaning, needs a new major version.
//!
//! Observations (raw facts a check saw) are generic on the wire ([`Observation`]) with typed
//! payloads in [`obs`], so a collector can store and show kinds it does not know yet.

pub mod obs;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The protocol major version this build speaks.
pub const PROTOCOL_MAJOR: u32 = 1;

/// Default size limit for a request body the collector accepts, in bytes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// How long a client of the collector (the agent, the simulator) keeps an idle keep-alive
/// connection for reuse, in seconds.
///
/// The collector closes a connection that has not sent a complete request head within its
/// `header_timeout_secs` (default 10), and that timer also runs while a keep-alive connection
/// waits for its next request. A client that reused a connection at the instant the collector
/// closed it would lose that request ("connection closed before message completed"), so
/// clients drop idle connections well before the collector does: the closing side is then
/// always the client, which never sends on a connection it closed.
pub const CLIENT_IDLE_SECS: u64 = 5;

/// Paths of the agent-facing API, relative to the collector's base URL.
pub mod paths {
    /// `POST` an [`EnrollRequest`](super::EnrollRequest), answered by an
    /// [`EnrollResponse`](super::EnrollResponse).
    pub const ENROLL: &str = "/api/v1/agent/enroll";
    /// `POST` a [`Heartbeat`](super::Heartbeat), answered by a
    /// [`HeartbeatAck`](super::HeartbeatAck).
    pub const HEARTBEAT: &str = "/api/v1/agent/heartbeat";
    /// `POST` a [`Report`](super::Report), answered by a [`ReportAck`](super::ReportAck).
    pub const REPORTS: &str = "/api/v1/agent/reports";
    /// `POST` a [`ReportBatch`](super::ReportBatch) (reports in sequence order), answered by a
    /// [`BatchAck`](super::BatchAck). Used when the agent is behind.
    pub const REPORT_BATCH: &str = "/api/v1/agent/reports/batch";
    /// `GET` the agent's effective [`AgentConfig`](super::AgentConfig), with `ETag`.
    pub const CONFIG: &str = "/api/v1/agent/config";
}

/// Trade a one-time enrollment token for an agent identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrollRequest {
    /// Protocol major version.
    pub protocol: u32,
    /// The one-time enrollment token created by a technician for a site.
    pub token: String,
    /// The machine's host name, as the agent sees it.
    pub hostname: String,
    /// Operating system family: `linux`, `windows`, `macos`.
    pub os: String,
    /// Version of the enrolling agent.
    pub agent_version: String,
}

/// The collector's answer to a successful enrollment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub protocol: u32,
    /// The new agent's id; stable for the life of the enrollment.
    pub agent_id: String,
    /// The per-agent secret. Shown once; the collector keeps only a hash of it.
    pub agent_secret: String,
    /// Practice (tenant) the agent belongs to.
    pub practice: String,
    /// Site (location) the agent belongs to.
    pub site: String,
    /// How often the agent should send a heartbeat, in seconds.
    pub heartbeat_interval_secs: u64,
}

/// A small, frequent sign of life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub protocol: u32,
    /// Agent id; must match the credentials the request is sent with.
    pub agent_id: String,
    /// When the agent sent it, by the agent's clock.
    pub sent_at: DateTime<Utc>,
    /// Version of the agent.
    pub agent_version: String,
    /// Seconds the agent process has been running.
    pub agent_uptime_secs: u64,
    /// Version (ETag) of the configuration the agent runs with, when it came from the collector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_version: Option<String>,
    /// Why the agent refused the collector's newest configuration, if it did (it keeps running
    /// with the last good one, `config_version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_error: Option<String>,
    /// Reports waiting in the agent's spool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spool_depth: Option<u64>,
    /// Why the agent cannot spool reports right now (disk full), if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spool_error: Option<String>,
}

/// The collector's answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatAck {
    /// The collector's clock when it received the heartbeat, so agents can spot clock skew.
    pub received_at: DateTime<Utc>,
    /// ETag of the agent's current effective configuration; a change means "fetch it again".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_etag: Option<String>,
}

/// A batch of observations from one agent. `(agent_id, sequence)` is the idempotency key:
/// the collector stores each sequence number once and acknowledges a resend without storing
/// it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub protocol: u32,
    /// Agent id; must match the credentials the request is sent with.
    pub agent_id: String,
    /// Monotonically increasing per agent, starting at 1.
    pub sequence: u64,
    /// When the report was assembled, by the agent's clock. Never used for ordering: the
    /// sequence number says which report is newer.
    pub created_at: DateTime<Utc>,
    /// The check that produced the observations (`encryption`, `ehr`, ...), when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// `true` when `observations` is the check's complete set of subjects: a subject the
    /// collector holds for this check that is not in it is gone (a USB stick unplugged) and
    /// its findings resolve. `false` for partial reports (a probe's state change).
    #[serde(default)]
    pub complete: bool,
    /// Hash chain over the agent's reports: the `hash` of the report with the previous
    /// sequence (the chain seed `hex(sha256("rounds-chain-seed:" + agent_id))` for the first
    /// report after enrollment), also when that report was dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_hash: Option<String>,
    /// SHA-256 (hex) over `prev_hash` and this report's content, see [`chain_input`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Reports the agent had to drop from its spool (full disk, too old) before sending this
    /// one: the collector records the gap as explained rather than unexplained.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<DroppedRange>,
    /// What the checks saw.
    pub observations: Vec<Observation>,
}

/// A range of sequence numbers the agent dropped without sending, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedRange {
    /// First sequence number dropped.
    pub first: u64,
    /// Last sequence number dropped (inclusive).
    pub last: u64,
    /// Why: `spool_full`, `too_old`, `rejected` (refused by the collector for good: 400, 413
    /// or 422), `unwritable`.
    pub reason: String,
}

/// The chain hash of a report: SHA-256 (hex) over the previous hash and the report's
/// canonical content (its JSON with `hash` left out). Computed by the agent when the report
/// is spooled, checked by the collector when it is stored. The hashing itself is done by the
/// caller (this crate depends on serde only); this function gives the exact bytes to hash.
pub fn chain_input(report: &Report) -> Vec<u8> {
    let mut content = report.clone();
    content.hash = None;
    // Serializing a plain data struct cannot fail.
    serde_json::to_vec(&content).unwrap_or_default()
}

/// The collector's answer to a report, sent only after the report is committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportAck {
    /// The sequence number acknowledged.
    pub sequence: u64,
    /// `false` when this sequence number had already been stored (a resend).
    pub stored: bool,
    /// The next sequence number the collector expects from this agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_expected: Option<u64>,
}

/// Several reports of one agent, in sequence order: how an agent that is behind catches up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportBatch {
    pub protocol: u32,
    /// Agent id; must match the credentials the request is sent with.
    pub agent_id: String,
    pub reports: Vec<Report>,
}

/// The collector's answer to a batch, sent only after every report in it is committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchAck {
    /// One acknowledgement per report, in the batch's order.
    pub acks: Vec<ReportAck>,
    /// The next sequence number the collector expects from this agent.
    pub next_expected: u64,
}

/// The body of a `409 Conflict` answer to a report whose sequence number the collector already
/// holds with other content: the agent's sequence file went back in time (restored from an old
/// backup). The agent renumbers what it has not delivered from `next_expected` on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequenceConflict {
    pub error: String,
    pub next_expected: u64,
    /// The hash of report `next_expected - 1` as the collector holds it (the head of its copy
    /// of the agent's chain), when it has one. The agent chains its renumbered reports to it,
    /// so the collector's chain stays whole and the event is recorded once (as the conflict).
    /// Absent from older collectors: the agent then chains to its own history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_hash: Option<String>,
}

/// The agent's effective configuration, as served by the collector: the same TOML an agent's
/// local file holds (one format, validated by the same code on both sides), merged from the
/// practice's and the site's settings. An empty `toml` means "every default".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentConfig {
    pub protocol: u32,
    /// Version of this configuration; the same string as the `ETag` it is served with.
    pub version: String,
    /// Where it comes from, for people: `default`, `practice Smith`, `site Main Street`.
    pub origin: String,
    /// The configuration, in the agent configuration file's TOML format.
    pub toml: String,
}

/// The JSON body of every error answer from the collector's API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, for a person to read.
    pub error: String,
    /// What went wrong, for a program: one of [`error_codes`]; absent for most errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// Machine-readable codes in [`ErrorBody::code`] (issue 15).
pub mod error_codes {
    /// `401`: the agent's credentials were revoked by an operator. Retrying cannot help; the
    /// agent stops, and the machine must be enrolled again with a new token.
    pub const CREDENTIALS_REVOKED: &str = "credentials_revoked";
}

/// Whether a check managed to observe anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObservationStatus {
    /// The check ran; `data` holds what it saw.
    Ok,
    /// The check could not run; `error` says why.
    Error,
}

/// A raw fact a check saw, with its time. `kind` names the payload type in [`obs`]; an
/// observation of a kind a receiver does not know is kept as it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// Payload kind, e.g. `inventory`, `encryption.volume`; see [`obs`].
    pub kind: String,
    /// What the observation is about, within the machine: `host`, a mount point, a URL.
    pub subject: String,
    /// When the check saw it.
    pub observed_at: DateTime<Utc>,
    pub status: ObservationStatus,
    /// The payload, for `status = ok`; `null` otherwise.
    #[serde(default)]
    pub data: serde_json::Value,
    /// Why the check could not run, for `status = error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Observation {
    /// An observation of a typed payload.
    pub fn ok<T: obs::Payload>(subject: impl Into<String>, observed_at: DateTime<Utc>, data: &T) -> Self {
        Observation {
            kind: T::KIND.to_string(),
            subject: subject.into(),
            observed_at,
            status: ObservationStatus::Ok,
            // Serializing plain data structs to a Value cannot fail.
            data: serde_json::to_value(data).unwrap_or(serde_json::Value::Null),
            error: None,
        }
    }

    /// An observation that a check of `kind` could not run, and why.
    pub fn error(
        kind: impl Into<String>,
        subject: impl Into<String>,
        observed_at: DateTime<Utc>,
        why: impl Into<String>,
    ) -> Self {
        Observation {
            kind: kind.into(),
            subject: subject.into(),
            observed_at,
            status: ObservationStatus::Error,
            data: serde_json::Value::Null,
            error: Some(why.into()),
        }
    }

    /// An observation of `T` about `subject`: its payload, or why the check could not run.
    pub fn from_result<T: obs::Payload>(
        subject: impl Into<String>,
        observed_at: DateTime<Utc>,
        result: Result<T, impl Into<String>>,
    ) -> Self {
        match result {
            Ok(data) => Observation::ok(subject, observed_at, &data),
            Err(why) => Observation::error(T::KIND, subject, observed_at, why),
        }
    }

    /// The typed payload, if this observation is of kind `T` and ran.
    pub fn payload<T: obs::Payload>(&self) -> Option<Result<T, serde_json::Error>> {
        (self.kind == T::KIND && self.status == ObservationStatus::Ok)
            .then(|| serde_json::from_value(self.data.clone()))
    }
}

/// Reads only the `protocol` field of a JSON body, so a receiver can refuse an unknown major
/// version with a clear message before trying to parse the rest.
#[derive(Debug, Deserialize)]
pub struct VersionProbe {
    pub protocol: Option<serde_json::Value>,
}

/// Why a body's protocol version is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionError {
    /// The body has no `protocol` field.
    Missing,
    /// The field is not a whole number.
    NotANumber(String),
    /// A major version this build does not speak.
    Unsupported(u64),
}

impl std::fmt::Display for VersionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VersionError::Missing => write!(
                f,
                "missing field `protocol` (this side speaks protocol {PROTOCOL_MAJOR})"
            ),
            VersionError::NotANumber(v) => write!(f, "field `protocol` must be a whole number, got {v}"),
            VersionError::Unsupported(v) => {
                write!(
                    f,
                    "unsupported protocol major version {v}; this side speaks protocol {PROTOCOL_MAJOR}"
                )
            }
        }
    }
}

impl std::error::Error for VersionError {}

/// `value` cut to 64 characters, with its length said when cut: what an error quotes of a
/// value the other side sent (issue 15).
fn capped(value: &str) -> String {
    const MAX: usize = 64;
    match value.char_indices().nth(MAX) {
        None => value.to_string(),
        Some((at, _)) => format!("{}… ({} bytes)", &value[..at], value.len()),
    }
}

/// Checks a JSON body's `protocol` field against [`PROTOCOL_MAJOR`].
pub fn check_version(body: &serde_json::Value) -> Result<(), VersionError> {
    match body.get("protocol") {
        None | Some(serde_json::Value::Null) => Err(VersionError::Missing),
        Some(v) => match v.as_u64() {
            Some(n) if n == u64::from(PROTOCOL_MAJOR) => Ok(()),
            Some(n) => Err(VersionError::Unsupported(n)),
            None => Err(VersionError::NotANumber(capped(&v.to_string()))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::obs::Payload;

    #[test]
    fn version_check_names_the_problem() {
        let ok = serde_json::json!({"protocol": 1});
        assert_eq!(check_version(&ok), Ok(()));
        let v2 = serde_json::json!({"protocol": 2});
        assert_eq!(check_version(&v2), Err(VersionError::Unsupported(2)));
        assert!(
            check_version(&v2)
                .unwrap_err()
                .to_string()
                .contains("unsupported protocol major version 2")
        );
        assert_eq!(check_version(&serde_json::json!({})), Err(VersionError::Missing));
        assert!(matches!(
            check_version(&serde_json::json!({"protocol": "1"})),
            Err(VersionError::NotANumber(_))
        ));
    }

    #[test]
    fn observation_roundtrip_keeps_unknown_fields_out_of_the_way() {
        let at = DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let o = Observation::ok(
            "host",
            at,
            &obs::TimeSync {
                synchronized: true,
                service: Some("chrony".into()),
                offset_ms: Some(1.5),
            },
        );
        let mut json = serde_json::to_value(&o).unwrap();
        json["a_future_field"] = serde_json::json!(true);
        let back: Observation = serde_json::from_value(json).unwrap();
        assert_eq!(back, o);
        let payload: obs::TimeSync = back.payload().unwrap().unwrap();
        assert!(payload.synchronized);
        assert!(back.payload::<obs::Firewall>().is_none());
    }

    #[test]
    fn error_observation_has_no_payload() {
        let o = Observation::error(
            obs::Firewall::KIND,
            "host",
            Utc::now(),
            "ufw: permission denied reading /etc/ufw/ufw.conf",
        );
        assert!(o.payload::<obs::Firewall>().is_none());
        let json = serde_json::to_value(&o).unwrap();
        assert_eq!(json["status"], "error");
        assert_eq!(json["data"], serde_json::Value::Null);
    }
}
