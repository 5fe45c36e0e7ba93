//! The alert engine over a real SQLite store, a fake clock and a recording notifier: each
//! source opens one incident and one notification and resolves with one resolved
//! notification; grouping by site and vendor; silences; hold; restart; flapping; retries; the
//! incidents API.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, Duration, Utc};
use rounds_collector::alerting::config::{AlertSettings, Route, Silence, SilenceWhen};
use rounds_collector::alerting::{CauseKind, Engine, Incident, IncidentQuery, IncidentState, OutboxStatus};
use rounds_collector::clock::{Clock, FakeClock};
use rounds_collector::ingest::Change;
use rounds_collector::notify::{DeliveryError, Notification, NotificationKind, Notifier};
use rounds_collector::store::sqlite::SqliteStore;
use rounds_collector::store::{FindingChange, NewAgent, NewToken, Role, Scope, Store};
use rounds_policies::{Severity, Status};
use rounds_protocol::{Observation, ObservationStatus};
use serde_json::{Value, json};

use crate::support::{TestApp, body_text};

/// A notifier that records every notification and fails as told.
#[derive(Debug, Default)]
pub struct Recorder {
    pub channels: Vec<String>,
    pub sent: Mutex<Vec<(String, Notification)>>,
    pub attempts: Mutex<Vec<String>>,
    /// Failures still to give per channel before it works.
    pub fail: Mutex<HashMap<String, u32>>,
}

impl Recorder {
    pub fn new(channels: &[&str]) -> Arc<Self> {
        Arc::new(Recorder {
            channels: channels.iter().map(|c| c.to_string()).collect(),
            ..Recorder::default()
        })
    }

    pub fn sent(&self) -> Vec<(String, Notification)> {
        self.sent.lock().unwrap().clone()
    }

    /// `(channel, kind, source)` of every notification sent.
    pub fn log(&self) -> Vec<(String, NotificationKind, String)> {
        self.sent().into_iter().map(|(c, n)| (c, n.kind, n.source)).collect()
    }
}

#[async_trait::async_trait]
impl Notifier for Recorder {
    fn channel_names(&self) -> Vec<String> {
        self.channels.clone()
    }

    async fn send(&self, channel: &str, n: &Notification) -> Result<(), DeliveryError> {
        self.attempts.lock().unwrap().push(channel.to_string());
        let mut fail = self.fail.lock().unwrap();
        if let Some(left) = fail.get_mut(channel)
            && *left > 0
        {
            *left -= 1;
            return Err(DeliveryError {
                message: format!("{channel}: HTTP 500"),
                retry_after: None,
                permanent: false,
            });
        }
        self.sent.lock().unwrap().push((channel.to_string(), n.clone()));
        Ok(())
    }
}

/// One simulated machine.
#[derive(Debug, Clone)]
pub struct LabAgent {
    pub id: String,
    pub practice: String,
    pub site: String,
    pub host: String,
    /// Second of each 30 s heartbeat cycle it beats at.
    pub phase: i64,
}

/// The engine over a real store, driven by a fake clock in 5 s steps.
pub struct Lab {
    pub store: Arc<dyn Store>,
    pub clock: Arc<FakeClock>,
    pub engine: Arc<Engine>,
    pub notifier: Arc<Recorder>,
    pub settings: AlertSettings,
    pub agents: Vec<LabAgent>,
    pub alive: HashSet<String>,
    pub start: DateTime<Utc>,
    pub _dir: tempfile::TempDir,
}

pub fn obs(kind: &str, subject: &str, at: DateTime<Utc>, data: Value) -> Observation {
    Observation {
        kind: kind.into(),
        subject: subject.into(),
        observed_at: at,
        status: ObservationStatus::Ok,
        data,
        error: None,
    }
}

