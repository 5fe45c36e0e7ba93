//! The agent's configuration: the shared format of `rounds-agent-config`, mapped onto this
//! agent's checks.
//!
//! [`rounds_agent_config`] owns the TOML format and its validation (the collector validates
//! central configuration with the same code); this module turns a validated
//! [`AgentConfig`] into the [`AgentSettings`] that `run` and `check` use: the heartbeat
//! interval and each enabled check object with its parsed schedule. [`load`] and [`parse`]
//! read and validate in one step; `rounds-agent validate` calls the same code.
//!
//! ```toml
//! heartbeat_interval_secs = 30
//!
//! [checks.inventory]
//! schedule = "0 0 * * * *"   # cron with seconds: hourly
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use rounds_agent_config::{
    AgentConfig, ConfigError, DEFAULT_HEARTBEAT_INTERVAL_SECS, DEFAULT_SCHEDULE, MAX_HEARTBEAT_INTERVAL_SECS, Problem,
    parse_schedule,
};

use crate::checks::{self, Check};

/// A check and when it runs.
#[derive(Debug, Clone)]
pub struct ScheduledCheck {
    pub check: Arc<dyn Check>,
    pub schedule: cron::Schedule,
}

impl ScheduledCheck {
    pub fn name(&self) -> &'static str {
        self.check.name()
    }
}

/// Validated settings that `run` uses.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// Time between heartbeats; the first is sent at start.
    pub heartbeat_interval: Duration,
    /// Checks to run, each once at start and then on its schedule; each run is one report.
    pub checks: Vec<ScheduledCheck>,
    /// The validated configuration these settings come from (backup sources, endpoints,
    /// watched logs, spool limits, probe defaults).
    pub config: Arc<AgentConfig>,
}

impl Default for AgentSettings {
    /// A heartbeat every 30 s and every check (`checks::all()`) hourly.
    fn default() -> Self {
        AgentSettings::from_config(AgentConfig::default())
    }
}

impl AgentSettings {
    /// The settings a validated configuration gives: its heartbeat interval (else 30 s) and
    /// every enabled check, in the order of `checks::all()`, with its schedule.
    pub fn from_config(config: AgentConfig) -> Self {
        let checks = checks::build(&config)
            .into_iter()
            .filter(|c| config.is_enabled(c.name()))
            .map(|check| ScheduledCheck {
                schedule: config.schedule_of(check.name()),
                check,
            })
            .collect();
        AgentSettings {
            heartbeat_interval: config
                .heartbeat_interval
                .unwrap_or(Duration::from_secs(DEFAULT_HEARTBEAT_INTERVAL_SECS)),
            checks,
            config: Arc::new(config),
        }
    }
}

/// Reads and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<AgentSettings, ConfigError> {
    rounds_agent_config::load(path).map(AgentSettings::from_config)
}

/// Validates configuration `text`; `path` is named in errors.
pub fn parse(text: &str, path: &Path) -> Result<AgentSettings, ConfigError> {
    rounds_agent_config::parse(text, path).map(AgentSettings::from_config)
}
