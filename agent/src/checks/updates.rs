//! Operating-system updates: pending updates, automatic security updates, reboot required.
//!
//! - Debian/Ubuntu (apt): /etc/apt/apt.conf and /etc/apt/apt.conf.d/* (`APT::Periodic::*`,
//!   as written to 20auto-upgrades), the unattended-upgrades program, its log
//!   /var/log/unattended-upgrades/unattended-upgrades.log (last run), /run/reboot-required, and
//!   on Ubuntu /var/lib/update-notifier/updates-available (pending and security counts). The
//!   log is readable by the `adm` group; without it `last_run` is unknown. Pending security
//!   updates are counted by comparing /var/lib/dpkg/status with the security suites' package
//!   lists in /var/lib/apt/lists (`*security*_Packages`, Debian version ordering); lists kept
//!   compressed (Acquire::GzipIndexes, common in containers) are not read, and the count is then
//!   unknown.
//! - Fedora/RHEL (dnf): /etc/dnf/automatic.conf and whether a dnf-automatic timer is enabled
//!   (/etc/systemd/system/timers.target.wants/).
//! - Windows Update: the policy key HKLM\SOFTWARE\Policies\Microsoft\Windows\WindowsUpdate\AU
//!   (`NoAutoUpdate`, `AUOptions` 4 = download and install on a schedule) and the
//!   ...\WindowsUpdate\Auto Update\RebootRequired key, through `reg query` (no privilege). Without a
//!   policy Windows decides by itself: automatic installation is then unknown. Pending updates
//!   come from the Windows Update agent's last scan (`Microsoft.Update.Session` searcher with
//!   `Online = $false`, through PowerShell; no network, no privilege): an update with an MSRC
//!   severity is a security update, `Critical` is critical and `Important` high
//!   (`severity_known`), its age counted from `LastDeploymentChangeTime`. When the search
//!   fails, pending updates and severity stay unknown.
//! - macOS softwareupdate is not read yet (an error observation says so).
//!
//! Counting all pending updates on Debian needs a package simulation (`apt-get -s upgrade`,
//! seconds of CPU); it is not run, so `pending_count` is unknown there unless update-notifier
//! wrote it.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDateTime, Utc};
use rounds_protocol::Observation;
use rounds_protocol::obs::{Payload, Updates};

use super::{Check, Host, Platform, not_supported, platform, reg_number, reg_value};

/// Observes OS update configuration.
#[derive(Debug)]
pub struct UpdatesCheck;

impl Check for UpdatesCheck {
    fn name(&self) -> &'static str {
        "updates"
    }

    fn kinds(&self) -> &'static [&'static str] {
        &[Updates::KIND]
    }

    fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(20)
    }

    fn run(&self, host: &Host) -> Vec<Observation> {
        collect(host, platform())
    }
}

fn collect(host: &Host, platform: Platform) -> Vec<Observation> {
    let result = match platform {
        Platform::Linux => linux(host),
        Platform::Windows => windows(host),
        Platform::MacOs => return not_supported(&[Updates::KIND], host, "softwareupdate"),
    };
    vec![Observation::from_result("host", host.now, result)]
}

const WU_POLICY: &str = r"HKLM\SOFTWARE\Policies\Microsoft\Windows\WindowsUpdate\AU";
const WU_REBOOT: &str = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired";

/// Automatic installation from the Windows Update policy key: `NoAutoUpdate` 1 turns it off,
/// `AUOptions` 4 installs on a schedule, 2 and 3 only notify or download. `None` when the policy
/// does not say.
pub fn parse_wu_policy(output: &str) -> Option<bool> {
    let number = |name: &str| reg_value(output, name).and_then(|(_, d)| reg_number(&d));
    if number("NoAutoUpdate") == Some(1) {
        return Some(false);
    }
    match number("AUOptions") {
        Some(4) => Some(true),
        Some(2 | 3) => Some(false),
        _ => None,
    }
}

