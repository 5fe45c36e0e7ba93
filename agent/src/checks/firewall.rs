//! Host firewall: enabled, and whether inbound traffic is denied by default.
//!
//! - Linux, first match wins: ufw (/etc/ufw/ufw.conf `ENABLED`, /etc/default/ufw
//!   `DEFAULT_INPUT_POLICY`), firewalld (/etc/firewalld/firewalld.conf `DefaultZone`, the zone's
//!   `target`, `systemctl is-active firewalld`), nftables (/etc/nftables.conf input hook policy,
//!   `systemctl is-enabled nftables`), iptables-persistent (/etc/iptables/rules.v4 `:INPUT`).
//!   This reads the configuration that is loaded at boot, without privilege; the live kernel
//!   ruleset (`nft list ruleset`) needs root and is not read.
//! - Windows: `Get-NetFirewallProfile | ConvertTo-Json`, one entry per profile.
//! - macOS: `socketfilterfw --getglobalstate` (application firewall).

use rounds_protocol::Observation;
use rounds_protocol::obs::{Firewall, FirewallProfile, Payload};

use super::{Check, Host, Platform, platform};

/// Observes the host firewall.
#[derive(Debug)]
pub struct FirewallCheck;

impl Check for FirewallCheck {
    fn name(&self) -> &'static str {
        "firewall"
    }

    fn kinds(&self) -> &'static [&'static str] {
        &[Firewall::KIND]
    }

    fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(20)
    }

    fn run(&self, host: &Host) -> Vec<Observation> {
        let result = match platform() {
            Platform::Linux => linux(host),
            Platform::Windows => windows(host),
            Platform::MacOs => macos(host),
        };
        vec![Observation::from_result("host", host.now, result)]
    }
}

/// Value of `KEY=value` in a shell-style configuration file, quotes removed; the last wins.
pub fn shell_var(text: &str, key: &str) -> Option<String> {
    text.lines().rev().find_map(|l| {
        let l = l.trim();
        let (k, v) = l.split_once('=')?;
        (!l.starts_with('#') && k.trim() == key).then(|| v.trim().trim_matches('"').trim_matches('\'').to_string())
    })
}

/// `deny`, `allow` or `unknown` for an iptables/ufw/nftables policy word.
fn policy_word(p: &str) -> &'static str {
    match p.to_ascii_lowercase().as_str() {
        "drop" | "reject" | "deny" | "block" => "deny",
        "accept" | "allow" => "allow",
        _ => "unknown",
    }
}

/// The policy of the base chain hooked on `input` in an nftables configuration.
pub fn nft_input_policy(text: &str) -> Option<&'static str> {
    let i = text.find("hook input")?;
    let chain = &text[i..];
    let body = &chain[..chain.find('}').unwrap_or(chain.len())];
    match body.find("policy ") {
        Some(p) => {
            let word: String = body[p + 7..].chars().take_while(|c| c.is_ascii_alphabetic()).collect();
            Some(policy_word(&word))
        }
        // A base chain without a policy accepts.
        None => Some("allow"),
    }
}

/// The `target` attribute of a firewalld zone file; a zone without one rejects by default.
pub fn firewalld_zone_inbound(xml: &str) -> &'static str {
    let Some(start) = xml.find("<zone") else {
        return "unknown";
    };
    let tag_end = xml[start..].find('>').map(|e| start + e).unwrap_or(xml.len());
    let tag = &xml[start..tag_end];
    match tag.find("target=\"") {
        Some(i) => {
            let v = &tag[i + 8..];
            let v = &v[..v.find('"').unwrap_or(v.len())];
            match v {
                "ACCEPT" => "allow",
                "DROP" | "%%REJECT%%" | "REJECT" | "default" => "deny",
                _ => "unknown",
            }
        }
        None => "deny",
    }
}

/// Whether `systemctl <verb> <unit>` said yes. `Err` when systemctl itself could not run.
fn systemctl(host: &Host, verb: &str, unit: &str) -> Result<bool, String> {
    match host.runner.run("systemctl", &[verb, unit]) {
        Ok(out) => Ok(matches!(
            out.trim(),
            "active" | "enabled" | "enabled-runtime" | "static"
        )),
        Err(e) if e.starts_with("cannot run") => Err(e),
        // Non-zero exit: inactive, disabled, or no such unit.
        Err(_) => Ok(false),
    }
}

