//! `rounds-agent status`: what the state dir says about this agent, for a person to read:
//! the collector, the agent it is enrolled as, last heartbeat and delivery, the spool's depth
//! and oldest entry, the configuration in use and where it came from, and the last errors
//! (a spool that cannot be written is shown on its own line).

use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::spool::{self, SpoolSummary};
use crate::state::{RunStatus, StateDir, StateError};

/// The agent's status as recorded in its state dir. Never holds the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentStatus {
    NotEnrolled { state_dir: PathBuf },
    Enrolled(Box<EnrolledStatus>),
}

/// Status of an enrolled agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolledStatus {
    pub state_dir: PathBuf,
    pub agent_id: String,
    pub practice: String,
    pub site: String,
    pub collector: String,
    pub enrolled_at: DateTime<Utc>,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    pub last_report_at: Option<DateTime<Utc>>,
    pub last_report_sequence: Option<u64>,
    pub next_sequence: u64,
    /// Undelivered reports (`depth`), the oldest one's time, their size.
    pub spool: SpoolSummary,
    /// The spool file cannot be read, if so.
    pub spool_unreadable: Option<String>,
    pub config_version: Option<String>,
    pub config_origin: Option<String>,
    pub config_error: Option<String>,
    pub spool_error: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
}

impl AgentStatus {
    pub fn is_enrolled(&self) -> bool {
        matches!(self, AgentStatus::Enrolled(_))
    }
}

/// Reads the status from the state dir at `state_dir`, without changing anything.
pub fn status(state_dir: &Path) -> Result<AgentStatus, StateError> {
    let state = StateDir::new(state_dir);
    let identity = match state.load_identity() {
        Ok(i) => i,
        Err(StateError::NotEnrolled { .. }) => {
            return Ok(AgentStatus::NotEnrolled {
                state_dir: state_dir.to_path_buf(),
            });
        }
        Err(e) => return Err(e),
    };
    let RunStatus {
        last_heartbeat_at,
        last_report_at,
        last_report_sequence,
        last_error,
        last_error_at,
        spool_error,
        config_version,
        config_origin,
        config_error,
    } = state.load_status()?;
    let old_next = state.load_next_sequence()?;
    let (spool, spool_unreadable) = match spool::inspect(state_dir) {
        Ok(Some(s)) => (s, None),
        Ok(None) => (
            SpoolSummary {
                next_sequence: old_next,
                ..SpoolSummary::default()
            },
            None,
        ),
        Err(e) => (SpoolSummary::default(), Some(e.to_string())),
    };
    Ok(AgentStatus::Enrolled(Box::new(EnrolledStatus {
        state_dir: state_dir.to_path_buf(),
        agent_id: identity.agent_id,
        practice: identity.practice,
        site: identity.site,
        collector: identity.collector,
        enrolled_at: identity.enrolled_at,
        last_heartbeat_at,
        last_report_at,
        last_report_sequence,
        next_sequence: spool.next_sequence.max(old_next),
        spool,
        spool_unreadable,
        config_version,
        config_origin,
        config_error,
        spool_error,
        last_error,
        last_error_at,
    })))
}

fn time(t: &Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "never".to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

impl fmt::Display for AgentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentStatus::NotEnrolled { state_dir } => {
                writeln!(f, "enrolled:        no")?;
                writeln!(f, "state dir:       {}", state_dir.display())
            }
            AgentStatus::Enrolled(s) => {
                let EnrolledStatus {
                    state_dir,
                    agent_id,
                    practice,
                    site,
                    collector,
                    enrolled_at,
                    last_heartbeat_at,
                    last_report_at,
                    last_report_sequence,
                    next_sequence,
                    spool,
                    spool_unreadable,
                    config_version,
                    config_origin,
                    config_error,
                    spool_error,
                    last_error,
                    last_error_at,
                } = s.as_ref();
                writeln!(f, "enrolled:        yes, {}", time(&Some(*enrolled_at)))?;
                writeln!(f, "agent id:        {agent_id}")?;
                writeln!(f, "practice:        {practice}")?;
                writeln!(f, "site:            {site}")?;
                writeln!(f, "collector:       {collector}")?;
                writeln!(f, "last heartbeat:  {}", time(last_heartbeat_at))?;
                match last_report_sequence {
                    Some(seq) => writeln!(f, "last delivery:   {} (sequence {seq})", time(last_report_at))?,
                    None => writeln!(f, "last delivery:   {}", time(last_report_at))?,
                }
                writeln!(f, "next sequence:   {next_sequence}")?;
                match spool_unreadable {
                    Some(e) => writeln!(f, "spool:           unreadable: {e}")?,
                    None => match spool.oldest {
                        Some(oldest) => writeln!(
                            f,
                            "spool:           {} undelivered ({} bytes), oldest {}",
                            spool.depth,
                            spool.bytes,
                            time(&Some(oldest))
                        )?,
                        None => writeln!(f, "spool:           empty")?,
                    },
                }
                if let Some(e) = spool_error {
                    writeln!(f, "spool error:     {e}")?;
                }
                let version = config_version.as_deref().unwrap_or("none");
                let origin = config_origin.as_deref().unwrap_or("unknown");
                writeln!(f, "configuration:   {origin} (version {version})")?;
                if let Some(e) = config_error {
                    writeln!(f, "config refused:  {e}")?;
                }
                match last_error {
                    Some(e) => writeln!(f, "last error:      {} {e}", time(last_error_at))?,
                    None => writeln!(f, "last error:      none")?,
                }
                writeln!(f, "state dir:       {}", state_dir.display())
            }
        }
    }
}