/// The Windows Update agent's cached search for pending software updates, as JSON.
pub(crate) const WU_SEARCH: &str = "$s = (New-Object -ComObject Microsoft.Update.Session).CreateUpdateSearcher(); \
$s.Online = $false; \
@($s.Search(\"IsInstalled=0 and IsHidden=0 and Type='Software'\").Updates | ForEach-Object { \
[ordered]@{ Title = [string]$_.Title; MsrcSeverity = [string]$_.MsrcSeverity; \
LastDeploymentChangeTime = $_.LastDeploymentChangeTime.ToUniversalTime().ToString('o') } }) \
| ConvertTo-Json";

/// Pending Windows updates by MSRC severity; ages in days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WuPending {
    pub pending: u32,
    /// Updates with an MSRC severity (security updates).
    pub security: u32,
    pub oldest_security: Option<u32>,
    pub oldest_critical: Option<u32>,
    /// `Important` is MSRC's second severity: high.
    pub oldest_high: Option<u32>,
}

/// Pending updates from the search's JSON (an array, one object, or nothing when none is
/// pending).
pub fn parse_wu_pending(json: &str, now: DateTime<Utc>) -> Result<WuPending, String> {
    let text = json.trim();
    let items: Vec<serde_json::Value> = if text.is_empty() {
        Vec::new()
    } else {
        match serde_json::from_str(text).map_err(|e| format!("Windows Update search output is not JSON: {e}"))? {
            serde_json::Value::Array(items) => items,
            one => vec![one],
        }
    };
    let age = |u: &serde_json::Value| {
        let at = u["LastDeploymentChangeTime"].as_str()?;
        let at = DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc);
        u32::try_from((now - at).num_days().max(0)).ok()
    };
    let oldest = |pred: &dyn Fn(&str) -> bool| {
        items
            .iter()
            .filter(|u| pred(u["MsrcSeverity"].as_str().unwrap_or("")))
            .filter_map(age)
            .max()
    };
    let security = items
        .iter()
        .filter(|u| !u["MsrcSeverity"].as_str().unwrap_or("").is_empty())
        .count();
    Ok(WuPending {
        pending: u32::try_from(items.len()).unwrap_or(u32::MAX),
        security: u32::try_from(security).unwrap_or(u32::MAX),
        oldest_security: oldest(&|s| !s.is_empty()),
        oldest_critical: oldest(&|s| s == "Critical"),
        oldest_high: oldest(&|s| s == "Important"),
    })
}

fn windows(host: &Host) -> Result<Updates, String> {
    let missing = |e: &str| e.contains("unable to find");
    let auto = match host.runner.run("reg", &["query", WU_POLICY]) {
        Ok(out) => parse_wu_policy(&out),
        Err(e) if missing(&e) => None,
        Err(e) => return Err(e),
    };
    let reboot = match host.runner.run("reg", &["query", WU_REBOOT]) {
        Ok(_) => Some(true),
        Err(e) if missing(&e) => Some(false),
        Err(_) => None,
    };
    let pending = host
        .runner
        .run("powershell", &["-NoProfile", "-NonInteractive", "-Command", WU_SEARCH])
        .and_then(|out| parse_wu_pending(&out, host.now));
    let (pending_count, security, oldest, critical, high, known) = match pending {
        Ok(WuPending {
            pending,
            security,
            oldest_security,
            oldest_critical,
            oldest_high,
        }) => (
            Some(pending),
            Some(security),
            oldest_security,
            oldest_critical,
            oldest_high,
            Some(true),
        ),
        Err(error) => {
            tracing::debug!(%error, "windows update search failed");
            (None, None, None, None, None, None)
        }
    };
    Ok(Updates {
        manager: "windows-update".to_string(),
        pending_count,
        pending_security_count: security,
        oldest_pending_security_days: oldest,
        auto_security_updates: auto,
        reboot_required: reboot,
        last_run: None,
        severity_known: known,
        oldest_pending_critical_days: critical,
        oldest_pending_high_days: high,
    })
}

