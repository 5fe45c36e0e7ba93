//! Installing the agent as a service: a systemd unit on Linux, a launchd daemon on macOS, a
//! Windows service.
//!
//! One template per platform, kept as files beside this module and compiled in
//! (`rounds-agent.service`, `com.rounds.agent.plist`, `windows-service.txt`). What `install`
//! and `uninstall` do is a [`Plan`]: files to write or remove (under a root, so tests and
//! package builds write into a folder) and commands to run (`systemctl`, `launchctl`,
//! `sc.exe`, `icacls`). The plan is built the same way on every platform, so the Windows and
//! macOS plans are tested as text on Linux; only running it touches the machine, and the
//! commands run only when the root is `/` (never for a test root).

pub mod windows;

use std::path::{Path, PathBuf};

/// The systemd unit template.
pub const SYSTEMD_TEMPLATE: &str = include_str!("rounds-agent.service");
/// The launchd daemon template.
pub const LAUNCHD_TEMPLATE: &str = include_str!("com.rounds.agent.plist");
/// The Windows service template (sc.exe invocations).
pub const WINDOWS_TEMPLATE: &str = include_str!("windows-service.txt");

/// Name of the systemd unit.
pub const SYSTEMD_UNIT: &str = "rounds-agent.service";
/// Where `install` writes the unit (an administrator's unit; the package's is in /lib).
pub const SYSTEMD_UNIT_DIR: &str = "/etc/systemd/system";
/// launchd label and plist location.
pub const LAUNCHD_LABEL: &str = "com.rounds.agent";
pub const LAUNCHD_PLIST: &str = "/Library/LaunchDaemons/com.rounds.agent.plist";
/// Windows service name.
pub const WINDOWS_SERVICE: &str = "RoundsAgent";

/// A platform whose service manager the agent can be installed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Platform {
    Linux,
    Macos,
    Windows,
}

impl Platform {
    /// The platform this build runs on (`None` where no service manager is supported).
    pub fn current() -> Option<Self> {
        match std::env::consts::OS {
            "linux" => Some(Platform::Linux),
            "macos" => Some(Platform::Macos),
            "windows" => Some(Platform::Windows),
            _ => None,
        }
    }

    /// The state dir a service uses by default.
    pub fn default_state_dir(self) -> PathBuf {
        match self {
            Platform::Linux => PathBuf::from(crate::state::SYSTEM_STATE_DIR),
            Platform::Macos => PathBuf::from("/Library/Application Support/Rounds/agent"),
            Platform::Windows => PathBuf::from(r"C:\ProgramData\Rounds\agent"),
        }
    }
}

/// What the service runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub platform: Platform,
    /// The agent binary, as the service manager will see it.
    pub exe: PathBuf,
    /// The state dir, as the service will see it.
    pub state_dir: PathBuf,
    /// The configuration file given to `run`, if any.
    pub config: Option<PathBuf>,
}

/// Why a service definition cannot be made or installed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{what} `{path}` cannot go into a {platform:?} service definition: {why}")]
    BadPath {
        what: &'static str,
        path: PathBuf,
        platform: Platform,
        why: &'static str,
    },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot remove {path}: {source}")]
    Remove { path: PathBuf, source: std::io::Error },
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("no service manager is supported on {0}")]
    Unsupported(String),
}

/// One command to run: a program and its arguments, exactly as passed to the OS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    pub program: String,
    pub args: Vec<String>,
}

impl Cmd {
    pub fn new(program: &str, args: &[&str]) -> Self {
        Cmd {
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }
}

impl std::fmt::Display for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.program)?;
        for a in &self.args {
            if a.is_empty() || a.contains([' ', '"', '\'']) {
                write!(f, " {a:?}")?;
            } else {
                write!(f, " {a}")?;
            }
        }
        Ok(())
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Write a file (path as on the target machine, before the root is prefixed).
    Write { path: PathBuf, contents: String },
    /// Remove a file if it is there.
    Remove { path: PathBuf },
    /// Remove a directory and what is in it, if it is there.
    RemoveDir { path: PathBuf },
    /// Run a command; `must_succeed: false` for a stop of what may not run.
    Run { cmd: Cmd, must_succeed: bool },
}

