//! Conformance cases of the storage areas added after the core (issue 17): incidents, their
//! timeline and outbox, alert windows, job leases, issued reports and deliveries, tamper
//! events, revocation and API-key expiry, and the dashboard's reads. Every case runs on SQLite
//! and, when `ROUNDS_TEST_POSTGRES_URL` is set, on PostgreSQL, like `store.rs`'s suite.

use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rounds_collector::alerting::{
    AlertWindow, CauseKind, Incident, IncidentQuery, IncidentState, NewIncident, NewIncidentEvent, NewOutboxItem,
    OutboxStatus,
};
use rounds_collector::notify::NotificationKind;
use rounds_collector::secrets::hash_secret;
use rounds_collector::store::{
    DbErrorKind, IssuedReport, ReportDelivery, Role, Scope, Store, StoreError, TamperAck, TamperSeen,
};
use rounds_policies::{Exception, Finding, Severity, Status};
use rounds_protocol::{Observation, ObservationStatus};
use serde_json::json;

use crate::support::{admin, enroll, enroll_smith_and_lakeside, ingest};

/// A time with millisecond precision, as stores keep it.
fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_795_000_000_000 + secs * 1000).unwrap()
}

fn manager(practice_id: i64) -> Scope {
    Scope {
        role: Role::PracticeManager,
        practice_id: Some(practice_id),
    }
}

async fn practice_id(store: &dyn Store, name: &str) -> i64 {
    store
        .practices(&admin())
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no practice {name}"))
        .id
}

fn new_incident(source: &str, subject: &str, practice: Option<&str>) -> NewIncident {
    NewIncident {
        source: source.into(),
        subject: subject.into(),
        severity: Severity::High,
        title: format!("{source} {subject} is down"),
        probable_cause: "the site's link".into(),
        cause_kind: CauseKind::SiteNetwork,
        practice: practice.map(str::to_string),
        site: practice.map(|_| "Main".to_string()),
        agent_id: None,
        practices_affected: practice.map(|p| vec![p.to_string()]).unwrap_or_default(),
        parent_id: None,
        manual_resolve: false,
        detail: json!({"agents": ["a1", "a2"], "note": "<b>escaped later</b>"}),
    }
}

async fn open(store: &dyn Store, new: &NewIncident, now: DateTime<Utc>) -> Result<Incident, StoreError> {
    let mut tx = store.begin().await?;
    let inc = tx.open_incident(new, now).await?;
    tx.commit().await?;
    Ok(inc)
}

async fn save(store: &dyn Store, inc: &Incident) {
    let mut tx = store.begin().await.unwrap();
    tx.save_incident(inc).await.unwrap();
    tx.commit().await.unwrap();
}

