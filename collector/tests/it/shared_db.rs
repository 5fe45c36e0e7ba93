//! Two collectors on one PostgreSQL database (issue 17): two `PgStore`s (two pools, as two
//! processes have) each with its own alert engine and notifier, five agents split across them,
//! one clock. A site outage is opened and notified exactly once whichever collector its agents
//! report to; when the collector holding the jobs' leases dies, the other takes the engine's
//! lease within its lease time and the outbox's within its own, and the recovery is notified
//! once, by the survivor. Runs when `ROUNDS_TEST_POSTGRES_URL` is set.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use rounds_collector::alerting::config::AlertSettings;
use rounds_collector::alerting::{Engine, IncidentQuery, IncidentState};
use rounds_collector::clock::{Clock, FakeClock};
use rounds_collector::ingest::Change;
use rounds_collector::notify::NotificationKind;
use rounds_collector::store::postgres::PgStore;
use rounds_collector::store::{NewAgent, NewToken, Role, Scope, Store};

use crate::alerting::Recorder;

struct Collector {
    store: Arc<dyn Store>,
    engine: Engine,
    notifier: Arc<Recorder>,
    alive: bool,
}

struct Agent {
    id: String,
    site: (&'static str, &'static str),
    /// Which collector it reports to.
    to: usize,
    up: bool,
    phase: i64,
}

async fn collector(url: &str, clock: &Arc<FakeClock>) -> Collector {
    let store: Arc<dyn Store> = Arc::new(PgStore::open(url).await.unwrap());
    let notifier = Recorder::new(&["ops"]);
    let engine = Engine::new(
        Arc::clone(&store),
        clock.clone(),
        AlertSettings::default(),
        notifier.clone(),
    );
    Collector {
        store,
        engine,
        notifier,
        alive: true,
    }
}

/// Who holds the lease `name` now, read straight from the database.
async fn lease_holder(url: &str, name: &str) -> String {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    let task = tokio::spawn(conn);
    let holder: String = client
        .query_one("SELECT holder FROM job_leases WHERE name = $1", &[&name])
        .await
        .unwrap()
        .get(0);
    drop(client);
    let _ = task.await;
    holder
}

fn admin() -> Scope {
    Scope {
        role: Role::Admin,
        practice_id: None,
    }
}

/// Moves time on in 5 s steps: live agents beat every 30 s to their collector, live
/// collectors tick and deliver, concurrently.
async fn run(collectors: &[Collector], agents: &[Agent], clock: &FakeClock, start: DateTime<Utc>, secs: i64) {
    for _ in 0..secs / 5 {
        clock.advance(Duration::seconds(5));
        let now = clock.now();
        let t = (now - start).num_seconds();
        for a in agents.iter().filter(|a| a.up && (t - a.phase).rem_euclid(30) < 5) {
            let c = &collectors[a.to];
            assert!(c.alive, "{} reports to a dead collector", a.id);
            c.store.heartbeat(&a.id, "1", None, now).await.unwrap();
            c.engine
                .on_change(&Change::AgentSeen {
                    agent_id: a.id.clone(),
                    at: now,
                })
                .await
                .unwrap();
        }
        // The collectors work at the same time, as two processes do.
        futures_util::future::join_all(collectors.iter().filter(|c| c.alive).map(|c| async move {
            c.engine.tick().await.unwrap();
            c.engine.deliver_due().await.unwrap();
        }))
        .await;
    }
}

