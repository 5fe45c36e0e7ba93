//! `rounds-collector export` / `import` (issue 17): an installation seeded through the real
//! ingest path (practices, agents, findings with their history, tamper events, incidents with
//! their timeline and notifications, issued reports and deliveries, users, keys, settings) is
//! exported from SQLite and imported into PostgreSQL (when `ROUNDS_TEST_POSTGRES_URL` is set)
//! and into SQLite; every table's row count and what the `Store` trait reads back agree.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rounds_collector::alerting::{
    CauseKind, IncidentQuery, IncidentState, NewIncident, NewIncidentEvent, NewOutboxItem, OutboxStatus,
};
use rounds_collector::notify::NotificationKind;
use rounds_collector::secrets::hash_secret;
use rounds_collector::store::sqlite::SqliteStore;
use rounds_collector::store::transfer::{self, Location, TransferError};
use rounds_collector::store::{ChangeQuery, IssuedReport, ReportDelivery, Role, Scope, Store, TamperAck, TamperSeen};
use rounds_policies::Severity;
use serde_json::json;

use crate::report_seed::{self, Machine, Trouble};
use crate::support::TestApp;

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn admin() -> Scope {
    Scope {
        role: Role::Admin,
        practice_id: None,
    }
}

fn machine(id: &str, host: &str, trouble: Trouble) -> Machine {
    Machine {
        agent_id: id.into(),
        hostname: host.into(),
        trouble,
    }
}