/// `Name "value";` assignments of an APT configuration file, in order. Comments (`//`, `#`,
/// `/* */` on one line) are skipped; the nested `A { B "v"; };` form is flattened to `A::B`.
pub fn parse_apt_conf(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut scope: Vec<String> = Vec::new();
    for raw in text.lines() {
        let mut line = raw.trim();
        if let Some(i) = line.find("//") {
            line = line[..i].trim();
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        for stmt in line.split_inclusive(['{', '}', ';']) {
            let stmt = stmt.trim();
            if let Some(name) = stmt.strip_suffix('{') {
                scope.push(name.trim().to_string());
            } else if stmt.starts_with('}') {
                scope.pop();
            } else if let Some(body) = stmt.strip_suffix(';') {
                let body = body.trim();
                if let Some((name, value)) = body.split_once(char::is_whitespace) {
                    let mut key = scope.join("::");
                    if !key.is_empty() {
                        key.push_str("::");
                    }
                    key.push_str(name.trim());
                    out.push((key, value.trim().trim_matches('"').to_string()));
                }
            }
        }
    }
    out
}

/// The time of the last `INFO` line of unattended-upgrades.log (`2026-10-06 14:59:50,056 INFO ...`),
/// taken as UTC (the log is written in the machine's local time).
pub fn last_unattended_run(log: &str) -> Option<DateTime<Utc>> {
    log.lines().rev().find_map(|l| {
        let stamp = l.get(..19)?;
        let t = NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S").ok()?;
        Some(t.and_utc())
    })
}

/// `(pending, security)` from Ubuntu's /var/lib/update-notifier/updates-available.
pub fn parse_updates_available(text: &str) -> (Option<u32>, Option<u32>) {
    let mut pending = None;
    let mut security = None;
    for line in text.lines().map(str::trim) {
        let n = line.split_whitespace().next().and_then(|w| w.parse::<u32>().ok());
        if line.ends_with("can be applied immediately.") || line.ends_with("packages can be updated.") {
            pending = n.or(pending);
        } else if line.ends_with("are standard security updates.") || line.ends_with("updates are security updates.") {
            security = n.or(security);
        }
    }
    if pending.is_some() && security.is_none() {
        security = Some(0);
    }
    (pending, security)
}

/// `(package, architecture) -> version` of the packages dpkg lists as installed.
pub fn parse_dpkg_status(text: &str) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')).map(str::trim))
        };
        if let (Some(p), Some(v), Some(st)) = (field("Package"), field("Version"), field("Status"))
            && st.ends_with(" installed")
        {
            out.insert(
                (p.to_string(), field("Architecture").unwrap_or("").to_string()),
                v.to_string(),
            );
        }
    }
    out
}

/// `(package, architecture, version)` of each stanza of an APT `Packages` list.
pub fn parse_packages_list(text: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let (mut p, mut a, mut v) = (None, None, None);
    for line in text.lines().chain(std::iter::once("")) {
        if line.is_empty() {
            if let (Some(p), Some(v)) = (p.take(), v.take()) {
                out.push((p, a.take().unwrap_or_default(), v));
            }
            a = None;
        } else if let Some(x) = line.strip_prefix("Package:") {
            p = Some(x.trim().to_string());
        } else if let Some(x) = line.strip_prefix("Version:") {
            v = Some(x.trim().to_string());
        } else if let Some(x) = line.strip_prefix("Architecture:") {
            a = Some(x.trim().to_string());
        }
    }
    out
}