impl Lab {
    pub async fn new(settings: AlertSettings, channels: &[&str]) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        // NORMAL durability: these tests do not cut the power.
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open_with(
                &dir.path().join("rounds.db"),
                rounds_collector::store::sqlite::Durability::Normal,
            )
            .unwrap(),
        );
        let start = DateTime::from_timestamp_millis(1_800_000_000_000).unwrap();
        let clock = Arc::new(FakeClock::new(start));
        let notifier = Recorder::new(channels);
        let engine = Arc::new(Engine::new(
            Arc::clone(&store),
            clock.clone(),
            settings.clone(),
            notifier.clone(),
        ));
        Lab {
            store,
            clock,
            engine,
            notifier,
            settings,
            agents: Vec::new(),
            alive: HashSet::new(),
            start,
            _dir: dir,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// A new engine on the same store (a collector restart).
    pub fn restart(&mut self) {
        self.engine = Arc::new(Engine::new(
            Arc::clone(&self.store),
            self.clock.clone(),
            self.settings.clone(),
            self.notifier.clone(),
        ));
    }

    /// Enrolls a machine; it beats from the next step on.
    pub async fn agent(&mut self, practice: &str, site: &str, host: &str) -> String {
        let id = self.enroll(practice, site, host).await;
        self.alive.insert(id.clone());
        self.beat(&id).await;
        id
    }

    /// Enrolls a machine that does not beat (until it is put in `alive`).
    pub async fn enroll(&mut self, practice: &str, site: &str, host: &str) -> String {
        let now = self.now();
        let hash = format!("hash-{practice}-{site}-{host}");
        self.store
            .create_token(
                NewToken {
                    practice: practice.into(),
                    site: site.into(),
                    token_hash: hash.clone(),
                    expires_at: now + Duration::hours(1),
                },
                now,
            )
            .await
            .unwrap();
        let id = format!("agent-{practice}-{site}-{host}").replace(' ', "_");
        self.store
            .enroll(
                &hash,
                NewAgent {
                    agent_id: id.clone(),
                    secret_hash: "x".into(),
                    hostname: host.into(),
                    os: "linux".into(),
                    agent_version: "1".into(),
                },
                now,
            )
            .await
            .unwrap();
        let phase = (self.agents.len() as i64 * 7) % 30;
        self.agents.push(LabAgent {
            id: id.clone(),
            practice: practice.into(),
            site: site.into(),
            host: host.into(),
            phase,
        });
        id
    }

    pub async fn beat(&self, id: &str) {
        let now = self.now();
        self.store.heartbeat(id, "1", None, now).await.unwrap();
        self.engine
            .on_change(&Change::AgentSeen {
                agent_id: id.into(),
                at: now,
            })
            .await
            .unwrap();
    }

    /// A site's agents.
    pub fn site(&self, practice: &str, site: &str) -> Vec<String> {
        self.agents
            .iter()
            .filter(|a| a.practice == practice && a.site == site)
            .map(|a| a.id.clone())
            .collect()
    }

    pub async fn observe(&self, id: &str, o: Vec<Observation>) {
        self.engine.observe(id, &o).await.unwrap();
    }

    /// An `ehr.probe` state of `target` on machine `id`, observed now.
    pub async fn probe(&self, id: &str, target: &str, probe: &str, up: bool, reason: Option<&str>) {
        let at = self.now();
        self.observe(id, vec![probe_obs(target, probe, up, reason, at)]).await;
    }

    /// The network baseline of machine `id`: gateway, resolver, reference up or down.
    pub async fn baseline(&self, id: &str, gateway: bool, resolver: bool, reference: bool, at: DateTime<Utc>) {
        self.observe(id, baseline_obs(gateway, resolver, reference, at)).await;
    }

    /// Moves time on by `secs` in 5 s steps: live machines beat every 30 s, the engine ticks
    /// and delivers.
    pub async fn run(&self, secs: i64) {
        let steps = secs / 5;
        for _ in 0..steps {
            self.clock.advance(Duration::seconds(5));
            let t = (self.now() - self.start).num_seconds();
            for a in &self.agents {
                if self.alive.contains(&a.id) && (t - a.phase).rem_euclid(30) < 5 {
                    self.beat(&a.id).await;
                }
            }
            self.engine.tick().await.unwrap();
            self.engine.deliver_due().await.unwrap();
        }
    }

    pub async fn incidents(&self) -> Vec<Incident> {
        self.store.incidents(&admin(), &IncidentQuery::default()).await.unwrap()
    }

    pub async fn of_source(&self, source: &str) -> Vec<Incident> {
        self.incidents()
            .await
            .into_iter()
            .filter(|i| i.source == source)
            .collect()
    }
}

pub fn probe_obs(target: &str, probe: &str, up: bool, reason: Option<&str>, at: DateTime<Utc>) -> Observation {
    obs(
        "ehr.probe",
        target,
        at,
        json!({"probe": probe, "target": target, "up": up, "reason": reason, "attempts": if up {1} else {2}}),
    )
}

pub fn baseline_obs(gateway: bool, resolver: bool, reference: bool, at: DateTime<Utc>) -> Vec<Observation> {
    let reason = if resolver { "tcp_timeout" } else { "dns_timeout" };
    baseline_with(gateway, resolver, reference, reason, at)
}

/// The baseline with the reason the reference (the collector) fails for when it is down.
pub fn baseline_with(
    gateway: bool,
    resolver: bool,
    reference: bool,
    ref_reason: &str,
    at: DateTime<Utc>,
) -> Vec<Observation> {
    let b = |role: &str, probe: &str, target: &str, up: bool, reason: &str| {
        obs(
            "network.baseline",
            target,
            at,
            json!({"role": role, "probe": probe, "target": target, "up": up, "reason": if up { Value::Null } else { json!(reason) }, "attempts": 1}),
        )
    };
    vec![
        b("gateway", "tcp", "192.168.1.1:53", gateway, "tcp_timeout"),
        b("resolver", "dns", "203.0.113.53", resolver, "dns_timeout"),
        b(
            "reference",
            "https",
            "https://collector.example/healthz",
            reference,
            ref_reason,
        ),
    ]
}

pub fn admin() -> Scope {
    Scope {
        role: Role::Admin,
        practice_id: None,
    }
}

fn kinds(log: &[(String, NotificationKind, String)]) -> Vec<(NotificationKind, &str)> {
    log.iter().map(|(_, k, s)| (*k, s.as_str())).collect()
}

#[tokio::test]
async fn one_machine_off_opens_one_incident_one_notification_and_one_resolved() {
    let mut lab = Lab::new(AlertSettings::default(), &["ops"]).await;
    let a = lab.agent("Smith", "main", "frontdesk").await;
    lab.agent("Smith", "main", "xray").await;
    lab.run(60).await;
    lab.alive.remove(&a);
    lab.run(150).await;
    let incs = lab.of_source("agent_offline").await;
    assert_eq!(incs.len(), 1, "{incs:#?}");
    assert_eq!(incs[0].cause_kind, CauseKind::OneMachine);
    let host = &lab.agents.iter().find(|x| x.id == a).unwrap().host;
    assert!(
        incs[0].probable_cause.contains(host.as_str()),
        "{}",
        incs[0].probable_cause
    );
    assert_eq!(
        kinds(&lab.notifier.log()),
        [(NotificationKind::Opened, "agent_offline")]
    );
    assert!(lab.of_source("site_offline").await.is_empty());
    lab.alive.insert(a);
    lab.run(60).await;
    assert_eq!(
        kinds(&lab.notifier.log()),
        [
            (NotificationKind::Opened, "agent_offline"),
            (NotificationKind::Resolved, "agent_offline")
        ]
    );
    let inc = &lab.of_source("agent_offline").await[0];
    assert_eq!(inc.state, IncidentState::Resolved);
    let detail = lab.store.incident(&admin(), inc.id).await.unwrap();
    let timeline: Vec<&str> = detail.timeline.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(timeline, ["opened", "notified", "resolved", "notified"], "{timeline:?}");
    assert_eq!(detail.timeline[1].channel.as_deref(), Some("ops"));
}

