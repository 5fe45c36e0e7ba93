//! Every alert source end to end through REAL channels (issue 12): one collector, reports
//! and heartbeats ingested through its HTTP API and evaluated by the real policy pack, the
//! engine on the change stream, and notifications delivered to a real SMTP server (Debian's
//! python3-aiosmtpd, STARTTLS) and a real HTTP webhook receiver on loopback that verifies the
//! HMAC signature. Table-driven: each case breaks something in a practice of its own and
//! asserts exactly one e-mail and one webhook for the one incident it opens, carrying the
//! probable cause, then fixes it and asserts exactly one resolved e-mail and webhook.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use rounds_collector::alerting::{Engine, Incident, IncidentQuery, IncidentState};
use rounds_collector::notify::SmtpTls;
use rounds_collector::notify::channels::Channels;
use rounds_collector::notify::settings::{ChannelKind, ChannelSettings};
use rounds_protocol::{EnrollResponse, Observation, obs};
use serde_json::json;

use crate::alerting::admin;
use crate::api::{deliver, enroll_body, inventory, post_json, token};
use crate::notify::{Receiver, SmtpServer, certs, decoded_part, http, secret_file};
use crate::support::{TestApp, body_text};

/// One collector with the real channels, driven in 5 s steps of its clock.
struct Rig {
    app: TestApp,
    engine: Arc<Engine>,
    sub: rounds_collector::ingest::Subscriber,
    smtp: SmtpServer,
    hook: Receiver,
    /// Machines that beat every 30 s, and the next sequence of each one's reports.
    alive: Vec<(EnrollResponse, u64)>,
    stopped: HashSet<String>,
    /// 5 s steps run so far.
    steps: i64,
    _certs: crate::notify::Certs,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let certs = certs();
        let smtp = SmtpServer::start("starttls", Some(&certs), None).await;
        let (hook, addr) = Receiver::start(Some(b"sources-secret")).await;
        let channels = Channels::new(
            Some(smtp.settings(SmtpTls::StartTls, Some(&certs.ca))),
            vec![
                ChannelSettings {
                    name: "mail".into(),
                    kind: ChannelKind::Email {
                        to: vec!["oncall@example.org".into()],
                    },
                },
                ChannelSettings {
                    name: "hook".into(),
                    kind: ChannelKind::Webhook {
                        http: http(addr, "/signed/sources"),
                        secret_file: Some(secret_file(dir.path(), "hook", "sources-secret")),
                    },
                },
            ],
        )
        .unwrap();
        let app = TestApp::new();
        let state = app.state.clone().with_notifier(Arc::new(channels));
        let sub = state.evaluator.changes().subscribe("test-sources");
        let engine = Arc::clone(&state.alerts);
        let app = TestApp { state, ..app };
        Rig {
            app,
            engine,
            sub,
            smtp,
            hook,
            alive: Vec::new(),
            stopped: HashSet::new(),
            steps: 0,
            _certs: certs,
            _dir: dir,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.app.state.now()
    }

    /// Enrolls a machine through the API; it sends a first report and beats from now on.
    async fn machine(&mut self, practice: &str, site: &str, host: &str, healthy: &[Observation]) -> usize {
        let t = token(&self.app, practice, site).await;
        let resp = self
            .app
            .send(post_json("/api/v1/agent/enroll", &enroll_body(&t, host), None))
            .await;
        let e: EnrollResponse = serde_json::from_str(&body_text(resp).await).unwrap();
        self.alive.push((e, 1));
        let i = self.alive.len() - 1;
        self.report(i, healthy).await;
        i
    }

    /// Delivers a report of machine `i` (with its inventory) and feeds the engine.
    async fn report(&mut self, i: usize, observations: &[Observation]) {
        let mut all = vec![inventory(self.now())];
        all.extend_from_slice(observations);
        let (e, seq) = &mut self.alive[i];
        deliver(&self.app, e, *seq, &all, true).await;
        *seq += 1;
        self.drain().await;
    }

    async fn drain(&mut self) {
        while let Ok(Some(change)) = tokio::time::timeout(std::time::Duration::from_millis(20), self.sub.recv()).await {
            self.engine.on_change(&change).await.unwrap();
        }
    }