/// Orders two Debian version strings as dpkg does (epoch, upstream version, revision; `~` sorts
/// before everything, letters before other characters).
pub fn debian_version_cmp(a: &str, b: &str) -> Ordering {
    fn split(v: &str) -> (u64, &str, &str) {
        let (epoch, rest) = match v.split_once(':') {
            Some((e, r)) if e.chars().all(|c| c.is_ascii_digit()) => (e.parse().unwrap_or(0), r),
            _ => (0, v),
        };
        match rest.rsplit_once('-') {
            Some((up, rev)) => (epoch, up, rev),
            None => (epoch, rest, ""),
        }
    }
    fn order(c: Option<u8>) -> i32 {
        match c {
            None => 0,
            Some(c) if c.is_ascii_digit() => 0,
            Some(c) if c.is_ascii_alphabetic() => i32::from(c),
            Some(b'~') => -1,
            Some(c) => i32::from(c) + 256,
        }
    }
    fn part(a: &[u8], b: &[u8]) -> Ordering {
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
                let (ac, bc) = (order(a.get(i).copied()), order(b.get(j).copied()));
                if ac != bc {
                    return ac.cmp(&bc);
                }
                i += 1;
                j += 1;
            }
            while a.get(i) == Some(&b'0') {
                i += 1;
            }
            while b.get(j) == Some(&b'0') {
                j += 1;
            }
            let mut first_diff = Ordering::Equal;
            while i < a.len() && a[i].is_ascii_digit() && j < b.len() && b[j].is_ascii_digit() {
                if first_diff == Ordering::Equal {
                    first_diff = a[i].cmp(&b[j]);
                }
                i += 1;
                j += 1;
            }
            if i < a.len() && a[i].is_ascii_digit() {
                return Ordering::Greater;
            }
            if j < b.len() && b[j].is_ascii_digit() {
                return Ordering::Less;
            }
            if first_diff != Ordering::Equal {
                return first_diff;
            }
        }
        Ordering::Equal
    }
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| part(ua.as_bytes(), ub.as_bytes()))
        .then_with(|| part(ra.as_bytes(), rb.as_bytes()))
}

/// Installed packages for which a security suite offers a newer version, or `None` when no
/// readable (uncompressed) security package list exists.
fn pending_security(host: &Host) -> Result<Option<u32>, String> {
    let lists: Vec<String> = host
        .list_dir("/var/lib/apt/lists")?
        .into_iter()
        .filter(|n| n.contains("security") && n.ends_with("_Packages"))
        .collect();
    if lists.is_empty() {
        return Ok(None);
    }
    let Some(status) = host.read_opt("/var/lib/dpkg/status")? else {
        return Ok(None);
    };
    let installed = parse_dpkg_status(&status);
    let mut pending = BTreeSet::new();
    for list in lists {
        let Some(text) = host.read_opt(format!("/var/lib/apt/lists/{list}"))? else {
            continue;
        };
        for (package, arch, version) in parse_packages_list(&text) {
            if let Some(have) = installed.get(&(package.clone(), arch))
                && debian_version_cmp(&version, have) == Ordering::Greater
            {
                pending.insert(package);
            }
        }
    }
    Ok(Some(pending.len() as u32))
}

fn truthy(v: &str) -> bool {
    !matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "" | "0" | "false" | "no" | "off"
    )
}

fn apt(host: &Host) -> Result<Updates, String> {
    let mut conf = Vec::new();
    if let Some(t) = host.read_opt("/etc/apt/apt.conf")? {
        conf.extend(parse_apt_conf(&t));
    }
    for name in host.list_dir("/etc/apt/apt.conf.d")? {
        if let Some(t) = host.read_opt(format!("/etc/apt/apt.conf.d/{name}"))? {
            conf.extend(parse_apt_conf(&t));
        }
    }
    let get = |k: &str| {
        conf.iter()
            .rev()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    };
    let installed = host.exists("/usr/bin/unattended-upgrade");
    let periodic_on = get("APT::Periodic::Enable").is_none_or(truthy);
    let auto = installed && periodic_on && get("APT::Periodic::Unattended-Upgrade").is_some_and(truthy);
    let last_run = match host.read_opt("/var/log/unattended-upgrades/unattended-upgrades.log") {
        Ok(Some(log)) => last_unattended_run(&log),
        // Not readable without the adm group: unknown, not an error of the whole check.
        Ok(None) | Err(_) => None,
    };
    let (pending, mut security) = host
        .read_opt("/var/lib/update-notifier/updates-available")?
        .map_or((None, None), |t| parse_updates_available(&t));
    if security.is_none() {
        security = pending_security(host)?;
    }
    Ok(Updates {
        manager: "apt".to_string(),
        pending_count: pending,
        pending_security_count: security,
        oldest_pending_security_days: None,
        auto_security_updates: Some(auto),
        reboot_required: Some(host.exists("/run/reboot-required") || host.exists("/var/run/reboot-required")),
        last_run,
        severity_known: None,
        oldest_pending_critical_days: None,
        oldest_pending_high_days: None,
    })
}

