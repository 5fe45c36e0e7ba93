//! Whether logs are forwarded off the host.
//!
//! - Linux: rsyslog (/etc/rsyslog.conf, /etc/rsyslog.d/*.conf: legacy `@host`/`@@host`
//!   actions, `action(type="omfwd"|"omrelp" target=...)`), syslog-ng (/etc/syslog-ng/
//!   syslog-ng.conf and conf.d: `network(`, `tcp(`, `udp(`, `syslog(` destinations),
//!   systemd-journal-upload (`URL=` in /etc/systemd/journal-upload.conf, enabled in
//!   multi-user.target.wants), and running shippers (/proc: Filebeat, Fluent Bit, Vector,
//!   NXLog, the Splunk forwarder, Wazuh, Elastic Agent, Promtail, the OpenTelemetry collector).
//!   World-readable files, no privilege.
//! - Windows: Windows Event Forwarding's subscription manager policy (`reg query` of
//!   HKLM\SOFTWARE\Policies\Microsoft\Windows\EventLog\EventForwarding\SubscriptionManager) and
//!   running shippers (`tasklist /fo csv /nh`: Winlogbeat, NXLog, splunkd, Wazuh, Fluent Bit,
//!   Elastic Agent, the Azure Monitor agent). No privilege.
//! - macOS: `@host` lines of /etc/syslog.conf and running shippers (`ps -axco command`).
//!
//! Destinations are host names or URLs only; credentials in URLs are cut off.

use rounds_protocol::obs::LogForwarding;

use super::hostcfg::host_check;
use super::hostcfg::{process_names, reg_key};
use super::{Host, Platform};

host_check! {
    /// Observes log forwarding.
    LogForwardingCheck,
    "log_forwarding",
    LogForwarding
}

/// Process names of log shippers (lowercase; Windows names with `.exe`).
pub const SHIPPERS: &[&str] = &[
    "filebeat",
    "winlogbeat.exe",
    "fluent-bit",
    "fluent-bit.exe",
    "td-agent-bit",
    "vector",
    "vector.exe",
    "nxlog",
    "nxlog.exe",
    "splunkd",
    "splunkd.exe",
    "wazuh-agentd",
    "wazuh-agent.exe",
    "ossec-agentd",
    "ossec-agent.exe",
    "elastic-agent",
    "elastic-agent.exe",
    "promtail",
    "otelcol",
    "otelcol-contrib",
    "otelcol-contrib.exe",
    "monagentcore.exe",
];

/// A destination without credentials: `user:pass@host` becomes `host`.
fn redact(dest: &str) -> String {
    match dest.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", rest.rsplit('@').next().unwrap_or(rest)),
        None => dest.rsplit('@').next().unwrap_or(dest).to_string(),
    }
}

/// Forwarding destinations in rsyslog or BSD syslog configuration: legacy actions whose
/// target starts with `@` (`@@` is TCP) and RainerScript `omfwd`/`omrelp` actions.
pub fn parse_syslog_forwards(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if line.contains("omfwd") || line.contains("omrelp") {
            let target = line
                .split("target=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("(omfwd)");
            out.push(redact(target));
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(_selector), Some(action)) = (words.next(), words.next()) else {
            continue;
        };
        if let Some(host) = action.strip_prefix('@') {
            let host = host
                .trim_start_matches('@')
                .trim_start_matches('(')
                .trim_end_matches(')');
            if !host.is_empty() {
                out.push(redact(host.split(';').next().unwrap_or(host)));
            }
        }
    }
    out
}

/// Network destinations of syslog-ng configuration: the first quoted argument of `network(`,
/// `tcp(`, `udp(` and `syslog(` drivers.
pub fn parse_syslog_ng_destinations(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') {
            continue;
        }
        for driver in ["network(", "tcp(", "udp(", "syslog("] {
            let mut rest = line;
            while let Some(pos) = rest.find(driver) {
                let before_ok = pos == 0 || !rest.as_bytes()[pos - 1].is_ascii_alphanumeric();
                let after = &rest[pos + driver.len()..];
                if before_ok
                    && let Some(q) = after.trim_start().strip_prefix('"')
                    && let Some(dest) = q.split('"').next()
                {
                    out.push(redact(dest));
                }
                rest = after;
            }
        }
    }
    out
}