async fn event(store: &dyn Store, id: i64, kind: &str, actor: &str, now: DateTime<Utc>) {
    let mut tx = store.begin().await.unwrap();
    tx.incident_event(
        id,
        &NewIncidentEvent {
            kind: kind.into(),
            actor: actor.into(),
            channel: (kind == "notified").then(|| "mail".to_string()),
            message: format!("{kind} by {actor}"),
        },
        now,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

pub async fn incidents_open_acknowledge_resolve_and_keep_their_timeline(store: Arc<dyn Store>) {
    let s = store.as_ref();
    enroll_smith_and_lakeside(s).await;
    let smith = practice_id(s, "Smith").await;
    let lakeside = practice_id(s, "Lakeside").await;

    let inc = open(s, &new_incident("site_offline", "Smith/Main", Some("Smith")), at(0))
        .await
        .unwrap();
    assert_eq!(inc.state, IncidentState::Open);
    assert_eq!(inc.practice_id, Some(smith), "the practice's id is looked up by name");
    assert_eq!(inc.opened_at, at(0));
    assert_eq!(inc.updated_at, at(0));
    assert_eq!(inc.detail["agents"], json!(["a1", "a2"]));
    assert!(!inc.flapping && !inc.manual_resolve);
    assert_eq!(inc.acknowledged_at, None);

    // One active incident per (source, subject): a second is refused as a constraint, and the
    // refusal changes nothing.
    let dup = open(s, &new_incident("site_offline", "Smith/Main", Some("Smith")), at(1))
        .await
        .unwrap_err();
    assert_eq!(dup.kind(), Some(DbErrorKind::Constraint), "{dup}");
    assert_eq!(s.incidents(&admin(), &IncidentQuery::default()).await.unwrap().len(), 1);

    // A child folded into it, an MSP-wide one naming Lakeside, another of Lakeside's.
    let mut child_new = new_incident("agent_offline", "a1", Some("Smith"));
    child_new.parent_id = Some(inc.id);
    child_new.agent_id = Some("a1".into());
    let child = open(s, &child_new, at(2)).await.unwrap();
    let mut wide_new = new_incident("ehr_vendor", "ehr.example", None);
    wide_new.practices_affected = vec!["Lakeside".into(), "Elsewhere".into()];
    wide_new.cause_kind = CauseKind::EhrVendor;
    wide_new.manual_resolve = true;
    let wide = open(s, &wide_new, at(3)).await.unwrap();
    assert_eq!(wide.practice_id, None);
    assert!(wide.manual_resolve);
    let lake = open(s, &new_incident("backup", "b1", Some("Lakeside")), at(4))
        .await
        .unwrap();

    // Acknowledge, with every mutable field changed, and read it back as written.
    let mut acked = inc.clone();
    acked.state = IncidentState::Acknowledged;
    acked.flapping = true;
    acked.severity = Severity::Critical;
    acked.title = "Smith/Main is down (flapping)".into();
    acked.probable_cause = "power".into();
    acked.cause_kind = CauseKind::SitePower;
    acked.practices_affected = vec!["Smith".into()];
    acked.updated_at = at(10);
    acked.acknowledged_at = Some(at(10));
    acked.acknowledged_by = Some("alice".into());
    acked.last_notified_at = Some(at(5));
    acked.escalated_at = Some(at(9));
    acked.detail = json!({"agents": ["a1"], "n": 2});
    save(s, &acked).await;
    event(s, inc.id, "opened", "engine", at(0)).await;
    event(s, inc.id, "notified", "engine", at(5)).await;
    event(s, inc.id, "acknowledged", "alice", at(10)).await;
    let read = s.incident(&admin(), inc.id).await.unwrap();
    assert_eq!(read.incident, acked, "every saved field reads back");
    let kinds: Vec<(&str, &str, Option<&str>, DateTime<Utc>)> = read
        .timeline
        .iter()
        .map(|e| (e.kind.as_str(), e.actor.as_str(), e.channel.as_deref(), e.at))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("opened", "engine", None, at(0)),
            ("notified", "engine", Some("mail"), at(5)),
            ("acknowledged", "alice", None, at(10)),
        ]
    );
    assert!(read.timeline.iter().all(|e| e.incident_id == inc.id));
    assert_eq!(read.timeline[2].message, "acknowledged by alice");
    assert_eq!(read.children.iter().map(|c| c.id).collect::<Vec<_>>(), vec![child.id]);

    // Saving an incident that does not exist is NotFound.
    let mut ghost = acked.clone();
    ghost.id = 999_999;
    let mut tx = s.begin().await.unwrap();
    let err = tx.save_incident(&ghost).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { what: "incident", .. }), "{err}");
    drop(tx);

    // Queries: newest first, by state, source, top level, limit.
    let all = s.incidents(&admin(), &IncidentQuery::default()).await.unwrap();
    assert_eq!(
        all.iter().map(|i| i.id).collect::<Vec<_>>(),
        vec![lake.id, wide.id, child.id, inc.id]
    );
    let acked_only = IncidentQuery {
        states: vec![IncidentState::Acknowledged],
        ..IncidentQuery::default()
    };
    assert_eq!(
        s.incidents(&admin(), &acked_only)
            .await
            .unwrap()
            .iter()
            .map(|i| i.id)
            .collect::<Vec<_>>(),
        vec![inc.id]
    );
    let backups = IncidentQuery {
        source: Some("backup".into()),
        ..IncidentQuery::default()
    };
    assert_eq!(s.incidents(&admin(), &backups).await.unwrap().len(), 1);
    let top = IncidentQuery {
        top_level_only: true,
        limit: Some(2),
        ..IncidentQuery::default()
    };
    assert_eq!(
        s.incidents(&admin(), &top)
            .await
            .unwrap()
            .iter()
            .map(|i| i.id)
            .collect::<Vec<_>>(),
        vec![lake.id, wide.id]
    );

    // A practice manager sees their practice's incidents and the MSP-wide ones naming it.
    let seen = |v: Vec<Incident>| v.iter().map(|i| i.id).collect::<Vec<_>>();
    assert_eq!(
        seen(
            s.incidents(&manager(lakeside), &IncidentQuery::default())
                .await
                .unwrap()
        ),
        vec![lake.id, wide.id]
    );
    assert_eq!(
        seen(s.incidents(&manager(smith), &IncidentQuery::default()).await.unwrap()),
        vec![child.id, inc.id]
    );
    // Filters combine, the limit counts only what the caller may see, and the source is a
    // parameter, never SQL (issue 16: the filters, and for an MSP-wide view the limit, are
    // applied in SQL).
    let newest = IncidentQuery {
        limit: Some(1),
        ..IncidentQuery::default()
    };
    assert_eq!(
        seen(s.incidents(&manager(smith), &newest).await.unwrap()),
        vec![child.id]
    );
    assert_eq!(seen(s.incidents(&admin(), &newest).await.unwrap()), vec![lake.id]);
    let sites = IncidentQuery {
        source: Some("site_offline".into()),
        states: vec![IncidentState::Open, IncidentState::Acknowledged],
        limit: Some(20),
        ..IncidentQuery::default()
    };
    assert_eq!(seen(s.incidents(&admin(), &sites).await.unwrap()), vec![inc.id]);
    assert!(s.incidents(&manager(lakeside), &sites).await.unwrap().is_empty());
    let resolved_backups = IncidentQuery {
        source: Some("backup".into()),
        states: vec![IncidentState::Resolved],
        ..IncidentQuery::default()
    };
    assert!(s.incidents(&admin(), &resolved_backups).await.unwrap().is_empty());
    let injected = IncidentQuery {
        source: Some("x' OR '1'='1".into()),
        ..IncidentQuery::default()
    };
    assert!(s.incidents(&admin(), &injected).await.unwrap().is_empty());
    let hidden = s.incident(&manager(lakeside), inc.id).await.unwrap_err();
    assert!(matches!(hidden, StoreError::NotFound { .. }), "{hidden}");
    assert!(s.incident(&manager(lakeside), wide.id).await.is_ok());
    assert!(matches!(
        s.incident(&admin(), 424_242).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));

    // Active ones through a unit of work; resolving frees the key for a new incident.
    let mut tx = s.begin().await.unwrap();
    assert_eq!(
        tx.active_incident("site_offline", "Smith/Main")
            .await
            .unwrap()
            .map(|i| i.id),
        Some(inc.id)
    );
    assert_eq!(tx.active_incidents().await.unwrap().len(), 4);
    let mut resolved = tx.incident_by_id(inc.id).await.unwrap().unwrap();
    resolved.state = IncidentState::Resolved;
    resolved.resolved_at = Some(at(20));
    resolved.resolved_by = Some("engine".into());
    resolved.updated_at = at(20);
    tx.save_incident(&resolved).await.unwrap();
    assert_eq!(tx.active_incident("site_offline", "Smith/Main").await.unwrap(), None);
    let again = tx
        .open_incident(&new_incident("site_offline", "Smith/Main", Some("Smith")), at(30))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_ne!(again.id, inc.id);
    let old = s.incident(&admin(), inc.id).await.unwrap().incident;
    assert_eq!(old.state, IncidentState::Resolved, "history is kept");
    assert_eq!(old.resolved_at, Some(at(20)));
    assert_eq!(old.resolved_by.as_deref(), Some("engine"));
}