#[tokio::test]
async fn an_agent_enrolled_that_never_sent_a_heartbeat_is_offline_counted_from_enrollment() {
    let mut lab = Lab::new(AlertSettings::default(), &["ops"]).await;
    lab.agent("Smith", "main", "frontdesk").await;
    let never = lab.enroll("Smith", "main", "xray").await;
    let enrolled = lab.store.agent(&admin(), &never).await.unwrap().enrolled_at;
    lab.run(85).await;
    assert!(lab.of_source("agent_offline").await.is_empty(), "not before 90 s");
    lab.run(65).await;
    let incs = lab.of_source("agent_offline").await;
    assert_eq!(incs.len(), 1, "{incs:#?}");
    assert_eq!(incs[0].agent_id.as_deref(), Some(never.as_str()));
    assert_eq!(incs[0].cause_kind, CauseKind::OneMachine);
    assert!(
        incs[0].probable_cause.contains("xray") && incs[0].probable_cause.contains("never sent a heartbeat"),
        "{}",
        incs[0].probable_cause
    );
    let opened = (incs[0].opened_at - enrolled).num_seconds();
    assert!((90..=95).contains(&opened), "opened {opened} s after enrollment");
    assert_eq!(
        kinds(&lab.notifier.log()),
        [(NotificationKind::Opened, "agent_offline")]
    );
    assert!(lab.of_source("site_offline").await.is_empty());
    // It starts at last: resolved, one resolved notification.
    lab.alive.insert(never.clone());
    lab.run(35).await;
    assert_eq!(lab.of_source("agent_offline").await[0].state, IncidentState::Resolved);
    assert_eq!(
        kinds(&lab.notifier.log()),
        [
            (NotificationKind::Opened, "agent_offline"),
            (NotificationKind::Resolved, "agent_offline")
        ]
    );
}

#[tokio::test]
async fn offline_within_ninety_five_seconds_of_the_last_heartbeat() {
    let mut lab = Lab::new(AlertSettings::default(), &["ops"]).await;
    let a = lab.agent("Smith", "main", "frontdesk").await;
    lab.agent("Smith", "main", "xray").await;
    lab.run(30).await;
    let last = lab.store.agent(&admin(), &a).await.unwrap().last_seen_at.unwrap();
    lab.alive.remove(&a);
    lab.run(120).await;
    let (_, n) = &lab.notifier.sent()[0];
    let after = (n.opened_at - last).num_seconds();
    assert!(
        (90..=95).contains(&after),
        "notified {after} s after the last heartbeat"
    );
}

#[tokio::test]
async fn five_machines_of_a_site_stopped_together_give_one_site_offline_notification() {
    let mut lab = Lab::new(AlertSettings::default(), &["ops"]).await;
    for h in ["a", "b", "c", "d", "e"] {
        lab.agent("Smith", "main", h).await;
    }
    lab.agent("Smith", "annex", "f").await;
    lab.run(60).await;
    for id in lab.site("Smith", "main") {
        lab.alive.remove(&id);
    }
    lab.run(300).await;
    assert_eq!(kinds(&lab.notifier.log()), [(NotificationKind::Opened, "site_offline")]);
    let site = lab.of_source("site_offline").await;
    assert_eq!(site.len(), 1);
    let children = lab.of_source("agent_offline").await;
    assert_eq!(children.len(), 5, "every machine's incident recorded");
    assert!(
        children.iter().all(|c| c.parent_id == Some(site[0].id)),
        "{children:#?}"
    );
    let detail = lab.store.incident(&admin(), site[0].id).await.unwrap();
    assert_eq!(detail.children.len(), 5);
    // Power: they come back with nothing spooled.
    for id in lab.site("Smith", "main") {
        lab.alive.insert(id);
    }
    lab.run(60).await;
    assert_eq!(
        kinds(&lab.notifier.log()),
        [
            (NotificationKind::Opened, "site_offline"),
            (NotificationKind::Resolved, "site_offline")
        ]
    );
    let site = &lab.of_source("site_offline").await[0];
    assert_eq!(site.state, IncidentState::Resolved);
    assert_eq!(site.cause_kind, CauseKind::SitePower);
}

#[tokio::test]
async fn spooled_probe_results_refine_a_site_outage_after_the_fact() {
    let mut lab = Lab::new(AlertSettings::default(), &["ops"]).await;
    let t0 = lab.now();
    for h in ["a", "b", "c"] {
        let id = lab.agent("Smith", "main", h).await;
        lab.baseline(&id, true, true, true, t0).await;
    }
    lab.run(30).await;
    let cut = lab.now();
    for id in lab.site("Smith", "main") {
        lab.alive.remove(&id);
    }
    lab.run(200).await;
    for id in lab.site("Smith", "main") {
        lab.alive.insert(id);
    }
    lab.run(10).await;
    // The reports they spooled: the gateway answered, the DNS resolvers did not.
    for id in lab.site("Smith", "main") {
        lab.baseline(&id, true, false, false, cut + Duration::seconds(3)).await;
    }
    let site = &lab.of_source("site_offline").await[0];
    assert_eq!(site.cause_kind, CauseKind::IspDns, "{}", site.probable_cause);
    assert!(site.probable_cause.contains("DNS"), "{}", site.probable_cause);
    let timeline = lab.store.incident(&admin(), site.id).await.unwrap().timeline;
    let why: Vec<&str> = timeline
        .iter()
        .filter(|e| e.kind == "cause_changed")
        .map(|e| e.message.as_str())
        .collect();
    assert!(why.iter().any(|m| m.contains("after the fact")), "{why:?}");
}

