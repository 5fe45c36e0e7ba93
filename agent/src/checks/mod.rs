//! Checks: each module observes one domain of the host and returns observations.
//!
//! Rules of the house:
//! - Every check reads the host through [`Host`]: files under `root` (as node_exporter's
//!   `--path.rootfs`), commands through `runner`, time through `now`. Tests pass fixture trees
//!   and recorded command outputs.
//! - Collection is split from interpretation: the output of each OS command is parsed by a
//!   pure function tested on recorded outputs on every platform.
//! - A check that cannot run returns an `error` observation that says why; it never panics.
//! - Checks are synchronous; [`run_all`] runs each one on the blocking pool with its own
//!   timeout, concurrently, so one slow check never delays the others past its timeout.
//! - Checks read metadata only, never patient data.

pub mod inventory;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rounds_protocol::Observation;

/// Runs an external command and returns its standard output, or why it could not.
pub trait CommandRunner: Send + Sync + std::fmt::Debug {
    /// Runs `program` with `args`; `Err` says why (not found, exit status and stderr).
    fn run(&self, program: &str, args: &[&str]) -> Result<String, String>;
}

/// Runs real commands on this machine.
#[derive(Debug, Default)]
pub struct SystemRunner;

impl CommandRunner for SystemRunner {
    fn run(&self, program: &str, args: &[&str]) -> Result<String, String> {
        let out = std::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            Err(format!("{program} exited with {}: {}", out.status, stderr.trim()))
        }
    }
}

/// What a check may read of the host.
#[derive(Debug, Clone)]
pub struct Host {
    /// Root under which host files are read (`/` on a real machine, a fixture tree in tests).
    pub root: PathBuf,
    /// Runs OS commands.
    pub runner: Arc<dyn CommandRunner>,
    /// The time the run started; checks use it instead of the system clock.
    pub now: DateTime<Utc>,
    /// Read live system state through sysinfo (`false` in fixture tests, where only `root` is read).
    pub live: bool,
}

impl Host {
    /// The real host: files under `/`, real commands, the system clock.
    pub fn system() -> Self {
        Host {
            root: PathBuf::from("/"),
            runner: Arc::new(SystemRunner),
            now: Utc::now(),
            live: true,
        }
    }

    /// A path on the host, resolved under `root`. `p` is absolute as the host sees it.
    pub fn path(&self, p: impl AsRef<Path>) -> PathBuf {
        let p = p.as_ref();
        self.root.join(p.strip_prefix("/").unwrap_or(p))
    }

    /// Reads a host file as text.
    pub fn read(&self, p: impl AsRef<Path>) -> std::io::Result<String> {
        std::fs::read_to_string(self.path(p))
    }
}

/// A check: one domain of observations.
pub trait Check: Send + Sync + std::fmt::Debug {
    /// Stable name, used in schedules and configuration (e.g. `inventory`).
    fn name(&self) -> &'static str;
    /// Observation kinds it produces; used for error observations when it times out.
    fn kinds(&self) -> &'static [&'static str];
    /// How long it may take before it is abandoned with an error observation.
    fn timeout(&self) -> Duration {
        Duration::from_secs(20)
    }
    /// Observes the host.
    fn run(&self, host: &Host) -> Vec<Observation>;
}

/// Every check this build has.
pub fn all() -> Vec<Arc<dyn Check>> {
    vec![Arc::new(inventory::InventoryCheck)]
}

/// Looks a check up by name.
pub fn by_name(name: &str) -> Option<Arc<dyn Check>> {
    all().into_iter().find(|c| c.name() == name)
}

/// Runs `checks` concurrently, each on the blocking pool under its own timeout. A check that
/// panics or times out yields error observations saying so; the others are unaffected.
pub async fn run_all(checks: &[Arc<dyn Check>], host: &Host) -> Vec<Observation> {
    let mut set = tokio::task::JoinSet::new();
    for (i, check) in checks.iter().enumerate() {
        let check = Arc::clone(check);
        let host = host.clone();
        set.spawn(async move {
            let name = check.name();
            let timeout = check.timeout();
            let kinds = check.kinds();
            let c = Arc::clone(&check);
            let h = host.clone();
            let task = tokio::task::spawn_blocking(move || c.run(&h));
            let obs = match tokio::time::timeout(timeout, task).await {
                Ok(Ok(obs)) => obs,
                Ok(Err(join)) => failed(kinds, &host, format!("check {name} crashed: {join}")),
                Err(_) => failed(
                    kinds,
                    &host,
                    format!("check {name} timed out after {}s", timeout.as_secs_f64()),
                ),
            };
            (i, obs)
        });
    }
    let mut results: Vec<(usize, Vec<Observation>)> = Vec::with_capacity(checks.len());
    while let Some(res) = set.join_next().await {
        if let Ok(r) = res {
            results.push(r);
        }
    }
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().flat_map(|(_, o)| o).collect()
}

fn failed(kinds: &[&str], host: &Host, why: String) -> Vec<Observation> {
    tracing::warn!(error = %why, "check failed");
    kinds
        .iter()
        .map(|k| Observation::error(*k, "host", host.now, why.clone()))
        .collect()
}