pub async fn outbox_items_are_due_in_order_and_saved(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let inc = open(s, &new_incident("ehr_vendor", "ehr.example", None), at(0))
        .await
        .unwrap();
    let other = open(s, &new_incident("ehr_vendor", "other.example", None), at(0))
        .await
        .unwrap();
    let mut tx = s.begin().await.unwrap();
    let item = |incident_id: i64, channel: &str, kind, status, due: i64| NewOutboxItem {
        incident_id,
        channel: channel.into(),
        kind,
        status,
        next_attempt_at: at(due),
    };
    let mut ids = Vec::new();
    for (incident, channel, kind, status, due, now) in [
        (inc.id, "mail", NotificationKind::Opened, OutboxStatus::Pending, 60, 1),
        (inc.id, "chat", NotificationKind::Opened, OutboxStatus::Pending, 30, 1),
        (inc.id, "page", NotificationKind::Opened, OutboxStatus::Silenced, 0, 2),
        (
            other.id,
            "mail",
            NotificationKind::Reminder,
            OutboxStatus::Pending,
            30,
            3,
        ),
    ] {
        ids.push(
            tx.enqueue_notification(&item(incident, channel, kind, status, due), at(now))
                .await
                .unwrap(),
        );
    }
    let [late, early, silenced, theirs] = ids[..] else {
        panic!("four ids: {ids:?}")
    };
    tx.commit().await.unwrap();

    let mut tx = s.begin().await.unwrap();
    assert!(
        tx.due_notifications(at(29), 10).await.unwrap().is_empty(),
        "nothing due yet"
    );
    let due = tx.due_notifications(at(30), 10).await.unwrap();
    assert_eq!(
        due.iter().map(|i| i.id).collect::<Vec<_>>(),
        vec![early, theirs],
        "due first, then by id; not-pending ones never"
    );
    assert_eq!(
        tx.due_notifications(at(100), 2)
            .await
            .unwrap()
            .iter()
            .map(|i| i.id)
            .collect::<Vec<_>>(),
        vec![early, theirs],
        "the limit holds"
    );
    let first = &due[0];
    assert_eq!(first.channel, "chat");
    assert_eq!(first.kind, NotificationKind::Opened);
    assert_eq!(first.status, OutboxStatus::Pending);
    assert_eq!(first.attempts, 0);
    assert_eq!(first.created_at, at(1));
    assert_eq!(first.finished_at, None);
    assert_eq!(due[1].kind, NotificationKind::Reminder);

    // A failed attempt is retried later; a delivered one is finished.
    let mut retry = first.clone();
    retry.attempts = 1;
    retry.last_error = Some("connection refused".into());
    retry.next_attempt_at = at(90);
    tx.save_notification(&retry).await.unwrap();
    let mut done = due[1].clone();
    done.attempts = 1;
    done.status = OutboxStatus::Delivered;
    done.finished_at = Some(at(31));
    tx.save_notification(&done).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = s.begin().await.unwrap();
    assert_eq!(
        tx.due_notifications(at(60), 10)
            .await
            .unwrap()
            .iter()
            .map(|i| i.id)
            .collect::<Vec<_>>(),
        vec![late]
    );
    let mine = tx.incident_notifications(inc.id).await.unwrap();
    assert_eq!(
        mine.iter().map(|i| i.id).collect::<Vec<_>>(),
        vec![late, early, silenced]
    );
    assert_eq!(mine[1], retry, "saved as written");
    assert_eq!(mine[2].status, OutboxStatus::Silenced);
    assert_eq!(
        mine[2].finished_at,
        Some(at(2)),
        "an item not pending is finished when enqueued"
    );
    assert_eq!(tx.incident_notifications(other.id).await.unwrap(), vec![done]);
    drop(tx);
    let detail = s.incident(&admin(), inc.id).await.unwrap();
    assert_eq!(detail.notifications, mine);
}

