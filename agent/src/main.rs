//! `rounds-agent`: parses the command line, sets up logging, calls the library, maps errors to
//! exit codes (64 for bad configuration or arguments, 1 for runtime failures).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use rounds_agent::config::{self, AgentSettings};
use rounds_agent::{EnrollOptions, RunOptions, local_check, state};
use tokio_util::sync::CancellationToken;

/// Idle memory (issue 16): on Linux with glibc, one dlmalloc heap behind a lock instead of
/// glibc's malloc, which gives every thread that allocates its own arena (the first run of all
/// checks on the blocking pool left 15 arenas, 560 KB resident, for the life of the process).
/// The agent allocates little and mostly on one thread, so one lock costs nothing measurable.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

/// Exit code for bad configuration or arguments (EX_USAGE).
const EXIT_CONFIG: u8 = 64;
/// Exit code for runtime failures.
const EXIT_FAILURE: u8 = 1;

/// Rounds agent: runs compliance checks on this machine and reports to the collector.
#[derive(Debug, Parser)]
#[command(name = "rounds-agent", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Enroll this machine with a collector, using a one-time token.
    Enroll(EnrollArgs),
    /// Run the agent: heartbeats and scheduled reports, until SIGINT or SIGTERM.
    Run(RunArgs),
    /// Show whether this agent is enrolled, and when it last reached the collector.
    Status(StateDirArg),
    /// Check a configuration file without doing anything else.
    Validate(ValidateArgs),
    /// Run every check once, evaluate the policy locally and print the findings; sends nothing.
    /// Exit code 0: all pass or not applicable; 1: a failure or a check that could not run;
    /// 2: the run itself failed (bad configuration, broken pack).
    Check(CheckArgs),
    /// Backup sources: `backup restore-test NAME` restores a sample and records the result.
    #[command(subcommand)]
    Backup(BackupCommand),
    // Deployment (deploy): install as a service, remove it, print the service definition.
    /// Enroll this machine and install the agent as a service (systemd, launchd or Windows
    /// service), started now and at every boot.
    Install(InstallArgs),
    /// Stop and remove the service; the state dir (identity, spool, cached configuration) is
    /// kept unless --purge.
    Uninstall(UninstallArgs),
    /// Print the service definition `install` writes (used to build packages).
    ServiceFile(ServiceFileArgs),
}

#[derive(Debug, Args)]
struct InstallArgs {
    #[command(flatten)]
    enroll: EnrollArgs,
    /// Configuration file the service runs with.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Install under this folder instead of / (tests, package builds): files are written
    /// there and no service manager is called.
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
}

#[derive(Debug, Args)]
struct UninstallArgs {
    /// Also remove the state dir: identity, CA, spool and cached configuration.
    #[arg(long)]
    purge: bool,
    #[command(flatten)]
    state: StateDirArg,
    /// Uninstall under this folder instead of / (tests); no service manager is called.
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
}

#[derive(Debug, Args)]
struct ServiceFileArgs {
    /// Platform of the service definition [default: this one].
    #[arg(long, value_enum)]
    platform: Option<rounds_agent::service::Platform>,
    /// The agent binary the service runs [default: this binary].
    #[arg(long, value_name = "FILE")]
    exe: Option<PathBuf>,
    #[command(flatten)]
    state: StateDirArg,
    /// Configuration file the service runs with.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum BackupCommand {
    /// Restore a sample of files of backup source NAME to a private folder in the state dir,
    /// compare them with the repository's record, delete them, and record the result and its
    /// duration (reported with the next backup observation). Exit code 0 pass, 1 fail.
    RestoreTest(RestoreTestArgs),
}

