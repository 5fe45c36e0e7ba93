//! Pure judgement: N-of-M windows, what a site's network baseline says, and which finding
//! rules are which alert sources. No I/O: the engine and the fault harness call these.

use chrono::{DateTime, Utc};
use rounds_policies::Severity;

use super::model::CauseKind;

/// Pushes one result (`true` = failed) into a window of the last `n` results and says whether
/// the source is failing now: it starts failing at `fail_of` failures among the last `n`, and
/// stops after `recover` passes in a row (hysteresis, so a flapping source stays failing).
pub fn push(results: &mut String, failed: bool, failing: bool, n: usize, fail_of: usize, recover: usize) -> bool {
    results.push(if failed { 'F' } else { 'P' });
    while results.len() > n {
        results.remove(0);
    }
    let failures = results.chars().filter(|c| *c == 'F').count();
    if !failing {
        failures >= fail_of
    } else {
        let tail = results.chars().rev().take_while(|c| *c == 'P').count();
        tail < recover
    }
}

/// Whether a failing window has gone up in between: the source is flapping.
pub fn flapping(results: &str) -> bool {
    let mut changes = 0;
    let mut prev = None;
    for c in results.chars() {
        if prev.is_some_and(|p| p != c) {
            changes += 1;
        }
        prev = Some(c);
    }
    changes >= 2
}

/// One baseline probe's state as last known: `role` is `gateway`, `resolver` or `reference`.
#[derive(Debug, Clone, PartialEq)]
pub struct BaselineState {
    pub role: String,
    pub target: String,
    pub up: bool,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

/// What a set of baseline states (one site's machines) says about the site's own network.
/// `None`: the site's internet works (or nothing says otherwise).
pub fn network_verdict(states: &[&BaselineState]) -> Option<(CauseKind, String)> {
    let of =
        |role: &'static str| -> Vec<&BaselineState> { states.iter().copied().filter(|s| s.role == role).collect() };
    let gateways = of("gateway");
    let gateway_down = !gateways.is_empty() && gateways.iter().all(|s| !s.up);
    let refs = of("reference");
    let refs_down = !refs.is_empty() && refs.iter().all(|s| !s.up);
    let resolvers = of("resolver");
    let resolvers_down = !resolvers.is_empty() && resolvers.iter().all(|s| !s.up);
    let dns_reason = |s: &&BaselineState| s.reason.as_deref().is_some_and(|r| r.starts_with("dns"));
    if gateway_down {
        return Some((
            CauseKind::SiteNetwork,
            "the site's own network or router: the machines ran but their default gateway did not answer; check the router, switch and power to the network equipment".into(),
        ));
    }
    // Outside addresses fail for reasons other than name resolution: the link itself.
    let link_down = refs_down && refs.iter().any(|s| !dns_reason(s));
    if link_down {
        return Some((
            CauseKind::IspLink,
            "the site's internet link (ISP): gateway and local network were up but nothing outside answered; call the ISP".into(),
        ));
    }
    if resolvers_down || (refs_down && refs.iter().any(dns_reason)) {
        return Some((
            CauseKind::IspDns,
            "the ISP's name service (DNS): the gateway answered but names did not resolve; call the ISP or switch the site's resolvers".into(),
        ));
    }
    None
}

/// The alert source a finding rule raises, and whether only a person may resolve it.
pub fn finding_source(rule: &str, severity: Severity, threshold: Severity) -> Option<(&'static str, bool)> {
    Some(match rule {
        "hipaa.backup.recent" | "hipaa.backup.succeeded" => ("backup", false),
        "hipaa.encryption.at_rest" => ("encryption", false),
        "hipaa.audit.log_integrity" => ("audit_tamper", true),
        "hipaa.transmission.certificate" => ("certificate", false),
        "hipaa.availability.disk_space" => ("disk_space", false),
        // The probes raise EHR incidents themselves, per endpoint and site.
        "hipaa.availability.ehr_reachable" => return None,
        // Severity orders critical first: "at or above" is `<=`.
        _ if severity <= threshold => ("finding", false),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(samples: &str) -> Vec<bool> {
        let mut w = String::new();
        let mut failing = false;
        samples
            .chars()
            .map(|c| {
                failing = push(&mut w, c == 'F', failing, 5, 3, 2);
                failing
            })
            .collect()
    }

    #[test]
    fn three_of_five_open_two_in_a_row_recover() {
        assert_eq!(run("FPFPF"), [false, false, false, false, true]);
        assert_eq!(
            run("FFFPFPFPP"),
            [false, false, true, true, true, true, true, true, false]
        );
        assert_eq!(run("FFPPP"), [false; 5]);
    }

    #[test]
    fn flapping_is_two_changes() {
        assert!(flapping("FPF"));
        assert!(!flapping("PPFFF"));
    }

    #[test]
    fn high_threshold_takes_critical_and_high_only() {
        assert_eq!(
            finding_source("x.y", Severity::Critical, Severity::High),
            Some(("finding", false))
        );
        assert_eq!(finding_source("x.y", Severity::Medium, Severity::High), None);
        assert_eq!(
            finding_source("hipaa.audit.log_integrity", Severity::High, Severity::High),
            Some(("audit_tamper", true))
        );
    }
}
