//! Unique user identification: one UID 0, no duplicate UIDs or names, no empty password hashes,
//! no automatic log-in into a graphical session, no guest account.
//!
//! - Linux: /etc/passwd (world-readable); /etc/shadow for empty password hashes (root only:
//!   unprivileged, `empty_password_accounts` is unknown); automatic log-in from GDM
//!   (/etc/gdm3/custom.conf, /etc/gdm/custom.conf `AutomaticLoginEnable`), LightDM
//!   (/etc/lightdm/lightdm.conf and lightdm.conf.d/*.conf `autologin-user`, `allow-guest`) and
//!   SDDM (/etc/sddm.conf, /etc/sddm.conf.d/*.conf `[Autologin] User`).
//! - Windows: `net user Guest` and `net user Administrator` (`Account active`), and
//!   `reg query "HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Winlogon" /v AutoAdminLogon`
//!   (only that value is queried: the Winlogon key may hold a cleartext DefaultPassword). No
//!   privilege needed. An enabled built-in Administrator is reported in `uid0_accounts`.
//! - macOS is not read yet.

use std::collections::{BTreeMap, BTreeSet};

use rounds_protocol::Observation;
use rounds_protocol::obs::{Accounts, Payload};

use super::{Check, Host, Platform, not_supported, platform, reg_value};

/// Observes user accounts.
#[derive(Debug)]
pub struct AccountsCheck;

impl Check for AccountsCheck {
    fn name(&self) -> &'static str {
        "accounts"
    }

    fn kinds(&self) -> &'static [&'static str] {
        &[Accounts::KIND]
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
        Platform::MacOs => return not_supported(&[Accounts::KIND], host, "macOS accounts"),
    };
    vec![Observation::from_result("host", host.now, result)]
}

/// `Account active` of `net user <name>` (English): `Some(true)` Yes, `Some(false)` No.
pub fn parse_net_user_active(text: &str) -> Option<bool> {
    text.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("Account active")?;
        match rest.trim() {
            "Yes" => Some(true),
            "No" => Some(false),
            _ => None,
        }
    })
}

/// Whether `AutoAdminLogon` is `1` in `reg query` output of the Winlogon key.
pub fn parse_auto_admin_logon(text: &str) -> Option<bool> {
    reg_value(text, "AutoAdminLogon").map(|(_, v)| v == "1")
}

const WINLOGON: &str = r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Winlogon";

fn windows(host: &Host) -> Result<Accounts, String> {
    let active = |name: &str| -> Result<bool, String> {
        match host.runner.run("net", &["user", name]) {
            Ok(out) => parse_net_user_active(&out)
                .ok_or_else(|| format!("unrecognised net user {name} output (only English is understood)")),
            // NET HELPMSG 2221: the user name could not be found (renamed or removed).
            Err(e) if e.contains("2221") || e.contains("could not be found") => Ok(false),
            Err(e) => Err(e),
        }
    };
    let guest = active("Guest")?;
    let admin = active("Administrator")?;
    let auto_login = match host.runner.run("reg", &["query", WINLOGON, "/v", "AutoAdminLogon"]) {
        Ok(out) => parse_auto_admin_logon(&out),
        Err(e) if e.contains("unable to find") => Some(false),
        Err(_) => None,
    };
    Ok(Accounts {
        uid0_accounts: if admin {
            vec!["Administrator".to_string()]
        } else {
            Vec::new()
        },
        duplicate_uids: Vec::new(),
        duplicate_names: Vec::new(),
        empty_password_accounts: None,
        auto_login,
        guest_enabled: Some(guest),
        interactive_accounts: 0,
    })
}

/// One line of /etc/passwd.
#[derive(Debug, Clone, PartialEq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    /// Primary group id, when it is a number.
    pub gid: Option<u32>,
    pub shell: String,
}

/// Parses /etc/passwd; malformed lines and NIS `+`/`-` lines are skipped.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('+') && !l.starts_with('-'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 7 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok(),
                shell: f[6].trim().to_string(),
            })
        })
        .collect()
}

/// Accounts whose password field in /etc/shadow is empty (log-in without a password).
pub fn empty_hashes(shadow: &str) -> Vec<String> {
    shadow
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let hash = f.next()?;
            (!name.is_empty() && hash.is_empty()).then(|| name.to_string())
        })
        .collect()
}

/// Whether a login shell lets the account log in interactively.
pub(crate) fn interactive(shell: &str) -> bool {
    !(shell.is_empty()
        || shell.ends_with("/nologin")
        || shell.ends_with("/false")
        || shell.ends_with("/sync")
        || shell.ends_with("/halt")
        || shell.ends_with("/shutdown"))
}

