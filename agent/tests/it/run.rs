//! `run`: heartbeats and reports reach the collector authenticated, sequences are never reused,
//! rejected reports are dropped, failed ones retried, and cancellation stops everything.

use std::str::FromStr;
use std::time::Duration;

use rounds_agent::backoff::RetryPolicy;
use rounds_agent::config::{AgentSettings, ScheduledCheck};
use rounds_agent::{AgentStatus, RunOptions, checks, run, status};
use rounds_protocol::paths;
use tokio_util::sync::CancellationToken;

use crate::support::{AGENT_ID, AGENT_SECRET, Ca, FakeCollector, base64, enroll_into, healthy};

fn settings(heartbeat_ms: u64, schedule: &str) -> AgentSettings {
    AgentSettings {
        heartbeat_interval: Duration::from_millis(heartbeat_ms),
        checks: vec![ScheduledCheck {
            check: checks::by_name("inventory").unwrap(),
            schedule: cron::Schedule::from_str(schedule).unwrap(),
        }],
        // No network baseline: its probe reports would be counted with the check's.
        config: std::sync::Arc::new({
            let mut c = rounds_agent_config::AgentConfig::default();
            c.probes.baseline = false;
            c
        }),
    }
}

fn fast(state_dir: &std::path::Path, settings: AgentSettings) -> RunOptions {
    let mut opts = RunOptions::new(state_dir, settings);
    opts.retry = RetryPolicy {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(100),
    };
    opts
}

/// Runs the agent in the background; returns its shutdown token and handle.
fn start(
    opts: RunOptions,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<(), rounds_agent::RunError>>,
) {
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(run(opts, shutdown.clone()));
    (shutdown, handle)
}

async fn stop(shutdown: CancellationToken, handle: tokio::task::JoinHandle<Result<(), rounds_agent::RunError>>) {
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), handle)
        .await
        .expect("run stops promptly when cancelled")
        .unwrap()
        .unwrap();
}

