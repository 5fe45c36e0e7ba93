//! Group commit of ingest (issue 7): units of work of several agents' requests committed in
//! one SQLite transaction, each in its own savepoint, each answered after that commit.

use std::sync::Arc;

use chrono::Utc;
use rounds_collector::store::sqlite::SqliteStore;
use rounds_collector::store::{Delivery, IncomingReport, Store, StoreError};
use rounds_protocol::Report;

use crate::store::enroll;

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
