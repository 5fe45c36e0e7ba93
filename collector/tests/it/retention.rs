//! Retention (issue 17): rollups and removal at the boundaries, the current state kept, records
//! older than `records_years` removed and younger kept, dry runs that change nothing, the lease
//! that lets one of two collectors run it, rollups carried by export and import, reports of a
//! period whose raw rows were removed, the storage page, the metrics, the `[retention]`
//! settings' errors and the report scheduler run once by two collectors. Store cases run on
//! SQLite and, when `ROUNDS_TEST_POSTGRES_URL` is set, on PostgreSQL; times on a `FakeClock`.

use std::sync::Arc;

use axum::http::{StatusCode, header};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use rounds_collector::alerting::{CauseKind, IncidentState, NewIncident, NewIncidentEvent};
use rounds_collector::clock::{Clock, FakeClock};
use rounds_collector::config::{Overrides, RetentionSettings, parse, validate};
use rounds_collector::retention::RetentionService;
use rounds_collector::store::sqlite::SqliteStore;
use rounds_collector::store::transfer::{self, Location};
use rounds_collector::store::{IssuedReport, ReportDelivery, Role, Store, StoredObservation};
use rounds_policies::{Finding, Severity, Status};
use rounds_protocol::{Observation, ObservationStatus};
use serde_json::json;

use crate::support::{TestApp, admin, body_text, enroll, ingest, ingest_each};

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// The clock of the store cases: on an hour boundary.
fn now() -> DateTime<Utc> {
    at("2026-06-01T12:00:00Z")
}

fn obs(kind: &str, subject: &str, n: i64, t: DateTime<Utc>) -> Observation {
    Observation {
        kind: kind.into(),
        subject: subject.into(),
        observed_at: t,
        status: ObservationStatus::Ok,
        data: json!({"n": n, "up": n % 2 == 0}),
        error: None,
    }
}

/// Stores each observation in a report of its own, sequences in the order given.
async fn store_all(store: &dyn Store, agent: &str, rows: &[Observation]) {
    ingest_each(store, agent, rows, now()).await;
}

/// Agent `a1` (Smith, Main) with three `ehr.probe` rows of subject `emr`, `n` 1..3, observed
/// 3, 2 and 1 days before `cutoff`.
async fn enroll_with_old_rows(store: &dyn Store, cutoff: DateTime<Utc>) {
    enroll(store, "Smith", "Main", "a1").await;
    store_all(
        store,
        "a1",
        &[
            obs("ehr.probe", "emr", 1, cutoff - Duration::days(3)),
            obs("ehr.probe", "emr", 2, cutoff - Duration::days(2)),
            obs("ehr.probe", "emr", 3, cutoff - Duration::days(1)),
        ],
    )
    .await;
}

fn service(store: &Arc<dyn Store>, clock: &Arc<FakeClock>, settings: RetentionSettings) -> RetentionService {
    RetentionService::new(Arc::clone(store), clock.clone(), settings).with_batch(1)
}

/// `(subject, n)` of observations, in order.
fn seen(rows: &[StoredObservation]) -> Vec<(String, i64)> {
    rows.iter()
        .map(|o| (o.observation.subject.clone(), o.observation.data["n"].as_i64().unwrap()))
        .collect()
}

async fn practice_id(store: &dyn Store) -> i64 {
    store.practices(&admin()).await.unwrap()[0].id
}

/// The raw rows of `kind` (the dashboard's history reads raw rows only).
async fn raw(store: &dyn Store, kind: &str) -> Vec<(String, i64)> {
    let p = practice_id(store).await;
    seen(
        &store
            .observation_history(
                &admin(),
                p,
                kind,
                at("2000-01-01T00:00:00Z"),
                at("2100-01-01T00:00:00Z"),
            )
            .await
            .unwrap(),
    )
}

