//! What the run measured: request latencies per request type (p50, p95, p99, max), errors by
//! status, throughput, and how long requests waited for the simulator's own concurrency limit
//! (so a saturated simulator is told apart from a slow collector).
//!
//! Latencies are kept exactly (microseconds, `u32`), bounded by [`MAX_SAMPLES`] per type; the
//! run's length and agent count bound them well below that at default schedules.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

/// Most latency samples kept per request type (4 bytes each); later ones are counted only.
pub const MAX_SAMPLES: usize = 20_000_000;

/// The request types the simulator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Enroll,
    Heartbeat,
    Report,
    Config,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Enroll, Kind::Heartbeat, Kind::Report, Kind::Config];
    pub fn name(self) -> &'static str {
        match self {
            Kind::Enroll => "enroll",
            Kind::Heartbeat => "heartbeat",
            Kind::Report => "report",
            Kind::Config => "config",
        }
    }
}

#[derive(Debug, Default)]
struct PerKind {
    latencies_us: Vec<u32>,
    ok: u64,
    errors: BTreeMap<String, u64>,
}

/// Counters shared by every agent task.
#[derive(Debug, Default)]
pub struct Recorder {
    kinds: Mutex<BTreeMap<Kind, PerKind>>,
    waits_us: Mutex<Vec<u32>>,
    events: Mutex<BTreeMap<&'static str, u64>>,
}

