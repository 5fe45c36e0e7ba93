//! Ingest benchmarks of the collector (see BENCHMARKS.md for the figures and commands).
//!
//! `growth`: store growth per agent per day at default schedules. Every agent sends, once per
//! simulated hour (every check's default schedule), the observations of a real host run
//! (`agent/tests/fixtures/golden/check.json`, 15 observations), with the disk usage changing
//! every run as it does on a real machine; a fake clock moves one hour per round. Prints the
//! database size per agent per day. `--every-row` adds a per-run nonce to every payload, so
//! every observation row is written, as the store did before it kept only what changed.
//!
//! `throughput`: reports per second through the real router over loopback HTTP (no TLS), with
//! `--senders` concurrent agents each sending reports of `--observations` observations, every
//! report stored and evaluated. `--full` sets `synchronous=FULL` instead of NORMAL. It also
//! prints how many units of work (deliveries, findings replaced) group commit put in each
//! transaction; `--no-group-commit` commits each unit in a transaction of its own, as the store
//! did before group commit. `--postgres URL` (issue 17) runs the same load on the PostgreSQL
//! store in a fresh schema of that database instead (`--full` and group commit are SQLite's);
//! `--collectors N` runs N independent collectors on that schema (each its own store and pool,
//! evaluator and router, as N processes would have), the senders spread over them
//! round-robin. Every run prints the median, p99 and max request latency beside reports/s, and
//! on SQLite how busy the writer was. `--changing N` (here and in `cpu`): only the first N
//! payloads of each report change from one report to the next, the others repeat theirs (all
//! change without it, the worst case for the store). `--drop-index NAME` drops an index of the
//! fresh store before the run (an experiment, not a configuration the collector supports).
//! `--rate R`: open loop instead of each sender sending as soon as it was answered: report j of
//! sender k is due R-paced (at (j * senders + k) / R s), sent then or as soon as the sender is
//! free, and its latency is counted from when it was due. `--complete` (here and in `cpu`):
//! every report is a check's complete run (`check`, `complete`), so the store also retires the
//! check's subjects a run no longer names, as it does for the agent's scheduled runs.
//!
//! `cpu`: the same reports through the same router, but one after the other in this process
//! (`tower::ServiceExt::oneshot`, no socket), `--agents` agents in turn: a deterministic load
//! for `valgrind --tool=callgrind`, whose instruction counts do not depend on what else the
//! machine runs. Run it with two `--reports` counts and divide the difference of the totals
//! by the difference of the counts to get the instructions per report without the setup.

use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, Utc};
use rounds_collector::app::{AppState, router};
use rounds_collector::clock::{Clock, FakeClock};
use rounds_collector::config::{Overrides, validate};
use rounds_collector::store::Store;
use rounds_collector::store::sqlite::{Durability, SqliteStore};
use rounds_policies::Policy;
use rounds_protocol::{EnrollResponse, Observation, PROTOCOL_MAJOR, Report};
use serde_json::{Value, json};

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

struct Bench {
    state: AppState,
    clock: Arc<FakeClock>,
    sqlite: SqliteStore,
    db: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn bench(durability: Durability) -> Bench {
    bench_with(durability, true)
}

fn bench_with(durability: Durability, group_commit: bool) -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rounds.db");
    let mut settings = validate(Default::default(), &Overrides::default(), None).unwrap();
    settings.data_dir = dir.path().to_path_buf();
    // A benchmark sends as fast as it can: the per-agent request rate (issue 15) would answer 429.
    settings.limits.agent_requests_per_minute = u32::MAX / 2;
    settings.limits.agent_request_burst = u32::MAX / 2;
    let mut sqlite = SqliteStore::open_with(&db, durability).unwrap();
    if !group_commit {
        sqlite = sqlite.without_group_commit();
    }
    let store: Arc<dyn Store> = Arc::new(sqlite.clone());
    let clock = Arc::new(FakeClock::new(Utc::now()));
    let state = AppState::with_clock(store, settings, Arc::new(Policy::builtin().unwrap()), clock.clone());
    Bench {
        state,
        clock,
        sqlite,
        db,
        _dir: dir,
    }
}

