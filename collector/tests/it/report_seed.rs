//! Seeding a collector with a practice's history for report tests and the report benchmark:
//! machines enrolled through the store, daily reports of real observation payloads ingested
//! and evaluated by the real [`Evaluator`] against the built-in policy, with the collector's
//! clock moved day by day.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use rounds_collector::clock::FakeClock;
use rounds_collector::ingest::Evaluator;
use rounds_collector::secrets::hash_secret;
use rounds_collector::store::{NewAgent, NewToken, Store};
use rounds_protocol::obs::{AuditLog, Backup, EhrProbe, EncryptionVolume, Inventory};
use rounds_protocol::{Observation, Report};

/// The EHR endpoint every seeded machine probes.
pub const EHR: &str = "https://ehr.example/fhir/metadata";

/// What goes wrong on one seeded machine, and when (days after the start).
#[derive(Debug, Clone, Default)]
pub struct Trouble {
    /// Backup fails on these days with `backup_error`.
    pub backup_fails: Vec<i64>,
    pub backup_error: String,
    /// The EHR is down from hour 9 to hour 12 on these days, for `ehr_cause`.
    pub ehr_down: Vec<i64>,
    pub ehr_cause: String,
    /// The audit log is found rewritten on this day.
    pub tamper_day: Option<i64>,
    /// A fixed volume `/data` that is not encrypted.
    pub unencrypted_data: bool,
    /// No report at all on these days.
    pub silent: Vec<i64>,
}

/// One machine to seed.
#[derive(Debug, Clone)]
pub struct Machine {
    pub agent_id: String,
    pub hostname: String,
    pub trouble: Trouble,
}

/// Enrolls `machines` into `practice`/`site` at `at`.
pub async fn enroll(store: &dyn Store, practice: &str, site: &str, machines: &[Machine], at: DateTime<Utc>) {
    for m in machines {
        let token = format!("tok-{}", m.agent_id);
        store
            .create_token(
                NewToken {
                    practice: practice.into(),
                    site: site.into(),
                    token_hash: hash_secret(&token),
                    expires_at: at + Duration::hours(1),
                },
                at,
            )
            .await
            .unwrap();
        store
            .enroll(
                &hash_secret(&token),
                NewAgent {
                    agent_id: m.agent_id.clone(),
                    secret_hash: hash_secret(&format!("secret-{}", m.agent_id)),
                    hostname: m.hostname.clone(),
                    os: "linux".into(),
                    agent_version: "0.1.0".into(),
                },
                at,
            )
            .await
            .unwrap();
    }
}

fn observations(m: &Machine, day: i64, at: DateTime<Utc>, ehr_up: bool) -> Vec<Observation> {
    let t = &m.trouble;
    let mut out = vec![Observation::ok(
        "host",
        at,
        &Inventory {
            hostname: m.hostname.clone(),
            os_family: "linux".into(),
            os_name: Some("Debian GNU/Linux".into()),
            os_version: Some("12".into()),
            arch: "x86_64".into(),
            role: Some("server".into()),
            hardware_vendor: Some("Dell Inc.".into()),
            hardware_model: Some("PowerEdge T150".into()),
            cpu_cores: 4,
            memory_total_bytes: 16 << 30,
            agent_version: "0.1.0".into(),
            ..Default::default()
        },
    )];
    out.push(Observation::ok(
        "/",
        at,
        &EncryptionVolume {
            device: "/dev/mapper/root".into(),
            mount_point: "/".into(),
            volume_type: "fixed".into(),
            encrypted: true,
            method: "luks".into(),
            state: "on".into(),
            device_chain: vec!["dm-0".into(), "sda2".into()],
        },
    ));
    if t.unencrypted_data {
        out.push(Observation::ok(
            "/data",
            at,
            &EncryptionVolume {
                device: "/dev/sdb1".into(),
                mount_point: "/data".into(),
                volume_type: "fixed".into(),
                encrypted: false,
                method: "none".into(),
                state: "off".into(),
                device_chain: vec!["sdb1".into()],
            },
        ));
    }
    let failed = t.backup_fails.contains(&day);
    let last_success = if failed { at - Duration::days(1) } else { at };
    out.push(Observation::ok(
        "restic:/srv/restic",
        at,
        &Backup {
            tool: "restic".into(),
            repository: "/srv/restic".into(),
            last_success_at: Some(last_success),
            last_result: if failed { "failed".into() } else { "success".into() },
            last_attempt_at: Some(at),
            size_bytes: Some(5 << 30),
            encrypted: Some(true),
            last_restore_test_at: Some(at - Duration::days(3)),
            last_error: failed.then(|| t.backup_error.clone()),
            ..Default::default()
        },
    ));
    out.push(Observation::ok(
        EHR,
        at,
        &EhrProbe {
            probe: "fhir".into(),
            target: EHR.into(),
            up: ehr_up,
            latency_ms: ehr_up.then_some(180.0),
            http_status: ehr_up.then_some(200),
            tls_version: Some("TLSv1.3".into()),
            certificate_expires_at: Some(at + Duration::days(200)),
            certificate_valid: Some(true),
            failure: (!ehr_up).then(|| t.ehr_cause.clone()),
            reason: (!ehr_up).then(|| "tcp_timeout".into()),
            attempts: if ehr_up { 1 } else { 2 },
            ..Default::default()
        },
    ));
    let tampered = t.tamper_day == Some(day);
    out.push(Observation::ok(
        "/var/log/audit/audit.log",
        at,
        &AuditLog {
            path: "/var/log/audit/audit.log".into(),
            present: true,
            append_only: Some(!tampered),
            truncated: Some(false),
            rewritten: Some(tampered),
            world_writable: Some(false),
            cleared: Some(false),
            change: Some(if tampered { "rewritten" } else { "appended" }.into()),
            ..Default::default()
        },
    ));
    out
}

/// Ingests `days` days of history (reports at 02:00 and, around EHR outages, at 09:00 and
/// 12:00) for `machines`, starting on the day of `start`, moving `clock`; returns the number of
/// reports ingested.
pub async fn history(
    evaluator: &Evaluator,
    clock: &Arc<FakeClock>,
    machines: &[Machine],
    start: DateTime<Utc>,
    days: i64,
    first_sequence: u64,
) -> u64 {
    let mut count = 0;
    for day in 0..days {
        let base = start + Duration::days(day);
        for (hour, ehr_window) in [(2, false), (9, true), (12, true)] {
            let at = base + Duration::hours(hour);
            clock.set(at);
            for m in machines {
                if m.trouble.silent.contains(&day) {
                    continue;
                }
                let down_today = m.trouble.ehr_down.contains(&day);
                if ehr_window && !down_today {
                    continue;
                }
                let ehr_up = !(down_today && hour == 9);
                let seq = first_sequence + (day as u64) * 3 + (hour as u64 / 5);
                let report = Report {
                    protocol: 1,
                    agent_id: m.agent_id.clone(),
                    sequence: seq,
                    created_at: at,
                    check: None,
                    complete: false,
                    prev_hash: None,
                    hash: None,
                    dropped: Vec::new(),
                    observations: observations(m, day, at, ehr_up),
                };
                let outcome = evaluator.ingest(&m.agent_id, &report).await.unwrap();
                if let Some(Err(e)) = outcome.evaluation {
                    panic!("evaluation of {} failed: {e}", m.agent_id);
                }
                count += 1;
            }
        }
    }
    count
}