pub async fn raw_observations_roll_up_at_the_hour_boundary_and_the_current_state_stays(store: Arc<dyn Store>) {
    let s = store.as_ref();
    enroll(s, "Smith", "Main", "a1").await;
    let cutoff = now() - Duration::days(30);
    let ms = Duration::milliseconds(1);
    store_all(
        s,
        "a1",
        &[
            obs("ehr.probe", "old", 1, cutoff - Duration::days(10)),
            obs("inventory", "x", 2, cutoff - Duration::days(5)),
            obs("inventory", "x", 3, cutoff - Duration::days(4)),
            obs("ehr.probe", "emr", 4, cutoff - Duration::hours(2)),
            obs("ehr.probe", "emr", 5, cutoff - ms),
            obs("ehr.probe", "emr", 6, cutoff),
            obs("ehr.probe", "emr", 7, now() - Duration::hours(1)),
        ],
    )
    .await;
    let kinds = ["ehr.probe", "inventory"];
    let (from, to) = (cutoff - Duration::hours(3), now());
    let before = s.agent_observation_history("a1", &kinds, from, to).await.unwrap();
    assert_eq!(
        seen(&before),
        vec![
            ("old".into(), 1),
            ("x".into(), 3),
            ("emr".into(), 4),
            ("emr".into(), 5),
            ("emr".into(), 6),
            ("emr".into(), 7)
        ]
    );
    let latest_before = s.latest_observations(&admin(), "a1", None).await.unwrap();

    let clock = Arc::new(FakeClock::new(now()));
    let retention = service(&store, &clock, RetentionSettings::default());
    let run = retention.run().await.unwrap();
    assert_eq!(run.cutoffs.observations_before, cutoff);
    assert_eq!(
        run.removed("observations"),
        3,
        "the rows before the cutoff that are not the newest of their subject: {run:?}"
    );
    assert_eq!(run.rollups_written, 3, "one hourly rollup per subject and hour");
    assert!(run.batches >= 3, "batches of one row: {run:?}");
    assert_eq!(
        raw(s, "ehr.probe").await,
        vec![("old".into(), 1), ("emr".into(), 6), ("emr".into(), 7)],
        "the row at the cutoff and the newest row of a subject, however old, stay raw"
    );
    assert_eq!(raw(s, "inventory").await, vec![("x".into(), 3)]);
    assert_eq!(
        s.latest_observations(&admin(), "a1", None).await.unwrap(),
        latest_before,
        "the current state is untouched"
    );
    let after = s.agent_observation_history("a1", &kinds, from, to).await.unwrap();
    assert_eq!(after, before, "the history reads the rollups of the removed rows");

    let again = retention.run().await.unwrap();
    assert_eq!(again.rolled_up() + again.records_removed(), 0, "{again:?}");
}

pub async fn hourly_rollups_older_than_hourly_days_become_daily(store: Arc<dyn Store>) {
    let s = store.as_ref();
    enroll(s, "Smith", "Main", "a1").await;
    let day = now() - Duration::days(90) - Duration::hours(12); // the cutoff day's first instant
    assert_eq!(day, at("2026-03-03T00:00:00Z"));
    store_all(
        s,
        "a1",
        &[
            obs("ehr.probe", "d", 1, day - Duration::hours(23)),
            obs("ehr.probe", "d", 2, day - Duration::hours(19)),
            obs("ehr.probe", "d", 3, day - Duration::hours(18)),
            obs("ehr.probe", "d", 4, day + Duration::hours(1)),
            obs("ehr.probe", "d", 5, now() - Duration::hours(1)),
        ],
    )
    .await;
    let (from, to) = (day - Duration::days(2), now());
    let before = s
        .agent_observation_history("a1", &["ehr.probe"], from, to)
        .await
        .unwrap();
    let clock = Arc::new(FakeClock::new(now()));
    let retention = service(&store, &clock, RetentionSettings::default());
    let first = retention.run().await.unwrap();
    assert_eq!(first.cutoffs.hourly_before, day);
    assert_eq!(first.removed("observations"), 4);
    assert_eq!(
        first.removed("observation_rollups"),
        0,
        "made hourly by this run: daily at the next"
    );
    let second = retention.run().await.unwrap();
    assert_eq!(
        second.removed("observation_rollups"),
        3,
        "the hours of the day before the cutoff, not the hour after it: {second:?}"
    );
    assert_eq!(
        second.rollups_written, 3,
        "batches of one row: three merges, into one daily rollup (the history below)"
    );
    let after = s
        .agent_observation_history("a1", &["ehr.probe"], from, to)
        .await
        .unwrap();
    assert_eq!(
        seen(&after),
        vec![("d".into(), 1), ("d".into(), 3), ("d".into(), 4), ("d".into(), 5)],
        "a daily rollup keeps the first and the last of its day"
    );
    assert_eq!(seen(&before).len(), 5);
    assert_eq!(retention.run().await.unwrap().removed("observation_rollups"), 0);
}

