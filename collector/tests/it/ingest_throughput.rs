//! Ingest throughput (core, issue 7): what the faster write path changed, on both backends.
//!
//! - The time of an agent's last evaluation is one row per agent (migration 0014): an
//!   evaluation that changes nothing no longer rewrites the agent's finding rows, and readers
//!   still see every current finding evaluated at the agent's last evaluation; a database
//!   migrated from version 13 keeps the times its rows had.
//! - A delivery reads the evaluation's input with it (`Store::deliver_reports_and_read`), and
//!   the evaluator holds the agent's evaluation lock from before the delivery to the findings.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use rounds_collector::store::sqlite::SqliteStore;
use rounds_collector::store::{Delivery, FindingRow, IncomingReport, Role, Scope, Store};
use rounds_policies::Status;
use rounds_protocol::Report;

use crate::group_commit::report;
use crate::store::{at, finding};
use crate::support::enroll;

fn admin() -> Scope {
    Scope {
        role: Role::Admin,
        practice_id: None,
    }
}

/// Replaces an agent's findings with `statuses` at `t`, as an evaluation does.
async fn evaluate(store: &dyn Store, agent_id: &str, statuses: &[(&str, Status)], t: DateTime<Utc>) {
    let findings: Vec<_> = statuses.iter().map(|(rule, s)| finding(rule, *s)).collect();
    store.replace_findings(agent_id, &findings, t).await.unwrap();
}

/// (rule, evaluated_at, status_since) of an agent's current findings, through the store.
async fn times(store: &dyn Store, agent_id: &str) -> Vec<(String, DateTime<Utc>, DateTime<Utc>)> {
    let rows: Vec<FindingRow> = store.findings(&admin(), agent_id).await.unwrap();
    rows.into_iter()
        .map(|f| (f.rule, f.evaluated_at, f.status_since))
        .collect()
}

/// What the tables hold under the store: the `evaluated_at` of each finding row of an agent
/// (by rule) and the agent's row of `agent_evaluations`, in milliseconds.
type Raw = (Vec<(String, i64)>, Option<i64>);

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Two agents evaluated, then one of them again without a change, then with one: the time is
/// written once per agent, the unchanged finding rows are not rewritten, and every current
/// finding reads the agent's last evaluation.
async fn evaluation_time_case(store: Arc<dyn Store>, raw: impl AsyncFn(&str) -> Raw) {
    enroll(store.as_ref(), "P", "S", "a1").await;
    enroll(store.as_ref(), "P", "S", "a2").await;
    let both = [("r.a", Status::Pass), ("r.b", Status::Fail)];
    evaluate(store.as_ref(), "a1", &both, at(0)).await;
    evaluate(store.as_ref(), "a2", &[("r.a", Status::Pass)], at(0)).await;
    evaluate(store.as_ref(), "a1", &both, at(3600)).await;
    assert_eq!(
        times(store.as_ref(), "a1").await,
        vec![
            ("r.a".to_string(), at(3600), at(0)),
            ("r.b".to_string(), at(3600), at(0))
        ],
        "every current finding was evaluated at the last evaluation"
    );
    assert_eq!(
        times(store.as_ref(), "a2").await,
        vec![("r.a".to_string(), at(0), at(0))],
        "another agent's evaluation time does not move"
    );
    assert_eq!(
        raw("a1").await,
        (
            vec![("r.a".to_string(), ms(at(0))), ("r.b".to_string(), ms(at(0)))],
            Some(ms(at(3600)))
        ),
        "an evaluation that changed nothing writes one row for the agent, not its findings"
    );
    assert_eq!(raw("a2").await, (vec![("r.a".to_string(), ms(at(0)))], Some(ms(at(0)))));

    // r.b is fixed: its row is rewritten; r.a's is not, and still reads the new time.
    evaluate(
        store.as_ref(),
        "a1",
        &[("r.a", Status::Pass), ("r.b", Status::Pass)],
        at(7200),
    )
    .await;
    assert_eq!(
        times(store.as_ref(), "a1").await,
        vec![
            ("r.a".to_string(), at(7200), at(0)),
            ("r.b".to_string(), at(7200), at(7200))
        ]
    );
    assert_eq!(
        raw("a1").await,
        (
            vec![("r.a".to_string(), ms(at(0))), ("r.b".to_string(), ms(at(7200)))],
            Some(ms(at(7200)))
        )
    );
    // A finding retired and one appearing: still one time for the agent.
    evaluate(store.as_ref(), "a1", &[("r.c", Status::Fail)], at(9000)).await;
    assert_eq!(
        times(store.as_ref(), "a1").await,
        vec![("r.c".to_string(), at(9000), at(9000))]
    );
}

