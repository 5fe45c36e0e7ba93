//! The Windows side of installation: the sc.exe invocations of the service (from
//! `windows-service.txt`) and the explicit ACL of the state dir and the secret file.
//!
//! The ACL: inheritance removed (`/inheritance:r`), then full control granted to SYSTEM
//! (`S-1-5-18`) and the Administrators group (`S-1-5-32-544`) only, named by SID so that a
//! localized Windows (where "Administrators" is "Administratoren") gets the same ACL. The
//! state dir's grant is inherited by what is created in it (`(OI)(CI)`); the identity file
//! (the agent secret) gets its own explicit ACL as well, so a file copied in with other
//! permissions is narrowed too. The command lines are built here on every platform (and
//! tested on Linux); they are run only on Windows, by [`protect_dir`] and [`protect_file`].

use std::path::Path;

use super::{Cmd, ServiceError, ServiceSpec, WINDOWS_SERVICE, WINDOWS_TEMPLATE};

/// SID of LocalSystem.
pub const SYSTEM_SID: &str = "*S-1-5-18";
/// SID of the built-in Administrators group.
pub const ADMINISTRATORS_SID: &str = "*S-1-5-32-544";

/// `icacls` for the state dir: only SYSTEM and Administrators, inherited by its contents.
pub fn protect_dir_command(dir: &Path) -> Cmd {
    Cmd {
        program: "icacls".into(),
        args: vec![
            dir.display().to_string(),
            "/inheritance:r".into(),
            "/grant:r".into(),
            format!("{SYSTEM_SID}:(OI)(CI)F"),
            "/grant:r".into(),
            format!("{ADMINISTRATORS_SID}:(OI)(CI)F"),
            "/q".into(),
        ],
    }
}

/// `icacls` for one file (the identity with the agent secret): only SYSTEM and Administrators.
pub fn protect_file_command(file: &Path) -> Cmd {
    Cmd {
        program: "icacls".into(),
        args: vec![
            file.display().to_string(),
            "/inheritance:r".into(),
            "/grant:r".into(),
            format!("{SYSTEM_SID}:F"),
            "/grant:r".into(),
            format!("{ADMINISTRATORS_SID}:F"),
            "/q".into(),
        ],
    }
}

/// The ACL commands `install` runs on the state dir and the identity file in it.
pub fn protect_commands(state_dir: &Path) -> Vec<Cmd> {
    vec![
        protect_dir_command(state_dir),
        protect_file_command(&state_dir.join(crate::state::IDENTITY_FILE)),
    ]
}

/// Quotes one argument for a Windows command line (the `binPath=` value sc.exe stores).
fn quote(arg: &str) -> String {
    if !arg.is_empty() && !arg.contains([' ', '\t', '"']) {
        return arg.to_string();
    }
    format!("\"{arg}\"")
}

/// One argument as the C runtime's command-line parser (`CommandLineToArgvW`) reads it back:
/// quoted when it holds whitespace or a quote, `"` escaped as `\"` and the backslashes before
/// a quote doubled.
pub fn quote_arg(arg: &str) -> String {
    if !arg.is_empty() && !arg.contains([' ', '\t', '\n', '"']) {
        return arg.to_string();
    }
    let mut out = String::from("\"");
    let mut backslashes = 0;
    for c in arg.chars() {
        match c {
            '\\' => backslashes += 1,
            '"' => {
                out.extend(std::iter::repeat_n('\\', backslashes * 2 + 1));
                backslashes = 0;
            }
            _ => {
                out.extend(std::iter::repeat_n('\\', backslashes));
                backslashes = 0;
            }
        }
        if c != '\\' {
            out.push(c);
        }
    }
    out.extend(std::iter::repeat_n('\\', backslashes * 2));
    out.push('"');
    out
}

