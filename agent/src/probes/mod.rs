//! EHR connectivity probes: `https`, `fhir`, `tcp` and `dns` endpoints from `[[endpoint]]`,
//! and the network baseline (default gateway, DNS resolvers, reference endpoints including the
//! collector) that tells an EHR outage from the practice's own network being down.
//!
//! [`run`] probes every target on its own interval on the async runtime (one task per target
//! in a `JoinSet`, at most [`EngineSettings::max_concurrent`] probes at once, no blocking
//! thread). A failed probe is retried once after [`EngineSettings::retry_delay`] before it
//! counts as down. A state change (first result, up to down, down to up, another reason) is
//! submitted to the [`ProbeSink`] at once and marked urgent; every summary interval one
//! submission carries a [`ProbeSummary`] per target. Nothing else leaves the engine: probes do
//! not become one report per run.
//!
//! Modules: [`probe`] (one probe of one target), [`tls`] (roots and the recording verifier),
//! [`http`] (the HTTP/1.1 exchange, CapabilityStatement recognition), [`dns`] (the UDP stub
//! resolver), [`x509`] (certificate expiry), [`baseline`] (gateway and resolvers of the host).

pub mod baseline;
pub mod dns;
pub mod http;
pub mod probe;
pub mod tls;
pub mod x509;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rounds_agent_config::endpoint::{Endpoint, ProbeSettings};
use rounds_protocol::Observation;
use rounds_protocol::obs::{EhrProbe, NetworkBaseline, ProbeSummary};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

pub use probe::{Prepared, ProbeContext, days_until, probe_once};

/// The `check` name of the reports that carry probe observations.
pub const CHECK_NAME: &str = "ehr";

/// Where the probe engine's observations go. `urgent` submissions (state changes) should be
/// delivered at once; the others (summaries) may wait for the next delivery.
pub trait ProbeSink: Send + Sync {
    fn submit(&self, observations: Vec<Observation>, urgent: bool);
}

/// The wall clock that dates observations and certificate expiry figures.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// What a target is to the practice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A configured `[[endpoint]]`: reported as `ehr.probe`.
    Endpoint,
    /// The default gateway: up when it answers a TCP connection on port 53 at all (a refusal
    /// is an answer).
    Gateway,
    /// A configured DNS resolver: up when it answers a query at all.
    Resolver,
    /// A reference endpoint outside the practice (the collector, `[probes] references`): up
    /// when it answers HTTP with any status.
    Reference,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Endpoint => "endpoint",
            Role::Gateway => "gateway",
            Role::Resolver => "resolver",
            Role::Reference => "reference",
        }
    }
}

/// How a target is probed.
#[derive(Debug, Clone)]
pub enum Probe {
    /// An endpoint probe (also reference endpoints).
    Endpoint(Prepared),
    /// Does the host at this address answer TCP on port 53.
    Gateway(IpAddr),
    /// Does this resolver answer a query.
    Resolver(SocketAddr),
}

/// One thing to probe, its subject name, schedule and timeout.
#[derive(Debug, Clone)]
pub struct Target {
    pub role: Role,
    /// The observation subject: the endpoint's name, `gateway`, `resolver 192.0.2.53`, ...
    pub name: String,
    pub probe: Probe,
    pub interval: Duration,
    pub timeout: Duration,
}

impl Target {
    /// A configured endpoint.
    pub fn endpoint(endpoint: Endpoint, ctx: &ProbeContext) -> Self {
        Target {
            role: Role::Endpoint,
            name: endpoint.name.clone(),
            interval: endpoint.interval,
            timeout: endpoint.timeout,
            probe: Probe::Endpoint(Prepared::new(endpoint, ctx)),
        }
    }
}

/// The engine's own timings.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Time between summaries.
    pub summary_interval: Duration,
    /// Wait before retrying a failed probe.
    pub retry_delay: Duration,
    /// Probes in flight at once.
    pub max_concurrent: usize,
}

/// Default wait before a failed probe is retried.
pub const RETRY_DELAY: Duration = Duration::from_secs(2);
/// Default bound on probes in flight.
pub const MAX_CONCURRENT: usize = 16;

impl EngineSettings {
    pub fn from_settings(settings: &ProbeSettings) -> Self {
        EngineSettings {
            summary_interval: settings.summary_interval,
            retry_delay: RETRY_DELAY,
            max_concurrent: MAX_CONCURRENT,
        }
    }
}

/// Probes `target` once, retrying once after `retry_delay` when it is down; `None` when
/// `stop` was cancelled first.
pub async fn probe_with_retry(
    target: &Target,
    ctx: &ProbeContext,
    clock: &dyn Clock,
    retry_delay: Duration,
    permits: &Semaphore,
    stop: &CancellationToken,
) -> Option<EhrProbe> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let result = tokio::select! {
            _ = stop.cancelled() => return None,
            r = async {
                let _permit = permits.acquire().await.ok();
                probe_target(target, ctx, clock.now()).await
            } => r,
        };
        if result.up || attempts == 2 {
            return Some(EhrProbe { attempts, ..result });
        }
        tokio::select! {
            _ = stop.cancelled() => return None,
            _ = tokio::time::sleep(retry_delay) => {}
        }
    }
}

/// One attempt at `target`, whatever its kind.
async fn probe_target(target: &Target, ctx: &ProbeContext, now: DateTime<Utc>) -> EhrProbe {
    match &target.probe {
        Probe::Endpoint(p) => probe_once(p, ctx, now).await,
        Probe::Gateway(ip) => baseline::probe_gateway(*ip, target.timeout).await,
        Probe::Resolver(r) => baseline::probe_resolver(*r, target.timeout).await,
    }
}

