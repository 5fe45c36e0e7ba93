//! `rounds-agent check`: run every check once, evaluate the policy pack locally, and print
//! the findings as a table or JSON.
//!
//! Every configured `[[endpoint]]` is probed once (with the probes' one retry) and judged with
//! the other observations; the network baseline is not, as it has no rule.
//!
//! Nothing is sent anywhere. Exit codes: 0 when every finding is pass or not applicable (or
//! covered by an accepted risk in force), 1 otherwise (a failure, or a check that could not
//! run), 2 when the run itself failed (bad configuration, broken pack).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rounds_policies::{CheckReport, EvalContext, Finding, LoadErrors, Os, Overrides, Pack, Policy, Status};

use crate::checks::{self, CommandRunner, Host};
use crate::config::AgentSettings;
use crate::probes::{self, Clock as _};

/// How to print the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

/// What `check` needs.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Host root to read (`/` on a real machine, a fixture tree in tests).
    pub root: PathBuf,
    /// Directory for state that checks comparing runs keep (created if missing).
    pub state_dir: Option<PathBuf>,
    /// A policy pack directory (or its `pack.toml`); the built-in HIPAA pack when `None`.
    pub policy: Option<PathBuf>,
    /// An opt-in profile of the pack, e.g. `hipaa-2025-proposed`.
    pub profile: Option<String>,
    /// Overrides files, applied in order (practice, then site).
    pub overrides: Vec<PathBuf>,
    /// Which checks run (from the agent's configuration).
    pub settings: AgentSettings,
    /// The evaluation time; the system clock when `None`.
    pub now: Option<DateTime<Utc>>,
}

/// Why the run itself failed (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("broken policy pack:\n{0}")]
    Pack(LoadErrors),
    #[error("cannot create state dir {path}: {source}")]
    StateDir { path: PathBuf, source: std::io::Error },
    #[error("host root {0} is not a directory")]
    Root(PathBuf),
}

/// Under a fixture root no command of this machine may run: its output would describe the
/// wrong host. Every command is reported as unavailable.
#[derive(Debug)]
struct NoCommands;

impl CommandRunner for NoCommands {
    fn run(&self, program: &str, _args: &[&str]) -> Result<String, String> {
        Err(format!(
            "{program}: commands are not run when reading another host root (--root)"
        ))
    }
}

fn load_policy(opts: &CheckOptions) -> Result<Policy, CheckError> {
    let pack = match &opts.policy {
        None => Pack::builtin(),
        Some(p) => {
            let dir = if p.is_file() {
                p.parent().unwrap_or(Path::new(".")).to_path_buf()
            } else {
                p.clone()
            };
            Pack::load_dir(dir)
        }
    }
    .map_err(CheckError::Pack)?;
    let overrides = opts
        .overrides
        .iter()
        .map(|f| Overrides::load(f, &pack))
        .collect::<Result<Vec<_>, _>>()
        .map_err(CheckError::Pack)?;
    let refs: Vec<&Overrides> = overrides.iter().collect();
    Policy::new(&pack, opts.profile.as_deref(), &refs).map_err(CheckError::Pack)
}

/// Runs the configured checks once and evaluates the policy.
pub async fn check(opts: CheckOptions) -> Result<CheckReport, CheckError> {
    let policy = load_policy(&opts)?;
    if !opts.root.is_dir() {
        return Err(CheckError::Root(opts.root.clone()));
    }
    if let Some(dir) = &opts.state_dir {
        std::fs::create_dir_all(dir).map_err(|source| CheckError::StateDir {
            path: dir.clone(),
            source,
        })?;
    }
    let now = opts.now.unwrap_or_else(Utc::now);
    let live = opts.root == Path::new("/");
    let runner: Arc<dyn CommandRunner> = if live {
        Arc::new(checks::SystemRunner)
    } else {
        Arc::new(NoCommands)
    };
    let host = Host {
        root: opts.root.clone(),
        runner,
        now,
        live,
        state_dir: opts.state_dir.clone(),
    };
    let selected: Vec<Arc<dyn checks::Check>> = opts.settings.checks.iter().map(|s| Arc::clone(&s.check)).collect();
    let mut observations = checks::run_all(&selected, &host).await;
    observations.extend(probe_endpoints(&opts.settings, &opts.root).await);
    let ctx = EvalContext::from_inventory(now, &observations).unwrap_or(EvalContext {
        now,
        os: Os::parse(std::env::consts::OS).unwrap_or(Os::Linux),
        role: None,
    });
    let findings = rounds_policies::evaluate(&observations, &policy, &ctx);
    Ok(CheckReport { findings, observations })
}