/// Renders the service definition of `spec` (the unit, plist, or the sc.exe invocations as
/// text).
pub fn render(spec: &ServiceSpec) -> Result<String, ServiceError> {
    match spec.platform {
        Platform::Linux => systemd_unit(spec),
        Platform::Macos => launchd_plist(spec),
        // As cmd.exe takes them (issue 19), the ACL of the state dir first, as `install` does.
        Platform::Windows => Ok(windows::protect_commands(&spec.state_dir)
            .iter()
            .chain(&windows::service_commands(spec)?)
            .map(|c| format!("{}\n", windows::command_line(c)))
            .collect()),
    }
}

fn run_args(spec: &ServiceSpec) -> Vec<String> {
    let mut args = vec![
        "run".to_string(),
        "--state-dir".to_string(),
        spec.state_dir.display().to_string(),
    ];
    if let Some(c) = &spec.config {
        args.push("--config".into());
        args.push(c.display().to_string());
    }
    args
}

/// Refuses what the template cannot carry safely: control characters anywhere; for systemd
/// also whitespace, quotes, `%` and `\` (systemd would split or expand them), and relative
/// paths.
fn checked<'a>(what: &'static str, path: &'a Path, platform: Platform) -> Result<&'a str, ServiceError> {
    let bad = |why| ServiceError::BadPath {
        what,
        path: path.to_path_buf(),
        platform,
        why,
    };
    let s = path.to_str().ok_or_else(|| bad("it is not UTF-8"))?;
    if s.chars().any(char::is_control) {
        return Err(bad("it holds a control character"));
    }
    match platform {
        Platform::Linux => {
            if !path.is_absolute() {
                return Err(bad("it is not an absolute path"));
            }
            if s.chars()
                .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '%' | '\\' | '$'))
            {
                return Err(bad("it holds whitespace, a quote, `%`, `$` or `\\`"));
            }
        }
        Platform::Macos => {
            if !s.starts_with('/') {
                return Err(bad("it is not an absolute path"));
            }
        }
        Platform::Windows => {
            if s.contains('"') {
                return Err(bad("it holds a double quote"));
            }
        }
    }
    Ok(s)
}