pub async fn alert_windows_are_created_and_replaced(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let mut tx = s.begin().await.unwrap();
    assert_eq!(tx.alert_window("ehr", "ehr.example").await.unwrap(), None);
    let w = AlertWindow {
        source: "ehr".into(),
        subject: "ehr.example".into(),
        results: "PPF".into(),
        failing: false,
        updated_at: at(1),
    };
    tx.save_alert_window(&w).await.unwrap();
    let w2 = AlertWindow {
        results: "PFFF".into(),
        failing: true,
        updated_at: at(2),
        ..w.clone()
    };
    tx.save_alert_window(&w2).await.unwrap();
    let other = AlertWindow {
        subject: "other.example".into(),
        ..w.clone()
    };
    tx.save_alert_window(&other).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = s.begin().await.unwrap();
    assert_eq!(tx.alert_window("ehr", "ehr.example").await.unwrap(), Some(w2));
    assert_eq!(tx.alert_window("ehr", "other.example").await.unwrap(), Some(other));
    assert_eq!(tx.alert_window("backup", "ehr.example").await.unwrap(), None);
}

pub async fn leases_are_held_renewed_and_taken_over_after_expiry(store: Arc<dyn Store>) {
    let s = store.as_ref();
    assert!(
        s.claim_lease("alert-engine", "one", at(30), at(0)).await.unwrap(),
        "free: taken"
    );
    assert!(
        !s.claim_lease("alert-engine", "two", at(40), at(10)).await.unwrap(),
        "held: refused"
    );
    assert!(
        s.claim_lease("alert-engine", "one", at(60), at(20)).await.unwrap(),
        "renewed by its holder"
    );
    assert!(
        !s.claim_lease("alert-engine", "two", at(70), at(59)).await.unwrap(),
        "still held after the renewal"
    );
    assert!(
        s.claim_lease("other-job", "two", at(70), at(59)).await.unwrap(),
        "leases are per name"
    );
    // "one" died: its lease moves once it expired.
    assert!(
        s.claim_lease("alert-engine", "two", at(90), at(60)).await.unwrap(),
        "expired: taken over"
    );
    assert!(
        !s.claim_lease("alert-engine", "one", at(100), at(61)).await.unwrap(),
        "the old holder lost it"
    );
    assert!(s.claim_lease("alert-engine", "two", at(120), at(80)).await.unwrap());
}

