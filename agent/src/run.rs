//! The agent's main loop: heartbeats, scheduled checks, report delivery, clean shutdown.
//!
//! [`run`] loads the identity from the state dir and spawns, through one `TaskTracker`:
//! - a heartbeat task: one heartbeat at start, then one every `heartbeat_interval`;
//! - one task per scheduled check: runs the check at start and then on its cron schedule, takes
//!   the next sequence number (recorded durably first) and queues the report;
//! - the sender task ([`crate::sender`]), which delivers queued reports in order;
//! - the probe task ([`spawn_probes`]): the EHR probes and network baseline
//!   ([`crate::probes::run`]), whose state changes and summaries become `ehr` reports.
//!
//! Cancelling the `shutdown` token stops every task and `run` returns once they have all
//! finished. A task that ends on its own (a bug, a panic) stops the others and makes `run` fail,
//! rather than leaving a half-working agent.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rounds_protocol::{Heartbeat, PROTOCOL_MAJOR, Report};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::backoff::RetryPolicy;
use crate::checks::{self, Host};
use crate::client::{ClientError, CollectorClient, Credentials, RequestError};
use crate::config::{AgentSettings, ScheduledCheck};
use crate::probes::{self, ProbeSink};
use crate::sender::{self, Delivered, Outbox};
use crate::state::{Identity, RunStatus, SequenceAllocator, StateDir, StateError};

/// How many undelivered reports are kept before the oldest is dropped.
pub const DEFAULT_OUTBOX_CAPACITY: usize = 1000;

/// How long `run` waits for its tasks to stop after shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What `run` needs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The state dir written by `enroll`.
    pub state_dir: PathBuf,
    /// Validated settings (heartbeat interval, check schedules).
    pub settings: AgentSettings,
    /// Spacing of report delivery retries.
    pub retry: RetryPolicy,
    /// How many undelivered reports are kept in memory.
    pub outbox_capacity: usize,
}

impl RunOptions {
    /// Options with the default retry policy and outbox size.
    pub fn new(state_dir: impl Into<PathBuf>, settings: AgentSettings) -> Self {
        RunOptions {
            state_dir: state_dir.into(),
            settings,
            retry: RetryPolicy::default(),
            outbox_capacity: DEFAULT_OUTBOX_CAPACITY,
        }
    }
}

/// Why `run` stopped with a failure.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot set up the client for the collector: {0}")]
    Client(#[from] ClientError),
    #[error("invalid settings: {0}")]
    Settings(String),
    #[error("agent task {task} stopped unexpectedly: {detail}")]
    TaskFailed { task: String, detail: String },
}