fn finding(rule: &str, status: Status) -> Finding {
    Finding {
        rule: rule.into(),
        title: format!("title of {rule}"),
        status,
        severity: Severity::High,
        citations: vec!["164.312(a)(1)".into()],
        partial_citations: Vec::new(),
        evidence: json!({"rule": rule}),
        message: format!("{rule} is {status}"),
        remediation: None,
        exception: None,
    }
}

fn incident(subject: &str) -> NewIncident {
    NewIncident {
        source: "site_offline".into(),
        subject: subject.into(),
        severity: Severity::High,
        title: format!("{subject} is down"),
        probable_cause: "the link".into(),
        cause_kind: CauseKind::SiteNetwork,
        practice: Some("Smith".into()),
        site: Some("Main".into()),
        agent_id: None,
        practices_affected: vec!["Smith".into()],
        parent_id: None,
        manual_resolve: false,
        detail: json!({}),
    }
}

/// Opens an incident at `opened`, with a note, resolved at `resolved` when given; its id.
async fn incident_at(store: &dyn Store, subject: &str, opened: DateTime<Utc>, resolved: Option<DateTime<Utc>>) -> i64 {
    let mut tx = store.begin().await.unwrap();
    let mut inc = tx.open_incident(&incident(subject), opened).await.unwrap();
    tx.incident_event(inc.id, &NewIncidentEvent::engine("note", "noted"), opened)
        .await
        .unwrap();
    if let Some(r) = resolved {
        inc.state = IncidentState::Resolved;
        inc.resolved_at = Some(r);
        inc.resolved_by = Some("engine".into());
        inc.updated_at = r;
        tx.save_incident(&inc).await.unwrap();
    }
    tx.commit().await.unwrap();
    inc.id
}

fn issued(id: &str, practice_id: i64, t: DateTime<Utc>) -> IssuedReport {
    IssuedReport {
        report_id: id.into(),
        practice_id,
        practice: "Smith".into(),
        period_from: NaiveDate::from_ymd_opt(2027, 1, 1).unwrap(),
        period_to: NaiveDate::from_ymd_opt(2027, 1, 31).unwrap(),
        format: "pdf".into(),
        content_sha256: "c".repeat(64),
        file_sha256: format!("{id:0>64}"),
        size_bytes: 10,
        issued_at: t,
        issued_by: "cli".into(),
        collector_version: "0.1.0".into(),
    }
}