async fn enroll(b: &Bench, n: usize) -> Vec<EnrollResponse> {
    let mut out = Vec::new();
    for i in 0..n {
        let token = rounds_collector::admin::token_create(
            b.state.store.as_ref(),
            "Bench",
            "Lab",
            std::time::Duration::from_secs(3600),
        )
        .await
        .unwrap();
        let body = json!({"protocol": PROTOCOL_MAJOR, "token": token, "hostname": format!("host-{i}"), "os": "linux", "agent_version": "0.1.0"});
        let resp = tower::ServiceExt::oneshot(
            router(b.state.clone()),
            axum::http::Request::post("/api/v1/agent/enroll")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        out.push(serde_json::from_slice(&bytes).unwrap());
    }
    out
}

fn db_bytes(b: &Bench) -> u64 {
    let conn = rusqlite::Connection::open(&b.db).unwrap();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
    std::fs::metadata(&b.db).unwrap().len()
}

fn golden() -> Vec<Observation> {
    let text = include_str!("../../agent/tests/fixtures/golden/check.json");
    let v: Value = serde_json::from_str(text).unwrap();
    serde_json::from_value(v["observations"].clone()).unwrap()
}

async fn growth(args: &[String]) {
    let agents = arg(args, "--agents", 20) as usize;
    let days = arg(args, "--days", 7);
    let every_row = args.iter().any(|a| a == "--every-row");
    let b = bench(Durability::Normal);
    let enrolled = enroll(&b, agents).await;
    let base = golden();
    // One warm-up day so the current state and the findings exist before measuring.
    let mut seq = vec![0u64; agents];
    let mut measured_from = None;
    for hour in 0..(24 * (days + 1)) {
        if hour == 24 {
            measured_from = Some(db_bytes(&b));
        }
        b.clock.advance(Duration::hours(1));
        let now = b.clock.now();
        for (i, e) in enrolled.iter().enumerate() {
            seq[i] += 1;
            let observations: Vec<Observation> = base
                .iter()
                .map(|o| {
                    let mut o = o.clone();
                    o.observed_at = now;
                    if o.kind == "disk_space" {
                        o.data["used_bytes"] = json!(1_000_000_000u64 + hour * 4096);
                    }
                    if every_row {
                        o.data["nonce"] = json!(hour);
                    }
                    o
                })
                .collect();
            let report = Report {
                protocol: 1,
                agent_id: e.agent_id.clone(),
                sequence: seq[i],
                created_at: now,
                check: None,
                complete: false,
                prev_hash: None,
                hash: None,
                dropped: Vec::new(),
                observations,
            };
            b.state.evaluator.ingest(&e.agent_id, &report).await.unwrap();
            // Heartbeats every 30 s change no row count; one per hour stands for them.
            b.state
                .evaluator
                .heartbeat(&e.agent_id, "0.1.0", now, &Default::default())
                .await
                .unwrap();
        }
    }
    let grown = db_bytes(&b) - measured_from.unwrap();
    let per_agent_day = grown as f64 / (agents as f64 * days as f64);
    println!(
        "growth: {agents} agents x {days} days, {} per run: {grown} bytes, {:.1} KB per agent per day",
        if every_row {
            "every row written"
        } else {
            "only changes written"
        },
        per_agent_day / 1000.0
    );
}

fn report_body(agent_id: &str, sequence: u64, observations: usize) -> Value {
    let now = Utc::now();
    let o: Vec<Value> = if GOLDEN.load(std::sync::atomic::Ordering::Relaxed) {
        golden_observations(sequence, observations, now)
    } else {
        (0..observations)
            .map(|i| {
                let value = if changes(i) {
                    sequence * 1000 + i as u64
                } else {
                    i as u64
                };
                json!({"kind": format!("bench.kind{}", i % 10), "subject": format!("s{i}"), "observed_at": now,
                       "status": "ok", "data": {"value": value, "name": "a realistic small payload"}})
            })
            .collect()
    };
    let mut body =
        json!({"protocol": 1, "agent_id": agent_id, "sequence": sequence, "created_at": now, "observations": o});
    if COMPLETE.load(std::sync::atomic::Ordering::Relaxed) {
        // What an agent's scheduled check run sends: the check's complete set of subjects, so
        // the store retires those it no longer names.
        body["check"] = json!("bench");
        body["complete"] = json!(true);
    }
    body
}

/// `--complete`: every report is a check's complete run (`check`, `complete`), as the agent's
/// scheduled runs are; without it, reports name no check and retire nothing.
static COMPLETE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `--golden`: reports of kinds the policy judges instead of `bench.kind*` (which no rule
/// reads): the 25 observations of a real host run (`agent/tests/fixtures/golden/check.json`),
/// then more encrypted volumes up to `--observations`; every payload still changes from one
/// report to the next (a `bench_sequence` field no rule reads), so every row is written.
static GOLDEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `--changing N`: only the first N observations of a report change their payload from one
/// report to the next (the others repeat theirs, so the store only confirms them); all of them
/// when not given, the worst case for the store.
static CHANGING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(usize::MAX);

fn changes(i: usize) -> bool {
    i < CHANGING.load(std::sync::atomic::Ordering::Relaxed)
}

fn golden_observations(sequence: u64, observations: usize, now: chrono::DateTime<Utc>) -> Vec<Value> {
    let base = golden();
    let volume = base
        .iter()
        .find(|o| o.kind == "encryption.volume")
        .expect("the golden run has a volume")
        .clone();
    (0..observations)
        .map(|i| {
            let mut o = match base.get(i) {
                Some(o) => o.clone(),
                None => {
                    let mut v = volume.clone();
                    v.subject = format!("/data{i}");
                    v.data["mount_point"] = json!(v.subject);
                    v
                }
            };
            o.observed_at = now;
            if changes(i) {
                o.data["bench_sequence"] = json!(sequence);
            }
            serde_json::to_value(o).unwrap()
        })
        .collect()
}

/// Median, p99 and max of request latencies, in milliseconds (nearest rank).
fn latency_summary(mut ms: Vec<f64>) -> (f64, f64, f64) {
    if ms.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    ms.sort_by(f64::total_cmp);
    let rank = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
    (rank(0.5), rank(0.99), ms[ms.len() - 1])
}

/// A collector of the PostgreSQL run: its own store (and so its own pool), evaluator and
/// router, as a process of its own would have.
async fn pg_collector(url: &str, b: &Bench) -> AppState {
    let store: Arc<dyn Store> = Arc::new(rounds_collector::store::postgres::PgStore::open(url).await.unwrap());
    let settings = b.state.settings.as_ref().clone();
    AppState::with_clock(store, settings, Arc::new(Policy::builtin().unwrap()), b.clock.clone())
}

async fn throughput(args: &[String]) {
    let senders = arg(args, "--senders", 8) as usize;
    let reports = arg(args, "--reports", 2000) as usize;
    let observations = arg(args, "--observations", 50) as usize;
    let collectors = arg(args, "--collectors", 1).max(1) as usize;
    let durability = if args.iter().any(|a| a == "--full") {
        Durability::Full
    } else {
        Durability::Normal
    };
    let group_commit = !args.iter().any(|a| a == "--no-group-commit");
    let mut b = bench_with(durability, group_commit);
    // PostgreSQL backend (issue 17): the same load on a fresh schema of that database, through
    // `--collectors` independent collectors on it.
    let postgres = args
        .iter()
        .position(|a| a == "--postgres")
        .and_then(|i| args.get(i + 1))
        .cloned();
    assert!(
        collectors == 1 || postgres.is_some(),
        "--collectors is for --postgres (SQLite is one process's file)"
    );
    // `--sink`: the same senders and bodies against a route that only reads the body and
    // answers, to measure what the HTTP exchange itself costs (sender included).
    let sink = args.iter().any(|a| a == "--sink");
    let mut states = vec![b.state.clone()];
    if let Some(url) = &postgres {
        let schema = format!("bench_{:016x}", rand::random::<u64>());
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
        let task = tokio::spawn(conn);
        client.batch_execute(&format!("CREATE SCHEMA {schema}")).await.unwrap();
        drop(client);
        let _ = task.await;
        let sep = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{sep}options=-csearch_path%3D{schema}");
        states.clear();
        for _ in 0..collectors {
            states.push(pg_collector(&url, &b).await);
        }
        b.state = states[0].clone();
        println!("store: PostgreSQL, schema {schema}, {collectors} collector(s)");
    }
    // Experiment only (not a supported configuration): drop an index before the run.
    if let Some(index) = args
        .iter()
        .position(|a| a == "--drop-index")
        .and_then(|i| args.get(i + 1))
    {
        let conn = rusqlite::Connection::open(&b.db).unwrap();
        conn.execute_batch(&format!("DROP INDEX {index}")).unwrap();
    }
    let enrolled = enroll(&b, senders).await;
    let mut addrs = Vec::new();
    let mut servers = Vec::new();
    for state in &states {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(listener.local_addr().unwrap());
        let app = if sink {
            axum::Router::new().route(
                "/api/v1/agent/reports",
                axum::routing::post(|body: axum::body::Bytes| async move {
                    std::hint::black_box(body.len());
                    "{}"
                }),
            )
        } else {
            router(state.clone())
        };
        servers.push(tokio::spawn(async move { axum::serve(listener, app).await.unwrap() }));
    }
    let client = reqwest::Client::new();
    // Bodies made before timing, so the figure is the collector's.
    let per_sender = reports / senders;
    let bodies: Vec<Vec<String>> = enrolled
        .iter()
        .map(|e| {
            (1..=per_sender as u64)
                .map(|s| report_body(&e.agent_id, s, observations).to_string())
                .collect()
        })
        .collect();
    let start = Instant::now();
    let cpu_before = cpu_ms();
    let (groups_before, units_before) = b.sqlite.group_commit_counts();
    let busy_before = b.sqlite.group_commit_busy();
    let mut tasks = Vec::new();
    // `--rate R`: an open-loop schedule, as a fleet sends: report j of sender k is due at
    // (j * senders + k) / R seconds after the start, whether or not earlier answers came
    // (a sender still waiting sends it late); latency counts from when it was due.
    let rate = arg(args, "--rate", 0) as f64;
    // Open loop only: reports the collector refused with 429 (its ingest gate full: offered
    // more than it stores), counted instead of failing the run.
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // Senders spread over the collectors round-robin.
    for (i, (e, bodies)) in enrolled.into_iter().zip(bodies).enumerate() {
        let client = client.clone();
        let addr = addrs[i % addrs.len()];
        let refused = Arc::clone(&refused);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(bodies.len());
            for (j, body) in bodies.into_iter().enumerate() {
                let mut sent = Instant::now();
                if rate > 0.0 {
                    let due = start + std::time::Duration::from_secs_f64((j * senders + i) as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                    sent = due;
                }
                let resp = client
                    .post(format!("http://{addr}/api/v1/agent/reports"))
                    .basic_auth(&e.agent_id, Some(&e.agent_secret))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                if rate > 0.0 && resp.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
                    refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    continue;
                }
                assert!(resp.status().is_success(), "{}", resp.status());
                latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
            }
            latencies
        }));
    }
    let mut latencies = Vec::with_capacity(reports);
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let secs = start.elapsed().as_secs_f64();
    let refused = refused.load(std::sync::atomic::Ordering::Relaxed);
    let total = per_sender * senders - refused;
    let (user, sys) = cpu_ms();
    let (user, sys) = (user - cpu_before.0, sys - cpu_before.1);
    let (median, p99, max) = latency_summary(latencies);
    let latency = format!(
        "latency median {median:.1} ms, p99 {p99:.1} ms, max {max:.1} ms; CPU {:.2} ms per report ({:.2} user + {:.2} sys, this process, senders included)",
        (user + sys) / total as f64,
        user / total as f64,
        sys / total as f64
    );
    for s in &servers {
        s.abort();
    }
    if sink {
        println!(
            "sink: {total} requests x {observations} observations, {senders} senders, body read and answered only: {secs:.2} s, {:.0} requests/s, {latency}",
            total as f64 / secs
        );
        return;
    }
    if postgres.is_some() {
        println!(
            "throughput: {total} reports x {observations} observations, {senders} senders, PostgreSQL, {collectors} collector(s): {secs:.2} s, {:.0} reports/s, {latency}",
            total as f64 / secs
        );
        return;
    }
    let offered = if rate > 0.0 {
        format!(" (open loop, {rate:.0} reports/s offered, {refused} refused with 429; latency from when each was due)")
    } else {
        String::new()
    };
    println!(
        "throughput: {total} reports x {observations} observations, {senders} senders{offered}, synchronous={:?}, group commit {}: {:.2} s, {:.0} reports/s, {latency}",
        durability,
        if group_commit { "on" } else { "off" },
        secs,
        total as f64 / secs
    );
    let (groups, units) = b.sqlite.group_commit_counts();
    let (groups, units) = (groups - groups_before, units - units_before);
    let busy = (b.sqlite.group_commit_busy() - busy_before).as_secs_f64();
    println!(
        "group commit: {units} units of work in {groups} transactions ({:.1} per transaction); writer busy {:.0} % of the run, {:.3} ms per report",
        units as f64 / groups.max(1) as f64,
        100.0 * busy / secs,
        1000.0 * busy / total as f64
    );
}

