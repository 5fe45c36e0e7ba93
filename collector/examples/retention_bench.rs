//! Retention benchmark (issue 17): one retention run over `--agents` agents (default 1,000)
//! with `--days` days (default 60) of observation history on the SQLite store, the default
//! `[retention]` settings (raw rows older than 30 days rolled up hourly and removed).
//!
//! History: per agent and day, `--changes` (default 6) payload changes of an EHR probe and one
//! of the inventory, written straight into the `observations` table in one transaction (the
//! ingest path is not what is measured). Then one `RetentionService::run` on a fake clock at
//! the end of the history; prints the time, the rows rolled up, the rollup rows written, the
//! units of work and the rows left.
//!
//! ```sh
//! cargo run --release -p rounds-collector --example retention_bench -- --agents 1000 --days 60
//! ```

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use rounds_collector::clock::FakeClock;
use rounds_collector::config::RetentionSettings;
use rounds_collector::retention::RetentionService;
use rounds_collector::secrets::hash_secret;
use rounds_collector::store::sqlite::SqliteStore;
use rounds_collector::store::{NewAgent, NewToken, Store};

fn arg(args: &[String], name: &str, default: i64) -> i64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let agents = arg(&args, "--agents", 1000);
    let days = arg(&args, "--days", 60);
    let changes = arg(&args, "--changes", 6).max(1);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("rounds.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path)?);
    let end: DateTime<Utc> = "2026-06-01T00:00:00Z".parse()?;
    let start = end - Duration::days(days);

    let seeding = Instant::now();
    for a in 0..agents {
        let token = format!("tok-{a}");
        store
            .create_token(
                NewToken {
                    practice: format!("practice-{}", a / 25),
                    site: "main".into(),
                    token_hash: hash_secret(&token),
                    expires_at: end + Duration::days(1),
                },
                start,
            )
            .await?;
        store
            .enroll(
                &hash_secret(&token),
                NewAgent {
                    agent_id: format!("agent-{a:05}"),
                    secret_hash: hash_secret("secret"),
                    hostname: format!("host-{a}"),
                    os: "linux".into(),
                    agent_version: "0.1.0".into(),
                },
                start,
            )
            .await?;
    }
    let mut rows = 0u64;
    {
        let mut conn = rusqlite::Connection::open(&path)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare(
                "INSERT INTO observations (agent_id, sequence, kind, subject, observed_at, status, data, error, future_dated)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'ok', ?6, NULL, 0)",
            )?;
            for a in 0..agents {
                let agent = format!("agent-{a:05}");
                let mut seq = 0i64;
                for day in 0..days {
                    let base = start + Duration::days(day);
                    for c in 0..changes {
                        seq += 1;
                        let t = base + Duration::minutes(c * 24 * 60 / changes + a % 60);
                        let data = format!("{{\"up\":{},\"latency_ms\":{}}}", c % 5 != 4, 20 + (seq % 17));
                        insert.execute(rusqlite::params![
                            agent,
                            seq,
                            "ehr.probe",
                            "emr",
                            t.timestamp_millis(),
                            data
                        ])?;
                        rows += 1;
                    }
                    seq += 1;
                    let t = base + Duration::hours(3);
                    let data = format!("{{\"hostname\":\"host-{a}\",\"uptime_days\":{day}}}");
                    insert.execute(rusqlite::params![
                        agent,
                        seq,
                        "inventory",
                        "host",
                        t.timestamp_millis(),
                        data
                    ])?;
                    rows += 1;
                }
            }
        }
        tx.commit()?;
    }
    println!(
        "seeded {agents} agents x {days} days: {rows} observation rows in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );

    let clock = Arc::new(FakeClock::new(end));
    let service = RetentionService::new(Arc::clone(&store), clock, RetentionSettings::default());
    let preview = Instant::now();
    let would = service.preview().await?;
    println!(
        "dry run: {:.2} s, would roll up {} observation rows",
        preview.elapsed().as_secs_f64(),
        would.removed("observations")
    );
    let run = Instant::now();
    let report = service.run().await?;
    let secs = run.elapsed().as_secs_f64();
    let left: i64 =
        rusqlite::Connection::open(&path)?.query_row("SELECT COUNT(*) FROM observations", [], |r| r.get(0))?;
    let rollups: i64 =
        rusqlite::Connection::open(&path)?.query_row("SELECT COUNT(*) FROM observation_rollups", [], |r| r.get(0))?;
    println!(
        "retention run: {secs:.2} s, {} observation rows rolled up ({:.0} rows/s), {} rollup rows written, {} units of work; {left} raw rows and {rollups} rollup rows left",
        report.removed("observations"),
        report.removed("observations") as f64 / secs.max(1e-9),
        report.rollups_written,
        report.batches
    );
    Ok(())
}
