//! The simulator's settings: command-line arguments as written ([`Args`]) and the validated
//! [`SimConfig`] the run uses. Validation collects every problem at once.
//!
//! The collector must be on the loopback interface (`127.0.0.1`, `::1` or `localhost`): the
//! simulator is a load generator and never points at another machine.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Largest number of simulated agents in one run.
pub const MAX_AGENTS: usize = 100_000;
/// Longest run, in seconds (one day).
pub const MAX_DURATION_SECS: u64 = 86_400;
/// Largest number of requests in flight at once.
pub const MAX_IN_FLIGHT: usize = 4_096;

/// Command-line arguments, as written.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "rounds-sim",
    version,
    about = "Simulate many Rounds agents against a collector on this machine"
)]
pub struct Args {
    /// Base URL of the collector, on loopback only, e.g. https://localhost:18555.
    #[arg(long)]
    pub collector: String,
    /// PEM file with the collector's CA certificate (the data dir's ca.pem).
    #[arg(long)]
    pub ca: PathBuf,
    /// Enrollment tokens, one a line: `practice<TAB>site<TAB>token` (bench/tokens.sh writes it).
    #[arg(long)]
    pub tokens: Option<PathBuf>,
    /// Credentials file: agents enrolled by an earlier run are reused from it, and every
    /// agent's credentials and next sequence number are written back at the end (mode 0600).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Number of simulated agents.
    #[arg(long, default_value_t = 100)]
    pub agents: usize,
    /// How long to run, in seconds; the simulator stops by itself.
    #[arg(long, default_value_t = 60)]
    pub duration_secs: u64,
    /// Seconds between heartbeats of each agent (the agent's default is 30).
    #[arg(long, default_value_t = 30)]
    pub heartbeat_secs: u64,
    /// Seconds between two reports of the same check (the default schedule is hourly).
    #[arg(long, default_value_t = 3600)]
    pub report_interval_secs: u64,
    /// Seconds between two EHR probe summaries of an agent (state changes are sent at once).
    #[arg(long, default_value_t = 300)]
    pub probe_summary_secs: u64,
    /// Agents start at random times within this many seconds [default: the heartbeat interval].
    #[arg(long)]
    pub ramp_secs: Option<u64>,
    /// Every agent sends every check's report when it starts (a fleet booting), instead of
    /// starting in steady state with each check's next run at a random point of its interval.
    #[arg(long)]
    pub cold_start: bool,
    /// Largest number of requests in flight at once.
    #[arg(long, default_value_t = 256)]
    pub max_in_flight: usize,
    /// Seed of every random choice (profiles, phases, faults), for reproducible runs.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The standard failure scenario: 2 % of agents go silent, one site goes dark and comes
    /// back, the EHR endpoint of 3 practices goes down and comes back, 10 % of agents restart
    /// at once. The options below override its parts.
    #[arg(long)]
    pub faults: bool,
    /// Percent of agents that go silent (stop for good) during the run.
    #[arg(long)]
    pub silent_percent: Option<f64>,
    /// Number of sites whose agents all go dark for the middle of the run, then reconnect.
    #[arg(long)]
    pub dark_sites: Option<usize>,
    /// Number of practices whose EHR endpoint goes down for the middle of the run.
    #[arg(long)]
    pub ehr_outage_practices: Option<usize>,
    /// Percent of agents that restart at the same moment (new connections, every report).
    #[arg(long)]
    pub reconnect_burst_percent: Option<f64>,
}

/// Failure injection, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultSettings {
    pub silent_percent: f64,
    pub dark_sites: usize,
    pub ehr_outage_practices: usize,
    pub reconnect_burst_percent: f64,
}

impl FaultSettings {
    /// No failure injection.
    pub const NONE: FaultSettings = FaultSettings {
        silent_percent: 0.0,
        dark_sites: 0,
        ehr_outage_practices: 0,
        reconnect_burst_percent: 0.0,
    };
    /// The standard scenario of `--faults`.
    pub const STANDARD: FaultSettings = FaultSettings {
        silent_percent: 2.0,
        dark_sites: 1,
        ehr_outage_practices: 3,
        reconnect_burst_percent: 10.0,
    };
}