fn linux(host: &Host) -> Result<Firewall, String> {
    let none = |backend: &str, enabled: bool, inbound: &str| Firewall {
        backend: backend.to_string(),
        enabled,
        default_inbound: inbound.to_string(),
        profiles: Vec::new(),
    };
    let mut installed_but_off = None;

    if let Some(conf) = host.read_opt("/etc/ufw/ufw.conf")? {
        let enabled = shell_var(&conf, "ENABLED").is_some_and(|v| v.eq_ignore_ascii_case("yes"));
        let inbound = host
            .read_opt("/etc/default/ufw")?
            .and_then(|d| shell_var(&d, "DEFAULT_INPUT_POLICY"))
            .map_or("unknown", |p| policy_word(&p));
        if enabled {
            return Ok(none("ufw", true, inbound));
        }
        installed_but_off.get_or_insert(none("ufw", false, inbound));
    }

    if let Some(conf) = host.read_opt("/etc/firewalld/firewalld.conf")? {
        let zone = shell_var(&conf, "DefaultZone").unwrap_or_else(|| "public".to_string());
        let zone_file = match host.read_opt(format!("/etc/firewalld/zones/{zone}.xml"))? {
            Some(x) => Some(x),
            None => host.read_opt(format!("/usr/lib/firewalld/zones/{zone}.xml"))?,
        };
        let inbound = zone_file.map_or("unknown", |x| firewalld_zone_inbound(&x));
        let active = systemctl(host, "is-active", "firewalld")?;
        if active {
            return Ok(none("firewalld", true, inbound));
        }
        installed_but_off.get_or_insert(none("firewalld", false, inbound));
    }

    let nft = match host.read_opt("/etc/nftables.conf")? {
        Some(c) => Some(c),
        None => host.read_opt("/etc/sysconfig/nftables.conf")?,
    };
    if let Some(inbound) = nft.as_deref().and_then(nft_input_policy) {
        let enabled = systemctl(host, "is-enabled", "nftables")?;
        if enabled {
            return Ok(none("nftables", true, inbound));
        }
        installed_but_off.get_or_insert(none("nftables", false, inbound));
    }

    if let Some(rules) = host.read_opt("/etc/iptables/rules.v4")? {
        let inbound = rules
            .lines()
            .find_map(|l| l.strip_prefix(":INPUT "))
            .and_then(|r| r.split_whitespace().next())
            .map_or("unknown", policy_word);
        let enabled = systemctl(host, "is-enabled", "netfilter-persistent")?;
        if enabled {
            return Ok(none("iptables", true, inbound));
        }
        installed_but_off.get_or_insert(none("iptables", false, inbound));
    }

    Ok(installed_but_off.unwrap_or_else(|| none("none", false, "unknown")))
}

/// Parses `Get-NetFirewallProfile | ConvertTo-Json` (one object or an array of them).
/// `Enabled` is a GpoBoolean (1 true, 0 false) or a JSON boolean; `DefaultInboundAction` is
/// 0 NotConfigured (Windows blocks), 2 Allow, 4 Block, or the names.
pub fn parse_windows_firewall(json: &str) -> Result<Vec<FirewallProfile>, String> {
    let v: serde_json::Value = serde_json::from_str(json.trim_start_matches('\u{feff}'))
        .map_err(|e| format!("unrecognised Get-NetFirewallProfile output: {e}"))?;
    let items = match v {
        serde_json::Value::Array(a) => a,
        o @ serde_json::Value::Object(_) => vec![o],
        _ => return Err("unrecognised Get-NetFirewallProfile output: not an object".to_string()),
    };
    items
        .iter()
        .map(|p| {
            let name = p
                .get("Name")
                .or_else(|| p.get("Profile"))
                .and_then(|n| n.as_str())
                .ok_or("unrecognised Get-NetFirewallProfile output: profile without Name")?;
            let enabled = match p.get("Enabled") {
                Some(serde_json::Value::Bool(b)) => *b,
                Some(serde_json::Value::Number(n)) => n.as_u64() == Some(1),
                Some(serde_json::Value::String(s)) => s.eq_ignore_ascii_case("true"),
                _ => return Err(format!("firewall profile {name}: no Enabled value")),
            };
            let inbound = match p.get("DefaultInboundAction") {
                Some(serde_json::Value::Number(n)) => match n.as_u64() {
                    Some(0 | 4) => "deny",
                    Some(2) => "allow",
                    _ => "unknown",
                },
                Some(serde_json::Value::String(s)) => match s.as_str() {
                    "NotConfigured" | "Block" => "deny",
                    "Allow" => "allow",
                    _ => "unknown",
                },
                _ => "unknown",
            };
            Ok(FirewallProfile {
                name: name.to_string(),
                enabled,
                default_inbound: inbound.to_string(),
            })
        })
        .collect()
}