/// `(section, key) -> value` of an INI file.
fn ini(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for l in text.lines().map(str::trim) {
        if l.starts_with('#') || l.starts_with(';') || l.is_empty() {
            continue;
        }
        if let Some(s) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = s.to_string();
        } else if let Some((k, v)) = l.split_once('=') {
            out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

fn config_files(host: &Host, main: &str, dir: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    if let Some(t) = host.read_opt(main)? {
        out.push(t);
    }
    for f in host.list_dir(dir)? {
        if f.ends_with(".conf")
            && let Some(t) = host.read_opt(format!("{dir}/{f}"))?
        {
            out.push(t);
        }
    }
    Ok(out)
}

/// `(auto_login, guest_enabled)` from display-manager configuration.
fn display_manager(host: &Host) -> Result<(bool, bool), String> {
    let mut auto = false;
    let mut guest = false;
    for f in ["/etc/gdm3/custom.conf", "/etc/gdm/custom.conf", "/etc/gdm3/daemon.conf"] {
        if let Some(t) = host.read_opt(f)? {
            auto |= ini(&t).iter().any(|(s, k, v)| {
                s == "daemon"
                    && (k == "AutomaticLoginEnable" || k == "TimedLoginEnable")
                    && v.eq_ignore_ascii_case("true")
            });
        }
    }
    for t in config_files(host, "/etc/lightdm/lightdm.conf", "/etc/lightdm/lightdm.conf.d")? {
        for (s, k, v) in ini(&t) {
            if s.starts_with("Seat") || s == "SeatDefaults" {
                auto |= k == "autologin-user" && !v.is_empty();
                guest |= k == "allow-guest" && v == "true";
            }
        }
    }
    for t in config_files(host, "/etc/sddm.conf", "/etc/sddm.conf.d")? {
        auto |= ini(&t)
            .iter()
            .any(|(s, k, v)| s == "Autologin" && k == "User" && !v.is_empty());
    }
    Ok((auto, guest))
}

fn linux(host: &Host) -> Result<Accounts, String> {
    let passwd = host
        .read_opt("/etc/passwd")?
        .ok_or_else(|| "/etc/passwd does not exist".to_string())?;
    let entries = parse_passwd(&passwd);
    if entries.is_empty() {
        return Err("/etc/passwd has no readable entries".to_string());
    }
    let mut by_uid: BTreeMap<u32, usize> = BTreeMap::new();
    let mut by_name: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &entries {
        *by_uid.entry(e.uid).or_default() += 1;
        *by_name.entry(e.name.as_str()).or_default() += 1;
    }
    let uid0: BTreeSet<String> = entries.iter().filter(|e| e.uid == 0).map(|e| e.name.clone()).collect();
    // Without permission to read /etc/shadow, empty hashes are unknown.
    let empty = host.read_opt("/etc/shadow").ok().flatten().map(|s| empty_hashes(&s));
    let (auto_login, dm_guest) = display_manager(host)?;
    let guest_account = entries.iter().any(|e| e.name == "guest" && interactive(&e.shell));
    Ok(Accounts {
        uid0_accounts: uid0.into_iter().collect(),
        duplicate_uids: by_uid.into_iter().filter(|(_, n)| *n > 1).map(|(u, _)| u).collect(),
        duplicate_names: by_name
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(n, _)| n.to_string())
            .collect(),
        empty_password_accounts: empty,
        auto_login: Some(auto_login),
        guest_enabled: Some(dm_guest || guest_account),
        interactive_accounts: entries.iter().filter(|e| interactive(&e.shell)).count() as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testutil::{FakeRunner, host, payload, recorded};

    #[test]
    fn two_uid0_accounts() {
        let a = linux(&host("two-uid0", FakeRunner::default(), "2026-11-24T10:00:00Z")).unwrap();
        assert_eq!(a.uid0_accounts, ["root", "toor"]);
        assert_eq!(a.duplicate_uids, [0]);
        assert!(a.duplicate_names.is_empty());
        assert_eq!(a.empty_password_accounts, Some(vec!["toor".to_string()]));
        assert_eq!(a.auto_login, Some(true));
        assert_eq!(a.guest_enabled, Some(false));
        assert_eq!(a.interactive_accounts, 3);
    }

    #[test]
    fn windows_guest_administrator_and_autologon() {
        assert_eq!(
            parse_net_user_active(&recorded("net-user/guest-domain-inactive.txt")),
            Some(false)
        );
        assert_eq!(
            parse_net_user_active(&recorded("net-user/account-active-yes.txt")),
            Some(true)
        );
        assert_eq!(
            parse_auto_admin_logon(&recorded("reg/winlogon-autoadminlogon.txt")),
            Some(true)
        );
        let h = host(
            "empty",
            FakeRunner::default()
                .with("net user Guest", Ok(&recorded("net-user/guest-domain-inactive.txt")))
                .with(
                    "net user Administrator",
                    Ok(&recorded("net-user/account-active-yes.txt")),
                )
                .with(
                    &format!("reg query {WINLOGON} /v AutoAdminLogon"),
                    Ok(&recorded("reg/winlogon-autoadminlogon.txt")),
                ),
            "2026-11-24T10:00:00Z",
        );
        let a: Accounts = payload(&collect(&h, Platform::Windows), "host");
        assert_eq!(a.uid0_accounts, ["Administrator"]);
        assert_eq!((a.guest_enabled, a.auto_login), (Some(false), Some(true)));
    }

    #[test]
    fn unreadable_shadow_is_unknown_not_empty() {
        let a = linux(&host("passwords-debian", FakeRunner::default(), "2026-11-24T10:00:00Z"));
        // That fixture has no /etc/passwd: an explained error.
        assert!(a.unwrap_err().contains("/etc/passwd"));
        assert_eq!(
            empty_hashes("root:$y$j9T$abc:19000:0:99999:7:::\nbin:*:19000::::::\n"),
            Vec::<String>::new()
        );
    }
}
