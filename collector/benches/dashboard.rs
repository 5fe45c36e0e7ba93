//! Server-side render time of the dashboard's overview and practice page over a seeded store:
//! 1,000 practices, 10,000 agents (10 per practice, 2 sites), every built-in rule's finding
//! on every agent (about 280,000 findings and their history), 90 % of agents online, and for
//! one practice 30 days of EHR probe summaries (hourly), probe state changes and daily backups.
//!
//! `cargo bench -p rounds-collector --bench dashboard [-- DIR]`: seeds a fresh SQLite store in
//! DIR (default `target/dashboard-bench`), then renders the overview 20 times and the practice
//! page 50 times (as a technician, who sees everything) and prints min / median / p95.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use askama::Template;
use chrono::{DateTime, Utc};
use rounds_collector::app::AppState;
use rounds_collector::clock::FakeClock;
use rounds_collector::config::{Overrides, validate};
use rounds_collector::store::sqlite::SqliteStore;
use rounds_collector::store::{IncomingReport, NewAgent, NewToken, Role, Scope, SessionRow, Store};
use rounds_collector::web::overview::Filter;
use rounds_collector::web::session::Session;
use rounds_policies::{Finding, Policy, Status};
use rounds_protocol::{Observation, Report, obs};

const PRACTICES: usize = 1000;
const AGENTS_PER_PRACTICE: usize = 10;

fn findings(policy: &Policy, seed: usize) -> Vec<Finding> {
    policy
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let status = match (seed * 31 + i * 7) % 23 {
                0 => Status::Fail,
                1 => Status::Error,
                2 | 3 => Status::NotApplicable,
                _ => Status::Pass,
            };
            Finding {
                rule: r.rule.id.clone(),
                title: r.rule.title.clone(),
                status,
                severity: r.severity,
                citations: vec!["164.312(a)(2)(iv)".into()],
                partial_citations: vec![],
                evidence: serde_json::json!({"observed": {"value": i, "host": format!("host-{seed}")}}),
                message: format!("{} on host-{seed}", r.rule.title),
                remediation: (status == Status::Fail).then(|| "fix it".to_string()),
                exception: None,
            }
        })
        .collect()
}

fn report(agent_id: &str, sequence: u64, at: DateTime<Utc>, observations: Vec<Observation>) -> Report {
    Report {
        protocol: 1,
        agent_id: agent_id.into(),
        sequence,
        created_at: at,
        check: None,
        complete: false,
        prev_hash: None,
        hash: None,
        dropped: vec![],
        observations,
    }
}

