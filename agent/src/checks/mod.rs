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
pub mod backup;
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

/// How long a command may run when its caller does not say ([`CommandRunner::run`]).
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// One command to run: program, arguments, extra environment for the child only, and a
/// timeout after which it is killed.
///
/// Secrets (repository passwords) go in [`env`](Self::env), never in `args`: arguments are
/// visible to every user in `ps` and end up in error messages, the environment of the child is
/// not. `Debug` shows the names of the variables, never their values.
#[derive(Clone)]
pub struct Invocation<'a> {
    pub program: &'a str,
    pub args: &'a [&'a str],
    /// Variables added to the child's environment (its only copy of a password).
    pub env: Vec<(String, String)>,
    /// The child and its process group are killed when this passes.
    pub timeout: Duration,
    /// Working directory of the child; the agent's when `None`.
    pub cwd: Option<&'a Path>,
}

impl<'a> Invocation<'a> {
    /// `program` with `args`, no extra environment, the default timeout.
    pub fn new(program: &'a str, args: &'a [&'a str]) -> Self {
        Invocation {
            program,
            args,
            env: Vec::new(),
            timeout: DEFAULT_COMMAND_TIMEOUT,
            cwd: None,
        }
    }

    /// Runs the child in `dir`.
    pub fn cwd(mut self, dir: &'a Path) -> Self {
        self.cwd = Some(dir);
        self
    }

    /// Adds `name=value` to the child's environment.
    pub fn env(mut self, name: &str, value: impl Into<String>) -> Self {
        self.env.push((name.to_string(), value.into()));
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `program arg arg`, for messages (arguments never hold secrets).
    pub fn command_line(&self) -> String {
        std::iter::once(self.program)
            .chain(self.args.iter().copied())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl std::fmt::Debug for Invocation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Invocation")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env", &names)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Why a command gave no output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The program is not installed (not found on `PATH`).
    #[error("{program} is not installed (not found on PATH)")]
    NotFound { program: String },
    /// It could not be started for another reason (permission denied).
    #[error("cannot run {program}: {reason}")]
    Spawn { program: String, reason: String },
    /// It ran past its timeout and was killed with its process group.
    #[error("{program} did not finish within {}s and was killed", .timeout.as_secs_f64())]
    TimedOut { program: String, timeout: Duration },
    /// It exited unsuccessfully; `stderr` is what it said (trimmed).
    #[error("{program} exited with {status}: {stderr}")]
    Failed {
        program: String,
        status: String,
        stderr: String,
        stdout: String,
    },
    /// A runner that does not start processes (a fake) refused it.
    #[error("{0}")]
    Other(String),
}

/// Runs an external command and returns its standard output, or why it could not.
pub trait CommandRunner: Send + Sync + std::fmt::Debug {
    /// Runs `program` with `args` under [`DEFAULT_COMMAND_TIMEOUT`]; `Err` says why (not
    /// found, exit status and stderr, timed out).
    fn run(&self, program: &str, args: &[&str]) -> Result<String, String>;

    /// Runs `cmd` with its environment and timeout. Runners that start no process (fakes
    /// answering recorded outputs) may keep this default, which answers from program and
    /// arguments alone.
    fn run_with(&self, cmd: &Invocation<'_>) -> Result<String, CommandError> {
        self.run(cmd.program, cmd.args).map_err(CommandError::Other)
    }
}

/// Runs real commands on this machine, each killed (with its process group on Unix) when its
/// timeout passes: a hung tool never outlives its check.
#[derive(Debug, Default)]
pub struct SystemRunner;

impl CommandRunner for SystemRunner {
    fn run(&self, program: &str, args: &[&str]) -> Result<String, String> {
        self.run_with(&Invocation::new(program, args))
            .map_err(|e| e.to_string())
    }

    fn run_with(&self, cmd: &Invocation<'_>) -> Result<String, CommandError> {
        run_process(cmd)
    }
}

/// Starts `cmd` in its own process group, reads its output on two threads (so a full pipe
/// never blocks it), and waits for it up to its timeout; then kills the group and reaps it.
fn run_process(cmd: &Invocation<'_>) -> Result<String, CommandError> {
    use std::io::Read as _;
    use std::process::{Command, Stdio};

    let program = cmd.program.to_string();
    let mut command = Command::new(cmd.program);
    command
        .args(cmd.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in &cmd.env {
        command.env(k, v);
    }
    if let Some(dir) = cmd.cwd {
        command.current_dir(dir);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        command.process_group(0);
    }
    let mut child = command.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => CommandError::NotFound {
            program: program.clone(),
        },
        _ => CommandError::Spawn {
            program: program.clone(),
            reason: e.to_string(),
        },
    })?;
    let reader = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let deadline = std::time::Instant::now() + cmd.timeout;
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if std::time::Instant::now() >= deadline => break Err(()),
            Ok(None) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(e) => {
                kill_tree(&mut child);
                return Err(CommandError::Spawn {
                    program,
                    reason: format!("cannot wait for it: {e}"),
                });
            }
        }
    };
    let Ok(status) = status else {
        kill_tree(&mut child);
        // The readers end once every holder of the pipes (the group) is gone.
        let _ = (out.join(), err.join());
        return Err(CommandError::TimedOut {
            program,
            timeout: cmd.timeout,
        });
    };
    // A grandchild that outlives its parent keeps the pipes open: end the group first.
    #[cfg(unix)]
    kill_group(&child);
    let stdout = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default())
        .trim()
        .to_string();
    if status.success() {
        Ok(stdout)
    } else {
        Err(CommandError::Failed {
            program,
            status: status.to_string(),
            stderr,
            stdout,
        })
    }
}

