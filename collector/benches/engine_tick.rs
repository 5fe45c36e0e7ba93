//! The alert engine's periodic tick at 20,000 agents (issue 12): it reads every agent each
//! tick (offline detection, probe sampling, reminders, silences), so its cost grows with the
//! fleet and must stay well inside the tick interval (5 s by default).
//!
//! `cargo bench -p rounds-collector --bench engine_tick [-- AGENTS]`: seeds a fresh SQLite
//! store (temp dir, NORMAL durability) with AGENTS agents (default 20,000: 10 per site, 2
//! sites per practice), each with every built-in rule's finding (1 in 23 failing), all
//! beating; times the first tick (which also loads every agent's
//! probe state), then 20 steady ticks 5 s apart on a fake clock with every agent beating
//! between them (the heartbeats are not timed), and prints min / median / max.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rounds_collector::alerting::config::AlertSettings;
use rounds_collector::alerting::{Engine, NoChannels};
use rounds_collector::clock::{Clock, FakeClock};
use rounds_collector::store::sqlite::{Durability, SqliteStore};
use rounds_collector::store::{NewAgent, NewToken, Store};
use rounds_policies::{Finding, Policy, Status};

const PER_SITE: usize = 10;

fn ids(agents: usize) -> Vec<String> {
    (0..agents).map(|i| format!("{i:032x}")).collect()
}

/// Every rule's finding for one agent, as the evaluator stores them.
fn findings(policy: &Policy, seed: usize) -> Vec<Finding> {
    policy
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| Finding {
            rule: r.rule.id.clone(),
            title: r.rule.title.clone(),
            status: if (seed + i).is_multiple_of(23) {
                Status::Fail
            } else {
                Status::Pass
            },
            severity: r.severity,
            citations: vec![],
            partial_citations: vec![],
            evidence: serde_json::json!({"i": i}),
            message: String::new(),
            remediation: None,
            exception: None,
        })
        .collect()
}

async fn seed(store: &dyn Store, agents: usize, now: DateTime<Utc>) {
    let policy = Policy::builtin().unwrap();
    let mut tx = store.begin().await.unwrap();
    for (i, id) in ids(agents).iter().enumerate() {
        let site = i / PER_SITE;
        let token_hash = format!("bench-token-{i}");
        tx.create_token(
            NewToken {
                practice: format!("Practice {:05}", site / 2),
                site: format!("Site {}", site % 2),
                token_hash: token_hash.clone(),
                expires_at: now + chrono::Duration::hours(1),
            },
            now,
        )
        .await
        .unwrap();
        tx.enroll(
            &token_hash,
            NewAgent {
                agent_id: id.clone(),
                secret_hash: "x".into(),
                hostname: format!("host-{i}"),
                os: "linux".into(),
                agent_version: "0.3.1".into(),
            },
            now,
        )
        .await
        .unwrap();
        tx.heartbeat(id, "0.3.1", None, now).await.unwrap();
        tx.replace_findings(id, &findings(&policy, i), now).await.unwrap();
    }
    tx.commit().await.unwrap();
}

async fn beat_all(store: &dyn Store, agents: usize, now: DateTime<Utc>) {
    let mut tx = store.begin().await.unwrap();
    for id in ids(agents) {
        tx.heartbeat(&id, "0.3.1", None, now).await.unwrap();
    }
    tx.commit().await.unwrap();
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let agents: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open_with(&dir.path().join("rounds.db"), Durability::Normal).unwrap());
        let now = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap();
        let started = Instant::now();
        seed(store.as_ref(), agents, now).await;
        println!("seeded {agents} agents in {:.1} s", started.elapsed().as_secs_f64());
        let clock = Arc::new(FakeClock::new(now));
        let settings = AlertSettings::default();
        let budget = settings.tick;
        let engine = Engine::new(Arc::clone(&store), clock.clone(), settings, Arc::new(NoChannels));
        let t = Instant::now();
        engine.tick().await.unwrap();
        let first = t.elapsed();
        let mut times = Vec::new();
        for step in 1..=20u32 {
            clock.advance(chrono::Duration::seconds(5));
            if step.is_multiple_of(6) {
                beat_all(store.as_ref(), agents, clock.now()).await;
            }
            let t = Instant::now();
            engine.tick().await.unwrap();
            times.push(t.elapsed());
        }
        times.sort();
        let incidents = store
            .incidents(
                &rounds_collector::store::Scope {
                    role: rounds_collector::store::Role::Admin,
                    practice_id: None,
                },
                &Default::default(),
            )
            .await
            .unwrap()
            .len();
        println!(
            "engine tick, {agents} agents: first {:.0} ms; steady (20 ticks) min {:.0} ms, median {:.0} ms, max {:.0} ms; budget (tick interval) {} ms; incidents opened {incidents}",
            ms(first),
            ms(times[0]),
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1]),
            budget.as_millis()
        );
    });
}
