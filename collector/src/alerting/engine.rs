//! The engine: turns the collector's evidence into incidents and notifications.
//!
//! Inputs: [`Engine::on_change`] (the evaluator's change stream: agents seen, findings changed,
//! probe observations stored) and [`Engine::tick`] (a periodic tick on the collector's
//! clock: offline detection, probe sampling into N-of-M windows, EHR correlation, reminders,
//! escalation, silences). Output: incidents with their timeline, and rows in the outbox that
//! [`Engine::deliver_due`] hands to the [`Notifier`]. Everything the engine decides is
//! written in the store in the unit of work that decides it (an incident and its
//! notifications commit together); ticks and deliveries run only where the store grants the
//! job's lease, so several collectors on one database do each once.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use rounds_policies::{Severity, Status};
use rounds_protocol::Observation;
use serde_json::json;

use super::cause::{self, BaselineState};
use super::config::AlertSettings;
use super::model::*;
use super::silence::{Matchers, SilenceError, SilenceRequest, may_silence};
use crate::clock::Clock;
use crate::ingest::Change;
use crate::notify::{Notification, NotificationKind, Notifier};
use crate::store::{FindingChange, Role, Scope, Store, StoreError, StoreResult, Tx};

/// Why an operator's request about an incident was refused.
#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("incident {0} is already resolved")]
    Resolved(i64),
    #[error("{0}")]
    Invalid(String),
}

fn everything() -> Scope {
    Scope {
        role: Role::Admin,
        practice_id: None,
    }
}

fn dur(d: std::time::Duration) -> Duration {
    Duration::from_std(d).unwrap_or(Duration::seconds(60))
}

/// What the engine knows of one agent.
#[derive(Debug, Clone)]
struct AgentInfo {
    practice: String,
    site: String,
    hostname: String,
    /// When it enrolled: an agent never seen is silent since then.
    enrolled_at: DateTime<Utc>,
    last_seen: Option<DateTime<Utc>>,
}

impl AgentInfo {
    fn site_key(&self) -> String {
        format!("{}/{}", self.practice, self.site)
    }
}

/// The latest state of one EHR endpoint probe of one agent.
#[derive(Debug, Clone)]
struct EndpointState {
    probe: String,
    up: bool,
    reason: Option<String>,
    at: DateTime<Utc>,
}

#[derive(Debug, Default, Clone)]
struct AgentProbes {
    endpoints: BTreeMap<String, EndpointState>,
    baseline: BTreeMap<String, BaselineState>,
}

/// Consecutive failures of one channel.
#[derive(Debug, Default, Clone)]
struct ChannelHealth {
    failures: u32,
    /// Per destination backoff: nothing is tried on this channel before.
    next_try: Option<DateTime<Utc>>,
    last_error: String,
}

#[derive(Debug, Default)]
struct State {
    loaded: bool,
    agents: HashMap<String, AgentInfo>,
    probes: HashMap<String, AgentProbes>,
    windows: HashMap<String, AlertWindow>,
    silences: HashMap<String, bool>,
    /// Agents and site keys that may have an offline incident open: the fast path that lets a
    /// heartbeat skip the store when nothing is down.
    down: HashSet<String>,
    /// When each probe window last took a sample: a tick samples only windows that no
    /// observation fed since the previous tick, so a state change counts once.
    sampled: HashMap<String, DateTime<Utc>>,
}

/// One site's machines probing one endpoint: all of them, and those whose window fails.
#[derive(Debug, Default)]
struct SiteProbes {
    probing: Vec<String>,
    failing: Vec<String>,
}

/// One site's judgement of one endpoint.
struct SiteVerdict {
    site_key: String,
    kind: CauseKind,
    words: String,
    hosts: Vec<String>,
    reasons: BTreeSet<String>,
}

/// What an incident should look like now; opened if absent, updated if its cause changed.
struct Want {
    new: NewIncident,
    /// Why the cause is what it is (the timeline says it when the cause changes).
    why: String,
    /// Hold its first notification at least this long.
    hold: Duration,
}

