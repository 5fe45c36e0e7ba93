//! Checks: each module observes one domain of the host and returns observations.
//!
//! Rules of the house:
//! - Every check reads the host through [`Host`]: files under `root` (as node_exporter's
//!   `--path.rootfs`), commands through `runner`, time through `now`. Tests pass fixture trees
//!   and recorded command outputs.
//! - Collection is split from interpretation: the output of each OS command is parsed by a
//!   pure function tested on recorded outputs on every platform. Which OS's collection runs is
//!   chosen at compile time by `cfg!(target_os)` ([`platform`]); the Windows and macOS
//!   collection only goes through `runner`, so it is compiled (and tested, with a fake runner
//!   answering with recorded outputs) on every platform, and no code is dead on any of them.
//! - A check that cannot run returns an `error` observation that says why; it never panics.
//! - Checks are synchronous; [`run_all`] runs each one on the blocking pool with its own
//!   timeout, concurrently, so one slow check never delays the others past its timeout.
//! - Checks read metadata only, never patient data.

pub mod account_activity;
pub mod accounts;
pub mod admin_accounts;
pub mod audit;
pub mod disk_space;
pub mod encryption;
pub mod firewall;
pub mod hostcfg;
pub mod inventory;
pub mod log_forwarding;
pub mod malware;
pub mod mfa;
pub mod os_support;
pub mod passwords;
pub mod remote_access;
pub mod screen_lock;
#[cfg(test)]
mod testutil;
pub mod time_sync;
pub mod updates;
pub mod usb_storage;

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
    /// The agent's state dir, for checks that keep state between runs (what a watched log held
    /// at the last look); `None` when there is none (a one-off `check` without `--state-dir`).
    pub state_dir: Option<PathBuf>,
}

impl Host {
    /// The real host: files under `/`, real commands, the system clock.
    pub fn system() -> Self {
        Host {
            root: PathBuf::from("/"),
            runner: Arc::new(SystemRunner),
            now: Utc::now(),
            live: true,
            state_dir: None,
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

    /// Reads a host file as text: `Ok(None)` when it does not exist (so the caller decides
    /// whether that means "not configured"), `Err` naming the path and the error otherwise
    /// (permission denied: the check cannot tell).
    pub fn read_opt(&self, p: impl AsRef<Path>) -> Result<Option<String>, String> {
        let p = p.as_ref();
        match std::fs::read(self.path(p)) {
            Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", p.display())),
        }
    }

    /// Whether a host path exists (following symbolic links).
    pub fn exists(&self, p: impl AsRef<Path>) -> bool {
        self.path(p).exists()
    }

    /// Names in a host directory, sorted; empty when the directory does not exist. Git keeps
    /// no empty directories, so fixture trees hold `.keep` files: those are skipped.
    pub fn list_dir(&self, p: impl AsRef<Path>) -> Result<Vec<String>, String> {
        let p = p.as_ref();
        let entries = match std::fs::read_dir(self.path(p)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("cannot list {}: {e}", p.display())),
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != ".keep")
            .collect();
        names.sort();
        Ok(names)
    }

    /// Running processes as `(pid, command name)` from `/proc/*/comm`, or why not.
    pub fn processes(&self) -> Result<Vec<(u32, String)>, String> {
        if !self.exists("/proc/self") && !self.exists("/proc/1") {
            return Err("/proc is not available".to_string());
        }
        let mut out = Vec::new();
        for name in self.list_dir("/proc")? {
            let Ok(pid) = name.parse::<u32>() else { continue };
            if let Ok(Some(comm)) = self.read_opt(format!("/proc/{pid}/comm")) {
                out.push((pid, comm.trim().to_string()));
            }
        }
        Ok(out)
    }
}

/// Which operating system's collection code runs in this build (`cfg!(target_os)`).
pub const fn platform() -> Platform {
    if cfg!(target_os = "windows") {
        Platform::Windows
    } else if cfg!(target_os = "macos") {
        Platform::MacOs
    } else {
        Platform::Linux
    }
}

/// The operating-system families the checks know how to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Linux,
    Windows,
    MacOs,
}

/// The data of value `name` in `reg query` output (`    Name    REG_SZ    data`), or `None`
/// when the value is not listed. A REG_DWORD is returned as printed (`0x258`).
pub fn reg_value(output: &str, name: &str) -> Option<(String, String)> {
    output.lines().find_map(|l| {
        let mut parts = l.trim().splitn(3, "    ");
        let (n, ty) = (parts.next()?.trim(), parts.next()?.trim());
        (n.eq_ignore_ascii_case(name) && ty.starts_with("REG_"))
            .then(|| (ty.to_string(), parts.next().unwrap_or("").trim().to_string()))
    })
}

/// A REG_DWORD's number (`0x258` or decimal).
pub fn reg_number(data: &str) -> Option<u64> {
    match data.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => data.parse().ok(),
    }
}

/// Error observations for every kind of a check that this platform does not read yet.
pub(crate) fn not_supported(kinds: &[&str], host: &Host, what: &str) -> Vec<Observation> {
    kinds
        .iter()
        .map(|k| {
            Observation::error(
                *k,
                "host",
                host.now,
                format!("{what} is not read on {} yet", std::env::consts::OS),
            )
        })
        .collect()
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
    /// Host paths whose changes should re-run the check at once (a backup folder, a watched
    /// log), besides its schedule; the run loop watches them. Default: none.
    fn watch_paths(&self, host: &Host) -> Vec<PathBuf> {
        let _ = host;
        Vec::new()
    }
}