    async fn beat(&mut self, i: usize) {
        let (e, _) = &self.alive[i];
        let body = json!({"protocol": 1, "agent_id": e.agent_id, "sent_at": self.now(), "agent_version": "0.1.0", "agent_uptime_secs": 5});
        let resp = self
            .app
            .send(post_json(
                "/api/v1/agent/heartbeat",
                &body,
                Some((&e.agent_id, &e.agent_secret)),
            ))
            .await;
        assert!(resp.status().is_success(), "heartbeat: {}", resp.status());
    }

    /// Moves the clock on by `secs` in 5 s steps: machines not stopped beat every 30 s, the
    /// engine ticks and delivers through the real channels.
    async fn run(&mut self, secs: i64) {
        for _ in 0..secs / 5 {
            self.app.advance(5);
            self.steps += 1;
            let step = self.steps;
            for i in 0..self.alive.len() {
                if !self.stopped.contains(&self.alive[i].0.agent_id) && (step + i as i64) % 6 == 0 {
                    self.beat(i).await;
                }
            }
            self.drain().await;
            self.engine.tick().await.unwrap();
            self.engine.deliver_due().await.unwrap();
        }
    }

    fn stop(&mut self, i: usize) {
        self.stopped.insert(self.alive[i].0.agent_id.clone());
    }

    fn start(&mut self, i: usize) {
        self.stopped.remove(&self.alive[i].0.agent_id);
    }

    async fn incidents(&self) -> Vec<Incident> {
        self.app
            .store()
            .incidents(&admin(), &IncidentQuery::default())
            .await
            .unwrap()
    }
}

// ---- observations, healthy and broken

fn at_ago(now: DateTime<Utc>, hours: i64) -> Option<DateTime<Utc>> {
    Some(now - Duration::hours(hours))
}

fn backup(now: DateTime<Utc>, result: &str, success_hours_ago: i64) -> Observation {
    Observation::ok(
        "restic:/srv/backup",
        now,
        &obs::Backup {
            tool: "restic".into(),
            repository: "/srv/backup".into(),
            last_success_at: at_ago(now, success_hours_ago),
            last_result: result.into(),
            last_attempt_at: at_ago(now, 1),
            encrypted: Some(true),
            last_restore_test_at: at_ago(now, 24),
            ..Default::default()
        },
    )
}

fn volume(now: DateTime<Utc>, encrypted: bool) -> Observation {
    Observation::ok(
        "/",
        now,
        &obs::EncryptionVolume {
            device: "/dev/sda2".into(),
            mount_point: "/".into(),
            volume_type: "fixed".into(),
            encrypted,
            method: if encrypted { "luks" } else { "none" }.into(),
            state: if encrypted { "on" } else { "off" }.into(),
            device_chain: Vec::new(),
        },
    )
}

fn audit_log(now: DateTime<Utc>, truncated: bool) -> Observation {
    Observation::ok(
        "/var/log/audit/audit.log",
        now,
        &obs::AuditLog {
            path: "/var/log/audit/audit.log".into(),
            present: true,
            append_only: Some(!truncated),
            truncated: Some(truncated),
            rewritten: Some(false),
            world_writable: Some(false),
            cleared: Some(false),
            change: Some(if truncated { "truncated" } else { "appended" }.into()),
            ..Default::default()
        },
    )
}

const EHR_URL: &str = "https://ehr-vendor.example/fhir/metadata";
const CERT_URL: &str = "https://labs.example/fhir/metadata";
const LIS: &str = "10.0.0.5:2575";

fn probe(now: DateTime<Utc>, kind: &str, target: &str, up: bool, cert_days: Option<i64>) -> Observation {
    Observation::ok(
        target,
        now,
        &obs::EhrProbe {
            probe: kind.into(),
            target: target.into(),
            up,
            latency_ms: up.then_some(40.0),
            failure: (!up).then(|| "connection refused".into()),
            reason: (!up).then(|| "tcp_refused".into()),
            attempts: if up { 1 } else { 2 },
            chain_verified: cert_days.map(|_| true),
            hostname_match: cert_days.map(|_| true),
            chain_expires_in_days: cert_days,
            leaf_expires_in_days: cert_days,
            ..Default::default()
        },
    )
}