#[derive(Debug, Args)]
struct RestoreTestArgs {
    /// Name of the `[[backup]]` source.
    name: String,
    /// Agent configuration file that defines the source.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    #[command(flatten)]
    state: StateDirArg,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: CheckFormat,
    /// Policy pack directory (or its pack.toml) [default: the built-in HIPAA pack].
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Opt-in profile of the pack, e.g. hipaa-2025-proposed.
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// Overrides file (parameters, accepted risks); repeat for practice then site.
    #[arg(long, value_name = "FILE")]
    overrides: Vec<PathBuf>,
    /// Agent configuration file (which checks run).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Read the host under this root instead of / (fixture trees); no commands are run then.
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    /// Directory for the state that checks comparing runs keep.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Evaluate as of this time (RFC 3339) instead of now, for reproducible runs.
    #[arg(long, value_name = "TIME", hide = true)]
    now: Option<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum CheckFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
struct StateDirArg {
    /// State directory [default: $ROUNDS_AGENT_STATE_DIR, /var/lib/rounds-agent as root,
    /// else $XDG_STATE_HOME/rounds-agent or ~/.local/state/rounds-agent; Windows:
    /// C:\ProgramData\Rounds\agent].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct EnrollArgs {
    /// Base URL of the collector, e.g. https://collector.example:8443.
    #[arg(long, value_name = "URL")]
    collector: String,
    /// One-time enrollment token from the technician.
    #[arg(long, value_name = "T")]
    token: String,
    /// PEM file with the collector's CA certificate; copied into the state dir.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "ca_fingerprint",
        conflicts_with = "ca_fingerprint"
    )]
    ca: Option<PathBuf>,
    /// SHA-256 fingerprint of the collector's CA (as `rounds-collector token create` prints:
    /// sha256:HEX, or hex with or without colons): the CA is fetched from the collector and
    /// kept only if it matches.
    #[arg(long, value_name = "SHA256")]
    ca_fingerprint: Option<String>,
    #[command(flatten)]
    state: StateDirArg,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    state: StateDirArg,
    /// Configuration file (TOML); without it, defaults apply.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Windows (issue 19): run under the service control manager, logging to agent.log in the
    /// state dir; the command line `install` registers. Not for a console.
    #[arg(long)]
    service: bool,
}

#[derive(Debug, Args)]
struct ValidateArgs {
    /// Configuration file (TOML) to check.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

/// A failure and the exit code it maps to.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl Failure {
    fn config(error: impl Into<anyhow::Error>) -> Self {
        Failure {
            code: EXIT_CONFIG,
            error: error.into(),
        }
    }

    fn runtime(error: impl Into<anyhow::Error>) -> Self {
        Failure {
            code: EXIT_FAILURE,
            error: error.into(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        Command::Run(args) if args.service => return run_service(args),
        other => other,
    };
    init_tracing(None);
    let result = on_runtime(dispatch(command));
    match result {
        Ok(code) => code,
        Err(Failure { code, error }) => {
            eprintln!("error: {}", render(&error));
            ExitCode::from(code)
        }
    }
}

/// Runs `work` on the agent's runtime (one thread and a blocking pool for the checks).
fn on_runtime<T>(work: impl std::future::Future<Output = Result<T, Failure>>) -> Result<T, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(16)
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(anyhow::anyhow!("cannot start the async runtime: {e}")))?;
    let result = runtime.block_on(work);
    // A check still running on the blocking pool does not hold up the exit for long.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    result
}

