//! Ingest and evaluation as a service apart from HTTP: the [`Evaluator`] stores reports and
//! heartbeats, evaluates agents, and publishes what changed on the [`ChangeStream`].
//!
//! The HTTP handlers, a CLI command or a background job call the same [`Evaluator`]; it owns
//! the store handle, the shared policy and the cache of practice and site policies, the clock
//! and the metrics. Reports of different agents are evaluated concurrently; evaluations of one
//! agent run one after the other (a lock per agent, not per process), and each reads the
//! agent's current state, which follows the highest sequence number, so the findings stored
//! last always come from the newest observations whatever order reports arrive in.
//!
//! After a unit of work commits, the evaluator publishes on the change stream: the agent was
//! seen, its first report arrived, its findings changed (with the recorded changes). The
//! stream is a bounded broadcast channel: publishing never waits, and a subscriber that falls
//! behind by more than the capacity misses the oldest changes and says so in
//! `rounds_change_consumer_lagged_total`.
//!
//! The collector judges the agent's clock itself: an agent whose clock, measured at its last
//! heartbeat, is off by more than `max_clock_skew` has an `error` finding of rule
//! [`CLOCK_RULE`] (a wrong clock breaks audit-log timestamps, 164.312(b)), which passes again
//! once the clock is right.
//!
//! A tamper event an agent's audit-log check reported holds the `hipaa.audit.log_integrity`
//! finding failing until a person acknowledges it ([`crate::tamper`]): each evaluation records
//! the events the observations name and applies the hold after the policy's verdict.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use chrono::{DateTime, Utc};
use rounds_policies::{EvalContext, Finding, Os, Policy, Severity, Status, evaluate};
use rounds_protocol::{Observation, Report};
use tokio::sync::broadcast;

use crate::clock::Clock;
use crate::evaluation::PolicyCache;
use crate::events::{self, Metrics};
use crate::store::{
    AgentPolicySettings, AgentReportedState, DeliveryOutcome, EvaluationInput, FindingChange, IncomingReport, Ingested,
    Role, Scope, Store, StoreError, StoreResult,
};

/// The rule id of the collector's own finding about an agent's clock.
pub const CLOCK_RULE: &str = "collector.agent_clock";

/// Something that changed, published after its transaction committed.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The agent's findings changed: what was recorded in the history.
    FindingsChanged {
        agent_id: String,
        changes: Arc<[FindingChange]>,
    },
    /// The agent sent a heartbeat or a report.
    AgentSeen { agent_id: String, at: DateTime<Utc> },
    /// The agent's first report was stored.
    FirstReport { agent_id: String, at: DateTime<Utc> },
    // --- Alerting (issue 12) ---
    /// Probe observations (`ehr.probe`, `network.baseline`) of reports just stored, for the
    /// alert engine: probes report state changes, which no finding change may reflect.
    ProbesStored {
        agent_id: String,
        observations: Arc<[Observation]>,
    },
}

impl Change {
    fn kind(&self) -> &'static str {
        match self {
            Change::FindingsChanged { .. } => "findings_changed",
            Change::AgentSeen { .. } => "agent_seen",
            Change::FirstReport { .. } => "first_report",
            Change::ProbesStored { .. } => "probes_stored",
        }
    }
}

/// The bounded in-process stream of [`Change`]s.
///
/// Changes committed by another collector on the same PostgreSQL database arrive through
/// [`crate::cluster`] and are published with [`publish_remote`](Self::publish_remote) on a
/// channel of their own: only subscribers made with
/// [`subscribe_with_remote`](Self::subscribe_with_remote) (the dashboard's live streams) see
/// them, so the alert engine never counts a change twice and a flood of remote changes never
/// makes a local subscriber lag.
#[derive(Debug, Clone)]
pub struct ChangeStream {
    tx: broadcast::Sender<Change>,
    remote: broadcast::Sender<Change>,
    metrics: Arc<Metrics>,
}