/// Runs the agent until `shutdown` is cancelled.
pub async fn run(opts: RunOptions, shutdown: CancellationToken) -> Result<(), RunError> {
    let RunOptions {
        state_dir,
        settings,
        retry,
        outbox_capacity,
    } = opts;
    let AgentSettings {
        heartbeat_interval,
        checks: scheduled,
        config,
    } = settings;
    if heartbeat_interval.is_zero() {
        return Err(RunError::Settings(
            "the heartbeat interval must be longer than zero".into(),
        ));
    }
    let state = StateDir::new(state_dir);
    let identity = state.load_identity()?;
    let ca = state.load_ca()?;
    let credentials = Credentials {
        agent_id: identity.agent_id.clone(),
        agent_secret: identity.agent_secret.clone(),
    };
    let client = CollectorClient::new(
        &identity.collector,
        &ca,
        &state.ca_path().display().to_string(),
        Some(credentials),
    )?;
    let sequences = Arc::new(Mutex::new(SequenceAllocator::load(state.clone())?));
    let status = Arc::new(StatusRecorder::load(state.clone())?);
    let agent = Arc::new(Agent {
        identity,
        client,
        started: Instant::now(),
    });
    let outbox = Arc::new(Outbox::new(outbox_capacity));

    info!(
        agent_id = %agent.identity.agent_id,
        collector = %agent.identity.collector,
        heartbeat_interval_secs = heartbeat_interval.as_secs_f64(),
        checks = ?scheduled.iter().map(ScheduledCheck::name).collect::<Vec<_>>(),
        "agent running"
    );

    let stop = shutdown.child_token();
    let tracker = TaskTracker::new();
    let failure: Arc<Mutex<Option<RunError>>> = Arc::new(Mutex::new(None));
    let supervise = |name: String, task: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>| {
        let stop = stop.clone();
        let failure = failure.clone();
        tracker.spawn(async move {
            let result = tokio::spawn(task).await;
            if stop.is_cancelled() && result.is_ok() {
                return;
            }
            let detail = match result {
                Ok(()) => "ended on its own".to_string(),
                Err(e) => e.to_string(),
            };
            error!(task = %name, %detail, "agent task failed, shutting down");
            failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(RunError::TaskFailed { task: name, detail });
            stop.cancel();
        });
    };

    {
        let (agent, status, stop) = (agent.clone(), status.clone(), stop.clone());
        let task = async move { heartbeat_loop(&agent, &status, heartbeat_interval, &stop).await };
        supervise("heartbeat".into(), Box::pin(task.instrument(info_span!("heartbeat"))));
    }
    {
        let (agent, status, outbox, stop) = (agent.clone(), status.clone(), outbox.clone(), stop.clone());
        let task = async move {
            sender::deliver(&agent.client, &outbox, retry, &stop, |d| {
                let status = status.clone();
                async move {
                    if let Delivered::Acknowledged { sequence, .. } = d {
                        status
                            .update(move |s| {
                                s.last_report_at = Some(Utc::now());
                                s.last_report_sequence = Some(sequence);
                            })
                            .await;
                    }
                }
            })
            .await;
        };
        supervise("sender".into(), Box::pin(task.instrument(info_span!("sender"))));
    }
    for sc in scheduled {
        let (agent, sequences, outbox, stop) = (agent.clone(), sequences.clone(), outbox.clone(), stop.clone());
        let name = sc.name();
        let task = async move { check_loop(&agent, sc, &sequences, &outbox, &stop).await };
        supervise(
            format!("check {name}"),
            Box::pin(task.instrument(info_span!("check", check = name))),
        );
    }
    {
        let collector = probes::baseline::Reference {
            url: agent.identity.collector.clone(),
            ca_file: Some(state.ca_path()),
        };
        let task = spawn_probes(
            agent.clone(),
            sequences.clone(),
            outbox.clone(),
            &config,
            collector,
            stop.clone(),
        );
        supervise("probes".into(), Box::pin(task.instrument(info_span!("probes"))));
    }
    tracker.close();

    stop.cancelled().await;
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await.is_err() {
        warn!(
            grace_secs = SHUTDOWN_GRACE.as_secs(),
            "agent tasks did not stop in time"
        );
    }
    info!("agent stopped");
    match failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// What every task needs to know about this agent.
#[derive(Debug)]
struct Agent {
    identity: Identity,
    client: CollectorClient,
    started: Instant,
}

/// Sends a heartbeat at start and then every `interval`. Failures are logged; the next tick
/// tries again.
async fn heartbeat_loop(agent: &Agent, status: &Arc<StatusRecorder>, interval: Duration, stop: &CancellationToken) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut healthy: Option<bool> = None;
    let mut failures: u64 = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let hb = Heartbeat {
            protocol: PROTOCOL_MAJOR,
            agent_id: agent.identity.agent_id.clone(),
            sent_at: Utc::now(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            agent_uptime_secs: agent.started.elapsed().as_secs(),
            config_version: None,
            config_error: None,
            spool_depth: None,
            spool_error: None,
        };
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            r = agent.client.heartbeat(&hb) => r,
        };
        match result {
            Ok(ack) => {
                if healthy != Some(true) {
                    info!("heartbeat delivered");
                } else {
                    debug!("heartbeat delivered");
                }
                healthy = Some(true);
                failures = 0;
                let skew_secs = (ack.received_at - hb.sent_at).num_seconds();
                if skew_secs.abs() > 300 {
                    warn!(skew_secs, "clock differs from the collector's");
                }
                status.update(|s| s.last_heartbeat_at = Some(Utc::now())).await;
            }
            Err(e) => {
                healthy = Some(false);
                failures += 1;
                // The first failure and every tenth are logged loudly; a collector down for a day
                // should not fill the log.
                let loud = failures == 1 || failures.is_multiple_of(10);
                match (&e, loud) {
                    (RequestError::Unauthorized { .. }, true) => {
                        error!(failures, error = %e, "collector refused the agent's credentials, re-enrollment is needed");
                    }
                    (_, true) => warn!(failures, error = %e, "heartbeat failed"),
                    (_, false) => debug!(failures, error = %e, "heartbeat failed"),
                }
            }
        }
    }
}

