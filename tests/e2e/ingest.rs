//! Collector-side delivery over real TLS with the real `rounds-collector`: a collector killed
//! with SIGKILL during ingest keeps every report it acknowledged, and 200 agents reconnecting
//! together after an outage are spread over time and never see a 5xx.
//!
//! The agents here are simulated: async tasks speaking the wire protocol, each with its own
//! enrollment, chaining their reports like the agent's spool, and backing off with the agent's
//! own [`rounds_agent::backoff::Backoff`] (full jitter, `Retry-After` honoured).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rounds_agent::backoff::{Backoff, RetryPolicy};
use rounds_collector::delivery::{chain_seed, digest};
use rounds_collector::store::sqlite::SqliteStore;
use rounds_collector::store::{Role, Scope, Store};
use rounds_protocol::{EnrollResponse, Observation, Report, obs};

use crate::support::{Collector, client_trusting};

/// An agent speaking the wire protocol, with its chain and its undelivered reports.
pub struct SimAgent {
    pub id: String,
    secret: String,
    prev: String,
    next: u64,
    pub pending: VecDeque<Report>,
    backoff: Backoff,
}

impl SimAgent {
    pub async fn enroll(http: &reqwest::Client, url: &str, token: &str, n: usize) -> SimAgent {
        let body = serde_json::json!({"protocol": 1, "token": token, "hostname": format!("sim-{n}"),
            "os": "linux", "agent_version": "0.1.0"});
        let resp = http
            .post(format!("{url}/api/v1/agent/enroll"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "enroll: {}", resp.status());
        let e: EnrollResponse = resp.json().await.unwrap();
        let policy = RetryPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(8),
        };
        SimAgent {
            prev: chain_seed(&e.agent_id),
            id: e.agent_id,
            secret: e.agent_secret,
            next: 1,
            pending: VecDeque::new(),
            backoff: Backoff::with_seed(policy, 0x9e37_79b9_7f4a_7c15 ^ (n as u64 * 7919)),
        }
    }

    /// Produces the next report, chained, and keeps it until acknowledged.
    pub fn produce(&mut self) {
        let now = chrono::Utc::now();
        let inv = obs::Inventory {
            hostname: format!("sim-{}", &self.id[..6]),
            os_family: "linux".into(),
            ..Default::default()
        };
        let mut r = Report {
            protocol: 1,
            agent_id: self.id.clone(),
            sequence: self.next,
            created_at: now,
            check: Some("inventory".into()),
            complete: true,
            prev_hash: Some(self.prev.clone()),
            hash: None,
            dropped: vec![],
            observations: vec![Observation::ok("host", now, &inv)],
        };
        r.hash = Some(digest(&r));
        self.prev = r.hash.clone().unwrap();
        self.next += 1;
        self.pending.push_back(r);
    }

    /// One delivery attempt of what is pending (a batch when more than one). `Ok(status)` when
    /// the collector answered; acknowledged reports leave `pending`.
    pub async fn attempt(&mut self, http: &reqwest::Client, url: &str) -> Result<u16, reqwest::Error> {
        let reports: Vec<&Report> = self.pending.iter().take(100).collect();
        let req = if reports.len() == 1 {
            http.post(format!("{url}/api/v1/agent/reports")).json(reports[0])
        } else {
            http.post(format!("{url}/api/v1/agent/reports/batch"))
                .json(&serde_json::json!({"protocol": 1, "agent_id": self.id, "reports": reports}))
        };
        let resp = req.basic_auth(&self.id, Some(&self.secret)).send().await?;
        let status = resp.status().as_u16();
        if status == 200 {
            let body: serde_json::Value = resp.json().await?;
            let through = match body.get("acks") {
                Some(acks) => acks.as_array().unwrap().last().unwrap()["sequence"].as_u64().unwrap(),
                None => body["sequence"].as_u64().unwrap(),
            };
            while self.pending.front().is_some_and(|r| r.sequence <= through) {
                self.pending.pop_front();
            }
            self.backoff.reset();
        }
        Ok(status)
    }
}

/// Every agent's delivery state, read from the store on the collector's data dir.
async fn stored(data_dir: &std::path::Path, ids: &[String]) -> Vec<rounds_collector::store::DeliveryStatus> {
    let store = SqliteStore::open(&data_dir.join("rounds.db")).unwrap();
    let all = Scope {
        role: Role::Admin,
        practice_id: None,
    };
    let mut out = Vec::new();
    for id in ids {
        out.push(store.delivery_status(&all, id).await.unwrap());
    }
    out
}

