//! Server-side render time of the dashboard's overview and practice page over a seeded store:
//! 1,000 practices, 10,000 agents (10 per practice, 2 sites), every built-in rule's finding
//! on every agent (about 280,000 findings and their history), 90 % of agents online, and for
//! one practice 30 days of EHR probe summaries (hourly), probe state changes and daily backups.
//!
//! `cargo bench -p rounds-collector --bench dashboard [-- [--reuse] DIR]`: seeds a fresh SQLite
//! store in DIR (default `target/dashboard-bench`; `--reuse` keeps a store seeded by an earlier
//! run), then renders the overview 20 times, the overview with a machine search 5 times and the
//! practice page 50 times (as a technician, who sees everything) and prints min / median / p95
//! of the wall time and the process CPU time per render (`/proc/self/stat`, in 10 ms ticks, so
//! per render it is the mean over the runs: steadier than wall time on a loaded machine).

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

/// User plus system CPU time of this process so far, in clock ticks (10 ms on Linux).
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12)
}

/// Renders `runs` times; prints wall-time statistics and the mean CPU time per render.
async fn measure<F, Fut>(name: &str, runs: usize, mut render: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let mut times = Vec::new();
    let mut bytes = 0;
    let cpu = cpu_ticks();
    for _ in 0..runs {
        let t = Instant::now();
        bytes = render().await;
        times.push(t.elapsed());
    }
    let cpu_ms = (cpu_ticks() - cpu) as f64 * 10.0 / runs as f64;
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p95 = times[(times.len() * 95 / 100).min(times.len() - 1)];
    println!(
        "{name} ({} KiB): n={} min {:.1} ms, median {:.1} ms, p95 {:.1} ms; CPU {cpu_ms:.1} ms per render",
        bytes / 1024,
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
    let reuse = std::env::args().any(|a| a == "--reuse") && dir.join("rounds.db").exists();
    if !reuse {
        let _ = std::fs::remove_dir_all(&dir);
    }
    std::fs::create_dir_all(&dir).unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("rounds.db")).unwrap());
    let policy = Arc::new(Policy::builtin().unwrap());
    // A reused store was seeded at the time written beside it: render as of then.
    let stamp = dir.join("seeded-at");
    let now = match std::fs::read_to_string(&stamp).ok().and_then(|s| s.trim().parse().ok()) {
        Some(ms) if reuse => DateTime::from_timestamp_millis(ms).unwrap(),
        _ => DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap(),
    };
    if !reuse {
        seed(&store, &policy, now).await;
        std::fs::write(&stamp, now.timestamp_millis().to_string()).unwrap();
    }
    render(&dir, store, policy, now).await;
}

/// 1,000 practices of 10 agents with every built-in rule's finding, and one practice's 30 days.
async fn seed(store: &Arc<dyn Store>, policy: &Policy, now: DateTime<Utc>) {
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
                &findings(policy, p * AGENTS_PER_PRACTICE + a),
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
        "seeded {PRACTICES} practices, {} agents, {} findings in {:.1} s (as of {})",
        PRACTICES * AGENTS_PER_PRACTICE,
        PRACTICES * AGENTS_PER_PRACTICE * policy.rules.len(),
        started.elapsed().as_secs_f64(),
        now
    );
}

/// Renders the overview and the practice page, and prints how long they took.
async fn render(dir: &std::path::Path, store: Arc<dyn Store>, policy: Arc<Policy>, now: DateTime<Utc>) {
    let mut settings = validate(Default::default(), &Overrides::default(), None).unwrap();
    settings.data_dir = dir.to_path_buf();
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
    let state = &state;
    let session = &session;
    measure("overview (1,000 practice rows, 200 machine rows)", 20, || async move {
        rounds_collector::web::overview::build(state, session, Filter::default())
            .await
            .unwrap()
            .render()
            .unwrap()
            .len()
    })
    .await;
    let fleet = &scope;
    measure("  read: agents of the fleet", 20, || async move {
        state.store.agents(fleet).await.unwrap().len()
    })
    .await;
    measure("  read: rule_tallies of the fleet", 20, || async move {
        state.store.rule_tallies(fleet).await.unwrap().len()
    })
    .await;
    measure(
        "overview searching \"host-7\" (machine search: tallies every finding)",
        5,
        || async move {
            let filter = Filter {
                q: "host-7".into(),
                ..Filter::default()
            };
            rounds_collector::web::overview::build(state, session, filter)
                .await
                .unwrap()
                .render()
                .unwrap()
                .len()
        },
    )
    .await;
    // The practice page's reads alone, to see where its time goes.
    let narrow = Scope {
        role: Role::PracticeManager,
        practice_id: Some(practice_id),
    };
    let narrow = &narrow;
    let from = now - chrono::Duration::days(30);
    for kind in ["ehr.probe", "ehr.summary", "backup"] {
        measure(&format!("  read: observation_history {kind}"), 20, || async move {
            state
                .store
                .observation_history(narrow, practice_id, kind, from, now)
                .await
                .unwrap()
                .len()
        })
        .await;
    }
    for (kind, fields) in [
        ("ehr.probe", rounds_collector::web::practice::PROBE_FIELDS),
        ("ehr.summary", rounds_collector::web::practice::SUMMARY_FIELDS),
    ] {
        measure(
            &format!("  read: observation_fields {kind} (what the page reads)"),
            20,
            || async move {
                state
                    .store
                    .observation_fields(narrow, practice_id, kind, from, now, fields)
                    .await
                    .unwrap()
                    .len()
            },
        )
        .await;
    }
    measure("  read: agents + finding_briefs of the practice", 20, || async move {
        state.store.agents(narrow).await.unwrap().len() + state.store.finding_briefs(narrow).await.unwrap().len()
    })
    .await;
    measure("  read: findings of its 10 machines", 20, || async move {
        let mut n = 0;
        for a in state.store.agents(narrow).await.unwrap() {
            n += state.store.findings(narrow, &a.agent_id).await.unwrap().len();
        }
        n
    })
    .await;
    measure("  read: finding_changes of the practice, 30 days", 20, || async move {
        let q = rounds_collector::store::ChangeQuery {
            agent_id: None,
            practice_id: Some(practice_id),
            from,
            to: now,
        };
        state.store.finding_changes(narrow, &q).await.unwrap().len()
    })
    .await;
    measure("practice page (10 machines, 30 days of history)", 50, || async move {
        rounds_collector::web::practice::build(state, session, practice_id, None)
            .await
            .unwrap()
            .render()
            .unwrap()
            .len()
    })
    .await;
}