pub async fn records_older_than_records_years_are_removed_and_younger_kept(store: Arc<dyn Store>) {
    let s = store.as_ref();
    enroll(s, "Smith", "Main", "a1").await;
    let p = practice_id(s).await;
    let now = at("2033-06-01T12:00:00Z");
    let old = at("2027-01-01T00:00:00Z");
    let recent = at("2030-01-01T00:00:00Z");
    let cutoff = at("2027-06-01T12:00:00Z");
    // R1 changed twice long ago and again recently; R2's only change, long ago, is in force.
    s.replace_findings("a1", &[finding("r1", Status::Fail), finding("r2", Status::Pass)], old)
        .await
        .unwrap();
    s.replace_findings(
        "a1",
        &[finding("r1", Status::Pass), finding("r2", Status::Pass)],
        old + Duration::days(1),
    )
    .await
    .unwrap();
    s.replace_findings(
        "a1",
        &[finding("r1", Status::Fail), finding("r2", Status::Pass)],
        recent,
    )
    .await
    .unwrap();
    let findings_before = s.findings(&admin(), "a1").await.unwrap();
    let gone = incident_at(s, "Smith/Old", old, Some(old + Duration::hours(1))).await;
    let still_open = incident_at(s, "Smith/Open", old, None).await;
    let resolved_late = incident_at(s, "Smith/Late", old, Some(cutoff + Duration::days(1))).await;
    let mut tx = s.begin().await.unwrap();
    tx.record_issued_report(&issued("RR-old", p, old)).await.unwrap();
    tx.record_issued_report(&issued("RR-new", p, recent)).await.unwrap();
    tx.record_report_delivery(&ReportDelivery {
        report_id: "RR-old".into(),
        schedule: "monthly".into(),
        recipients: vec!["m@smith.example".into()],
        attempted_at: old,
        delivered: true,
        detail: "sent".into(),
    })
    .await
    .unwrap();
    tx.audit("cli", "test.old", "long ago", cutoff - Duration::milliseconds(1))
        .await
        .unwrap();
    tx.audit("cli", "test.boundary", "at the cutoff", cutoff).await.unwrap();
    tx.commit().await.unwrap();

    let clock = Arc::new(FakeClock::new(now));
    let retention = service(&store, &clock, RetentionSettings::default());
    let preview = retention.preview().await.unwrap();
    let run = retention.run().await.unwrap();
    assert_eq!(run.cutoffs.records_before, cutoff, "six calendar years");
    assert_eq!(run.removed, preview.removed, "the dry run counted what the run removed");
    assert_eq!(run.removed("finding_changes"), 2, "{run:?}");
    assert_eq!(run.removed("incidents"), 1);
    assert_eq!(run.removed("incident_events"), preview.removed("incident_events"));
    assert!(run.removed("incident_events") >= 1);
    assert_eq!(
        (run.removed("issued_reports"), run.removed("report_deliveries")),
        (1, 1)
    );
    assert_eq!(run.removed("audit_log"), 1);

    assert_eq!(
        s.findings(&admin(), "a1").await.unwrap(),
        findings_before,
        "current findings stay"
    );
    let at_now: Vec<(String, Status)> = s
        .findings_at(&admin(), "a1", now)
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.rule, f.status))
        .collect();
    assert_eq!(
        at_now,
        vec![("r1".into(), Status::Fail), ("r2".into(), Status::Pass)],
        "the change in force of each rule stays, however old"
    );
    assert!(
        s.incident(&admin(), gone).await.is_err(),
        "resolved before the cutoff: removed"
    );
    assert!(s.incident(&admin(), still_open).await.is_ok(), "an open incident stays");
    assert!(
        s.incident(&admin(), resolved_late).await.is_ok(),
        "resolved after the cutoff: stays"
    );
    assert!(s.issued_report("RR-old").await.unwrap().is_none());
    assert!(s.issued_report("RR-new").await.unwrap().is_some());
    assert!(s.report_deliveries("monthly").await.unwrap().is_empty());
    let audit: Vec<String> = s
        .audit_entries(100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(!audit.contains(&"test.old".to_string()), "{audit:?}");
    assert!(audit.contains(&"test.boundary".to_string()), "{audit:?}");
    assert!(
        audit.contains(&"retention.run".to_string()),
        "the run is audited: {audit:?}"
    );
}

pub async fn a_dry_run_changes_nothing(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let cutoff = now() - Duration::days(30);
    enroll_with_old_rows(s, cutoff).await;
    s.audit("cli", "test.old", "long ago", at("2019-01-01T00:00:00Z"))
        .await
        .unwrap();
    let clock = Arc::new(FakeClock::new(now()));
    let retention = service(&store, &clock, RetentionSettings::default());
    let first = retention.preview().await.unwrap();
    assert!(first.dry_run);
    assert_eq!(first.removed("observations"), 2);
    assert_eq!(first.removed("audit_log"), 1);
    assert_eq!(retention.preview().await.unwrap(), first, "nothing changed");
    assert_eq!(raw(s, "ehr.probe").await.len(), 3);
    assert_eq!(s.audit_entries(10).await.unwrap().len(), 1);
    let run = retention.run().await.unwrap();
    assert_eq!(run.removed, first.removed);
}

macro_rules! retention_suite {
    ($backend:ident, $make:expr) => {
        mod $backend {
            #[allow(unused_imports)]
            use super::*;
            retention_suite!(@cases $make;
                raw_observations_roll_up_at_the_hour_boundary_and_the_current_state_stays,
                hourly_rollups_older_than_hourly_days_become_daily,
                records_older_than_records_years_are_removed_and_younger_kept,
                a_dry_run_changes_nothing,
            );
        }
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some((store, _keep)) = $make.await else {
                    return;
                };
                super::$case(store).await;
            }
        )*
    };
}

fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("rounds.db")).unwrap();
    (Arc::new(store), dir)
}