/// The `URL=` of journal-upload.conf, if set.
pub fn parse_journal_upload(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix("URL="))
        .map(|u| redact(u.trim()))
        .filter(|u| !u.is_empty())
}

fn conf_files(host: &Host, main: &str, dir: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    if let Some(t) = host.read_opt(main)? {
        out.push(t);
    }
    for name in host.list_dir(dir)? {
        if name.ends_with(".conf")
            && let Some(t) = host.read_opt(format!("{dir}/{name}"))?
        {
            out.push(t);
        }
    }
    Ok(out)
}

/// Adds the shippers among `processes` to `mechanisms`.
fn shippers(processes: &[String], mechanisms: &mut Vec<String>) {
    for p in processes {
        if SHIPPERS.contains(&p.as_str()) {
            mechanisms.push(p.trim_end_matches(".exe").to_string());
        }
    }
}

fn finish(mechanisms: Vec<String>, destinations: Vec<String>, processes_known: bool) -> LogForwarding {
    let mut mechanisms = mechanisms;
    mechanisms.sort();
    mechanisms.dedup();
    let forwarded = if !mechanisms.is_empty() {
        Some(true)
    } else {
        processes_known.then_some(false)
    };
    LogForwarding {
        forwarded,
        mechanisms,
        destinations,
    }
}

fn linux(host: &Host) -> Result<LogForwarding, String> {
    let mut mechanisms = Vec::new();
    let mut destinations = Vec::new();
    for text in conf_files(host, "/etc/rsyslog.conf", "/etc/rsyslog.d")? {
        let found = parse_syslog_forwards(&text);
        if !found.is_empty() {
            mechanisms.push("rsyslog".to_string());
            destinations.extend(found);
        }
    }
    for text in conf_files(host, "/etc/syslog-ng/syslog-ng.conf", "/etc/syslog-ng/conf.d")? {
        let found = parse_syslog_ng_destinations(&text);
        if !found.is_empty() {
            mechanisms.push("syslog-ng".to_string());
            destinations.extend(found);
        }
    }
    if let Some(url) = host
        .read_opt("/etc/systemd/journal-upload.conf")?
        .as_deref()
        .and_then(parse_journal_upload)
        && host.exists("/etc/systemd/system/multi-user.target.wants/systemd-journal-upload.service")
    {
        mechanisms.push("journal-upload".to_string());
        destinations.push(url);
    }
    let processes = process_names(host, Platform::Linux);
    if let Ok(p) = &processes {
        shippers(p, &mut mechanisms);
    }
    Ok(finish(mechanisms, destinations, processes.is_ok()))
}

const SUBSCRIPTION_MANAGER: &str =
    r"HKLM\SOFTWARE\Policies\Microsoft\Windows\EventLog\EventForwarding\SubscriptionManager";

/// The `Server=` of a subscription manager value (`Server=http://wec:5985/wsman/...,Refresh=60`).
pub fn subscription_server(value: &str) -> String {
    let server = value
        .split(',')
        .find_map(|p| p.trim().strip_prefix("Server="))
        .unwrap_or(value);
    redact(server)
}

fn windows(host: &Host) -> Result<LogForwarding, String> {
    let mut mechanisms = Vec::new();
    let mut destinations = Vec::new();
    if let Some(values) = reg_key(host, SUBSCRIPTION_MANAGER)?
        && !values.is_empty()
    {
        mechanisms.push("windows-event-forwarding".to_string());
        destinations.extend(values.values().map(|v| subscription_server(v)));
    }
    let processes = process_names(host, Platform::Windows)?;
    shippers(&processes, &mut mechanisms);
    Ok(finish(mechanisms, destinations, true))
}