fn windows(host: &Host) -> Result<Firewall, String> {
    let out = host.runner.run(
        "powershell",
        &[
            "-NoProfile",
            "-NonInteractive",
            "-Command",
            "Get-NetFirewallProfile | ConvertTo-Json",
        ],
    )?;
    let profiles = parse_windows_firewall(&out)?;
    let all_on = !profiles.is_empty() && profiles.iter().all(|p| p.enabled);
    let inbound = if profiles.iter().all(|p| p.default_inbound == "deny") {
        "deny"
    } else if profiles.iter().any(|p| p.default_inbound == "allow") {
        "allow"
    } else {
        "unknown"
    };
    Ok(Firewall {
        backend: "windows-firewall".to_string(),
        enabled: all_on,
        default_inbound: inbound.to_string(),
        profiles,
    })
}

/// Parses `socketfilterfw --getglobalstate`: `(enabled, default inbound)`. State 1 blocks
/// incoming connections to applications that are not allowed; state 2 blocks all of them.
pub fn parse_socketfilterfw(text: &str) -> Result<(bool, &'static str), String> {
    let t = text.trim();
    let state = t
        .split("State = ")
        .nth(1)
        .and_then(|r| r.chars().next())
        .and_then(|c| c.to_digit(10));
    match state {
        Some(0) => Ok((false, "allow")),
        Some(1 | 2) => Ok((true, "deny")),
        _ if t.starts_with("Firewall is disabled") => Ok((false, "allow")),
        _ if t.starts_with("Firewall is enabled") || t.starts_with("Firewall is blocking all") => Ok((true, "deny")),
        _ => Err(format!("unrecognised socketfilterfw output: {t}")),
    }
}

fn macos(host: &Host) -> Result<Firewall, String> {
    let out = host
        .runner
        .run("/usr/libexec/ApplicationFirewall/socketfilterfw", &["--getglobalstate"])?;
    let (enabled, inbound) = parse_socketfilterfw(&out)?;
    Ok(Firewall {
        backend: "socketfilterfw".to_string(),
        enabled,
        default_inbound: inbound.to_string(),
        profiles: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testutil::{FakeRunner, host, recorded};

    const NOW: &str = "2026-11-24T10:00:00Z";

    #[test]
    fn ufw_active_with_deny_policy() {
        let fw = linux(&host("ufw-deny", FakeRunner::default(), NOW)).unwrap();
        assert_eq!(
            (fw.backend.as_str(), fw.enabled, fw.default_inbound.as_str()),
            ("ufw", true, "deny")
        );
    }

    #[test]
    fn no_firewall_at_all() {
        let fw = linux(&host("no-firewall", FakeRunner::default(), NOW)).unwrap();
        assert_eq!(
            (fw.backend.as_str(), fw.enabled, fw.default_inbound.as_str()),
            ("none", false, "unknown")
        );
    }

    #[test]
    fn nftables_input_policy() {
        let conf = recorded("nftables/debian-default.conf");
        assert_eq!(nft_input_policy(&conf), Some("allow"));
        assert_eq!(
            nft_input_policy(
                "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\t}\n}\n"
            ),
            Some("deny")
        );
        assert_eq!(nft_input_policy("flush ruleset\n"), None);
    }

    #[test]
    fn firewalld_zone_targets() {
        assert_eq!(firewalld_zone_inbound(&recorded("firewalld/public.xml")), "deny");
        assert_eq!(firewalld_zone_inbound(&recorded("firewalld/trusted.xml")), "allow");
        assert_eq!(firewalld_zone_inbound(&recorded("firewalld/drop.xml")), "deny");
    }

    #[test]
    fn windows_firewall_profiles() {
        let profiles = parse_windows_firewall(&recorded("windows-firewall/get-netfirewallprofile-2022.json")).unwrap();
        assert_eq!(profiles.len(), 3);
        assert!(
            profiles.iter().all(|p| p.enabled && p.default_inbound == "deny"),
            "{profiles:?}"
        );
        assert_eq!(profiles[2].name, "Public");
        assert!(parse_windows_firewall("Get-NetFirewallProfile : Access denied").is_err());
    }

    #[test]
    fn socketfilterfw_states() {
        assert_eq!(
            parse_socketfilterfw(&recorded("socketfilterfw/enabled.txt")),
            Ok((true, "deny"))
        );
        assert_eq!(
            parse_socketfilterfw(&recorded("socketfilterfw/disabled.txt")),
            Ok((false, "allow"))
        );
        assert!(parse_socketfilterfw("socketfilterfw: command not found").is_err());
    }
}