pub async fn concurrent_claims_of_a_lease_have_one_winner(store: Arc<dyn Store>) {
    let claims = (0..8).map(|n| {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.claim_lease("retention", &format!("c{n}"), at(30), at(0)).await })
    });
    let mut winners = 0;
    for c in claims {
        if c.await.unwrap().unwrap() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "exactly one of eight collectors holds the lease");
}

fn issued(id: &str, practice_id: i64, file: &str, issued_at: DateTime<Utc>) -> IssuedReport {
    IssuedReport {
        report_id: id.into(),
        practice_id,
        practice: "Smith".into(),
        period_from: NaiveDate::from_ymd_opt(2026, 10, 1).unwrap(),
        period_to: NaiveDate::from_ymd_opt(2026, 10, 31).unwrap(),
        format: "pdf".into(),
        content_sha256: "c".repeat(64),
        file_sha256: file.into(),
        size_bytes: 123_456,
        issued_at,
        issued_by: "schedule:monthly".into(),
        collector_version: "0.9.0".into(),
    }
}

pub async fn issued_reports_and_deliveries_are_kept_as_recorded(store: Arc<dyn Store>) {
    let s = store.as_ref();
    enroll_smith_and_lakeside(s).await;
    let smith = practice_id(s, "Smith").await;
    let lakeside = practice_id(s, "Lakeside").await;
    let later = issued("RR-00000000000000b2", smith, &"f".repeat(64), at(20));
    let first = issued("RR-00000000000000a1", smith, &"e".repeat(64), at(10));
    let mut same_file = issued("RR-00000000000000c3", lakeside, &"f".repeat(64), at(30));
    same_file.practice = "Lakeside".into();
    same_file.format = "csv".into();
    let mut tx = s.begin().await.unwrap();
    for r in [&later, &first, &same_file] {
        tx.record_issued_report(r).await.unwrap();
    }
    tx.commit().await.unwrap();

    assert_eq!(
        s.issued_report("RR-00000000000000a1").await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(s.issued_report("RR-unknown").await.unwrap(), None);
    assert_eq!(
        s.issued_reports_of_practice(smith).await.unwrap(),
        vec![first.clone(), later.clone()],
        "oldest first"
    );
    assert_eq!(
        s.issued_reports_by_file_hash(&"f".repeat(64)).await.unwrap(),
        vec![later.clone(), same_file]
    );
    // Ids are unique: a second record with the same id is refused.
    let mut tx = s.begin().await.unwrap();
    let err = tx.record_issued_report(&first).await.unwrap_err();
    assert_eq!(err.kind(), Some(DbErrorKind::Constraint), "{err}");
    drop(tx);

    let tries = [
        ReportDelivery {
            report_id: first.report_id.clone(),
            schedule: "monthly".into(),
            recipients: vec!["manager@smith.example".into(), "dr@smith.example".into()],
            attempted_at: at(11),
            delivered: false,
            detail: "421 try again later".into(),
        },
        ReportDelivery {
            report_id: first.report_id.clone(),
            schedule: "monthly".into(),
            recipients: vec!["manager@smith.example".into(), "dr@smith.example".into()],
            attempted_at: at(12),
            delivered: true,
            detail: "250 queued".into(),
        },
        ReportDelivery {
            report_id: later.report_id.clone(),
            schedule: "weekly".into(),
            recipients: vec!["it@smith.example".into()],
            attempted_at: at(21),
            delivered: true,
            detail: "250 ok".into(),
        },
    ];
    let mut tx = s.begin().await.unwrap();
    for d in tries.iter().rev() {
        tx.record_report_delivery(d).await.unwrap();
    }
    tx.commit().await.unwrap();
    assert_eq!(s.report_deliveries("monthly").await.unwrap(), tries[..2].to_vec());
    assert_eq!(s.report_deliveries("weekly").await.unwrap(), tries[2..].to_vec());
    assert!(s.report_deliveries("never").await.unwrap().is_empty());
}

fn backup(at: DateTime<Utc>, ok: bool) -> Observation {
    Observation {
        kind: "backup.status".into(),
        subject: "restic:/srv/backup".into(),
        observed_at: at,
        status: ObservationStatus::Ok,
        data: json!({"tool": "restic", "ok": ok, "last_success": at}),
        error: None,
    }
}

pub async fn report_history_reads_the_period_and_the_state_before_it(store: Arc<dyn Store>) {
    let s = store.as_ref();
    enroll_smith_and_lakeside(s).await;
    let smith = practice_id(s, "Smith").await;
    // Before the period, twice; within it, once; after it, once.
    for (seq, t, ok) in [(1u64, 0i64, true), (2, 100, false), (3, 1000, true), (4, 5000, false)] {
        ingest(s, "a1", seq, at(t), &[backup(at(t), ok)], at(t) + Duration::seconds(1))
            .await
            .unwrap();
    }
    ingest(s, "b1", 1, at(1000), &[backup(at(1000), false)], at(1001))
        .await
        .unwrap();
    let hist = s
        .agent_observation_history("a1", &["backup.status", "host"], at(500), at(4000))
        .await
        .unwrap();
    let seen: Vec<(u64, DateTime<Utc>, bool)> = hist
        .iter()
        .map(|o| {
            (
                o.sequence,
                o.observation.observed_at,
                o.observation.data["ok"] == json!(true),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![(2, at(100), false), (3, at(1000), true)],
        "the last before, then the period"
    );
    assert!(hist.iter().all(|o| o.agent_id == "a1" && !o.future_dated));
    assert_eq!(
        s.report_receipts("a1", at(500), at(5002)).await.unwrap(),
        vec![at(1001), at(5001)]
    );

    // The dashboard's history of a practice: the period only, oldest first, scoped.
    let dash = s
        .observation_history(&admin(), smith, "backup.status", at(0), at(1001))
        .await
        .unwrap();
    assert_eq!(dash.iter().map(|o| o.sequence).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(dash[1].observation.data["tool"], json!("restic"));
    let lakeside = practice_id(s, "Lakeside").await;
    let err = s
        .observation_history(&manager(lakeside), smith, "backup.status", at(0), at(1001))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { what: "practice", .. }), "{err}");
    let err = s
        .observation_history(&admin(), 987_654, "backup.status", at(0), at(1001))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { what: "practice", .. }), "{err}");
}