impl ChangeStream {
    /// A stream holding at most `capacity` changes for its slowest subscriber.
    pub fn new(capacity: usize, metrics: Arc<Metrics>) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        let (remote, _) = broadcast::channel(capacity.max(1));
        ChangeStream { tx, remote, metrics }
    }

    /// Publishes a change; never waits. Without subscribers the change is dropped.
    pub fn publish(&self, change: Change) {
        let kind = change.kind();
        let receivers = self.tx.send(change).unwrap_or(0);
        events::change_published(&self.metrics, kind, receivers);
    }

    /// Publishes a change another collector committed (cluster, issue 17); never waits. Seen
    /// only by subscribers made with [`subscribe_with_remote`](Self::subscribe_with_remote).
    pub fn publish_remote(&self, change: Change) {
        let kind = change.kind();
        let receivers = self.remote.send(change).unwrap_or(0);
        events::change_published(&self.metrics, kind, receivers);
    }

    /// A new subscriber, named in logs and metrics, that sees changes published from now on.
    pub fn subscribe(&self, consumer: &str) -> Subscriber {
        Subscriber {
            rx: self.tx.subscribe(),
            remote: None,
            consumer: consumer.to_string(),
            metrics: Arc::clone(&self.metrics),
        }
    }

    /// A subscriber that also sees the changes other collectors on the same database
    /// committed (the dashboard's live streams).
    pub fn subscribe_with_remote(&self, consumer: &str) -> Subscriber {
        Subscriber {
            remote: Some(self.remote.subscribe()),
            ..self.subscribe(consumer)
        }
    }
}

/// One subscriber of the [`ChangeStream`].
#[derive(Debug)]
pub struct Subscriber {
    rx: broadcast::Receiver<Change>,
    /// Other collectors' changes, for a subscriber that asked for them.
    remote: Option<broadcast::Receiver<Change>>,
    consumer: String,
    metrics: Arc<Metrics>,
}

impl Subscriber {
    /// The next change; `None` once the stream is gone. Changes missed because this
    /// subscriber lagged are counted and logged, and receiving goes on with the oldest kept.
    pub async fn recv(&mut self) -> Option<Change> {
        loop {
            let received = match &mut self.remote {
                None => self.rx.recv().await,
                Some(remote) => tokio::select! {
                    r = self.rx.recv() => r,
                    r = remote.recv() => r,
                },
            };
            match received {
                Ok(change) => return Some(change),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    events::consumer_lagged(&self.metrics, &self.consumer, missed);
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// A local change already published, without waiting (`None` when there is none now).
    pub fn try_recv(&mut self) -> Option<Change> {
        loop {
            match self.rx.try_recv() {
                Ok(change) => return Some(change),
                Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                    events::consumer_lagged(&self.metrics, &self.consumer, missed);
                }
                Err(_) => return None,
            }
        }
    }
}

/// Why an agent could not be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Neither an inventory nor the enrollment names an OS family the policy knows.
    #[error("agent {agent_id}: unknown operating system `{os}`; no inventory names its os_family yet")]
    UnknownOs { agent_id: String, os: String },
}

/// How many findings of each status one evaluation produced, and the changes it recorded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evaluated {
    pub pass: usize,
    pub fail: usize,
    pub error: usize,
    pub not_applicable: usize,
    pub changes: Vec<FindingChange>,
}

/// What became of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestOutcome {
    pub ingested: Ingested,
    /// How many observations were dated beyond the allowed skew and stored with the receive
    /// time instead.
    pub future_dated: usize,
    /// The evaluation after storing; `None` for a duplicate, `Some(Err)` when it failed (the
    /// report stays stored, the next report evaluates again).
    pub evaluation: Option<Result<Evaluated, String>>,
}

/// Evaluations of one agent wait for each other; other agents' do not. Entries live as long
/// as someone holds or waits for them.
#[derive(Debug, Default)]
struct AgentLocks(Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>);