/// `(apply_updates, upgrade_type)` from /etc/dnf/automatic.conf.
pub fn parse_dnf_automatic(text: &str) -> (bool, String) {
    let mut apply = false;
    let mut kind = "default".to_string();
    for line in text.lines().map(str::trim) {
        if let Some((k, v)) = line.split_once('=') {
            match k.trim() {
                "apply_updates" => apply = truthy(v),
                "upgrade_type" => kind = v.trim().to_string(),
                _ => {}
            }
        }
    }
    (apply, kind)
}

fn dnf(host: &Host) -> Result<Updates, String> {
    let wants = "/etc/systemd/system/timers.target.wants";
    let install_timer = host.exists(format!("{wants}/dnf-automatic-install.timer"))
        || host.exists(format!("{wants}/dnf5-automatic.timer"));
    let plain_timer = host.exists(format!("{wants}/dnf-automatic.timer"));
    let apply = match host.read_opt("/etc/dnf/automatic.conf")? {
        Some(t) => parse_dnf_automatic(&t).0,
        None => false,
    };
    Ok(Updates {
        manager: "dnf".to_string(),
        pending_count: None,
        pending_security_count: None,
        oldest_pending_security_days: None,
        auto_security_updates: Some(install_timer || (plain_timer && apply)),
        reboot_required: None,
        last_run: None,
        severity_known: None,
        oldest_pending_critical_days: None,
        oldest_pending_high_days: None,
    })
}