/// The observation of one probe result of `target`.
pub fn observation(target: &Target, result: &EhrProbe, at: DateTime<Utc>) -> Observation {
    match target.role {
        Role::Endpoint => Observation::ok(target.name.clone(), at, result),
        role => {
            let EhrProbe {
                probe,
                target: what,
                up,
                latency_ms,
                failure,
                reason,
                attempts,
                address,
                ..
            } = result.clone();
            let b = NetworkBaseline {
                role: role.as_str().to_string(),
                probe,
                target: what,
                up,
                reason,
                failure,
                latency_ms,
                address,
                attempts,
            };
            Observation::ok(target.name.clone(), at, &b)
        }
    }
}

/// Counts of one target over the current summary period.
#[derive(Debug)]
struct Stats {
    role: Role,
    probe: String,
    target: String,
    period_start: DateTime<Utc>,
    probes: u64,
    up: u64,
    latencies_ms: Vec<f64>,
    reasons: BTreeSet<String>,
    up_now: bool,
}

impl Stats {
    fn record(&mut self, r: &EhrProbe) {
        self.probe.clone_from(&r.probe);
        self.probes += 1;
        self.up_now = r.up;
        if r.up {
            self.up += 1;
            self.latencies_ms.extend(r.latency_ms);
        } else if let Some(reason) = &r.reason {
            self.reasons.insert(reason.clone());
        }
    }

    /// The summary of the period ending `now`, and a new period.
    fn take(&mut self, now: DateTime<Utc>) -> ProbeSummary {
        let mut lat = std::mem::take(&mut self.latencies_ms);
        lat.sort_by(f64::total_cmp);
        let summary = ProbeSummary {
            role: self.role.as_str().to_string(),
            probe: self.probe.clone(),
            target: self.target.clone(),
            period_start: Some(self.period_start),
            period_end: Some(now),
            probes: self.probes,
            up: self.up,
            down: self.probes - self.up,
            up_percent: (self.probes > 0).then(|| 100.0 * self.up as f64 / self.probes as f64),
            latency_ms_p50: percentile(&lat, 0.50),
            latency_ms_p95: percentile(&lat, 0.95),
            latency_ms_max: lat.last().copied(),
            reasons: std::mem::take(&mut self.reasons).into_iter().collect(),
            up_now: self.up_now,
        };
        self.period_start = now;
        self.probes = 0;
        self.up = 0;
        summary
    }
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// Runs every target until `stop` is cancelled: state changes at once, summaries every
/// `settings.summary_interval`. Returns once every probe task has stopped.
pub async fn run(
    targets: Vec<Target>,
    settings: EngineSettings,
    ctx: Arc<ProbeContext>,
    sink: Arc<dyn ProbeSink>,
    clock: Arc<dyn Clock>,
    stop: CancellationToken,
) {
    let EngineSettings {
        summary_interval,
        retry_delay,
        max_concurrent,
    } = settings;
    let permits = Arc::new(Semaphore::new(max_concurrent.max(1)));
    let mut tasks = JoinSet::new();
    let mut all_stats = Vec::new();
    info!(targets = targets.len(), "probes running");
    for target in targets {
        let stats = Arc::new(Mutex::new(Stats {
            role: target.role,
            probe: String::new(),
            target: target.name.clone(),
            period_start: clock.now(),
            probes: 0,
            up: 0,
            latencies_ms: Vec::new(),
            reasons: BTreeSet::new(),
            up_now: false,
        }));
        all_stats.push((target.name.clone(), stats.clone()));
        let (ctx, sink, clock, stop, permits) =
            (ctx.clone(), sink.clone(), clock.clone(), stop.clone(), permits.clone());
        let span = info_span!("probe", target = %target.name, role = target.role.as_str());
        tasks.spawn(
            async move {
                target_loop(&target, &ctx, &*sink, &*clock, retry_delay, &permits, &stats, &stop).await;
            }
            .instrument(span),
        );
    }
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + summary_interval, summary_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let now = clock.now();
        let summaries: Vec<Observation> = all_stats
            .iter()
            .map(|(name, s)| {
                let summary = s.lock().unwrap_or_else(|p| p.into_inner()).take(now);
                Observation::ok(name.clone(), now, &summary)
            })
            .collect();
        if !summaries.is_empty() {
            sink.submit(summaries, false);
        }
    }
    while tasks.join_next().await.is_some() {}
}

#[allow(clippy::too_many_arguments)]
async fn target_loop(
    target: &Target,
    ctx: &ProbeContext,
    sink: &dyn ProbeSink,
    clock: &dyn Clock,
    retry_delay: Duration,
    permits: &Semaphore,
    stats: &Mutex<Stats>,
    stop: &CancellationToken,
) {
    let mut ticker = tokio::time::interval(target.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<(bool, Option<String>)> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let started = Instant::now();
        let Some(result) = probe_with_retry(target, ctx, clock, retry_delay, permits, stop).await else {
            return;
        };
        stats.lock().unwrap_or_else(|p| p.into_inner()).record(&result);
        let state = (result.up, result.reason.clone());
        if last.as_ref() != Some(&state) {
            if result.up {
                info!(attempts = result.attempts, latency_ms = result.latency_ms, "target up");
            } else {
                warn!(
                    reason = result.reason.as_deref().unwrap_or(""),
                    failure = result.failure.as_deref().unwrap_or(""),
                    attempts = result.attempts,
                    took_ms = started.elapsed().as_millis() as u64,
                    "target down"
                );
            }
            sink.submit(vec![observation(target, &result, clock.now())], true);
            last = Some(state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(10.0));
        assert_eq!(percentile(&v, 0.95), Some(19.0));
        assert_eq!(percentile(&[3.0], 0.95), Some(3.0));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
