//! `rounds-agent status`: what the state dir says about this agent, for a person to read.

use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::state::{RunStatus, StateDir, StateError};

/// The agent's status as recorded in its state dir. Never holds the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentStatus {
    NotEnrolled { state_dir: PathBuf },
    Enrolled(EnrolledStatus),
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
    } = state.load_status()?;
    Ok(AgentStatus::Enrolled(EnrolledStatus {
        state_dir: state_dir.to_path_buf(),
        agent_id: identity.agent_id,
        practice: identity.practice,
        site: identity.site,
        collector: identity.collector,
        enrolled_at: identity.enrolled_at,
        last_heartbeat_at,
        last_report_at,
        last_report_sequence,
        next_sequence: state.load_next_sequence()?,
    }))
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
                } = s;
                writeln!(f, "enrolled:        yes, {}", time(&Some(*enrolled_at)))?;
                writeln!(f, "agent id:        {agent_id}")?;
                writeln!(f, "practice:        {practice}")?;
                writeln!(f, "site:            {site}")?;
                writeln!(f, "collector:       {collector}")?;
                writeln!(f, "last heartbeat:  {}", time(last_heartbeat_at))?;
                match last_report_sequence {
                    Some(seq) => writeln!(f, "last report:     {} (sequence {seq})", time(last_report_at))?,
                    None => writeln!(f, "last report:     {}", time(last_report_at))?,
                }
                writeln!(f, "next sequence:   {next_sequence}")?;
                writeln!(f, "state dir:       {}", state_dir.display())
            }
        }
    }
}