/// `run --service` (issue 19): the agent as a Windows service. Logs go to agent.log in the
/// state dir; the service control dispatcher runs the agent until the SCM sends Stop or
/// Shutdown, then reports Stopped with the exit code (0, 64 bad configuration, 1 failure).
fn run_service(args: RunArgs) -> ExitCode {
    #[cfg(windows)]
    {
        let dir = match state_dir(StateDirArg {
            state_dir: args.state.state_dir.clone(),
        }) {
            Ok(d) => d,
            Err(Failure { code, error }) => {
                eprintln!("error: {}", render(&error));
                return ExitCode::from(code);
            }
        };
        // Without a log file (a full disk) the service still reports its status; what it logs
        // is then lost, as the SCM gives it no console. Nothing slow before the dispatcher
        // connects (the SCM waits 30 s for it): the state dir's ACL is set by enroll/install.
        let log = std::fs::create_dir_all(&dir)
            .ok()
            .and_then(|()| rounds_agent::service::open_service_log(&dir).ok());
        init_tracing(log);
        let served = rounds_agent::service::windows::run_as_service(move |shutdown| {
            match on_runtime(run_agent(args, shutdown)) {
                Ok(()) => 0,
                Err(Failure { code, error }) => {
                    tracing::error!("{}", render(&error));
                    u32::from(code)
                }
            }
        });
        match served {
            Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(EXIT_FAILURE)),
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("error: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        }
    }
    #[cfg(not(windows))]
    {
        let _ = args;
        eprintln!(
            "error: `run --service` is for the Windows service control manager; on {} run `rounds-agent run` (systemd and launchd start it so)",
            std::env::consts::OS
        );
        ExitCode::from(EXIT_CONFIG)
    }
}

/// An error and those of its causes its message does not already include.
fn render(error: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

/// Logs to stderr, or to `file` (the Windows service's agent.log).
fn init_tracing(file: Option<std::fs::File>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // Only Windows builds the file writer (a second subscriber type): the Linux agent's size
    // stays as it was.
    #[cfg(windows)]
    if let Some(f) = file {
        builder.with_writer(std::sync::Mutex::new(f)).with_ansi(false).init();
        return;
    }
    #[cfg(not(windows))]
    let _ = file;
    builder
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

async fn dispatch(command: Command) -> Result<ExitCode, Failure> {
    match command {
        Command::Enroll(args) => enroll(args).await,
        Command::Run(args) => run(args).await,
        Command::Status(args) => status(args),
        Command::Validate(args) => validate(args),
        Command::Check(args) => check(args).await,
        Command::Backup(BackupCommand::RestoreTest(args)) => restore_test(args).await,
        Command::Install(args) => install(args).await,
        Command::Uninstall(args) => uninstall(args),
        Command::ServiceFile(args) => service_file(args),
    }
}

async fn restore_test(args: RestoreTestArgs) -> Result<ExitCode, Failure> {
    let RestoreTestArgs { name, config, state } = args;
    let dir = state_dir(state)?;
    let agent_config = rounds_agent_config::load(&config).map_err(Failure::config)?;
    let Some(source) = agent_config.backups.iter().find(|b| b.name == name).cloned() else {
        let known: Vec<&str> = agent_config.backups.iter().map(|b| b.name.as_str()).collect();
        return Err(Failure::config(anyhow::anyhow!(
            "{} defines no [[backup]] named `{name}` (defined: {})",
            config.display(),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )));
    };
    let host = rounds_agent::checks::Host {
        state_dir: Some(dir),
        ..rounds_agent::checks::Host::system()
    };
    let test = tokio::task::spawn_blocking(move || rounds_agent::checks::backup::restore::run(&source, &host))
        .await
        .map_err(|e| Failure::runtime(anyhow::anyhow!("the restore test crashed: {e}")))?
        .map_err(Failure::runtime)?;
    let duration = test.outcome.duration_secs.unwrap_or_default();
    match &test.outcome.error {
        None => {
            println!(
                "restore test of {name}: success, {} files ({} bytes) restored and verified in {duration:.1}s",
                test.files, test.bytes
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(e) => {
            println!("restore test of {name}: failed after {duration:.1}s: {e}");
            Ok(ExitCode::from(EXIT_FAILURE))
        }
    }
}

/// Exit code of `check` when the run itself failed.
const EXIT_CHECK_BROKEN: u8 = 2;

async fn check(args: CheckArgs) -> Result<ExitCode, Failure> {
    let CheckArgs {
        format,
        policy,
        profile,
        overrides,
        config: config_file,
        root,
        state_dir,
        now,
    } = args;
    let broken = |e: anyhow::Error| Failure {
        code: EXIT_CHECK_BROKEN,
        error: e,
    };
    let settings = match &config_file {
        Some(path) => config::load(path).map_err(|e| broken(e.into()))?,
        None => AgentSettings::default(),
    };
    let now = match now {
        Some(t) => Some(
            chrono::DateTime::parse_from_rfc3339(&t)
                .map_err(|e| broken(anyhow::anyhow!("--now `{t}` is not an RFC 3339 time: {e}")))?
                .with_timezone(&chrono::Utc),
        ),
        None => None,
    };
    let opts = local_check::CheckOptions {
        root,
        state_dir,
        policy,
        profile,
        overrides,
        settings,
        now,
    };
    let report = local_check::check(opts).await.map_err(|e| broken(e.into()))?;
    match format {
        CheckFormat::Json => println!("{}", local_check::render_json(&report)),
        CheckFormat::Table => print!("{}", local_check::render_table(&report)),
    }
    Ok(ExitCode::from(local_check::exit_code(
        &report,
        now.unwrap_or_else(chrono::Utc::now),
    )))
}

fn state_dir(arg: StateDirArg) -> Result<PathBuf, Failure> {
    match arg.state_dir {
        Some(dir) => Ok(dir),
        None => state::system_default_state_dir().map_err(Failure::config),
    }
}

async fn enroll(args: EnrollArgs) -> Result<ExitCode, Failure> {
    let dir = state_dir(StateDirArg {
        state_dir: args.state.state_dir.clone(),
    })?;
    enroll_into(args, dir).await
}

/// Enrolls with `--ca FILE` or `--ca-fingerprint` into `state_dir` and prints who we are.
async fn enroll_into(args: EnrollArgs, state_dir: PathBuf) -> Result<ExitCode, Failure> {
    let EnrollArgs {
        collector,
        token,
        ca,
        ca_fingerprint,
        state: _,
    } = args;
    let result = match (ca, ca_fingerprint) {
        (Some(ca), _) => {
            rounds_agent::enroll(EnrollOptions {
                collector,
                token,
                ca_file: ca,
                state_dir: state_dir.clone(),
                hostname: None,
            })
            .await
        }
        (None, Some(fp)) => {
            rounds_agent::enroll_by_fingerprint(rounds_agent::FingerprintEnrollOptions {
                collector,
                token,
                ca_fingerprint: fp,
                state_dir: state_dir.clone(),
                hostname: None,
            })
            .await
        }
        (None, None) => {
            return Err(Failure::config(anyhow::anyhow!(
                "give the collector's CA: --ca FILE or --ca-fingerprint SHA256"
            )));
        }
    };
    match result {
        Ok(identity) => {
            println!("enrolled as agent {}", identity.agent_id);
            println!("practice: {}", identity.practice);
            println!("site: {}", identity.site);
            println!("state dir: {}", state_dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if e.is_usage() => Err(Failure::config(e)),
        Err(e) => Err(Failure::runtime(e)),
    }
}

/// The service's state dir: `--state-dir`, else the platform's service default; both as the
/// service will see them (under `--root` on disk).
fn service_state_dir(arg: &StateDirArg, platform: rounds_agent::service::Platform) -> PathBuf {
    arg.state_dir.clone().unwrap_or_else(|| platform.default_state_dir())
}

fn this_platform() -> Result<rounds_agent::service::Platform, Failure> {
    rounds_agent::service::Platform::current().ok_or_else(|| {
        Failure::config(rounds_agent::service::ServiceError::Unsupported(
            std::env::consts::OS.into(),
        ))
    })
}

fn this_exe() -> Result<PathBuf, Failure> {
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| Failure::runtime(anyhow::anyhow!("cannot tell where this binary is: {e}")))?;
    // Windows (issue 19): canonicalize gives `\\?\C:\...`; the SCM's binPath wants `C:\...`.
    #[cfg(windows)]
    if let Some(plain) = exe.to_str().and_then(|s| s.strip_prefix(r"\\?\"))
        && plain.as_bytes().get(1) == Some(&b':')
    {
        return Ok(PathBuf::from(plain));
    }
    Ok(exe)
}

async fn install(args: InstallArgs) -> Result<ExitCode, Failure> {
    use rounds_agent::service;
    let InstallArgs { enroll, config, root } = args;
    let platform = this_platform()?;
    let logical_state = service_state_dir(&enroll.state, platform);
    let spec = service::ServiceSpec {
        platform,
        exe: this_exe()?,
        state_dir: logical_state.clone(),
        config,
    };
    // The definition is checked before the token is spent.
    let plan = service::install_plan(&spec).map_err(Failure::config)?;
    let code = enroll_into(enroll, service::under(&root, &logical_state)).await?;
    let outcome = service::execute(&plan, &root, &service::SystemRunner).map_err(Failure::runtime)?;
    report_outcome(&outcome, &root);
    Ok(code)
}

fn uninstall(args: UninstallArgs) -> Result<ExitCode, Failure> {
    use rounds_agent::service;
    let UninstallArgs { purge, state, root } = args;
    let platform = this_platform()?;
    let plan = service::uninstall_plan(platform, &service_state_dir(&state, platform), purge);
    let outcome = service::execute(&plan, &root, &service::SystemRunner).map_err(Failure::runtime)?;
    report_outcome(&outcome, &root);
    if !purge {
        println!("state kept (identity, spool, cached configuration); `uninstall --purge` removes it");
    }
    Ok(ExitCode::SUCCESS)
}

fn report_outcome(outcome: &rounds_agent::service::Outcome, root: &std::path::Path) {
    for line in &outcome.done {
        println!("{line}");
    }
    if !outcome.skipped.is_empty() {
        let why = if root == std::path::Path::new("/") {
            "not found on this machine"
        } else {
            "not run for an install under --root"
        };
        println!("commands {why}; run them to finish:");
        for cmd in &outcome.skipped {
            println!("  {cmd}");
        }
    }
}

fn service_file(args: ServiceFileArgs) -> Result<ExitCode, Failure> {
    use rounds_agent::service;
    let ServiceFileArgs {
        platform,
        exe,
        state,
        config,
    } = args;
    let platform = match platform {
        Some(p) => p,
        None => this_platform()?,
    };
    let spec = service::ServiceSpec {
        platform,
        exe: match exe {
            Some(e) => e,
            None => this_exe()?,
        },
        state_dir: service_state_dir(&state, platform),
        config,
    };
    print!("{}", service::render(&spec).map_err(Failure::config)?);
    Ok(ExitCode::SUCCESS)
}

/// Test hook (not for production): while the file this names exists, spool writes fail as on
/// a full disk. Used by the end-to-end tests where no small file system can be mounted; only
/// in builds with the non-default `test-hooks` feature (which `cargo test --workspace` turns on
/// through the root package's dev-dependency), never in `cargo build --profile agent`.
#[cfg(feature = "test-hooks")]
const SPOOL_FAULT_ENV: &str = "ROUNDS_AGENT_TEST_SPOOL_FAIL_WHILE";

async fn run(args: RunArgs) -> Result<ExitCode, Failure> {
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    run_agent(args, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// The agent until `shutdown` is cancelled (a signal, or the Windows service's Stop).
async fn run_agent(args: RunArgs, shutdown: CancellationToken) -> Result<(), Failure> {
    let RunArgs {
        state,
        config,
        service: _,
    } = args;
    let dir = state_dir(state)?;
    let announced = state::StateDir::new(&dir)
        .load_identity()
        .ok()
        .and_then(|i| i.heartbeat_interval_secs)
        .map(std::time::Duration::from_secs);
    let local = match &config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| {
                Failure::config(config::ConfigError::Read {
                    path: path.clone(),
                    source,
                })
            })?;
            config::parse(&text, path).map_err(Failure::config)?;
            Some(rounds_agent::central::LocalConfig {
                path: path.clone(),
                text,
            })
        }
        None => None,
    };
    // Without central configuration yet: the local file, else defaults with the interval the
    // collector announced at enrollment.
    let settings = rounds_agent::central::combine(None, local.as_ref(), announced)
        .map_err(|e| Failure::config(anyhow::anyhow!(e)))?;
    let mut opts = RunOptions::new(dir, settings);
    opts.local_config = local;
    #[cfg(feature = "test-hooks")]
    {
        opts.spool_fail_writes_while = std::env::var_os(SPOOL_FAULT_ENV).map(PathBuf::from);
    }
    rounds_agent::run(opts, shutdown).await.map_err(Failure::runtime)
}

/// Cancels `shutdown` on the first SIGINT or SIGTERM; exits at once on the second.
async fn watch_signals(shutdown: CancellationToken) {
    if let Err(e) = shutdown_signal().await {
        tracing::error!(error = %e, "cannot listen for signals");
        return;
    }
    tracing::info!("shutting down, send the signal again to exit at once");
    shutdown.cancel();
    if shutdown_signal().await.is_ok() {
        tracing::warn!("second signal, exiting now");
        std::process::exit(130);
    }
}

/// Waits for SIGINT or SIGTERM (Ctrl-C elsewhere).
async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        // `recv` yields `None` when the runtime shuts down: that is no signal.
        tokio::select! {
            Some(()) = term.recv() => Ok(()),
            Some(()) = int.recv() => Ok(()),
            else => anyhow::bail!("signal streams closed"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.context("Ctrl-C handler")
    }
}

fn status(args: StateDirArg) -> Result<ExitCode, Failure> {
    let dir = state_dir(args)?;
    let status = rounds_agent::status(&dir).map_err(Failure::runtime)?;
    print!("{status}");
    Ok(if status.is_enrolled() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    })
}

fn validate(args: ValidateArgs) -> Result<ExitCode, Failure> {
    let settings = config::load(&args.config).map_err(Failure::config)?;
    let AgentSettings {
        heartbeat_interval,
        checks,
        config: _,
    } = &settings;
    println!("{}: ok", args.config.display());
    println!("heartbeat interval: {}s", heartbeat_interval.as_secs());
    for c in checks {
        println!("check {}: {}", c.name(), c.schedule.source());
    }
    Ok(ExitCode::SUCCESS)
}
