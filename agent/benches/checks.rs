//! Benchmark: one full run of every host check on this machine, as `rounds-agent` runs them
//! (concurrently, each on the blocking pool under its own timeout). Target: under 200 ms of wall
//! time. Also prints each check's own time, run alone, to show which one dominates.
//!
//! Run: `cargo bench -p rounds-agent --bench checks` (add `-- --show` to print the observations).

use std::time::{Duration, Instant};

use rounds_agent::checks::{Host, all, run_all};

const RUNS: usize = 20;
const BUDGET: Duration = Duration::from_millis(200);

fn main() {
    let show = std::env::args().any(|a| a == "--show");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let checks = all();

    // Warm-up run (page cache, first process spawns); its observations are shown on request.
    let first = runtime.block_on(run_all(&checks, &Host::system()));
    if show {
        for o in &first {
            match &o.error {
                None => println!("ok    {:<18} {:<14} {}", o.kind, o.subject, o.data),
                Some(e) => println!("error {:<18} {:<14} {e}", o.kind, o.subject),
            }
        }
    }

    let mut times = Vec::with_capacity(RUNS);
    let mut count = 0;
    for _ in 0..RUNS {
        let host = Host::system();
        let start = Instant::now();
        let obs = runtime.block_on(run_all(&checks, &host));
        times.push(start.elapsed());
        count = std::hint::black_box(obs).len();
    }
    times.sort();
    let median = times[RUNS / 2];
    println!(
        "all {} checks, {count} observations: min {:.1} ms, median {:.1} ms, max {:.1} ms over {RUNS} runs (budget {} ms)",
        checks.len(),
        ms(times[0]),
        ms(median),
        ms(times[RUNS - 1]),
        BUDGET.as_millis()
    );

    let host = Host::system();
    for check in &checks {
        let start = Instant::now();
        std::hint::black_box(check.run(&host));
        println!("  {:<12} {:>7.1} ms alone", check.name(), ms(start.elapsed()));
    }

    if median > BUDGET {
        eprintln!(
            "median {:.1} ms is over the {} ms budget",
            ms(median),
            BUDGET.as_millis()
        );
        std::process::exit(1);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