fn tamper(id: &str, path: &str, detected: DateTime<Utc>) -> TamperSeen {
    TamperSeen {
        tamper_id: id.into(),
        path: path.into(),
        kind: "truncated".into(),
        detected_at: detected,
        event: json!({"offset": 4096, "size_before": 8192, "size_after": 0}),
    }
}

pub async fn tamper_events_are_recorded_once_and_acknowledged_once(store: Arc<dyn Store>) {
    let s = store.as_ref();
    enroll_smith_and_lakeside(s).await;
    let err = s
        .note_tampers("ghost", &[tamper("t1", "/var/log/x", at(0))], at(1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { what: "agent", .. }), "{err}");
    s.note_tampers("a1", &[tamper("t1", "/var/log/audit/audit.log", at(0))], at(1))
        .await
        .unwrap();
    // Seen again with other details, and a new one: the first record stays.
    let mut changed = tamper("t1", "/elsewhere", at(5));
    changed.kind = "deleted".into();
    s.note_tampers("a1", &[changed, tamper("t2", "/var/log/auth.log", at(3))], at(6))
        .await
        .unwrap();
    let rows = s.tampers(&admin(), "a1").await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.tamper_id.as_str()).collect::<Vec<_>>(),
        vec!["t2", "t1"],
        "newest detected first"
    );
    assert_eq!(rows[1].path, "/var/log/audit/audit.log");
    assert_eq!(rows[1].kind, "truncated");
    assert_eq!(rows[1].detected_at, at(0));
    assert_eq!(rows[1].first_seen_at, at(1));
    assert_eq!(rows[1].event["size_before"], json!(8192));
    assert!(rows.iter().all(|r| r.acknowledged.is_none()));
    assert!(s.tampers(&admin(), "b1").await.unwrap().is_empty());
    let lakeside = practice_id(s, "Lakeside").await;
    assert!(matches!(
        s.tampers(&manager(lakeside), "a1").await.unwrap_err(),
        StoreError::NotFound { .. }
    ));

    let ack = TamperAck {
        by: "alice".into(),
        at: at(100),
        reason: "log rotation misconfigured, fixed in ticket 4711".into(),
    };
    let mut tx = s.begin().await.unwrap();
    let row = tx.acknowledge_tamper("a1", "t1", &ack).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(row.acknowledged.as_ref(), Some(&ack));
    assert_eq!(row.path, "/var/log/audit/audit.log");

    let second = TamperAck {
        by: "mallory".into(),
        at: at(200),
        reason: "nothing to see".into(),
    };
    let mut tx = s.begin().await.unwrap();
    let err = tx.acknowledge_tamper("a1", "t1", &second).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    drop(tx);
    let mut tx = s.begin().await.unwrap();
    let err = tx.acknowledge_tamper("a1", "t9", &second).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NotFound {
                what: "tamper event",
                ..
            }
        ),
        "{err}"
    );
    drop(tx);
    let mut tx = s.begin().await.unwrap();
    let err = tx.acknowledge_tamper("ghost", "t1", &second).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { what: "agent", .. }), "{err}");
    drop(tx);
    let rows = s.tampers(&admin(), "a1").await.unwrap();
    assert_eq!(
        rows[1].acknowledged.as_ref(),
        Some(&ack),
        "the first acknowledgement stays"
    );
    assert_eq!(rows[0].acknowledged, None);
}