#[tokio::test]
async fn the_same_endpoint_failing_in_three_practices_is_one_vendor_incident_naming_them() {
    let mut lab = Lab::new(AlertSettings::default(), &["ops"]).await;
    let ehr = "https://ehr.vendor.example/fhir/metadata";
    let mut ids = Vec::new();
    for p in ["Smith", "Lakeside", "Hilltop"] {
        for h in ["a", "b"] {
            let id = lab.agent(p, "main", h).await;
            lab.baseline(&id, true, true, true, lab.now()).await;
            lab.probe(&id, ehr, "fhir", true, None).await;
            ids.push(id);
        }
    }
    // A fourth practice probing something else is not involved.
    let other = lab.agent("Oak", "main", "a").await;
    lab.probe(&other, "https://other.example/", "https", true, None).await;
    lab.run(30).await;
    for id in &ids {
        lab.probe(id, ehr, "fhir", false, Some("tcp_timeout")).await;
    }
    lab.run(30).await;
    let vendor = lab.of_source("ehr_vendor").await;
    assert_eq!(vendor.len(), 1, "{vendor:#?}");
    let mut named = vendor[0].practices_affected.clone();
    named.sort();
    assert_eq!(named, ["Hilltop", "Lakeside", "Smith"]);
    assert!(vendor[0].probable_cause.contains("vendor"));
    let sites = lab.of_source("ehr_endpoint").await;
    assert_eq!(sites.len(), 3);
    assert!(sites.iter().all(|s| s.parent_id == Some(vendor[0].id)));
    assert_eq!(kinds(&lab.notifier.log()), [(NotificationKind::Opened, "ehr_vendor")]);
    for id in &ids {
        lab.probe(id, ehr, "fhir", true, None).await;
    }
    lab.run(30).await;
    assert_eq!(
        kinds(&lab.notifier.log()),
        [
            (NotificationKind::Opened, "ehr_vendor"),
            (NotificationKind::Resolved, "ehr_vendor")
        ]
    );
}

#[tokio::test]
async fn an_on_premises_server_down_from_every_machine_of_the_site_names_the_server() {
    let mut lab = Lab::new(AlertSettings::default(), &["ops"]).await;
    let server = "10.0.0.5:2575";
    let mut ids = Vec::new();
    for h in ["a", "b", "c"] {
        let id = lab.agent("Smith", "main", h).await;
        lab.baseline(&id, true, true, true, lab.now()).await;
        lab.probe(&id, server, "tcp", true, None).await;
        ids.push(id);
    }
    lab.run(20).await;
    for id in &ids {
        lab.probe(id, server, "tcp", false, Some("tcp_refused")).await;
    }
    lab.run(30).await;
    let incs = lab.of_source("ehr_endpoint").await;
    assert_eq!(incs.len(), 1);
    assert_eq!(
        incs[0].cause_kind,
        CauseKind::OnPremServer,
        "{}",
        incs[0].probable_cause
    );
    assert_eq!(kinds(&lab.notifier.log()), [(NotificationKind::Opened, "ehr_endpoint")]);
    for id in &ids {
        lab.probe(id, server, "tcp", true, None).await;
    }
    lab.run(20).await;
    assert_eq!(
        kinds(&lab.notifier.log()),
        [
            (NotificationKind::Opened, "ehr_endpoint"),
            (NotificationKind::Resolved, "ehr_endpoint")
        ]
    );
}

#[tokio::test]
async fn a_flapping_endpoint_keeps_one_incident_open_and_flagged() {
    let mut lab = Lab::new(AlertSettings::default(), &["ops"]).await;
    let ehr = "https://ehr.example/";
    let id = lab.agent("Smith", "main", "a").await;
    let other = lab.agent("Smith", "main", "b").await;
    lab.baseline(&id, true, true, true, lab.now()).await;
    lab.probe(&other, ehr, "https", true, None).await;
    for i in 0..24 {
        lab.probe(&id, ehr, "https", i % 2 == 1, Some("timeout")).await;
        lab.run(5).await;
    }
    let incs = lab.of_source("ehr_endpoint").await;
    assert_eq!(incs.len(), 1, "one incident, not one per flap: {incs:#?}");
    assert!(incs[0].flapping);
    assert_eq!(incs[0].state, IncidentState::Open);
    assert_eq!(incs[0].cause_kind, CauseKind::OneMachine);
    assert_eq!(kinds(&lab.notifier.log()), [(NotificationKind::Opened, "ehr_endpoint")]);
    lab.probe(&id, ehr, "https", true, None).await;
    lab.run(15).await;
    assert_eq!(lab.of_source("ehr_endpoint").await[0].state, IncidentState::Resolved);
    assert_eq!(lab.notifier.log().len(), 2);
}

fn change(rule: &str, severity: Severity, new: Option<Status>, at: DateTime<Utc>) -> FindingChange {
    FindingChange {
        agent_id: String::new(),
        rule: rule.into(),
        at,
        old_status: Some(Status::Pass),
        new_status: new,
        severity,
        title: format!("rule {rule}"),
        citations: vec![],
        evidence: json!({}),
        message: format!("{rule} says no"),
        remediation: Some("Fix it.".into()),
        old_exception: None,
        exception: None,
    }
}