fn linux(host: &Host) -> Result<Updates, String> {
    if host.exists("/etc/debian_version") || host.exists("/etc/apt/apt.conf.d") {
        apt(host)
    } else if host.exists("/etc/dnf") {
        dnf(host)
    } else {
        Err("no supported package manager (apt, dnf) found".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testutil::{FakeRunner, at, host, payload, recorded};

    const NOW: &str = "2026-11-24T10:00:00Z";

    #[test]
    fn unattended_upgrades_on() {
        let u = linux(&host("unattended-upgrades-on", FakeRunner::default(), NOW)).unwrap();
        assert_eq!(u.manager, "apt");
        assert_eq!(u.auto_security_updates, Some(true));
        assert_eq!(u.last_run, Some(at("2026-10-06T14:59:51Z")));
        assert_eq!((u.pending_count, u.pending_security_count), (Some(75), Some(31)));
        assert_eq!(u.reboot_required, Some(true));
    }

    #[test]
    fn unattended_upgrades_off() {
        let u = linux(&host("unattended-upgrades-off", FakeRunner::default(), NOW)).unwrap();
        assert_eq!(u.auto_security_updates, Some(false));
        assert_eq!(u.last_run, None);
        assert_eq!(u.reboot_required, Some(false));
        assert_eq!(u.pending_count, None);
    }

    #[test]
    fn windows_pending_updates_by_msrc_severity() {
        let json = recorded("wu-search/pending-three.json");
        let p = parse_wu_pending(&json, at("2026-11-24T12:00:00Z")).unwrap();
        assert_eq!((p.pending, p.security), (3, 2));
        assert_eq!(
            (p.oldest_security, p.oldest_critical, p.oldest_high),
            (Some(20), Some(9), Some(20))
        );
        let none = parse_wu_pending("", at("2026-11-24T12:00:00Z")).unwrap();
        assert_eq!((none.pending, none.security, none.oldest_security), (0, 0, None));
        assert!(parse_wu_pending("<html>", at("2026-11-24T12:00:00Z")).is_err());
        let h = host(
            "empty",
            FakeRunner::default()
                .with(
                    &format!("reg query {WU_POLICY}"),
                    Ok(&recorded("reg/wu-au-option4.txt")),
                )
                .with(
                    &format!("reg query {WU_REBOOT}"),
                    Err("ERROR: The system was unable to find the specified registry key or value."),
                )
                .with(
                    &format!("powershell -NoProfile -NonInteractive -Command {WU_SEARCH}"),
                    Ok(&json),
                ),
            NOW,
        );
        let u: Updates = crate::checks::testutil::payload(&collect(&h, Platform::Windows), "host");
        assert_eq!(u.severity_known, Some(true));
        assert_eq!(
            (u.oldest_pending_critical_days, u.oldest_pending_high_days),
            (Some(9), Some(20))
        );
    }

    #[test]
    fn windows_update_policy() {
        assert_eq!(parse_wu_policy(&recorded("reg/wu-au-option4.txt")), Some(true));
        assert_eq!(parse_wu_policy(&recorded("reg/wu-au-option3.txt")), Some(false));
        let h = host(
            "empty",
            FakeRunner::default()
                .with(&format!("reg query {WU_POLICY}"), Ok(&recorded("reg/wu-au-option4.txt")))
                .with(
                    &format!("reg query {WU_REBOOT}"),
                    Err("reg exited with exit code: 1: ERROR: The system was unable to find the specified registry key or value."),
                ),
            NOW,
        );
        let u: Updates = payload(&collect(&h, Platform::Windows), "host");
        assert_eq!((u.auto_security_updates, u.reboot_required), (Some(true), Some(false)));
    }

    #[test]
    fn pending_security_updates_from_apt_lists() {
        let u = linux(&host("apt-pending-security", FakeRunner::default(), NOW)).unwrap();
        // openssl, libssl3, apt and ca-certificates have newer versions in bookworm-security;
        // bash is installed but not in the security list.
        assert_eq!(u.pending_security_count, Some(4));
        assert_eq!(u.auto_security_updates, Some(true));
    }

    #[test]
    fn debian_version_ordering() {
        use std::cmp::Ordering::*;
        for (a, b, want) in [
            ("3.0.22-1~deb12u2", "3.0.19-1~deb12u2", Greater),
            ("20250419~deb12u2", "20230311+deb12u1", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1:1.0", "2.0", Greater),
            ("5.2.15-2+b13", "5.2.15-2+b8", Greater),
            ("2.6.2", "2.6.2", Equal),
            ("1.0a", "1.0+", Less),
            ("0.16.1-2+b1", "0.16.1-2", Greater),
        ] {
            assert_eq!(debian_version_cmp(a, b), want, "{a} vs {b}");
        }
    }

    #[test]
    fn apt_conf_forms() {
        let c = parse_apt_conf(
            "// comment\nAPT::Periodic::Unattended-Upgrade \"1\";\nAPT {\n  Periodic {\n    Enable \"0\";\n  };\n};\n",
        );
        assert_eq!(
            c,
            [
                ("APT::Periodic::Unattended-Upgrade".to_string(), "1".to_string()),
                ("APT::Periodic::Enable".to_string(), "0".to_string())
            ]
        );
    }

    #[test]
    fn dnf_automatic_install_timer() {
        let (apply, kind) = parse_dnf_automatic("[commands]\nupgrade_type = security\napply_updates = yes\n");
        assert!(apply);
        assert_eq!(kind, "security");
    }
}