fn sqlite_raw(path: &std::path::Path, agent_id: &str) -> Raw {
    let conn = rusqlite::Connection::open(path).unwrap();
    let rows = conn
        .prepare("SELECT rule, evaluated_at FROM findings WHERE agent_id = ?1 ORDER BY rule")
        .unwrap()
        .query_map([agent_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let agent = conn
        .query_row(
            "SELECT evaluated_at FROM agent_evaluations WHERE agent_id = ?1",
            [agent_id],
            |r| r.get(0),
        )
        .ok();
    (rows, agent)
}

async fn postgres_raw(client: &tokio_postgres::Client, agent_id: &str) -> Raw {
    let rows = client
        .query(
            "SELECT rule, evaluated_at FROM findings WHERE agent_id = $1 ORDER BY rule",
            &[&agent_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let agent = client
        .query_opt(
            "SELECT evaluated_at FROM agent_evaluations WHERE agent_id = $1",
            &[&agent_id],
        )
        .await
        .unwrap()
        .map(|r| r.get(0));
    (rows, agent)
}

async fn pg_client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

#[tokio::test]
async fn sqlite_keeps_the_evaluation_time_once_per_agent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rounds.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    evaluation_time_case(store, async |agent_id: &str| sqlite_raw(&path, agent_id)).await;
}

#[tokio::test]
async fn postgres_keeps_the_evaluation_time_once_per_agent() {
    let Some(url) = crate::support::pg_schema().await else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(rounds_collector::store::postgres::PgStore::open(&url).await.unwrap());
    let client = pg_client(&url).await;
    evaluation_time_case(store, async |agent_id: &str| postgres_raw(&client, agent_id).await).await;
}

/// What a version-13 database held: every finding row of an agent moved to the time of its
/// last evaluation (here `at(3600)`; the row of `r.b` written then, `r.a`'s earlier), and no
/// `agent_evaluations`. `undo` takes the store back to that; migrating keeps those times.
async fn migration_case(store: Arc<dyn Store>, undo: impl AsyncFn(), reopen: impl AsyncFn() -> Arc<dyn Store>) {
    enroll(store.as_ref(), "P", "S", "a1").await;
    enroll(store.as_ref(), "P", "S", "a2").await;
    evaluate(
        store.as_ref(),
        "a1",
        &[("r.a", Status::Pass), ("r.b", Status::Pass)],
        at(0),
    )
    .await;
    evaluate(
        store.as_ref(),
        "a1",
        &[("r.a", Status::Pass), ("r.b", Status::Fail)],
        at(3600),
    )
    .await;
    drop(store);
    undo().await;
    let store = reopen().await;
    assert_eq!(
        times(store.as_ref(), "a1").await,
        vec![
            ("r.a".to_string(), at(3600), at(0)),
            ("r.b".to_string(), at(3600), at(3600))
        ],
        "the times the rows had before the migration"
    );
    assert!(times(store.as_ref(), "a2").await.is_empty());
    // And the next evaluation moves the agent's time as before.
    evaluate(
        store.as_ref(),
        "a1",
        &[("r.a", Status::Pass), ("r.b", Status::Fail)],
        at(7200),
    )
    .await;
    assert_eq!(
        times(store.as_ref(), "a1").await,
        vec![
            ("r.a".to_string(), at(7200), at(0)),
            ("r.b".to_string(), at(7200), at(3600))
        ]
    );
}

/// SQL that takes a migrated store back to schema version 13 as the old code left it: the
/// agent's rows all at their last evaluation, no `agent_evaluations` (and no index of 0015;
/// the two indexes of the observation history 0016 dropped back; no check confirmations of
/// 0018).
const BACK_TO_13: &str = "UPDATE findings SET evaluated_at = 1795000000000 + 3600 * 1000 WHERE agent_id = 'a1';
     DROP TABLE agent_evaluations;
     DROP INDEX incidents_by_source;
     CREATE INDEX observations_by_agent ON observations (agent_id, kind, observed_at);
     CREATE INDEX observations_by_agent_sequence ON observations (agent_id, sequence);
     DROP TABLE check_confirmations; ALTER TABLE latest_observations DROP COLUMN check_epoch;";

#[tokio::test]
async fn sqlite_migration_0014_keeps_the_evaluation_times_rows_had() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rounds.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    migration_case(
        store,
        async || {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(BACK_TO_13).unwrap();
            conn.pragma_update(None, "user_version", 13).unwrap();
        },
        async || {
            let s = SqliteStore::open(&path).unwrap();
            assert_eq!(
                s.schema_version().unwrap() as usize,
                rounds_collector::store::sqlite::schema_version()
            );
            Arc::new(s) as Arc<dyn Store>
        },
    )
    .await;
}

#[tokio::test]
async fn postgres_migration_0014_keeps_the_evaluation_times_rows_had() {
    let Some(url) = crate::support::pg_schema().await else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(rounds_collector::store::postgres::PgStore::open(&url).await.unwrap());
    let client = pg_client(&url).await;
    migration_case(
        store,
        async || {
            client.batch_execute(BACK_TO_13).await.unwrap();
            client
                .execute("DELETE FROM schema_version WHERE version > 13", &[])
                .await
                .unwrap();
        },
        async || {
            let (s, migrated) = rounds_collector::store::postgres::PgStore::open_migrated(&url, 2)
                .await
                .unwrap();
            assert_eq!(
                (migrated.from, migrated.to),
                (13, rounds_collector::store::postgres::schema_version())
            );
            Arc::new(s) as Arc<dyn Store>
        },
    )
    .await;
}

fn incoming(r: &Report) -> IncomingReport<'_> {
    IncomingReport {
        report: r,
        received_at: r.created_at,
        future_after: r.created_at + Duration::minutes(5),
    }
}

/// The hostname of the inventory in an evaluation input.
fn hostname(input: &rounds_collector::store::EvaluationInput) -> String {
    let host = input
        .observations
        .iter()
        .find(|o| o.observation.kind == "inventory")
        .expect("the inventory is in the current state");
    host.observation.data["hostname"].as_str().unwrap().to_string()
}

/// A delivery that stores a report answers, with its outcomes, the evaluation's input as it
/// stands after the report; a resend or a refused conflict answers none.
async fn deliver_and_read_case(store: Arc<dyn Store>) {
    enroll(store.as_ref(), "P", "S", "a1").await;
    let first = report("a1", 1, "frontdesk");
    let (outcomes, input) = store.deliver_reports_and_read("a1", &[incoming(&first)]).await.unwrap();
    assert!(matches!(outcomes[0].delivery, Delivery::Stored { .. }), "{outcomes:?}");
    let input = input.expect("a stored report is read for").unwrap();
    assert_eq!(
        (hostname(&input), input.os.as_str()),
        ("frontdesk".to_string(), "linux")
    );

    let (outcomes, input) = store.deliver_reports_and_read("a1", &[incoming(&first)]).await.unwrap();
    assert_eq!(outcomes[0].delivery, Delivery::Duplicate);
    assert!(input.is_none(), "a resend stores nothing to evaluate");

    let other = report("a1", 1, "renamed");
    let (outcomes, input) = store.deliver_reports_and_read("a1", &[incoming(&other)]).await.unwrap();
    assert!(
        matches!(outcomes[0].delivery, Delivery::Conflict { .. }),
        "{outcomes:?}"
    );
    assert!(input.is_none(), "a refused unit keeps nothing");

    // A batch: a resend, then two new reports; the input follows the last of them.
    let (second, third) = (report("a1", 2, "second"), report("a1", 3, "third"));
    let (outcomes, input) = store
        .deliver_reports_and_read("a1", &[incoming(&first), incoming(&second), incoming(&third)])
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 3);
    assert_eq!(hostname(&input.unwrap().unwrap()), "third");
}