/// A collector with ten days of history of two practices and something in every table.
async fn seeded() -> TestApp {
    let app = TestApp::new();
    let s = app.store();
    let enrolled = at("2026-10-31T12:00:00Z");
    let start = at("2026-11-01T00:00:00Z");
    let smith = vec![
        machine(
            "smith-a1",
            "smith-srv-01",
            Trouble {
                backup_fails: vec![3, 4],
                backup_error: "repository locked".into(),
                ..Default::default()
            },
        ),
        machine(
            "smith-a2",
            "smith-srv-02",
            Trouble {
                ehr_down: vec![5],
                ehr_cause: "connection refused".into(),
                tamper_day: Some(7),
                unencrypted_data: true,
                silent: vec![8],
                ..Default::default()
            },
        ),
    ];
    let jones = vec![machine("jones-a1", "jones-ws-01 <b>", Trouble::default())];
    report_seed::enroll(s, "Smith Family Practice", "Main Street", &smith, enrolled).await;
    report_seed::enroll(s, "Jones Dental", "Harbour", &jones, enrolled).await;
    s.set_policy_settings(
        "Smith Family Practice",
        None,
        Some("hipaa-2025-proposed"),
        None,
        "cli",
        enrolled,
    )
    .await
    .unwrap();
    report_seed::history(&app.state.evaluator, &app.clock, &smith, start, 10, 1).await;
    report_seed::history(&app.state.evaluator, &app.clock, &jones, start, 10, 1).await;
    let now = at("2026-11-11T08:00:00Z");
    // Two complete runs of a check repeating their payload: on SQLite the second confirms the
    // subject once for its check (migration 0018), not on the subject's row.
    for (sequence, time) in [(1000, "2026-11-11T06:00:00Z"), (1001, "2026-11-11T07:00:00Z")] {
        app.clock.set(at(time));
        let report = rounds_protocol::Report {
            protocol: 1,
            agent_id: "jones-a1".into(),
            sequence,
            created_at: at(time),
            check: Some("firewall".into()),
            complete: true,
            prev_hash: None,
            hash: None,
            dropped: Vec::new(),
            observations: vec![rounds_protocol::Observation {
                kind: "firewall".into(),
                subject: "host".into(),
                observed_at: at(time),
                status: rounds_protocol::ObservationStatus::Ok,
                data: json!({"enabled": true, "profiles": ["domain"]}),
                error: None,
            }],
        };
        app.state.evaluator.ingest("jones-a1", &report).await.unwrap();
    }

    let mut tx = s.begin().await.unwrap();
    tx.set_agent_config(
        "Jones Dental",
        Some("Harbour"),
        Some("[checks.backup]\nschedule = \"0 3 * * *\"\n"),
        "harbour.toml",
        "alice",
        now,
    )
    .await
    .unwrap();
    tx.audit("alice", "agent-config.set", "Jones Dental/Harbour", now)
        .await
        .unwrap();
    tx.create_api_key_expiring(
        &hash_secret("key-1"),
        Role::PracticeManager,
        Some("Jones Dental"),
        "jones portal",
        Some(now + Duration::days(90)),
        now,
    )
    .await
    .unwrap();
    tx.add_user("alice", "argon2-hash-a", Role::Admin, None, now)
        .await
        .unwrap();
    tx.add_user(
        "pat",
        "argon2-hash-p",
        Role::PracticeManager,
        Some("Smith Family Practice"),
        now,
    )
    .await
    .unwrap();

    // An outage with a folded child, its timeline and notifications; acknowledged.
    let site = tx
        .open_incident(
            &NewIncident {
                source: "site_offline".into(),
                subject: "Smith Family Practice/Main Street".into(),
                severity: Severity::High,
                title: "Main Street is offline".into(),
                probable_cause: "the site's internet link".into(),
                cause_kind: CauseKind::SiteNetwork,
                practice: Some("Smith Family Practice".into()),
                site: Some("Main Street".into()),
                agent_id: None,
                practices_affected: vec!["Smith Family Practice".into()],
                parent_id: None,
                manual_resolve: false,
                detail: json!({"agents": ["smith-a1", "smith-a2"]}),
            },
            now,
        )
        .await
        .unwrap();
    let child = tx
        .open_incident(
            &NewIncident {
                source: "agent_offline".into(),
                subject: "smith-a2".into(),
                severity: Severity::Medium,
                title: "smith-srv-02 is offline".into(),
                probable_cause: "its site is offline".into(),
                cause_kind: CauseKind::SiteNetwork,
                practice: Some("Smith Family Practice".into()),
                site: Some("Main Street".into()),
                agent_id: Some("smith-a2".into()),
                practices_affected: vec![],
                parent_id: Some(site.id),
                manual_resolve: false,
                detail: json!({}),
            },
            now,
        )
        .await
        .unwrap();
    for (kind, actor) in [
        ("opened", "engine"),
        ("child_folded", "engine"),
        ("notified", "engine"),
        ("acknowledged", "alice"),
    ] {
        tx.incident_event(
            site.id,
            &NewIncidentEvent {
                kind: kind.into(),
                actor: actor.into(),
                channel: (kind == "notified").then(|| "mail".into()),
                message: format!("{kind} <i>by</i> {actor}"),
            },
            now,
        )
        .await
        .unwrap();
    }
    let sent = tx
        .enqueue_notification(
            &NewOutboxItem {
                incident_id: site.id,
                channel: "mail".into(),
                kind: NotificationKind::Opened,
                status: OutboxStatus::Pending,
                next_attempt_at: now,
            },
            now,
        )
        .await
        .unwrap();
    let mut item = tx.incident_notifications(site.id).await.unwrap().pop().unwrap();
    assert_eq!(item.id, sent);
    item.status = OutboxStatus::Delivered;
    item.attempts = 2;
    item.last_error = Some("421 busy".into());
    item.finished_at = Some(now + Duration::seconds(40));
    tx.save_notification(&item).await.unwrap();
    let mut acked = tx.incident_by_id(site.id).await.unwrap().unwrap();
    acked.state = IncidentState::Acknowledged;
    acked.acknowledged_at = Some(now + Duration::minutes(5));
    acked.acknowledged_by = Some("alice".into());
    acked.flapping = true;
    tx.save_incident(&acked).await.unwrap();
    let _ = child;
    tx.claim_lease("alert-engine", "collector-1", now + Duration::seconds(30), now)
        .await
        .unwrap();

    // An issued report and two delivery attempts.
    let smith_id = s
        .practices(&admin())
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.name == "Smith Family Practice")
        .unwrap()
        .id;
    tx.record_issued_report(&IssuedReport {
        report_id: "RR-0123456789abcdef".into(),
        practice_id: smith_id,
        practice: "Smith Family Practice".into(),
        period_from: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
        period_to: NaiveDate::from_ymd_opt(2026, 11, 10).unwrap(),
        format: "pdf".into(),
        content_sha256: "a".repeat(64),
        file_sha256: "b".repeat(64),
        size_bytes: 48_213,
        issued_at: now,
        issued_by: "schedule:monthly".into(),
        collector_version: "0.1.0".into(),
    })
    .await
    .unwrap();
    for (i, delivered) in [false, true].into_iter().enumerate() {
        tx.record_report_delivery(&ReportDelivery {
            report_id: "RR-0123456789abcdef".into(),
            schedule: "monthly".into(),
            recipients: vec!["pat@smith.example".into(), "dr@smith.example".into()],
            attempted_at: now + Duration::minutes(i as i64),
            delivered,
            detail: if delivered { "250 ok" } else { "421 try later" }.into(),
        })
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();

    // Two tamper events, one acknowledged.
    let seen = |id: &str, kind: &str| TamperSeen {
        tamper_id: id.into(),
        path: "/var/log/audit/audit.log".into(),
        kind: kind.into(),
        detected_at: at("2026-11-07T02:00:00Z"),
        event: json!({"offset": 0, "size_before": 9000, "size_after": 10}),
    };
    s.note_tampers("smith-a2", &[seen("t-1", "rewritten"), seen("t-2", "truncated")], now)
        .await
        .unwrap();
    let tampers = s.tampers(&admin(), "smith-a2").await.unwrap();
    let mut tx = s.begin().await.unwrap();
    tx.acknowledge_tamper(
        "smith-a2",
        &tampers[0].tamper_id,
        &TamperAck {
            by: "alice".into(),
            at: now,
            reason: "log rotation".into(),
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    app
}

/// Everything the `Store` trait reads of an installation, as one comparable value.
async fn snapshot(s: &dyn Store) -> serde_json::Value {
    let scope = admin();
    let practices = s.practices(&scope).await.unwrap();
    let agents = s.agents(&scope).await.unwrap();
    let mut per_agent = BTreeMap::new();
    for a in &agents {
        let id = &a.agent_id;
        per_agent.insert(
            id.clone(),
            json!({
                "findings": s.findings(&scope, id).await.unwrap(),
                "findings_at_day_5": s.findings_at(&scope, id, at("2026-11-05T10:00:00Z")).await.unwrap(),
                "latest": s.latest_observations(&scope, id, None).await.unwrap(),
                "delivery": s.delivery_status(&scope, id).await.unwrap(),
                "tampers": s.tampers(&scope, id).await.unwrap(),
                "history": s.agent_observation_history(id, &["backup", "ehr.probe"],
                    at("2026-11-03T00:00:00Z"), at("2026-11-07T00:00:00Z")).await.unwrap(),
                "receipts": s.report_receipts(id, at("2026-11-01T00:00:00Z"), at("2026-12-01T00:00:00Z")).await.unwrap(),
            }),
        );
    }
    let changes = s
        .finding_changes(
            &scope,
            &ChangeQuery {
                agent_id: None,
                practice_id: None,
                from: at("2020-01-01T00:00:00Z"),
                to: at("2030-01-01T00:00:00Z"),
            },
        )
        .await
        .unwrap();
    let incidents = s.incidents(&scope, &IncidentQuery::default()).await.unwrap();
    let mut details = Vec::new();
    for i in &incidents {
        details.push(s.incident(&scope, i.id).await.unwrap());
    }
    let mut issued = Vec::new();
    for p in &practices {
        issued.extend(s.issued_reports_of_practice(p.id).await.unwrap());
    }
    let mut briefs = s.finding_briefs(&scope).await.unwrap();
    briefs.sort_by(|x, y| (&x.agent_id, &x.rule).cmp(&(&y.agent_id, &y.rule)));
    json!({
        "practices": practices,
        "agents": agents,
        "per_agent": per_agent,
        "finding_changes": changes,
        "incidents": details,
        "issued": issued,
        "issued_one": s.issued_report("RR-0123456789abcdef").await.unwrap(),
        "deliveries": s.report_deliveries("monthly").await.unwrap(),
        "users": s.users().await.unwrap(),
        "api_keys": s.api_keys().await.unwrap(),
        "audit": s.audit_entries(1000).await.unwrap(),
        "report_count": s.report_count().await.unwrap(),
        "briefs": briefs,
        "agent_config": s.agent_config_history("Jones Dental", Some("Harbour")).await.unwrap(),
        "policy": s.policy_settings("Smith Family Practice", None).await.unwrap(),
    })
}

fn counts(v: Vec<(String, u64)>) -> BTreeMap<String, u64> {
    v.into_iter().collect()
}

/// Exports the seeded SQLite store into `dir/export.jsonl`.
async fn export_seeded(app: &TestApp, dir: &Path) -> (std::path::PathBuf, transfer::Summary) {
    let file = dir.join("export.jsonl");
    let summary = transfer::export(&Location::Sqlite(app.db_path()), &file, app.state.now())
        .await
        .unwrap();
    (file, summary)
}

fn assert_the_history_is_there(counts: &BTreeMap<String, u64>) {
    for table in [
        "practices",
        "sites",
        "agents",
        "reports",
        "observations",
        "findings",
        "finding_changes",
        "incidents",
        "incident_events",
        "alert_outbox",
        "issued_reports",
        "report_deliveries",
        "tamper_events",
        "users",
        "api_keys",
        "audit_log",
        "agent_config_versions",
        "policy_settings",
        "job_leases",
    ] {
        assert!(
            counts.get(table).copied().unwrap_or(0) > 0,
            "the seed leaves {table} empty: {counts:?}"
        );
    }
}

#[tokio::test]
async fn sqlite_to_sqlite_keeps_every_row_and_what_the_store_reads() {
    let app = seeded().await;
    let dir = tempfile::tempdir().unwrap();
    let (file, exported) = export_seeded(&app, dir.path()).await;
    let source = counts(transfer::table_counts(&Location::Sqlite(app.db_path())).await.unwrap());
    assert_eq!(counts(exported.tables.clone()), source, "the export holds every row");
    assert_the_history_is_there(&source);

    let target = dir.path().join("copy.db");
    let imported = transfer::import(&Location::Sqlite(target.clone()), &file, false)
        .await
        .unwrap();
    assert_eq!(counts(imported.tables), source);
    assert_eq!(
        counts(transfer::table_counts(&Location::Sqlite(target.clone())).await.unwrap()),
        source
    );
    let copy = SqliteStore::open(&target).unwrap();
    assert_eq!(snapshot(&copy).await, snapshot(app.store()).await);

    // A second import into the now full copy is refused and changes nothing; with replace it
    // replaces everything.
    let err = transfer::import(&Location::Sqlite(target.clone()), &file, false)
        .await
        .unwrap_err();
    assert!(matches!(err, TransferError::NotEmpty { .. }), "{err}");
    assert!(err.to_string().contains("--replace"), "{err}");
    transfer::import(&Location::Sqlite(target.clone()), &file, true)
        .await
        .unwrap();
    assert_eq!(
        counts(transfer::table_counts(&Location::Sqlite(target.clone())).await.unwrap()),
        source
    );

    // New rows after the import get ids past the imported ones.
    let before = copy.incidents(&admin(), &IncidentQuery::default()).await.unwrap();
    let max = before.iter().map(|i| i.id).max().unwrap();
    let mut tx = copy.begin().await.unwrap();
    let new = tx.open_incident(&fresh_incident(), app.state.now()).await.unwrap();
    tx.commit().await.unwrap();
    assert!(new.id > max);
}

fn fresh_incident() -> NewIncident {
    NewIncident {
        source: "backup".into(),
        subject: "jones-a1".into(),
        severity: Severity::High,
        title: "backup failing".into(),
        probable_cause: "unknown".into(),
        cause_kind: CauseKind::Unknown,
        practice: Some("Jones Dental".into()),
        site: None,
        agent_id: Some("jones-a1".into()),
        practices_affected: vec![],
        parent_id: None,
        manual_resolve: false,
        detail: json!({}),
    }
}

#[tokio::test]
async fn sqlite_to_postgres_keeps_every_row_and_what_the_store_reads() {
    let Some(url) = crate::support::pg_schema().await else {
        return;
    };
    let app = seeded().await;
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = export_seeded(&app, dir.path()).await;
    let source = counts(transfer::table_counts(&Location::Sqlite(app.db_path())).await.unwrap());
    let pg = Location::Postgres(url.clone());
    let imported = transfer::import(&pg, &file, false).await.unwrap();
    assert_eq!(counts(imported.tables), source);
    assert_eq!(
        counts(transfer::table_counts(&pg).await.unwrap()),
        source,
        "every table of SQLite exists on PostgreSQL with the same rows"
    );
    // The seed holds a subject its check's last complete run confirmed only once per check
    // (its row still at the run before): the import folds the confirmation into the row.
    let conn = rusqlite::Connection::open(app.db_path()).unwrap();
    let raw: i64 = conn
        .query_row(
            "SELECT sequence FROM latest_observations WHERE agent_id = 'jones-a1' AND kind = 'firewall'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(raw, 1000, "the row the second run covers is not rewritten");
    let store = rounds_collector::store::postgres::PgStore::open(&url).await.unwrap();
    let firewall = |latest: Vec<rounds_collector::store::StoredObservation>| {
        latest
            .into_iter()
            .find(|o| o.observation.kind == "firewall")
            .map(|o| (o.sequence, o.observation.observed_at, o.confirmed_at))
    };
    assert_eq!(
        firewall(store.latest_observations(&admin(), "jones-a1", None).await.unwrap()),
        Some((1001, at("2026-11-11T07:00:00Z"), Some(at("2026-11-11T07:00:00Z")))),
        "PostgreSQL reads the confirmation of the last run"
    );
    assert_eq!(snapshot(&store).await, snapshot(app.store()).await);

    // Identity sequences moved past the imported ids.
    let max = store
        .incidents(&admin(), &IncidentQuery::default())
        .await
        .unwrap()
        .iter()
        .map(|i| i.id)
        .max()
        .unwrap();
    let mut tx = store.begin().await.unwrap();
    let new = tx.open_incident(&fresh_incident(), app.state.now()).await.unwrap();
    tx.commit().await.unwrap();
    assert!(new.id > max, "{} after {max}", new.id);

    // And back: PostgreSQL to a new SQLite file gives the same store again.
    let back_file = dir.path().join("back.jsonl");
    transfer::export(&pg, &back_file, app.state.now()).await.unwrap();
    let back = dir.path().join("back.db");
    transfer::import(&Location::Sqlite(back.clone()), &back_file, false)
        .await
        .unwrap();
    let back_store = SqliteStore::open(&back).unwrap();
    assert_eq!(snapshot(&back_store).await, snapshot(&store).await);
}

/// Rewrites the export with `f` applied to its lines.
fn rewrite(file: &Path, to: &Path, f: impl Fn(Vec<String>) -> Vec<String>) {
    let text = std::fs::read_to_string(file).unwrap();
    let lines = f(text.lines().map(str::to_string).collect());
    std::fs::write(to, lines.join("\n") + "\n").unwrap();
}

#[tokio::test]
async fn import_refuses_other_schema_versions_and_broken_files_and_writes_nothing() {
    let app = seeded().await;
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = export_seeded(&app, dir.path()).await;
    let target = dir.path().join("target.db");
    let loc = Location::Sqlite(target.clone());
    let empty = || async {
        transfer::table_counts(&Location::Sqlite(target.clone()))
            .await
            .unwrap()
            .iter()
            .all(|(_, n)| *n == 0)
    };

    let newer = dir.path().join("newer.jsonl");
    rewrite(&file, &newer, |mut l| {
        let mut h: serde_json::Value = serde_json::from_str(&l[0]).unwrap();
        h["schema_version"] = json!(h["schema_version"].as_u64().unwrap() + 1);
        l[0] = h.to_string();
        l
    });
    let err = transfer::import(&loc, &newer, false).await.unwrap_err();
    assert!(matches!(err, TransferError::SchemaVersion { .. }), "{err}");
    assert!(
        err.to_string().contains("newer.jsonl"),
        "the error names the file: {err}"
    );
    assert!(empty().await);

    let truncated = dir.path().join("truncated.jsonl");
    rewrite(&file, &truncated, |mut l| {
        l.truncate(l.len() - 1);
        l
    });
    let err = transfer::import(&loc, &truncated, false).await.unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    assert!(empty().await, "nothing of a truncated file is kept");

    // A row the database refuses near the end (a finding of an agent that does not exist)
    // rolls back everything before it.
    let bad = dir.path().join("bad.jsonl");
    rewrite(&file, &bad, |l| {
        let mut out = Vec::new();
        let mut in_findings = false;
        for line in l {
            if line.starts_with('{') {
                in_findings = line.contains("\"table\":\"findings\"");
            } else if in_findings {
                let mut row: Vec<serde_json::Value> = serde_json::from_str(&line).unwrap();
                row[0] = json!("no-such-agent");
                out.push(serde_json::Value::Array(row).to_string());
                in_findings = false;
                continue;
            }
            out.push(line);
        }
        out
    });
    let err = transfer::import(&loc, &bad, false).await.unwrap_err();
    assert!(matches!(err, TransferError::Format { .. }), "{err}");
    assert!(err.to_string().contains("findings"), "{err}");
    assert!(empty().await, "one transaction: nothing is kept");

    let not_export = dir.path().join("notes.txt");
    std::fs::write(&not_export, "hello\n").unwrap();
    let err = transfer::import(&loc, &not_export, false).await.unwrap_err();
    assert!(err.to_string().contains("notes.txt, line 1"), "{err}");

    // Export never overwrites a file.
    let err = transfer::export(&Location::Sqlite(app.db_path()), &file, app.state.now())
        .await
        .unwrap_err();
    assert!(matches!(err, TransferError::Io { .. }), "{err}");
}

fn cli(data_dir: &Path, database_url: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rounds-collector"));
    cmd.arg("--data-dir").arg(data_dir).args(args);
    match database_url {
        Some(url) => cmd.env("ROUNDS_DATABASE_URL", url),
        None => cmd.env_remove("ROUNDS_DATABASE_URL"),
    };
    cmd.output().unwrap()
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[tokio::test]
async fn cli_export_and_import_move_an_installation() {
    let app = seeded().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rounds-export.jsonl");
    let source_dir = app.db_path().parent().unwrap().to_path_buf();
    let out = cli(&source_dir, None, &["export", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains("exported SQLite") && said.contains("rounds-export.jsonl"),
        "{said}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the export holds hashes: readable by its owner only");
    }
    let source = counts(transfer::table_counts(&Location::Sqlite(app.db_path())).await.unwrap());
    let rows: u64 = source.values().sum();
    assert!(said.contains(&format!("{rows} rows")), "{said}");

    // Into a new data dir (SQLite): created, filled, and refused a second time.
    let new_dir = dir.path().join("new-data");
    let out = cli(&new_dir, None, &["import", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("  finding_changes: "),
        "{}",
        text(&out.stdout)
    );
    let copied = counts(
        transfer::table_counts(&Location::Sqlite(new_dir.join("rounds.db")))
            .await
            .unwrap(),
    );
    assert_eq!(copied, source);
    let out = cli(&new_dir, None, &["import", file.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(64),
        "a store with data is refused as a usage error"
    );
    assert!(text(&out.stderr).contains("--replace"), "{}", text(&out.stderr));
    let out = cli(&new_dir, None, &["import", "--replace", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Into PostgreSQL, selected as `serve` selects it.
    let Some(url) = crate::support::pg_schema().await else {
        return;
    };
    let pg_dir = dir.path().join("pg-data");
    let out = cli(&pg_dir, Some(&url), &["import", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("into PostgreSQL"), "{}", text(&out.stdout));
    assert_eq!(
        counts(transfer::table_counts(&Location::Postgres(url)).await.unwrap()),
        source
    );
}
