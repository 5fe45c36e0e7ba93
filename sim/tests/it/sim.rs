//! The simulator against a real collector: enrollment, heartbeats, reports and the standard
//! failure scenario, its figures checked against the collector's own counters; credentials
//! reused by a second run; refused requests counted as errors by status.

use std::time::Duration;

use rounds_sim::config::{FaultSettings, SimConfig};
use rounds_sim::stats::Summary;
use tokio_util::sync::CancellationToken;

use crate::collector::Collector;

fn config(c: &Collector, agents: usize, duration_secs: u64) -> SimConfig {
    let (base_url, host, addr) = rounds_sim::config::loopback_url(&c.url).unwrap();
    SimConfig {
        base_url,
        host,
        addr,
        ca: c.ca(),
        tokens: None,
        state: None,
        agents,
        duration: Duration::from_secs(duration_secs),
        heartbeat: Duration::from_secs(1),
        report_interval: Duration::from_secs(20),
        probe_summary: Duration::from_secs(6),
        ramp: Duration::from_millis(500),
        cold_start: false,
        max_in_flight: 16,
        seed: 11,
        json: None,
        faults: FaultSettings::NONE,
        metrics_token: Some(crate::collector::METRICS_TOKEN.into()),
    }
}

fn metric(s: &Summary, name: &str) -> f64 {
    *s.collector_metrics
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing from {:?}", s.collector_metrics))
}

fn event(s: &Summary, name: &str) -> u64 {
    s.events.get(name).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drives_a_real_collector_through_the_failure_scenario() {
    let c = Collector::start(3);
    // 4 practices of 6 machines, 2 sites each.
    let tokens: Vec<_> = (0..24)
        .map(|i| c.token(&format!("Practice {}", i / 6), &format!("Site {}", i / 3 % 2)))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&c, 24, 12);
    cfg.tokens = Some(c.tokens_file(&tokens));
    cfg.state = Some(dir.path().join("agents.json"));
    cfg.json = Some(dir.path().join("run.json"));
    cfg.faults = FaultSettings {
        silent_percent: 10.0,
        dark_sites: 1,
        ehr_outage_practices: 2,
        reconnect_burst_percent: 25.0,
    };
    let s = rounds_sim::run(cfg.clone(), CancellationToken::new()).await.unwrap();
    let text = s.render();
    assert_eq!(s.errors, 0, "{text}");
    assert_eq!(event(&s, "enrolled"), 24, "{text}");
    assert_eq!(metric(&s, "rounds_enrollments_total"), 24.0);
    // Every acknowledged report was newly stored and every heartbeat counted.
    let reports = s.requests["report"].ok;
    let heartbeats = s.requests["heartbeat"].ok;
    assert!(reports > 24 * 2, "{text}");
    assert!(heartbeats > 24 * 5, "{text}");
    assert_eq!(metric(&s, "rounds_reports_stored_total"), reports as f64, "{text}");
    assert_eq!(metric(&s, "rounds_heartbeats_total"), heartbeats as f64, "{text}");
    assert_eq!(metric(&s, "rounds_reports_duplicate_total"), 0.0);
    assert!(s.requests["config"].ok >= 24, "{text}");
    // The faults happened: 2 agents silent (and offline at the collector), one site of 3
    // agents dark and back, 2 practices of 6 agents saw their EHR go down and up, 6 restarts.
    assert_eq!(event(&s, "agent_silenced"), 2, "{text}");
    assert!(metric(&s, "rounds_agents{state=\"offline\"}") >= 2.0, "{text}");
    let dark = event(&s, "agent_dark");
    assert!((1..=3).contains(&dark), "{text}");
    // A dark agent that also went silent does not come back.
    let back = event(&s, "agent_back_from_dark");
    assert!(back >= 1 && back <= dark && back + 2 >= dark, "{text}");
    assert!((10..=12).contains(&event(&s, "ehr_down")), "{text}");
    assert!(event(&s, "ehr_back_up") >= 8, "{text}");
    assert!((5..=6).contains(&event(&s, "agent_restarted")), "{text}");
    for kind in ["enroll", "heartbeat", "report", "config"] {
        let l = s.requests[kind].latency_ms;
        assert!(
            l.count > 0 && l.p50 > 0.0 && l.p50 <= l.p99 && l.p99 <= l.max,
            "{kind}: {l:?}"
        );
    }
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(cfg.json.as_ref().unwrap()).unwrap()).unwrap();
    assert_eq!(json["requests"]["report"]["ok"], reports);

    // A second run reuses the saved credentials and continues every agent's sequence.
    let mut again = config(&c, 24, 3);
    again.state = cfg.state.clone();
    let s2 = rounds_sim::run(again, CancellationToken::new()).await.unwrap();
    let text2 = s2.render();
    assert_eq!(s2.errors, 0, "{text2}");
    assert!(!s2.requests.contains_key("enroll"), "{text2}");
    assert_eq!(metric(&s2, "rounds_enrollments_total"), 24.0);
    assert_eq!(
        metric(&s2, "rounds_reports_stored_total"),
        (reports + s2.requests["report"].ok) as f64,
        "{text2}"
    );
    assert_eq!(metric(&s2, "rounds_reports_duplicate_total"), 0.0, "{text2}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_are_counted_by_status() {
    let c = Collector::start(3);
    let good = c.token("Practice", "Main");
    let mut bad = good.clone();
    bad.token = "rnd_enr_not_a_token".into();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&c, 3, 2);
    // The good token is used twice: the second enrollment is refused as already used.
    cfg.tokens = Some(c.tokens_file(&[good.clone(), bad, good]));
    cfg.json = Some(dir.path().join("run.json"));
    let s = rounds_sim::run(cfg, CancellationToken::new()).await.unwrap();
    let enroll = &s.requests["enroll"];
    assert_eq!(enroll.ok, 1, "{}", s.render());
    assert_eq!(enroll.errors_by_status.get("403"), Some(&2), "{}", s.render());
    assert_eq!(s.events.get("enroll_failed"), Some(&2));
    assert_eq!(s.errors, 2);
}