fn macos(host: &Host) -> Result<LogForwarding, String> {
    let mut mechanisms = Vec::new();
    let mut destinations = Vec::new();
    if let Some(text) = host.read_opt("/etc/syslog.conf")? {
        let found = parse_syslog_forwards(&text);
        if !found.is_empty() {
            mechanisms.push("syslogd".to_string());
            destinations.extend(found);
        }
    }
    let processes = process_names(host, Platform::MacOs)?;
    shippers(&processes, &mut mechanisms);
    Ok(finish(mechanisms, destinations, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testutil::{FakeRunner, error_of, host, payload, recorded};

    #[test]
    fn syslog_parsers() {
        assert_eq!(
            parse_syslog_forwards(
                "*.* @@logs.example:6514\n#*.* @old\nauth.* @10.0.0.9\n*.* action(type=\"omfwd\" target=\"siem.example\" port=\"514\" protocol=\"tcp\")\n*.* /var/log/all\n"
            ),
            ["logs.example:6514", "10.0.0.9", "siem.example"]
        );
        assert_eq!(
            parse_syslog_ng_destinations(
                "destination d_net { network(\"10.1.1.1\" port(514) transport(\"tcp\")); };\n"
            ),
            ["10.1.1.1"]
        );
        assert_eq!(
            parse_journal_upload("[Upload]\nURL=https://user:secret@logs.example:19532\n"),
            Some("https://logs.example:19532".to_string()),
            "credentials are cut off"
        );
        assert_eq!(
            subscription_server("Server=http://wec.example:5985/wsman/SubscriptionManager/WEC,Refresh=60"),
            "http://wec.example:5985/wsman/SubscriptionManager/WEC"
        );
    }

    #[test]
    fn linux_fixture_hosts() {
        let h = host("access-hardened", FakeRunner::default(), "2026-11-24T10:00:00Z");
        let f: LogForwarding = payload(&collect(&h, Platform::Linux), "host");
        assert_eq!(f.forwarded, Some(true));
        assert_eq!(f.mechanisms, ["fluent-bit", "rsyslog"]);
        assert_eq!(f.destinations, ["logs.practice.example:6514"]);
        let h = host("golden-host", FakeRunner::default(), "2026-11-24T10:00:00Z");
        let f: LogForwarding = payload(&collect(&h, Platform::Linux), "host");
        assert_eq!(f.forwarded, Some(false));
        let h = host("empty", FakeRunner::default(), "2026-11-24T10:00:00Z");
        let f: LogForwarding = payload(&collect(&h, Platform::Linux), "host");
        assert_eq!(f.forwarded, None, "no /proc: a shipper may run unseen");
    }

    #[test]
    fn windows_event_forwarding_and_shippers() {
        let missing = Err("ERROR: The system was unable to find the specified registry key or value.");
        let h = host(
            "empty",
            FakeRunner::default()
                .with(&format!("reg query {SUBSCRIPTION_MANAGER}"), missing)
                .with("tasklist /fo csv /nh", Ok(&recorded("tasklist/csv-nh.txt"))),
            "2026-11-24T10:00:00Z",
        );
        let f: LogForwarding = payload(&collect(&h, Platform::Windows), "host");
        assert_eq!(f.forwarded, Some(false));
        let h = host(
            "empty",
            FakeRunner::default()
                .with(
                    &format!("reg query {SUBSCRIPTION_MANAGER}"),
                    Ok(&recorded("reg/subscriptionmanager.txt")),
                )
                .with(
                    "tasklist /fo csv /nh",
                    Ok("\"winlogbeat.exe\",\"4242\",\"Services\",\"0\",\"30,000 K\"\n"),
                ),
            "2026-11-24T10:00:00Z",
        );
        let f: LogForwarding = payload(&collect(&h, Platform::Windows), "host");
        assert_eq!(f.mechanisms, ["windows-event-forwarding", "winlogbeat"]);
        assert_eq!(f.destinations.len(), 1);
        let broken = host("empty", FakeRunner::default(), "2026-11-24T10:00:00Z");
        assert!(!error_of(&collect(&broken, Platform::Windows), "log_forwarding", "host").is_empty());
    }

    #[test]
    fn macos_syslog_conf_and_ps() {
        let h = host(
            "empty",
            FakeRunner::default().with("ps -axco command", Ok("COMMAND\nlaunchd\nfluent-bit\n")),
            "2026-11-24T10:00:00Z",
        );
        let f: LogForwarding = payload(&collect(&h, Platform::MacOs), "host");
        assert_eq!(
            (f.forwarded, f.mechanisms.as_slice()),
            (Some(true), &["fluent-bit".to_string()][..])
        );
    }
}
