//! Benchmark: the spool's append rate with fsync, as `run` appends a check's report (one
//! observation of about 1.5 KiB, like an inventory). Each append is written and `sync_data`d
//! before it returns. Also times `pending` + `ack_through` of the same reports, the sender's
//! side.
//!
//! Run: `cargo bench -p rounds-agent --bench spool` (state dir in `$TMPDIR`, else /tmp; pass
//! a directory as the first argument to measure another file system).

use std::sync::Arc;
use std::time::Instant;

use rounds_agent::clock::SystemClock;
use rounds_agent::spool::{Priority, Spool, SpoolOptions};
use rounds_protocol::Observation;

const REPORTS: u64 = 2000;

fn main() {
    let base = std::env::args()
        .nth(1)
        .filter(|a| !a.starts_with('-'))
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(&base).expect("temp dir");
    let spool = Spool::open(
        SpoolOptions::new(dir.path().to_path_buf(), "agt_bench".into(), Default::default(), 1),
        Arc::new(SystemClock),
    )
    .expect("spool");
    let obs = vec![Observation::error(
        "inventory",
        "host",
        chrono::Utc::now(),
        "x".repeat(1500),
    )];
    let start = Instant::now();
    for _ in 0..REPORTS {
        spool
            .append(Some("inventory"), true, Priority::Routine, obs.clone())
            .expect("append");
    }
    let append = start.elapsed();
    let start = Instant::now();
    loop {
        let batch = spool.pending(100, 768 * 1024).expect("pending");
        let Some(last) = batch.last() else { break };
        spool.ack_through(last.report.sequence).expect("ack");
    }
    let drain = start.elapsed();
    println!(
        "spool append with fsync: {REPORTS} reports in {:.2} s = {:.0} reports/s ({:.2} ms each), in {}",
        append.as_secs_f64(),
        REPORTS as f64 / append.as_secs_f64(),
        append.as_secs_f64() * 1000.0 / REPORTS as f64,
        base.display()
    );
    println!(
        "spool read + acknowledge in batches of 100: {:.0} reports/s",
        REPORTS as f64 / drain.as_secs_f64()
    );
}