/// The systemd unit for `spec`.
pub fn systemd_unit(spec: &ServiceSpec) -> Result<String, ServiceError> {
    let p = Platform::Linux;
    let exe = checked("the agent binary", &spec.exe, p)?;
    let state = checked("the state dir", &spec.state_dir, p)?;
    if let Some(c) = &spec.config {
        checked("the configuration file", c, p)?;
    }
    let exec_start = std::iter::once(exe.to_string())
        .chain(run_args(spec))
        .collect::<Vec<_>>()
        .join(" ");
    Ok(SYSTEMD_TEMPLATE
        .replace("{{exec_start}}", &exec_start)
        .replace("{{state_dir}}", state))
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The launchd plist for `spec`.
pub fn launchd_plist(spec: &ServiceSpec) -> Result<String, ServiceError> {
    let p = Platform::Macos;
    let exe = checked("the agent binary", &spec.exe, p)?;
    checked("the state dir", &spec.state_dir, p)?;
    if let Some(c) = &spec.config {
        checked("the configuration file", c, p)?;
    }
    let args: String = std::iter::once(exe.to_string())
        .chain(run_args(spec))
        .map(|a| format!("        <string>{}</string>\n", xml_escape(&a)))
        .collect();
    Ok(LAUNCHD_TEMPLATE.replace("{{program_arguments}}\n", &args))
}

/// What `install` does once enrolled: write the service definition and start it.
pub fn install_plan(spec: &ServiceSpec) -> Result<Vec<Step>, ServiceError> {
    Ok(match spec.platform {
        Platform::Linux => vec![
            Step::Write {
                path: Path::new(SYSTEMD_UNIT_DIR).join(SYSTEMD_UNIT),
                contents: systemd_unit(spec)?,
            },
            Step::Run {
                cmd: Cmd::new("systemctl", &["daemon-reload"]),
                must_succeed: true,
            },
            Step::Run {
                cmd: Cmd::new("systemctl", &["enable", "--now", SYSTEMD_UNIT]),
                must_succeed: true,
            },
            // A reinstall over a running agent: pick up the new enrollment.
            Step::Run {
                cmd: Cmd::new("systemctl", &["restart", SYSTEMD_UNIT]),
                must_succeed: true,
            },
        ],
        Platform::Macos => vec![
            Step::Run {
                cmd: Cmd::new("launchctl", &["bootout", &format!("system/{LAUNCHD_LABEL}")]),
                must_succeed: false,
            },
            Step::Write {
                path: PathBuf::from(LAUNCHD_PLIST),
                contents: launchd_plist(spec)?,
            },
            Step::Run {
                cmd: Cmd::new("launchctl", &["bootstrap", "system", LAUNCHD_PLIST]),
                must_succeed: true,
            },
            Step::Run {
                cmd: Cmd::new("launchctl", &["enable", &format!("system/{LAUNCHD_LABEL}")]),
                must_succeed: true,
            },
        ],
        Platform::Windows => {
            let mut steps: Vec<Step> = windows::protect_commands(&spec.state_dir)
                .into_iter()
                .map(|cmd| Step::Run {
                    cmd,
                    must_succeed: true,
                })
                .collect();
            steps.extend(windows::service_commands(spec)?.into_iter().map(|cmd| Step::Run {
                cmd,
                must_succeed: true,
            }));
            steps
        }
    })
}

/// What `uninstall` does: stop and remove the service; with `purge`, the state dir too
/// (identity, CA, spool, cached configuration).
pub fn uninstall_plan(platform: Platform, state_dir: &Path, purge: bool) -> Vec<Step> {
    let mut steps = match platform {
        Platform::Linux => vec![
            Step::Run {
                cmd: Cmd::new("systemctl", &["disable", "--now", SYSTEMD_UNIT]),
                must_succeed: false,
            },
            Step::Remove {
                path: Path::new(SYSTEMD_UNIT_DIR).join(SYSTEMD_UNIT),
            },
            Step::Run {
                cmd: Cmd::new("systemctl", &["daemon-reload"]),
                must_succeed: true,
            },
        ],
        Platform::Macos => vec![
            Step::Run {
                cmd: Cmd::new("launchctl", &["bootout", &format!("system/{LAUNCHD_LABEL}")]),
                must_succeed: false,
            },
            Step::Remove {
                path: PathBuf::from(LAUNCHD_PLIST),
            },
        ],
        Platform::Windows => vec![
            Step::Run {
                cmd: Cmd::new("sc.exe", &["stop", WINDOWS_SERVICE]),
                must_succeed: false,
            },
            Step::Run {
                cmd: Cmd::new("sc.exe", &["delete", WINDOWS_SERVICE]),
                must_succeed: true,
            },
        ],
    };
    if purge {
        steps.push(Step::RemoveDir {
            path: state_dir.to_path_buf(),
        });
    }
    steps
}

/// The log of `run --service` in the state dir (issue 19): a Windows service has no console,
/// so what the agent would print on stderr goes here.
pub const SERVICE_LOG: &str = "agent.log";
/// Beyond this size the log is moved to `agent.log.1` (replacing the previous one) when the
/// service starts, so the two files never hold much more than twice this.
pub const SERVICE_LOG_MAX: u64 = 8 << 20;

/// Opens the service log in `state_dir` for appending, after moving a log over
/// [`SERVICE_LOG_MAX`] aside.
pub fn open_service_log(state_dir: &Path) -> std::io::Result<std::fs::File> {
    let path = state_dir.join(SERVICE_LOG);
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > SERVICE_LOG_MAX) {
        std::fs::rename(&path, state_dir.join(format!("{SERVICE_LOG}.1")))?;
    }
    std::fs::OpenOptions::new().create(true).append(true).open(&path)
}