/// The network baseline: gateway, resolver and the collector all answer.
fn baseline_ok(now: DateTime<Utc>) -> Vec<Observation> {
    [
        ("gateway", "tcp", "192.168.1.1:53"),
        ("resolver", "dns", "203.0.113.53"),
        ("reference", "https", "https://collector.example/healthz"),
    ]
    .into_iter()
    .map(|(role, probe, target)| {
        Observation::ok(
            target,
            now,
            &obs::NetworkBaseline {
                role: role.into(),
                probe: probe.into(),
                target: target.into(),
                up: true,
                attempts: 1,
                ..Default::default()
            },
        )
    })
    .collect()
}

fn disk(now: DateTime<Utc>, used_percent: f64) -> Observation {
    Observation::ok(
        "/",
        now,
        &obs::DiskSpace {
            mount_point: "/".into(),
            total_bytes: 100_000_000_000,
            available_bytes: ((100.0 - used_percent) * 1e9) as u64,
            used_percent,
        },
    )
}

fn firewall(now: DateTime<Utc>, enabled: bool) -> Observation {
    crate::api::firewall(enabled, now)
}

/// What each case breaks, and how it is fixed.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// One of two machines stops beating.
    AgentOff,
    /// Both machines of the site stop beating.
    SiteOff,
    /// The on-premises LIS's TCP port stops answering from both machines of the site.
    OnPremDown,
    /// The EHR vendor's endpoint fails from two practices.
    VendorDown,
    BackupStale,
    BackupFailed,
    EncryptionOff,
    /// A person resolves it: it is never resolved by the engine.
    AuditTampered,
    CertificateExpiring,
    DiskFull,
    /// The firewall (a high-severity rule) turns to fail.
    FindingFails,
}

struct Case {
    fault: Fault,
    /// The one incident's source.
    source: &'static str,
    /// Words the probable cause must hold.
    cause: &'static str,
}

const CASES: &[Case] = &[
    Case {
        fault: Fault::AgentOff,
        source: "agent_offline",
        cause: "stopped sending heartbeats",
    },
    Case {
        fault: Fault::SiteOff,
        source: "site_offline",
        cause: "the site's internet or power is out",
    },
    Case {
        fault: Fault::OnPremDown,
        source: "ehr_endpoint",
        cause: "the on-premises server 10.0.0.5:2575",
    },
    Case {
        fault: Fault::VendorDown,
        source: "ehr_vendor",
        cause: "the EHR vendor: https://ehr-vendor.example/fhir/metadata fails from 2 practices",
    },
    Case {
        fault: Fault::BackupStale,
        source: "backup",
        cause: "restic",
    },
    Case {
        fault: Fault::BackupFailed,
        source: "backup",
        cause: "Read the failed run's log",
    },
    Case {
        fault: Fault::EncryptionOff,
        source: "encryption",
        cause: "Encrypt the volume with LUKS",
    },
    Case {
        fault: Fault::AuditTampered,
        source: "audit_tamper",
        cause: "/var/log/audit/audit.log",
    },
    Case {
        fault: Fault::CertificateExpiring,
        source: "certificate",
        cause: "Renew the certificate",
    },
    Case {
        fault: Fault::DiskFull,
        source: "disk_space",
        cause: "98",
    },
    Case {
        fault: Fault::FindingFails,
        source: "finding",
        cause: "ufw",
    },
];

/// The healthy observations a case's machines start with.
fn healthy(fault: Fault, now: DateTime<Utc>) -> Vec<Observation> {
    match fault {
        Fault::AgentOff | Fault::SiteOff => vec![firewall(now, true)],
        Fault::OnPremDown => {
            let mut v = baseline_ok(now);
            v.push(probe(now, "tcp", LIS, true, None));
            v
        }
        Fault::VendorDown => {
            let mut v = baseline_ok(now);
            v.push(probe(now, "https", EHR_URL, true, None));
            v
        }
        Fault::BackupStale | Fault::BackupFailed => vec![backup(now, "success", 2)],
        Fault::EncryptionOff => vec![volume(now, true)],
        Fault::AuditTampered => vec![audit_log(now, false)],
        Fault::CertificateExpiring => vec![probe(now, "https", CERT_URL, true, Some(200))],
        Fault::DiskFull => vec![disk(now, 40.0)],
        Fault::FindingFails => vec![firewall(now, true)],
    }
}