retention_suite!(sqlite_backend, async { Some(sqlite()) });
retention_suite!(postgres_backend, async {
    crate::support::pg_store().await.map(|s| (s, ()))
});

// --- Two collectors on one database ---

/// Two stores on one database, as two collectors have: two SQLite connections to one file, or
/// two PostgreSQL pools on one schema (when `ROUNDS_TEST_POSTGRES_URL` is set).
async fn two_stores(postgres: bool) -> Option<(Arc<dyn Store>, Arc<dyn Store>, Option<tempfile::TempDir>)> {
    if postgres {
        let url = crate::support::pg_schema().await?;
        let a: Arc<dyn Store> = Arc::new(rounds_collector::store::postgres::PgStore::open(&url).await.unwrap());
        let b: Arc<dyn Store> = Arc::new(rounds_collector::store::postgres::PgStore::open(&url).await.unwrap());
        return Some((a, b, None));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rounds.db");
    let a: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let b: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    Some((a, b, Some(dir)))
}

async fn a_second_collector_does_nothing_while_the_first_holds_the_lease(postgres: bool) {
    let Some((a, b, _keep)) = two_stores(postgres).await else {
        return;
    };
    let cutoff = now() - Duration::days(30);
    enroll_with_old_rows(a.as_ref(), cutoff).await;
    let clock = Arc::new(FakeClock::new(now()));
    let first = service(&a, &clock, RetentionSettings::default());
    let second = service(&b, &clock, RetentionSettings::default());
    let hour = std::time::Duration::from_secs(3600);
    let ran = first
        .run_leased("collector-a", hour)
        .await
        .unwrap()
        .expect("a holds the lease");
    assert_eq!(ran.removed("observations"), 2);

    // An old row and a newer one; the second collector's tick within the lease does nothing.
    for (seq, t) in [(10, cutoff - Duration::hours(5)), (11, now() - Duration::hours(1))] {
        ingest(
            b.as_ref(),
            "a1",
            seq,
            t,
            &[obs("ehr.probe", "emr", seq as i64, t)],
            now(),
        )
        .await
        .unwrap();
    }
    clock.advance(Duration::minutes(30));
    assert!(
        second.run_leased("collector-b", hour).await.unwrap().is_none(),
        "a holds the lease"
    );
    assert_eq!(
        second.preview().await.unwrap().removed("observations"),
        2,
        "nothing was removed"
    );
    // The first renews its own lease; once it stops renewing, the second takes over.
    let renewed = first.run_leased("collector-a", hour).await.unwrap();
    assert_eq!(renewed.map(|r| r.removed("observations")), Some(2));
    clock.advance(Duration::minutes(61));
    let took = second.run_leased("collector-b", hour).await.unwrap();
    assert_eq!(took.map(|r| r.removed("observations")), Some(0), "a already removed it");
    assert!(
        first.run_leased("collector-a", hour).await.unwrap().is_none(),
        "b holds it now"
    );
}

#[tokio::test]
async fn sqlite_second_collector_does_nothing_while_the_first_holds_the_lease() {
    a_second_collector_does_nothing_while_the_first_holds_the_lease(false).await;
}

#[tokio::test]
async fn postgres_second_collector_does_nothing_while_the_first_holds_the_lease() {
    a_second_collector_does_nothing_while_the_first_holds_the_lease(true).await;
}

async fn two_schedulers_send_a_due_report_once(postgres: bool) {
    use rounds_collector::reports::schedule::{ReportScheduler, Schedule, parse_cron};
    use rounds_collector::reports::{Format, RelativePeriod, ReportService};
    let Some((a, b, _keep)) = two_stores(postgres).await else {
        return;
    };
    enroll(a.as_ref(), "Smith", "Main", "a1").await;
    let clock = Arc::new(FakeClock::new(at("2026-12-01T06:59:00Z")));
    let schedule = Schedule {
        name: "smith-monthly".into(),
        practice: "Smith".into(),
        cron_text: "0 7 1 * *".into(),
        cron: parse_cron("0 7 1 * *").unwrap(),
        period: RelativePeriod::PreviousMonth,
        format: Format::Csv,
        recipients: vec!["manager@smith.example".into()],
    };
    let pack = Arc::new(rounds_policies::Pack::builtin().unwrap());
    let scheduler = |store: &Arc<dyn Store>| {
        ReportScheduler::new(
            ReportService::new(Arc::clone(store), Arc::clone(&pack), clock.clone()),
            Arc::clone(store),
            None,
            clock.clone(),
            vec![schedule.clone()],
        )
    };
    let (one, two) = (scheduler(&a), scheduler(&b));
    clock.set(at("2026-12-01T07:00:20Z"));
    let (r1, r2) = futures_util::future::join(one.tick(), two.tick()).await;
    assert_eq!(
        r1.len() + r2.len(),
        1,
        "one collector runs the due report: {r1:?} {r2:?}"
    );
    clock.set(at("2026-12-01T07:05:00Z"));
    let (r1, r2) = futures_util::future::join(one.tick(), two.tick()).await;
    assert!(r1.is_empty() && r2.is_empty());
    assert_eq!(
        a.report_deliveries("smith-monthly").await.unwrap().len(),
        1,
        "attempted once"
    );
    let p = practice_id(a.as_ref()).await;
    assert_eq!(b.issued_reports_of_practice(p).await.unwrap().len(), 1, "issued once");
}

#[tokio::test]
async fn sqlite_two_schedulers_send_a_due_report_once() {
    two_schedulers_send_a_due_report_once(false).await;
}

#[tokio::test]
async fn postgres_two_schedulers_send_a_due_report_once() {
    two_schedulers_send_a_due_report_once(true).await;
}

// --- Export and import carry the rollups ---

#[tokio::test]
async fn export_and_import_carry_the_rollups() {
    let (store, dir) = sqlite();
    let cutoff = now() - Duration::days(30);
    enroll_with_old_rows(store.as_ref(), cutoff).await;
    let clock = Arc::new(FakeClock::new(now()));
    assert_eq!(
        service(&store, &clock, RetentionSettings::default())
            .run()
            .await
            .unwrap()
            .removed("observations"),
        2
    );
    let (from, to) = (cutoff - Duration::days(10), now());
    let history = store
        .agent_observation_history("a1", &["ehr.probe"], from, to)
        .await
        .unwrap();
    assert_eq!(seen(&history).len(), 3);
    drop(store);
    let source = Location::Sqlite(dir.path().join("rounds.db"));
    let file = dir.path().join("export.jsonl");
    transfer::export(&source, &file, now()).await.unwrap();
    let rollups = |counts: Vec<(String, u64)>| counts.into_iter().find(|(t, _)| t == "observation_rollups");
    let exported = rollups(transfer::table_counts(&source).await.unwrap());
    assert_eq!(exported, Some(("observation_rollups".into(), 2)));

    let target_dir = tempfile::tempdir().unwrap();
    let target = target_dir.path().join("rounds.db");
    transfer::import(&Location::Sqlite(target.clone()), &file, false)
        .await
        .unwrap();
    assert_eq!(
        rollups(transfer::table_counts(&Location::Sqlite(target.clone())).await.unwrap()),
        exported
    );
    let copy = SqliteStore::open(&target).unwrap();
    assert_eq!(
        copy.agent_observation_history("a1", &["ehr.probe"], from, to)
            .await
            .unwrap(),
        history
    );

    if let Some(url) = crate::support::pg_schema().await {
        let pg = Location::Postgres(url.clone());
        transfer::import(&pg, &file, false).await.unwrap();
        assert_eq!(rollups(transfer::table_counts(&pg).await.unwrap()), exported);
        let store = rounds_collector::store::postgres::PgStore::open(&url).await.unwrap();
        assert_eq!(
            store
                .agent_observation_history("a1", &["ehr.probe"], from, to)
                .await
                .unwrap(),
            history
        );
    }
}

// --- Reports across retention ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_of_a_period_older_than_30_days_reads_the_rollups() {
    use crate::reports::{SMITH, november, seeded, service as report_service};
    let app = seeded().await;
    let s = report_service(&app);
    let smith = s.practice(SMITH).await.unwrap();
    let before = s.content(&smith, november()).await.unwrap();
    assert!(
        before.incidents.iter().any(|i| i.kind == "EHR outage"),
        "the seeded month has an EHR outage"
    );
    let p = smith.id;
    let (nov, dec) = (at("2026-11-01T00:00:00Z"), at("2026-12-01T00:00:00Z"));
    let raw_before = app
        .store()
        .observation_history(&admin(), p, "ehr.probe", nov, dec)
        .await
        .unwrap()
        .len();
    // Forty days after November: its raw observations are past observations_days.
    app.clock.set(at("2027-01-10T00:00:00Z"));
    let run = RetentionService::new(
        Arc::clone(&app.state.store),
        app.state.clock.clone(),
        RetentionSettings::default(),
    )
    .run()
    .await
    .unwrap();
    assert!(
        run.removed("observations") > 0,
        "November's raw rows were removed: {run:?}"
    );
    let raw_left = app
        .store()
        .observation_history(&admin(), p, "ehr.probe", nov, dec)
        .await
        .unwrap()
        .len();
    assert!(
        raw_before > 3 && raw_left <= 3,
        "of {raw_before} raw EHR probe rows, at most the current one per machine stays: {raw_left}"
    );
    let after = s.content(&smith, november()).await.unwrap();
    assert_eq!(after, before, "the report says the same, from the rollups");
}

