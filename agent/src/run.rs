//! The agent's main loop: heartbeats, scheduled and watched checks, the spool and its sender,
//! central configuration, clean shutdown.
//!
//! [`run`] loads the identity, opens the spool ([`crate::spool`]) and spawns, through one
//! `TaskTracker`:
//! - the sender ([`crate::sender`]), delivering the spool in order;
//! - the configuration task: fetches the central configuration at start and whenever a
//!   heartbeat answer names another version, validates and combines it ([`crate::central`]),
//!   and hands the new settings to the reconciler; a refused one is reported in heartbeats;
//! - the reconciler, which runs one heartbeat task, one task per enabled check and the probe
//!   task and, when settings change, restarts only the tasks whose settings changed (the
//!   heartbeat when its interval changed; a check when its schedule, its configuration or its
//!   watched paths did; the probes when the endpoints or `[probes]` did);
//! - the probe task ([`probe_task`]): the EHR probes and the network baseline
//!   ([`crate::probes::run`]), whose state changes (important) and summaries (routine) are
//!   appended to the spool as `ehr` reports with `complete = false`.
//!
//! A check task runs its check at start, then on its cron schedule (machine local time, shifted
//! by the agent's own stable offset: [`crate::schedule`]) and at
//! once when one of its `watch_paths` changes; each run is appended to the spool. Time comes
//! from the [`Clock`] and each run's [`Host`] from the host factory in [`RunOptions`], so tests
//! run all of this under `tokio::time::pause()`.
//!
//! Cancelling the `shutdown` token stops every task and `run` returns once they have all
//! finished. A task that ends on its own (a bug, a panic) stops the others and makes `run` fail,
//! rather than leaving a half-working agent.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rounds_protocol::{Heartbeat, PROTOCOL_MAJOR};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::backoff::RetryPolicy;
use crate::central::{self, LocalConfig};
use crate::checks::{self, Host};
use crate::client::{ClientError, CollectorClient, Credentials, RequestError};
use crate::clock::{Clock, SystemClock};
use crate::config::{AgentSettings, ScheduledCheck};
use crate::probes::{self, ProbeSink};
use crate::sender::{self, Delivered};
use crate::spool::{Priority, Spool, SpoolError, SpoolOptions};
use crate::state::{Identity, RunStatus, StateDir, StateError};
use crate::watch::Watcher;

/// How long `run` waits for its tasks to stop after shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long changes to watched paths must settle before the check re-runs (a steady stream of
/// changes still re-runs it about once a second: see [`crate::watch`]).
pub const WATCH_SETTLE: Duration = Duration::from_millis(300);

/// Submissions of the probe engine waiting to be spooled; more are dropped (and logged).
const PROBE_QUEUE: usize = 64;

/// Makes the [`Host`] a check run looks at, given the time of the run.
pub type HostFactory = Arc<dyn Fn(DateTime<Utc>) -> Host + Send + Sync>;