/// Breaks (`broken`) or fixes the case's machines.
async fn drive(rig: &mut Rig, fault: Fault, machines: &[usize], broken: bool) {
    let now = rig.now();
    let one = |o: Observation| vec![o];
    match fault {
        Fault::AgentOff => {
            if broken {
                rig.stop(machines[0]);
            } else {
                rig.start(machines[0]);
            }
        }
        Fault::SiteOff => {
            for &m in machines {
                if broken {
                    rig.stop(m);
                } else {
                    rig.start(m);
                }
            }
        }
        Fault::OnPremDown | Fault::VendorDown => {
            let (kind, target) = match fault {
                Fault::OnPremDown => ("tcp", LIS),
                _ => ("https", EHR_URL),
            };
            for &m in machines {
                let mut v = baseline_ok(now);
                v.push(probe(now, kind, target, !broken, None));
                rig.report(m, &v).await;
            }
        }
        Fault::BackupStale => {
            let o = if broken {
                backup(now, "success", 120)
            } else {
                backup(now, "success", 2)
            };
            rig.report(machines[0], &one(o)).await;
        }
        Fault::BackupFailed => {
            let o = backup(now, if broken { "failed" } else { "success" }, 2);
            rig.report(machines[0], &one(o)).await;
        }
        Fault::EncryptionOff => rig.report(machines[0], &one(volume(now, !broken))).await,
        Fault::AuditTampered => rig.report(machines[0], &one(audit_log(now, broken))).await,
        Fault::CertificateExpiring => {
            let days = if broken { 10 } else { 200 };
            rig.report(machines[0], &one(probe(now, "https", CERT_URL, true, Some(days))))
                .await
        }
        Fault::DiskFull => {
            rig.report(machines[0], &one(disk(now, if broken { 98.0 } else { 40.0 })))
                .await
        }
        Fault::FindingFails => rig.report(machines[0], &one(firewall(now, !broken))).await,
    }
}

/// Seconds to let pass after breaking or fixing: offline takes 90 s, probe windows a few
/// ticks, findings are immediate.
fn settle(fault: Fault) -> i64 {
    match fault {
        Fault::AgentOff | Fault::SiteOff => 150,
        Fault::OnPremDown | Fault::VendorDown => 40,
        _ => 10,
    }
}

/// The mails and webhooks received since `(mails, hooks)`: (incident id, kind, probable cause).
/// One message received: its incident, kind and the probable cause it carries.
type Message = (i64, String, String);