/// Validated settings of a run.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Base URL without a trailing slash, e.g. `https://localhost:18555`.
    pub base_url: String,
    /// The host name in the URL and the loopback address it is pinned to.
    pub host: String,
    pub addr: SocketAddr,
    pub ca: PathBuf,
    pub tokens: Option<PathBuf>,
    pub state: Option<PathBuf>,
    pub agents: usize,
    pub duration: Duration,
    pub heartbeat: Duration,
    pub report_interval: Duration,
    pub probe_summary: Duration,
    pub ramp: Duration,
    pub cold_start: bool,
    pub max_in_flight: usize,
    pub seed: u64,
    pub json: Option<PathBuf>,
    pub faults: FaultSettings,
    /// The collector's `metrics_token` (issue 15), sent as a bearer token to `/metrics`; the
    /// command line takes it from `ROUNDS_METRICS_TOKEN`.
    pub metrics_token: Option<String>,
}

/// Everything wrong with the arguments.
#[derive(Debug, thiserror::Error)]
#[error("invalid arguments:\n  {}", .problems.join("\n  "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

/// Splits `https://host:port[/]` into host and loopback socket address, or says why not.
pub fn loopback_url(url: &str) -> Result<(String, String, SocketAddr), String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| format!("--collector {url:?}: must start with https://"))?;
    let authority = rest.trim_end_matches('/');
    if authority.contains('/') || authority.contains('@') {
        return Err(format!("--collector {url:?}: give only https://host:port"));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => (h, p),
        _ => return Err(format!("--collector {url:?}: the port is missing")),
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("--collector {url:?}: port {port:?} is not a number from 1 to 65535"))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let ip = match bare {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        other => other
            .parse::<IpAddr>()
            .map_err(|_| format!("--collector {url:?}: host {host:?} is not loopback"))?,
    };
    if !ip.is_loopback() || port == 0 {
        return Err(format!(
            "--collector {url:?}: only a collector on this machine (127.0.0.1, ::1 or localhost, a real port) may be driven"
        ));
    }
    Ok((
        format!("https://{authority}"),
        bare.to_string(),
        SocketAddr::new(ip, port),
    ))
}

fn percent(name: &str, v: f64, problems: &mut Vec<String>) -> f64 {
    if !(0.0..=100.0).contains(&v) {
        problems.push(format!("--{name} {v}: must be between 0 and 100"));
    }
    v
}