impl AgentLocks {
    fn get(&self, agent_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lock) = map.get(agent_id).and_then(Weak::upgrade) {
            return lock;
        }
        if map.len() >= 1024 {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(agent_id.to_string(), Arc::downgrade(&lock));
        lock
    }
}

/// Agents known to have had a report stored (core, issue 7: ingest throughput). Only ever
/// true once true (a stored report is never removed), so it is never invalidated; it saves
/// the read of the agent's row that tells whether a delivery is its first report. Bounded:
/// past [`REPORTED_LIMIT`] entries it starts over (and reads again).
#[derive(Debug, Default)]
struct Reported(Mutex<std::collections::HashSet<String>>);

/// How many agents [`Reported`] remembers before it starts over.
const REPORTED_LIMIT: usize = 100_000;

impl Reported {
    fn contains(&self, agent_id: &str) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).contains(agent_id)
    }

    fn insert(&self, agent_id: &str) {
        let mut set = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if set.len() >= REPORTED_LIMIT {
            set.clear();
        }
        if !set.contains(agent_id) {
            set.insert(agent_id.to_string());
        }
    }
}

/// What a delivery through [`Evaluator::deliver`] read for the evaluation that follows, and the
/// agent's evaluation lock, held until this is used by [`Evaluator::stored`] or dropped.
#[derive(Debug)]
pub struct PendingEvaluation {
    input: Option<StoreResult<EvaluationInput>>,
    _lock: tokio::sync::OwnedMutexGuard<()>,
}

/// Stores what agents send, evaluates them, and publishes what changed.
#[derive(Debug)]
pub struct Evaluator {
    store: Arc<dyn Store>,
    policy: Arc<Policy>,
    policies: Arc<PolicyCache>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    changes: ChangeStream,
    max_clock_skew: chrono::Duration,
    locks: AgentLocks,
    reported: Reported,
}

/// The scope evaluation reads with: it acts for the collector, not for a user.
fn collector_scope() -> Scope {
    Scope {
        role: Role::Admin,
        practice_id: None,
    }
}

impl Evaluator {
    /// An evaluator over `store`, judging with `policy` where practices and sites have no
    /// settings of their own.
    pub fn new(
        store: Arc<dyn Store>,
        policy: Arc<Policy>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        max_clock_skew: std::time::Duration,
        change_capacity: usize,
    ) -> Self {
        Evaluator {
            changes: ChangeStream::new(change_capacity, Arc::clone(&metrics)),
            store,
            policy,
            policies: Arc::new(PolicyCache::default()),
            clock,
            metrics,
            max_clock_skew: chrono::Duration::from_std(max_clock_skew).unwrap_or(chrono::Duration::minutes(5)),
            locks: AgentLocks::default(),
            reported: Reported::default(),
        }
    }

    /// The change stream, to subscribe to.
    pub fn changes(&self) -> &ChangeStream {
        &self.changes
    }

    /// The cache of practice and site policies.
    pub fn policies(&self) -> &PolicyCache {
        &self.policies
    }

    /// The store this evaluator writes to (services that re-evaluate after their own unit of
    /// work, such as [`crate::tamper::acknowledge`]).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The current time by the evaluator's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Records a heartbeat, the agent's clock skew (`sent_at` by its clock against ours) and
    /// what it says of its configuration and spool, in one unit of work; re-evaluates the agent
    /// when its clock crossed the allowed skew either way.
    pub async fn heartbeat(
        &self,
        agent_id: &str,
        agent_version: &str,
        sent_at: DateTime<Utc>,
        reported: &AgentReportedState,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let skew = sent_at - now;
        let before = self
            .store
            .record_heartbeat(agent_id, agent_version, Some(skew), reported, now)
            .await?;
        events::heartbeat(&self.metrics, agent_id, skew.num_milliseconds());
        self.changes.publish(Change::AgentSeen {
            agent_id: agent_id.to_string(),
            at: now,
        });
        let was_off = before.clock_skew_ms.map(|ms| self.off(ms));
        if was_off != Some(self.off(skew.num_milliseconds())) && before.reported {
            // Errors are logged and counted; the heartbeat itself is stored.
            let _ = self.evaluate_agent(agent_id).await;
        }
        Ok(())
    }

