//! `rounds-collector`: parse arguments, set up logging, load configuration, call the library.
//!
//! Exit codes: 0 success, 64 bad configuration or usage, 1 runtime failure.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rounds_collector::config::{self, Overrides};
use rounds_collector::store::Role;
use rounds_collector::{admin, serve};
use rounds_policies::Pack;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "rounds-collector",
    version,
    about = "Rounds collector: ingest, store, dashboard"
)]
struct Cli {
    /// Configuration file (TOML).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Data directory (database, TLS material); overrides the file.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the agent API, the automation API and the dashboard over HTTPS.
    Serve {
        /// Address to listen on, e.g. 0.0.0.0:8443; overrides the file.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Check the configuration file and exit.
    Validate,
    /// Enrollment tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Dashboard users.
    #[command(subcommand)]
    User(UserCmd),
    /// API keys for automation.
    #[command(subcommand)]
    Apikey(ApikeyCmd),
    /// Policy settings per practice and per site: profile and overrides.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Central agent configuration per practice and per site (the agent's own TOML format).
    #[command(subcommand)]
    AgentConfig(AgentConfigCmd),
    // --- Security: revocation (issue 15) ---
    /// Enrolled agents.
    #[command(subcommand)]
    Agent(AgentCmd),
    /// Incidents of the alert engine: list, acknowledge, resolve.
    #[command(subcommand)]
    Incident(IncidentCmd),
    // --- alerting: notification channels (notify) ---
    /// Alerting: notification channels.
    #[command(subcommand)]
    Alert(AlertCmd),
    // --- Compliance reports (issue 14) ---
    /// Issue a compliance report of a practice for a period, or verify an issued file.
    Report(ReportArgs),
    // Backup and restore (deploy).
    /// Write a consistent copy of the store to FILE (a new file), also while serving.
    Backup {
        /// The backup file to create.
        file: PathBuf,
    },
    /// Replace the store with a backup; refuses while a collector serves the data dir, and
    /// refuses a store that holds data without --force.
    Restore {
        /// The backup file (made by `rounds-collector backup`).
        file: PathBuf,
        /// Replace a store that holds agents or reports.
        #[arg(long)]
        force: bool,
    },
    // Tamper acknowledgement (core, issue 11).
    /// Audit-log integrity: acknowledge tamper events reported by agents.
    #[command(subcommand)]
    Audit(AuditCmd),
    // Runtime silences (alerting, issue 12).
    /// Silences created at run time: hold the notifications of the incidents they select for a
    /// period (incidents are still recorded).
    #[command(subcommand)]
    Silence(SilenceCmd),
    // PostgreSQL backend (issue 17).
    /// Bring the store's schema up to this build's version (SQLite in the data dir, or the
    /// PostgreSQL database of `database_url` / ROUNDS_DATABASE_URL) and print the versions.
    Migrate,
    // Export and import between stores (issue 17).
    /// Write every table of the store (SQLite in the data dir, or the PostgreSQL database of
    /// `database_url` / ROUNDS_DATABASE_URL) to FILE, a new file of JSON lines, to import into
    /// another store (e.g. to move from SQLite to PostgreSQL).
    Export {
        /// The export file to create.
        file: PathBuf,
    },
    /// Copy an export FILE into the store, in one transaction. Refuses a file of another
    /// schema version, and a store that holds data unless --replace. Stop the collectors
    /// using the store first.
    Import {
        /// The export file (made by `rounds-collector export`).
        file: PathBuf,
        /// Delete everything the store holds first (in the same transaction).
        #[arg(long)]
        replace: bool,
    },
    // Retention (issue 17).
    /// Retention of observations and records (`[retention]`): roll up and remove what is
    /// older than the settings say.
    #[command(subcommand)]
    Retention(RetentionCmd),
}

/// Retention (issue 17).
#[derive(Debug, Subcommand)]
enum RetentionCmd {
    /// Run retention once now and print what it removed per table. Refused while a collector
    /// holds the retention lease (a serving collector runs it every `interval_minutes`).
    Run {
        /// Print what a run would remove, per table, and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Runtime silences (alerting, issue 12).
#[derive(Debug, Subcommand)]
enum SilenceCmd {
    /// Silence the incidents the matchers select (give at least one) for a period.
    Add {
        /// The practice's name.
        #[arg(long)]
        practice: Option<String>,
        /// The site's name.
        #[arg(long)]
        site: Option<String>,
        /// An incident source such as agent_offline, site_offline, ehr_endpoint, backup.
        #[arg(long)]
        source: Option<String>,
        /// An incident's subject, or an agent id (every incident of that machine).
        #[arg(long)]
        subject: Option<String>,
        /// RFC 3339 start (default: now).
        #[arg(long)]
        start: Option<String>,
        /// RFC 3339 end (or --duration).
        #[arg(long)]
        end: Option<String>,
        /// How long, such as 90m, 2h or 1d (or --end).
        #[arg(long)]
        duration: Option<String>,
        /// Why (kept in the timelines and the audit log).
        #[arg(long)]
        reason: String,
        /// Who creates it.
        #[arg(long, default_value = "cli")]
        by: String,
    },
    /// Silences not over yet, newest first (all of them with --all).
    List {
        #[arg(long)]
        all: bool,
    },
    /// End a silence early: what it held goes out now.
    End {
        id: i64,
        #[arg(long, default_value = "cli")]
        by: String,
    },
}

// Tamper acknowledgement (core, issue 11).
#[derive(Debug, Subcommand)]
enum AuditCmd {
    /// Acknowledge a tamper event of an agent's watched log; its log-integrity finding is held
    /// failing until then. Who and why are kept in the finding history and the audit log.
    Ack {
        /// The agent id (as listed by `GET /api/v1/agents`).
        #[arg(long)]
        agent: String,
        /// The tamper event id (`last_tamper.id` in the agent's audit.log observation).
        #[arg(long)]
        tamper: String,
        /// Why the change to the log is accepted.
        #[arg(long)]
        reason: String,
        /// The person acknowledging.
        #[arg(long)]
        by: String,
    },
}

/// Enrolled agents (issue 15).
#[derive(Debug, Subcommand)]
enum AgentCmd {
    /// Revoke an agent's credentials: its next request is refused and it stops. Its history
    /// stays; enroll the machine again with a new token to bring it back.
    Revoke {
        /// The agent id (as listed on the dashboard or by GET /api/v1/agents).
        agent_id: String,
    },
}

/// Alerting (issue 12).
#[derive(Debug, Subcommand)]
enum IncidentCmd {
    /// List incidents, newest first.
    List {
        /// `open`, `acknowledged`, `resolved` or `active`.
        #[arg(long)]
        state: Option<String>,
    },
    /// Acknowledge an open incident.
    Ack {
        id: i64,
        /// Who acknowledges (shown in the timeline).
        #[arg(long, default_value = "cli")]
        by: String,
    },
    /// Resolve an incident (the only way for an audit-log tamper incident).
    Resolve {
        id: i64,
        #[arg(long, default_value = "cli")]
        by: String,
        /// Why, for the timeline.
        #[arg(long)]
        note: Option<String>,
    },
}

/// `alert` subcommands (notify: channels).
#[derive(Debug, Subcommand)]
enum AlertCmd {
    /// Send a test notification through a configured [[channel]] and say whether it was delivered.
    Test {
        /// The channel's `name` in the configuration file.
        #[arg(long)]
        channel: String,
    },
}

// --- Compliance reports (issue 14) ---
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
struct ReportArgs {
    #[command(subcommand)]
    command: Option<ReportCmd>,
    /// The practice's name.
    #[arg(long)]
    practice: Option<String>,
    /// First day of the period, YYYY-MM-DD (UTC).
    #[arg(long)]
    from: Option<String>,
    /// Last day of the period, YYYY-MM-DD (UTC, inclusive).
    #[arg(long)]
    to: Option<String>,
    /// pdf, html or csv.
    #[arg(long, default_value = "pdf")]
    format: String,
    /// Where to write the report.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum ReportCmd {
    /// Say whether FILE is a report this collector issued, unchanged (exit 0), or not (exit 1).
    Verify { file: PathBuf },
}

#[derive(Debug, Subcommand)]
enum AgentConfigCmd {
    /// Validate an agent configuration file and store it as the practice's or site's new version.
    Set {
        #[arg(long)]
        practice: String,
        /// The site; without it the configuration is the practice's.
        #[arg(long)]
        site: Option<String>,
        /// The agent configuration file (TOML, as `rounds-agent validate` reads it).
        #[arg(long)]
        file: PathBuf,
    },
    /// Print what is set for a practice or site, its history, and the effective configuration.
    Show {
        #[arg(long)]
        practice: String,
        #[arg(long)]
        site: Option<String>,
    },
    /// Remove a practice's or site's configuration (kept in the history).
    Clear {
        #[arg(long)]
        practice: String,
        #[arg(long)]
        site: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCmd {
    /// Validate and store a practice's or site's profile and overrides; what is not given stays.
    Set {
        #[arg(long)]
        practice: String,
        /// The site; without it the settings are the practice's.
        #[arg(long)]
        site: Option<String>,
        /// Pack profile, e.g. hipaa-2025-proposed (practice level only).
        #[arg(long, conflicts_with_all = ["clear_profile", "site"])]
        profile: Option<String>,
        /// Remove the practice's profile.
        #[arg(long, conflicts_with = "site")]
        clear_profile: bool,
        /// Overrides file (TOML: parameter changes, accepted risks); replaces the previous one.
        #[arg(long, conflicts_with = "clear_overrides")]
        overrides: Option<PathBuf>,
        /// Remove the overrides.
        #[arg(long)]
        clear_overrides: bool,
    },
    /// Print a practice's or site's settings and the effective changes to the built-in policy.
    Show {
        #[arg(long)]
        practice: String,
        #[arg(long)]
        site: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCmd {
    /// Create a one-time enrollment token for a site; the token is the last line of output.
    Create {
        #[arg(long)]
        practice: String,
        #[arg(long)]
        site: String,
        /// Lifetime, e.g. 30m, 24h, 7d.
        #[arg(long, default_value = "24h")]
        expires: String,
        /// The collector URL agents reach, for the printed install command
        /// [default: https://HOSTNAME:PORT of this machine and the listen port].
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum UserCmd {
    /// Add a dashboard user; prints the generated password once.
    Add {
        username: String,
        /// admin, technician or practice_manager.
        #[arg(long, default_value = "technician")]
        role: String,
        /// The practice a practice_manager may see.
        #[arg(long)]
        practice: Option<String>,
    },
    /// Set a new generated password (printed once) and end the user's sessions.
    ResetPassword { username: String },
    /// Remove a user and end their sessions (issue 15).
    Remove { username: String },
}

#[derive(Debug, Subcommand)]
enum ApikeyCmd {
    /// Create an API key; the key is the last line of output.
    Create {
        /// admin, technician or practice_manager.
        #[arg(long)]
        role: String,
        /// The practice a practice_manager key may see.
        #[arg(long)]
        practice: Option<String>,
        /// What the key is for.
        #[arg(long, default_value = "api")]
        label: String,
        /// Lifetime, e.g. 90d; without it the key does not expire.
        #[arg(long)]
        expires: Option<String>,
    },
    /// Revoke an API key by its id (as printed by `apikey create` and `apikey list`).
    Revoke { id: i64 },
    /// List API keys: id, label, role, expiry, revocation (never the keys).
    List,
}

const EX_CONFIG: u8 = 64;

fn role(s: &str) -> Result<Role, ExitCode> {
    Role::parse(s).ok_or_else(|| {
        eprintln!("error: unknown role `{s}`; use admin, technician or practice_manager");
        ExitCode::from(EX_CONFIG)
    })
}

/// Ingest throughput (core, issue 7): mimalloc instead of glibc's malloc, where malloc and free
/// were a quarter of the collector's cycles; +20 to 40 % reports/s, about a quarter more peak
/// memory (BENCHMARKS.md, "The writer's share").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

async fn run(cli: Cli) -> Result<(), ExitCode> {
    let listen = match &cli.command {
        Command::Serve { listen } => listen.clone(),
        _ => None,
    };
    let overrides = Overrides {
        data_dir: cli.data_dir.clone(),
        listen,
    };
    let settings = config::load(cli.config.as_deref(), &overrides).map_err(|e| {
        eprintln!("error: invalid configuration:\n{e}");
        ExitCode::from(EX_CONFIG)
    })?;
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    };
    match cli.command {
        Command::Validate => {
            println!("configuration ok");
            Ok(())
        }
        Command::Serve { .. } => {
            serve::ensure_data_dir(&settings.data_dir).map_err(|e| fail(&e))?;
            // Held while serving, so `restore` cannot replace the store under a running server.
            let _serve_lock = rounds_collector::deploy::ServeLock::acquire(&settings.data_dir).map_err(|e| fail(&e))?;
            let listener = serve::bind(settings.listen).map_err(|e| fail(&e))?;
            let prepared = serve::prepare(settings).await.map_err(|e| fail(&e))?;
            let addr = listener.local_addr().map_err(|e| fail(&e))?;
            tracing::info!(fingerprint = %prepared.tls.fingerprint, ca = ?prepared.tls.ca_file, "TLS ready; agents enroll with this CA");
            println!("rounds-collector serving on https://{addr}");
            if let Some(ca) = &prepared.tls.ca_file {
                println!(
                    "CA certificate: {} (SHA-256 {})",
                    ca.display(),
                    prepared.tls.fingerprint
                );
            }
            if let Some(pw) = &prepared.initial_admin_password {
                println!("first start: dashboard user `admin` created with password: {pw}");
                println!("(shown once; `rounds-collector user reset-password admin` sets a new one)");
            }
            let shutdown = CancellationToken::new();
            let s = shutdown.clone();
            tokio::spawn(async move {
                serve::shutdown_signal().await;
                tracing::info!("shutting down");
                s.cancel();
            });
            serve::run(prepared, listener, shutdown).await.map_err(|e| fail(&e))
        }
        Command::Token(TokenCmd::Create {
            practice,
            site,
            expires,
            url,
        }) => {
            let expires = config::parse_duration(&expires).map_err(|e| {
                eprintln!("error: --expires: {e}");
                ExitCode::from(EX_CONFIG)
            })?;
            let store = serve::open_store(&settings).await.map_err(|e| fail(&e))?;
            let token = admin::token_create(store.as_ref(), &practice, &site, expires)
                .await
                .map_err(|e| fail(&e))?;
            println!(
                "enrollment token for {practice} / {site}, valid {}s, one use:",
                expires.as_secs()
            );
            // The install command with the CA fingerprint (deploy); the token stays the last line.
            match rounds_collector::deploy::ca_fingerprint(&settings) {
                Some(fp) => {
                    let url = rounds_collector::deploy::public_url(url.as_deref(), &settings);
                    println!("install on a machine of this site, as root (or Administrator):");
                    println!("  {}", rounds_collector::deploy::install_command(&url, &token, &fp));
                }
                None => println!("(no CA yet: start `rounds-collector serve` once to print the install command)"),
            }
            println!("{token}");
            Ok(())
        }
        Command::User(UserCmd::Add {
            username,
            role: r,
            practice,
        }) => {
            let r = role(&r)?;
            let store = serve::open_store(&settings).await.map_err(|e| fail(&e))?;
            let pw = admin::user_add(store.as_ref(), &username, r, practice.as_deref(), None)
                .await
                .map_err(|e| fail(&e))?;
            println!("user `{username}` added as {}; password (shown once):", r.as_str());
            println!("{pw}");
            Ok(())
        }
        Command::User(UserCmd::ResetPassword { username }) => {
            let store = serve::open_store(&settings).await.map_err(|e| fail(&e))?;
            let pw = admin::user_reset_password(store.as_ref(), &username)
                .await
                .map_err(|e| fail(&e))?;
            println!("new password for `{username}` (shown once):");
            println!("{pw}");
            Ok(())
        }
        Command::Apikey(cmd) => security_cmd(SecurityCmd::Apikey(cmd), &settings).await,
        Command::User(UserCmd::Remove { username }) => security_cmd(SecurityCmd::UserRemove(username), &settings).await,
        Command::Agent(cmd) => security_cmd(SecurityCmd::Agent(cmd), &settings).await,
        Command::Policy(cmd) => policy(cmd, &settings).await,
        Command::AgentConfig(cmd) => agent_config(cmd, &settings).await,
        Command::Incident(cmd) => incident(cmd, &settings).await,
        Command::Report(args) => report(args, &settings).await,
        // --- alerting: notification channels (notify) ---
        Command::Alert(AlertCmd::Test { channel }) => {
            use rounds_collector::notify::channels::{AlertTestError, alert_test};
            match alert_test(&settings, &channel).await {
                Ok(done) => {
                    println!("{done}");
                    Ok(())
                }
                Err(e @ AlertTestError::UnknownChannel(_)) => {
                    eprintln!("error: --channel: {e}");
                    Err(ExitCode::from(EX_CONFIG))
                }
                Err(e) => {
                    eprintln!("error: not delivered: {e}");
                    Err(ExitCode::FAILURE)
                }
            }
        }
        Command::Backup { file } => {
            // PostgreSQL backend (issue 17): its database is backed up with its own tools.
            if let Some(url) = &settings.database_url {
                eprintln!(
                    "error: the store is the PostgreSQL database {url}: back it up with pg_dump (e.g. `pg_dump -Fc -f rounds.dump DBNAME`), not `rounds-collector backup`"
                );
                return Err(ExitCode::from(EX_CONFIG));
            }
            let summary = rounds_collector::deploy::backup(&settings.data_dir, &file).map_err(|e| fail(&e))?;
            println!("backup written to {}: {summary}", file.display());
            println!("(keep the TLS files of the data dir too: ca.pem, ca/ca-key.pem, server.pem, server-key.pem)");
            Ok(())
        }
        Command::Restore { file, force } => {
            if let Some(url) = &settings.database_url {
                eprintln!(
                    "error: the store is the PostgreSQL database {url}: restore it with pg_restore, not `rounds-collector restore`"
                );
                return Err(ExitCode::from(EX_CONFIG));
            }
            let summary = rounds_collector::deploy::restore(&settings.data_dir, &file, force).map_err(|e| {
                eprintln!("error: {e}");
                if e.is_usage() {
                    ExitCode::from(EX_CONFIG)
                } else {
                    ExitCode::FAILURE
                }
            })?;
            println!(
                "restored {} into {}: {summary}",
                file.display(),
                settings.data_dir.display()
            );
            Ok(())
        }
        // Tamper acknowledgement (core, issue 11).
        Command::Audit(AuditCmd::Ack {
            agent,
            tamper,
            reason,
            by,
        }) => audit_ack(&settings, &agent, &tamper, &reason, &by).await,
        // Runtime silences (alerting, issue 12).
        Command::Silence(cmd) => silence(cmd, &settings).await,
        // PostgreSQL backend (issue 17).
        Command::Migrate => {
            let (_, m) = serve::open_store_migrated(&settings).await.map_err(|e| fail(&e))?;
            let which = match &settings.database_url {
                Some(url) => format!("PostgreSQL {url}"),
                None => format!("SQLite {}", settings.data_dir.join(serve::DB_FILE).display()),
            };
            if m.from == m.to {
                println!("{which}: schema version {} is up to date", m.to);
            } else {
                println!("{which}: schema migrated from version {} to {}", m.from, m.to);
            }
            Ok(())
        }
        // Export and import between stores (issue 17).
        Command::Export { file } => {
            let from = transfer_location(&settings).await?;
            let summary = transfer::export(&from, &file, chrono::Utc::now())
                .await
                .map_err(|e| transfer_failed(&e))?;
            println!("exported {from} to {}: {summary}", file.display());
            Ok(())
        }
        Command::Import { file, replace } => {
            let into = transfer_location(&settings).await?;
            let summary = transfer::import(&into, &file, replace)
                .await
                .map_err(|e| transfer_failed(&e))?;
            println!("imported {} into {into}: {summary}", file.display());
            for (table, rows) in &summary.tables {
                println!("  {table}: {rows}");
            }
            Ok(())
        }
        // Retention (issue 17).
        Command::Retention(RetentionCmd::Run { dry_run }) => retention_run(&settings, dry_run).await,
    }
}

/// `retention run [--dry-run]` (issue 17): one run under the retention lease, or its preview.
async fn retention_run(settings: &config::Settings, dry_run: bool) -> Result<(), ExitCode> {
    use rounds_collector::retention::RetentionService;
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    };
    let store = serve::open_store(settings).await.map_err(|e| fail(&e))?;
    let service = RetentionService::new(
        store,
        std::sync::Arc::new(rounds_collector::clock::SystemClock),
        settings.retention,
    );
    let report = if dry_run {
        service.preview().await.map_err(|e| fail(&e))?
    } else {
        let holder = format!("cli-{}", std::process::id());
        let ran = service
            .run_leased(&holder, std::time::Duration::from_secs(15 * 60))
            .await
            .map_err(|e| fail(&e))?;
        let Some(report) = ran else {
            eprintln!(
                "error: another collector holds the retention lease (a serving collector runs retention every {} \
                 minutes); nothing was changed",
                settings.retention.interval.as_secs() / 60
            );
            return Err(ExitCode::FAILURE);
        };
        service.release(&holder).await.map_err(|e| fail(&e))?;
        report
    };
    let c = &report.cutoffs;
    println!(
        "retention {} at {}: observations before {}, hourly rollups before {}, records before {}",
        if dry_run { "dry run" } else { "run" },
        report.at.to_rfc3339(),
        c.observations_before.to_rfc3339(),
        c.hourly_before.to_rfc3339(),
        c.records_before.to_rfc3339()
    );
    for line in report.lines() {
        println!("  {line}");
    }
    if !dry_run {
        println!(
            "  rollup rows written: {} (in {} units of work)",
            report.rollups_written, report.batches
        );
    }
    Ok(())
}

/// The alert engine of the `incident` and `silence` commands, over the configured store.
async fn cli_alert_engine(settings: &config::Settings) -> Result<rounds_collector::alerting::Engine, ExitCode> {
    let store = serve::open_store(settings).await.map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })?;
    Ok(rounds_collector::alerting::cli::engine(store, settings))
}

/// Runtime silences (alerting, issue 12): `silence add|list|end`.
async fn silence(cmd: SilenceCmd, settings: &config::Settings) -> Result<(), ExitCode> {
    use rounds_collector::alerting::{SilenceError, SilenceRequest, cli};
    let engine = cli_alert_engine(settings).await?;
    let out = match cmd {
        SilenceCmd::Add {
            practice,
            site,
            source,
            subject,
            start,
            end,
            duration,
            reason,
            by,
        } => {
            let req = SilenceRequest {
                practice,
                site,
                source,
                subject,
                start,
                end,
                duration,
                reason: Some(reason),
                by: None,
            };
            cli::silence_add(&engine, &req, &by).await
        }
        SilenceCmd::List { all } => cli::silence_list(&engine, all).await,
        SilenceCmd::End { id, by } => cli::silence_end(&engine, id, &by).await,
    };
    match out {
        Ok(text) => {
            print!("{text}");
            Ok(())
        }
        Err(SilenceError::Invalid(problems)) => {
            for p in problems {
                eprintln!("error: {p}");
            }
            Err(ExitCode::from(EX_CONFIG))
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// Alerting (issue 12): `incident list|ack|resolve`.
async fn incident(cmd: IncidentCmd, settings: &config::Settings) -> Result<(), ExitCode> {
    use rounds_collector::alerting::cli;
    let engine = cli_alert_engine(settings).await?;
    let out = match cmd {
        IncidentCmd::List { state } => {
            let states = rounds_collector::api::incidents::states(state.as_deref()).map_err(|e| {
                eprintln!("error: --state: {e}");
                ExitCode::from(EX_CONFIG)
            })?;
            cli::list(&engine, states).await
        }
        IncidentCmd::Ack { id, by } => cli::ack(&engine, id, &by).await,
        IncidentCmd::Resolve { id, by, note } => cli::resolve(&engine, id, &by, note.as_deref()).await,
    };
    match out {
        Ok(text) => {
            print!("{text}");
            Ok(())
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

// --- Compliance reports (issue 14) ---
async fn report(args: ReportArgs, settings: &config::Settings) -> Result<(), ExitCode> {
    use rounds_collector::reports::{self, Format, ReportService, Verification};
    let usage = |msg: String| {
        eprintln!("error: {msg}");
        ExitCode::from(EX_CONFIG)
    };
    let fail = |e: &reports::ReportError| {
        eprintln!("error: {e}");
        if e.is_usage() {
            ExitCode::from(EX_CONFIG)
        } else {
            ExitCode::FAILURE
        }
    };
    let pack = Pack::builtin().map_err(|e| {
        eprintln!("error: the built-in policy pack does not load: {e}");
        ExitCode::FAILURE
    })?;
    let store = serve::open_store(settings).await.map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })?;
    let service = ReportService::new(
        store,
        std::sync::Arc::new(pack),
        std::sync::Arc::new(rounds_collector::clock::SystemClock),
    );
    if let Some(ReportCmd::Verify { file }) = args.command {
        let bytes = std::fs::read(&file).map_err(|e| usage(format!("cannot read {}: {e}", file.display())))?;
        return match service.verify(&bytes).await.map_err(|e| fail(&e))? {
            Verification::Issued(r) => {
                println!(
                    "{}: issued by this collector and unchanged: report {} of {} for {} to {} ({}), issued {} by {}, content SHA-256 {}",
                    file.display(),
                    r.report_id,
                    r.practice,
                    r.period_from,
                    r.period_to,
                    r.format,
                    r.issued_at.to_rfc3339(),
                    r.issued_by,
                    r.content_sha256
                );
                Ok(())
            }
            Verification::Altered(r) => {
                println!(
                    "{}: NOT VALID: it names report {} of {} ({} to {}), but its bytes differ from the file issued (SHA-256 {}); it was changed after issue",
                    file.display(),
                    r.report_id,
                    r.practice,
                    r.period_from,
                    r.period_to,
                    r.file_sha256
                );
                Err(ExitCode::FAILURE)
            }
            Verification::Unknown { claimed_id } => {
                match claimed_id {
                    Some(id) => println!(
                        "{}: NOT VALID: report {id} was not issued by this collector",
                        file.display()
                    ),
                    None => println!("{}: NOT VALID: not a report issued by this collector", file.display()),
                }
                Err(ExitCode::FAILURE)
            }
        };
    }
    let practice = args
        .practice
        .ok_or_else(|| usage("--practice is required".to_string()))?;
    let from = args
        .from
        .ok_or_else(|| usage("--from is required (YYYY-MM-DD)".to_string()))?;
    let to = args
        .to
        .ok_or_else(|| usage("--to is required (YYYY-MM-DD)".to_string()))?;
    let out = args.out.ok_or_else(|| usage("--out FILE is required".to_string()))?;
    let format = Format::parse(&args.format).map_err(|e| fail(&e))?;
    let period = reports::parse_period(&from, &to).map_err(|e| fail(&e))?;
    let practice = service.practice(&practice).await.map_err(|e| fail(&e))?;
    // Write beside the target first, so a failure leaves no half-written file.
    let tmp = out.with_file_name(format!(
        ".{}.tmp",
        out.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let issued = service
        .issue(&practice, period, format, "cli", "report.issue")
        .await
        .map_err(|e| fail(&e))?;
    std::fs::write(&tmp, &issued.bytes)
        .and_then(|()| std::fs::rename(&tmp, &out))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            usage(format!("cannot write {}: {e}", out.display()))
        })?;
    println!(
        "report {} written to {} ({} bytes, SHA-256 {}); content SHA-256 {}",
        issued.record.report_id,
        out.display(),
        issued.record.size_bytes,
        issued.record.file_sha256,
        issued.record.content_sha256
    );
    Ok(())
}

async fn agent_config(cmd: AgentConfigCmd, settings: &config::Settings) -> Result<(), ExitCode> {
    use rounds_collector::agent_config as ac;
    let fail = |e: &ac::AgentConfigError| {
        eprintln!("error: {e}");
        if e.is_usage() {
            ExitCode::from(EX_CONFIG)
        } else {
            ExitCode::FAILURE
        }
    };
    let store = serve::open_store(settings).await.map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })?;
    let heartbeat = settings.heartbeat_interval.as_secs();
    let now = chrono::Utc::now();
    match cmd {
        AgentConfigCmd::Set { practice, site, file } => {
            let text = std::fs::read_to_string(&file).map_err(|e| {
                eprintln!("error: cannot read {}: {e}", file.display());
                ExitCode::from(EX_CONFIG)
            })?;
            let id = ac::set(
                store.as_ref(),
                heartbeat,
                &practice,
                site.as_deref(),
                &file,
                &text,
                "cli",
                now,
            )
            .await
            .map_err(|e| fail(&e))?;
            println!("agent configuration version {id} stored; agents fetch it at their next heartbeat");
        }
        AgentConfigCmd::Show { practice, site } => {
            let text = ac::show(store.as_ref(), heartbeat, &practice, site.as_deref())
                .await
                .map_err(|e| fail(&e))?;
            print!("{text}");
        }
        AgentConfigCmd::Clear { practice, site } => {
            let id = ac::clear(store.as_ref(), heartbeat, &practice, site.as_deref(), "cli", now)
                .await
                .map_err(|e| fail(&e))?;
            println!("agent configuration cleared (version {id}); the level below applies");
        }
    }
    Ok(())
}

async fn policy(cmd: PolicyCmd, settings: &config::Settings) -> Result<(), ExitCode> {
    let fail = |e: &admin::AdminError| {
        eprintln!("error: {e}");
        if e.is_usage() {
            ExitCode::from(EX_CONFIG)
        } else {
            ExitCode::FAILURE
        }
    };
    let pack = Pack::builtin().map_err(|e| {
        eprintln!("error: the built-in policy pack does not load: {e}");
        ExitCode::FAILURE
    })?;
    let store = serve::open_store(settings).await.map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })?;
    match cmd {
        PolicyCmd::Set {
            practice,
            site,
            profile,
            clear_profile,
            overrides,
            clear_overrides,
        } => {
            let overrides = overrides
                .map(|path| {
                    std::fs::read_to_string(&path)
                        .map(|text| admin::OverridesFile {
                            name: path.display().to_string(),
                            text,
                        })
                        .map_err(|e| {
                            eprintln!("error: cannot read {}: {e}", path.display());
                            ExitCode::from(EX_CONFIG)
                        })
                })
                .transpose()?;
            let change = admin::PolicyChange {
                practice,
                site,
                profile,
                clear_profile,
                overrides,
                clear_overrides,
            };
            let level = match &change.site {
                Some(s) => format!("{} / {s}", change.practice),
                None => change.practice.clone(),
            };
            let stored = admin::policy_set(store.as_ref(), &pack, change)
                .await
                .map_err(|e| fail(&e))?;
            match stored {
                Some(_) => println!("policy settings of {level} stored; they apply from each agent's next report"),
                None => println!("policy settings of {level} cleared; the built-in defaults apply"),
            }
            Ok(())
        }
        PolicyCmd::Show { practice, site } => {
            let text = admin::policy_show(store.as_ref(), &pack, &practice, site.as_deref())
                .await
                .map_err(|e| fail(&e))?;
            print!("{text}");
            Ok(())
        }
    }
}

// --- Security: revocation (issue 15) ---

enum SecurityCmd {
    Apikey(ApikeyCmd),
    UserRemove(String),
    Agent(AgentCmd),
}

async fn security_cmd(cmd: SecurityCmd, settings: &config::Settings) -> Result<(), ExitCode> {
    use rounds_collector::security::revoke;
    let fail = |e: &admin::AdminError| {
        eprintln!("error: {e}");
        if e.is_usage() {
            ExitCode::from(EX_CONFIG)
        } else {
            ExitCode::FAILURE
        }
    };
    let store = serve::open_store(settings).await.map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })?;
    let now = chrono::Utc::now();
    match cmd {
        SecurityCmd::Apikey(ApikeyCmd::Create {
            role: r,
            practice,
            label,
            expires,
        }) => {
            let r = role(&r)?;
            let expires = expires
                .map(|e| {
                    config::parse_duration(&e).map_err(|err| {
                        eprintln!("error: --expires: {err}");
                        ExitCode::from(EX_CONFIG)
                    })
                })
                .transpose()?;
            let k = revoke::apikey_create(store.as_ref(), r, practice.as_deref(), &label, expires, "cli", now)
                .await
                .map_err(|e| fail(&e))?;
            let until = k
                .expires_at
                .map_or_else(|| "no expiry".to_string(), |t| format!("expires {}", t.to_rfc3339()));
            println!(
                "API key #{} `{label}` with role {}, {until} (shown once):",
                k.id,
                r.as_str()
            );
            println!("{}", k.key);
        }
        SecurityCmd::Apikey(ApikeyCmd::Revoke { id }) => {
            let changed = revoke::apikey_revoke(store.as_ref(), id, "cli", now)
                .await
                .map_err(|e| fail(&e))?;
            println!(
                "API key #{id} {}",
                if changed { "revoked" } else { "was already revoked" }
            );
        }
        SecurityCmd::Apikey(ApikeyCmd::List) => {
            let keys = store.api_keys().await.map_err(|e| fail(&e.into()))?;
            for k in keys {
                let state = match (k.revoked_at, k.expires_at) {
                    (Some(t), _) => format!("revoked {}", t.to_rfc3339()),
                    (None, Some(t)) if t <= now => format!("expired {}", t.to_rfc3339()),
                    (None, Some(t)) => format!("expires {}", t.to_rfc3339()),
                    (None, None) => "no expiry".into(),
                };
                println!(
                    "#{}\t{}\t{}{}\t{state}",
                    k.id,
                    k.label,
                    k.role.as_str(),
                    k.practice.map(|p| format!(" ({p})")).unwrap_or_default()
                );
            }
        }
        SecurityCmd::UserRemove(username) => {
            revoke::user_remove(store.as_ref(), &username, "cli", now)
                .await
                .map_err(|e| fail(&e))?;
            println!("user `{username}` removed; their sessions ended");
        }
        SecurityCmd::Agent(AgentCmd::Revoke { agent_id }) => {
            let changed = revoke::agent_revoke(store.as_ref(), &agent_id, "cli", now)
                .await
                .map_err(|e| fail(&e))?;
            if changed {
                println!("agent {agent_id} revoked; its next request is refused and it stops");
            } else {
                println!("agent {agent_id} was already revoked");
            }
        }
    }
    Ok(())
}

// Tamper acknowledgement (core, issue 11).
async fn audit_ack(
    settings: &config::Settings,
    agent: &str,
    tamper: &str,
    reason: &str,
    by: &str,
) -> Result<(), ExitCode> {
    let store = serve::open_store(settings).await.map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })?;
    let state = rounds_collector::app::AppState::new(store, settings.clone()).map_err(|e| {
        eprintln!("error: the built-in policy pack does not load: {e}");
        ExitCode::FAILURE
    })?;
    let scope = rounds_collector::store::Scope {
        role: Role::Admin,
        practice_id: None,
    };
    let row = rounds_collector::tamper::acknowledge(&state.evaluator, &scope, "cli", agent, tamper, by, reason)
        .await
        .map_err(|e| {
            eprintln!("error: {e}");
            if e.is_usage() {
                ExitCode::from(EX_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        })?;
    println!(
        "tamper event {} ({} on {}, detected {}) of agent {agent} acknowledged by {by}; the log-integrity finding is re-evaluated",
        row.tamper_id,
        row.kind,
        row.path,
        row.detected_at.to_rfc3339()
    );
    Ok(())
}

// --- Export and import between stores (issue 17) ---

use rounds_collector::store::transfer;

/// The store of the configuration as a transfer location; a SQLite data dir and file are
/// created as `serve` creates them (mode 0600) when missing.
async fn transfer_location(settings: &config::Settings) -> Result<transfer::Location, ExitCode> {
    if let Some(url) = &settings.database_url {
        return Ok(transfer::Location::Postgres(url.expose().to_string()));
    }
    drop(serve::open_store(settings).await.map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })?);
    Ok(transfer::Location::Sqlite(settings.data_dir.join(serve::DB_FILE)))
}

fn transfer_failed(e: &transfer::TransferError) -> ExitCode {
    eprintln!("error: {e}");
    if e.is_usage() {
        ExitCode::from(EX_CONFIG)
    } else {
        ExitCode::FAILURE
    }
}
