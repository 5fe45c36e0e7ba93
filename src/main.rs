//! `rounds`: the demo command. `rounds demo` starts a collector on the embedded default
//! (SQLite in the data dir), enrolls an agent for this machine, runs it, prints the dashboard
//! address and a login, and stops both cleanly on Ctrl-C.
//!
//! Exit codes: 0 success, 64 bad usage, 1 runtime failure.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use rounds_collector::store::{Role, Scope};
use rounds_collector::{admin, config, serve};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "rounds",
    version,
    about = "Rounds: compliance and monitoring for small medical practices"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a collector and an agent for this machine, and print the dashboard's address and login.
    Demo {
        /// Where the demo keeps its database, TLS material and agent state.
        #[arg(long, default_value = "rounds-demo-data")]
        data_dir: PathBuf,
        /// Address for the dashboard and API; port 0 picks a free one.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rounds_agent=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Demo { data_dir, listen } => match demo(&data_dir, &listen).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

async fn demo(data_dir: &Path, listen: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    // Store times have millisecond precision; allow for a clock that rounds down.
    let started_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64 - 1)
        .unwrap_or(0);
    let overrides = config::Overrides {
        data_dir: Some(data_dir.to_path_buf()),
        listen: Some(listen.to_string()),
    };
    let settings = config::load(None, &overrides).context("invalid demo settings")?;
    let listener = match serve::bind(settings.listen) {
        Ok(l) => l,
        Err(e) if settings.listen.port() != 0 => {
            eprintln!("note: {e}; using a free port instead");
            serve::bind(std::net::SocketAddr::new(settings.listen.ip(), 0))?
        }
        Err(e) => return Err(e.into()),
    };
    let port = listener.local_addr()?.port();
    let prepared = serve::prepare(settings).await.context("cannot start the collector")?;
    let store = prepared.store.clone();
    let ca_file = prepared
        .tls
        .ca_file
        .clone()
        .context("the demo collector has no generated CA")?;
    let fingerprint = prepared.tls.fingerprint.clone();

    // The login printed by the demo: a `demo` admin with a fresh password each run.
    let password = match admin::user_add(store.as_ref(), "demo", Role::Admin, None, None).await {
        Ok(pw) => pw,
        Err(_) => admin::user_reset_password(store.as_ref(), "demo")
            .await
            .context("cannot set the demo login")?,
    };

    let shutdown = CancellationToken::new();
    let collector = tokio::spawn(serve::run(prepared, listener, shutdown.clone()));

    let url = format!("https://localhost:{port}");
    let state_dir = data_dir.join("agent");
    let enrolled_here = rounds_agent::StateDir::new(&state_dir)
        .load_identity()
        .map(|i| i.collector == url);
    if !matches!(enrolled_here, Ok(true)) {
        if state_dir.exists() {
            std::fs::remove_dir_all(&state_dir)
                .with_context(|| format!("cannot reset old agent state {}", state_dir.display()))?;
        }
        let token =
            admin::token_create(store.as_ref(), "Demo Practice", "Main Office", Duration::from_secs(600)).await?;
        rounds_agent::enroll(rounds_agent::EnrollOptions {
            collector: url.clone(),
            token,
            ca_file: ca_file.clone(),
            state_dir: state_dir.clone(),
            hostname: None,
        })
        .await
        .context("the demo agent could not enroll")?;
    }
    let agent_opts = rounds_agent::RunOptions::new(&state_dir, rounds_agent::AgentSettings::default());
    let agent = tokio::spawn(rounds_agent::run(agent_opts, shutdown.clone()));

    // Wait until this machine shows online, so the address printed is worth opening.
    let scope = Scope {
        role: Role::Admin,
        practice_id: None,
    };
    let mut online_after = None;
    for _ in 0..200 {
        let agents = store.agents(&scope).await?;
        // Seen and reported during this run, not only in an earlier one with the same data dir.
        let fresh = |t: Option<i64>| t.is_some_and(|ms| ms >= started_ms);
        if agents.iter().any(|a| {
            fresh(a.last_seen_at.map(|t| t.timestamp_millis())) && fresh(a.last_report_at.map(|t| t.timestamp_millis()))
        }) {
            online_after = Some(started.elapsed());
            break;
        }
        if agent.is_finished() || collector.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    println!();
    println!("Rounds demo is running.");
    println!("  dashboard: {url}/");
    println!("  login:     demo / {password}");
    println!("  CA:        {} (SHA-256 {fingerprint})", ca_file.display());
    println!("             your browser will warn: the collector made its own CA; trust it or proceed");
    println!("  data:      {}", data_dir.display());
    match online_after {
        Some(t) => println!(
            "  this machine is online on the dashboard ({:.1} s after start)",
            t.as_secs_f64()
        ),
        None => println!("  warning: this machine has not shown up yet; see the log above"),
    }
    println!("Press Ctrl-C to stop.");

    let mut collector = collector;
    let mut agent = agent;
    // Until Ctrl-C, or until either side stops on its own (which is a failure).
    let early: Option<anyhow::Result<()>> = tokio::select! {
        _ = serve::shutdown_signal() => None,
        r = &mut collector => Some(flatten("collector", r.map(|r| r.map_err(anyhow::Error::from)))),
        r = &mut agent => Some(flatten("agent", r.map(|r| r.map_err(anyhow::Error::from)))),
    };
    shutdown.cancel();
    if let Some(result) = early {
        result?;
        anyhow::bail!("the demo stopped on its own");
    }
    let (c, a) = tokio::join!(collector, agent);
    flatten("collector", c.map(|r| r.map_err(anyhow::Error::from)))?;
    flatten("agent", a.map(|r| r.map_err(anyhow::Error::from)))?;
    println!("Rounds demo stopped.");
    Ok(())
}

fn flatten(what: &str, r: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    r.with_context(|| format!("{what} task crashed"))?
        .with_context(|| format!("{what} failed"))
}
