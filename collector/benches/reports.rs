//! Report generation time: a 30-day report of a 25-machine practice (issue 14's target: under
//! 2 s). Seeds a store with 30 days of daily reports per machine, evaluated by the real
//! evaluator (with backup failures, EHR outages, a tamper event and silent days spread over
//! the machines), then times building the content and issuing each format, several times.
//!
//! `cargo bench -p rounds-collector --bench reports [-- DIR]`: the database lives in DIR
//! (default `target/report-bench`).

#[path = "../tests/it/report_seed.rs"]
mod report_seed;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, NaiveDate, Utc};
use report_seed::{Machine, Trouble};
use rounds_collector::app::AppState;
use rounds_collector::clock::FakeClock;
use rounds_collector::config::{Overrides, validate};
use rounds_collector::reports::{Format, Period, ReportService};
use rounds_collector::store::Store;
use rounds_collector::store::sqlite::SqliteStore;
use rounds_policies::{Pack, Policy};

const MACHINES: usize = 25;
const DAYS: i64 = 30;
const RUNS: usize = 5;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn machines() -> Vec<Machine> {
    (0..MACHINES)
        .map(|i| Machine {
            agent_id: format!("bench-{i:02}"),
            hostname: format!("bench-host-{i:02}"),
            trouble: Trouble {
                backup_fails: if i % 5 == 0 {
                    vec![(i as i64) % 28, (i as i64) % 28 + 1]
                } else {
                    vec![]
                },
                backup_error: "repository locked".into(),
                ehr_down: if i % 4 == 0 { vec![(i as i64 * 3) % 29] } else { vec![] },
                ehr_cause: "connection timed out".into(),
                tamper_day: (i == 7).then_some(9),
                unencrypted_data: i % 6 == 0,
                silent: if i % 9 == 0 { vec![14, 15] } else { vec![] },
            },
        })
        .collect()
}

fn stats(label: &str, mut ms: Vec<f64>) -> f64 {
    ms.sort_by(|a, b| a.total_cmp(b));
    let median = ms[ms.len() / 2];
    println!(
        "{label:<28} median {median:>8.1} ms   min {:>8.1} ms   max {:>8.1} ms   ({} runs)",
        ms[0],
        ms[ms.len() - 1],
        ms.len()
    );
    median
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/report-bench"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rounds.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let mut settings = validate(Default::default(), &Overrides::default(), None).unwrap();
    settings.data_dir = dir.clone();
    let start = at("2026-11-01T00:00:00Z");
    let clock = Arc::new(FakeClock::new(start));
    let state = AppState::with_clock(
        Arc::clone(&store),
        settings,
        Arc::new(Policy::builtin().unwrap()),
        clock.clone(),
    );
    let ms = machines();
    let t = Instant::now();
    report_seed::enroll(
        store.as_ref(),
        "Bench Practice",
        "Main",
        &ms,
        at("2026-10-31T12:00:00Z"),
    )
    .await;
    let reports_in = report_seed::history(&state.evaluator, &clock, &ms, start, DAYS, 1).await;
    let changes = store
        .finding_changes(
            &rounds_collector::store::Scope {
                role: rounds_collector::store::Role::Admin,
                practice_id: None,
            },
            &rounds_collector::store::ChangeQuery {
                agent_id: None,
                practice_id: None,
                from: start,
                to: at("2026-12-01T00:00:00Z"),
            },
        )
        .await
        .unwrap()
        .len();
    println!(
        "seeded {MACHINES} machines x {DAYS} days: {reports_in} reports, {changes} finding changes in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    clock.set(at("2026-12-01T08:00:00Z"));

    let service = ReportService::new(Arc::clone(&store), Arc::new(Pack::builtin().unwrap()), clock.clone());
    let practice = service.practice("Bench Practice").await.unwrap();
    let period = Period {
        from: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
        to: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
    };
    let mut content_ms = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let c = service.content(&practice, period).await.unwrap();
        content_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(c.inventory.len(), MACHINES);
    }
    stats("content (store reads+model)", content_ms);
    let mut worst = 0.0f64;
    for format in [Format::Pdf, Format::Html, Format::Csv] {
        let mut ms = Vec::new();
        let mut size = 0;
        for _ in 0..RUNS {
            let t = Instant::now();
            let issued = service
                .issue(&practice, period, format, "bench", "report.issue")
                .await
                .unwrap();
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            size = issued.bytes.len();
        }
        let median = stats(&format!("issue {} ({} KiB)", format.as_str(), size / 1024), ms);
        worst = worst.max(median);
        if format == Format::Pdf {
            let pdf = service
                .issue(&practice, period, format, "bench", "report.issue")
                .await
                .unwrap();
            std::fs::write(dir.join("bench-report.pdf"), &pdf.bytes).unwrap();
        }
    }
    println!(
        "slowest format: {worst:.1} ms (target: under 2000 ms) -> {}",
        if worst < 2000.0 { "met" } else { "NOT met" }
    );
}