fn since(rig: &Rig, mails: usize, hooks: usize) -> (Vec<Message>, Vec<Message>) {
    let m = rig.smtp.received()[mails..]
        .iter()
        .map(|(raw, _)| {
            let id = raw
                .lines()
                .find_map(|l| l.strip_prefix("In-Reply-To: <rounds-incident-"))
                .and_then(|l| l.split('@').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no incident in {raw}"));
            let kind = if raw.contains("[RESOLVED]") {
                "resolved"
            } else if raw.contains("[OPEN]") {
                "opened"
            } else {
                "other"
            };
            let text = String::from_utf8(decoded_part(raw, "Content-Type: text/plain")).unwrap();
            (id, kind.to_string(), text)
        })
        .collect();
    let h = rig.hook.seen()[hooks..]
        .iter()
        .map(|s| {
            assert_eq!(s.verified, Some(true), "signature verified: {:?}", s.headers);
            (
                s.body["incident_id"].as_i64().unwrap(),
                s.body["kind"].as_str().unwrap().to_string(),
                s.body["probable_cause"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (m, h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_source_from_real_reports_sends_one_mail_and_one_signed_webhook_and_one_resolved_each() {
    let mut rig = Rig::new().await;
    for (n, case) in CASES.iter().enumerate() {
        let name = format!("{:?}", case.fault);
        let practice = format!("P{n} {name}");
        let now = rig.now();
        let mut machines = Vec::new();
        let hosts = match case.fault {
            Fault::AgentOff | Fault::SiteOff | Fault::OnPremDown => 2,
            _ => 1,
        };
        for h in 0..hosts {
            machines.push(
                rig.machine(&practice, "Main", &format!("host{h}"), &healthy(case.fault, now))
                    .await,
            );
        }
        if let Fault::VendorDown = case.fault {
            // A second practice probing the same vendor endpoint.
            let other = format!("P{n}b {name}");
            machines.push(rig.machine(&other, "Main", "hostb", &healthy(case.fault, now)).await);
        }
        let before: BTreeSet<i64> = rig.incidents().await.iter().map(|i| i.id).collect();
        rig.run(10).await;
        let (mails0, hooks0) = (rig.smtp.received().len(), rig.hook.seen().len());
        let healthy_now = rig.incidents().await;
        assert_eq!(
            healthy_now.len(),
            before.len(),
            "{name}: healthy machines open nothing: {:#?}",
            healthy_now
                .iter()
                .filter(|i| !before.contains(&i.id))
                .collect::<Vec<_>>()
        );

        // Broken: exactly one top-level incident of the source, one mail and one webhook.
        drive(&mut rig, case.fault, &machines, true).await;
        rig.run(settle(case.fault)).await;
        let new: Vec<Incident> = rig
            .incidents()
            .await
            .into_iter()
            .filter(|i| !before.contains(&i.id))
            .collect();
        let top: Vec<&Incident> = new.iter().filter(|i| i.parent_id.is_none()).collect();
        assert_eq!(top.len(), 1, "{name}: one incident: {new:#?}");
        let inc = top[0].clone();
        assert_eq!(inc.source, case.source, "{name}");
        assert!(
            inc.probable_cause.contains(case.cause),
            "{name}: `{}` in {}",
            case.cause,
            inc.probable_cause
        );
        let (mails, hooks) = since(&rig, mails0, hooks0);
        assert_eq!(
            mails.iter().map(|(id, k, _)| (*id, k.as_str())).collect::<Vec<_>>(),
            [(inc.id, "opened")],
            "{name}: one mail"
        );
        assert_eq!(
            hooks.iter().map(|(id, k, _)| (*id, k.as_str())).collect::<Vec<_>>(),
            [(inc.id, "opened")],
            "{name}: one webhook"
        );
        assert!(
            mails[0].2.contains(case.cause),
            "{name}: the mail says the cause: {}",
            mails[0].2
        );
        assert!(hooks[0].2.contains(case.cause), "{name}: {}", hooks[0].2);

        // Fixed (or, for a tampered log, resolved by a person): one resolved mail and webhook.
        drive(&mut rig, case.fault, &machines, false).await;
        rig.run(settle(case.fault)).await;
        if let Fault::AuditTampered = case.fault {
            let still = rig.app.store().incident(&admin(), inc.id).await.unwrap();
            assert_eq!(still.incident.state, IncidentState::Open, "only a person resolves it");
            rig.engine
                .resolve_by(&admin(), inc.id, "tina", Some("log rotated by hand, verified"))
                .await
                .unwrap();
            rig.run(5).await;
        }
        let done = rig.app.store().incident(&admin(), inc.id).await.unwrap();
        assert_eq!(done.incident.state, IncidentState::Resolved, "{name}");
        let (mails, hooks) = since(&rig, mails0, hooks0);
        let kinds = |v: &[Message]| v.iter().map(|(id, k, _)| (*id, k.clone())).collect::<Vec<_>>();
        let want = vec![(inc.id, "opened".to_string()), (inc.id, "resolved".to_string())];
        assert_eq!(kinds(&mails), want, "{name}: mails");
        assert_eq!(kinds(&hooks), want, "{name}: webhooks");
        // Children folded into it (the site's machines, the practices' endpoint incidents)
        // sent nothing of their own: every message above is the parent's.
    }
}
