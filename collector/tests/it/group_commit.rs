//! Group commit of ingest (issue 7): units of work of several agents' requests committed in
//! one SQLite transaction, each in its own savepoint, each answered after that commit.

use std::sync::Arc;

use chrono::Utc;
use rounds_collector::store::sqlite::SqliteStore;
use rounds_collector::store::{Delivery, IncomingReport, Store, StoreError};
use rounds_protocol::Report;

use crate::support::enroll;

/// A complete inventory run of `agent_id` at `sequence`, its hostname `marker`.
pub(crate) fn report(agent_id: &str, sequence: u64, marker: &str) -> Report {
    let at = chrono::DateTime::from_timestamp(1_800_000_000 + sequence as i64, 0).unwrap();
    let inv = rounds_protocol::obs::Inventory {
        hostname: marker.into(),
        os_family: "linux".into(),
        ..Default::default()
    };
    Report {
        protocol: 1,
        agent_id: agent_id.into(),
        sequence,
        created_at: at,
        check: Some("inventory".into()),
        complete: true,
        prev_hash: None,
        hash: None,
        dropped: vec![],
        observations: vec![rounds_protocol::Observation::ok("host", at, &inv)],
    }
}

async fn deliver(store: Arc<SqliteStore>, r: Report) -> Result<Vec<Delivery>, StoreError> {
    let now = Utc::now();
    let incoming = IncomingReport {
        report: &r,
        received_at: now,
        future_after: now + chrono::Duration::minutes(5),
    };
    let out = store.deliver_reports(&r.agent_id, &[incoming]).await?;
    Ok(out.into_iter().map(|o| o.delivery).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_units_of_several_agents_commit_together_and_a_failing_one_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("rounds.db")).unwrap());
    for id in ["a1", "a2"] {
        enroll(store.as_ref(), "P", "S", id).await;
    }
    deliver(Arc::clone(&store), report("a1", 1, "first")).await.unwrap();
    let (groups_before, units_before) = store.group_commit_counts();

    // Hold the writer, so the next units queue behind it.
    let mut held = store.begin().await.unwrap();
    held.audit("test", "hold", "writer held", Utc::now()).await.unwrap();
    let units = vec![
        report("a1", 1, "other content"), // conflict: rolled back to its savepoint
        report("a2", 1, "a2"),            // stored
        report("nope", 1, "x"),           // unknown agent: fails alone
        report("a1", 2, "second"),        // stored
    ];
    let mut tasks = Vec::new();
    for r in units {
        // One after the other into the queue, so they run in this order.
        let queued = store.group_commit_queued();
        tasks.push(tokio::spawn(deliver(Arc::clone(&store), r)));
        while store.group_commit_queued() == queued {
            tokio::task::yield_now().await;
        }
    }
    assert_eq!(
        store.report_count().await.unwrap(),
        1,
        "nothing answered or visible before the commit"
    );
    held.commit().await.unwrap();

    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    assert!(
        matches!(out[0].as_deref(), Ok([Delivery::Conflict { .. }])),
        "{:?}",
        out[0]
    );
    assert!(
        matches!(out[1].as_deref(), Ok([Delivery::Stored { .. }])),
        "{:?}",
        out[1]
    );
    assert!(
        matches!(out[2], Err(StoreError::NotFound { what: "agent", .. })),
        "{:?}",
        out[2]
    );
    assert!(
        matches!(out[3].as_deref(), Ok([Delivery::Stored { .. }])),
        "{:?}",
        out[3]
    );
    let (groups, units) = store.group_commit_counts();
    assert_eq!(
        (groups - groups_before, units - units_before),
        (1, 4),
        "one transaction for the four"
    );
    assert_eq!(store.report_count().await.unwrap(), 3, "a1 1 and 2, a2 1");
    let a1 = store
        .latest_observations(
            &rounds_collector::store::Scope {
                role: rounds_collector::store::Role::Admin,
                practice_id: None,
            },
            "a1",
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        a1[0].observation.data["hostname"], "second",
        "the conflict left nothing"
    );
}