/// What `run` needs.
#[derive(Clone)]
pub struct RunOptions {
    /// The state dir written by `enroll`.
    pub state_dir: PathBuf,
    /// Validated settings to start with (from the local file, or defaults); the cached and
    /// then the fetched central configuration replace them as [`crate::central`] says.
    pub settings: AgentSettings,
    /// The local configuration file, to lay over the central configuration.
    pub local_config: Option<LocalConfig>,
    /// Whether to fetch central configuration from the collector.
    pub central_config: bool,
    /// Spacing of delivery retries.
    pub retry: RetryPolicy,
    pub clock: Arc<dyn Clock>,
    pub host: HostFactory,
    /// Test hook: while this file exists, spool writes fail as on a full disk. Only with the
    /// non-default `test-hooks` feature (the end-to-end tests), never in the release binary.
    #[cfg(any(test, feature = "test-hooks"))]
    pub spool_fail_writes_while: Option<PathBuf>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("state_dir", &self.state_dir)
            .field("settings", &self.settings)
            .field("local_config", &self.local_config)
            .field("central_config", &self.central_config)
            .field("retry", &self.retry)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl RunOptions {
    /// Options with the system clock and host, the default retry policy and central
    /// configuration on.
    pub fn new(state_dir: impl Into<PathBuf>, settings: AgentSettings) -> Self {
        let state_dir = state_dir.into();
        let host_state = state_dir.clone();
        RunOptions {
            state_dir,
            settings,
            local_config: None,
            central_config: true,
            retry: RetryPolicy::default(),
            clock: Arc::new(SystemClock),
            host: Arc::new(move |now| Host {
                now,
                state_dir: Some(host_state.clone()),
                ..Host::system()
            }),
            #[cfg(any(test, feature = "test-hooks"))]
            spool_fail_writes_while: None,
        }
    }
}

/// Why `run` stopped with a failure.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("cannot set up the client for the collector: {0}")]
    Client(#[from] ClientError),
    #[error("invalid settings: {0}")]
    Settings(String),
    #[error("agent task {task} stopped unexpectedly: {detail}")]
    TaskFailed { task: String, detail: String },
    /// The collector revoked this agent's credentials (issue 15): it stopped.
    #[error("{0}")]
    Revoked(String),
}

/// Runs the agent until `shutdown` is cancelled.
pub async fn run(opts: RunOptions, shutdown: CancellationToken) -> Result<(), RunError> {
    let RunOptions {
        state_dir,
        settings,
        local_config,
        central_config,
        retry,
        clock,
        host,
        #[cfg(any(test, feature = "test-hooks"))]
        spool_fail_writes_while,
    } = opts;
    if settings.heartbeat_interval.is_zero() {
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
    let spool = Arc::new(Spool::open(
        SpoolOptions {
            dir: state.path().to_path_buf(),
            agent_id: identity.agent_id.clone(),
            settings: settings.config.spool,
            first_sequence: state.load_next_sequence()?,
            #[cfg(any(test, feature = "test-hooks"))]
            fail_writes_while: spool_fail_writes_while,
        },
        clock.clone(),
    )?);
    let status = Arc::new(StatusRecorder::load(state.clone()));
    let announced = identity.heartbeat_interval_secs.map(Duration::from_secs);

    // Start from the cached central configuration, if there is a good one.
    let mut initial = settings;
    let mut applied: Option<(String, String)> = None;
    if central_config {
        match central::load_cache(&state) {
            Ok(Some(cached)) => match central::combine(Some(&cached), local_config.as_ref(), announced) {
                Ok(s) => {
                    info!(version = %cached.version, origin = %cached.origin, "starting with the cached central configuration");
                    initial = s;
                    applied = Some((cached.version.clone(), cached.origin.clone()));
                }
                Err(reason) => warn!(%reason, "cached central configuration no longer applies, ignored"),
            },
            Ok(None) => {}
            Err(e) => warn!(error = %e, "cached central configuration unreadable, ignored"),
        }
    }
    let (version, origin) = match &applied {
        Some((v, o)) => (Some(v.clone()), Some(format!("collector: {o}"))),
        None => (
            None,
            Some(match &local_config {
                Some(l) => format!("local file {}", l.path.display()),
                None => "defaults".into(),
            }),
        ),
    };
    status
        .update(move |s| {
            s.config_version = version;
            s.config_origin = origin;
            s.config_error = None;
            s.spool_error = None;
        })
        .await;

    let stop = shutdown.child_token();
    let agent = Arc::new(Agent {
        revocation: Revocation {
            reason: Mutex::new(None),
            stop: stop.clone(),
        },
        identity,
        client,
        spool: spool.clone(),
        status: status.clone(),
        clock: clock.clone(),
        host,
        started: tokio::time::Instant::now(),
        config: Mutex::new(ConfigState {
            version: applied.map(|(v, _)| v),
            error: None,
        }),
    });

    info!(
        agent_id = %agent.identity.agent_id,
        collector = %agent.identity.collector,
        heartbeat_interval_secs = initial.heartbeat_interval.as_secs_f64(),
        checks = ?initial.checks.iter().map(ScheduledCheck::name).collect::<Vec<_>>(),
        spool_depth = spool.summary().depth,
        "agent running"
    );

    let tasks = Tasks {
        tracker: TaskTracker::new(),
        stop: stop.clone(),
        failure: Arc::new(Mutex::new(None)),
    };
    let (settings_tx, settings_rx) = watch::channel(initial);
    let (etag_tx, etag_rx) = watch::channel::<Option<String>>(None);

    {
        let (agent, sender_stop) = (agent.clone(), stop.clone());
        let task = async move {
            let s = agent.status.clone();
            sender::deliver(
                &agent.client,
                &agent.spool,
                &agent.identity.agent_id,
                retry,
                &sender_stop,
                |d| {
                    if let Delivered::Revoked { error } = &d {
                        agent.revocation.revoked(error);
                    }
                    let s = s.clone();
                    let now = agent.clock.now();
                    async move { record_delivery(&s, d, now).await }
                },
            )
            .await;
        };
        tasks.spawn("sender", stop.clone(), task.instrument(info_span!("sender")));
    }
    if central_config {
        let (agent, stop2) = (agent.clone(), stop.clone());
        let task = async move {
            config_loop(&agent, local_config, announced, settings_tx, etag_rx, &stop2).await;
        };
        tasks.spawn("config", stop.clone(), task.instrument(info_span!("config")));
    } else {
        // Nobody will send new settings; keep the sender alive so the receiver stays open.
        let stop2 = stop.clone();
        tasks.spawn(
            "config",
            stop.clone(),
            async move {
                stop2.cancelled().await;
                drop(settings_tx);
            }
            .instrument(info_span!("config")),
        );
    }
    {
        let (agent, tasks2) = (agent.clone(), tasks.clone());
        let task = async move { reconcile(agent, tasks2, settings_rx, etag_tx).await };
        tasks.spawn("reconciler", stop.clone(), task.instrument(info_span!("reconciler")));
    }

    stop.cancelled().await;
    tasks.tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.tracker.wait())
        .await
        .is_err()
    {
        warn!(
            grace_secs = SHUTDOWN_GRACE.as_secs(),
            "agent tasks did not stop in time"
        );
    }
    info!("agent stopped");
    if let Some(reason) = agent.revocation.reason() {
        return Err(RunError::Revoked(reason));
    }
    match tasks.failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// What every task needs to know about this agent.
struct Agent {
    /// Set when the collector says the credentials were revoked: everything stops.
    revocation: Revocation,
    identity: Identity,
    client: CollectorClient,
    spool: Arc<Spool>,
    status: Arc<StatusRecorder>,
    clock: Arc<dyn Clock>,
    host: HostFactory,
    started: tokio::time::Instant,
    config: Mutex<ConfigState>,
}

/// The collector's word that this agent's credentials were revoked (issue 15).
struct Revocation {
    reason: Mutex<Option<String>>,
    stop: CancellationToken,
}

impl Revocation {
    /// Records the revocation (logged once, as one error line) and stops every task.
    fn revoked(&self, error: &str) {
        let mut reason = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if reason.is_none() {
            error!(error = %error, "the collector revoked this agent's credentials; stopping");
            *reason = Some(error.to_string());
        }
        self.stop.cancel();
    }

    fn reason(&self) -> Option<String> {
        self.reason.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Agent {
    fn config_state(&self) -> ConfigState {
        self.config.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The central configuration in use and the last refusal.
#[derive(Debug, Clone, Default)]
struct ConfigState {
    version: Option<String>,
    error: Option<String>,
}

/// Spawns tasks under one tracker; a task ending while its token is not cancelled stops all.
#[derive(Clone)]
struct Tasks {
    tracker: TaskTracker,
    stop: CancellationToken,
    failure: Arc<Mutex<Option<RunError>>>,
}

impl Tasks {
    fn spawn(
        &self,
        name: impl Into<String>,
        token: CancellationToken,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        let name = name.into();
        let (stop, failure) = (self.stop.clone(), self.failure.clone());
        let task: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(task);
        self.tracker.spawn(async move {
            let result = tokio::spawn(task).await;
            if token.is_cancelled() && result.is_ok() {
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
    }
}

/// A running task and what it was started with.
struct Running<K> {
    key: K,
    token: CancellationToken,
}

/// Starts, restarts and stops the heartbeat and check tasks to match the newest settings.
async fn reconcile(
    agent: Arc<Agent>,
    tasks: Tasks,
    mut settings_rx: watch::Receiver<AgentSettings>,
    etag_tx: watch::Sender<Option<String>>,
) {
    let stop = tasks.stop.clone();
    let etag_tx = Arc::new(etag_tx);
    let mut heartbeat: Option<Running<Duration>> = None;
    let mut checks: BTreeMap<&'static str, Running<String>> = BTreeMap::new();
    let mut probes_running: Option<Running<String>> = None;
    loop {
        let settings = settings_rx.borrow_and_update().clone();
        let AgentSettings {
            heartbeat_interval,
            checks: scheduled,
            config,
        } = settings;
        agent.spool.set_settings(config.spool);
        if heartbeat.as_ref().is_none_or(|r| r.key != heartbeat_interval) {
            if let Some(old) = heartbeat.take() {
                info!(
                    heartbeat_interval_secs = heartbeat_interval.as_secs_f64(),
                    "heartbeat interval changed"
                );
                old.token.cancel();
            }
            let token = stop.child_token();
            let (agent, etag_tx, t) = (agent.clone(), etag_tx.clone(), token.clone());
            let task = async move { heartbeat_loop(&agent, heartbeat_interval, &etag_tx, &t).await };
            tasks.spawn("heartbeat", token.clone(), task.instrument(info_span!("heartbeat")));
            heartbeat = Some(Running {
                key: heartbeat_interval,
                token,
            });
        }
        let wanted: Vec<&'static str> = scheduled.iter().map(ScheduledCheck::name).collect();
        checks.retain(|name, r| {
            let keep = wanted.contains(name);
            if !keep {
                info!(check = name, "check disabled");
                r.token.cancel();
            }
            keep
        });
        for sc in scheduled {
            let name = sc.name();
            let key = check_key(&sc, &(agent.host)(agent.clock.now()));
            if checks.get(name).is_some_and(|r| r.key == key) {
                continue;
            }
            if let Some(old) = checks.remove(name) {
                info!(check = name, "check settings changed, restarting it");
                old.token.cancel();
            }
            let token = stop.child_token();
            let (a, t) = (agent.clone(), token.clone());
            let task = async move { check_loop(&a, sc, &t).await };
            tasks.spawn(
                format!("check {name}"),
                token.clone(),
                task.instrument(info_span!("check", check = name)),
            );
            checks.insert(name, Running { key, token });
        }
        let probe_key = format!("{:?} | {:?}", config.endpoints, config.probes);
        if probes_running.as_ref().is_none_or(|r| r.key != probe_key) {
            if let Some(old) = probes_running.take() {
                info!("probe settings changed, restarting the probes");
                old.token.cancel();
            }
            let token = stop.child_token();
            let task = probe_task(agent.clone(), config.clone(), token.clone());
            tasks.spawn("probes", token.clone(), task.instrument(info_span!("probes")));
            probes_running = Some(Running { key: probe_key, token });
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = settings_rx.changed() => if changed.is_err() {
                stop.cancelled().await;
                return;
            },
        }
    }
}

/// The probe engine's sink: a bounded queue to the task that spools each submission.
struct QueueSink(tokio::sync::mpsc::Sender<(Vec<rounds_protocol::Observation>, bool)>);

impl ProbeSink for QueueSink {
    fn submit(&self, observations: Vec<rounds_protocol::Observation>, urgent: bool) {
        if let Err(e) = self.0.try_send((observations, urgent)) {
            warn!(urgent, error = %e, "probe queue full, observations dropped");
        }
    }
}

/// Runs the probe engine over the configured endpoints and the network baseline (the collector,
/// with the enrolled CA, as a reference) and appends each submission to the spool as an `ehr`
/// report (`complete = false`): state changes as important, summaries as routine.
fn probe_task(
    agent: Arc<Agent>,
    config: Arc<rounds_agent_config::AgentConfig>,
    stop: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    let root = (agent.host)(agent.clock.now()).root;
    let ctx = Arc::new(probes::ProbeContext::load(&root));
    let collector = probes::baseline::Reference {
        url: agent.identity.collector.clone(),
        ca_file: Some(agent.status.state.ca_path()),
    };
    let targets = probes::baseline::targets(&config, Some(collector), &ctx, &root);
    let settings = probes::EngineSettings::from_settings(&config.probes);
    let (tx, mut rx) = tokio::sync::mpsc::channel(PROBE_QUEUE);
    let engine = probes::run(
        targets,
        settings,
        ctx,
        Arc::new(QueueSink(tx)),
        Arc::new(probes::SystemClock),
        stop.clone(),
    );
    let forward = async move {
        loop {
            let (observations, urgent) = tokio::select! {
                _ = stop.cancelled() => return,
                o = rx.recv() => match o { Some(o) => o, None => return },
            };
            let priority = if urgent { Priority::Important } else { Priority::Routine };
            match agent
                .spool
                .append_async(Some(probes::CHECK_NAME.to_string()), false, priority, observations)
                .await
            {
                Ok(sequence) => {
                    debug!(sequence, urgent, "probe report spooled");
                    agent.status.clear_spool_error().await;
                }
                Err(e) => {
                    error!(error = %e, "cannot spool the probe report, it is lost");
                    let now = agent.clock.now();
                    agent.status.spool_failed(e.to_string(), now).await;
                }
            }
        }
    };
    async move {
        tokio::join!(engine, forward);
    }
}

/// What a check task was started with: its schedule, its configuration (the check object's
/// debug form holds what it was built from) and its watched paths.
fn check_key(sc: &ScheduledCheck, host: &Host) -> String {
    format!(
        "{} | {:?} | {:?}",
        sc.schedule.source(),
        sc.check,
        sc.check.watch_paths(host)
    )
}

/// Sends a heartbeat at start and then every `interval`. Failures are logged; the next tick
/// tries again. An answer naming another configuration version wakes the configuration task.
async fn heartbeat_loop(
    agent: &Agent,
    interval: Duration,
    etag_tx: &watch::Sender<Option<String>>,
    stop: &CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut healthy: Option<bool> = None;
    let mut failures: u64 = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let ConfigState { version, error } = agent.config_state();
        let spool = agent.spool.summary();
        let hb = Heartbeat {
            protocol: PROTOCOL_MAJOR,
            agent_id: agent.identity.agent_id.clone(),
            sent_at: agent.clock.now(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            agent_uptime_secs: agent.started.elapsed().as_secs(),
            config_version: version,
            config_error: error,
            spool_depth: Some(spool.depth),
            spool_error: agent.spool.last_error(),
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
                let now = agent.clock.now();
                agent.status.update(move |s| s.last_heartbeat_at = Some(now)).await;
                if ack.config_etag.is_some() {
                    etag_tx.send_replace(ack.config_etag);
                }
            }
            Err(e @ RequestError::Revoked { .. }) => {
                agent.revocation.revoked(&e.to_string());
                return;
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

/// Fetches the central configuration at start and whenever a heartbeat names a version other
/// than the one in use (and not the one last refused); applies what validates.
async fn config_loop(
    agent: &Agent,
    local: Option<LocalConfig>,
    announced: Option<Duration>,
    settings_tx: watch::Sender<AgentSettings>,
    mut etag_rx: watch::Receiver<Option<String>>,
    stop: &CancellationToken,
) {
    let mut refused: Option<String> = None;
    let mut first = true;
    loop {
        if !first {
            tokio::select! {
                _ = stop.cancelled() => return,
                changed = etag_rx.changed() => if changed.is_err() { stop.cancelled().await; return },
            }
            let announced_tag = etag_rx.borrow_and_update().clone();
            let current = agent.config_state().version;
            if announced_tag.is_none() || announced_tag == current || announced_tag == refused {
                continue;
            }
        }
        first = false;
        let current = agent.config_state().version;
        let fetched = tokio::select! {
            _ = stop.cancelled() => return,
            r = agent.client.config(current.as_deref()) => r,
        };
        let cfg = match fetched {
            Ok(None) => continue,
            Ok(Some(cfg)) => cfg,
            Err(e) => {
                // Tried again on the next heartbeat that names a new version.
                warn!(error = %e, "cannot fetch the central configuration");
                continue;
            }
        };
        match central::combine(Some(&cfg), local.as_ref(), announced) {
            Ok(settings) => {
                if let Err(e) = central::store_cache(&StateDir::new(state_dir_of(agent)), &cfg) {
                    warn!(error = %e, "cannot cache the central configuration");
                }
                info!(version = %cfg.version, origin = %cfg.origin, "central configuration applied");
                {
                    let mut c = agent.config.lock().unwrap_or_else(|p| p.into_inner());
                    c.version = Some(cfg.version.clone());
                    c.error = None;
                }
                refused = None;
                let (version, origin) = (cfg.version.clone(), cfg.origin.clone());
                agent
                    .status
                    .update(move |s| {
                        s.config_version = Some(version);
                        s.config_origin = Some(format!("collector: {origin}"));
                        s.config_error = None;
                    })
                    .await;
                settings_tx.send_replace(settings);
            }
            Err(reason) => {
                warn!(version = %cfg.version, %reason, "central configuration refused, keeping the last good one");
                agent.config.lock().unwrap_or_else(|p| p.into_inner()).error = Some(reason.clone());
                refused = Some(cfg.version.clone());
                let now = agent.clock.now();
                agent
                    .status
                    .update(move |s| {
                        s.config_error = Some(reason.clone());
                        s.last_error = Some(format!("central configuration refused: {reason}"));
                        s.last_error_at = Some(now);
                    })
                    .await;
            }
        }
    }
}

fn state_dir_of(agent: &Agent) -> PathBuf {
    agent.status.state.path().to_path_buf()
}

/// The observations without their times, to tell a run that saw something new.
fn fingerprint(observations: &[rounds_protocol::Observation]) -> Vec<serde_json::Value> {
    observations
        .iter()
        .map(|o| serde_json::json!([o.kind, o.subject, o.status, o.data, o.error]))
        .collect()
}

/// Runs a check at start, then on its schedule (in the machine's local time, as a person
/// writing "0 0 2 * * *" means) and when a watched path changes; spools one report per run.
async fn check_loop(agent: &Agent, sc: ScheduledCheck, stop: &CancellationToken) {
    let ScheduledCheck { check, schedule } = sc;
    let check_name = check.name();
    let paths = check.watch_paths(&(agent.host)(agent.clock.now()));
    let mut watcher = if paths.is_empty() {
        None
    } else {
        match Watcher::new(&paths, WATCH_SETTLE) {
            Ok(w) => {
                info!(paths = ?paths, "watching paths");
                Some(w)
            }
            Err(e) => {
                warn!(error = %e, "cannot watch the check's paths, running on schedule only");
                None
            }
        }
    };
    let checks = [check];
    let mut last_fire = agent.clock.now().with_timezone(&chrono::Local);
    // Staggered schedules (issue 16): this agent's own offset, so a fleet does not run its
    // hourly checks at the top of the hour all at once.
    let offset = crate::schedule::offset(&agent.identity.agent_id, &schedule, &last_fire);
    let mut last_seen: Option<Vec<serde_json::Value>> = None;
    loop {
        let host = (agent.host)(agent.clock.now());
        let observations = tokio::select! {
            _ = stop.cancelled() => return,
            o = checks::run_all(&checks, &host) => o,
        };
        let seen = fingerprint(&observations);
        let priority = if last_seen.as_ref() == Some(&seen) {
            Priority::Routine
        } else {
            Priority::Important
        };
        last_seen = Some(seen);
        match agent
            .spool
            .append_async(Some(check_name.to_string()), true, priority, observations)
            .await
        {
            Ok(sequence) => {
                debug!(sequence, ?priority, "report spooled");
                agent.status.clear_spool_error().await;
            }
            Err(e) => {
                error!(error = %e, "cannot spool the report, it is lost");
                let now = agent.clock.now();
                agent.status.spool_failed(e.to_string(), now).await;
            }
        }
        let now = agent.clock.now();
        let Some(next) = crate::schedule::next_fire(&schedule, offset, last_fire, now.with_timezone(&chrono::Local))
        else {
            info!("schedule has no further runs");
            stop.cancelled().await;
            return;
        };
        let changed = async {
            match watcher.as_mut() {
                Some(w) => w.changed().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(until(next.with_timezone(&Utc), now)) => last_fire = next,
            () = changed => info!("watched path changed, running the check now"),
        }
    }
}

/// The next time a schedule fires: strictly after the last fire time (so a timer that wakes a
/// moment early does not fire twice) and after `now` (so runs missed while busy or asleep are
/// skipped, not caught up).
pub(crate) fn next_fire<Tz: chrono::TimeZone>(
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

/// Records what the sender reports in the status file.
async fn record_delivery(status: &Arc<StatusRecorder>, d: Delivered, now: DateTime<Utc>) {
    match d {
        Delivered::Acknowledged { through, .. } => {
            status
                .update(move |s| {
                    s.last_report_at = Some(now);
                    s.last_report_sequence = Some(through);
                })
                .await;
        }
        Delivered::Rejected {
            sequence,
            status: code,
            message,
        } => {
            status
                .update(move |s| {
                    s.last_error = Some(format!(
                        "report {sequence} refused by the collector ({code}): {message}; dropped"
                    ));
                    s.last_error_at = Some(now);
                })
                .await;
        }
        Delivered::Renumbered { next_expected, count } => {
            status
                .update(move |s| {
                    s.last_error = Some(format!(
                        "the collector expected sequence {next_expected}: {count} undelivered reports renumbered"
                    ));
                    s.last_error_at = Some(now);
                })
                .await;
        }
        Delivered::Failed { error } | Delivered::Revoked { error } => {
            status.note_error(error, now).await;
        }
    }
}

/// Keeps `status.json` up to date for `rounds-agent status`. Failing to write it is logged, never fatal.
#[derive(Debug)]
struct StatusRecorder {
    state: StateDir,
    current: Mutex<RunStatus>,
}

impl StatusRecorder {
    fn load(state: StateDir) -> Self {
        let current = state.load_status().unwrap_or_else(|e| {
            warn!(error = %e, "status record unreadable, starting a new one");
            RunStatus::default()
        });
        StatusRecorder {
            state,
            current: Mutex::new(current),
        }
    }

    fn get(&self) -> RunStatus {
        self.current.lock().unwrap_or_else(|p| p.into_inner()).clone()
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

    /// Records a delivery error, writing only when it differs from the last one recorded.
    async fn note_error(self: &Arc<Self>, error: String, now: DateTime<Utc>) {
        if self.get().last_error.as_deref() == Some(error.as_str()) {
            return;
        }
        self.update(move |s| {
            s.last_error = Some(error);
            s.last_error_at = Some(now);
        })
        .await;
    }

    async fn spool_failed(self: &Arc<Self>, error: String, now: DateTime<Utc>) {
        if self.get().spool_error.as_deref() == Some(error.as_str()) {
            return;
        }
        self.update(move |s| {
            s.last_error = Some(error.clone());
            s.last_error_at = Some(now);
            s.spool_error = Some(error);
        })
        .await;
    }

    async fn clear_spool_error(self: &Arc<Self>) {
        if self.get().spool_error.is_none() {
            return;
        }
        info!("reports are being spooled again");
        self.update(|s| s.spool_error = None).await;
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
