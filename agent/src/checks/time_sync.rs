//! Clock synchronisation.
//!
//! - Linux, chrony: found by /etc/chrony/chrony.conf or /etc/chrony.conf, state from
//!   `chronyc tracking` (talks to chronyd over its Unix socket; no privilege).
//! - Linux, systemd-timesyncd: /run/systemd/timesync/synchronized exists once the clock has been
//!   synchronised (systemd 239 and later); the service counts as used when it is enabled
//!   (/etc/systemd/system/sysinit.target.wants/systemd-timesyncd.service).
//! - Linux, ntpd: found by /etc/ntp.conf or /etc/ntpsec/ntp.conf; its state is not read yet (an
//!   error observation says so rather than guessing).
//! - Windows: `w32tm /query /status` (no privilege), English output; a machine that keeps time
//!   from its own clock (`Source: Local CMOS Clock`, `Free-running System Clock`), has never
//!   synchronised, or shows leap indicator 3 is not synchronised.
//! - macOS (`sntp`) is not read yet.

use rounds_protocol::Observation;
use rounds_protocol::obs::{Payload, TimeSync};

use super::{Check, Host, Platform, not_supported, platform};

/// Observes clock synchronisation.
#[derive(Debug)]
pub struct TimeSyncCheck;

impl Check for TimeSyncCheck {
    fn name(&self) -> &'static str {
        "time_sync"
    }

    fn kinds(&self) -> &'static [&'static str] {
        &[TimeSync::KIND]
    }

    fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(10)
    }

    fn run(&self, host: &Host) -> Vec<Observation> {
        collect(host, platform())
    }
}

fn collect(host: &Host, platform: Platform) -> Vec<Observation> {
    let result = match platform {
        Platform::Linux => linux(host),
        Platform::Windows => host
            .runner
            .run("w32tm", &["/query", "/status"])
            .and_then(|out| parse_w32tm_status(&out)),
        Platform::MacOs => return not_supported(&[TimeSync::KIND], host, "sntp"),
    };
    vec![Observation::from_result("host", host.now, result)]
}

/// Parses `w32tm /query /status` (English).
pub fn parse_w32tm_status(text: &str) -> Result<TimeSync, String> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim().to_string())
        })
    };
    let (Some(leap), Some(source)) = (field("Leap Indicator"), field("Source")) else {
        return Err(format!(
            "unrecognised w32tm output (only English is understood): {}",
            text.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("empty output")
        ));
    };
    let local = source.starts_with("Local CMOS Clock") || source.starts_with("Free-running System Clock");
    let never = field("Last Successful Sync Time").is_some_and(|t| t == "unspecified");
    let offset_ms = field("Phase Offset")
        .and_then(|v| v.trim_end_matches('s').parse::<f64>().ok())
        .map(|s| s * 1000.0);
    Ok(TimeSync {
        synchronized: !leap.starts_with('3') && !local && !never,
        service: Some("w32time".to_string()),
        offset_ms,
    })
}

/// Parses `chronyc tracking`: `(synchronised, offset in ms)`. The offset is positive when the
/// system clock is fast.
pub fn parse_chronyc_tracking(text: &str) -> Result<(bool, Option<f64>), String> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim().to_string())
        })
    };
    let leap = field("Leap status").ok_or_else(|| format!("unrecognised chronyc tracking output: {}", text.trim()))?;
    let offset_ms = field("System time").and_then(|v| {
        let mut w = v.split_whitespace();
        let secs: f64 = w.next()?.parse().ok()?;
        let sign = match w.nth(1)? {
            "fast" => 1.0,
            "slow" => -1.0,
            _ => return None,
        };
        Some(sign * secs * 1000.0)
    });
    let unsynced_ref = field("Reference ID").is_some_and(|r| {
        r.split_whitespace()
            .next()
            .is_some_and(|id| id.chars().all(|c| c == '0'))
    });
    Ok((leap != "Not synchronised" && !unsynced_ref, offset_ms))
}