/// Runs a check at start and then on its schedule (in the machine's local time, as a person
/// writing "0 0 2 * * *" means), queueing one report per run.
async fn check_loop(
    agent: &Agent,
    sc: ScheduledCheck,
    sequences: &Arc<Mutex<SequenceAllocator>>,
    outbox: &Outbox,
    stop: &CancellationToken,
) {
    let ScheduledCheck { check, schedule } = sc;
    let check_name = check.name();
    let checks = [check];
    let mut last_fire = chrono::Local::now();
    loop {
        // A fresh host per run, so `now` is the time of this run.
        let host = Host::system();
        let observations = tokio::select! {
            _ = stop.cancelled() => return,
            o = checks::run_all(&checks, &host) => o,
        };
        match next_sequence(sequences).await {
            Ok(sequence) => {
                let report = Report {
                    protocol: PROTOCOL_MAJOR,
                    agent_id: agent.identity.agent_id.clone(),
                    sequence,
                    created_at: Utc::now(),
                    check: Some(check_name.to_string()),
                    complete: true,
                    prev_hash: None,
                    hash: None,
                    dropped: vec![],
                    observations,
                };
                debug!(sequence, observations = report.observations.len(), "report queued");
                if let Some(dropped) = outbox.push(report) {
                    warn!(sequence = dropped.sequence, "outbox full, oldest report dropped");
                }
            }
            Err(e) => error!(error = %e, "cannot take a sequence number, report skipped"),
        }
        let Some(next) = next_fire(&schedule, last_fire, chrono::Local::now()) else {
            info!("schedule has no further runs");
            stop.cancelled().await;
            return;
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(until(next.with_timezone(&Utc), Utc::now())) => {}
        }
        last_fire = next;
    }
}

/// The next time a schedule fires: strictly after the last fire time (so a timer that wakes a
/// moment early does not fire twice) and after `now` (so runs missed while busy or asleep are
/// skipped, not caught up).
fn next_fire<Tz: chrono::TimeZone>(
    schedule: &cron::Schedule,
    last_fire: DateTime<Tz>,
    now: DateTime<Tz>,
) -> Option<DateTime<Tz>> {
    let from = if last_fire > now { last_fire } else { now };
    schedule.after(&from).next()
}

/// How long from `now` until `at` (zero if it has passed).
fn until(at: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (at - now).to_std().unwrap_or(Duration::ZERO)
}

/// Takes the next sequence number, recorded durably, off the async threads.
async fn next_sequence(sequences: &Arc<Mutex<SequenceAllocator>>) -> Result<u64, StateError> {
    let sequences = sequences.clone();
    tokio::task::spawn_blocking(move || sequences.lock().unwrap_or_else(|p| p.into_inner()).allocate())
        .await
        .unwrap_or_else(|e| {
            Err(StateError::Corrupt {
                path: PathBuf::from(crate::state::SEQUENCE_FILE),
                detail: e.to_string(),
            })
        })
}

/// Submissions of the probe engine waiting to become reports; more are dropped (and logged).
const PROBE_QUEUE: usize = 64;

/// The probe engine's sink here: a bounded queue to the task that turns submissions into
/// reports.
struct QueueSink(tokio::sync::mpsc::Sender<Vec<rounds_protocol::Observation>>);

impl ProbeSink for QueueSink {
    fn submit(&self, observations: Vec<rounds_protocol::Observation>, urgent: bool) {
        // The in-memory outbox sends every report as soon as it can, urgent or not.
        if let Err(e) = self.0.try_send(observations) {
            warn!(urgent, error = %e, "probe queue full, observations dropped");
        }
    }
}