/// `cmd` as a line to type at a Windows command prompt (what `service-file` prints).
pub fn command_line(cmd: &Cmd) -> String {
    std::iter::once(cmd.program.as_str())
        .chain(cmd.args.iter().map(String::as_str))
        .map(quote_arg)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The sc.exe invocations that create, describe, set recovery for and start the service.
pub fn service_commands(spec: &ServiceSpec) -> Result<Vec<Cmd>, ServiceError> {
    let p = super::Platform::Windows;
    let exe = super::checked("the agent binary", &spec.exe, p)?;
    super::checked("the state dir", &spec.state_dir, p)?;
    if let Some(c) = &spec.config {
        super::checked("the configuration file", c, p)?;
    }
    // `--service`: the agent enters the service control dispatcher (without it the SCM
    // reports error 1053, the service did not respond).
    let bin_path = std::iter::once(exe.to_string())
        .chain(super::run_args(spec))
        .chain(std::iter::once("--service".to_string()))
        .map(|a| quote(&a))
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmds = Vec::new();
    let mut args: Vec<String> = Vec::new();
    for line in WINDOWS_TEMPLATE.lines().chain(std::iter::once("")) {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            if !args.is_empty() {
                cmds.push(Cmd {
                    program: "sc.exe".into(),
                    args: std::mem::take(&mut args),
                });
            }
            continue;
        }
        args.push(
            line.replace("{{service}}", WINDOWS_SERVICE)
                .replace("{{bin_path}}", &bin_path),
        );
    }
    Ok(cmds)
}

/// Sets the explicit ACL on the state dir (Windows only).
#[cfg(windows)]
pub fn protect_dir(dir: &Path) -> std::io::Result<()> {
    run(&protect_dir_command(dir))
}

/// Sets the explicit ACL on a secret file (Windows only).
#[cfg(windows)]
pub fn protect_file(file: &Path) -> std::io::Result<()> {
    run(&protect_file_command(file))
}

#[cfg(windows)]
fn run(cmd: &Cmd) -> std::io::Result<()> {
    use super::Runner as _;
    super::SystemRunner
        .run(cmd)
        .map_err(|e| std::io::Error::other(format!("{cmd}: {e}")))
}

/// The exit code the agent reports to the service control manager when it stops: 0 is a clean
/// stop (`Win32(0)`); anything else is a service-specific code (64 bad configuration, 1 a
/// runtime failure, 101 a panic), which with `failureflag 1` makes the SCM apply the recovery
/// actions. Kept as plain numbers so the mapping is tested on every platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCode {
    /// Stopped cleanly (`dwWin32ExitCode` 0).
    Clean,
    /// `dwWin32ExitCode` ERROR_SERVICE_SPECIFIC_ERROR (1066) with this
    /// `dwServiceSpecificExitCode`.
    ServiceSpecific(u32),
}

impl StopCode {
    pub fn from_exit(code: u32) -> Self {
        if code == 0 {
            StopCode::Clean
        } else {
            StopCode::ServiceSpecific(code)
        }
    }
}

/// Exit code of the service when the agent's body panicked.
pub const EXIT_PANIC: u32 = 101;

/// How long a stop may take, as the service tells the SCM when it reports StopPending (the agent stops its checks, flushes the spool and exits; the
/// runtime gives a check still running 5 s).
pub const STOP_WAIT_HINT: std::time::Duration = std::time::Duration::from_secs(15);

#[cfg(windows)]
pub use dispatcher::run_as_service;

/// The service control dispatcher (Windows only): `rounds-agent run --service`.
#[cfg(windows)]
mod dispatcher {
    use std::ffi::OsString;
    use std::sync::{Arc, Mutex, OnceLock};
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;
    use windows_service::service::{
        ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus, ServiceType,
    };
    use windows_service::service_control_handler::{self, ServiceControlHandlerResult, ServiceStatusHandle};
    use windows_service::{define_windows_service, service_dispatcher};

    use super::{EXIT_PANIC, STOP_WAIT_HINT, StopCode};
    use crate::service::{ServiceError, WINDOWS_SERVICE};

    /// What the service runs: the agent, until the token is cancelled; returns the exit code.
    type Body = Box<dyn FnOnce(CancellationToken) -> u32 + Send>;

    /// The body handed from [`run_as_service`] to the service main the SCM calls on its own
    /// thread, and what came of it.
    static BODY: Mutex<Option<Body>> = Mutex::new(None);
    static OUTCOME: Mutex<Option<Result<u32, String>>> = Mutex::new(None);

    /// ERROR_FAILED_SERVICE_CONTROLLER_CONNECT: the process was not started by the SCM.
    const NOT_FROM_SCM: i32 = 1063;