/// CPU time of this process so far, user and system, in milliseconds (`/proc/self/stat`,
/// clock ticks of 10 ms).
fn cpu_ms() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which may hold spaces) start after its `)`.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) * 10.0;
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (tick(11), tick(12))
}

async fn cpu(args: &[String]) {
    let agents = arg(args, "--agents", 8) as usize;
    let reports = arg(args, "--reports", 400) as usize;
    let observations = arg(args, "--observations", 50) as usize;
    let b = bench(Durability::Full);
    let enrolled = enroll(&b, agents).await;
    let app = router(b.state.clone());
    let auth: Vec<String> = enrolled
        .iter()
        .map(|e| {
            use base64::Engine;
            let pair = format!("{}:{}", e.agent_id, e.agent_secret);
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
        })
        .collect();
    let bodies: Vec<String> = (0..reports)
        .map(|i| report_body(&enrolled[i % agents].agent_id, (i / agents) as u64 + 1, observations).to_string())
        .collect();
    let start = Instant::now();
    for (i, body) in bodies.into_iter().enumerate() {
        let resp = tower::ServiceExt::oneshot(
            app.clone(),
            axum::http::Request::post("/api/v1/agent/reports")
                .header("content-type", "application/json")
                .header("authorization", &auth[i % agents])
                .body(axum::body::Body::from(body))
                .unwrap(),
        )
        .await
        .unwrap();
        assert!(resp.status().is_success(), "report {i}: {}", resp.status());
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "cpu: {reports} reports x {observations} observations, {agents} agents in turn, one at a time: {secs:.2} s, {:.0} reports/s",
        reports as f64 / secs
    );
}

