//! `run`: heartbeats and reports reach the collector authenticated, sequences are never reused,
//! rejected reports are dropped, failed ones retried, and cancellation stops everything.

use std::str::FromStr;
use std::time::Duration;

use rounds_agent::backoff::RetryPolicy;
use rounds_agent::config::{AgentSettings, ScheduledCheck};
use rounds_agent::{AgentStatus, RunOptions, checks, run, status};
use rounds_protocol::paths;
use tokio_util::sync::CancellationToken;

use crate::support::{AGENT_ID, AGENT_SECRET, Ca, FakeCollector, Recorded, base64, enroll_into, healthy};

/// A fake collector answering through `handler`, and an agent enrolled with it.
struct Enrolled {
    ca: Ca,
    collector: FakeCollector,
    tmp: tempfile::TempDir,
    state_dir: std::path::PathBuf,
    identity: rounds_agent::Identity,
}

async fn enrolled(handler: impl Fn(&Recorded) -> (u16, String) + Send + Sync + 'static) -> Enrolled {
    let ca = Ca::new("Rounds CA");
    let collector = FakeCollector::start(&ca, handler).await;
    let tmp = tempfile::tempdir().unwrap();
    let state_dir = tmp.path().join("state");
    let identity = enroll_into(&collector, &ca, &state_dir).await;
    Enrolled {
        ca,
        collector,
        tmp,
        state_dir,
        identity,
    }
}

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
    opts.clock = std::sync::Arc::new(rounds_agent::clock::TokioClock::starting_at(chrono::Utc::now()));
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
/// Runs at start and not again while a test lasts: under a paused clock, time races ahead
/// while the agent waits on its disk, and an hourly run could add a report the test does not
/// expect.
const ONLY_AT_START: &str = "0 0 0 1 1 * 2099";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_and_a_report_arrive_at_start_and_are_recorded() {
    let e = enrolled(healthy).await;
    let (collector, state_dir) = (&e.collector, &e.state_dir);

    let (shutdown, handle) = start(fast(state_dir, settings(100, HOURLY)));
    collector
        .wait_for("two heartbeats and a report", |c| {
            c.on(paths::HEARTBEAT).len() >= 2 && !c.on(paths::REPORTS).is_empty()
        })
        .await;
    // The report is recorded after it is acknowledged; give the status write a moment.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let AgentStatus::Enrolled(s) = status(state_dir).unwrap()
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
            status(state_dir)
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
    let (shutdown, handle) = start(fast(state_dir, settings(60_000, HOURLY)));
    collector
        .wait_for("a second report", |c| c.on(paths::REPORTS).len() >= 2)
        .await;
    stop(shutdown, handle).await;
    assert_eq!(collector.report_sequences(), vec![1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_report_is_dropped_not_retried() {
    let e = enrolled(|req| {
        if req.path == paths::REPORTS && req.json()["sequence"] == 1 {
            (422, r#"{"error":"report too large"}"#.into())
        } else {
            healthy(req)
        }
    })
    .await;
    let (collector, state_dir) = (&e.collector, &e.state_dir);

    let (shutdown, handle) = start(fast(state_dir, settings(60_000, EVERY_SECOND)));

    collector
        .wait_for("the gap marker", |c| {
            c.reports().iter().any(|r| r["dropped"][0]["reason"] == "rejected")
        })
        .await;
    stop(shutdown, handle).await;

    let seqs = collector.report_sequences();
    assert_eq!(seqs.iter().filter(|&&s| s == 1).count(), 1, "{seqs:?}");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order, no resend: {seqs:?}");
    let marker = collector
        .reports()
        .into_iter()
        .find(|r| !r["dropped"].is_null())
        .unwrap();
    assert_eq!(
        marker["dropped"],
        serde_json::json!([{"first": 1, "last": 1, "reason": "rejected"}])
    );
    let AgentStatus::Enrolled(s) = status(state_dir).unwrap() else {
        panic!("enrolled")
    };
    let last_error = s.last_error.unwrap_or_default();
    assert!(
        last_error.contains("report 1 refused") && last_error.contains("422"),
        "{last_error}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_report_is_retried_until_acknowledged_waiting_for_retry_after() {
    let failures = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let f = failures.clone();
    let attempts = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let a = attempts.clone();
    let e = enrolled(move |req| {
        if req.path == paths::REPORTS {
            a.lock().unwrap().push(tokio::time::Instant::now());
        }
        if req.path == paths::REPORTS && f.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 3 {
            // The fake adds `Retry-After: 30` to a 503.
            (503, r#"{"error":"database busy"}"#.into())
        } else {
            healthy(req)
        }
    })
    .await;
    let (collector, state_dir) = (&e.collector, &e.state_dir);

    let (shutdown, handle) = start(fast(state_dir, settings(60_000, ONLY_AT_START)));
    collector
        .wait_for("four attempts", |c| c.on(paths::REPORTS).len() >= 4)
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let delivered = loop {
        let AgentStatus::Enrolled(s) = status(state_dir).unwrap() else {
            panic!("enrolled")
        };
        if let Some(sequence) = s.last_report_sequence {
            break sequence;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no report recorded as delivered; last error: {:?}",
            s.last_error
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(delivered, 1, "report 1 recorded as delivered");
    stop(shutdown, handle).await;
    assert_eq!(
        collector.report_sequences(),
        vec![1, 1, 1, 1],
        "the same report, resent"
    );
    let attempts = attempts.lock().unwrap().clone();
    for w in attempts.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= Duration::from_secs(30) && gap <= Duration::from_millis(37_600),
            "Retry-After 30 s honoured, with at most a quarter more: {gap:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_keep_the_report_and_keep_trying() {
    let e = enrolled(|req| {
        if req.path == paths::ENROLL {
            healthy(req)
        } else {
            (401, r#"{"error":"unknown agent"}"#.into())
        }
    })
    .await;
    let (collector, state_dir) = (&e.collector, &e.state_dir);

    let (shutdown, handle) = start(fast(state_dir, settings(50, HOURLY)));
    collector
        .wait_for("three report attempts", |c| c.on(paths::REPORTS).len() >= 3)
        .await;
    stop(shutdown, handle).await;
    assert!(collector.report_sequences().iter().all(|&s| s == 1));
    let AgentStatus::Enrolled(s) = status(state_dir).unwrap() else {
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
    let Enrolled {
        collector,
        state_dir,
        tmp: _tmp,
        ..
    } = enrolled(healthy).await;
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

/// The chain of the reports received: every `prev_hash` is the `hash` of the report before.
fn assert_chained(reports: &[serde_json::Value]) {
    for w in reports.windows(2) {
        assert_eq!(w[1]["prev_hash"], w[0]["hash"], "chain broken at {}", w[1]["sequence"]);
    }
}

#[tokio::test(start_paused = true)]
async fn a_schedule_fires_every_second_of_tokio_time_and_reports_arrive_in_order_chained() {
    let e = enrolled(healthy).await;
    let (collector, state_dir) = (&e.collector, &e.state_dir);
    let identity = &e.identity;

    let (shutdown, handle) = start(fast(state_dir, settings(3_600_000, EVERY_SECOND)));
    collector
        .wait_for("ten reports", |c| c.report_sequences().len() >= 10)
        .await;
    stop(shutdown, handle).await;
    let reports = collector.reports();
    let seqs: Vec<u64> = reports.iter().map(|r| r["sequence"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert_eq!(
        reports[0]["prev_hash"].as_str().unwrap(),
        rounds_agent::spool::chain_seed(&identity.agent_id)
    );
    assert_chained(&reports);
    // Created a second apart (the schedule's own clock), not in a burst.
    let t = |r: &serde_json::Value| chrono::DateTime::parse_from_rfc3339(r["created_at"].as_str().unwrap()).unwrap();
    let spread = t(&reports[9]) - t(&reports[1]);
    assert!((7..=9).contains(&spread.num_seconds()), "{spread:?}");
}

#[tokio::test(start_paused = true)]
async fn an_hourly_schedule_runs_at_the_agents_own_offset_not_at_the_top_of_the_hour() {
    use chrono::{TimeZone as _, Timelike as _};
    let e = enrolled(healthy).await;
    let (collector, state_dir) = (&e.collector, &e.state_dir);
    // Started at 10:00:00 local time: the nominal runs would be 11:00 and 12:00.
    let anchor = chrono::Local
        .with_ymd_and_hms(2026, 11, 24, 10, 0, 0)
        .single()
        .unwrap()
        .with_timezone(&chrono::Utc);
    let mut opts = fast(state_dir, settings(3_600_000, HOURLY));
    opts.clock = std::sync::Arc::new(rounds_agent::clock::TokioClock::starting_at(anchor));
    let (shutdown, handle) = start(opts);
    // Hours of paused time, a minute at a step.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while collector.report_sequences().len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            collector.report_sequences()
        );
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    stop(shutdown, handle).await;
    let offset = rounds_agent::schedule::offset(AGENT_ID, &cron::Schedule::from_str(HOURLY).unwrap(), &anchor);
    assert!(
        offset >= chrono::TimeDelta::minutes(1) && offset < chrono::TimeDelta::hours(1),
        "{offset}"
    );
    let created: Vec<chrono::DateTime<chrono::Utc>> = collector
        .reports()
        .iter()
        .map(|r| {
            chrono::DateTime::parse_from_rfc3339(r["created_at"].as_str().unwrap())
                .unwrap()
                .to_utc()
        })
        .collect();
    // At start, then at this agent's offset past each hour, one hour apart.
    assert!((created[0] - anchor).num_seconds() < 2, "{created:?}");
    for (run, hour) in created[1..3].iter().zip([0, 1]) {
        let expected = anchor + chrono::TimeDelta::hours(hour) + offset;
        assert!(
            (*run - expected).num_milliseconds().abs() < 2000,
            "{run} is not {expected}"
        );
        let local = run.with_timezone(&chrono::Local);
        assert!(local.minute() > 0, "not at the top of the hour: {local}");
    }
    // Another agent id gets another offset.
    let other = rounds_agent::schedule::offset("agt_test_2", &cron::Schedule::from_str(HOURLY).unwrap(), &anchor);
    assert_ne!(offset, other);
}

#[tokio::test(start_paused = true)]
async fn a_backlog_goes_in_batches_and_a_collector_without_the_batch_path_gets_singles() {
    let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let u = up.clone();
    let e = enrolled(move |req| {
        if req.path != paths::ENROLL && !u.load(std::sync::atomic::Ordering::SeqCst) {
            (503, r#"{"error":"starting"}"#.into())
        } else {
            healthy(req)
        }
    })
    .await;
    let (collector, state_dir) = (&e.collector, &e.state_dir);
    let (shutdown, handle) = start(fast(state_dir, settings(3_600_000, EVERY_SECOND)));
    // A backlog builds up while the collector answers 503.
    tokio::time::sleep(Duration::from_secs(20)).await;
    up.store(true, std::sync::atomic::Ordering::SeqCst);
    collector
        .wait_for("the backlog delivered", |c| !c.on(paths::REPORT_BATCH).is_empty())
        .await;
    collector
        .wait_for("twenty reports", |c| {
            let s = c.report_sequences();
            (1..=20).all(|n| s.contains(&n))
        })
        .await;
    stop(shutdown, handle).await;
    let sizes: Vec<usize> = collector
        .on(paths::REPORT_BATCH)
        .iter()
        .map(|b| b.json()["reports"].as_array().unwrap().len())
        .collect();
    assert!((2..=8).contains(&sizes[0]), "the first batch is small: {sizes:?}");
    assert!(sizes[1] > 8, "then bigger ones: {sizes:?}");

    // A collector without the batch path: the same backlog, one report per request.
    let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let u = up.clone();
    let old = FakeCollector::start(&e.ca, move |req| {
        if req.path == paths::REPORT_BATCH {
            (404, r#"{"error":"no such path"}"#.into())
        } else if req.path != paths::ENROLL && !u.load(std::sync::atomic::Ordering::SeqCst) {
            (503, r#"{"error":"starting"}"#.into())
        } else {
            healthy(req)
        }
    })
    .await;
    let state_dir = e.tmp.path().join("state2");
    enroll_into(&old, &e.ca, &state_dir).await;
    let (shutdown, handle) = start(fast(&state_dir, settings(3_600_000, EVERY_SECOND)));
    tokio::time::sleep(Duration::from_secs(10)).await;
    up.store(true, std::sync::atomic::Ordering::SeqCst);
    old.wait_for("ten single reports", |c| c.on(paths::REPORTS).len() >= 10)
        .await;
    stop(shutdown, handle).await;
    let seqs: Vec<u64> = old
        .on(paths::REPORTS)
        .iter()
        .filter(|r| r.json()["sequence"].is_u64())
        .map(|r| r.json()["sequence"].as_u64().unwrap())
        .collect();
    let delivered: Vec<u64> = seqs.iter().copied().fold(Vec::new(), |mut v, s| {
        if v.last() != Some(&s) {
            v.push(s);
        }
        v
    });
    assert!(
        delivered.windows(2).all(|w| w[1] == w[0] + 1),
        "in order: {delivered:?}"
    );
    assert_eq!(
        old.on(paths::REPORT_BATCH).len(),
        1,
        "the batch path is not tried again at once"
    );
}

#[tokio::test(start_paused = true)]
async fn a_sequence_conflict_renumbers_from_what_the_collector_expects() {
    let e = enrolled(|req| {
        let seq = req.json()["sequence"].as_u64();
        let first_in_batch = req.json()["reports"][0]["sequence"].as_u64();
        match seq.or(first_in_batch) {
            Some(s) if s < 50 => (
                409,
                r#"{"error":"sequence 1 is already stored with other content","next_expected":50,"chain_hash":"c0ffee49"}"#
                    .into(),
            ),
            _ => healthy(req),
        }
    })
    .await;
    let (collector, state_dir) = (&e.collector, &e.state_dir);
    let (shutdown, handle) = start(fast(state_dir, settings(3_600_000, EVERY_SECOND)));
    collector
        .wait_for("reports 50 to 53", |c| {
            let s = c.report_sequences();
            (50..=53).all(|n| s.contains(&n))
        })
        .await;
    stop(shutdown, handle).await;
    let accepted: Vec<serde_json::Value> = collector
        .reports()
        .into_iter()
        .filter(|r| r["sequence"].as_u64().unwrap() >= 50)
        .collect();
    let seqs: Vec<u64> = accepted.iter().map(|r| r["sequence"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (50..50 + seqs.len() as u64).collect::<Vec<_>>());
    assert_chained(&accepted);
    // Chained to the collector's head (report 49 as it holds it), so it flags no rollback.
    assert_eq!(accepted[0]["prev_hash"], "c0ffee49");
    let AgentStatus::Enrolled(s) = status(state_dir).unwrap() else {
        panic!("enrolled")
    };
    assert!(s.next_sequence > 53);
}

#[tokio::test(start_paused = true)]
async fn a_malformed_acknowledgement_keeps_the_report() {
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n2 = n.clone();
    let e = enrolled(move |req| {
        if req.path == paths::REPORTS && n2.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
            (200, "{\"sequ".into())
        } else {
            healthy(req)
        }
    })
    .await;
    let (collector, state_dir) = (&e.collector, &e.state_dir);
    let (shutdown, handle) = start(fast(state_dir, settings(3_600_000, ONLY_AT_START)));
    collector
        .wait_for("three attempts", |c| c.on(paths::REPORTS).len() >= 3)
        .await;
    stop(shutdown, handle).await;
    assert_eq!(collector.report_sequences(), vec![1, 1, 1]);
}

/// A collector serving `toml` as the central configuration, version `version`.
fn serving(version: &'static str, toml: &'static str) -> impl Fn(&Recorded) -> (u16, String) + Send + Sync {
    move |req| match req.path.as_str() {
        paths::CONFIG => (
            200,
            serde_json::to_string(&rounds_protocol::AgentConfig {
                protocol: 1,
                version: version.into(),
                origin: "practice Maple".into(),
                toml: toml.into(),
            })
            .unwrap(),
        ),
        paths::HEARTBEAT => (
            200,
            serde_json::to_string(&rounds_protocol::HeartbeatAck {
                received_at: chrono::Utc::now(),
                config_etag: Some(version.into()),
            })
            .unwrap(),
        ),
        _ => healthy(req),
    }
}

#[tokio::test(start_paused = true)]
async fn central_configuration_is_applied_cached_and_a_bad_one_refused_with_the_reason() {
    // The central configuration switches inventory to every second and the heartbeat to 5 s.
    let e = enrolled(serving(
        "\"v1\"",
        "heartbeat_interval_secs = 5\n[checks.inventory]\nschedule = \"* * * * * *\"\n",
    ))
    .await;
    let (collector, state_dir) = (&e.collector, &e.state_dir);
    let (shutdown, handle) = start(fast(state_dir, settings(3_600_000, HOURLY)));
    collector
        .wait_for("reports every second and heartbeats every 5 s", |c| {
            c.report_sequences().len() >= 5 && c.on(paths::HEARTBEAT).len() >= 3
        })
        .await;
    stop(shutdown, handle).await;
    let hb = collector.on(paths::HEARTBEAT).last().unwrap().json();
    assert_eq!(hb["config_version"], "\"v1\"");
    let AgentStatus::Enrolled(s) = status(state_dir).unwrap() else {
        panic!("enrolled")
    };
    assert_eq!(s.config_version.as_deref(), Some("\"v1\""));
    assert_eq!(s.config_origin.as_deref(), Some("collector: practice Maple"));

    // Next start: the collector serves an invalid configuration. The agent starts from the
    // cached one, refuses the new one and says why in its heartbeats.
    let bad = FakeCollector::start(
        &e.ca,
        serving("\"v2\"", "[checks.inventory]\nschedule = \"every tuesday\"\n"),
    )
    .await;
    let mut identity: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state_dir.join("identity.json")).unwrap()).unwrap();
    identity["collector"] = bad.url.clone().into();
    std::fs::write(state_dir.join("identity.json"), identity.to_string()).unwrap();
    let (shutdown, handle) = start(fast(state_dir, settings(3_600_000, HOURLY)));
    bad.wait_for("a heartbeat with the refusal", |c| {
        c.on(paths::HEARTBEAT)
            .iter()
            .any(|h| h.json()["config_error"].is_string())
    })
    .await;
    bad.wait_for("reports every second, from the cached configuration", |c| {
        c.report_sequences().len() >= 3
    })
    .await;
    stop(shutdown, handle).await;
    let hb = bad
        .on(paths::HEARTBEAT)
        .into_iter()
        .find(|h| h.json()["config_error"].is_string())
        .unwrap()
        .json();
    let reason = hb["config_error"].as_str().unwrap();
    assert!(
        reason.contains("central configuration (practice Maple)") && reason.contains("checks.inventory.schedule"),
        "{reason}"
    );
    assert_eq!(hb["config_version"], "\"v1\"", "keeps the last good one");
}

/// A check that counts the files in a folder it watches, read under the host's root.
#[derive(Debug)]
struct FolderCheck;

impl checks::Check for FolderCheck {
    fn name(&self) -> &'static str {
        "inventory"
    }
    fn kinds(&self) -> &'static [&'static str] {
        &["inventory"]
    }
    fn run(&self, host: &checks::Host) -> Vec<rounds_protocol::Observation> {
        let n = std::fs::read_dir(host.path("/backups")).map_or(0, |d| d.count());
        vec![rounds_protocol::Observation::error(
            "inventory",
            "host",
            host.now,
            format!("{n} files"),
        )]
    }
    fn watch_paths(&self, host: &checks::Host) -> Vec<std::path::PathBuf> {
        vec![host.path("/backups")]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_in_a_watched_path_runs_the_check_at_once() {
    let e = enrolled(healthy).await;
    let (collector, state_dir) = (&e.collector, &e.state_dir);
    let root = e.tmp.path().join("root");
    std::fs::create_dir_all(root.join("backups")).unwrap();

    let mut settings = settings(3_600_000, HOURLY);
    settings.checks[0].check = std::sync::Arc::new(FolderCheck);
    let mut opts = RunOptions::new(state_dir, settings);
    let host_root = root.clone();
    opts.host = std::sync::Arc::new(move |now| checks::Host {
        root: host_root.clone(),
        now,
        live: false,
        ..checks::Host::system()
    });
    let (shutdown, handle) = start(opts);
    collector
        .wait_for("the report at start", |c| !c.reports().is_empty())
        .await;
    std::fs::write(root.join("backups/monday.tar"), b"x").unwrap();
    collector
        .wait_for("a second report, long before the next hour", |c| c.reports().len() >= 2)
        .await;
    stop(shutdown, handle).await;
    let reports = collector.reports();
    assert_eq!(reports[0]["observations"][0]["error"], "0 files");
    assert_eq!(reports[1]["observations"][0]["error"], "1 files");
}

/// Issue 15: the collector's `credentials_revoked` answer stops the agent with a clear error
/// instead of retrying for ever; the report stays in the spool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_credentials_stop_the_agent_with_a_clear_error() {
    let e = enrolled(|req| {
        if req.path == paths::ENROLL {
            healthy(req)
        } else {
            (
                401,
                r#"{"error":"this agent's credentials were revoked","code":"credentials_revoked"}"#.into(),
            )
        }
    })
    .await;
    let (shutdown, handle) = start(fast(&e.state_dir, settings(50, HOURLY)));
    let outcome = tokio::time::timeout(Duration::from_secs(15), handle)
        .await
        .expect("a revoked agent stops on its own")
        .unwrap();
    assert!(!shutdown.is_cancelled(), "nobody asked it to stop");
    let err = outcome.unwrap_err();
    assert!(matches!(err, rounds_agent::RunError::Revoked(_)), "{err:?}");
    assert!(err.to_string().contains("revoked"), "{err}");
    assert!(err.to_string().contains("enroll the machine again"), "{err}");
    // It did not keep knocking: one or two requests, not a retry loop.
    let attempts = e.collector.on(paths::REPORTS).len() + e.collector.on(paths::HEARTBEAT).len();
    assert!(attempts <= 3, "{attempts} requests after the revocation");
}