/// Probe wiring (a stand-in until the on-disk spool replaces the outbox: connect the sink to
/// the spool's producer instead). Runs the probe engine over the configured endpoints and the
/// network baseline (the collector as reference), and turns each submission into a report
/// with the next sequence number on the outbox: `check = "ehr"`, `complete = false`.
fn spawn_probes(
    agent: Arc<Agent>,
    sequences: Arc<Mutex<SequenceAllocator>>,
    outbox: Arc<Outbox>,
    config: &rounds_agent_config::AgentConfig,
    collector: probes::baseline::Reference,
    stop: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    let root = std::path::Path::new("/");
    let ctx = Arc::new(probes::ProbeContext::load(root));
    let targets = probes::baseline::targets(config, Some(collector), &ctx, root);
    let settings = probes::EngineSettings::from_settings(&config.probes);
    let (tx, mut rx) = tokio::sync::mpsc::channel(PROBE_QUEUE);
    let sink: Arc<dyn ProbeSink> = Arc::new(QueueSink(tx));
    let engine = probes::run(
        targets,
        settings,
        ctx,
        sink,
        Arc::new(probes::SystemClock),
        stop.clone(),
    );
    let forward = async move {
        loop {
            let observations = tokio::select! {
                _ = stop.cancelled() => return,
                o = rx.recv() => match o { Some(o) => o, None => return },
            };
            match next_sequence(&sequences).await {
                Ok(sequence) => {
                    let report = Report {
                        protocol: PROTOCOL_MAJOR,
                        agent_id: agent.identity.agent_id.clone(),
                        sequence,
                        created_at: Utc::now(),
                        check: Some(probes::CHECK_NAME.to_string()),
                        complete: false,
                        prev_hash: None,
                        hash: None,
                        dropped: vec![],
                        observations,
                    };
                    debug!(
                        sequence,
                        observations = report.observations.len(),
                        "probe report queued"
                    );
                    if let Some(dropped) = outbox.push(report) {
                        warn!(sequence = dropped.sequence, "outbox full, oldest report dropped");
                    }
                }
                Err(e) => error!(error = %e, "cannot take a sequence number, probe report skipped"),
            }
        }
    };
    async move {
        tokio::join!(engine, forward);
    }
}

/// Keeps `status.json` up to date for `rounds-agent status`. Failing to write it is logged, never fatal.
#[derive(Debug)]
struct StatusRecorder {
    state: StateDir,
    current: Mutex<RunStatus>,
}

impl StatusRecorder {
    fn load(state: StateDir) -> Result<Self, StateError> {
        let current = state.load_status().unwrap_or_else(|e| {
            warn!(error = %e, "status record unreadable, starting a new one");
            RunStatus::default()
        });
        Ok(StatusRecorder {
            state,
            current: Mutex::new(current),
        })
    }

    async fn update(self: &Arc<Self>, change: impl FnOnce(&mut RunStatus) + Send + 'static) {
        let this = self.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut current = this.current.lock().unwrap_or_else(|p| p.into_inner());
            change(&mut current);
            this.state.store_status(&current)
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "cannot record status"),
            Err(e) => warn!(error = %e, "cannot record status"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_timer_waking_early_does_not_fire_twice() {
        let hourly: cron::Schedule = "0 0 * * * *".parse().unwrap();
        let fired = at("2026-11-24T12:00:00Z");
        let early = at("2026-11-24T11:59:59.998Z");
        assert_eq!(next_fire(&hourly, fired, early), Some(at("2026-11-24T13:00:00Z")));
    }

    #[test]
    fn missed_runs_are_skipped_not_caught_up() {
        let hourly: cron::Schedule = "0 0 * * * *".parse().unwrap();
        let fired = at("2026-11-24T12:00:00Z");
        let much_later = at("2026-11-24T15:30:00Z");
        assert_eq!(next_fire(&hourly, fired, much_later), Some(at("2026-11-24T16:00:00Z")));
    }

    #[test]
    fn until_is_zero_for_the_past() {
        let now = Utc::now();
        assert_eq!(until(now - chrono::Duration::seconds(5), now), Duration::ZERO);
        assert_eq!(until(now + chrono::Duration::seconds(5), now), Duration::from_secs(5));
    }
}