fn linux(host: &Host) -> Result<TimeSync, String> {
    if host.exists("/etc/chrony/chrony.conf") || host.exists("/etc/chrony.conf") {
        let out = host
            .runner
            .run("chronyc", &["tracking"])
            .map_err(|e| format!("chrony is configured but chronyc tracking failed: {e}"))?;
        let (synchronized, offset_ms) = parse_chronyc_tracking(&out)?;
        return Ok(TimeSync {
            synchronized,
            service: Some("chrony".to_string()),
            offset_ms,
        });
    }
    let timesyncd_enabled = host.exists("/etc/systemd/system/sysinit.target.wants/systemd-timesyncd.service");
    let synced_flag = host.exists("/run/systemd/timesync/synchronized");
    if timesyncd_enabled || synced_flag {
        return Ok(TimeSync {
            synchronized: synced_flag,
            service: Some("systemd-timesyncd".to_string()),
            offset_ms: None,
        });
    }
    if host.exists("/etc/ntp.conf") || host.exists("/etc/ntpsec/ntp.conf") {
        return Err("ntpd is configured; its synchronisation state is not read yet".to_string());
    }
    Ok(TimeSync {
        synchronized: false,
        service: None,
        offset_ms: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testutil::{FakeRunner, host, payload, recorded};

    #[test]
    fn chronyc_tracking_outputs() {
        let (synced, offset) = parse_chronyc_tracking(&recorded("chronyc/tracking-normal.txt")).unwrap();
        assert!(synced);
        assert!((offset.unwrap() + 0.107969).abs() < 1e-9, "{offset:?}");
        let (synced, _) = parse_chronyc_tracking(&recorded("chronyc/tracking-not-synchronised.txt")).unwrap();
        assert!(!synced);
        let (synced, offset) = parse_chronyc_tracking(&recorded("chronyc/tracking-aws.txt")).unwrap();
        assert!(synced);
        assert!((offset.unwrap() + 0.000626).abs() < 1e-9);
        assert!(parse_chronyc_tracking("506 Cannot talk to daemon").is_err());
    }

    #[test]
    fn chrony_through_the_runner() {
        let h = host(
            "chrony",
            FakeRunner::default().with("chronyc tracking", Ok(&recorded("chronyc/tracking-normal.txt"))),
            "2026-11-24T10:00:00Z",
        );
        let t = linux(&h).unwrap();
        assert_eq!((t.synchronized, t.service.as_deref()), (true, Some("chrony")));
        let down = host(
            "chrony",
            FakeRunner::default().with(
                "chronyc tracking",
                Err("chronyc exited with exit status: 1: 506 Cannot talk to daemon"),
            ),
            "2026-11-24T10:00:00Z",
        );
        assert!(linux(&down).unwrap_err().contains("Cannot talk to daemon"));
    }

    #[test]
    fn w32tm_outputs() {
        let t = parse_w32tm_status(&recorded("w32tm/status-synced.txt")).unwrap();
        assert!(t.synchronized);
        assert!((t.offset_ms.unwrap() + 3.8147).abs() < 1e-9);
        let cmos = parse_w32tm_status(&recorded("w32tm/status-local-cmos.txt")).unwrap();
        assert!(!cmos.synchronized);
        assert!(
            parse_w32tm_status("The following error occurred: The service has not been started. (0x80070426)").is_err()
        );
        let h = host(
            "empty",
            FakeRunner::default().with("w32tm /query /status", Ok(&recorded("w32tm/status-synced.txt"))),
            "2026-11-24T10:00:00Z",
        );
        let t: TimeSync = payload(&collect(&h, Platform::Windows), "host");
        assert_eq!(t.service.as_deref(), Some("w32time"));
    }

    #[test]
    fn no_time_service() {
        let t = linux(&host("no-firewall", FakeRunner::default(), "2026-11-24T10:00:00Z")).unwrap();
        assert!(!t.synchronized);
        assert_eq!(t.service, None);
    }
}