// --- The storage page and the metrics ---

#[tokio::test]
async fn the_storage_page_is_for_admins_and_lists_the_tables() {
    use crate::web::{get, session, user};
    let app = TestApp::new();
    user(&app, "admin", Role::Admin, None).await;
    user(&app, "tech", Role::Technician, None).await;
    let tech = session(&app, "tech").await;
    let resp = app
        .send(get("/admin/storage", &[("rounds_session", tech.as_str())]))
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let body = body_text(resp).await;
    assert!(!body.contains("observation_rollups"));
    let admin = session(&app, "admin").await;
    let resp = app
        .send(get("/admin/storage", &[("rounds_session", admin.as_str())]))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = body_text(resp).await;
    for table in ["observations", "observation_rollups", "audit_log", "finding_changes"] {
        assert!(body.contains(&format!("<code>{table}</code>")), "{table}: {body}");
    }
    assert!(body.contains("SQLite dbstat"), "the bundled SQLite has dbstat: {body}");
    assert!(body.contains("kept 30 days"), "{body}");
    assert!(
        body.contains(r#"href="/admin/storage""#),
        "linked in the admin navigation"
    );
    let report = app.store().storage().await.unwrap();
    assert!(report.total_bytes > 0);
    assert!(report.tables.iter().all(|t| t.bytes.is_some()));
}

#[tokio::test]
async fn postgres_storage_is_measured_per_table() {
    let Some(store) = crate::support::pg_store().await else {
        return;
    };
    let report = store.storage().await.unwrap();
    assert!(report.method.contains("pg_total_relation_size"));
    let rollups = report.tables.iter().find(|t| t.table == "observation_rollups").unwrap();
    assert!(rollups.bytes.is_some_and(|b| b > 0), "{rollups:?}");
    assert!(report.total_bytes > 0);
}

#[tokio::test]
async fn metrics_count_what_retention_did() {
    let app = TestApp::new();
    let store = Arc::clone(&app.state.store);
    let cutoff = now() - Duration::days(30);
    enroll_with_old_rows(store.as_ref(), cutoff).await;
    store
        .audit("cli", "test.old", "long ago", at("2019-01-01T00:00:00Z"))
        .await
        .unwrap();
    app.clock.set(now());
    RetentionService::new(store, app.clock.clone(), RetentionSettings::default())
        .with_metrics(Arc::clone(&app.state.metrics))
        .run()
        .await
        .unwrap();
    let req = axum::http::Request::get("/metrics")
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", crate::support::METRICS_TOKEN),
        )
        .body(axum::body::Body::empty())
        .unwrap();
    let metrics = body_text(app.send(req).await).await;
    assert!(metrics.contains("rounds_retention_rows_rolled_up_total 2"), "{metrics}");
    assert!(metrics.contains("rounds_retention_rows_removed_total 1"), "{metrics}");
    assert!(
        metrics.contains(&format!(
            "rounds_retention_last_run_timestamp_seconds {}",
            now().timestamp()
        )),
        "{metrics}"
    );
    assert!(metrics.contains("# TYPE rounds_retention_last_run_timestamp_seconds gauge"));
}