const HOURLY: &str = "0 0 * * * *";
const EVERY_SECOND: &str = "* * * * * *";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_and_a_report_arrive_at_start_and_are_recorded() {
    let ca = Ca::new("Rounds CA");
    let collector = FakeCollector::start(&ca, healthy).await;
    let tmp = tempfile::tempdir().unwrap();
    let state_dir = tmp.path().join("state");
    enroll_into(&collector, &ca, &state_dir).await;

    let (shutdown, handle) = start(fast(&state_dir, settings(100, HOURLY)));
    collector
        .wait_for("two heartbeats and a report", |c| {
            c.on(paths::HEARTBEAT).len() >= 2 && !c.on(paths::REPORTS).is_empty()
        })
        .await;
    // The report is recorded after it is acknowledged; give the status write a moment.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let AgentStatus::Enrolled(s) = status(&state_dir).unwrap()
            && s.last_report_sequence == Some(1)
            && s.last_heartbeat_at.is_some()
        {
            assert_eq!(s.next_sequence, 2);
            assert_eq!(s.agent_id, AGENT_ID);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "status never recorded: {:?}",
            status(&state_dir)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop(shutdown, handle).await;

    let auth = format!("Basic {}", base64(format!("{AGENT_ID}:{AGENT_SECRET}").as_bytes()));
    for req in collector
        .on(paths::HEARTBEAT)
        .iter()
        .chain(collector.on(paths::REPORTS).iter())
    {
        assert_eq!(req.header("authorization"), Some(auth.as_str()), "{}", req.path);
        assert_eq!(req.json()["agent_id"], AGENT_ID);
        assert_eq!(req.json()["protocol"], rounds_protocol::PROTOCOL_MAJOR);
    }
    let report = &collector.on(paths::REPORTS)[0].json();
    assert_eq!(report["sequence"], 1);
    let observations = report["observations"].as_array().unwrap();
    assert!(observations.iter().any(|o| o["kind"] == "inventory"), "{report}");
    assert_eq!(
        collector.report_sequences(),
        vec![1],
        "hourly: one report at start only"
    );

    // A second run continues the sequence.
    let (shutdown, handle) = start(fast(&state_dir, settings(60_000, HOURLY)));
    collector
        .wait_for("a second report", |c| c.on(paths::REPORTS).len() >= 2)
        .await;
    stop(shutdown, handle).await;
    assert_eq!(collector.report_sequences(), vec![1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_report_is_dropped_not_retried() {
    let ca = Ca::new("Rounds CA");
    let collector = FakeCollector::start(&ca, |req| {
        if req.path == paths::REPORTS && req.json()["sequence"] == 1 {
            (422, r#"{"error":"report too large"}"#.into())
        } else {
            healthy(req)
        }
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let state_dir = tmp.path().join("state");
    enroll_into(&collector, &ca, &state_dir).await;

    let (shutdown, handle) = start(fast(&state_dir, settings(60_000, EVERY_SECOND)));
    collector
        .wait_for("report 2", |c| c.report_sequences().contains(&2))
        .await;
    stop(shutdown, handle).await;

    let seqs = collector.report_sequences();
    assert_eq!(seqs.iter().filter(|&&s| s == 1).count(), 1, "{seqs:?}");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order, no resend: {seqs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_report_is_retried_until_acknowledged() {
    let ca = Ca::new("Rounds CA");
    let failures = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let f = failures.clone();
    let collector = FakeCollector::start(&ca, move |req| {
        if req.path == paths::REPORTS && f.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 3 {
            (503, r#"{"error":"database busy"}"#.into())
        } else {
            healthy(req)
        }
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let state_dir = tmp.path().join("state");
    enroll_into(&collector, &ca, &state_dir).await;

    let (shutdown, handle) = start(fast(&state_dir, settings(60_000, HOURLY)));
    collector
        .wait_for("four attempts", |c| c.on(paths::REPORTS).len() >= 4)
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !matches!(status(&state_dir).unwrap(), AgentStatus::Enrolled(ref s) if s.last_report_sequence == Some(1)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "report 1 never recorded as delivered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop(shutdown, handle).await;
    assert_eq!(
        collector.report_sequences(),
        vec![1, 1, 1, 1],
        "the same report, resent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_keep_the_report_and_keep_trying() {
    let ca = Ca::new("Rounds CA");
    let collector = FakeCollector::start(&ca, |req| {
        if req.path == paths::ENROLL {
            healthy(req)
        } else {
            (401, r#"{"error":"unknown agent"}"#.into())
        }
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let state_dir = tmp.path().join("state");
    enroll_into(&collector, &ca, &state_dir).await;

    let (shutdown, handle) = start(fast(&state_dir, settings(50, HOURLY)));
    collector
        .wait_for("three report attempts", |c| c.on(paths::REPORTS).len() >= 3)
        .await;
    stop(shutdown, handle).await;
    assert!(collector.report_sequences().iter().all(|&s| s == 1));
    let AgentStatus::Enrolled(s) = status(&state_dir).unwrap() else {
        panic!("enrolled")
    };
    assert_eq!(
        (s.last_heartbeat_at, s.last_report_at),
        (None, None),
        "nothing was acknowledged"
    );
}

#[tokio::test]
async fn run_without_enrollment_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let err = run(
        RunOptions::new(tmp.path(), AgentSettings::default()),
        CancellationToken::new(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("not enrolled") && err.contains("rounds-agent enroll"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_while_the_collector_is_down_stops_promptly() {
    let ca = Ca::new("Rounds CA");
    let collector = FakeCollector::start(&ca, healthy).await;
    let tmp = tempfile::tempdir().unwrap();
    let state_dir = tmp.path().join("state");
    enroll_into(&collector, &ca, &state_dir).await;
    drop(collector);

    let mut opts = RunOptions::new(&state_dir, settings(100, HOURLY));
    opts.retry = RetryPolicy {
        initial: Duration::from_secs(30),
        max: Duration::from_secs(60),
    };
    let (shutdown, handle) = start(opts);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = std::time::Instant::now();
    stop(shutdown, handle).await;
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
}

#[tokio::test]
async fn a_zero_heartbeat_interval_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let settings = AgentSettings {
        heartbeat_interval: Duration::ZERO,
        ..AgentSettings::default()
    };
    let err = run(RunOptions::new(tmp.path(), settings), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("heartbeat interval"), "{err}");
}
