//! Ingest throughput of the SQLite store with `synchronous = FULL` (the default: an acknowledged
//! report survives a power loss) against `NORMAL`, one report per unit of work (as
//! `POST /api/v1/agent/reports`) and 100 per unit of work (as a batch).
//!
//! `cargo bench -p rounds-collector --bench ingest [-- DIR]`: the database lives in DIR (default
//! `target/ingest-bench`), which must be on a real disk for the fsyncs to count (not tmpfs).

use std::path::PathBuf;
use std::time::Instant;

use chrono::Utc;
use rounds_collector::delivery::{chain_seed, digest};
use rounds_collector::store::sqlite::{Durability, SqliteStore};
use rounds_collector::store::{IncomingReport, NewAgent, NewToken, Store};
use rounds_protocol::{Observation, Report, obs};

const REPORTS: u64 = 1000;

fn reports(agent_id: &str, n: u64) -> Vec<Report> {
    let mut prev = chain_seed(agent_id);
    (1..=n)
        .map(|sequence| {
            let now = Utc::now();
            let inv = obs::Inventory {
                hostname: "bench".into(),
                os_family: "linux".into(),
                ..Default::default()
            };
            let mut r = Report {
                protocol: 1,
                agent_id: agent_id.into(),
                sequence,
                created_at: now,
                check: Some("inventory".into()),
                complete: true,
                prev_hash: Some(prev.clone()),
                hash: None,
                dropped: vec![],
                observations: vec![Observation::ok("host", now, &inv)],
            };
            r.hash = Some(digest(&r));
            prev = r.hash.clone().unwrap();
            r
        })
        .collect()
}

async fn run(dir: &std::path::Path, durability: Durability, per_tx: usize) -> f64 {
    let path = dir.join(format!("{durability:?}-{per_tx}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let store = SqliteStore::open_with(&path, durability).unwrap();
    let now = Utc::now();
    store
        .create_token(
            NewToken {
                practice: "Bench".into(),
                site: "Lab".into(),
                token_hash: "t".into(),
                expires_at: now + chrono::Duration::hours(1),
            },
            now,
        )
        .await
        .unwrap();
    store
        .enroll(
            "t",
            NewAgent {
                agent_id: "a1".into(),
                secret_hash: "s".into(),
                hostname: "bench".into(),
                os: "linux".into(),
                agent_version: "0".into(),
            },
            now,
        )
        .await
        .unwrap();
    let all = reports("a1", REPORTS);
    let start = Instant::now();
    for chunk in all.chunks(per_tx) {
        let mut tx = store.begin().await.unwrap();
        for r in chunk {
            let incoming = IncomingReport {
                report: r,
                received_at: now,
                future_after: now + chrono::Duration::minutes(5),
            };
            tx.deliver_report("a1", incoming).await.unwrap();
        }
        tx.commit().await.unwrap();
    }
    REPORTS as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let dir = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/ingest-bench"));
    std::fs::create_dir_all(&dir).unwrap();
    for per_tx in [1, 100] {
        for durability in [Durability::Normal, Durability::Full] {
            let mut runs: Vec<f64> = Vec::new();
            for _ in 0..3 {
                runs.push(run(&dir, durability, per_tx).await);
            }
            runs.sort_by(f64::total_cmp);
            println!(
                "ingest: synchronous={durability:?}, {per_tx} report(s) per transaction: median {:.0} reports/s (runs {:.0}, {:.0}, {:.0})",
                runs[1], runs[0], runs[1], runs[2]
            );
        }
    }
}