// --- The `retention run` command ---

#[tokio::test]
async fn cli_prints_what_a_dry_run_would_remove_and_what_a_run_removed() {
    let dir = tempfile::tempdir().unwrap();
    let real_now = chrono::DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap();
    {
        let store = SqliteStore::open(&dir.path().join("rounds.db")).unwrap();
        enroll(&store, "Smith", "Main", "a1").await;
        let rows: Vec<Observation> = [45, 44, 43]
            .into_iter()
            .enumerate()
            .map(|(i, days)| obs("ehr.probe", "emr", i as i64, real_now - Duration::days(days)))
            .collect();
        ingest_each(&store, "a1", &rows, real_now).await;
    }
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rounds-collector"))
            .arg("--data-dir")
            .arg(dir.path())
            .env_remove("ROUNDS_DATABASE_URL")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let dry = cli(&["retention", "run", "--dry-run"]);
    assert!(dry.contains("retention dry run at"), "{dry}");
    assert!(dry.contains("observations: would remove 2 (raw observations"), "{dry}");
    assert!(dry.contains("audit_log: would remove 0"), "{dry}");
    assert!(
        cli(&["retention", "run", "--dry-run"]).contains("observations: would remove 2"),
        "unchanged"
    );
    let run = cli(&["retention", "run"]);
    assert!(run.contains("observations: removed 2 (raw observations"), "{run}");
    assert!(run.contains("rollup rows written: 2"), "{run}");
    assert!(cli(&["retention", "run", "--dry-run"]).contains("observations: would remove 0"));
}

