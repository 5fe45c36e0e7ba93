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
    // Tamper acknowledgement (core, issue 11).
    /// Audit-log integrity: acknowledge tamper events reported by agents.
    #[command(subcommand)]
    Audit(AuditCmd),
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
    },
}

const EX_CONFIG: u8 = 64;

fn role(s: &str) -> Result<Role, ExitCode> {
    Role::parse(s).ok_or_else(|| {
        eprintln!("error: unknown role `{s}`; use admin, technician or practice_manager");
        ExitCode::from(EX_CONFIG)
    })
}

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
        }) => {
            let expires = config::parse_duration(&expires).map_err(|e| {
                eprintln!("error: --expires: {e}");
                ExitCode::from(EX_CONFIG)
            })?;
            let store = serve::open_store(&settings.data_dir).map_err(|e| fail(&e))?;
            let token = admin::token_create(store.as_ref(), &practice, &site, expires)
                .await
                .map_err(|e| fail(&e))?;
            println!(
                "enrollment token for {practice} / {site}, valid {}s, one use:",
                expires.as_secs()
            );
            println!("{token}");
            Ok(())
        }
        Command::User(UserCmd::Add {
            username,
            role: r,
            practice,
        }) => {
            let r = role(&r)?;
            let store = serve::open_store(&settings.data_dir).map_err(|e| fail(&e))?;
            let pw = admin::user_add(store.as_ref(), &username, r, practice.as_deref(), None)
                .await
                .map_err(|e| fail(&e))?;
            println!("user `{username}` added as {}; password (shown once):", r.as_str());
            println!("{pw}");
            Ok(())
        }
        Command::User(UserCmd::ResetPassword { username }) => {
            let store = serve::open_store(&settings.data_dir).map_err(|e| fail(&e))?;
            let pw = admin::user_reset_password(store.as_ref(), &username)
                .await
                .map_err(|e| fail(&e))?;
            println!("new password for `{username}` (shown once):");
            println!("{pw}");
            Ok(())
        }
        Command::Apikey(ApikeyCmd::Create {
            role: r,
            practice,
            label,
        }) => {
            let r = role(&r)?;
            let store = serve::open_store(&settings.data_dir).map_err(|e| fail(&e))?;
            let key = admin::apikey_create(store.as_ref(), r, practice.as_deref(), &label)
                .await
                .map_err(|e| fail(&e))?;
            println!("API key `{label}` with role {} (shown once):", r.as_str());
            println!("{key}");
            Ok(())
        }
        Command::Policy(cmd) => policy(cmd, &settings.data_dir).await,
        Command::AgentConfig(cmd) => agent_config(cmd, &settings).await,
        // Tamper acknowledgement (core, issue 11).
        Command::Audit(AuditCmd::Ack {
            agent,
            tamper,
            reason,
            by,
        }) => audit_ack(&settings, &agent, &tamper, &reason, &by).await,
    }
}

// Tamper acknowledgement (core, issue 11).
async fn audit_ack(
    settings: &config::Settings,
    agent: &str,
    tamper: &str,
    reason: &str,
    by: &str,
) -> Result<(), ExitCode> {
    let store = serve::open_store(&settings.data_dir).map_err(|e| {
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
    let store = serve::open_store(&settings.data_dir).map_err(|e| {
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

async fn policy(cmd: PolicyCmd, data_dir: &std::path::Path) -> Result<(), ExitCode> {
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
    let store = serve::open_store(data_dir).map_err(|e| {
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