async fn findings(lab: &Lab, id: &str, mut changes: Vec<FindingChange>) {
    for c in &mut changes {
        c.agent_id = id.into();
    }
    lab.engine
        .on_change(&Change::FindingsChanged {
            agent_id: id.into(),
            changes: changes.into(),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn each_finding_source_opens_one_incident_and_resolves_with_one_notification() {
    let cases = [
        ("hipaa.backup.recent", Severity::High, "backup"),
        ("hipaa.backup.succeeded", Severity::High, "backup"),
        ("hipaa.encryption.at_rest", Severity::High, "encryption"),
        ("hipaa.transmission.certificate", Severity::High, "certificate"),
        ("hipaa.availability.disk_space", Severity::Medium, "disk_space"),
        ("hipaa.network.firewall", Severity::High, "finding"),
    ];
    for (rule, severity, source) in cases {
        let mut lab = Lab::new(AlertSettings::default(), &["ops"]).await;
        let id = lab.agent("Smith", "main", "a").await;
        findings(&lab, &id, vec![change(rule, severity, Some(Status::Fail), lab.now())]).await;
        // The same failure again (another evaluation) is the same incident.
        findings(&lab, &id, vec![change(rule, severity, Some(Status::Fail), lab.now())]).await;
        lab.run(5).await;
        assert_eq!(lab.of_source(source).await.len(), 1, "{rule}");
        assert_eq!(
            kinds(&lab.notifier.log()),
            [(NotificationKind::Opened, source)],
            "{rule}"
        );
        findings(&lab, &id, vec![change(rule, severity, Some(Status::Pass), lab.now())]).await;
        lab.run(5).await;
        assert_eq!(
            kinds(&lab.notifier.log()),
            [(NotificationKind::Opened, source), (NotificationKind::Resolved, source)],
            "{rule}"
        );
    }
    // Below the configured severity: nothing.
    let mut lab = Lab::new(AlertSettings::default(), &["ops"]).await;
    let id = lab.agent("Smith", "main", "a").await;
    findings(
        &lab,
        &id,
        vec![change(
            "hipaa.access.mfa",
            Severity::Medium,
            Some(Status::Fail),
            lab.now(),
        )],
    )
    .await;
    lab.run(5).await;
    assert!(lab.incidents().await.is_empty());
}

#[tokio::test]
async fn a_tampered_audit_log_is_critical_and_resolved_only_by_a_person() {
    let app = TestApp::new();
    let notifier = Recorder::new(&["ops"]);
    let state = app.state.clone().with_notifier(notifier.clone());
    let store = Arc::clone(&state.store);
    let now = app.clock.now();
    store
        .create_token(
            NewToken {
                practice: "Smith".into(),
                site: "main".into(),
                token_hash: "h".into(),
                expires_at: now + Duration::hours(1),
            },
            now,
        )
        .await
        .unwrap();
    store
        .enroll(
            "h",
            NewAgent {
                agent_id: "a1".into(),
                secret_hash: "x".into(),
                hostname: "frontdesk".into(),
                os: "linux".into(),
                agent_version: "1".into(),
            },
            now,
        )
        .await
        .unwrap();
    let mut c = change("hipaa.audit.log_integrity", Severity::High, Some(Status::Fail), now);
    c.agent_id = "a1".into();
    let engine = Arc::clone(&state.alerts);
    engine
        .on_change(&Change::FindingsChanged {
            agent_id: "a1".into(),
            changes: vec![c.clone()].into(),
        })
        .await
        .unwrap();
    c.new_status = Some(Status::Pass);
    engine
        .on_change(&Change::FindingsChanged {
            agent_id: "a1".into(),
            changes: vec![c].into(),
        })
        .await
        .unwrap();
    engine.deliver_due().await.unwrap();
    let incs = store.incidents(&admin(), &IncidentQuery::default()).await.unwrap();
    assert_eq!(incs.len(), 1);
    assert_eq!(incs[0].severity, Severity::Critical);
    assert_eq!(
        incs[0].state,
        IncidentState::Open,
        "a passing finding does not resolve it"
    );

    // Over the API: a key, the list, ack, a note, resolve.
    let key = rounds_collector::admin::apikey_create(store.as_ref(), Role::Technician, None, "t")
        .await
        .unwrap();
    let router = rounds_collector::app::router(state.clone());
    let call = |method: &str, path: String, body: Option<Value>| {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {key}"));
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        req.body(body.map(|b| Body::from(b.to_string())).unwrap_or_else(Body::empty))
            .unwrap()
    };
    use tower::ServiceExt;
    let resp = router
        .clone()
        .oneshot(call("GET", "/api/v1/incidents?state=active".into(), None))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let list: Value = serde_json::from_str(&body_text(resp).await).unwrap();
    assert_eq!(list[0]["source"], "audit_tamper");
    let id = incs[0].id;
    let resp = router
        .clone()
        .oneshot(call(
            "POST",
            format!("/api/v1/incidents/{id}/acknowledge"),
            Some(json!({"by": "dana"})),
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = router
        .clone()
        .oneshot(call(
            "POST",
            format!("/api/v1/incidents/{id}/notes"),
            Some(json!({"by": "dana", "note": "log rotated by hand"})),
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = router
        .clone()
        .oneshot(call(
            "POST",
            format!("/api/v1/incidents/{id}/resolve"),
            Some(json!({"by": "dana", "note": "checked"})),
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let detail: Value = serde_json::from_str(&body_text(resp).await).unwrap();
    assert_eq!(detail["state"], "resolved");
    let events: Vec<(String, String)> = detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // The person named and the key used (label `t`).
    let dana = "dana (API key \"t\")";
    for want in [("acknowledged", dana), ("note", dana), ("resolved", dana)] {
        assert!(events.contains(&(want.0.to_string(), want.1.to_string())), "{events:?}");
    }
    // Resolving twice is refused; an unknown id is 404.
    let resp = router
        .clone()
        .oneshot(call("POST", format!("/api/v1/incidents/{id}/resolve"), None))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = router
        .clone()
        .oneshot(call("GET", "/api/v1/incidents/99999".into(), None))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    engine.deliver_due().await.unwrap();
    assert_eq!(
        kinds(&notifier.log()),
        [
            (NotificationKind::Opened, "audit_tamper"),
            (NotificationKind::Acknowledged, "audit_tamper"),
            (NotificationKind::Resolved, "audit_tamper")
        ]
    );
}

#[tokio::test]
async fn a_practice_manager_sees_only_their_practice_incidents() {
    let mut lab = Lab::new(AlertSettings::default(), &["ops"]).await;
    let a = lab.agent("Smith", "main", "a").await;
    let b = lab.agent("Lakeside", "main", "b").await;
    findings(
        &lab,
        &a,
        vec![change(
            "hipaa.encryption.at_rest",
            Severity::High,
            Some(Status::Fail),
            lab.now(),
        )],
    )
    .await;
    findings(
        &lab,
        &b,
        vec![change(
            "hipaa.encryption.at_rest",
            Severity::High,
            Some(Status::Fail),
            lab.now(),
        )],
    )
    .await;
    let smith = lab
        .store
        .practices(&admin())
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.name == "Smith")
        .unwrap();
    let manager = Scope {
        role: Role::PracticeManager,
        practice_id: Some(smith.id),
    };
    let seen = lab.store.incidents(&manager, &IncidentQuery::default()).await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].practice.as_deref(), Some("Smith"));
    let hidden = lab
        .incidents()
        .await
        .into_iter()
        .find(|i| i.practice.as_deref() == Some("Lakeside"))
        .unwrap();
    assert!(lab.store.incident(&manager, hidden.id).await.is_err());
}

#[tokio::test]
async fn a_silenced_practice_sends_nothing_but_records_the_incident_and_the_silence() {
    let start = DateTime::from_timestamp_millis(1_800_000_000_000).unwrap();
    let settings = AlertSettings {
        silences: vec![Silence {
            name: "smith-maintenance".into(),
            practice: Some("Smith".into()),
            site: None,
            source: None,
            when: SilenceWhen::Once {
                start,
                end: start + Duration::minutes(10),
            },
            reason: Some("server move".into()),
        }],
        ..AlertSettings::default()
    };
    let mut lab = Lab::new(settings, &["ops"]).await;
    let a = lab.agent("Smith", "main", "a").await;
    lab.agent("Smith", "main", "b").await;
    let c = lab.agent("Lakeside", "main", "c").await;
    lab.agent("Lakeside", "main", "d").await;
    lab.run(30).await;
    lab.alive.remove(&a);
    lab.alive.remove(&c);
    lab.run(150).await;
    let offline = lab.of_source("agent_offline").await;
    assert_eq!(offline.len(), 2, "both recorded");
    let log = lab.notifier.sent();
    assert_eq!(log.len(), 1, "only Lakeside's is sent");
    assert_eq!(log[0].1.practice.as_deref(), Some("Lakeside"));
    let smith = offline.iter().find(|i| i.practice.as_deref() == Some("Smith")).unwrap();
    let detail = lab.store.incident(&admin(), smith.id).await.unwrap();
    assert!(detail.notifications.iter().all(|n| n.status == OutboxStatus::Silenced));
    assert!(detail.timeline.iter().any(|e| e.kind == "silenced"));
    let audit = lab.store.audit_entries(10).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "silence_started" && e.detail.contains("smith-maintenance"))
    );
    // The silence ends while the incident is still open: it is sent then.
    lab.run(450).await;
    assert!(
        lab.store
            .audit_entries(10)
            .await
            .unwrap()
            .iter()
            .any(|e| e.action == "silence_ended")
    );
    let sent = lab.notifier.sent();
    assert_eq!(sent.len(), 2, "{sent:#?}");
    assert_eq!(sent[1].1.practice.as_deref(), Some("Smith"));
}

#[tokio::test]
async fn an_incident_over_within_its_hold_time_is_not_sent() {
    let settings = AlertSettings {
        hold: std::time::Duration::from_secs(60),
        ..AlertSettings::default()
    };
    let mut lab = Lab::new(settings, &["ops"]).await;
    let a = lab.agent("Smith", "main", "a").await;
    lab.agent("Smith", "main", "b").await;
    lab.run(30).await;
    lab.alive.remove(&a);
    lab.run(100).await;
    assert_eq!(lab.of_source("agent_offline").await.len(), 1);
    lab.alive.insert(a);
    lab.run(40).await;
    assert!(lab.notifier.sent().is_empty());
    let inc = &lab.of_source("agent_offline").await[0];
    assert_eq!(inc.state, IncidentState::Resolved);
    let detail = lab.store.incident(&admin(), inc.id).await.unwrap();
    assert!(
        detail.timeline.iter().any(|e| e.kind == "held"),
        "{:#?}",
        detail.timeline
    );
    assert!(detail.notifications.iter().all(|n| n.status == OutboxStatus::Cancelled));
}

#[tokio::test]
async fn a_restart_between_the_incident_and_its_notification_sends_it_exactly_once() {
    let mut lab = Lab::new(AlertSettings::default(), &["ops"]).await;
    let a = lab.agent("Smith", "main", "a").await;
    let b = lab.agent("Smith", "main", "b").await;
    lab.alive.remove(&a);
    // Tick without delivering: the incident and its pending notification are committed.
    for _ in 0..20 {
        lab.clock.advance(Duration::seconds(5));
        lab.beat(&b).await;
        lab.engine.tick().await.unwrap();
    }
    assert_eq!(lab.of_source("agent_offline").await.len(), 1);
    assert!(lab.notifier.sent().is_empty());
    lab.restart();
    // The old engine's lease runs out; the new one takes over.
    lab.clock.advance(Duration::seconds(31));
    lab.beat(&b).await;
    for _ in 0..3 {
        lab.engine.deliver_due().await.unwrap();
        lab.engine.tick().await.unwrap();
    }
    lab.restart();
    lab.clock.advance(Duration::seconds(31));
    lab.beat(&b).await;
    lab.engine.deliver_due().await.unwrap();
    lab.engine.tick().await.unwrap();
    assert_eq!(
        kinds(&lab.notifier.log()),
        [(NotificationKind::Opened, "agent_offline")]
    );
    assert_eq!(lab.of_source("agent_offline").await.len(), 1);
}

#[tokio::test]
async fn two_collectors_on_one_database_deliver_each_notification_once() {
    let mut lab = Lab::new(AlertSettings::default(), &["ops"]).await;
    let a = lab.agent("Smith", "main", "a").await;
    let b = lab.agent("Smith", "main", "b").await;
    let second = Engine::new(
        Arc::clone(&lab.store),
        lab.clock.clone(),
        lab.settings.clone(),
        lab.notifier.clone(),
    );
    lab.alive.remove(&a);
    for _ in 0..30 {
        lab.clock.advance(Duration::seconds(5));
        lab.beat(&b).await;
        lab.engine.tick().await.unwrap();
        second.tick().await.unwrap();
        second.deliver_due().await.unwrap();
        lab.engine.deliver_due().await.unwrap();
    }
    assert_eq!(lab.of_source("agent_offline").await.len(), 1);
    assert_eq!(lab.notifier.sent().len(), 1);
}

#[tokio::test]
async fn a_failing_destination_is_retried_with_backoff_and_then_raises_its_own_incident() {
    let mut lab = Lab::new(AlertSettings::default(), &["ops", "chat"]).await;
    lab.notifier.fail.lock().unwrap().insert("ops".into(), 2);
    let id = lab.agent("Smith", "main", "a").await;
    findings(
        &lab,
        &id,
        vec![change(
            "hipaa.encryption.at_rest",
            Severity::High,
            Some(Status::Fail),
            lab.now(),
        )],
    )
    .await;
    lab.run(60).await;
    let ops: Vec<_> = lab.notifier.sent().into_iter().filter(|(c, _)| c == "ops").collect();
    assert_eq!(ops.len(), 1, "delivered once");
    let attempts = lab
        .notifier
        .attempts
        .lock()
        .unwrap()
        .iter()
        .filter(|c| *c == "ops")
        .count();
    assert_eq!(attempts, 3, "on the third try");
    let detail = lab
        .store
        .incident(&admin(), lab.of_source("encryption").await[0].id)
        .await
        .unwrap();
    let ops_row = detail.notifications.iter().find(|n| n.channel == "ops").unwrap();
    assert_eq!((ops_row.status, ops_row.attempts), (OutboxStatus::Delivered, 3));

    // A channel that keeps failing raises channel_failing, told on the other channel.
    lab.notifier.fail.lock().unwrap().insert("ops".into(), 1000);
    findings(
        &lab,
        &id,
        vec![change(
            "hipaa.backup.recent",
            Severity::High,
            Some(Status::Fail),
            lab.now(),
        )],
    )
    .await;
    lab.run(600).await;
    let failing = lab.of_source("channel_failing").await;
    assert_eq!(failing.len(), 1);
    assert_eq!(failing[0].subject, "ops");
    assert!(
        lab.notifier
            .log()
            .iter()
            .any(|(c, k, s)| c == "chat" && *k == NotificationKind::Opened && s == "channel_failing")
    );
    let backup = lab
        .store
        .incident(&admin(), lab.of_source("backup").await[0].id)
        .await
        .unwrap();
    let row = backup.notifications.iter().find(|n| n.channel == "ops").unwrap();
    assert!(row.attempts < 10, "backoff spaces the attempts: {}", row.attempts);
    assert!(row.last_error.as_deref().unwrap().contains("500"));
}

#[tokio::test]
async fn routes_send_to_their_channels_and_escalate_when_not_acknowledged() {
    let settings = AlertSettings {
        routes: vec![
            Route {
                practice: Some("Smith".into()),
                site: None,
                severity: None,
                source: None,
                channels: vec!["smith-mail".into()],
                escalate_after: Some(std::time::Duration::from_secs(600)),
                escalate_to: vec!["pager".into()],
            },
            Route {
                practice: None,
                site: None,
                severity: Some(Severity::Critical),
                source: None,
                channels: vec!["pager".into()],
                escalate_after: None,
                escalate_to: vec![],
            },
        ],
        ..AlertSettings::default()
    };
    let mut lab = Lab::new(settings, &["smith-mail", "pager", "other"]).await;
    let a = lab.agent("Smith", "main", "a").await;
    let b = lab.agent("Lakeside", "main", "b").await;
    findings(
        &lab,
        &a,
        vec![change(
            "hipaa.encryption.at_rest",
            Severity::High,
            Some(Status::Fail),
            lab.now(),
        )],
    )
    .await;
    findings(
        &lab,
        &b,
        vec![change(
            "hipaa.encryption.at_rest",
            Severity::High,
            Some(Status::Fail),
            lab.now(),
        )],
    )
    .await;
    lab.run(5).await;
    let by: BTreeMap<String, Vec<String>> = lab.notifier.sent().into_iter().fold(BTreeMap::new(), |mut m, (c, n)| {
        m.entry(n.practice.unwrap_or_default()).or_default().push(c);
        m
    });
    assert_eq!(by["Smith"], ["smith-mail"]);
    assert_eq!(by["Lakeside"].len(), 3, "no rule matches: every channel");
    lab.run(600).await;
    let escalated: Vec<_> = lab
        .notifier
        .sent()
        .into_iter()
        .filter(|(_, n)| n.kind == NotificationKind::Escalated)
        .map(|(c, n)| (c, n.practice))
        .collect();
    assert_eq!(escalated, [("pager".to_string(), Some("Smith".to_string()))]);
}

/// Feeds every change the evaluator published so far to the engine, as `serve` does.
async fn drain(sub: &mut rounds_collector::ingest::Subscriber, engine: &Engine) -> Vec<&'static str> {
    let mut seen = Vec::new();
    while let Ok(Some(change)) = tokio::time::timeout(std::time::Duration::from_millis(50), sub.recv()).await {
        seen.push(match &change {
            Change::AgentSeen { .. } => "agent_seen",
            Change::FindingsChanged { .. } => "findings_changed",
            Change::FirstReport { .. } => "first_report",
            Change::ProbesStored { .. } => "probes_stored",
        });
        engine.on_change(&change).await.unwrap();
    }
    seen
}

#[tokio::test]
async fn reports_through_the_evaluator_reach_the_engine_on_the_change_stream() {
    use crate::api::{deliver, enrolled, firewall, inventory};
    let app = TestApp::new();
    let notifier = Recorder::new(&["ops"]);
    let state = app.state.clone().with_notifier(notifier.clone());
    let mut sub = state.evaluator.changes().subscribe("test-alerts");
    let engine = Arc::clone(&state.alerts);
    let app = TestApp { state, ..app };
    let e = enrolled(&app, "Smith", "frontdesk").await;
    let ehr = "https://ehr.example/fhir/metadata";
    let now = app.clock.now();
    deliver(
        &app,
        &e,
        1,
        &[
            inventory(now),
            firewall(false, now),
            probe_obs(ehr, "fhir", true, None, now),
        ],
        true,
    )
    .await;
    let seen = drain(&mut sub, &engine).await;
    assert!(
        seen.contains(&"findings_changed") && seen.contains(&"probes_stored"),
        "{seen:?}"
    );
    engine.deliver_due().await.unwrap();
    assert_eq!(kinds(&notifier.log()), [(NotificationKind::Opened, "finding")]);
    // The EHR goes down: the probe's state change arrives, the windows fill on the ticks.
    app.advance(5);
    let now = app.clock.now();
    deliver(
        &app,
        &e,
        2,
        &[
            inventory(now),
            firewall(true, now),
            probe_obs(ehr, "fhir", false, Some("tcp_timeout"), now),
        ],
        true,
    )
    .await;
    drain(&mut sub, &engine).await;
    // Three failed samples of five (the state change, then a sample per tick), then the two
    // ticks a vendor-like failure waits for other practices to confirm.
    for _ in 0..7 {
        app.advance(5);
        engine.tick().await.unwrap();
        engine.deliver_due().await.unwrap();
    }
    assert_eq!(
        kinds(&notifier.log()),
        [
            (NotificationKind::Opened, "finding"),
            (NotificationKind::Resolved, "finding"),
            (NotificationKind::Opened, "ehr_endpoint")
        ]
    );
    let store = Arc::clone(&app.state.store);
    let ehr_inc = store
        .incidents(&admin(), &IncidentQuery::default())
        .await
        .unwrap()
        .into_iter()
        .find(|i| i.source == "ehr_endpoint")
        .unwrap();
    assert_eq!(ehr_inc.cause_kind, CauseKind::EhrVendor, "{}", ehr_inc.probable_cause);
    assert_eq!(ehr_inc.detail["reasons"], json!(["tcp_timeout"]));
}

#[tokio::test]
async fn the_openapi_document_lists_the_incident_endpoints() {
    let app = TestApp::new();
    let resp = app
        .send(Request::get("/api/v1/openapi.json").body(Body::empty()).unwrap())
        .await;
    let doc: Value = serde_json::from_str(&body_text(resp).await).unwrap();
    for (path, method) in [
        ("/api/v1/incidents", "get"),
        ("/api/v1/incidents/{id}", "get"),
        ("/api/v1/incidents/{id}/acknowledge", "post"),
        ("/api/v1/incidents/{id}/resolve", "post"),
        ("/api/v1/incidents/{id}/notes", "post"),
    ] {
        assert!(
            doc["paths"][path].get(method).is_some(),
            "openapi documents {method} {path}"
        );
    }
}

#[tokio::test]
async fn an_open_incident_is_reminded_every_interval_until_acknowledged() {
    let settings = AlertSettings {
        renotify: std::time::Duration::from_secs(60),
        ..AlertSettings::default()
    };
    let mut lab = Lab::new(settings, &["ops"]).await;
    let a = lab.agent("Smith", "main", "a").await;
    lab.agent("Smith", "main", "b").await;
    lab.alive.remove(&a);
    lab.run(100).await;
    assert_eq!(
        kinds(&lab.notifier.log()),
        [(NotificationKind::Opened, "agent_offline")]
    );
    lab.run(60).await;
    assert_eq!(
        kinds(&lab.notifier.log()),
        [
            (NotificationKind::Opened, "agent_offline"),
            (NotificationKind::Reminder, "agent_offline")
        ]
    );
    let id = lab.of_source("agent_offline").await[0].id;
    lab.engine.acknowledge(&admin(), id, "dana").await.unwrap();
    lab.run(180).await;
    assert_eq!(
        kinds(&lab.notifier.log()),
        [
            (NotificationKind::Opened, "agent_offline"),
            (NotificationKind::Reminder, "agent_offline"),
            (NotificationKind::Acknowledged, "agent_offline")
        ],
        "no reminder once acknowledged"
    );
}