/// Runs commands; the real one spawns processes, tests record.
pub trait Runner {
    /// Whether `program` can be run here (found on `PATH`).
    fn available(&self, program: &str) -> bool;
    /// Runs `cmd` to completion; `Err` with what it printed when it fails.
    fn run(&self, cmd: &Cmd) -> Result<(), String>;
}

/// Runs commands on this machine.
#[derive(Debug, Default)]
pub struct SystemRunner;

impl Runner for SystemRunner {
    fn available(&self, program: &str) -> bool {
        // Windows (issue 19): `icacls` is `icacls.exe` on disk.
        let names: &[String] = if cfg!(windows) && !program.ends_with(".exe") {
            &[program.to_string(), format!("{program}.exe")]
        } else {
            &[program.to_string()]
        };
        std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|d| names.iter().any(|n| d.join(n).is_file())))
    }

    fn run(&self, cmd: &Cmd) -> Result<(), String> {
        let out = std::process::Command::new(&cmd.program)
            .args(&cmd.args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            let text = String::from_utf8_lossy(&out.stderr);
            Err(format!("{}: {}", out.status, text.trim()))
        }
    }
}

/// A path on the target machine, under `root`.
pub fn under(root: &Path, path: &Path) -> PathBuf {
    // The real root: the path as it is (issue 19: on Windows, `C:\ProgramData\...` must not
    // become `\ProgramData\...` on whatever drive the prompt is on).
    if root == Path::new("/") {
        return path.to_path_buf();
    }
    let rel: PathBuf = path
        .components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .collect();
    root.join(rel)
}

/// What running a plan did, line by line, for the operator.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub done: Vec<String>,
    /// Commands not run (a test root, or the program is missing), for the operator to run.
    pub skipped: Vec<Cmd>,
}