    /// Stores a report once per `(agent, sequence)` and, when newly stored, evaluates the
    /// agent. A failed evaluation is logged and counted, and does not fail the ingest.
    pub async fn ingest(&self, agent_id: &str, report: &Report) -> Result<IngestOutcome, StoreError> {
        let now = self.clock.now();
        let future_after = now + self.max_clock_skew;
        let before = self.store.agent(&collector_scope(), agent_id).await?;
        let incoming = IncomingReport {
            report,
            received_at: now,
            future_after,
        };
        let ingested = self.store.ingest_report(agent_id, incoming).await?;
        let future_dated = report
            .observations
            .iter()
            .filter(|o| o.observed_at > future_after)
            .count();
        if ingested == Ingested::Duplicate {
            events::report_duplicate(&self.metrics, agent_id, report.sequence);
            return Ok(IngestOutcome {
                ingested,
                future_dated,
                evaluation: None,
            });
        }
        events::report_stored(
            &self.metrics,
            agent_id,
            report.sequence,
            report.observations.len(),
            future_dated,
        );
        self.changes.publish(Change::AgentSeen {
            agent_id: agent_id.to_string(),
            at: now,
        });
        self.publish_probes(agent_id, &[report]);
        if before.last_report_at.is_none() {
            self.changes.publish(Change::FirstReport {
                agent_id: agent_id.to_string(),
                at: now,
            });
        }
        let evaluation = self.evaluate_agent(agent_id).await.map_err(|e| e.to_string());
        Ok(IngestOutcome {
            ingested,
            future_dated,
            evaluation: Some(evaluation),
        })
    }

    /// The time after which an observation received `now` counts as dated in the future (it is
    /// stored with the receive time and flagged).
    pub fn future_after(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + self.max_clock_skew
    }

    /// Whether the agent has not had a report stored yet (read before a delivery's unit of
    /// work, so [`stored`](Self::stored) can announce the first one).
    pub async fn awaiting_first_report(&self, agent_id: &str) -> Result<bool, StoreError> {
        if self.reported.contains(agent_id) {
            return Ok(false);
        }
        let awaiting = self
            .store
            .agent(&collector_scope(), agent_id)
            .await?
            .last_report_at
            .is_none();
        if !awaiting {
            self.reported.insert(agent_id);
        }
        Ok(awaiting)
    }