/// The collector binary's allocator, so the figures are the shipped collector's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // reqwest is built without a default TLS provider; plain HTTP still asks for one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    GOLDEN.store(
        args.iter().any(|a| a == "--golden"),
        std::sync::atomic::Ordering::Relaxed,
    );
    COMPLETE.store(
        args.iter().any(|a| a == "--complete"),
        std::sync::atomic::Ordering::Relaxed,
    );
    if let Some(n) = args
        .iter()
        .position(|a| a == "--changing")
        .and_then(|i| args.get(i + 1))
    {
        CHANGING.store(
            n.parse().expect("--changing takes a number of observations"),
            std::sync::atomic::Ordering::Relaxed,
        );
    }
    match args.get(1).map(String::as_str) {
        Some("growth") => growth(&args).await,
        Some("throughput") => throughput(&args).await,
        Some("cpu") => cpu(&args).await,
        _ => eprintln!(
            "usage: ingest_bench growth [--agents N] [--days D] [--every-row] | throughput [--senders N] [--reports N] [--observations N] [--full] [--no-group-commit] [--sink] [--postgres URL [--collectors N]] | cpu [--agents N] [--reports N] [--observations N]; --golden: kinds the policy judges; --complete: reports are complete check runs; --changing N: only N payloads of a report change"
        ),
    }
}