async fn tokens(data_dir: &std::path::Path, n: usize) -> Vec<String> {
    let store = SqliteStore::open(&data_dir.join("rounds.db")).unwrap();
    let mut out = Vec::new();
    for i in 0..n {
        let site = format!("Site {}", i % 10);
        out.push(
            rounds_collector::admin::token_create(&store, "Reconnect Practice", &site, Duration::from_secs(3600))
                .await
                .unwrap(),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_collector_killed_with_sigkill_during_ingest_keeps_every_report_it_acknowledged() {
    let c = Collector::start();
    let http = client_trusting(&c.ca());
    let url = c.url();
    let toks = tokens(c.data_dir.path(), 8).await;
    let acked: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let mut ids = Vec::new();
    for (n, t) in toks.iter().enumerate() {
        let mut a = SimAgent::enroll(&http, &url, t, n).await;
        ids.push(a.id.clone());
        let (http, url, acked, stop) = (http.clone(), url.clone(), acked.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if a.pending.is_empty() {
                    a.produce();
                }
                let seq = a.pending.front().unwrap().sequence;
                match a.attempt(&http, &url).await {
                    Ok(200) if a.pending.is_empty() => acked.lock().unwrap().push((a.id.clone(), seq)),
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }));
    }
    let started = Instant::now();
    while acked.lock().unwrap().len() < 300 {
        assert!(started.elapsed() < Duration::from_secs(120), "ingest too slow");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // SIGKILL in the middle of ingest: requests are in flight.
    let mut c = c;
    c.process.child.kill().unwrap();
    c.process.child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let states = stored(c.data_dir.path(), &ids).await;
    for (id, state) in ids.iter().zip(&states) {
        let highest = acked
            .iter()
            .filter(|(a, _)| a == id)
            .map(|(_, s)| *s)
            .max()
            .unwrap_or(0);
        assert!(
            state.last_sequence >= highest && state.reports_stored >= highest,
            "agent {id}: acknowledged up to {highest}, stored {} up to {}",
            state.reports_stored,
            state.last_sequence
        );
        assert!(state.gaps.is_empty(), "agent {id}: {:?}", state.gaps);
        assert_eq!(state.integrity_problems, 0, "agent {id}: {:?}", state.integrity);
    }
    eprintln!(
        "sigkill: {} acknowledged reports of {} agents all stored",
        acked.len(),
        ids.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_agents_reconnecting_after_an_outage_are_spread_and_never_see_a_5xx() {
    const AGENTS: usize = 200;
    const DURING_OUTAGE: usize = 3;
    let c = Collector::start();
    let http = client_trusting(&c.ca());
    let toks = tokens(c.data_dir.path(), AGENTS).await;
    let mut agents = Vec::new();
    for (n, t) in toks.iter().enumerate() {
        let mut a = SimAgent::enroll(&http, &c.url(), t, n).await;
        a.produce();
        assert_eq!(a.attempt(&http, &c.url()).await.unwrap(), 200);
        agents.push(a);
    }
    let ids: Vec<String> = agents.iter().map(|a| a.id.clone()).collect();

    // The outage: the collector stops; every agent keeps producing and keeps trying.
    let mut c = c;
    let status = c.process.terminate();
    assert!(status.success(), "{status:?}");
    let url = Arc::new(RwLock::new(c.url()));
    let arrivals: Arc<Mutex<Vec<(Instant, u16)>>> = Arc::default();
    let delivered_at: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let left = Arc::new(AtomicUsize::new(AGENTS));
    let mut tasks = Vec::new();
    for mut a in agents {
        for _ in 0..DURING_OUTAGE {
            a.produce();
        }
        let (http, url, arrivals, delivered_at, left) = (
            http.clone(),
            url.clone(),
            arrivals.clone(),
            delivered_at.clone(),
            left.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !a.pending.is_empty() {
                let u = url.read().unwrap().clone();
                let sent = Instant::now();
                let delay = match a.attempt(&http, &u).await {
                    Ok(status) => {
                        arrivals.lock().unwrap().push((sent, status));
                        match status {
                            200 => Duration::ZERO,
                            429 | 503 => a.backoff.after(Duration::from_secs(2)),
                            _ => a.backoff.next_delay(),
                        }
                    }
                    Err(_) => a.backoff.next_delay(),
                };
                tokio::time::sleep(delay).await;
            }
            delivered_at.lock().unwrap().push(Instant::now());
            left.fetch_sub(1, Ordering::Relaxed);
        }));
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    let c = Collector::start_in(c.data_dir, &[]);
    let back = Instant::now();
    *url.write().unwrap() = c.url();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(90), t)
            .await
            .expect("every agent delivers")
            .unwrap();
    }
    assert_eq!(left.load(Ordering::Relaxed), 0);

    let arrivals = arrivals.lock().unwrap().clone();
    let server_errors: Vec<u16> = arrivals.iter().map(|(_, s)| *s).filter(|s| *s >= 500).collect();
    assert!(server_errors.is_empty(), "5xx answers: {server_errors:?}");
    let after: Vec<f64> = arrivals
        .iter()
        .filter(|(t, _)| *t >= back)
        .map(|(t, _)| (*t - back).as_secs_f64())
        .collect();
    let too_many = arrivals.iter().filter(|(_, s)| *s == 429).count();
    let delivered: Vec<f64> = delivered_at
        .lock()
        .unwrap()
        .iter()
        .map(|t| t.saturating_duration_since(back).as_secs_f64())
        .collect();
    let per_second = |xs: &[f64]| {
        let mut buckets = vec![0usize; xs.iter().fold(0f64, |m, x| m.max(*x)) as usize + 1];
        for x in xs {
            buckets[*x as usize] += 1;
        }
        buckets
    };
    let requests = per_second(&after);
    let deliveries = per_second(&delivered);
    let last = delivered.iter().fold(0f64, |m, x| m.max(*x));
    eprintln!(
        "reconnect: {AGENTS} agents, outage 6 s; after restart {} requests ({too_many} answered 429), all delivered within {last:.1} s; requests per second {requests:?}; agents finishing per second {deliveries:?}",
        after.len()
    );
    // Spread over time: no second sees more than half of the agents come back.
    let peak = deliveries.iter().max().copied().unwrap_or(0);
    assert!(
        peak <= AGENTS / 2,
        "{peak} agents delivered within one second: {deliveries:?}"
    );
    assert!(
        last >= 2.0,
        "all {AGENTS} agents came back within {last:.1} s: not spread"
    );

    let states = stored(c.data_dir.path(), &ids).await;
    for (id, s) in ids.iter().zip(&states) {
        assert_eq!(
            (s.reports_stored, s.last_sequence),
            (1 + DURING_OUTAGE as u64, 1 + DURING_OUTAGE as u64),
            "agent {id}: every report exactly once"
        );
        assert!(s.gaps.is_empty() && s.integrity_problems == 0, "agent {id}: {s:?}");
    }
}
