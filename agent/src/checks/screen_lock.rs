//! Automatic screen lock and session inactivity timeout.
//!
//! - Linux with GNOME: the system dconf keyfiles /etc/dconf/db/*.d/* (`[org/gnome/desktop/session]
//!   idle-delay`, `[org/gnome/desktop/screensaver] lock-enabled`, `idle-activation-enabled`), their
//!   locks (/etc/dconf/db/*.d/locks/*: a locked key cannot be changed by users), and the schema
//!   defaults in /usr/share/glib-2.0/schemas for keys no keyfile sets. Users' own dconf databases
//!   (~/.config/dconf/user) are not read: without a lock a user may have turned the lock off.
//! - Every Linux host: the shell timeout `TMOUT` in /etc/profile, /etc/profile.d/*.sh and
//!   /etc/bash.bashrc.
//! - Windows: the machine inactivity limit `InactivityTimeoutSecs` under
//!   HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System (`reg query`, no privilege),
//!   which locks every session and cannot be changed by users. Per-user screen saver settings
//!   (HKCU) are not read.
//! - macOS: `sysadminctl -screenLock status` (it prints to stderr, so it runs through `/bin/sh -c
//!   '... 2>&1'`): whether a password is required once the screen saver starts or the display
//!   sleeps, and after what delay. The idle time before the screen saver is a per-user setting
//!   and is not read: `idle_timeout_secs` stays unknown.
//!
//! Needs no privilege.

use std::collections::BTreeMap;

use rounds_protocol::Observation;
use rounds_protocol::obs::{Payload, ScreenLock};

use super::{Check, Host, Platform, platform, reg_number, reg_value};

/// Observes the screen lock.
#[derive(Debug)]
pub struct ScreenLockCheck;

impl Check for ScreenLockCheck {
    fn name(&self) -> &'static str {
        "screen_lock"
    }

    fn kinds(&self) -> &'static [&'static str] {
        &[ScreenLock::KIND]
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
        Platform::Windows => windows(host),
        Platform::MacOs => host
            .runner
            .run("/bin/sh", &["-c", "/usr/sbin/sysadminctl -screenLock status 2>&1"])
            .and_then(|out| parse_sysadminctl_screenlock(&out))
            .map(|delay| ScreenLock {
                enabled: delay.is_some(),
                idle_timeout_secs: None,
                enforced: None,
                shell_timeout_secs: None,
                source: "sysadminctl".to_string(),
                graphical: Some(true),
            }),
    };
    vec![Observation::from_result("host", host.now, result)]
}

/// Parses `sysadminctl -screenLock status`: `Some(delay in seconds)` when a password is required
/// (0 for "immediate"), `None` when the screen lock is off.
pub fn parse_sysadminctl_screenlock(text: &str) -> Result<Option<u64>, String> {
    if text.contains("screenLock is off") {
        return Ok(None);
    }
    let rest = text
        .split("screenLock delay is ")
        .nth(1)
        .ok_or_else(|| format!("unrecognised sysadminctl output: {}", text.trim()))?;
    let word = rest.split_whitespace().next().unwrap_or("");
    if word == "immediate" {
        return Ok(Some(0));
    }
    match word.parse::<f64>() {
        Ok(s) if s < 0.0 => Ok(None),
        Ok(s) => Ok(Some(s as u64)),
        Err(_) => Err(format!("unrecognised sysadminctl output: {}", text.trim())),
    }
}

const WINDOWS_POLICY_KEY: &str = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System";

/// The machine inactivity limit in seconds from `reg query ... /v InactivityTimeoutSecs`.
pub fn parse_inactivity_timeout(output: &str) -> Option<u64> {
    reg_value(output, "InactivityTimeoutSecs").and_then(|(_, data)| reg_number(&data))
}

fn windows(host: &Host) -> Result<ScreenLock, String> {
    let seconds = match host
        .runner
        .run("reg", &["query", WINDOWS_POLICY_KEY, "/v", "InactivityTimeoutSecs"])
    {
        Ok(out) => Some(
            parse_inactivity_timeout(&out).ok_or_else(|| format!("unrecognised reg query output: {}", out.trim()))?,
        ),
        // reg.exe exits 1 when the value is not set.
        Err(e) if e.contains("unable to find") => None,
        Err(e) => return Err(e),
    };
    let on = seconds.filter(|s| *s > 0);
    Ok(ScreenLock {
        enabled: on.is_some(),
        idle_timeout_secs: on,
        enforced: Some(on.is_some()),
        shell_timeout_secs: None,
        source: "registry".to_string(),
        graphical: Some(true),
    })
}