fn stats(name: &str, mut times: Vec<Duration>) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p95 = times[(times.len() * 95 / 100).min(times.len() - 1)];
    println!(
        "{name}: n={} min {:.1} ms, median {:.1} ms, p95 {:.1} ms",
        times.len(),
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(p95)
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let dir = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard-bench"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("rounds.db")).unwrap());
    let policy = Arc::new(Policy::builtin().unwrap());
    let now = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap();
    let started = Instant::now();
    let mut tx = store.begin().await.unwrap();
    let mut first_practice_agents = Vec::new();
    for p in 0..PRACTICES {
        for a in 0..AGENTS_PER_PRACTICE {
            let practice = format!("Practice {p:04}");
            let site = format!("Site {}", a % 2);
            let token_hash = format!("bench-token-{p}-{a}");
            tx.create_token(
                NewToken {
                    practice,
                    site,
                    token_hash: token_hash.clone(),
                    expires_at: now + chrono::Duration::hours(1),
                },
                now,
            )
            .await
            .unwrap();
            let agent_id = format!("{:032x}", p * AGENTS_PER_PRACTICE + a);
            tx.enroll(
                &token_hash,
                NewAgent {
                    agent_id: agent_id.clone(),
                    secret_hash: "x".into(),
                    hostname: format!("host-{p}-{a}"),
                    os: if a % 3 == 0 { "windows" } else { "linux" }.into(),
                    agent_version: "0.3.1".into(),
                },
                now - chrono::Duration::days(31),
            )
            .await
            .unwrap();
            if (p + a) % 10 != 0 {
                tx.heartbeat(&agent_id, "0.3.1", None, now).await.unwrap();
            }
            tx.replace_findings(
                &agent_id,
                &findings(&policy, p * AGENTS_PER_PRACTICE + a),
                now - chrono::Duration::days(20),
            )
            .await
            .unwrap();
            if p == 0 {
                first_practice_agents.push(agent_id);
            }
        }
    }
    tx.commit().await.unwrap();
    // One practice's history: hourly probe summaries, probe changes every 6 h, daily backups.
    let mut tx = store.begin().await.unwrap();
    for agent_id in &first_practice_agents {
        for (seq, h) in (1..).zip((0..30 * 24).rev()) {
            let at = now - chrono::Duration::hours(h);
            let mut o = vec![Observation::ok(
                "ehr-cloud",
                at,
                &obs::ProbeSummary {
                    role: "endpoint".into(),
                    probe: "https".into(),
                    target: "https://ehr.example".into(),
                    period_start: Some(at - chrono::Duration::hours(1)),
                    period_end: Some(at),
                    probes: 60,
                    up: if h % 50 == 0 { 40 } else { 60 },
                    down: if h % 50 == 0 { 20 } else { 0 },
                    latency_ms_p50: Some(100.0 + (h % 17) as f64),
                    ..Default::default()
                },
            )];
            if h % 6 == 0 {
                o.push(Observation::ok(
                    "ehr-cloud",
                    at,
                    &obs::EhrProbe {
                        probe: "https".into(),
                        target: "https://ehr.example".into(),
                        up: h % 12 == 0,
                        latency_ms: Some(120.0),
                        ..Default::default()
                    },
                ));
            }
            if h % 24 == 0 {
                o.push(Observation::ok(
                    "restic:/srv",
                    at,
                    &obs::Backup {
                        tool: "restic".into(),
                        repository: "/srv".into(),
                        last_result: if h % 96 == 0 { "failed" } else { "success" }.into(),
                        last_success_at: Some(at),
                        ..Default::default()
                    },
                ));
            }
            let r = report(agent_id, seq, at, o);
            tx.ingest_report(
                agent_id,
                IncomingReport {
                    report: &r,
                    received_at: at,
                    future_after: now + chrono::Duration::hours(1),
                },
            )
            .await
            .unwrap();
        }
    }
    tx.commit().await.unwrap();
    println!(
        "seeded {PRACTICES} practices, {} agents, {} findings in {:.1} s ({})",
        PRACTICES * AGENTS_PER_PRACTICE,
        PRACTICES * AGENTS_PER_PRACTICE * policy.rules.len(),
        started.elapsed().as_secs_f64(),
        dir.display()
    );

    let mut settings = validate(Default::default(), &Overrides::default(), None).unwrap();
    settings.data_dir = dir.clone();
    let state = AppState::with_clock(Arc::clone(&store), settings, policy, Arc::new(FakeClock::new(now)));
    let session = Session {
        token_hash: String::new(),
        user: SessionRow {
            user_id: 1,
            username: "tech".into(),
            role: Role::Technician,
            practice_id: None,
            csrf_token: "rnd_csrf_bench".into(),
            expires_at: now + chrono::Duration::hours(1),
        },
    };
    let scope = Scope {
        role: Role::Technician,
        practice_id: None,
    };
    let practice_id = store
        .practices(&scope)
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.name == "Practice 0000")
        .unwrap()
        .id;
    let mut overview = Vec::new();
    let mut bytes = 0;
    for _ in 0..20 {
        let t = Instant::now();
        let html = rounds_collector::web::overview::build(&state, &session, Filter::default())
            .await
            .unwrap()
            .render()
            .unwrap();
        overview.push(t.elapsed());
        bytes = html.len();
    }
    stats(
        &format!("overview (1,000 practice rows, 200 machine rows, {} KiB)", bytes / 1024),
        overview,
    );
    let mut practice = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let html = rounds_collector::web::practice::build(&state, &session, practice_id, None)
            .await
            .unwrap()
            .render()
            .unwrap();
        practice.push(t.elapsed());
        bytes = html.len();
    }
    stats(
        &format!("practice page (10 machines, 30 days of history, {} KiB)", bytes / 1024),
        practice,
    );
}
