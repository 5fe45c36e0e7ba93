//! One simulation run: assemble the fleet, plan the faults, run every agent as a task until the
//! run's time is up (or `shutdown`), then gather the figures, the collector's own gauges and
//! the agents' credentials.
//!
//! A simulated agent does what `rounds-agent run` does on the wire: enroll once with its token,
//! send a heartbeat every interval (fetching the configuration when the announced `ETag`
//! changes), and queue one report per check run, numbered when queued, delivered in order and
//! retried until acknowledged. Reports queued while the agent cannot reach the collector wait
//! in a bounded queue (the oldest is dropped when it is full, as the agent's outbox does).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use rand::rngs::StdRng;
use rounds_protocol::{
    AgentConfig, EnrollRequest, EnrollResponse, Heartbeat, HeartbeatAck, PROTOCOL_MAJOR, Report, ReportAck, paths,
};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, warn};

use crate::client::{ClientError, Credentials, SimClient};
use crate::config::SimConfig;
use crate::faults::{self, AgentFaults};
use crate::fleet::{self, FleetError, Identity, Profile, Saved};
use crate::payload;
use crate::stats::{Kind, Recorder, Summary};

/// The agent version simulated agents announce.
pub const AGENT_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "-sim");
/// Reports an agent keeps while it cannot deliver them.
pub const QUEUE_LIMIT: usize = 256;
/// How often an agent probes its EHR endpoint at most, so a state change is seen within this
/// time (or within one heartbeat interval, when that is shorter).
pub const PROBE_INTERVAL: Duration = Duration::from_secs(30);
/// Attempts at enrolling before an agent gives up.
const ENROLL_ATTEMPTS: u32 = 4;

/// Why a run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("credentials in {path} are for the collector at {theirs}, not {ours}")]
    OtherCollector {
        path: PathBuf,
        theirs: String,
        ours: String,
    },
    #[error(transparent)]
    Fleet(#[from] FleetError),
    #[error(transparent)]
    Client(#[from] ClientError),
}

struct Ctx {
    config: SimConfig,
    client: SimClient,
    t0: Instant,
    stop: CancellationToken,
}

struct SimAgent {
    identity: Identity,
    profile: Profile,
    faults: AgentFaults,
    start: Duration,
    rng: StdRng,
}

/// Runs the simulation described by `config` until its duration is over or `shutdown` is
/// cancelled, and returns its figures (also written to `--json` and the credentials file).
pub async fn run(config: SimConfig, shutdown: CancellationToken) -> Result<Summary, RunError> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|source| RunError::Read {
            path: path.clone(),
            source,
        })
    };
    let ca_pem = read(&config.ca)?;
    let saved = match &config.state {
        Some(path) => {
            let state = fleet::load_state(path)?;
            if !state.agents.is_empty() && state.collector != config.base_url {
                return Err(RunError::OtherCollector {
                    path: path.clone(),
                    theirs: state.collector,
                    ours: config.base_url.clone(),
                });
            }
            state.agents
        }
        None => vec![],
    };
    let tokens = match &config.tokens {
        Some(path) => fleet::parse_tokens(&String::from_utf8_lossy(&read(path)?), path)?,
        None => vec![],
    };
    let identities = fleet::identities(saved, tokens, config.agents)?;

    let mut rng = fleet::rng_for(config.seed, usize::MAX, 0);
    let places: Vec<(String, String)> = identities
        .iter()
        .map(|i| (i.practice().to_string(), i.site().to_string()))
        .collect();
    let plan = faults::plan(&config.faults, config.duration, &mut rng, &places);
    for line in &plan.description {
        info!(fault = %line, "planned fault");
    }
    let mut seen_sites = std::collections::HashSet::new();
    let agents: Vec<SimAgent> = identities
        .into_iter()
        .zip(plan.agents)
        .enumerate()
        .map(|(index, (identity, faults))| {
            let first = seen_sites.insert((identity.practice().to_string(), identity.site().to_string()));
            let mut profile = fleet::profile(config.seed, index, identity.practice(), first);
            if let Identity::Saved(s) = &identity {
                profile.hostname = s.hostname.clone();
            }
            let start = config.ramp.mul_f64(rng.r#gen::<f64>());
            SimAgent {
                identity,
                profile,
                faults,
                start,
                rng: fleet::rng_for(config.seed, index, 2),
            }
        })
        .collect();

    let recorder = Arc::new(Recorder::default());
    let client = SimClient::new(&config, &ca_pem, recorder.clone())?;
    let stop = shutdown.child_token();
    let ctx = Arc::new(Ctx {
        config: config.clone(),
        client,
        t0: Instant::now(),
        stop: stop.clone(),
    });
    info!(agents = agents.len(), duration_secs = config.duration.as_secs(), collector = %config.base_url, "simulation started");

    let tracker = TaskTracker::new();
    let timer = {
        let stop = stop.clone();
        let duration = config.duration;
        tracker.spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(duration) => stop.cancel(),
            }
        })
    };
    let handles: Vec<_> = agents
        .into_iter()
        .enumerate()
        .map(|(index, agent)| {
            let ctx = ctx.clone();
            tracker.spawn(agent_task(agent, ctx).instrument(tracing::debug_span!("agent", index)))
        })
        .collect();
    tracker.close();
    let mut finished = Vec::with_capacity(handles.len());
    for h in handles {
        match h.await {
            Ok(Some(saved)) => finished.push(saved),
            Ok(None) => {}
            Err(e) => warn!(error = %e, "agent task failed"),
        }
    }
    let _ = timer.await;
    tracker.wait().await;
    let elapsed = ctx.t0.elapsed();

    let mut summary = recorder.summary(elapsed);
    match ctx.client.metrics_text().await {
        Ok(text) => summary.collector_metrics = collector_gauges(&text),
        Err(e) => warn!(error = %e, "cannot read the collector's /metrics"),
    }
    if let Some(path) = &config.state {
        fleet::save_state(
            path,
            &fleet::StateFile {
                collector: config.base_url.clone(),
                agents: finished,
            },
        )?;
    }
    if let Some(path) = &config.json {
        let body = serde_json::to_vec_pretty(&summary).unwrap_or_default();
        std::fs::write(path, body).map_err(|source| RunError::Write {
            path: path.clone(),
            source,
        })?;
    }
    Ok(summary)
}