/// `(path/section, key) -> value` of a dconf keyfile.
pub fn parse_keyfile(text: &str) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = s.trim().trim_matches('/').to_string();
        } else if let Some((k, v)) = line.split_once('=') {
            out.insert((section.clone(), k.trim().to_string()), v.trim().to_string());
        }
    }
    out
}

/// A GVariant boolean or integer in text form: `true`, `uint32 300`, `300`.
fn gvariant_bool(v: &str) -> Option<bool> {
    match v.trim() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

fn gvariant_u64(v: &str) -> Option<u64> {
    v.split_whitespace().last()?.parse().ok()
}

/// The `<default>` of key `name` in a GSettings schema file.
pub fn schema_default(xml: &str, name: &str) -> Option<String> {
    let i = xml.find(&format!("name=\"{name}\""))?;
    let rest = &xml[i..];
    let end_key = rest.find("</key>").unwrap_or(rest.len());
    let key = &rest[..end_key];
    let d = key.find("<default>")? + "<default>".len();
    let e = key[d..].find("</default>")? + d;
    Some(key[d..e].trim().to_string())
}

/// Seconds of `TMOUT=...` set in shell start-up files, if any.
pub fn parse_tmout(text: &str) -> Option<u64> {
    text.lines().rev().find_map(|l| {
        let mut l = l.trim();
        for prefix in ["readonly ", "export ", "declare -r ", "declare -x ", "typeset -r "] {
            l = l.strip_prefix(prefix).unwrap_or(l).trim_start();
        }
        let v = l.strip_prefix("TMOUT=")?;
        v.trim_matches(|c: char| c == '"' || c == '\'' || c == ';' || c.is_whitespace())
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    })
}

const SESSION: &str = "org/gnome/desktop/session";
const SCREENSAVER: &str = "org/gnome/desktop/screensaver";

fn tmout(host: &Host) -> Result<Option<u64>, String> {
    let mut files = vec!["/etc/profile".to_string(), "/etc/bash.bashrc".to_string()];
    files.extend(
        host.list_dir("/etc/profile.d")?
            .into_iter()
            .filter(|n| n.ends_with(".sh"))
            .map(|n| format!("/etc/profile.d/{n}")),
    );
    let mut found = None;
    for f in files {
        if let Some(t) = host.read_opt(&f)?.as_deref().and_then(parse_tmout) {
            found = Some(t);
        }
    }
    Ok(found)
}

fn linux(host: &Host) -> Result<ScreenLock, String> {
    let shell_timeout = tmout(host)?;
    let gnome = host.exists("/usr/bin/gnome-shell");
    let graphical = gnome
        || !host.list_dir("/usr/share/xsessions")?.is_empty()
        || !host.list_dir("/usr/share/wayland-sessions")?.is_empty();
    if !gnome {
        return Ok(ScreenLock {
            enabled: shell_timeout.is_some_and(|t| t > 0),
            idle_timeout_secs: shell_timeout,
            enforced: Some(false),
            shell_timeout_secs: shell_timeout,
            source: if graphical { "unsupported-desktop" } else { "tmout" }.to_string(),
            graphical: Some(graphical),
        });
    }

    let mut settings = BTreeMap::new();
    let mut locks = Vec::new();
    for db in host
        .list_dir("/etc/dconf/db")?
        .into_iter()
        .filter(|d| d.ends_with(".d"))
    {
        let dir = format!("/etc/dconf/db/{db}");
        for f in host.list_dir(&dir)? {
            if f == "locks" {
                for l in host.list_dir(format!("{dir}/locks"))? {
                    if let Some(t) = host.read_opt(format!("{dir}/locks/{l}"))? {
                        locks.extend(
                            t.lines()
                                .map(str::trim)
                                .filter(|l| l.starts_with('/'))
                                .map(str::to_string),
                        );
                    }
                }
            } else if let Some(t) = host.read_opt(format!("{dir}/{f}"))? {
                settings.extend(parse_keyfile(&t));
            }
        }
    }
    let schemas = "/usr/share/glib-2.0/schemas";
    let session_schema = host.read_opt(format!("{schemas}/org.gnome.desktop.session.gschema.xml"))?;
    let screensaver_schema = host.read_opt(format!("{schemas}/org.gnome.desktop.screensaver.gschema.xml"))?;
    let value = |section: &str, key: &str, schema: &Option<String>| {
        settings
            .get(&(section.to_string(), key.to_string()))
            .cloned()
            .or_else(|| schema.as_deref().and_then(|x| schema_default(x, key)))
    };
    let idle = value(SESSION, "idle-delay", &session_schema).and_then(|v| gvariant_u64(&v));
    let lock_enabled = value(SCREENSAVER, "lock-enabled", &screensaver_schema).and_then(|v| gvariant_bool(&v));
    let activation = value(SCREENSAVER, "idle-activation-enabled", &screensaver_schema).and_then(|v| gvariant_bool(&v));
    let locked = |section: &str, key: &str| locks.iter().any(|l| l == &format!("/{section}/{key}"));
    Ok(ScreenLock {
        enabled: lock_enabled == Some(true) && idle.is_some_and(|d| d > 0) && activation != Some(false),
        idle_timeout_secs: idle.filter(|d| *d > 0),
        enforced: Some(locked(SESSION, "idle-delay") && locked(SCREENSAVER, "lock-enabled")),
        shell_timeout_secs: shell_timeout,
        source: "gnome-dconf".to_string(),
        graphical: Some(true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testutil::{FakeRunner, host, payload, recorded};

    const NOW: &str = "2026-11-24T10:00:00Z";

    #[test]
    fn gnome_lock_on_and_enforced() {
        let s = linux(&host("gnome-lock-on", FakeRunner::default(), NOW)).unwrap();
        assert!(s.enabled, "{s:?}");
        assert_eq!(s.idle_timeout_secs, Some(300));
        assert_eq!(s.enforced, Some(true));
        assert_eq!(s.source, "gnome-dconf");
        assert_eq!(s.shell_timeout_secs, Some(900));
    }

    #[test]
    fn gnome_lock_off() {
        let s = linux(&host("gnome-lock-off", FakeRunner::default(), NOW)).unwrap();
        assert!(!s.enabled, "{s:?}");
        assert_eq!(s.idle_timeout_secs, None);
        assert_eq!(s.enforced, Some(false));
        assert_eq!(s.graphical, Some(true));
    }

    #[test]
    fn headless_host_uses_tmout() {
        let s = linux(&host("no-firewall", FakeRunner::default(), NOW)).unwrap();
        assert_eq!(s.graphical, Some(false));
        assert!(!s.enabled);
        assert_eq!(s.source, "tmout");
    }

    #[test]
    fn windows_inactivity_limit() {
        assert_eq!(
            parse_inactivity_timeout(&recorded("reg/inactivitytimeoutsecs-600.txt")),
            Some(600)
        );
        let cmd = format!("reg query {WINDOWS_POLICY_KEY} /v InactivityTimeoutSecs");
        let h = host(
            "empty",
            FakeRunner::default().with(&cmd, Ok(&recorded("reg/inactivitytimeoutsecs-600.txt"))),
            NOW,
        );
        let s: ScreenLock = payload(&collect(&h, Platform::Windows), "host");
        assert_eq!(
            (s.enabled, s.idle_timeout_secs, s.enforced),
            (true, Some(600), Some(true))
        );
        let unset = host(
            "empty",
            FakeRunner::default().with(
                &cmd,
                Err("reg exited with exit code: 1: ERROR: The system was unable to find the specified registry key or value."),
            ),
            NOW,
        );
        let s: ScreenLock = payload(&collect(&unset, Platform::Windows), "host");
        assert!(!s.enabled);
    }

    #[test]
    fn sysadminctl_screenlock_outputs() {
        assert_eq!(
            parse_sysadminctl_screenlock(&recorded("sysadminctl/immediate.txt")),
            Ok(Some(0))
        );
        assert_eq!(
            parse_sysadminctl_screenlock(&recorded("sysadminctl/300-seconds.txt")),
            Ok(Some(300))
        );
        assert_eq!(parse_sysadminctl_screenlock(&recorded("sysadminctl/off.txt")), Ok(None));
        assert!(parse_sysadminctl_screenlock("sysadminctl: command not found").is_err());
        let h = host(
            "empty",
            FakeRunner::default().with(
                "/bin/sh -c /usr/sbin/sysadminctl -screenLock status 2>&1",
                Ok(&recorded("sysadminctl/immediate.txt")),
            ),
            NOW,
        );
        let s: ScreenLock = payload(&collect(&h, Platform::MacOs), "host");
        assert!(s.enabled);
        assert_eq!((s.idle_timeout_secs, s.source.as_str()), (None, "sysadminctl"));
    }

    #[test]
    fn tmout_forms() {
        assert_eq!(parse_tmout("readonly TMOUT=900\nexport TMOUT\n"), Some(900));
        assert_eq!(parse_tmout("declare -r TMOUT=600"), Some(600));
        assert_eq!(parse_tmout("# TMOUT=5\n"), None);
    }

    #[test]
    fn schema_defaults() {
        let xml = "<schema id=\"org.gnome.desktop.session\"><key name=\"idle-delay\" type=\"u\">\n<default>300</default>\n</key></schema>";
        assert_eq!(schema_default(xml, "idle-delay").as_deref(), Some("300"));
        assert_eq!(schema_default(xml, "lock-enabled"), None);
    }
}
