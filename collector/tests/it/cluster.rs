//! Live changes across collectors on one PostgreSQL database (issue 17, `cluster`): two
//! evaluators on two stores (as two processes have), each with its relay. A report one
//! collector stores reaches the other's live subscribers (and never its alert engine's kind of
//! subscriber); a collector's own changes are not seen twice; a listening connection the
//! server drops comes back. Runs when `ROUNDS_TEST_POSTGRES_URL` is set.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rounds_collector::clock::SystemClock;
use rounds_collector::cluster::Relay;
use rounds_collector::events::Metrics;
use rounds_collector::ingest::{Change, Evaluator, Subscriber};
use rounds_collector::store::postgres::PgStore;
use rounds_collector::store::{AgentReportedState, Store};
use rounds_policies::Policy;
use tokio_util::sync::CancellationToken;

use crate::api::{firewall, inventory};
use crate::support::{admin, enroll, pg_schema, report};

const WAIT: Duration = Duration::from_secs(15);

async fn evaluator(url: &str) -> Arc<Evaluator> {
    let store: Arc<dyn Store> = Arc::new(PgStore::open(url).await.unwrap());
    Arc::new(Evaluator::new(
        store,
        Arc::new(Policy::builtin().unwrap()),
        Arc::new(SystemClock),
        Arc::new(Metrics::default()),
        Duration::from_secs(300),
        256,
    ))
}

/// Changes received until one satisfies `last` (included), failing after [`WAIT`].
async fn until(sub: &mut Subscriber, what: &str, mut last: impl FnMut(&Change) -> bool) -> Vec<Change> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, sub.recv()).await {
            Ok(Some(c)) => {
                let done = last(&c);
                got.push(c);
                if done {
                    return got;
                }
            }
            Ok(None) => panic!("the change stream closed waiting for {what}"),
            Err(_) => panic!("no {what} within {WAIT:?}; received {got:#?}"),
        }
    }
}

/// Seen at `from` or later (the relay keeps milliseconds).
fn seen_since(c: &Change, agent: &str, from: chrono::DateTime<Utc>) -> bool {
    matches!(c, Change::AgentSeen { agent_id, at } if agent_id == agent && at.timestamp_millis() >= from.timestamp_millis())
}

fn agent_of(c: &Change) -> &str {
    match c {
        Change::FindingsChanged { agent_id, .. }
        | Change::AgentSeen { agent_id, .. }
        | Change::FirstReport { agent_id, .. }
        | Change::ProbesStored { agent_id, .. } => agent_id,
    }
}

/// True once `agent`'s findings changes seen so far name `want` rule changes (a first
/// evaluation changes every rule: it may come in several notifications).
fn rule_changes(agent: &str, want: usize) -> impl FnMut(&Change) -> bool {
    let mut rules = 0;
    move |c| {
        if let Change::FindingsChanged { agent_id, changes } = c
            && agent_id == agent
        {
            rules += changes.len();
        }
        rules >= want
    }
}

fn findings_of(c: &Change, agent: &str) -> bool {
    matches!(c, Change::FindingsChanged { agent_id, .. } if agent_id == agent)
}

fn seen(c: &Change, agent: &str) -> bool {
    matches!(c, Change::AgentSeen { agent_id, .. } if agent_id == agent)
}

async fn listening(relay: &Relay, n: u64) {
    tokio::time::timeout(WAIT, relay.listening(n))
        .await
        .unwrap_or_else(|_| panic!("relay {} listening {n} times within {WAIT:?}", relay.instance()));
}