/// Every check this build has, with the default configuration.
pub fn all() -> Vec<Arc<dyn Check>> {
    build(&rounds_agent_config::AgentConfig::default())
}

/// Every check this build has, in the order of [`rounds_agent_config::CHECKS`], each set up from
/// `config` (backup sources, watched logs). Whether a check runs and when is for the caller.
pub fn build(config: &rounds_agent_config::AgentConfig) -> Vec<Arc<dyn Check>> {
    vec![
        Arc::new(inventory::InventoryCheck),
        Arc::new(encryption::EncryptionCheck),
        Arc::new(firewall::FirewallCheck),
        Arc::new(updates::UpdatesCheck),
        Arc::new(screen_lock::ScreenLockCheck),
        Arc::new(malware::MalwareCheck),
        Arc::new(time_sync::TimeSyncCheck),
        Arc::new(passwords::PasswordsCheck),
        Arc::new(accounts::AccountsCheck),
        Arc::new(disk_space::DiskSpaceCheck),
        Arc::new(audit::AuditCheck::new(config.audit_logs.clone())),
        Arc::new(mfa::MfaCheck),
        Arc::new(usb_storage::UsbStorageCheck),
        Arc::new(admin_accounts::AdminAccountsCheck),
        Arc::new(account_activity::AccountActivityCheck),
        Arc::new(log_forwarding::LogForwardingCheck),
        Arc::new(os_support::OsReleaseCheck),
        Arc::new(remote_access::RemoteAccessCheck),
    ]
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

#[cfg(test)]
mod tests {
    use super::*;
    use rounds_protocol::ObservationStatus;

    /// Every check on this very machine: each yields at least one observation, every one either
    /// ok with a payload or an error that says why, and nothing panics or times out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_check_reports_on_this_machine() {
        let checks = all();
        let host = Host::system();
        let obs = run_all(&checks, &host).await;
        for check in &checks {
            let mine: Vec<&Observation> = obs
                .iter()
                .filter(|o| check.kinds().contains(&o.kind.as_str()))
                .collect();
            assert!(!mine.is_empty(), "check {} produced nothing", check.name());
        }
        for o in &obs {
            match o.status {
                ObservationStatus::Ok => assert!(!o.data.is_null(), "{o:?}"),
                ObservationStatus::Error => {
                    let why = o.error.as_deref().unwrap_or("");
                    assert!(!why.trim().is_empty(), "error without a reason: {o:?}");
                    assert!(!why.contains("crashed") && !why.contains("timed out"), "{o:?}");
                }
            }
            assert!(
                rounds_protocol::obs::ALL_KINDS.contains(&o.kind.as_str()),
                "unknown kind {}",
                o.kind
            );
        }
    }

    #[derive(Debug)]
    struct Slow;
    impl Check for Slow {
        fn name(&self) -> &'static str {
            "slow"
        }
        fn kinds(&self) -> &'static [&'static str] {
            &["time_sync"]
        }
        fn timeout(&self) -> Duration {
            Duration::from_millis(100)
        }
        fn run(&self, _host: &Host) -> Vec<Observation> {
            std::thread::sleep(Duration::from_millis(1500));
            Vec::new()
        }
    }

    #[derive(Debug)]
    struct Crashing;
    impl Check for Crashing {
        fn name(&self) -> &'static str {
            "crashing"
        }
        fn kinds(&self) -> &'static [&'static str] {
            &["firewall"]
        }
        fn run(&self, _host: &Host) -> Vec<Observation> {
            panic!("boom")
        }
    }

    /// A check that hangs or panics costs the run no more than its own timeout, and becomes an
    /// error observation that says so; the other checks report as usual.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_or_crashing_check_does_not_hold_up_the_others() {
        let checks: Vec<Arc<dyn Check>> = vec![Arc::new(Slow), Arc::new(Crashing), Arc::new(accounts::AccountsCheck)];
        let start = std::time::Instant::now();
        let obs = run_all(&checks, &Host::system()).await;
        assert!(start.elapsed() < Duration::from_millis(1000), "{:?}", start.elapsed());
        let why = |kind: &str| {
            obs.iter()
                .find(|o| o.kind == kind)
                .and_then(|o| o.error.clone())
                .unwrap()
        };
        assert!(why("time_sync").contains("timed out"));
        assert!(why("firewall").contains("crashed"));
        assert!(obs.iter().any(|o| o.kind == "accounts"));
    }

    #[test]
    fn the_shared_configuration_knows_every_check_by_name() {
        let names: Vec<&str> = all().iter().map(|c| c.name()).collect();
        assert_eq!(names, rounds_agent_config::CHECKS);
    }

    #[test]
    fn names_are_unique_and_kinds_declared() {
        let checks = all();
        let mut names: Vec<&str> = checks.iter().map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), checks.len());
        for c in &checks {
            assert!(
                c.kinds().iter().all(|k| rounds_protocol::obs::ALL_KINDS.contains(k)),
                "{}",
                c.name()
            );
            assert!(by_name(c.name()).is_some());
        }
    }
}