/// Kills `child` and its process group and reaps it.
fn kill_tree(child: &mut std::process::Child) {
    #[cfg(unix)]
    kill_group(child);
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends SIGKILL to the process group `child` leads (it was started with `process_group(0)`).
#[cfg(unix)]
fn kill_group(child: &std::process::Child) {
    let pid = rustix::process::Pid::from_child(child);
    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
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
        Arc::new(backup::BackupCheck::new(config.backups.clone())),
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

    /// Whether process `pid` is gone (or only a zombie waiting for a reaper that is not us).
    #[cfg(target_os = "linux")]
    fn gone(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
        }
    }

    /// A command that never ends is killed at its timeout, with the children it started: the
    /// runner neither waits for it nor leaves it running.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_command_that_never_ends_is_killed_with_its_children_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let script = format!("echo $$ > {0}; sleep 1000 & echo $! >> {0}; wait", pids.display());
        let start = std::time::Instant::now();
        let err = SystemRunner
            .run_with(&Invocation::new("sh", &["-c", &script]).timeout(Duration::from_millis(300)))
            .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
        assert!(matches!(err, CommandError::TimedOut { .. }), "{err}");
        assert!(
            err.to_string().contains("sh did not finish within 0.3s and was killed"),
            "{err}"
        );
        let pids: Vec<u32> = std::fs::read_to_string(&pids)
            .unwrap()
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect();
        assert_eq!(pids.len(), 2, "shell and sleep");
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while !pids.iter().all(|p| gone(*p)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        for pid in pids {
            assert!(gone(pid), "process {pid} still runs after the timeout");
        }
    }

    /// The environment reaches the child only: not the arguments, not `Debug`.
    #[test]
    fn environment_goes_to_the_child_and_never_into_debug_output() {
        let cmd = Invocation::new("sh", &["-c", "printf %s \"$ROUNDS_TEST_SECRET\""])
            .env("ROUNDS_TEST_SECRET", "hunter2-xyz");
        assert_eq!(SystemRunner.run_with(&cmd).unwrap(), "hunter2-xyz");
        let shown = format!("{cmd:?}");
        assert!(
            shown.contains("ROUNDS_TEST_SECRET") && !shown.contains("hunter2-xyz"),
            "{shown}"
        );
    }

    #[test]
    fn a_missing_program_and_a_failing_one_say_which() {
        let e = SystemRunner
            .run_with(&Invocation::new("rounds-no-such-tool", &[]))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "rounds-no-such-tool is not installed (not found on PATH)"
        );
        let e = SystemRunner
            .run_with(&Invocation::new("sh", &["-c", "echo out; echo broken >&2; exit 3"]))
            .unwrap_err();
        let CommandError::Failed { stderr, stdout, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!((stderr.as_str(), stdout.as_str()), ("broken", "out\n"));
        assert!(e.to_string().contains("exit status: 3"), "{e}");
        assert_eq!(SystemRunner.run("sh", &["-c", "echo ok"]).unwrap(), "ok\n");
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