/// Two collectors' evaluators on the database of `url`, each with its relay listening.
async fn two_collectors(url: &str) -> ((Arc<Evaluator>, Relay), (Arc<Evaluator>, Relay), CancellationToken) {
    let stop = CancellationToken::new();
    let mut both = Vec::new();
    for _ in 0..2 {
        let e = evaluator(url).await;
        let relay = Relay::start(url, e.changes().clone(), stop.clone()).unwrap();
        listening(&relay, 1).await;
        both.push((e, relay));
    }
    let b = both.pop().unwrap();
    (both.pop().unwrap(), b, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_stored_by_one_collector_reaches_the_others_live_pages_once() {
    let Some(url) = pg_schema().await else {
        return;
    };
    let ((a, relay_a), (b, relay_b), stop) = two_collectors(&url).await;
    assert_ne!(relay_a.instance(), relay_b.instance());
    let mut live_a = a.changes().subscribe_with_remote("test-live-a");
    let mut live_b = b.changes().subscribe_with_remote("test-live-b");
    // As the alert engine subscribes: this collector's own changes only.
    let mut engine_b = b.changes().subscribe("test-engine-b");
    enroll(a.store().as_ref(), "Smith", "main", "agent-a").await;
    enroll(b.store().as_ref(), "Jones", "clinic", "agent-b").await;

    // A report to collector A: collector B's live pages hear of it.
    let now = Utc::now();
    let out = a
        .ingest(
            "agent-a",
            &report("agent-a", 1, Utc::now(), vec![inventory(now), firewall(false, now)]),
        )
        .await
        .unwrap();
    let evaluated = out.evaluation.unwrap().unwrap();
    assert!(!evaluated.changes.is_empty());
    let got = until(
        &mut live_b,
        "agent-a's findings on B",
        rule_changes("agent-a", evaluated.changes.len()),
    )
    .await;
    assert!(got.iter().any(|c| seen(c, "agent-a")), "{got:?}");
    assert!(
        got.iter()
            .any(|c| matches!(c, Change::FirstReport { agent_id, .. } if agent_id == "agent-a")),
        "{got:?}"
    );
    let changes: Vec<_> = got
        .iter()
        .filter_map(|c| match c {
            Change::FindingsChanged { agent_id, changes } if agent_id == "agent-a" => Some(changes.iter()),
            _ => None,
        })
        .flatten()
        .collect();
    let relayed: Vec<_> = changes
        .iter()
        .map(|c| (c.rule.clone(), c.old_status, c.new_status))
        .collect();
    let committed: Vec<_> = evaluated
        .changes
        .iter()
        .map(|c| (c.rule.clone(), c.old_status, c.new_status))
        .collect();
    assert_eq!(relayed, committed, "the rules and statuses A recorded");
    assert!(
        changes.iter().all(|c| c.evidence.is_null() && c.message.is_empty()),
        "ids and statuses only: {changes:?}"
    );
    // The page reads the rest from the shared store, as committed by A.
    let row = b.store().agent(&admin(), "agent-a").await.unwrap();
    assert!(row.last_report_at.is_some());

    // A report to collector B: its own live pages see it once, from its own stream.
    let now = Utc::now();
    let b_changes = b
        .ingest(
            "agent-b",
            &report("agent-b", 1, Utc::now(), vec![inventory(now), firewall(false, now)]),
        )
        .await
        .unwrap()
        .evaluation
        .unwrap()
        .unwrap()
        .changes
        .len();
    // A heard of it: B's notification went out...
    until(
        &mut live_a,
        "agent-b's findings on A",
        rule_changes("agent-b", b_changes),
    )
    .await;
    // ...and came back to B's own listener before anything A sends after this heartbeat.
    let marker = Utc::now();
    a.heartbeat("agent-a", "1", Utc::now(), &AgentReportedState::default())
        .await
        .unwrap();
    let mut got = until(&mut live_b, "A's heartbeat on B", |c| seen_since(c, "agent-a", marker)).await;
    // Remote changes arrive in order, so any echo of B's own came before the marker; B's local
    // ones were all published before `ingest` returned, and may still wait beside it.
    while let Some(c) = live_b.try_recv() {
        got.push(c);
    }
    let mine: Vec<&Change> = got.iter().filter(|c| agent_of(c) == "agent-b").collect();
    assert_eq!(
        mine.iter().filter(|c| seen(c, "agent-b")).count(),
        1,
        "B's own report seen once: {mine:#?}"
    );
    let own_rules: usize = mine
        .iter()
        .map(|c| match c {
            Change::FindingsChanged { changes, .. } => changes.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(
        (mine.iter().filter(|c| findings_of(c, "agent-b")).count(), own_rules),
        (1, b_changes),
        "B's own findings once, as B published them: {mine:#?}"
    );
    // The engine's kind of subscriber had B's changes only, never A's.
    let mut engine = Vec::new();
    while let Some(c) = engine_b.try_recv() {
        engine.push(c);
    }
    assert!(engine.iter().any(|c| findings_of(c, "agent-b")), "{engine:?}");
    assert!(
        engine.iter().all(|c| agent_of(c) == "agent-b"),
        "another collector's changes never reach the alert engine: {engine:#?}"
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listening_connection_the_server_drops_reconnects_and_relays_again() {
    let Some(url) = pg_schema().await else {
        return;
    };
    let ((a, relay_a), (b, relay_b), stop) = two_collectors(&url).await;
    let mut live_b = b.changes().subscribe_with_remote("test-live-b");
    enroll(a.store().as_ref(), "Smith", "main", "agent-a").await;
    let from_a = &a;
    let beat = move || async move {
        from_a
            .heartbeat("agent-a", "1", Utc::now(), &AgentReportedState::default())
            .await
            .unwrap()
    };
    beat().await;
    until(&mut live_b, "the first heartbeat on B", |c| seen(c, "agent-a")).await;

    // The server ends B's listening connection (as a restart or a network cut would).
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    let task = tokio::spawn(conn);
    let ended: Vec<bool> = client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&relay_b.application_name()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ended, vec![true], "B's relay had one connection");
    drop(client);
    let _ = task.await;
    listening(&relay_b, 2).await;
    assert_eq!(relay_a.times_listening(), 1, "A's connection was left alone");
    let after = Utc::now();
    beat().await;
    until(&mut live_b, "a heartbeat on B after the reconnection", |c| {
        seen_since(c, "agent-a", after)
    })
    .await;
    stop.cancel();
}
