//! Failure injection, planned once before the run from the seed: which agents go silent and
//! when, which sites go dark, which practices lose their EHR endpoint, which agents restart
//! together. Times are offsets from the start of the run, as fractions of its length:
//!
//! - silent agents stop for good at a random time in 20-50 % of the run;
//! - dark sites send nothing from 30 % to 60 % (their reports wait, as in the agent's spool),
//!   then reconnect on new connections and deliver what waited;
//! - EHR outages last from 40 % to 70 %: every agent of the practice reports the probe's state
//!   change within one probe interval of each edge;
//! - the restart burst is at 80 %: the chosen agents reconnect at the same instant and send
//!   every check's report, as a fleet does after a power cut.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::Rng;
use rand::seq::SliceRandom;

use crate::config::FaultSettings;

/// A time window, as offsets from the start of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: Duration,
    pub to: Duration,
}

impl Window {
    pub fn contains(&self, t: Duration) -> bool {
        self.from <= t && t < self.to
    }
}

/// The faults of one agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentFaults {
    pub silent_at: Option<Duration>,
    pub dark: Option<Window>,
    pub ehr_down: Option<Window>,
    pub restart_at: Option<Duration>,
}

/// The planned faults of every agent, and a description for people.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    pub agents: Vec<AgentFaults>,
    pub description: Vec<String>,
}

fn count(percent: f64, n: usize) -> usize {
    ((percent / 100.0) * n as f64).round() as usize
}

fn frac(d: Duration, f: f64) -> Duration {
    d.mul_f64(f)
}

/// Plans the faults for agents at `(practice, site)` each.
pub fn plan(
    settings: &FaultSettings,
    duration: Duration,
    rng: &mut impl Rng,
    agents: &[(String, String)],
) -> FaultPlan {
    let FaultSettings {
        silent_percent,
        dark_sites,
        ehr_outage_practices,
        reconnect_burst_percent,
    } = settings;
    let n = agents.len();
    let mut out = FaultPlan {
        agents: vec![AgentFaults::default(); n],
        description: vec![],
    };
    let mut order: Vec<usize> = (0..n).collect();

    order.shuffle(rng);
    let silent = count(*silent_percent, n);
    for &i in order.iter().take(silent) {
        out.agents[i].silent_at = Some(frac(duration, rng.gen_range(0.2..0.5)));
    }
    if silent > 0 {
        out.description
            .push(format!("{silent} agents go silent between 20 % and 50 % of the run"));
    }

    let mut sites: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    for (i, (p, s)) in agents.iter().enumerate() {
        sites.entry((p.as_str(), s.as_str())).or_default().push(i);
    }
    let mut site_keys: Vec<_> = sites.keys().copied().collect();
    site_keys.shuffle(rng);
    let dark = Window {
        from: frac(duration, 0.3),
        to: frac(duration, 0.6),
    };
    for key in site_keys.iter().take(*dark_sites) {
        for &i in &sites[key] {
            out.agents[i].dark = Some(dark);
        }
        out.description.push(format!(
            "site {}/{} ({} agents) dark from 30 % to 60 % of the run",
            key.0,
            key.1,
            sites[key].len()
        ));
    }

    let mut practices: Vec<&str> = agents
        .iter()
        .map(|(p, _)| p.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    practices.shuffle(rng);
    let outage = Window {
        from: frac(duration, 0.4),
        to: frac(duration, 0.7),
    };
    let down: BTreeSet<&str> = practices.iter().take(*ehr_outage_practices).copied().collect();
    for (i, (p, _)) in agents.iter().enumerate() {
        if down.contains(p.as_str()) {
            out.agents[i].ehr_down = Some(outage);
        }
    }
    if !down.is_empty() {
        let names: Vec<&str> = down.iter().copied().collect();
        out.description.push(format!(
            "EHR endpoint down from 40 % to 70 % of the run for practices {}",
            names.join(", ")
        ));
    }

    order.shuffle(rng);
    let burst = count(*reconnect_burst_percent, n);
    let at = frac(duration, 0.8);
    for &i in order.iter().take(burst) {
        out.agents[i].restart_at = Some(at);
    }
    if burst > 0 {
        out.description
            .push(format!("{burst} agents restart together at 80 % of the run"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet() -> Vec<(String, String)> {
        (0..200)
            .map(|i| (format!("P{:02}", i / 10), format!("S{}", i / 5 % 2)))
            .collect()
    }

    #[test]
    fn the_standard_scenario_hits_the_planned_shares() {
        let d = Duration::from_secs(100);
        let mut rng = crate::fleet::rng_for(3, 0, 0);
        let agents = fleet();
        let p = plan(&FaultSettings::STANDARD, d, &mut rng, &agents);
        assert_eq!(p.agents.iter().filter(|a| a.silent_at.is_some()).count(), 4);
        for a in p.agents.iter().filter_map(|a| a.silent_at) {
            assert!(a >= Duration::from_secs(20) && a < Duration::from_secs(50));
        }
        // One site of five agents goes dark, all of them together.
        let dark: Vec<usize> = (0..200).filter(|&i| p.agents[i].dark.is_some()).collect();
        assert_eq!(dark.len(), 5);
        assert!(dark.iter().all(|&i| agents[i] == agents[dark[0]]));
        // Three practices of ten agents each lose their EHR endpoint.
        let ehr: BTreeSet<&str> = (0..200)
            .filter(|&i| p.agents[i].ehr_down.is_some())
            .map(|i| agents[i].0.as_str())
            .collect();
        assert_eq!(ehr.len(), 3);
        assert_eq!(p.agents.iter().filter(|a| a.ehr_down.is_some()).count(), 30);
        assert_eq!(
            p.agents
                .iter()
                .filter(|a| a.restart_at == Some(Duration::from_secs(80)))
                .count(),
            20
        );
        assert_eq!(p.description.len(), 4, "{:?}", p.description);
    }

    #[test]
    fn no_faults_plans_nothing() {
        let mut rng = crate::fleet::rng_for(3, 0, 0);
        let p = plan(&FaultSettings::NONE, Duration::from_secs(100), &mut rng, &fleet());
        assert!(p.agents.iter().all(|a| *a == AgentFaults::default()));
        assert!(p.description.is_empty());
    }
}