impl SimConfig {
    /// Validates the arguments, naming every problem.
    pub fn from_args(args: Args) -> Result<SimConfig, ConfigError> {
        let Args {
            collector,
            ca,
            tokens,
            state,
            agents,
            duration_secs,
            heartbeat_secs,
            report_interval_secs,
            probe_summary_secs,
            ramp_secs,
            cold_start,
            max_in_flight,
            seed,
            json,
            faults,
            silent_percent,
            dark_sites,
            ehr_outage_practices,
            reconnect_burst_percent,
        } = args;
        let mut problems = Vec::new();
        let (base_url, host, addr) = match loopback_url(&collector) {
            Ok(v) => v,
            Err(p) => {
                problems.push(p);
                (String::new(), String::new(), SocketAddr::from((Ipv4Addr::LOCALHOST, 1)))
            }
        };
        if agents == 0 || agents > MAX_AGENTS {
            problems.push(format!("--agents {agents}: must be 1 to {MAX_AGENTS}"));
        }
        if duration_secs == 0 || duration_secs > MAX_DURATION_SECS {
            problems.push(format!(
                "--duration-secs {duration_secs}: must be 1 to {MAX_DURATION_SECS}"
            ));
        }
        for (name, v) in [
            ("heartbeat-secs", heartbeat_secs),
            ("report-interval-secs", report_interval_secs),
            ("probe-summary-secs", probe_summary_secs),
        ] {
            if v == 0 || v > MAX_DURATION_SECS {
                problems.push(format!("--{name} {v}: must be 1 to {MAX_DURATION_SECS}"));
            }
        }
        let ramp_secs = ramp_secs.unwrap_or(heartbeat_secs);
        if ramp_secs > MAX_DURATION_SECS {
            problems.push(format!("--ramp-secs {ramp_secs}: must be at most {MAX_DURATION_SECS}"));
        }
        if max_in_flight == 0 || max_in_flight > MAX_IN_FLIGHT {
            problems.push(format!("--max-in-flight {max_in_flight}: must be 1 to {MAX_IN_FLIGHT}"));
        }
        if tokens.is_none() && state.is_none() {
            problems.push("give --tokens (new enrollments) or --state (agents enrolled before), or both".into());
        }
        let base = if faults {
            FaultSettings::STANDARD
        } else {
            FaultSettings::NONE
        };
        let faults = FaultSettings {
            silent_percent: percent(
                "silent-percent",
                silent_percent.unwrap_or(base.silent_percent),
                &mut problems,
            ),
            dark_sites: dark_sites.unwrap_or(base.dark_sites),
            ehr_outage_practices: ehr_outage_practices.unwrap_or(base.ehr_outage_practices),
            reconnect_burst_percent: percent(
                "reconnect-burst-percent",
                reconnect_burst_percent.unwrap_or(base.reconnect_burst_percent),
                &mut problems,
            ),
        };
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        Ok(SimConfig {
            base_url,
            host,
            addr,
            ca,
            tokens,
            state,
            agents,
            duration: Duration::from_secs(duration_secs),
            heartbeat: Duration::from_secs(heartbeat_secs),
            report_interval: Duration::from_secs(report_interval_secs),
            probe_summary: Duration::from_secs(probe_summary_secs),
            ramp: Duration::from_secs(ramp_secs),
            cold_start,
            max_in_flight,
            seed,
            json,
            faults,
            metrics_token: std::env::var("ROUNDS_METRICS_TOKEN").ok().filter(|t| !t.is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(extra: &[&str]) -> Result<SimConfig, ConfigError> {
        let mut argv = vec!["rounds-sim", "--ca", "ca.pem", "--tokens", "t.tsv"];
        argv.extend_from_slice(extra);
        SimConfig::from_args(Args::parse_from(argv))
    }

    #[test]
    fn only_loopback_collectors_are_accepted() {
        for ok in [
            "https://localhost:8443",
            "https://127.0.0.1:8443/",
            "https://[::1]:8443",
        ] {
            let c = parse(&["--collector", ok]).unwrap();
            assert!(c.addr.ip().is_loopback(), "{ok}");
            assert!(!c.base_url.ends_with('/'));
        }
        for bad in [
            "https://example.com:8443",
            "https://10.0.0.1:8443",
            "http://localhost:8443",
            "https://localhost",
            "https://localhost:0",
            "https://localhost:8443/api",
        ] {
            let e = parse(&["--collector", bad]).unwrap_err();
            assert!(e.to_string().contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn every_problem_is_named_at_once() {
        let e = parse(&[
            "--collector",
            "https://example.org:1",
            "--agents",
            "0",
            "--heartbeat-secs",
            "0",
            "--silent-percent",
            "150",
        ])
        .unwrap_err();
        assert_eq!(e.problems.len(), 4, "{e}");
        for part in [
            "example.org",
            "--agents 0",
            "--heartbeat-secs 0",
            "--silent-percent 150",
        ] {
            assert!(e.to_string().contains(part), "{part}: {e}");
        }
    }

    #[test]
    fn faults_flag_sets_the_standard_scenario_and_parts_override_it() {
        let c = parse(&["--collector", "https://localhost:1", "--faults", "--dark-sites", "2"]).unwrap();
        assert_eq!(
            c.faults,
            FaultSettings {
                dark_sites: 2,
                ..FaultSettings::STANDARD
            }
        );
        let c = parse(&["--collector", "https://localhost:1"]).unwrap();
        assert_eq!(c.faults, FaultSettings::NONE);
        assert_eq!(c.ramp, c.heartbeat);
    }
}