#[tokio::test]
async fn sqlite_reads_the_evaluation_input_with_the_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("rounds.db")).unwrap());
    deliver_and_read_case(store).await;
}

#[tokio::test]
async fn sqlite_without_group_commit_reads_the_evaluation_input_with_the_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("rounds.db")).unwrap();
    deliver_and_read_case(Arc::new(store.without_group_commit())).await;
}

#[tokio::test]
async fn postgres_reads_the_evaluation_input_with_the_delivery() {
    let Some(store) = crate::support::pg_store().await else {
        return;
    };
    deliver_and_read_case(store).await;
}

/// The agent's evaluation lock is held from the delivery to its findings: an evaluation of the
/// same agent asked for in between waits for it (so it cannot replace newer findings with
/// older ones), another agent's does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_holds_the_agents_evaluation_until_its_findings_are_stored() {
    let app = crate::support::TestApp::new();
    let a = crate::api::enrolled(&app, "Smith", "a").await;
    let b = crate::api::enrolled(&app, "Smith", "b").await;
    let now = app.state.now();
    crate::api::deliver(&app, &b, 1, &[crate::api::inventory(now)], true).await;
    let evaluator = Arc::clone(&app.state.evaluator);
    let r = report(&a.agent_id, 1, "frontdesk");
    let (outcomes, pending) = evaluator.deliver(&a.agent_id, &[incoming(&r)]).await.unwrap();
    assert!(matches!(outcomes[0].delivery, Delivery::Stored { .. }));

    let same = tokio::spawn({
        let (evaluator, id) = (Arc::clone(&evaluator), a.agent_id.clone());
        async move { evaluator.evaluate_agent(&id).await.map(|_| ()) }
    });
    // Another agent is evaluated meanwhile: only agent a waits.
    evaluator.evaluate_agent(&b.agent_id).await.unwrap();
    // A bound on waiting for something that must not happen (real threads read the store,
    // which a paused clock would not wait for).
    let mut same = same;
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(200), &mut same)
            .await
            .is_err(),
        "agent a's evaluation waits for the delivery's"
    );
    assert!(
        app.store().findings(&admin(), &a.agent_id).await.unwrap().is_empty(),
        "nothing evaluated for a yet"
    );
    let evaluated = evaluator.stored(&a.agent_id, &[&r], true, pending).await;
    assert!(matches!(evaluated, Some(Ok(_))), "{evaluated:?}");
    same.await.unwrap().unwrap();
    assert!(!app.store().findings(&admin(), &a.agent_id).await.unwrap().is_empty());
}