// --- `[retention]` settings ---

fn settings(text: &str) -> Result<RetentionSettings, String> {
    let file = std::path::Path::new("collector.toml");
    parse(text, file)
        .and_then(|raw| validate(raw, &Overrides::default(), Some(file)))
        .map(|s| s.retention)
        .map_err(|e| e.to_string())
}

#[test]
fn retention_settings_default_and_their_errors_name_the_setting() {
    let d = settings("").unwrap();
    assert_eq!(
        (
            d.observations_days,
            d.hourly_days,
            d.records_years,
            d.interval.as_secs()
        ),
        (30, 90, 6, 3600)
    );
    let s = settings("[retention]\nobservations_days = 7\nhourly_days = 14\ninterval_minutes = 15\n").unwrap();
    assert_eq!((s.observations_days, s.hourly_days, s.interval.as_secs()), (7, 14, 900));

    let err = settings("[retention]\nrecords_years = 5\n").unwrap_err();
    assert!(err.contains("collector.toml: retention.records_years: 5"), "{err}");
    assert!(err.contains("HIPAA 164.316(b)(2)(i)"), "{err}");
    assert!(err.contains("records_below_hipaa_minimum = true"), "{err}");
    let s = settings("[retention]\nrecords_years = 5\nrecords_below_hipaa_minimum = true\n").unwrap();
    assert_eq!(s.records_years, 5);

    let err = settings("[retention]\nobservations_days = 0\ninterval_minutes = 0\n").unwrap_err();
    assert!(
        err.contains("retention.observations_days: 0 must be between 1"),
        "{err}"
    );
    assert!(err.contains("retention.interval_minutes: 0 must be between 1"), "{err}");
    let err = settings("[retention]\nobservations_days = 120\n").unwrap_err();
    assert!(
        err.contains("retention.hourly_days: 90 is less than observations_days (120)"),
        "{err}"
    );
    let err = settings("[retention]\nobservation_days = 3\n").unwrap_err();
    assert!(
        err.contains("collector.toml:2") && err.contains("observation_days"),
        "{err}"
    );
}

#[test]
fn the_clock_is_what_a_run_reads() {
    // The service reads its clock, never the wall clock: a FakeClock far in the future moves
    // every cutoff with it.
    let clock = Arc::new(FakeClock::new(at("2040-01-01T00:30:00Z")));
    let (store, _dir) = sqlite();
    let s = RetentionService::new(store, clock.clone(), RetentionSettings::default());
    let c = s.cutoffs(clock.now());
    assert_eq!(c.observations_before, at("2039-12-02T00:00:00Z"));
    assert_eq!(c.hourly_before, at("2039-10-03T00:00:00Z"));
    assert_eq!(c.records_before, at("2034-01-01T00:30:00Z"));
}