/// The collector's agent gauges and ingest counters from its `/metrics` text.
pub fn collector_gauges(text: &str) -> std::collections::BTreeMap<String, f64> {
    text.lines()
        .filter(|l| l.starts_with("rounds_") && !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// What an agent does next.
struct Schedule {
    next_heartbeat: Duration,
    next_report: Vec<(&'static str, Duration)>,
    next_summary: Duration,
    ehr_edges: VecDeque<(Duration, bool)>,
    restart_at: Option<Duration>,
}

impl Schedule {
    fn next_wake(&self, faults: &AgentFaults, dark_now: bool) -> Duration {
        let mut t = self.next_heartbeat.min(self.next_summary);
        for (_, r) in &self.next_report {
            t = t.min(*r);
        }
        if let Some((e, _)) = self.ehr_edges.front() {
            t = t.min(*e);
        }
        if let Some(r) = self.restart_at {
            t = t.min(r);
        }
        if let Some(s) = faults.silent_at {
            t = t.min(s);
        }
        if let (true, Some(w)) = (dark_now, faults.dark) {
            t = t.min(w.to);
        }
        t
    }
}

async fn agent_task(agent: SimAgent, ctx: Arc<Ctx>) -> Option<Saved> {
    let SimAgent {
        identity,
        profile,
        faults,
        start,
        mut rng,
    } = agent;
    let config = &ctx.config;
    let rec = ctx.client.recorder.clone();
    tokio::select! {
        _ = ctx.stop.cancelled() => return saved_of(&identity),
        _ = tokio::time::sleep_until(ctx.t0 + start) => {}
    }
    let mut saved = match identity {
        Identity::Saved(s) => s,
        Identity::Token(t) => {
            let s = enroll(&ctx, &t, &profile).await?;
            rec.event("enrolled");
            s
        }
    };
    let creds = Credentials {
        agent_id: saved.agent_id.clone(),
        agent_secret: saved.agent_secret.clone(),
    };
    let t = ctx.t0.elapsed();
    let probe_interval = PROBE_INTERVAL.min(config.heartbeat);
    let mut schedule = Schedule {
        next_heartbeat: t,
        next_report: payload::checks_of(&profile)
            .into_iter()
            .map(|c| {
                let phase = if config.cold_start {
                    Duration::ZERO
                } else {
                    config.report_interval.mul_f64(rng.r#gen::<f64>())
                };
                (c, t + phase)
            })
            .collect(),
        next_summary: t + config.probe_summary.mul_f64(rng.r#gen::<f64>()),
        ehr_edges: faults
            .ehr_down
            .map(|w| {
                [
                    (w.from + probe_interval.mul_f64(rng.r#gen::<f64>()), false),
                    (w.to + probe_interval.mul_f64(rng.r#gen::<f64>()), true),
                ]
                .into_iter()
                .filter(|(at, _)| *at > t)
                .collect()
            })
            .unwrap_or_default(),
        restart_at: faults.restart_at.filter(|r| *r > t),
    };
    // The agent's two halves, as in `rounds-agent run`: the scheduler (checks, probes,
    // heartbeats) and the sender delivering queued reports in order, sharing the queue and
    // the current connection pool.
    let shared = Shared {
        queue: Mutex::new(VecDeque::new()),
        queued: Notify::new(),
        client: Mutex::new(ctx.client.clone()),
        done: ctx.stop.child_token(),
    };
    let scheduler = async {
        let mut ehr_up = true;
        let mut config_etag: Option<String> = None;
        let mut was_dark = false;
        let process_start = Instant::now();
        loop {
            let dark_now = faults.dark.is_some_and(|w| w.contains(ctx.t0.elapsed()));
            let wake = schedule.next_wake(&faults, dark_now);
            tokio::select! {
                _ = shared.done.cancelled() => break,
                _ = tokio::time::sleep_until(ctx.t0 + wake) => {}
            }
            let t = ctx.t0.elapsed();
            if faults.silent_at.is_some_and(|s| s <= t) {
                rec.event("agent_silenced");
                debug!("agent goes silent");
                break;
            }
            let dark_now = faults.dark.is_some_and(|w| w.contains(t));
            if dark_now && !was_dark {
                rec.event("agent_dark");
            }
            if was_dark && !dark_now {
                rec.event("agent_back_from_dark");
                shared.reconnect(&ctx.client);
                schedule.next_heartbeat = t;
            }
            was_dark = dark_now;
            if schedule.restart_at.is_some_and(|r| r <= t) {
                schedule.restart_at = None;
                rec.event("agent_restarted");
                shared.reconnect(&ctx.client);
                schedule.next_heartbeat = t;
                for (_, next) in &mut schedule.next_report {
                    *next = t;
                }
            }
            let now = Utc::now();
            for (check, next) in &mut schedule.next_report {
                if *next <= t {
                    let observations = payload::observations(&profile, check, &mut rng, now);
                    shared.push(report(&mut saved, check, true, observations), &rec);
                    while *next <= t {
                        *next += config.report_interval;
                    }
                }
            }
            while schedule.ehr_edges.front().is_some_and(|(at, _)| *at <= t) {
                if let Some((_, up)) = schedule.ehr_edges.pop_front() {
                    ehr_up = up;
                    rec.event(if up { "ehr_back_up" } else { "ehr_down" });
                    let o = payload::ehr_probe(&saved.practice, up, &mut rng, now);
                    shared.push(report(&mut saved, payload::EHR_CHECK, false, vec![o]), &rec);
                }
            }
            if schedule.next_summary <= t {
                let o = payload::ehr_probe(&saved.practice, ehr_up, &mut rng, now);
                shared.push(report(&mut saved, payload::EHR_CHECK, true, vec![o]), &rec);
                while schedule.next_summary <= t {
                    schedule.next_summary += config.probe_summary;
                }
            }
            if schedule.next_heartbeat > t {
                continue;
            }
            schedule.next_heartbeat = t + config.heartbeat;
            if dark_now {
                continue;
            }
            let hb = Heartbeat {
                protocol: PROTOCOL_MAJOR,
                agent_id: creds.agent_id.clone(),
                sent_at: Utc::now(),
                agent_version: AGENT_VERSION.into(),
                agent_uptime_secs: process_start.elapsed().as_secs(),
                config_version: config_etag.clone(),
                config_error: None,
                spool_depth: Some(shared.depth() as u64),
                spool_error: None,
            };
            let client = shared.client();
            let ack: Result<Option<HeartbeatAck>, String> =
                client.post(Kind::Heartbeat, paths::HEARTBEAT, Some(&creds), &hb).await;
            if let Ok(Some(HeartbeatAck {
                config_etag: Some(etag),
                received_at: _,
            })) = ack
                && config_etag.as_deref() != Some(etag.as_str())
            {
                let got: Result<Option<AgentConfig>, String> = client
                    .get(Kind::Config, paths::CONFIG, &creds, config_etag.as_deref())
                    .await;
                match got {
                    Ok(Some(c)) => config_etag = Some(c.version),
                    Ok(None) => config_etag = Some(etag),
                    Err(_) => {}
                }
            }
        }
        // Silent or out of time: the sender stops too.
        shared.done.cancel();
        saved
    };
    let sender = async {
        let mut retry = Duration::from_secs(1);
        loop {
            let next = shared.front();
            let Some(r) = next else {
                tokio::select! {
                    _ = shared.done.cancelled() => break,
                    _ = shared.queued.notified() => continue,
                }
            };
            if let Some(w) = faults.dark.filter(|w| w.contains(ctx.t0.elapsed())) {
                tokio::select! {
                    _ = shared.done.cancelled() => break,
                    _ = tokio::time::sleep_until(ctx.t0 + w.to) => continue,
                }
            }
            let ack: Result<Option<ReportAck>, String> = shared
                .client()
                .post(Kind::Report, paths::REPORTS, Some(&creds), &r)
                .await;
            match ack {
                Ok(a) => {
                    if a.is_some_and(|a| !a.stored) {
                        rec.event("report_already_stored");
                    }
                    shared.acknowledged(r.sequence);
                    retry = Duration::from_secs(1);
                }
                // Delivered again after a capped backoff, in order.
                Err(_) => {
                    tokio::select! {
                        _ = shared.done.cancelled() => break,
                        _ = tokio::time::sleep(retry) => {}
                    }
                    retry = (retry * 2).min(Duration::from_secs(30));
                }
            }
        }
    };
    let (saved, ()) = tokio::join!(scheduler, sender);
    if shared.depth() > 0 {
        rec.event("agents_with_reports_queued_at_end");
    }
    Some(saved)
}

/// What an agent's scheduler and sender share.
struct Shared {
    queue: Mutex<VecDeque<Report>>,
    queued: Notify,
    client: Mutex<SimClient>,
    /// Cancelled when the agent stops (end of run, or silenced).
    done: CancellationToken,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Report>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a report, dropping the oldest when the queue is full.
    fn push(&self, report: Report, rec: &Recorder) {
        let mut q = self.lock();
        if q.len() >= QUEUE_LIMIT {
            q.pop_front();
            rec.event("report_dropped_queue_full");
        }
        q.push_back(report);
        drop(q);
        self.queued.notify_one();
    }

    fn front(&self) -> Option<Report> {
        self.lock().front().cloned()
    }

    fn acknowledged(&self, sequence: u64) {
        let mut q = self.lock();
        if q.front().is_some_and(|r| r.sequence == sequence) {
            q.pop_front();
        }
    }

    fn depth(&self) -> usize {
        self.lock().len()
    }

    fn client(&self) -> SimClient {
        self.client.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A new connection pool for an agent that reconnects; the old one if that fails.
    fn reconnect(&self, shared: &SimClient) {
        match shared.fresh() {
            Ok(c) => *self.client.lock().unwrap_or_else(|e| e.into_inner()) = c,
            Err(e) => warn!(error = %e, "cannot build a new client, keeping the old connections"),
        }
    }
}

fn report(saved: &mut Saved, check: &str, complete: bool, observations: Vec<rounds_protocol::Observation>) -> Report {
    let sequence = saved.next_sequence;
    saved.next_sequence += 1;
    Report {
        protocol: PROTOCOL_MAJOR,
        agent_id: saved.agent_id.clone(),
        sequence,
        created_at: Utc::now(),
        check: Some(check.to_string()),
        complete,
        prev_hash: None,
        hash: None,
        dropped: vec![],
        observations,
    }
}

/// What an agent that never started hands back: its saved credentials, unchanged.
fn saved_of(identity: &Identity) -> Option<Saved> {
    match identity {
        Identity::Saved(s) => Some(s.clone()),
        Identity::Token(_) => None,
    }
}

async fn enroll(ctx: &Ctx, token: &fleet::Token, profile: &Profile) -> Option<Saved> {
    let req = EnrollRequest {
        protocol: PROTOCOL_MAJOR,
        token: token.token.clone(),
        hostname: profile.hostname.clone(),
        os: profile.os.family().into(),
        agent_version: AGENT_VERSION.into(),
    };
    let mut delay = Duration::from_secs(2);
    for attempt in 1..=ENROLL_ATTEMPTS {
        let answer: Result<Option<EnrollResponse>, String> =
            ctx.client.post(Kind::Enroll, paths::ENROLL, None, &req).await;
        match answer {
            Ok(Some(e)) => {
                return Some(Saved {
                    agent_id: e.agent_id,
                    agent_secret: e.agent_secret,
                    practice: e.practice,
                    site: e.site,
                    hostname: profile.hostname.clone(),
                    next_sequence: 1,
                });
            }
            // A refused token (403) will not work on a second try.
            Err(status) if status.starts_with('4') => {
                warn!(%status, "enrollment refused");
                break;
            }
            other => debug!(attempt, ok = other.is_ok(), "enrollment failed, retrying"),
        }
        tokio::select! {
            _ = ctx.stop.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
        delay *= 2;
    }
    ctx.client.recorder.event("enroll_failed");
    None
}