pub async fn revocation_and_api_key_expiry(store: Arc<dyn Store>) {
    let s = store.as_ref();
    enroll(s, "Smith", "Main", "a1").await;
    let smith = practice_id(s, "Smith").await;
    assert!(!s.agent_auth("a1").await.unwrap().unwrap().revoked);
    assert!(s.revoke_agent("a1", at(10)).await.unwrap(), "revoked now");
    assert!(!s.revoke_agent("a1", at(20)).await.unwrap(), "revoked before");
    assert!(s.agent_auth("a1").await.unwrap().unwrap().revoked);
    assert!(matches!(
        s.revoke_agent("ghost", at(20)).await.unwrap_err(),
        StoreError::NotFound { what: "agent", .. }
    ));
    assert_eq!(
        s.agent(&admin(), "a1").await.unwrap().hostname,
        "host-a1",
        "its row stays"
    );

    let mut tx = s.begin().await.unwrap();
    let forever = tx
        .create_api_key_expiring(&hash_secret("k1"), Role::Technician, None, "ci", None, at(0))
        .await
        .unwrap();
    let expiring = tx
        .create_api_key_expiring(
            &hash_secret("k2"),
            Role::PracticeManager,
            Some("Smith"),
            "smith portal",
            Some(at(100)),
            at(1),
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_ne!(forever, expiring);
    let mut tx = s.begin().await.unwrap();
    let err = tx
        .create_api_key_expiring(
            &hash_secret("k3"),
            Role::PracticeManager,
            Some("Nowhere"),
            "x",
            None,
            at(2),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { what: "practice", .. }), "{err}");
    drop(tx);

    assert_eq!(
        s.api_key_valid(&hash_secret("k2"), at(99)).await.unwrap(),
        Some(rounds_collector::store::ApiKeyGrant {
            scope: manager(smith),
            label: "smith portal".into()
        })
    );
    assert_eq!(
        s.api_key_valid(&hash_secret("k2"), at(100)).await.unwrap(),
        None,
        "expired"
    );
    assert_eq!(s.api_key_valid(&hash_secret("nope"), at(0)).await.unwrap(), None);
    assert!(s.revoke_api_key(forever, at(50)).await.unwrap());
    assert!(!s.revoke_api_key(forever, at(60)).await.unwrap());
    assert!(matches!(
        s.revoke_api_key(424_242, at(60)).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
    assert_eq!(
        s.api_key_valid(&hash_secret("k1"), at(51)).await.unwrap(),
        None,
        "revoked"
    );
    let keys = s.api_keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].id, forever);
    assert_eq!(keys[0].label, "ci");
    assert_eq!(keys[0].role, Role::Technician);
    assert_eq!(keys[0].practice, None);
    assert_eq!(keys[0].revoked_at, Some(at(50)), "the first revocation's time stays");
    assert_eq!(keys[1].practice.as_deref(), Some("Smith"));
    assert_eq!(keys[1].created_at, at(1));
    assert_eq!(keys[1].expires_at, Some(at(100)));
    assert_eq!(keys[1].revoked_at, None);

    // Users: removal ends their sessions; the admin count follows.
    let bob = s.add_user("bob", "hash-b", Role::Admin, None, at(0)).await.unwrap();
    s.add_user("carol", "hash-c", Role::Admin, None, at(0)).await.unwrap();
    s.add_user("Alice", "hash-a", Role::PracticeManager, Some("Smith"), at(3))
        .await
        .unwrap();
    assert_eq!(s.admin_count().await.unwrap(), 2);
    s.create_session(&hash_secret("sess"), bob, "csrf", at(0), at(1000))
        .await
        .unwrap();
    assert!(s.session(&hash_secret("sess"), at(1)).await.unwrap().is_some());
    s.remove_user("bob").await.unwrap();
    assert!(s.session(&hash_secret("sess"), at(1)).await.unwrap().is_none());
    assert!(s.user("bob").await.unwrap().is_none());
    assert_eq!(s.admin_count().await.unwrap(), 1);
    assert!(matches!(
        s.remove_user("bob").await.unwrap_err(),
        StoreError::NotFound { what: "user", .. }
    ));
    let users = s.users().await.unwrap();
    assert_eq!(
        users
            .iter()
            .map(|u| (u.username.as_str(), u.role, u.practice.as_deref(), u.created_at))
            .collect::<Vec<_>>(),
        vec![
            ("Alice", Role::PracticeManager, Some("Smith"), at(3)),
            ("carol", Role::Admin, None, at(0)),
        ],
        "by name, in byte order"
    );
}