/// Probes every configured endpoint once, concurrently; one `ehr.probe` observation each, in
/// the order of the configuration.
async fn probe_endpoints(settings: &AgentSettings, root: &Path) -> Vec<rounds_protocol::Observation> {
    let endpoints = &settings.config.endpoints;
    if endpoints.is_empty() {
        return Vec::new();
    }
    let ctx = Arc::new(probes::ProbeContext::load(root));
    let permits = Arc::new(tokio::sync::Semaphore::new(probes::MAX_CONCURRENT));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, e) in endpoints.iter().enumerate() {
        let target = probes::Target::endpoint(e.clone(), &ctx);
        let (ctx, permits, stop) = (ctx.clone(), permits.clone(), stop.clone());
        tasks.spawn(async move {
            let clock = probes::SystemClock;
            let r = probes::probe_with_retry(&target, &ctx, &clock, probes::RETRY_DELAY, &permits, &stop).await;
            (i, r.map(|r| probes::observation(&target, &r, clock.now())))
        });
    }
    let mut out: Vec<(usize, rounds_protocol::Observation)> = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((i, Some(o))) = joined {
            out.push((i, o));
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, o)| o).collect()
}

/// Whether a finding lets `check` exit 0.
fn acceptable(f: &Finding, today: chrono::NaiveDate) -> bool {
    match f.status {
        Status::Pass | Status::NotApplicable => true,
        Status::Fail | Status::Error => f.exception.as_ref().is_some_and(|e| e.is_active(today)),
    }
}

/// The exit code for a report: 0 when every finding is acceptable, else 1.
pub fn exit_code(report: &CheckReport, now: DateTime<Utc>) -> u8 {
    if report.findings.iter().all(|f| acceptable(f, now.date_naive())) {
        0
    } else {
        1
    }
}

/// The report as pretty JSON.
pub fn render_json(report: &CheckReport) -> String {
    serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\": \"cannot render: {e}\"}}"))
}

fn compact_evidence(evidence: &serde_json::Value) -> String {
    use serde_json::Value;
    let list = |v: &Value| {
        v.as_array().map(|a| {
            a.iter()
                .map(|x| x.as_str().unwrap_or("?").to_string())
                .collect::<Vec<_>>()
        })
    };
    if let Some(missing) = evidence.get("missing").and_then(list).filter(|m| !m.is_empty()) {
        return format!("no {} observation", missing.join(", "));
    }
    // The values of the first subject that decided the verdict: a failing one if any.
    let observations = evidence
        .get("observations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let decisive = observations
        .iter()
        .find(|o| o.get("result").and_then(Value::as_str) != Some("pass"))
        .or_else(|| observations.first());
    let Some(o) = decisive else { return String::new() };
    let subject = o.get("subject").and_then(Value::as_str).unwrap_or("");
    let values = o
        .get("values")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| {
                    format!(
                        "{k}={}",
                        v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())
                    )
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let more = if observations.len() > 1 {
        format!(" (+{} more)", observations.len() - 1)
    } else {
        String::new()
    };
    truncate(&format!("{subject}: {values}{more}"), 80)
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

/// The report as a table for a person: rule, status, severity, citation, evidence; the
/// message and remediation of every finding that is not a pass below it.
pub fn render_table(report: &CheckReport) -> String {
    let mut out = String::new();
    let rule_w = report.findings.iter().map(|f| f.rule.len()).max().unwrap_or(4).max(4);
    let _ = writeln!(
        out,
        "{:<rule_w$}  {:<14}  {:<8}  {:<22}  EVIDENCE",
        "RULE", "STATUS", "SEVERITY", "CITATION"
    );
    for f in &report.findings {
        let status = match (&f.status, &f.exception) {
            (s, Some(_)) if *s != Status::Pass => format!("{}*", f.status),
            _ => f.status.to_string(),
        };
        let citation = f.citations.first().cloned().unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<rule_w$}  {:<14}  {:<8}  {:<22}  {}",
            f.rule,
            status,
            f.severity.as_str(),
            citation,
            compact_evidence(&f.evidence)
        );
    }
    let attention: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|f| !matches!(f.status, Status::Pass | Status::NotApplicable))
        .collect();
    if !attention.is_empty() {
        let _ = writeln!(out);
        for f in attention {
            let _ = writeln!(out, "{} ({}): {}", f.rule, f.status, f.message);
            if let Some(e) = &f.exception {
                let _ = writeln!(
                    out,
                    "  * accepted risk until {} by {}: {} (an exception, not a pass)",
                    e.expires, e.accepted_by, e.reason
                );
            }
            if f.status == Status::Fail
                && let Some(r) = &f.remediation
            {
                let _ = writeln!(out, "  fix: {r}");
            }
        }
    }
    let count = |s: Status| report.findings.iter().filter(|f| f.status == s).count();
    let _ = writeln!(
        out,
        "\n{} rules: {} pass, {} fail, {} error, {} not applicable",
        report.findings.len(),
        count(Status::Pass),
        count(Status::Fail),
        count(Status::Error),
        count(Status::NotApplicable)
    );
    out
}