/// Carries out `steps` with files under `root`. Commands run only when `root` is `/` and the
/// program is available; otherwise they are listed in [`Outcome::skipped`].
pub fn execute(steps: &[Step], root: &Path, runner: &dyn Runner) -> Result<Outcome, ServiceError> {
    let real_root = root == Path::new("/");
    let mut outcome = Outcome::default();
    for step in steps {
        match step {
            Step::Write { path, contents } => {
                let target = under(root, path);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(|source| ServiceError::Write {
                        path: parent.to_path_buf(),
                        source,
                    })?;
                }
                crate::state::write_atomic(&target, contents.as_bytes()).map_err(|e| ServiceError::Write {
                    path: target.clone(),
                    source: std::io::Error::other(e.to_string()),
                })?;
                // A service definition is not secret; service managers want it readable.
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).map_err(|source| {
                        ServiceError::Write {
                            path: target.clone(),
                            source,
                        }
                    })?;
                }
                outcome.done.push(format!("wrote {}", target.display()));
            }
            Step::Remove { path } => {
                let target = under(root, path);
                match std::fs::remove_file(&target) {
                    Ok(()) => outcome.done.push(format!("removed {}", target.display())),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => return Err(ServiceError::Remove { path: target, source }),
                }
            }
            Step::RemoveDir { path } => {
                let target = under(root, path);
                match std::fs::remove_dir_all(&target) {
                    Ok(()) => outcome
                        .done
                        .push(format!("removed {} and its contents", target.display())),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => return Err(ServiceError::Remove { path: target, source }),
                }
            }
            Step::Run { cmd, must_succeed } => {
                if !real_root || !runner.available(&cmd.program) {
                    outcome.skipped.push(cmd.clone());
                    continue;
                }
                match runner.run(cmd) {
                    Ok(()) => outcome.done.push(format!("ran {cmd}")),
                    Err(detail) if *must_succeed => {
                        return Err(ServiceError::Command {
                            command: cmd.to_string(),
                            detail,
                        });
                    }
                    Err(detail) => outcome.done.push(format!("ran {cmd} (ignored: {detail})")),
                }
            }
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(platform: Platform) -> ServiceSpec {
        ServiceSpec {
            platform,
            exe: PathBuf::from(match platform {
                Platform::Windows => r"C:\Program Files\Rounds\rounds-agent.exe",
                _ => "/usr/bin/rounds-agent",
            }),
            state_dir: platform.default_state_dir(),
            config: None,
        }
    }

    #[test]
    fn the_unit_carries_every_hardening_line() {
        let unit = systemd_unit(&ServiceSpec {
            config: Some("/etc/rounds-agent/agent.toml".into()),
            ..spec(Platform::Linux)
        })
        .unwrap();
        for line in [
            "ExecStart=/usr/bin/rounds-agent run --state-dir /var/lib/rounds-agent --config /etc/rounds-agent/agent.toml",
            "ProtectSystem=strict",
            "ReadWritePaths=/var/lib/rounds-agent",
            "ProtectHome=read-only",
            "NoNewPrivileges=yes",
            "PrivateTmp=yes",
            "CapabilityBoundingSet=CAP_DAC_READ_SEARCH CAP_SYS_PTRACE CAP_NET_ADMIN CAP_AUDIT_CONTROL",
            "ConditionPathExists=/var/lib/rounds-agent/identity.json",
            "Restart=on-failure",
            "WantedBy=multi-user.target",
        ] {
            assert!(unit.lines().any(|l| l == line), "missing `{line}` in:\n{unit}");
        }
        // Every capability granted is explained in a comment above.
        for cap in [
            "CAP_DAC_READ_SEARCH",
            "CAP_SYS_PTRACE",
            "CAP_NET_ADMIN",
            "CAP_AUDIT_CONTROL",
        ] {
            assert!(
                unit.lines().any(|l| l.starts_with(&format!("# - {cap}:"))),
                "{cap} unexplained"
            );
        }
        assert!(!unit.contains("{{"), "placeholder left: {unit}");
    }

    #[test]
    fn paths_systemd_would_split_or_expand_are_refused_by_name() {
        for bad in [
            "/opt/my agent/rounds-agent",
            "/opt/%h/rounds-agent",
            "relative/rounds-agent",
        ] {
            let e = systemd_unit(&ServiceSpec {
                exe: bad.into(),
                ..spec(Platform::Linux)
            })
            .unwrap_err()
            .to_string();
            assert!(e.contains(bad) && e.contains("the agent binary"), "{e}");
        }
    }

    #[test]
    fn the_plist_lists_the_arguments_escaped() {
        let plist = launchd_plist(&ServiceSpec {
            config: Some("/Library/Rounds/a&b.toml".into()),
            ..spec(Platform::Macos)
        })
        .unwrap();
        let want = "        <string>/usr/bin/rounds-agent</string>\n        <string>run</string>\n        <string>--state-dir</string>\n        <string>/Library/Application Support/Rounds/agent</string>\n        <string>--config</string>\n        <string>/Library/Rounds/a&amp;b.toml</string>\n";
        assert!(plist.contains(want), "{plist}");
        assert!(plist.contains("<string>com.rounds.agent</string>"));
        assert!(plist.contains("<key>KeepAlive</key>"));
        assert!(!plist.contains("{{"));
    }

    struct Recording(std::cell::RefCell<Vec<Cmd>>);

    impl Runner for Recording {
        fn available(&self, _: &str) -> bool {
            true
        }
        fn run(&self, cmd: &Cmd) -> Result<(), String> {
            self.0.borrow_mut().push(cmd.clone());
            Ok(())
        }
    }

    #[test]
    fn a_test_root_gets_the_files_and_no_command_runs() {
        let root = tempfile::tempdir().unwrap();
        let runner = Recording(Default::default());
        let plan = install_plan(&spec(Platform::Linux)).unwrap();
        let out = execute(&plan, root.path(), &runner).unwrap();
        assert!(runner.0.borrow().is_empty(), "{:?}", runner.0.borrow());
        let unit = root.path().join("etc/systemd/system/rounds-agent.service");
        assert!(std::fs::read_to_string(&unit).unwrap().contains("ProtectSystem=strict"));
        assert_eq!(
            out.skipped,
            vec![
                Cmd::new("systemctl", &["daemon-reload"]),
                Cmd::new("systemctl", &["enable", "--now", "rounds-agent.service"]),
                Cmd::new("systemctl", &["restart", "rounds-agent.service"]),
            ]
        );
        // Uninstall removes the unit and keeps the state dir unless purged.
        let state = root.path().join("var/lib/rounds-agent");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(state.join("identity.json"), "{}").unwrap();
        execute(
            &uninstall_plan(Platform::Linux, Path::new("/var/lib/rounds-agent"), false),
            root.path(),
            &runner,
        )
        .unwrap();
        assert!(!unit.exists());
        assert!(state.join("identity.json").exists());
        execute(
            &uninstall_plan(Platform::Linux, Path::new("/var/lib/rounds-agent"), true),
            root.path(),
            &runner,
        )
        .unwrap();
        assert!(!state.exists());
        assert!(runner.0.borrow().is_empty());
    }

    #[test]
    fn the_real_root_keeps_a_path_as_it_is_and_a_test_root_prefixes_it() {
        let win = Path::new(r"C:\ProgramData\Rounds\agent");
        assert_eq!(under(Path::new("/"), win), win);
        assert_eq!(
            under(Path::new("/"), Path::new("/var/lib/rounds-agent")),
            Path::new("/var/lib/rounds-agent")
        );
        assert_eq!(
            under(Path::new("/tmp/r"), Path::new("/var/lib/rounds-agent")),
            Path::new("/tmp/r/var/lib/rounds-agent")
        );
    }

    #[test]
    fn the_service_log_appends_and_moves_a_full_log_aside() {
        let dir = tempfile::tempdir().unwrap();
        use std::io::Write as _;
        writeln!(open_service_log(dir.path()).unwrap(), "first").unwrap();
        writeln!(open_service_log(dir.path()).unwrap(), "second").unwrap();
        let log = dir.path().join(SERVICE_LOG);
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "first\nsecond\n");
        let full = vec![b'x'; usize::try_from(SERVICE_LOG_MAX).unwrap() + 1];
        std::fs::write(&log, &full).unwrap();
        writeln!(open_service_log(dir.path()).unwrap(), "after").unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "after\n");
        assert_eq!(std::fs::read(dir.path().join("agent.log.1")).unwrap(), full);
    }

    #[test]
    fn the_real_root_runs_the_commands_in_order() {
        let runner = Recording(Default::default());
        // Only commands (no file step) so running against `/` writes nothing here.
        let plan: Vec<Step> = install_plan(&spec(Platform::Macos))
            .unwrap()
            .into_iter()
            .filter(|s| matches!(s, Step::Run { .. }))
            .collect();
        execute(&plan, Path::new("/"), &runner).unwrap();
        let ran: Vec<String> = runner.0.borrow().iter().map(ToString::to_string).collect();
        assert_eq!(
            ran,
            [
                "launchctl bootout system/com.rounds.agent",
                "launchctl bootstrap system /Library/LaunchDaemons/com.rounds.agent.plist",
                "launchctl enable system/com.rounds.agent",
            ]
        );
    }
}
