//! Benchmark: the audit-log check watching 50 files while 1,000 lines a second in total are
//! appended to them (bursts of 100 lines every 100 ms, round-robin), with the watcher
//! (`rounds_agent::watch::Watcher` on the check's `watch_paths`, 50 ms settle) waking a re-run
//! after each burst, as the run loop does. Target: under 2% of one core for watching and
//! checking (the writer thread's own time is measured and left out).
//!
//! Run: `cargo bench -p rounds-agent --bench audit` (add `-- --secs N`, default 30;
//! `-- --min-interval-ms N` to keep N ms between runs as a run loop may; `-- --per-run` for the
//! time of one run alone).

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use rounds_agent::checks::audit::AuditCheck;
use rounds_agent::checks::{Check, Host, SystemRunner};
use rounds_agent::watch::Watcher;
use rounds_agent_config::audit_log::AuditLogSpec;

const FILES: usize = 50;
const LINES_PER_SEC: usize = 1_000;
const BUDGET_PERCENT: f64 = 2.0;

/// Nanoseconds this thread has run (`/proc/thread-self/schedstat`).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Nanoseconds every thread of this process has run.
fn process_cpu_ns() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
                .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: u64 = args
        .iter()
        .position(|a| a == "--secs")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(30);
    // The shortest time between two runs, as a run loop may keep (0: after every burst).
    let min_interval = Duration::from_millis(
        args.iter()
            .position(|a| a == "--min-interval-ms")
            .and_then(|i| args.get(i + 1)?.parse().ok())
            .unwrap_or(0),
    );
    let root = tempfile::tempdir().expect("temp dir");
    let state = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(root.path().join("var/log/ehr")).unwrap();
    let specs: Vec<AuditLogSpec> = (0..FILES)
        .map(|i| {
            let p = format!("/var/log/ehr/app{i:02}.log");
            std::fs::write(root.path().join(p.trim_start_matches('/')), "").unwrap();
            AuditLogSpec::file(p)
        })
        .collect();
    let host = |now| Host {
        root: root.path().to_path_buf(),
        runner: Arc::new(SystemRunner),
        now,
        live: false,
        state_dir: Some(state.path().to_path_buf()),
    };
    let check = AuditCheck::new(specs);
    check.run(&host(Utc::now()));

    if args.iter().any(|a| a == "--per-run") {
        // Time one check run after two lines were appended to every file, without the watcher.
        let mut times = Vec::new();
        for n in 0..200 {
            for i in 0..FILES {
                let p = root.path().join(format!("var/log/ehr/app{i:02}.log"));
                let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
                writeln!(
                    f,
                    "2026-12-01T10:00:00.{n:06}Z INFO request handled in 12 ms by worker 3 status=200"
                )
                .unwrap();
                writeln!(
                    f,
                    "2026-12-01T10:00:00.{n:06}Z INFO request handled in 12 ms by worker 4 status=200"
                )
                .unwrap();
            }
            let start = Instant::now();
            std::hint::black_box(check.run(&host(Utc::now())));
            times.push(start.elapsed().as_nanos() as u64);
        }
        times.sort_unstable();
        println!(
            "one check run over {FILES} grown files: median {:.2} ms wall",
            times[100] as f64 / 1e6
        );
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let dir = root.path().join("var/log/ehr");
    let writer_stop = Arc::clone(&stop);
    let writer = std::thread::spawn(move || {
        let burst = LINES_PER_SEC / 10;
        let mut files: Vec<std::fs::File> = (0..FILES)
            .map(|i| {
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(dir.join(format!("app{i:02}.log")))
                    .unwrap()
            })
            .collect();
        let mut n = 0usize;
        let mut next = Instant::now();
        while !writer_stop.load(Ordering::Relaxed) {
            for _ in 0..burst {
                let f = &mut files[n % FILES];
                writeln!(
                    f,
                    "2026-12-01T10:00:00.{n:06}Z INFO request handled in 12 ms by worker {} status=200",
                    n % 7
                )
                .unwrap();
                n += 1;
            }
            next += Duration::from_millis(100);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        (n, thread_cpu_ns())
    });

    let (runs, cpu_ns, wall) = runtime.block_on(async {
        let mut w = Watcher::new(&check.watch_paths(&host(Utc::now())), Duration::from_millis(50)).unwrap();
        let cpu0 = process_cpu_ns();
        let start = Instant::now();
        let mut runs = 0u32;
        while start.elapsed() < Duration::from_secs(secs) {
            if tokio::time::timeout(Duration::from_secs(1), w.changed()).await.is_ok() {
                let run = Instant::now();
                std::hint::black_box(check.run(&host(Utc::now())));
                runs += 1;
                tokio::time::sleep(min_interval.saturating_sub(run.elapsed())).await;
            }
        }
        (runs, process_cpu_ns() - cpu0, start.elapsed())
    });
    stop.store(true, Ordering::Relaxed);
    let (lines, writer_ns) = writer.join().unwrap();
    let mine = cpu_ns.saturating_sub(writer_ns);
    let percent = mine as f64 / wall.as_nanos() as f64 * 100.0;
    let size: u64 = (0..FILES)
        .map(|i| std::fs::metadata(root.path().join(format!("var/log/ehr/app{i:02}.log"))).map_or(0, |m| m.len()))
        .sum();
    println!(
        "{FILES} files, {lines} lines appended ({:.0}/s, {:.1} MiB in all) over {:.1} s: {runs} check runs, \
         {:.2}% of one core for watching and checking (writer {:.2}%; budget {BUDGET_PERCENT}%)",
        lines as f64 / wall.as_secs_f64(),
        size as f64 / (1 << 20) as f64,
        wall.as_secs_f64(),
        percent,
        writer_ns as f64 / wall.as_nanos() as f64 * 100.0
    );
    if percent > BUDGET_PERCENT {
        eprintln!("{percent:.2}% is over the {BUDGET_PERCENT}% budget");
        std::process::exit(1);
    }
}