// Heartbeats at scale (issue 16): a heartbeat is a unit of the group commit, so one commit
// serves many agents' heartbeats (one WAL sync under `synchronous = FULL`), and a heartbeat
// of an unknown agent fails alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_of_many_agents_queued_behind_the_writer_commit_in_one_transaction() {
    use rounds_collector::store::{AgentReportedState, HeartbeatPrior, Role, Scope};
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("rounds.db")).unwrap());
    let ids: Vec<String> = (0..20).map(|i| format!("h{i}")).collect();
    for id in &ids {
        enroll(store.as_ref(), "P", "S", id).await;
    }
    let (groups_before, units_before) = store.group_commit_counts();
    let now = Utc::now();
    let mut held = store.begin().await.unwrap();
    held.audit("test", "hold", "writer held", now).await.unwrap();
    let mut tasks = Vec::new();
    for id in ids.iter().map(String::as_str).chain(["ghost"]) {
        let queued = store.group_commit_queued();
        let (unit_store, id) = (Arc::clone(&store), id.to_string());
        tasks.push(tokio::spawn(async move {
            let reported = AgentReportedState {
                spool_depth: Some(7),
                ..Default::default()
            };
            unit_store
                .record_heartbeat(&id, "0.3.0", Some(chrono::Duration::seconds(1)), &reported, now)
                .await
        }));
        while store.group_commit_queued() == queued {
            tokio::task::yield_now().await;
        }
    }
    let admin = Scope {
        role: Role::Admin,
        practice_id: None,
    };
    assert_eq!(
        store.agent(&admin, "h0").await.unwrap().last_seen_at,
        None,
        "nothing visible before the commit"
    );
    held.commit().await.unwrap();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    for (id, o) in ids.iter().zip(&out) {
        assert_eq!(o.as_ref().unwrap(), &HeartbeatPrior::default(), "{id}");
    }
    assert!(
        matches!(out[20], Err(StoreError::NotFound { what: "agent", .. })),
        "{:?}",
        out[20]
    );
    let (groups, units) = store.group_commit_counts();
    assert_eq!(
        (groups - groups_before, units - units_before),
        (1, 21),
        "one transaction for the 21 heartbeats"
    );
    for id in &ids {
        let a = store.agent(&admin, id).await.unwrap();
        assert_eq!(
            a.last_seen_at.map(|t| t.timestamp_millis()),
            Some(now.timestamp_millis()),
            "{id}"
        );
        assert_eq!(a.clock_skew_ms, Some(1_000), "{id}");
        assert_eq!(
            store.delivery_status(&admin, id).await.unwrap().reported.spool_depth,
            Some(7),
            "{id}"
        );
    }
}

// Heartbeats at scale (issue 16): a unit of work that runs no statement costs nothing, so a
// caller that finds nothing to write never queues behind the writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_unit_of_work_neither_waits_for_nor_takes_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("rounds.db")).unwrap());
    let mut held = store.begin().await.unwrap();
    held.audit("test", "hold", "writer held", Utc::now()).await.unwrap();
    let empty = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        let unit = store.begin().await?;
        unit.commit().await
    })
    .await;
    assert!(
        matches!(empty, Ok(Ok(()))),
        "an empty unit committed while another held the writer: {empty:?}"
    );
    let dropped = store.begin().await.unwrap();
    drop(dropped);
    held.commit().await.unwrap();
    assert_eq!(
        store.audit_entries(10).await.unwrap().len(),
        1,
        "the held unit's write committed"
    );
    // A unit that writes after an empty one still commits its write.
    let mut tx = store.begin().await.unwrap();
    tx.audit("test", "second", "after", Utc::now()).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.audit_entries(10).await.unwrap().len(), 2);
}