    /// Connects to the service control manager and runs `body` as the service: reports
    /// Running, cancels the token on Stop or Shutdown, and reports Stopped with `body`'s exit
    /// code ([`StopCode`]). Returns that exit code once the SCM has been told.
    pub fn run_as_service(body: impl FnOnce(CancellationToken) -> u32 + Send + 'static) -> Result<u32, ServiceError> {
        *BODY.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(body));
        if let Err(e) = service_dispatcher::start(WINDOWS_SERVICE, ffi_service_main) {
            let detail = match &e {
                windows_service::Error::Winapi(io) if io.raw_os_error() == Some(NOT_FROM_SCM) => {
                    "this process was not started by the service control manager; `--service` is the \
                     command line `install` registers (start it with `sc.exe start RoundsAgent`), \
                     run without `--service` in a console"
                        .to_string()
                }
                other => detail(other),
            };
            return Err(ServiceError::Command {
                command: "run --service (service control dispatcher)".into(),
                detail,
            });
        }
        match OUTCOME.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(Ok(code)) => Ok(code),
            Some(Err(detail)) => Err(ServiceError::Command {
                command: "run --service (service control handler)".into(),
                detail,
            }),
            None => Err(ServiceError::Command {
                command: "run --service".into(),
                detail: "the service control manager never started the service".into(),
            }),
        }
    }

    define_windows_service!(ffi_service_main, service_main);

    fn status(state: ServiceState, accept: ServiceControlAccept, exit: StopCode, wait_hint: Duration) -> ServiceStatus {
        ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted: accept,
            exit_code: match exit {
                StopCode::Clean => ServiceExitCode::Win32(0),
                StopCode::ServiceSpecific(c) => ServiceExitCode::ServiceSpecific(c),
            },
            checkpoint: 0,
            wait_hint,
            process_id: None,
        }
    }

    fn service_main(_arguments: Vec<OsString>) {
        if let Err(e) = serve() {
            tracing::error!(service = WINDOWS_SERVICE, "{e}");
            record(Err(e));
        }
    }

    /// Hands the outcome to [`run_as_service`]: before Stopped is reported, since the dispatcher
    /// returns on the main thread as soon as the SCM has it.
    fn record(outcome: Result<u32, String>) {
        let mut slot = OUTCOME.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(outcome);
        }
    }

    fn serve() -> Result<(), String> {
        let body = BODY
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or("the service was started twice in one process")?;
        let shutdown = CancellationToken::new();
        let handle: Arc<OnceLock<ServiceStatusHandle>> = Arc::default();
        let handler = {
            let shutdown = shutdown.clone();
            let handle = handle.clone();
            move |control| match control {
                // Stop from `sc.exe stop` or the Services console; Shutdown when Windows shuts
                // down: the agent's shutdown token, as SIGTERM on Unix.
                ServiceControl::Stop | ServiceControl::Shutdown | ServiceControl::Preshutdown => {
                    tracing::info!(?control, "service control: stopping");
                    shutdown.cancel();
                    if let Some(h) = handle.get()
                        && let Err(e) = h.set_service_status(status(
                            ServiceState::StopPending,
                            ServiceControlAccept::empty(),
                            StopCode::Clean,
                            STOP_WAIT_HINT,
                        ))
                    {
                        tracing::warn!(error = %e, "cannot report StopPending");
                    }
                    ServiceControlHandlerResult::NoError
                }
                ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
                _ => ServiceControlHandlerResult::NotImplemented,
            }
        };
        let h = service_control_handler::register(WINDOWS_SERVICE, handler)
            .map_err(|e| format!("cannot register the service control handler: {}", detail(&e)))?;
        let _ = handle.set(h);
        h.set_service_status(status(
            ServiceState::Running,
            ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN,
            StopCode::Clean,
            Duration::ZERO,
        ))
        .map_err(|e| format!("cannot report Running: {}", detail(&e)))?;
        tracing::info!(service = WINDOWS_SERVICE, "service running");
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(shutdown))).unwrap_or(EXIT_PANIC);
        tracing::info!(service = WINDOWS_SERVICE, exit_code = code, "service stopped");
        record(Ok(code));
        h.set_service_status(status(
            ServiceState::Stopped,
            ServiceControlAccept::empty(),
            StopCode::from_exit(code),
            Duration::ZERO,
        ))
        .map_err(|e| format!("cannot report Stopped: {}", detail(&e)))
    }

    /// The error with its OS error (windows-service's Display says only "IO error in winapi
    /// call").
    fn detail(e: &windows_service::Error) -> String {
        match e {
            windows_service::Error::Winapi(io) => io.to_string(),
            other => other.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::service::Platform;

    #[test]
    fn the_state_dir_acl_is_system_and_administrators_only() {
        let dir = PathBuf::from(r"C:\ProgramData\Rounds\agent");
        let cmds = protect_commands(&dir);
        assert_eq!(
            cmds[0].to_string(),
            r#"icacls C:\ProgramData\Rounds\agent /inheritance:r /grant:r *S-1-5-18:(OI)(CI)F /grant:r *S-1-5-32-544:(OI)(CI)F /q"#
        );
        assert_eq!(
            cmds[1].args,
            [
                r"C:\ProgramData\Rounds\agent/identity.json",
                "/inheritance:r",
                "/grant:r",
                "*S-1-5-18:F",
                "/grant:r",
                "*S-1-5-32-544:F",
                "/q"
            ]
        );
        // Nobody else is granted anything: every /grant names one of the two SIDs.
        for c in &cmds {
            for (i, a) in c.args.iter().enumerate() {
                if a.starts_with("/grant") {
                    let who = &c.args[i + 1];
                    assert!(
                        who.starts_with(SYSTEM_SID) || who.starts_with(ADMINISTRATORS_SID),
                        "{who}"
                    );
                }
            }
        }
    }

    #[test]
    fn command_lines_quote_as_the_c_runtime_reads_them() {
        assert_eq!(
            quote_arg(r"C:\ProgramData\Rounds\agent"),
            r"C:\ProgramData\Rounds\agent"
        );
        assert_eq!(quote_arg(""), r#""""#);
        assert_eq!(quote_arg("Rounds agent"), r#""Rounds agent""#);
        assert_eq!(quote_arg(r#"a\"b"#), r#""a\\\"b""#);
        assert_eq!(quote_arg(r"C:\my dir\"), r#""C:\my dir\\""#);
        let spec = ServiceSpec {
            platform: Platform::Windows,
            exe: r"C:\Program Files\Rounds\rounds-agent.exe".into(),
            state_dir: Platform::Windows.default_state_dir(),
            config: None,
        };
        let text = crate::service::render(&spec).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with(r"icacls C:\ProgramData\Rounds\agent /inheritance:r"),
            "{text}"
        );
        assert_eq!(
            lines[2],
            r#"sc.exe create RoundsAgent binPath= "\"C:\Program Files\Rounds\rounds-agent.exe\" run --state-dir C:\ProgramData\Rounds\agent --service" start= delayed-auto obj= LocalSystem DisplayName= "Rounds agent""#
        );
        assert_eq!(lines.last(), Some(&"sc.exe start RoundsAgent"));
    }

    #[test]
    fn a_failed_agent_stops_with_a_service_specific_code_the_recovery_actions_see() {
        assert_eq!(StopCode::from_exit(0), StopCode::Clean);
        // Bad configuration, a runtime failure, a panic: ERROR_SERVICE_SPECIFIC_ERROR with the
        // agent's own exit code, which `failureflag 1` counts as a failure.
        for code in [64, 1, EXIT_PANIC] {
            assert_eq!(StopCode::from_exit(code), StopCode::ServiceSpecific(code));
        }
    }

    #[test]
    fn the_service_is_created_with_recovery_actions_and_a_quoted_bin_path() {
        let spec = ServiceSpec {
            platform: Platform::Windows,
            exe: r"C:\Program Files\Rounds\rounds-agent.exe".into(),
            state_dir: Platform::Windows.default_state_dir(),
            config: None,
        };
        let cmds = service_commands(&spec).unwrap();
        let args: Vec<Vec<&str>> = cmds
            .iter()
            .map(|c| c.args.iter().map(String::as_str).collect())
            .collect();
        assert!(cmds.iter().all(|c| c.program == "sc.exe"));
        assert_eq!(
            args,
            vec![
                vec![
                    "create",
                    "RoundsAgent",
                    "binPath=",
                    r#""C:\Program Files\Rounds\rounds-agent.exe" run --state-dir C:\ProgramData\Rounds\agent --service"#,
                    "start=",
                    "delayed-auto",
                    "obj=",
                    "LocalSystem",
                    "DisplayName=",
                    "Rounds agent",
                ],
                vec![
                    "description",
                    "RoundsAgent",
                    "Rounds agent: compliance checks for this practice machine, reported to the MSP's collector.",
                ],
                vec![
                    "failure",
                    "RoundsAgent",
                    "reset=",
                    "86400",
                    "actions=",
                    "restart/10000/restart/30000/restart/60000",
                ],
                vec!["failureflag", "RoundsAgent", "1"],
                vec!["start", "RoundsAgent"],
            ]
        );
        // install protects the state dir before the service is created and started.
        let plan = crate::service::install_plan(&spec).unwrap();
        let first = match &plan[0] {
            crate::service::Step::Run { cmd, .. } => cmd.program.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(first, "icacls");
    }
}