fn finding(rule: &str, status: Status) -> Finding {
    Finding {
        rule: rule.into(),
        title: format!("title of {rule}"),
        status,
        severity: Severity::Medium,
        citations: vec!["164.312(a)(1)".into()],
        partial_citations: Vec::new(),
        evidence: json!({"rule": rule}),
        message: format!("{rule} is {status}"),
        remediation: None,
        exception: None,
    }
}

pub async fn finding_briefs_cover_the_fleet_within_the_scope(store: Arc<dyn Store>) {
    let s = store.as_ref();
    enroll_smith_and_lakeside(s).await;
    let lakeside = practice_id(s, "Lakeside").await;
    let mut accepted = finding("r.enc", Status::Fail);
    accepted.severity = Severity::Critical;
    accepted.exception = Some(Exception {
        reason: "isolated imaging PC".into(),
        accepted_by: "Dr. Smith".into(),
        expires: NaiveDate::from_ymd_opt(2099, 1, 1).unwrap(),
        source: "practice.toml".into(),
    });
    s.replace_findings("a1", &[accepted, finding("r.fw", Status::Pass)], at(10))
        .await
        .unwrap();
    s.replace_findings("b1", &[finding("r.fw", Status::Error)], at(20))
        .await
        .unwrap();
    let mut all = s.finding_briefs(&admin()).await.unwrap();
    all.sort_by(|a, b| (&a.agent_id, &a.rule).cmp(&(&b.agent_id, &b.rule)));
    let seen: Vec<_> = all
        .iter()
        .map(|b| {
            (
                b.agent_id.as_str(),
                b.rule.as_str(),
                b.status,
                b.severity,
                b.accepted,
                b.status_since,
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("a1", "r.enc", Status::Fail, Severity::Critical, true, at(10)),
            ("a1", "r.fw", Status::Pass, Severity::Medium, false, at(10)),
            ("b1", "r.fw", Status::Error, Severity::Medium, false, at(20)),
        ]
    );
    let theirs = s.finding_briefs(&manager(lakeside)).await.unwrap();
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].agent_id, "b1");
    let nobody = Scope {
        role: Role::PracticeManager,
        practice_id: None,
    };
    assert!(s.finding_briefs(&nobody).await.unwrap().is_empty());
}

/// Every case of this module, run on one backend.
macro_rules! store_ext_suite {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;
            store_ext_suite!(@cases $make;
                incidents_open_acknowledge_resolve_and_keep_their_timeline,
                outbox_items_are_due_in_order_and_saved,
                alert_windows_are_created_and_replaced,
                leases_are_held_renewed_and_taken_over_after_expiry,
                concurrent_claims_of_a_lease_have_one_winner,
                issued_reports_and_deliveries_are_kept_as_recorded,
                report_history_reads_the_period_and_the_state_before_it,
                tamper_events_are_recorded_once_and_acknowledged_once,
                revocation_and_api_key_expiry,
                finding_briefs_cover_the_fleet_within_the_scope,
            );
        }
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (store, _keep) = $make;
                super::$case(store).await;
            }
        )*
    };
}

/// Every case of this module on PostgreSQL, each in a fresh schema, when
/// `ROUNDS_TEST_POSTGRES_URL` is set (said loudly when it is not).
macro_rules! store_ext_suite_pg {
    ($($case:ident),* $(,)?) => {
        mod postgres_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(store) = crate::support::pg_store().await else { return };
                    super::$case(store).await;
                }
            )*
        }
    };
}

fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = rounds_collector::store::sqlite::SqliteStore::open(&dir.path().join("rounds.db")).unwrap();
    (Arc::new(store), dir)
}

store_ext_suite!(sqlite_backend, sqlite());

store_ext_suite_pg!(
    incidents_open_acknowledge_resolve_and_keep_their_timeline,
    outbox_items_are_due_in_order_and_saved,
    alert_windows_are_created_and_replaced,
    leases_are_held_renewed_and_taken_over_after_expiry,
    concurrent_claims_of_a_lease_have_one_winner,
    issued_reports_and_deliveries_are_kept_as_recorded,
    report_history_reads_the_period_and_the_state_before_it,
    tamper_events_are_recorded_once_and_acknowledged_once,
    revocation_and_api_key_expiry,
    finding_briefs_cover_the_fleet_within_the_scope,
);