/// The alert engine. Cheap to share (`Arc<Engine>`); HTTP handlers and CLI commands call its
/// methods, background tasks call [`tick`](Self::tick) and [`deliver_due`](Self::deliver_due).
#[derive(Debug)]
pub struct Engine {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    settings: AlertSettings,
    notifier: Arc<dyn Notifier>,
    /// This collector instance, in job leases.
    holder: String,
    state: tokio::sync::Mutex<State>,
    delivering: tokio::sync::Mutex<()>,
    channels: Mutex<HashMap<String, ChannelHealth>>,
}

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: AlertSettings,
        notifier: Arc<dyn Notifier>,
    ) -> Self {
        let holder = format!("{}-{}", std::process::id(), rand::random::<u32>());
        Engine {
            store,
            clock,
            settings,
            notifier,
            holder,
            state: tokio::sync::Mutex::new(State::default()),
            delivering: tokio::sync::Mutex::new(()),
            channels: Mutex::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> &AlertSettings {
        &self.settings
    }

    /// Runs the engine until `cancel`: consumes the change stream, ticks every `tick`, delivers
    /// due notifications every second.
    pub async fn run(
        self: Arc<Self>,
        mut changes: crate::ingest::Subscriber,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        let mut tick = tokio::time::interval(self.settings.tick);
        let mut deliver = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        deliver.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                change = changes.recv() => match change {
                    Some(change) => {
                        if let Err(error) = self.on_change(&change).await {
                            tracing::error!(%error, "alert engine: change not handled");
                        }
                    }
                    None => return,
                },
                _ = tick.tick() => {
                    if let Err(error) = self.tick().await {
                        tracing::error!(%error, "alert engine: tick failed");
                    }
                }
                _ = deliver.tick() => {
                    if let Err(error) = self.deliver_due().await {
                        tracing::error!(%error, "alert engine: delivery failed");
                    }
                }
            }
        }
    }

    // ----- inputs -----

    /// Handles one change of the evaluator's stream.
    pub async fn on_change(&self, change: &Change) -> StoreResult<()> {
        match change {
            Change::AgentSeen { agent_id, at } => self.agent_seen(agent_id, *at).await,
            Change::FindingsChanged { agent_id, changes } => self.findings_changed(agent_id, changes).await,
            Change::FirstReport { .. } => Ok(()),
            Change::ProbesStored { agent_id, observations } => self.observe(agent_id, observations).await,
        }
    }

    async fn agent_info(&self, state: &mut State, agent_id: &str) -> StoreResult<Option<AgentInfo>> {
        if let Some(a) = state.agents.get(agent_id) {
            return Ok(Some(a.clone()));
        }
        match self.store.agent(&everything(), agent_id).await {
            Ok(row) => {
                let info = AgentInfo {
                    practice: row.practice,
                    site: row.site,
                    hostname: row.hostname,
                    enrolled_at: row.enrolled_at,
                    last_seen: row.last_seen_at,
                };
                state.agents.insert(agent_id.to_string(), info.clone());
                Ok(Some(info))
            }
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn agent_seen(&self, agent_id: &str, at: DateTime<Utc>) -> StoreResult<()> {
        let mut state = self.state.lock().await;
        let Some(mut info) = self.agent_info(&mut state, agent_id).await? else {
            return Ok(());
        };
        info.last_seen = Some(at.max(info.last_seen.unwrap_or(at)));
        state.agents.insert(agent_id.to_string(), info.clone());
        let site_down = state.down.remove(&info.site_key());
        if !state.down.remove(agent_id) && !site_down {
            return Ok(());
        }
        let mut tx = self.store.begin().await?;
        let now = self.clock.now();
        if let Some(site) = tx.active_incident("site_offline", &info.site_key()).await? {
            self.resolve(
                &mut *tx,
                site,
                "engine",
                &format!("{} reports again", info.hostname),
                now,
            )
            .await?;
        }
        if let Some(inc) = tx.active_incident("agent_offline", agent_id).await? {
            self.resolve(&mut *tx, inc, "engine", "heartbeat received again", now)
                .await?;
        }
        tx.commit().await
    }

    async fn findings_changed(&self, agent_id: &str, changes: &[FindingChange]) -> StoreResult<()> {
        // Most changes name no incident source (a low-severity rule): they need no
        // transaction, which on SQLite would queue for the writer behind ingest.
        let threshold = self.settings.finding_severity;
        if !changes
            .iter()
            .any(|c| cause::finding_source(&c.rule, c.severity, threshold).is_some())
        {
            return Ok(());
        }
        let mut state = self.state.lock().await;
        let Some(info) = self.agent_info(&mut state, agent_id).await? else {
            return Ok(());
        };
        drop(state);
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        for c in changes {
            let Some((source, manual)) = cause::finding_source(&c.rule, c.severity, self.settings.finding_severity)
            else {
                continue;
            };
            let subject = format!("{agent_id}:{}", c.rule);
            let failing = c.new_status == Some(Status::Fail) && c.exception.is_none();
            if failing {
                let severity = if manual { Severity::Critical } else { c.severity };
                let mut cause = c.message.clone();
                if let Some(fix) = &c.remediation {
                    cause.push_str(". ");
                    cause.push_str(fix);
                }
                let want = Want {
                    new: NewIncident {
                        source: source.to_string(),
                        subject,
                        severity,
                        title: format!("{} fails on {} ({})", c.title, info.hostname, info.site_key()),
                        probable_cause: cause,
                        cause_kind: CauseKind::Finding,
                        practice: Some(info.practice.clone()),
                        site: Some(info.site.clone()),
                        agent_id: Some(agent_id.to_string()),
                        practices_affected: Vec::new(),
                        parent_id: None,
                        manual_resolve: manual,
                        detail: json!({"rule": c.rule, "evidence": c.evidence}),
                    },
                    why: format!("finding {} turned to fail", c.rule),
                    hold: Duration::zero(),
                };
                self.upsert(&mut *tx, want, now).await?;
            } else if let Some(inc) = tx.active_incident(source, &subject).await? {
                if inc.manual_resolve {
                    let status = c.new_status.map(|s| format!("{s:?}").to_lowercase());
                    self.event(
                        &mut *tx,
                        inc.id,
                        NewIncidentEvent::engine(
                            "note",
                            format!(
                                "the finding is now {}; this incident is resolved only by a person",
                                status.as_deref().unwrap_or("retired")
                            ),
                        ),
                        now,
                    )
                    .await?;
                } else {
                    self.resolve(
                        &mut *tx,
                        inc,
                        "engine",
                        &format!("finding {} passes again", c.rule),
                        now,
                    )
                    .await?;
                }
            }
        }
        tx.commit().await
    }

    /// Takes probe observations (`ehr.probe`, `network.baseline`) of a report just stored:
    /// newer ones update the agent's probe state and feed its windows; ones dated during a
    /// site's outage (spooled while it was cut off) refine that outage's cause after the fact.
    pub async fn observe(&self, agent_id: &str, observations: &[Observation]) -> StoreResult<()> {
        let mut state = self.state.lock().await;
        let Some(info) = self.agent_info(&mut state, agent_id).await? else {
            return Ok(());
        };
        let mut samples = Vec::new();
        let mut dated = Vec::new();
        {
            let probes = state.probes.entry(agent_id.to_string()).or_default();
            for o in observations {
                dated.push(o.observed_at);
                match o.kind.as_str() {
                    "ehr.probe" => {
                        let Some(s) = endpoint_state(o) else { continue };
                        let target = endpoint_key(o);
                        let newer = probes.endpoints.get(&target).is_none_or(|old| old.at <= s.at);
                        if newer {
                            // Each attempt is a probe result: a failure the agent retried
                            // before reporting it is two failed samples.
                            let attempts = o.data.get("attempts").and_then(|a| a.as_u64()).unwrap_or(1);
                            let n = if s.up { 1 } else { attempts.clamp(1, 2) };
                            for _ in 0..n {
                                samples.push((target.clone(), !s.up));
                            }
                            probes.endpoints.insert(target, s);
                        }
                    }
                    "network.baseline" => {
                        let Some(s) = baseline_state(o) else { continue };
                        let key = format!("{}:{}", s.role, s.target);
                        if probes.baseline.get(&key).is_none_or(|old| old.at <= s.at) {
                            probes.baseline.insert(key, s);
                        }
                    }
                    _ => {}
                }
            }
        }
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        for (target, failed) in samples {
            self.sample(&mut *tx, &mut state, &format!("{agent_id}|{target}"), failed, now)
                .await?;
        }
        // Spooled results from an outage: refine its cause.
        let oldest = dated.iter().min().copied();
        if let Some(oldest) = oldest {
            self.refine_outage(&mut *tx, &state, &info, oldest, now).await?;
        }
        tx.commit().await
    }

    /// Pushes one sample into a window; whether it is failing now.
    async fn sample(
        &self,
        tx: &mut dyn Tx,
        state: &mut State,
        key: &str,
        failed: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let w = match state.windows.get(key) {
            Some(w) => w.clone(),
            None => tx.alert_window("probe", key).await?.unwrap_or(AlertWindow {
                source: "probe".into(),
                subject: key.to_string(),
                results: String::new(),
                failing: false,
                updated_at: now,
            }),
        };
        let mut next = w.clone();
        let s = &self.settings;
        next.failing = cause::push(
            &mut next.results,
            failed,
            w.failing,
            s.window,
            s.fail_of_window,
            s.recover_after,
        );
        if next.results != w.results || next.failing != w.failing {
            next.updated_at = now;
            tx.save_alert_window(&next).await?;
        }
        let failing = next.failing;
        state.windows.insert(key.to_string(), next);
        state.sampled.insert(key.to_string(), now);
        Ok(failing)
    }

    async fn refine_outage(
        &self,
        tx: &mut dyn Tx,
        state: &State,
        info: &AgentInfo,
        oldest: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let key = info.site_key();
        let candidates = self
            .store
            .incidents(
                &everything(),
                &IncidentQuery {
                    source: Some("site_offline".into()),
                    limit: Some(20),
                    ..IncidentQuery::default()
                },
            )
            .await?;
        let silence = dur(self.settings.offline_after);
        for inc in candidates.into_iter().filter(|i| i.subject == key) {
            let from = inc.opened_at - silence;
            let to = inc.resolved_at.unwrap_or(now);
            if oldest > to {
                continue;
            }
            // The site's baseline as it stood during the outage: the last state of each
            // target dated before the outage ended; evidence if something was recorded in it.
            let mut during = Vec::new();
            let mut recorded = false;
            for (id, a) in &state.agents {
                if a.site_key() != key {
                    continue;
                }
                if let Some(p) = state.probes.get(id) {
                    for b in p.baseline.values() {
                        if b.at <= to {
                            during.push(b);
                        }
                        if b.at >= from && b.at <= to {
                            recorded = true;
                        }
                    }
                }
            }
            if !recorded {
                continue;
            }
            let latest: BTreeMap<(String, String), &BaselineState> = {
                let mut m: BTreeMap<(String, String), &BaselineState> = BTreeMap::new();
                for b in during {
                    let k = (b.role.clone(), b.target.clone());
                    if m.get(&k).is_none_or(|o| o.at <= b.at) {
                        m.insert(k, b);
                    }
                }
                m
            };
            let states: Vec<&BaselineState> = latest.values().copied().collect();
            let (kind, words) = cause::network_verdict(&states).unwrap_or((
                CauseKind::SiteNetwork,
                "the machines ran during the outage and their network baseline passed: the path to the collector only (firewall, VPN or proxy)".into(),
            ));
            if kind != inc.cause_kind {
                let mut inc = inc;
                let old = inc.cause_kind;
                inc.cause_kind = kind;
                inc.probable_cause = format!("{}: {words}", site_outage_title(&key));
                inc.updated_at = now;
                tx.save_incident(&inc).await?;
                self.event(
                    tx,
                    inc.id,
                    NewIncidentEvent::engine(
                        "cause_changed",
                        format!(
                            "cause refined after the fact from {} to {}: probe results the site's machines spooled during the outage arrived",
                            old.as_str(),
                            kind.as_str()
                        ),
                    ),
                    now,
                )
                .await?;
            }
        }
        Ok(())
    }

    // ----- the periodic tick -----

    /// One round of periodic work, when this collector holds the engine's lease.
    pub async fn tick(&self) -> StoreResult<()> {
        let now = self.clock.now();
        let until = now + dur(self.settings.tick) * 3;
        if !self.store.claim_lease("alert-engine", &self.holder, until, now).await? {
            return Ok(());
        }
        let mut state = self.state.lock().await;
        self.refresh(&mut state).await?;
        let mut tx = self.store.begin().await?;
        self.offline(&mut *tx, &mut state, now).await?;
        self.probes(&mut *tx, &mut state, now).await?;
        self.reminders(&mut *tx, now).await?;
        self.silence_transitions(&mut *tx, &mut state, now).await?;
        tx.commit().await
    }

    async fn refresh(&self, state: &mut State) -> StoreResult<()> {
        let rows = self.store.agent_presence().await?;
        let first = !state.loaded;
        for row in rows {
            let seen = state.agents.get(&row.agent_id).and_then(|a| a.last_seen);
            let last_seen = match (seen, row.last_seen_at) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            if first {
                let mut probes = AgentProbes::default();
                for o in self
                    .store
                    .latest_observations(&everything(), &row.agent_id, Some("ehr.probe"))
                    .await?
                {
                    if let Some(s) = endpoint_state(&o.observation) {
                        probes.endpoints.insert(endpoint_key(&o.observation), s);
                    }
                }
                for o in self
                    .store
                    .latest_observations(&everything(), &row.agent_id, Some("network.baseline"))
                    .await?
                {
                    if let Some(s) = baseline_state(&o.observation) {
                        probes.baseline.insert(format!("{}:{}", s.role, s.target), s);
                    }
                }
                state.probes.entry(row.agent_id.clone()).or_insert(probes);
            }
            state.agents.insert(
                row.agent_id,
                AgentInfo {
                    practice: row.practice,
                    site: row.site,
                    hostname: row.hostname,
                    enrolled_at: row.enrolled_at,
                    last_seen,
                },
            );
        }
        state.loaded = true;
        Ok(())
    }

    /// How long the agent has been silent: since its last heartbeat, or since it enrolled
    /// when it never sent one (an agent enrolled and never started is offline too).
    fn silent(&self, a: &AgentInfo, now: DateTime<Utc>) -> Duration {
        now - a.last_seen.unwrap_or(a.enrolled_at)
    }

    fn is_offline(&self, a: &AgentInfo, now: DateTime<Utc>) -> bool {
        self.silent(a, now) > dur(self.settings.offline_after)
    }

    async fn offline(&self, tx: &mut dyn Tx, state: &mut State, now: DateTime<Utc>) -> StoreResult<()> {
        let mut down = HashSet::new();
        for inc in tx.active_incidents().await? {
            if inc.source == "agent_offline" || inc.source == "site_offline" {
                down.insert(format!("{}|{}", inc.source, inc.subject));
            }
        }
        // Only keys with an active incident are looked up again (it may have changed within
        // this tick): one query per tick, not one per agent (see BENCHMARKS.md, engine tick).
        let open = down.clone();
        self.offline_sites(tx, state, now, &open, &mut down).await?;
        state.down = down
            .into_iter()
            .map(|k| k.split_once('|').map(|(_, s)| s.to_string()).unwrap_or(k))
            .collect();
        Ok(())
    }

    /// The active incident of (`source`, `subject`) when `open` says there may be one.
    async fn active_if(
        &self,
        tx: &mut dyn Tx,
        open: &HashSet<String>,
        source: &str,
        subject: &str,
    ) -> StoreResult<Option<Incident>> {
        if open.contains(&format!("{source}|{subject}")) {
            tx.active_incident(source, subject).await
        } else {
            Ok(None)
        }
    }

    async fn offline_sites(
        &self,
        tx: &mut dyn Tx,
        state: &State,
        now: DateTime<Utc>,
        open: &HashSet<String>,
        down_keys: &mut HashSet<String>,
    ) -> StoreResult<()> {
        let mut sites: BTreeMap<String, Vec<(&String, &AgentInfo)>> = BTreeMap::new();
        for (id, a) in &state.agents {
            sites.entry(a.site_key()).or_default().push((id, a));
        }
        let suspect_after = dur(self.settings.suspect_after);
        for (key, agents) in sites {
            let offline: Vec<_> = agents.iter().filter(|(_, a)| self.is_offline(a, now)).collect();
            let all_suspect = agents.iter().all(|(_, a)| self.silent(a, now) > suspect_after);
            let down = agents.len() >= 2 && all_suspect && !offline.is_empty();
            let mut site_inc = self.active_if(tx, open, "site_offline", &key).await?;
            if down && site_inc.is_none() {
                let (practice, site) = (agents[0].1.practice.clone(), agents[0].1.site.clone());
                let since = agents.iter().filter_map(|(_, a)| a.last_seen).max();
                let first = agents.iter().filter_map(|(_, a)| a.last_seen).min();
                let spread = match (first, since) {
                    (Some(a), Some(b)) => (b - a).num_seconds(),
                    _ => 0,
                };
                let hosts: Vec<&str> = agents.iter().map(|(_, a)| a.hostname.as_str()).collect();
                let want = Want {
                    new: NewIncident {
                        source: "site_offline".into(),
                        subject: key.clone(),
                        severity: Severity::Critical,
                        title: format!("{} is offline: all {} machines silent", key, agents.len()),
                        probable_cause: format!(
                            "{}: the site's internet or power is out; all {} machines went silent within {spread} s of each other. The probe results they spool will say which when they come back",
                            site_outage_title(&key),
                            agents.len()
                        ),
                        cause_kind: CauseKind::SiteNetwork,
                        practice: Some(practice),
                        site: Some(site),
                        agent_id: None,
                        practices_affected: Vec::new(),
                        parent_id: None,
                        manual_resolve: false,
                        detail: json!({"machines": hosts}),
                    },
                    why: "every machine of the site stopped sending heartbeats".into(),
                    hold: Duration::zero(),
                };
                let inc = self.upsert(tx, want, now).await?;
                down_keys.insert(format!("site_offline|{key}"));
                // Fold the agents' own incidents into it, even those that opened first.
                for (id, _) in &agents {
                    if let Some(child) = self.active_if(tx, open, "agent_offline", id).await? {
                        self.fold(tx, child, &inc, now).await?;
                    }
                }
                site_inc = Some(inc);
            } else if !down && let Some(inc) = site_inc.take() {
                let back = agents
                    .iter()
                    .filter(|(_, a)| self.silent(a, now) <= suspect_after)
                    .count();
                if back > 0 {
                    self.resolve(tx, inc, "engine", &format!("{back} machines report again"), now)
                        .await?;
                } else {
                    site_inc = Some(inc);
                }
            }
            for (id, a) in &agents {
                let active = self.active_if(tx, open, "agent_offline", id).await?;
                let off = self.is_offline(a, now);
                match (off, active) {
                    (true, None) => {
                        let silent = self.silent(a, now).num_seconds();
                        let (kind, cause) = match &site_inc {
                            Some(s) => (
                                s.cause_kind,
                                format!("part of the site outage (incident #{}): {}", s.id, s.probable_cause),
                            ),
                            None if a.last_seen.is_none() => (
                                CauseKind::OneMachine,
                                format!(
                                    "{} enrolled {silent} s ago and never sent a heartbeat: its agent was not started, or it cannot reach the collector (address, firewall, proxy or CA file)",
                                    a.hostname
                                ),
                            ),
                            None if agents.len() == 1 => (
                                CauseKind::OneMachine,
                                format!(
                                    "{} is the only machine of {key}: it is off or asleep, its agent stopped, or the site's internet or power is out",
                                    a.hostname
                                ),
                            ),
                            None => (
                                CauseKind::OneMachine,
                                format!(
                                    "one machine: {} stopped sending heartbeats {silent} s ago while the site's other machines report; it is off, asleep, disconnected, or its agent stopped",
                                    a.hostname
                                ),
                            ),
                        };
                        let want = Want {
                            new: NewIncident {
                                source: "agent_offline".into(),
                                subject: (*id).clone(),
                                severity: Severity::High,
                                title: format!("{} ({key}) is offline", a.hostname),
                                probable_cause: cause,
                                cause_kind: kind,
                                practice: Some(a.practice.clone()),
                                site: Some(a.site.clone()),
                                agent_id: Some((*id).clone()),
                                practices_affected: Vec::new(),
                                parent_id: site_inc.as_ref().map(|s| s.id),
                                manual_resolve: false,
                                detail: json!({"hostname": a.hostname, "silent_secs": silent}),
                            },
                            why: match a.last_seen {
                                Some(_) => format!("no heartbeat for {silent} s"),
                                None => format!("no heartbeat since it enrolled {silent} s ago"),
                            },
                            hold: Duration::zero(),
                        };
                        let inc = self.upsert(tx, want, now).await?;
                        down_keys.insert(format!("agent_offline|{id}"));
                        if let Some(site) = &site_inc {
                            self.event(
                                tx,
                                site.id,
                                NewIncidentEvent::engine(
                                    "child_folded",
                                    format!("#{} {} is offline too", inc.id, a.hostname),
                                ),
                                now,
                            )
                            .await?;
                        }
                    }
                    (false, Some(inc)) => {
                        self.resolve(tx, inc, "engine", "heartbeat received again", now).await?;
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Samples every online agent's endpoint states into their windows, then judges each
    /// endpoint per site and across practices.
    async fn probes(&self, tx: &mut dyn Tx, state: &mut State, now: DateTime<Utc>) -> StoreResult<()> {
        // target -> site key -> (probing agents, failing agents)
        let mut by_target: BTreeMap<String, BTreeMap<String, SiteProbes>> = BTreeMap::new();
        let mut probe_kind: HashMap<String, String> = HashMap::new();
        let agents: Vec<(String, AgentInfo)> = state.agents.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut offline_sites = HashSet::new();
        for (id, a) in &agents {
            if self.is_offline(a, now) || a.last_seen.is_none() {
                offline_sites.insert(a.site_key());
                continue;
            }
            let endpoints: Vec<(String, EndpointState)> = state
                .probes
                .get(id)
                .map(|p| p.endpoints.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            for (target, s) in endpoints {
                let key = format!("{id}|{target}");
                let fresh = state
                    .sampled
                    .get(&key)
                    .is_some_and(|t| *t >= now - dur(self.settings.tick));
                let failing = if fresh {
                    state.windows.get(&key).is_some_and(|w| w.failing)
                } else {
                    self.sample(tx, state, &key, !s.up, now).await?
                };
                probe_kind.insert(target.clone(), s.probe.clone());
                let entry = by_target.entry(target).or_default().entry(a.site_key()).or_default();
                entry.probing.push(id.clone());
                if failing {
                    entry.failing.push(id.clone());
                }
            }
        }
        let mut existing: HashMap<String, Incident> = tx
            .active_incidents()
            .await?
            .into_iter()
            .filter(|i| i.source == "ehr_endpoint" || i.source == "ehr_vendor")
            .map(|i| (format!("{}|{}", i.source, i.subject), i))
            .collect();
        for (target, sites) in &by_target {
            let probe = probe_kind.get(target).map(String::as_str).unwrap_or("https");
            // Sites whose every machine fails it while their internet works: vendor candidates.
            let mut vendor_sites: Vec<(String, String)> = Vec::new();
            let mut judged: Vec<SiteVerdict> = Vec::new();
            for (site_key, SiteProbes { probing, failing }) in sites {
                if failing.is_empty() {
                    continue;
                }
                let baselines: Vec<&BaselineState> = probing
                    .iter()
                    .filter_map(|id| state.probes.get(id))
                    .flat_map(|p| p.baseline.values())
                    .collect();
                let hosts: Vec<String> = failing
                    .iter()
                    .filter_map(|id| state.agents.get(id).map(|a| a.hostname.clone()))
                    .collect();
                let reasons: BTreeSet<String> = failing
                    .iter()
                    .filter_map(|id| state.probes.get(id)?.endpoints.get(target)?.reason.clone())
                    .collect();
                let (kind, words) = if let Some((kind, words)) = cause::network_verdict(&baselines) {
                    (kind, format!("not the EHR: {words}"))
                } else if failing.len() < probing.len() {
                    (
                        CauseKind::OneMachine,
                        format!(
                            "one machine: only {} cannot reach {target}; the site's other {} machines can. Check that machine's network cable, Wi-Fi, firewall or proxy",
                            hosts.join(", "),
                            probing.len() - failing.len()
                        ),
                    )
                } else if probe == "tcp" {
                    (
                        CauseKind::OnPremServer,
                        format!(
                            "the on-premises server {target}: its TCP port does not answer from any of the site's {} machines while their internet works. Check that the server is on and its service runs",
                            probing.len()
                        ),
                    )
                } else {
                    let practice = site_key.split('/').next().unwrap_or_default().to_string();
                    vendor_sites.push((site_key.clone(), practice));
                    let elsewhere_ok = sites
                        .iter()
                        .any(|(k, p)| k != site_key && !p.probing.is_empty() && p.failing.is_empty());
                    if elsewhere_ok {
                        (
                            CauseKind::SiteNetwork,
                            format!(
                                "this site's route to {target}: every machine here fails it while their internet works, and other sites reach it. Check the site's firewall, VPN or DNS entries for the EHR"
                            ),
                        )
                    } else {
                        (
                            CauseKind::EhrVendor,
                            format!(
                                "the EHR vendor's service at {target}: every machine of the site fails it while their internet works; no other practice confirms yet"
                            ),
                        )
                    }
                };
                judged.push(SiteVerdict {
                    site_key: site_key.clone(),
                    kind,
                    words,
                    hosts,
                    reasons,
                });
            }
            let practices: BTreeSet<String> = vendor_sites.iter().map(|(_, p)| p.clone()).collect();
            let vendor_down = practices.len() >= 2;
            let vendor_key = format!("ehr_vendor|{target}");
            let vendor = if vendor_down {
                let names: Vec<String> = practices.iter().cloned().collect();
                let want = Want {
                    new: NewIncident {
                        source: "ehr_vendor".into(),
                        subject: target.clone(),
                        severity: Severity::Critical,
                        title: format!("EHR vendor outage: {target} down for {} practices", names.len()),
                        probable_cause: format!(
                            "the EHR vendor: {target} fails from {} practices ({}) whose own internet works. Contact the vendor; nothing to fix at the practices",
                            names.len(),
                            names.join(", ")
                        ),
                        cause_kind: CauseKind::EhrVendor,
                        practice: None,
                        site: None,
                        agent_id: None,
                        practices_affected: names.clone(),
                        parent_id: None,
                        manual_resolve: false,
                        detail: json!({"endpoint": target, "sites": vendor_sites.iter().map(|(s, _)| s).collect::<Vec<_>>()}),
                    },
                    why: format!(
                        "{} practices fail the same endpoint while their baselines pass",
                        names.len()
                    ),
                    hold: Duration::zero(),
                };
                existing.remove(&vendor_key);
                Some(self.upsert(tx, want, now).await?)
            } else {
                None
            };
            for SiteVerdict {
                site_key,
                kind,
                words,
                hosts,
                reasons,
            } in judged
            {
                let (practice, site) = site_key.split_once('/').unwrap_or((&site_key, ""));
                let in_vendor = vendor.is_some() && vendor_sites.iter().any(|(s, _)| s == &site_key);
                let (kind, words) = match (&vendor, in_vendor) {
                    (Some(v), true) => (
                        CauseKind::EhrVendor,
                        format!("part of the EHR vendor outage #{}: {}", v.id, v.probable_cause),
                    ),
                    _ => (kind, words),
                };
                let hold = if kind == CauseKind::EhrVendor && vendor.is_none() {
                    // Give other practices two ticks to confirm a vendor outage first.
                    dur(self.settings.tick) * 2
                } else {
                    Duration::zero()
                };
                let subject = format!("{site_key}|{target}");
                existing.remove(&format!("ehr_endpoint|{subject}"));
                let want = Want {
                    new: NewIncident {
                        source: "ehr_endpoint".into(),
                        subject,
                        severity: Severity::Critical,
                        title: format!("EHR endpoint {target} unreachable from {site_key}"),
                        probable_cause: words,
                        cause_kind: kind,
                        practice: Some(practice.to_string()),
                        site: Some(site.to_string()),
                        agent_id: None,
                        practices_affected: Vec::new(),
                        parent_id: if in_vendor { vendor.as_ref().map(|v| v.id) } else { None },
                        manual_resolve: false,
                        detail: json!({"endpoint": target, "machines_failing": hosts, "reasons": reasons}),
                    },
                    why: "the probes of the site's machines and their network baselines".into(),
                    hold,
                };
                let inc = self.upsert(tx, want, now).await?;
                if let (Some(v), true) = (&vendor, in_vendor)
                    && inc.parent_id != Some(v.id)
                {
                    self.fold(tx, inc, v, now).await?;
                }
                // Flapping: a failing window that went up in between.
            }
        }
        // Whatever is no longer failing resolves (not while its site is offline: no evidence).
        for (_, inc) in existing {
            if inc
                .practice
                .as_ref()
                .zip(inc.site.as_ref())
                .is_some_and(|(p, s)| offline_sites.contains(&format!("{p}/{s}")))
            {
                continue;
            }
            self.resolve(tx, inc, "engine", "the endpoint answers again from every machine", now)
                .await?;
        }
        self.mark_flapping(tx, state, now).await
    }

    /// Marks open EHR incidents whose windows went up and down as flapping (kept open).
    async fn mark_flapping(&self, tx: &mut dyn Tx, state: &State, now: DateTime<Utc>) -> StoreResult<()> {
        for inc in tx.active_incidents().await? {
            if inc.source != "ehr_endpoint" || inc.flapping {
                continue;
            }
            let Some(target) = inc.subject.split_once('|').map(|(_, t)| t.to_string()) else {
                continue;
            };
            let flaps = state.windows.iter().any(|(k, w)| {
                w.failing
                    && k.ends_with(&format!("|{target}"))
                    && state
                        .agents
                        .get(k.split('|').next().unwrap_or_default())
                        .is_some_and(|a| {
                            Some(a.practice.as_str()) == inc.practice.as_deref()
                                && Some(a.site.as_str()) == inc.site.as_deref()
                        })
                    && cause::flapping(&w.results)
            });
            if flaps {
                let mut inc = inc;
                inc.flapping = true;
                inc.updated_at = now;
                tx.save_incident(&inc).await?;
                self.event(
                    tx,
                    inc.id,
                    NewIncidentEvent::engine(
                        "flapping",
                        "the endpoint keeps going down and up: the incident stays open until it passes twice in a row",
                    ),
                    now,
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn reminders(&self, tx: &mut dyn Tx, now: DateTime<Utc>) -> StoreResult<()> {
        let renotify = dur(self.settings.renotify);
        for mut inc in tx.active_incidents().await? {
            if inc.state != IncidentState::Open || self.parent_active(tx, &inc).await? {
                continue;
            }
            if inc.last_notified_at.is_some_and(|t| now - t >= renotify) {
                self.notify(tx, &mut inc, NotificationKind::Reminder, None, Duration::zero(), now)
                    .await?;
            }
            if inc.escalated_at.is_none() {
                let to: Vec<String> = self
                    .settings
                    .routes
                    .iter()
                    .filter(|r| route_matches(r, &inc))
                    .filter(|r| r.escalate_after.is_some_and(|a| now - inc.opened_at >= dur(a)))
                    .flat_map(|r| r.escalate_to.iter().cloned())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                if !to.is_empty() {
                    inc.escalated_at = Some(now);
                    self.event(
                        tx,
                        inc.id,
                        NewIncidentEvent::engine(
                            "escalated",
                            format!("not acknowledged in time: escalated to {}", to.join(", ")),
                        ),
                        now,
                    )
                    .await?;
                    self.notify(
                        tx,
                        &mut inc,
                        NotificationKind::Escalated,
                        Some(to),
                        Duration::zero(),
                        now,
                    )
                    .await?;
                }
            }
        }
        Ok(())
    }

    async fn silence_transitions(&self, tx: &mut dyn Tx, state: &mut State, now: DateTime<Utc>) -> StoreResult<()> {
        for s in &self.settings.silences {
            let active = s.active(now);
            let was = state.silences.insert(s.name.clone(), active).unwrap_or(false);
            if active == was {
                continue;
            }
            let reason = s.reason.as_deref().unwrap_or("no reason given");
            self.silence_changed(
                tx,
                &format!("`{}`", s.name),
                reason,
                Matchers::of_config(s),
                active,
                now,
            )
            .await?;
        }
        // Runtime silences: their start and end are recorded once, in the store, so a
        // restart neither repeats nor loses them.
        let open = tx
            .silences(&SilenceQuery {
                end_unrecorded: true,
                ..SilenceQuery::default()
            })
            .await?;
        for mut s in open {
            let mut changed = false;
            if s.active(now) && s.start_recorded_at.is_none() {
                self.silence_changed(tx, &s.name(), &s.reason, Matchers::of_runtime(&s), true, now)
                    .await?;
                s.start_recorded_at = Some(now);
                changed = true;
            }
            if now >= s.effective_end() {
                if s.start_recorded_at.is_some() {
                    self.silence_changed(tx, &s.name(), &s.reason, Matchers::of_runtime(&s), false, now)
                        .await?;
                }
                s.end_recorded_at = Some(now);
                changed = true;
            }
            if changed {
                tx.save_silence(&s).await?;
            }
        }
        Ok(())
    }

    /// A silence started or ended: the audit log and the timeline of every active incident it
    /// selects say so; when it ends, an incident that was never told about is told now.
    async fn silence_changed(
        &self,
        tx: &mut dyn Tx,
        name: &str,
        reason: &str,
        matchers: Matchers<'_>,
        active: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let what = if active { "silence_started" } else { "silence_ended" };
        tx.audit("alert-engine", what, &format!("{name} ({reason})"), now)
            .await?;
        for mut inc in tx.active_incidents().await? {
            if !matchers.matches(&inc) {
                continue;
            }
            self.event(
                tx,
                inc.id,
                NewIncidentEvent::engine(
                    "silenced",
                    format!("silence {name} {} ({reason})", if active { "started" } else { "ended" }),
                ),
                now,
            )
            .await?;
            if !active && inc.parent_id.is_none() {
                let sent = tx
                    .incident_notifications(inc.id)
                    .await?
                    .iter()
                    .any(|n| n.status == OutboxStatus::Delivered || n.status == OutboxStatus::Pending);
                if !sent {
                    self.notify(tx, &mut inc, NotificationKind::Opened, None, Duration::zero(), now)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// The silence in force at `now` that selects `inc`, configured or runtime: its name and
    /// reason.
    async fn silenced_by(
        &self,
        tx: &mut dyn Tx,
        inc: &Incident,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<(String, String)>> {
        if let Some(s) = self
            .settings
            .silences
            .iter()
            .find(|s| s.active(now) && Matchers::of_config(s).matches(inc))
        {
            return Ok(Some((
                format!("`{}`", s.name),
                s.reason.clone().unwrap_or_else(|| "maintenance".into()),
            )));
        }
        let runtime = tx
            .silences(&SilenceQuery {
                not_over_at: Some(now),
                ..SilenceQuery::default()
            })
            .await?;
        Ok(runtime
            .into_iter()
            .find(|s| s.active(now) && Matchers::of_runtime(s).matches(inc))
            .map(|s| (s.name(), s.reason)))
    }

    // ----- incidents -----

    async fn event(&self, tx: &mut dyn Tx, id: i64, e: NewIncidentEvent, now: DateTime<Utc>) -> StoreResult<()> {
        tx.incident_event(id, &e, now).await
    }

    async fn parent_active(&self, tx: &mut dyn Tx, inc: &Incident) -> StoreResult<bool> {
        match inc.parent_id {
            None => Ok(false),
            Some(p) => Ok(tx.incident_by_id(p).await?.is_some_and(|p| p.state.is_active())),
        }
    }

    /// Opens the incident `want` describes, or updates the open one's cause.
    async fn upsert(&self, tx: &mut dyn Tx, want: Want, now: DateTime<Utc>) -> StoreResult<Incident> {
        let Want { new, why, hold } = want;
        if let Some(mut inc) = tx.active_incident(&new.source, &new.subject).await? {
            let mut changed = false;
            if inc.cause_kind != new.cause_kind {
                self.event(
                    tx,
                    inc.id,
                    NewIncidentEvent::engine(
                        "cause_changed",
                        format!(
                            "cause changed from {} to {}: {why}; now: {}",
                            inc.cause_kind.as_str(),
                            new.cause_kind.as_str(),
                            new.probable_cause
                        ),
                    ),
                    now,
                )
                .await?;
                inc.cause_kind = new.cause_kind;
                changed = true;
            }
            if inc.probable_cause != new.probable_cause || inc.title != new.title {
                inc.probable_cause = new.probable_cause;
                inc.title = new.title;
                changed = true;
            }
            if inc.practices_affected != new.practices_affected {
                self.event(
                    tx,
                    inc.id,
                    NewIncidentEvent::engine(
                        "cause_changed",
                        format!("practices affected now: {}", new.practices_affected.join(", ")),
                    ),
                    now,
                )
                .await?;
                inc.practices_affected = new.practices_affected;
                changed = true;
            }
            if changed {
                inc.detail = new.detail;
                inc.updated_at = now;
                tx.save_incident(&inc).await?;
            }
            return Ok(inc);
        }
        let mut inc = tx.open_incident(&new, now).await?;
        self.event(
            tx,
            inc.id,
            NewIncidentEvent::engine("opened", format!("{}; probable cause: {}", why, inc.probable_cause)),
            now,
        )
        .await?;
        self.notify(tx, &mut inc, NotificationKind::Opened, None, hold, now)
            .await?;
        Ok(inc)
    }

    /// Folds `child` into `parent`: the child's pending notifications are cancelled and both
    /// timelines say so.
    async fn fold(
        &self,
        tx: &mut dyn Tx,
        mut child: Incident,
        parent: &Incident,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        child.parent_id = Some(parent.id);
        child.updated_at = now;
        tx.save_incident(&child).await?;
        let mut cancelled = 0;
        for mut n in tx.incident_notifications(child.id).await? {
            if n.status == OutboxStatus::Pending {
                n.status = OutboxStatus::Cancelled;
                n.finished_at = Some(now);
                n.last_error = Some(format!("held: folded into incident #{}", parent.id));
                tx.save_notification(&n).await?;
                cancelled += 1;
            }
        }
        self.event(
            tx,
            child.id,
            NewIncidentEvent::engine(
                "child_folded",
                format!(
                    "folded into incident #{} ({}); {cancelled} pending notifications held",
                    parent.id, parent.title
                ),
            ),
            now,
        )
        .await?;
        self.event(
            tx,
            parent.id,
            NewIncidentEvent::engine("child_folded", format!("#{} {} folded in", child.id, child.title)),
            now,
        )
        .await
    }

    /// Resolves an incident, cancels its pending notifications and sends one resolved
    /// notification to every channel that was told about it.
    async fn resolve(
        &self,
        tx: &mut dyn Tx,
        mut inc: Incident,
        actor: &str,
        why: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        inc.state = IncidentState::Resolved;
        inc.resolved_at = Some(now);
        inc.resolved_by = Some(actor.to_string());
        inc.updated_at = now;
        if inc.source == "site_offline" && inc.cause_kind == CauseKind::SiteNetwork {
            // Back without any spooled evidence yet: nothing ran, most likely power.
            inc.cause_kind = CauseKind::SitePower;
            inc.probable_cause = format!(
                "{}: the machines came back without probe results from the outage: power (or the whole site network) was down",
                site_outage_title(&inc.subject)
            );
            self.event(
                tx,
                inc.id,
                NewIncidentEvent::engine(
                    "cause_changed",
                    "cause changed from site_network to site_power: the machines came back with no results recorded during the outage",
                ),
                now,
            )
            .await?;
        }
        tx.save_incident(&inc).await?;
        let mut told = BTreeSet::new();
        for mut n in tx.incident_notifications(inc.id).await? {
            match n.status {
                OutboxStatus::Delivered if n.kind != NotificationKind::Resolved => {
                    told.insert(n.channel.clone());
                }
                // Acknowledgements still go out: they mirror what a person did.
                OutboxStatus::Pending if n.kind != NotificationKind::Acknowledged => {
                    n.status = OutboxStatus::Cancelled;
                    n.finished_at = Some(now);
                    n.last_error = Some("not sent: the incident resolved first".into());
                    tx.save_notification(&n).await?;
                    self.event(
                        tx,
                        inc.id,
                        NewIncidentEvent {
                            kind: "held".into(),
                            actor: "engine".into(),
                            channel: Some(n.channel.clone()),
                            message: format!(
                                "{} notification not sent: the incident resolved within its hold time",
                                n.kind.as_str()
                            ),
                        },
                        now,
                    )
                    .await?;
                }
                _ => {}
            }
        }
        self.event(
            tx,
            inc.id,
            NewIncidentEvent {
                kind: "resolved".into(),
                actor: actor.to_string(),
                channel: None,
                message: why.to_string(),
            },
            now,
        )
        .await?;
        if !told.is_empty() {
            self.notify(
                tx,
                &mut inc,
                NotificationKind::Resolved,
                Some(told.into_iter().collect()),
                Duration::zero(),
                now,
            )
            .await?;
        }
        Ok(())
    }

    /// Enqueues a notification of `inc` to its routed channels (or `to`), held while its parent
    /// is open, silenced while a silence matches.
    async fn notify(
        &self,
        tx: &mut dyn Tx,
        inc: &mut Incident,
        kind: NotificationKind,
        to: Option<Vec<String>>,
        hold: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        if kind != NotificationKind::Resolved && self.parent_active(tx, inc).await? {
            self.event(
                tx,
                inc.id,
                NewIncidentEvent::engine(
                    "held",
                    format!(
                        "{} notification held: folded into incident #{}",
                        kind.as_str(),
                        inc.parent_id.unwrap_or_default()
                    ),
                ),
                now,
            )
            .await?;
            return Ok(());
        }
        let channels = to.unwrap_or_else(|| self.route(inc));
        let silence = if kind == NotificationKind::Resolved {
            None
        } else {
            self.silenced_by(tx, inc, now).await?
        };
        let status = if silence.is_some() && kind != NotificationKind::Resolved {
            OutboxStatus::Silenced
        } else {
            OutboxStatus::Pending
        };
        let hold = hold.max(dur(self.settings.hold));
        for channel in &channels {
            tx.enqueue_notification(
                &NewOutboxItem {
                    incident_id: inc.id,
                    channel: channel.clone(),
                    kind,
                    status,
                    next_attempt_at: now + hold,
                },
                now,
            )
            .await?;
        }
        if let (Some((name, reason)), OutboxStatus::Silenced) = (silence, status) {
            self.event(
                tx,
                inc.id,
                NewIncidentEvent::engine(
                    "silenced",
                    format!("{} notification held by silence {name} ({reason})", kind.as_str()),
                ),
                now,
            )
            .await?;
        } else if status == OutboxStatus::Pending && !channels.is_empty() {
            inc.last_notified_at = Some(now);
            inc.updated_at = now;
            tx.save_incident(inc).await?;
        }
        Ok(())
    }

    /// The channels an incident goes to: every matching route's, or every channel when no
    /// route matches.
    fn route(&self, inc: &Incident) -> Vec<String> {
        let routed: BTreeSet<String> = self
            .settings
            .routes
            .iter()
            .filter(|r| route_matches(r, inc))
            .flat_map(|r| r.channels.iter().cloned())
            .collect();
        if routed.is_empty() {
            self.notifier.channel_names()
        } else {
            routed.into_iter().collect()
        }
    }

    // ----- the outbox -----

    /// Delivers the notifications that are due, when this collector holds the outbox lease.
    /// Returns how many attempts were made.
    ///
    /// Each attempt is recorded (delivered, or failed with its next attempt) in one unit of
    /// work right after the channel answered. A crash between a channel's answer and that
    /// commit sends that one notification again after the restart: at least once, with at most
    /// one duplicate per crash; nothing is lost.
    pub async fn deliver_due(&self) -> StoreResult<usize> {
        let _one = self.delivering.lock().await;
        let now = self.clock.now();
        if !self
            .store
            .claim_lease("alert-outbox", &self.holder, now + Duration::seconds(30), now)
            .await?
        {
            return Ok(0);
        }
        let due = {
            let mut tx = self.store.begin().await?;
            let due = tx.due_notifications(now, 100).await?;
            tx.commit().await?;
            due
        };
        let mut attempts = 0;
        for mut item in due {
            let wait = self
                .channels
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&item.channel)
                .and_then(|h| h.next_try)
                .filter(|t| *t > now);
            if let Some(t) = wait {
                // The destination is backing off: this one waits with it.
                item.next_attempt_at = t;
                let mut tx = self.store.begin().await?;
                tx.save_notification(&item).await?;
                tx.commit().await?;
                continue;
            }
            let inc = {
                let mut tx = self.store.begin().await?;
                let inc = tx.incident_by_id(item.incident_id).await?;
                let parent = match &inc {
                    Some(i) => self.parent_active(&mut *tx, i).await?,
                    None => false,
                };
                tx.commit().await?;
                inc.map(|i| (i, parent))
            };
            let Some((inc, parent)) = inc else { continue };
            let mirrors = matches!(item.kind, NotificationKind::Resolved | NotificationKind::Acknowledged);
            let stale = !mirrors && (!inc.state.is_active() || (parent && item.kind == NotificationKind::Opened));
            if stale {
                let mut tx = self.store.begin().await?;
                item.status = OutboxStatus::Cancelled;
                item.finished_at = Some(now);
                item.last_error = Some("not sent: resolved or folded before it was due".into());
                tx.save_notification(&item).await?;
                tx.commit().await?;
                continue;
            }
            if !mirrors {
                // A silence that started while it waited (its hold time, a backoff) holds it.
                let mut tx = self.store.begin().await?;
                if let Some((name, reason)) = self.silenced_by(&mut *tx, &inc, now).await? {
                    item.status = OutboxStatus::Silenced;
                    item.finished_at = Some(now);
                    item.last_error = Some(format!("held by silence {name}"));
                    tx.save_notification(&item).await?;
                    self.event(
                        &mut *tx,
                        inc.id,
                        NewIncidentEvent::engine(
                            "silenced",
                            format!("{} notification held by silence {name} ({reason})", item.kind.as_str()),
                        ),
                        now,
                    )
                    .await?;
                    tx.commit().await?;
                    continue;
                }
                tx.commit().await?;
            }
            let n = self.notification(&inc, item.kind, item.created_at);
            attempts += 1;
            let result = self.notifier.send(&item.channel, &n).await;
            let at = self.clock.now();
            let mut tx = self.store.begin().await?;
            item.attempts += 1;
            let failing = match result {
                Ok(()) => {
                    item.status = OutboxStatus::Delivered;
                    item.finished_at = Some(at);
                    item.last_error = None;
                    tx.save_notification(&item).await?;
                    tx.incident_event(
                        inc.id,
                        &NewIncidentEvent {
                            kind: "notified".into(),
                            actor: "engine".into(),
                            channel: Some(item.channel.clone()),
                            message: format!(
                                "{} notification delivered to {} (attempt {})",
                                item.kind.as_str(),
                                item.channel,
                                item.attempts
                            ),
                        },
                        at,
                    )
                    .await?;
                    crate::events::alert_sent(&inc.source, &item.channel, item.kind.as_str());
                    self.channel_ok(&mut *tx, &item.channel, at).await?;
                    false
                }
                Err(e) => {
                    item.last_error = Some(e.message.clone());
                    let backoff = self.backoff(item.attempts, e.retry_after);
                    if e.permanent || item.attempts >= self.settings.max_attempts {
                        item.status = OutboxStatus::Failed;
                        item.finished_at = Some(at);
                        tx.incident_event(
                            inc.id,
                            &NewIncidentEvent {
                                kind: "notify_failed".into(),
                                actor: "engine".into(),
                                channel: Some(item.channel.clone()),
                                message: format!(
                                    "{} notification to {} given up after {} attempts: {}",
                                    item.kind.as_str(),
                                    item.channel,
                                    item.attempts,
                                    e.message
                                ),
                            },
                            at,
                        )
                        .await?;
                    } else {
                        item.next_attempt_at = at + backoff;
                    }
                    tx.save_notification(&item).await?;
                    crate::events::alert_failed(&inc.source, &item.channel, &e.message);
                    let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
                    let h = channels.entry(item.channel.clone()).or_default();
                    h.failures += 1;
                    h.next_try = Some(at + backoff);
                    h.last_error = e.message.clone();
                    h.failures >= self.settings.channel_failing_after && inc.source != "channel_failing"
                }
            };
            if failing {
                self.channel_failing(&mut *tx, &item.channel, at).await?;
            }
            tx.commit().await?;
        }
        Ok(attempts)
    }

    /// Capped exponential backoff with a little jitter, at least what the destination asked.
    fn backoff(&self, attempts: u32, retry_after: Option<std::time::Duration>) -> Duration {
        let base = self.settings.retry_base.as_millis() as i64;
        let cap = self.settings.retry_cap.as_millis() as i64;
        let exp = base.saturating_mul(1i64 << attempts.saturating_sub(1).min(20)).min(cap);
        let jitter = (rand::random::<u16>() as i64 % (exp / 10 + 1)).max(0);
        let ms = (exp + jitter).max(retry_after.map(|r| r.as_millis() as i64).unwrap_or(0));
        Duration::milliseconds(ms)
    }

    async fn channel_ok(&self, tx: &mut dyn Tx, channel: &str, now: DateTime<Utc>) -> StoreResult<()> {
        self.channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(channel.to_string(), ChannelHealth::default());
        if let Some(inc) = tx.active_incident("channel_failing", channel).await? {
            self.resolve(tx, inc, "engine", &format!("{channel} delivers again"), now)
                .await?;
        }
        Ok(())
    }

    async fn channel_failing(&self, tx: &mut dyn Tx, channel: &str, now: DateTime<Utc>) -> StoreResult<()> {
        let (failures, last) = {
            let c = self.channels.lock().unwrap_or_else(|p| p.into_inner());
            let h = c.get(channel).cloned().unwrap_or_default();
            (h.failures, h.last_error)
        };
        if tx.active_incident("channel_failing", channel).await?.is_some() {
            return Ok(());
        }
        let others: Vec<String> = self
            .notifier
            .channel_names()
            .into_iter()
            .filter(|c| c != channel)
            .collect();
        let new = NewIncident {
            source: "channel_failing".into(),
            subject: channel.to_string(),
            severity: Severity::High,
            title: format!("notification channel {channel} keeps failing"),
            probable_cause: format!(
                "{failures} deliveries to {channel} failed in a row; last error: {last}. Check the channel's settings and its destination"
            ),
            cause_kind: CauseKind::Channel,
            practice: None,
            site: None,
            agent_id: None,
            practices_affected: Vec::new(),
            parent_id: None,
            manual_resolve: false,
            detail: json!({"channel": channel}),
        };
        let mut inc = tx.open_incident(&new, now).await?;
        self.event(
            tx,
            inc.id,
            NewIncidentEvent::engine("opened", format!("{failures} failed deliveries in a row")),
            now,
        )
        .await?;
        self.notify(
            tx,
            &mut inc,
            NotificationKind::Opened,
            Some(others),
            Duration::zero(),
            now,
        )
        .await
    }

    /// The notification a channel renders for `inc`.
    pub fn notification(&self, inc: &Incident, kind: NotificationKind, at: DateTime<Utc>) -> Notification {
        Notification {
            incident_id: inc.id,
            dedup_key: inc.dedup_key(),
            kind,
            severity: inc.severity,
            source: inc.source.clone(),
            subject: inc.subject.clone(),
            title: inc.title.clone(),
            probable_cause: inc.probable_cause.clone(),
            practice: inc.practice.clone(),
            site: inc.site.clone(),
            practices_affected: inc.practices_affected.clone(),
            opened_at: inc.opened_at,
            at,
            url: self
                .settings
                .public_url
                .as_ref()
                .map(|u| format!("{}/incidents/{}", u.trim_end_matches('/'), inc.id)),
        }
    }

    // ----- what operators do (API and CLI) -----

    /// Incidents visible to `scope`.
    pub async fn list(&self, scope: &Scope, query: &IncidentQuery) -> StoreResult<Vec<Incident>> {
        self.store.incidents(scope, query).await
    }

    /// One incident visible to `scope`, with its timeline.
    pub async fn detail(&self, scope: &Scope, id: i64) -> StoreResult<IncidentDetail> {
        self.store.incident(scope, id).await
    }

    /// A person acknowledges an open incident; channels that were told about it hear it.
    pub async fn acknowledge(&self, scope: &Scope, id: i64, actor: &str) -> Result<IncidentDetail, IncidentError> {
        self.store.incident(scope, id).await?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let mut inc = tx.incident_by_id(id).await?.ok_or(StoreError::NotFound {
            what: "incident",
            name: id.to_string(),
        })?;
        match inc.state {
            IncidentState::Resolved => return Err(IncidentError::Resolved(id)),
            IncidentState::Acknowledged => {}
            IncidentState::Open => {
                inc.state = IncidentState::Acknowledged;
                inc.acknowledged_at = Some(now);
                inc.acknowledged_by = Some(actor.to_string());
                inc.updated_at = now;
                tx.save_incident(&inc).await?;
                tx.incident_event(
                    id,
                    &NewIncidentEvent {
                        kind: "acknowledged".into(),
                        actor: actor.to_string(),
                        channel: None,
                        message: format!("acknowledged by {actor}"),
                    },
                    now,
                )
                .await?;
                let told: BTreeSet<String> = tx
                    .incident_notifications(id)
                    .await?
                    .into_iter()
                    .filter(|n| n.status == OutboxStatus::Delivered)
                    .map(|n| n.channel)
                    .collect();
                if !told.is_empty() {
                    self.notify(
                        &mut *tx,
                        &mut inc,
                        NotificationKind::Acknowledged,
                        Some(told.into_iter().collect()),
                        Duration::zero(),
                        now,
                    )
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(self.store.incident(scope, id).await?)
    }

    /// A person resolves an incident (the only way for an audit-log tamper incident).
    pub async fn resolve_by(
        &self,
        scope: &Scope,
        id: i64,
        actor: &str,
        note: Option<&str>,
    ) -> Result<IncidentDetail, IncidentError> {
        self.store.incident(scope, id).await?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let inc = tx.incident_by_id(id).await?.ok_or(StoreError::NotFound {
            what: "incident",
            name: id.to_string(),
        })?;
        if inc.state == IncidentState::Resolved {
            return Err(IncidentError::Resolved(id));
        }
        let why = match note {
            Some(n) => format!("resolved by {actor}: {n}"),
            None => format!("resolved by {actor}"),
        };
        self.resolve(&mut *tx, inc, actor, &why, now).await?;
        tx.commit().await?;
        Ok(self.store.incident(scope, id).await?)
    }

    /// A person adds a note to an incident's timeline.
    pub async fn note(&self, scope: &Scope, id: i64, actor: &str, text: &str) -> Result<IncidentDetail, IncidentError> {
        let text = text.trim();
        if text.is_empty() || text.len() > 4000 {
            return Err(IncidentError::Invalid("a note is 1 to 4000 characters".into()));
        }
        self.store.incident(scope, id).await?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        tx.incident_event(
            id,
            &NewIncidentEvent {
                kind: "note".into(),
                actor: actor.to_string(),
                channel: None,
                message: text.to_string(),
            },
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(self.store.incident(scope, id).await?)
    }

    // ----- runtime silences -----

    /// A person silences what `req` selects for a period (admins and technicians). Stored
    /// and audited in one unit of work; when it starts now, the timelines of the active
    /// incidents it selects say so at once.
    pub async fn create_silence(
        &self,
        scope: &Scope,
        req: &SilenceRequest,
        actor: &str,
    ) -> Result<StoredSilence, SilenceError> {
        may_silence(scope)?;
        let now = self.clock.now();
        let practices = self.store.practices(&everything()).await?;
        let new = super::silence::validate(req, &practices, actor, now).map_err(SilenceError::Invalid)?;
        let mut tx = self.store.begin().await?;
        let mut s = tx.create_silence(&new, now).await?;
        tx.audit(actor, "silence.create", &super::silence::describe(&s), now)
            .await?;
        if s.active(now) {
            self.silence_changed(&mut *tx, &s.name(), &s.reason, Matchers::of_runtime(&s), true, now)
                .await?;
            s.start_recorded_at = Some(now);
            tx.save_silence(&s).await?;
        }
        tx.commit().await?;
        Ok(s)
    }

    /// A person ends a silence early (admins and technicians): notifications it held for
    /// incidents still open go out now.
    pub async fn end_silence(&self, scope: &Scope, id: i64, actor: &str) -> Result<StoredSilence, SilenceError> {
        may_silence(scope)?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let mut s = tx
            .silences(&SilenceQuery {
                id: Some(id),
                ..SilenceQuery::default()
            })
            .await?
            .pop()
            .ok_or(SilenceError::NotFound(id))?;
        if s.effective_end() <= now {
            return Err(SilenceError::Over(id));
        }
        s.ended_at = Some(now);
        s.ended_by = Some(actor.to_string());
        tx.audit(actor, "silence.end", &super::silence::describe(&s), now)
            .await?;
        // Saved first: what it held is sent by `silence_changed`, which must see it over.
        s.end_recorded_at = Some(now);
        tx.save_silence(&s).await?;
        if s.start_recorded_at.is_some() {
            self.silence_changed(&mut *tx, &s.name(), &s.reason, Matchers::of_runtime(&s), false, now)
                .await?;
        }
        tx.commit().await?;
        Ok(s)
    }

    /// Runtime silences (admins and technicians): those not over yet, or every one with `all`.
    pub async fn silences(&self, scope: &Scope, all: bool) -> Result<Vec<StoredSilence>, SilenceError> {
        may_silence(scope)?;
        let now = self.clock.now();
        Ok(self
            .store
            .silences(&SilenceQuery {
                not_over_at: (!all).then_some(now),
                ..SilenceQuery::default()
            })
            .await?)
    }
}

fn site_outage_title(key: &str) -> String {
    format!("site {key}")
}

fn route_matches(r: &super::config::Route, inc: &Incident) -> bool {
    let practice_ok = r
        .practice
        .as_ref()
        .is_none_or(|p| inc.practice.as_ref() == Some(p) || inc.practices_affected.iter().any(|a| a == p));
    practice_ok
        && r.site.as_ref().is_none_or(|s| inc.site.as_ref() == Some(s))
        && r.severity.is_none_or(|s| inc.severity <= s)
        && r.source.as_ref().is_none_or(|s| &inc.source == s)
}

/// An endpoint is known by what is probed (its URL or `host:port`), not by the name each
/// practice gives it, so the same vendor endpoint correlates across practices.
fn endpoint_key(o: &Observation) -> String {
    o.data
        .get("target")
        .and_then(|t| t.as_str())
        .unwrap_or(&o.subject)
        .to_string()
}

fn endpoint_state(o: &Observation) -> Option<EndpointState> {
    let d = &o.data;
    Some(EndpointState {
        probe: d.get("probe")?.as_str()?.to_string(),
        up: d.get("up")?.as_bool()?,
        reason: d.get("reason").and_then(|r| r.as_str()).map(str::to_string),
        at: o.observed_at,
    })
}

fn baseline_state(o: &Observation) -> Option<BaselineState> {
    let d = &o.data;
    Some(BaselineState {
        role: d.get("role")?.as_str()?.to_string(),
        target: d.get("target")?.as_str()?.to_string(),
        up: d.get("up")?.as_bool()?,
        reason: d.get("reason").and_then(|r| r.as_str()).map(str::to_string),
        at: o.observed_at,
    })
}