    /// Stores one agent's `reports` as one unit of work ([`Store::deliver_reports`]), holding
    /// the agent's evaluation lock from before the delivery until the [`PendingEvaluation`] it
    /// returns is used by [`stored`](Self::stored) or dropped (drop it before anything that
    /// evaluates the agent otherwise, such as refusing a conflict). The evaluation's input is
    /// read with the delivery ([`Store::deliver_reports_and_read`]: on SQLite, on the writer
    /// inside the same unit), and no other evaluation of the agent runs between that read and
    /// the findings it gives.
    pub async fn deliver(
        &self,
        agent_id: &str,
        reports: &[IncomingReport<'_>],
    ) -> Result<(Vec<DeliveryOutcome>, PendingEvaluation), StoreError> {
        let lock = self.locks.get(agent_id).lock_owned().await;
        let (outcomes, input) = self.store.deliver_reports_and_read(agent_id, reports).await?;
        Ok((outcomes, PendingEvaluation { input, _lock: lock }))
    }

    /// After a delivery's unit of work that stored `reports` of one agent committed (one report
    /// or a batch, see `api::delivery`, through [`deliver`](Self::deliver)): logs and counts
    /// each, publishes that the agent was seen (and its first report), and evaluates the agent
    /// once, with the input `pending` holds. A failed evaluation is logged and counted; the
    /// reports stay stored and the next one evaluates again.
    pub async fn stored(
        &self,
        agent_id: &str,
        reports: &[&Report],
        first_report: bool,
        pending: PendingEvaluation,
    ) -> Option<Result<Evaluated, String>> {
        if reports.is_empty() {
            return None;
        }
        self.reported.insert(agent_id);
        let now = self.clock.now();
        let future_after = self.future_after(now);
        for report in reports {
            let future_dated = report
                .observations
                .iter()
                .filter(|o| o.observed_at > future_after)
                .count();
            events::report_stored(
                &self.metrics,
                agent_id,
                report.sequence,
                report.observations.len(),
                future_dated,
            );
        }
        self.changes.publish(Change::AgentSeen {
            agent_id: agent_id.to_string(),
            at: now,
        });
        self.publish_probes(agent_id, reports);
        if first_report {
            self.changes.publish(Change::FirstReport {
                agent_id: agent_id.to_string(),
                at: now,
            });
        }
        let PendingEvaluation { input, _lock } = pending;
        // Nothing read with the delivery (it kept no report): read now, still under the lock.
        let input = match input {
            Some(input) => input,
            None => self.store.evaluation_input(agent_id).await,
        };
        let outcome = match input {
            Ok(input) => self.run_with(agent_id, input).await,
            Err(e) => Err(e.into()),
        };
        Some(self.evaluated(agent_id, outcome).map_err(|e| e.to_string()))
    }

    /// Alerting (issue 12): publishes the probe observations of stored reports, if any.
    fn publish_probes(&self, agent_id: &str, reports: &[&Report]) {
        let observations: Vec<Observation> = reports
            .iter()
            .flat_map(|r| r.observations.iter())
            .filter(|o| o.kind == "ehr.probe" || o.kind == "network.baseline")
            .cloned()
            .collect();
        if !observations.is_empty() {
            self.changes.publish(Change::ProbesStored {
                agent_id: agent_id.to_string(),
                observations: observations.into(),
            });
        }
    }

    /// Counts a resend of a report already stored with the same content.
    pub fn duplicate(&self, agent_id: &str, sequence: u64) {
        events::report_duplicate(&self.metrics, agent_id, sequence);
    }

    /// Evaluates an agent's current observations against its effective policy, replaces its
    /// stored findings and publishes the changes. Logs and counts the outcome.
    pub async fn evaluate_agent(&self, agent_id: &str) -> Result<Evaluated, EvalError> {
        let outcome = self.run(agent_id).await;
        self.evaluated(agent_id, outcome)
    }

    /// Logs and counts an evaluation's outcome and publishes its changes.
    fn evaluated(&self, agent_id: &str, outcome: Result<Evaluated, EvalError>) -> Result<Evaluated, EvalError> {
        match &outcome {
            Ok(e) => {
                events::evaluated(&self.metrics, agent_id, e.pass, e.fail, e.error, e.changes.len());
                if !e.changes.is_empty() {
                    self.changes.publish(Change::FindingsChanged {
                        agent_id: agent_id.to_string(),
                        changes: e.changes.clone().into(),
                    });
                }
            }
            Err(error) => events::evaluation_failed(&self.metrics, agent_id, error),
        }
        outcome
    }

    async fn run(&self, agent_id: &str) -> Result<Evaluated, EvalError> {
        let lock = self.locks.get(agent_id);
        let _one_at_a_time = lock.lock().await;
        // One read for the agent, its current state, its policy settings and its tampers.
        let input = self.store.evaluation_input(agent_id).await?;
        self.run_with(agent_id, input).await
    }

    /// Evaluates `input`, read under the agent's lock, which the caller still holds.
    async fn run_with(&self, agent_id: &str, input: EvaluationInput) -> Result<Evaluated, EvalError> {
        let scope = collector_scope();
        let mut observations: Vec<Observation> = input.observations.into_iter().map(|s| s.observation).collect();
        let now = self.clock.now();
        let ctx = EvalContext::from_inventory(now, &observations)
            .or_else(|| Os::parse(&input.os).map(|os| EvalContext { now, os, role: None }))
            .ok_or_else(|| EvalError::UnknownOs {
                agent_id: agent_id.to_string(),
                os: input.os.clone(),
            })?;
        let policy = self.effective_policy(agent_id, &input.policy_settings);
        // A tamper event holds the log-integrity finding failing until a person acknowledges it.
        let seen = crate::tamper::seen(&observations);
        // Only observations of kinds some rule judges are evaluated: a rule reads only its own
        // kinds, so the findings are the same, without converting the others for CEL.
        let judged: std::collections::HashSet<&str> = policy
            .rules
            .iter()
            .flat_map(|r| r.rule.kinds.iter().map(String::as_str))
            .collect();
        observations.retain(|o| judged.contains(o.kind.as_str()));
        let mut findings = evaluate(&observations, &policy, &ctx);
        findings.extend(self.clock_finding(input.clock_skew_ms));
        let mut tampers = input.tampers;
        if seen.iter().any(|s| !tampers.iter().any(|t| t.tamper_id == s.tamper_id)) {
            self.store.note_tampers(agent_id, &seen, now).await?;
            tampers = self.store.tampers(&scope, agent_id).await?;
        }
        crate::tamper::hold(&mut findings, &tampers);
        let changes = self.store.replace_findings(agent_id, &findings, now).await?;
        let count = |s: Status| findings.iter().filter(|f| f.status == s).count();
        Ok(Evaluated {
            pass: count(Status::Pass),
            fail: count(Status::Fail),
            error: count(Status::Error),
            not_applicable: count(Status::NotApplicable),
            changes,
        })
    }

    fn off(&self, skew_ms: i64) -> bool {
        skew_ms.abs() > self.max_clock_skew.num_milliseconds()
    }

    /// The collector's finding about the agent's clock, once a heartbeat measured it.
    fn clock_finding(&self, clock_skew_ms: Option<i64>) -> Option<Finding> {
        let skew_ms = clock_skew_ms?;
        let max_secs = self.max_clock_skew.num_seconds();
        let off = self.off(skew_ms);
        let skew_secs = skew_ms as f64 / 1000.0;
        Some(Finding {
            rule: CLOCK_RULE.to_string(),
            title: "Agent clock agrees with the collector".to_string(),
            status: if off { Status::Error } else { Status::Pass },
            severity: Severity::Medium,
            citations: vec!["164.312(b)".to_string()],
            partial_citations: Vec::new(),
            evidence: serde_json::json!({"clock_skew_secs": skew_secs, "max_clock_skew_secs": max_secs}),
            message: if off {
                format!(
                    "the agent's clock is {:.0} s {} the collector's (allowed: {max_secs} s); its times cannot be trusted",
                    skew_secs.abs(),
                    if skew_ms > 0 { "ahead of" } else { "behind" }
                )
            } else {
                format!("the agent's clock is within {max_secs} s of the collector's")
            },
            remediation: off
                .then(|| "Enable time synchronisation (NTP) on the machine and check its time zone.".to_string()),
            exception: None,
        })
    }

    /// The agent's effective policy; the shared built-in one when its settings are the defaults
    /// or, logged and counted, when they do not build.
    fn effective_policy(&self, agent_id: &str, settings: &AgentPolicySettings) -> Arc<Policy> {
        match self.policies.policy_for(settings) {
            Ok(Some(policy)) => policy,
            Ok(None) => Arc::clone(&self.policy),
            Err(error) => {
                events::evaluation_failed(
                    &self.metrics,
                    agent_id,
                    &format!(
                        "stored policy settings of {} / {} do not build ({error}); evaluating with the built-in policy instead",
                        settings.practice, settings.site
                    ),
                );
                Arc::clone(&self.policy)
            }
        }
    }
}