/// `(collector, kind, source)` of every notification sent by any collector.
fn sent(collectors: &[Collector]) -> Vec<(usize, NotificationKind, String)> {
    collectors
        .iter()
        .enumerate()
        .flat_map(|(i, c)| c.notifier.log().into_iter().map(move |(_, k, s)| (i, k, s)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_notify_an_outage_once_and_move_leased_jobs_when_one_dies() {
    let Some(url) = crate::support::pg_schema().await else {
        return;
    };
    let start = DateTime::from_timestamp_millis(1_800_000_000_000).unwrap();
    let clock = Arc::new(FakeClock::new(start));
    let mut collectors = vec![collector(&url, &clock).await, collector(&url, &clock).await];

    let sites = [
        ("Smith", "main"),
        ("Smith", "main"),
        ("Smith", "main"),
        ("Jones", "clinic"),
        ("Jones", "clinic"),
    ];
    let mut agents = Vec::new();
    for (n, site) in sites.into_iter().enumerate() {
        let id = format!("agent-{n}");
        let hash = format!("token-{n}");
        // Enrolled through whichever collector the agent talks to.
        let s = &collectors[n % 2].store;
        s.create_token(
            NewToken {
                practice: site.0.into(),
                site: site.1.into(),
                token_hash: hash.clone(),
                expires_at: start + Duration::hours(1),
            },
            start,
        )
        .await
        .unwrap();
        s.enroll(
            &hash,
            NewAgent {
                agent_id: id.clone(),
                secret_hash: "x".into(),
                hostname: format!("host-{n}"),
                os: "linux".into(),
                agent_version: "1".into(),
            },
            start,
        )
        .await
        .unwrap();
        s.heartbeat(&id, "1", None, start).await.unwrap();
        agents.push(Agent {
            id,
            site,
            to: n % 2,
            up: true,
            phase: (n as i64 * 7) % 30,
        });
    }
    // Collector 0 starts first and takes both leases (the engine's and the outbox's); from then
    // on both collectors claim them at every step, and only the holder gets them.
    collectors[0].engine.tick().await.unwrap();
    collectors[0].engine.deliver_due().await.unwrap();
    run(&collectors, &agents, &clock, start, 60).await;
    // An agent moves from one collector to the other.
    agents[0].to = 1;
    run(&collectors, &agents, &clock, start, 60).await;
    assert!(sent(&collectors).is_empty(), "{:?}", sent(&collectors));

    // The Smith site goes dark: its agents reported to both collectors.
    for a in agents.iter_mut().filter(|a| a.site == ("Smith", "main")) {
        a.up = false;
    }
    run(&collectors, &agents, &clock, start, 150).await;
    let log = sent(&collectors);
    assert_eq!(
        log.iter().map(|(_, k, s)| (*k, s.as_str())).collect::<Vec<_>>(),
        vec![(NotificationKind::Opened, "site_offline")],
        "one notification for the outage across both collectors: {log:?}"
    );
    let holder = log[0].0;
    assert_eq!(holder, 0, "the leases' holder did the work");
    let incidents = collectors[1 - holder]
        .store
        .incidents(&admin(), &IncidentQuery::default())
        .await
        .unwrap();
    let site: Vec<_> = incidents.iter().filter(|i| i.source == "site_offline").collect();
    assert_eq!(site.len(), 1, "one site incident, seen alike by both collectors");
    assert!(site[0].subject.contains("Smith"), "{}", site[0].subject);

    // The collector holding the leases dies; its agents move to the survivor; the site is back.
    let survivor = 1 - holder;
    collectors[holder].alive = false;
    let died_at = clock.now();
    for a in agents.iter_mut() {
        a.to = survivor;
        if a.site == ("Smith", "main") {
            a.up = true;
        }
    }
    let dead_holder = lease_holder(&url, "alert-engine").await;
    run(&collectors, &agents, &clock, start, 10).await;
    assert_eq!(
        lease_holder(&url, "alert-engine").await,
        dead_holder,
        "a lease is not taken before it expires"
    );
    run(&collectors, &agents, &clock, start, 10).await;
    assert_ne!(
        lease_holder(&url, "alert-engine").await,
        dead_holder,
        "20 s after the death the engine's 15 s lease has moved"
    );
    run(&collectors, &agents, &clock, start, 40).await;
    let resolved = collectors[survivor]
        .store
        .incident(&admin(), site[0].id)
        .await
        .unwrap()
        .incident;
    assert_eq!(resolved.state, IncidentState::Resolved);
    let lease = Duration::from_std(AlertSettings::default().tick).unwrap() * 3;
    let took = resolved.resolved_at.unwrap() - died_at;
    assert!(
        took <= lease + Duration::seconds(5),
        "the survivor's engine took over within the lease time ({lease}): {took}"
    );
    let outbox = collectors[survivor]
        .store
        .incident(&admin(), site[0].id)
        .await
        .unwrap()
        .notifications;
    let delivered = outbox
        .iter()
        .find(|n| n.kind == NotificationKind::Resolved)
        .and_then(|n| n.finished_at)
        .expect("the recovery's notification is delivered");
    assert!(
        delivered - died_at <= Duration::seconds(35),
        "the outbox lease (30 s) moved to the survivor: delivered {} after the death",
        delivered - died_at
    );
    let mut log = sent(&collectors);
    log.sort_by_key(|(i, k, s)| (*i, k.as_str(), s.clone()));
    let mut want = vec![
        (holder, NotificationKind::Opened, "site_offline".to_string()),
        (survivor, NotificationKind::Resolved, "site_offline".to_string()),
    ];
    want.sort_by_key(|(i, k, s)| (*i, k.as_str(), s.clone()));
    assert_eq!(
        log, want,
        "the recovery is notified once, by the survivor, after the outbox lease moved"
    );
}