fn us(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

impl Recorder {
    /// A request that got an answer; `error` is `None` for a 2xx/304, else the status or the
    /// transport failure (`timeout`, `connect`, ...).
    pub fn request(&self, kind: Kind, latency: Duration, error: Option<String>) {
        let mut kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        let k = kinds.entry(kind).or_default();
        match error {
            None => {
                k.ok += 1;
                if k.latencies_us.len() < MAX_SAMPLES {
                    k.latencies_us.push(us(latency));
                }
            }
            Some(e) => *k.errors.entry(e).or_default() += 1,
        }
    }

    /// Time a request waited for a free slot under `--max-in-flight`.
    pub fn wait(&self, waited: Duration) {
        let mut w = self.waits_us.lock().unwrap_or_else(|e| e.into_inner());
        if w.len() < MAX_SAMPLES {
            w.push(us(waited));
        }
    }

    /// Counts a simulated event (`agent_silenced`, `site_dark`, `ehr_state_change`, ...).
    pub fn event(&self, name: &'static str) {
        *self
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name)
            .or_default() += 1;
    }

    /// The summary after `elapsed` of running.
    pub fn summary(&self, elapsed: Duration) -> Summary {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let mut kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        let mut requests = BTreeMap::new();
        let mut total_ok = 0;
        let mut total_errors = 0;
        for kind in Kind::ALL {
            let Some(k) = kinds.get_mut(&kind) else { continue };
            let errors: u64 = k.errors.values().sum();
            total_ok += k.ok;
            total_errors += errors;
            requests.insert(
                kind.name().to_string(),
                KindSummary {
                    ok: k.ok,
                    errors,
                    errors_by_status: k.errors.clone(),
                    per_sec: k.ok as f64 / secs,
                    latency_ms: Percentiles::of(&mut k.latencies_us),
                },
            );
        }
        let mut waits = self.waits_us.lock().unwrap_or_else(|e| e.into_inner());
        Summary {
            elapsed_secs: elapsed.as_secs_f64(),
            requests_ok: total_ok,
            errors: total_errors,
            requests_per_sec: total_ok as f64 / secs,
            requests,
            slot_wait_ms: Percentiles::of(&mut waits),
            events: self
                .events
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            collector_metrics: BTreeMap::new(),
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples` (microseconds); sorts them in place.
    pub fn of(samples: &mut [u32]) -> Percentiles {
        if samples.is_empty() {
            return Percentiles::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            f64::from(samples[rank - 1]) / 1000.0
        };
        Percentiles {
            count: samples.len() as u64,
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// One request type's figures.
#[derive(Debug, Clone, Serialize)]
pub struct KindSummary {
    pub ok: u64,
    pub errors: u64,
    pub errors_by_status: BTreeMap<String, u64>,
    pub per_sec: f64,
    pub latency_ms: Percentiles,
}

/// The whole run's figures, as printed and written with `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub elapsed_secs: f64,
    pub requests_ok: u64,
    pub errors: u64,
    pub requests_per_sec: f64,
    pub requests: BTreeMap<String, KindSummary>,
    /// Time requests waited for the simulator's own concurrency limit.
    pub slot_wait_ms: Percentiles,
    pub events: BTreeMap<String, u64>,
    /// Selected gauges and counters of the collector's `/metrics` at the end of the run.
    pub collector_metrics: BTreeMap<String, f64>,
}

impl Summary {
    /// The human-readable table.
    pub fn render(&self) -> String {
        let mut s = format!(
            "elapsed {:.1} s, {} requests ok ({:.1}/s), {} errors\n{:<10} {:>9} {:>7} {:>8} {:>9} {:>9} {:>9} {:>9}\n",
            self.elapsed_secs,
            self.requests_ok,
            self.requests_per_sec,
            self.errors,
            "request",
            "ok",
            "errors",
            "per s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms"
        );
        for (name, k) in &self.requests {
            let l = k.latency_ms;
            s.push_str(&format!(
                "{name:<10} {:>9} {:>7} {:>8.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}\n",
                k.ok, k.errors, k.per_sec, l.p50, l.p95, l.p99, l.max
            ));
            for (status, n) in &k.errors_by_status {
                s.push_str(&format!("  {name} error {status}: {n}\n"));
            }
        }
        let w = self.slot_wait_ms;
        s.push_str(&format!(
            "waited for a simulator slot: p99 {:.1} ms, max {:.1} ms\n",
            w.p99, w.max
        ));
        if !self.events.is_empty() {
            let ev: Vec<String> = self.events.iter().map(|(k, v)| format!("{k} {v}")).collect();
            s.push_str(&format!("events: {}\n", ev.join(", ")));
        }
        if !self.collector_metrics.is_empty() {
            let m: Vec<String> = self.collector_metrics.iter().map(|(k, v)| format!("{k} {v}")).collect();
            s.push_str(&format!("collector: {}\n", m.join(", ")));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<u32> = (1..=1000).map(|i| i * 1000).collect();
        let p = Percentiles::of(&mut v);
        assert_eq!(
            (p.count, p.p50, p.p95, p.p99, p.max),
            (1000, 500.0, 950.0, 990.0, 1000.0)
        );
        assert_eq!(Percentiles::of(&mut []), Percentiles::default());
        let mut one = vec![2500];
        assert_eq!(Percentiles::of(&mut one).p99, 2.5);
    }

    #[test]
    fn errors_are_counted_by_status_and_kept_out_of_latencies() {
        let r = Recorder::default();
        r.request(Kind::Heartbeat, Duration::from_millis(3), None);
        r.request(Kind::Heartbeat, Duration::from_millis(900), Some("503".into()));
        r.request(Kind::Heartbeat, Duration::from_millis(900), Some("503".into()));
        r.request(Kind::Report, Duration::from_millis(30), Some("timeout".into()));
        let s = r.summary(Duration::from_secs(1));
        assert_eq!((s.requests_ok, s.errors), (1, 3));
        let hb = &s.requests["heartbeat"];
        assert_eq!(hb.errors_by_status["503"], 2);
        assert_eq!(hb.latency_ms.max, 3.0);
        assert_eq!(s.requests["report"].errors_by_status["timeout"], 1);
        let text = s.render();
        assert!(text.contains("heartbeat error 503: 2"), "{text}");
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["requests"]["heartbeat"]["latency_ms"]["p99"], 3.0);
    }
}
