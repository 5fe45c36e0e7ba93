//! Central configuration, agent side: combining it with the local file, and its cache.
//!
//! The collector serves the agent's effective configuration (`GET /api/v1/agent/config`, an
//! [`AgentConfig`] whose `toml` is in the agent's own file format, ETag = `version`). How it
//! combines with a local `--config` file:
//!
//! - the central configuration is the base; the local file is laid over it as a deep merge of
//!   the TOML: tables (`[checks.inventory]`, `[spool]`, `[probes]`) merge key by key, and any
//!   other value the local file sets (a number, a string, an array such as `[[backup]]`)
//!   replaces the central one. A machine's own file therefore always wins for what it says,
//!   and says nothing about what it leaves out;
//! - the central configuration is validated on its own first, named
//!   `central configuration (<origin>)` in errors; a configuration that does not validate (or
//!   whose merge does not) is refused, the reason sent in the next heartbeat's `config_error`,
//!   and the agent keeps the last good one;
//! - the last good central configuration is cached in the state dir (`central-config.json`,
//!   atomic write, mode 0600); the agent starts from the cache, so it keeps its configuration
//!   through a collector outage and a restart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rounds_protocol::AgentConfig;

use crate::config::AgentSettings;
use crate::state::{StateDir, StateError, write_atomic};

/// File name of the cached central configuration inside the state dir.
pub const CACHE_FILE: &str = "central-config.json";

/// A local configuration file, as read at start.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    pub path: PathBuf,
    pub text: String,
}

/// Lays `over` on `base`: tables merge key by key, anything else in `over` replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The settings from a central configuration and a local file, as the module docs say.
/// `announced_heartbeat` (from enrollment) applies when neither sets an interval. The error
/// is the reason to send back to the collector.
pub fn combine(
    central: Option<&AgentConfig>,
    local: Option<&LocalConfig>,
    announced_heartbeat: Option<Duration>,
) -> Result<AgentSettings, String> {
    let mut settings = match (central, local) {
        (None, None) => AgentSettings::default(),
        (None, Some(l)) => crate::config::parse(&l.text, &l.path).map_err(|e| e.to_string())?,
        (Some(c), local) => {
            let name = format!("central configuration ({})", c.origin);
            crate::config::parse(&c.toml, Path::new(&name)).map_err(|e| e.to_string())?;
            match local {
                None => crate::config::parse(&c.toml, Path::new(&name)).map_err(|e| e.to_string())?,
                Some(l) => {
                    let mut base: toml::Table = c.toml.parse().map_err(|e| format!("{name}: {e}"))?;
                    let over: toml::Table = l.text.parse().map_err(|e| format!("{}: {e}", l.path.display()))?;
                    merge(&mut base, over);
                    let merged = base.to_string();
                    let label = format!("{name} with {} laid over it", l.path.display());
                    crate::config::parse(&merged, Path::new(&label)).map_err(|e| e.to_string())?
                }
            }
        }
    };
    if settings.config.heartbeat_interval.is_none()
        && let Some(every) = announced_heartbeat
    {
        settings.heartbeat_interval = every;
    }
    Ok(settings)
}

/// The cached central configuration, if any. An unreadable cache is an error naming it.
pub fn load_cache(state: &StateDir) -> Result<Option<AgentConfig>, StateError> {
    let path = state.path().join(CACHE_FILE);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| StateError::Corrupt {
            path,
            detail: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateError::Read { path, source }),
    }
}

/// Caches a central configuration that was applied.
pub fn store_cache(state: &StateDir, config: &AgentConfig) -> Result<(), StateError> {
    let path = state.path().join(CACHE_FILE);
    let json = serde_json::to_vec_pretty(config).map_err(|e| StateError::Corrupt {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    write_atomic(&path, &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn central(toml: &str) -> AgentConfig {
        AgentConfig {
            protocol: 1,
            version: "\"v1\"".into(),
            origin: "practice Smith".into(),
            toml: toml.into(),
        }
    }

    fn local(text: &str) -> LocalConfig {
        LocalConfig {
            path: PathBuf::from("/etc/rounds/agent.toml"),
            text: text.into(),
        }
    }

    #[test]
    fn the_local_file_wins_key_by_key() {
        let c = central(
            "heartbeat_interval_secs = 60\n[checks.inventory]\nschedule = \"0 */5 * * * *\"\nenabled = true\n[checks.firewall]\nenabled = false\n",
        );
        let l = local("[checks.inventory]\nschedule = \"* * * * * *\"\n");
        let s = combine(Some(&c), Some(&l), None).unwrap();
        assert_eq!(
            s.heartbeat_interval,
            Duration::from_secs(60),
            "central, the file is silent"
        );
        let inventory = s.checks.iter().find(|c| c.name() == "inventory").unwrap();
        assert_eq!(inventory.schedule.source(), "* * * * * *", "the file wins");
        assert!(!s.checks.iter().any(|c| c.name() == "firewall"), "central disabled it");
    }

    #[test]
    fn an_invalid_central_configuration_is_refused_naming_origin_line_and_key() {
        let c = central("heartbeat_interval_secs = 30\n[checks.inventory]\nschedule = \"every tuesday\"\n");
        let err = combine(Some(&c), None, None).unwrap_err();
        assert!(
            err.contains("central configuration (practice Smith)")
                && err.contains(":3")
                && err.contains("checks.inventory.schedule"),
            "{err}"
        );
    }

    #[test]
    fn the_announced_interval_applies_when_nobody_sets_one() {
        let s = combine(Some(&central("")), None, Some(Duration::from_secs(7))).unwrap();
        assert_eq!(s.heartbeat_interval, Duration::from_secs(7));
        let s = combine(
            None,
            Some(&local("heartbeat_interval_secs = 9\n")),
            Some(Duration::from_secs(7)),
        )
        .unwrap();
        assert_eq!(s.heartbeat_interval, Duration::from_secs(9));
    }
}
