//! Password policy and monitoring of log-in attempts.
//!
//! - Linux: /etc/login.defs (`PASS_MAX_DAYS`, `PASS_MIN_LEN`), the PAM stacks
//!   /etc/pam.d/common-password and common-auth (Debian) or system-auth and password-auth
//!   (Fedora/RHEL) for pam_pwquality, pam_cracklib, pam_unix `minlen=`, pam_faillock and
//!   pam_tally2 with their arguments, /etc/security/pwquality.conf (+ pwquality.conf.d/*.conf)
//!   and /etc/security/faillock.conf. Failed log-ins are recorded when /var/log/auth.log,
//!   /var/log/secure, /var/log/btmp or a persistent journal (/var/log/journal) exists. All
//!   world-readable: no privilege needed.
//! - Windows: `net accounts` (no privilege), parsed by [`parse_net_accounts`]; failed log-ons are
//!   recorded when the Logon audit subcategory includes failures (`auditpol /get /category:* /r`,
//!   administrator).
//! - macOS: `pwpolicy` is not read yet.
//!
//! Conventions: `max_age_days` 99999 means "never expires" (the login.defs convention, also used
//! for Windows "Unlimited"); `lockout_threshold` `Some(0)` means "never locks".

use rounds_protocol::Observation;
use rounds_protocol::obs::{LoginMonitoring, PasswordPolicy, Payload};

use super::{Check, Host, Platform, not_supported, platform};

/// Observes password policy and log-in monitoring.
#[derive(Debug)]
pub struct PasswordsCheck;

impl Check for PasswordsCheck {
    fn name(&self) -> &'static str {
        "passwords"
    }

    fn kinds(&self) -> &'static [&'static str] {
        &[PasswordPolicy::KIND, LoginMonitoring::KIND]
    }

    fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(15)
    }

    fn run(&self, host: &Host) -> Vec<Observation> {
        collect(host, platform())
    }
}

fn collect(host: &Host, platform: Platform) -> Vec<Observation> {
    match platform {
        Platform::Linux => match linux(host) {
            Ok((p, l)) => vec![
                Observation::ok("host", host.now, &p),
                Observation::ok("host", host.now, &l),
            ],
            Err(e) => vec![
                Observation::error(PasswordPolicy::KIND, "host", host.now, e.clone()),
                Observation::error(LoginMonitoring::KIND, "host", host.now, e),
            ],
        },
        Platform::Windows => {
            let policy = host
                .runner
                .run("net", &["accounts"])
                .and_then(|t| parse_net_accounts(&t));
            let audited = host
                .runner
                .run("auditpol", &["/get", "/category:*", "/r"])
                .map_err(|e| format!("auditpol failed (needs administrator): {e}"))
                .and_then(|t| parse_auditpol_logon_failures(&t));
            let monitoring = match (&audited, &policy) {
                (Ok(recorded), p) => Observation::ok(
                    "host",
                    host.now,
                    &LoginMonitoring {
                        failed_logins_recorded: *recorded,
                        lockout_configured: p.as_ref().ok().and_then(|p| p.lockout_threshold).map(|n| n > 0),
                        source: "auditpol".to_string(),
                    },
                ),
                (Err(e), _) => Observation::error(LoginMonitoring::KIND, "host", host.now, e.clone()),
            };
            vec![
                match policy {
                    Ok(p) => Observation::ok("host", host.now, &p),
                    Err(e) => Observation::error(PasswordPolicy::KIND, "host", host.now, e),
                },
                monitoring,
            ]
        }
        Platform::MacOs => not_supported(&[PasswordPolicy::KIND, LoginMonitoring::KIND], host, "pwpolicy"),
    }
}

/// `(PASS_MAX_DAYS, PASS_MIN_LEN)` from /etc/login.defs.
pub fn parse_login_defs(text: &str) -> (Option<u32>, Option<u32>) {
    let get = |key: &str| {
        text.lines().find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(key)).then(|| w.next()?.parse().ok()).flatten()
        })
    };
    (get("PASS_MAX_DAYS"), get("PASS_MIN_LEN"))
}

/// `key = value` settings of pwquality.conf or faillock.conf; bare words are flags set to "".
pub fn parse_kv(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.trim().to_string(), v.trim().to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
}

/// A module line of a PAM stack: `(module, arguments)` for active lines.
pub fn pam_modules(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() || line.starts_with('@') {
            continue;
        }
        let mut words = line.split_whitespace();
        let _kind = words.next();
        // The control is one word or a bracketed list that may contain spaces.
        let Some(control) = words.next() else { continue };
        if control.starts_with('[') && !control.ends_with(']') {
            for w in words.by_ref() {
                if w.ends_with(']') {
                    break;
                }
            }
        }
        if let Some(module) = words.next() {
            let module = module.rsplit('/').next().unwrap_or(module).to_string();
            out.push((module, words.map(str::to_string).collect()));
        }
    }
    out
}

fn arg_value<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .find_map(|a| a.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
}

fn linux(host: &Host) -> Result<(PasswordPolicy, LoginMonitoring), String> {
    let (max_days, defs_min_len) = host
        .read_opt("/etc/login.defs")?
        .map_or((None, None), |t| parse_login_defs(&t));

    let mut modules = Vec::new();
    for f in ["common-password", "common-auth", "system-auth", "password-auth"] {
        if let Some(t) = host.read_opt(format!("/etc/pam.d/{f}"))? {
            modules.extend(pam_modules(&t));
        }
    }
    let mut pwquality = Vec::new();
    if let Some(t) = host.read_opt("/etc/security/pwquality.conf")? {
        pwquality.extend(parse_kv(&t));
    }
    for f in host.list_dir("/etc/security/pwquality.conf.d")? {
        if f.ends_with(".conf")
            && let Some(t) = host.read_opt(format!("/etc/security/pwquality.conf.d/{f}"))?
        {
            pwquality.extend(parse_kv(&t));
        }
    }
    let quality = modules
        .iter()
        .find(|(m, _)| m == "pam_pwquality.so" || m == "pam_cracklib.so");
    let conf = |k: &str| pwquality.iter().rev().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let setting = |k: &str| -> Option<String> {
        quality
            .and_then(|(_, args)| arg_value(args, k).map(str::to_string))
            .or_else(|| conf(k))
    };
    let (min_length, complexity) = match quality {
        Some(_) => {
            // pwquality's own default minimum length is 8 (cracklib: 9).
            let minlen = setting("minlen").and_then(|v| v.parse().ok()).unwrap_or(8);
            let minclass: i64 = setting("minclass").and_then(|v| v.parse().ok()).unwrap_or(0);
            let credits = ["dcredit", "ucredit", "lcredit", "ocredit"]
                .iter()
                .filter(|c| setting(c).and_then(|v| v.parse::<i64>().ok()).is_some_and(|n| n < 0))
                .count();
            (Some(minlen), Some(minclass >= 3 || credits >= 3))
        }
        None => {
            let unix_min = modules
                .iter()
                .find(|(m, _)| m == "pam_unix.so")
                .and_then(|(_, a)| arg_value(a, "minlen"))
                .and_then(|v| v.parse().ok());
            // pam_unix alone enforces no character classes; its built-in minimum is 6.
            let has_unix = modules.iter().any(|(m, _)| m == "pam_unix.so");
            (
                unix_min.or(defs_min_len).or(has_unix.then_some(6)),
                Some(false).filter(|_| has_unix),
            )
        }
    };

    let mut faillock = Vec::new();
    if let Some(t) = host.read_opt("/etc/security/faillock.conf")? {
        faillock.extend(parse_kv(&t));
    }
    let lockout = modules
        .iter()
        .find(|(m, _)| m == "pam_faillock.so" || m == "pam_tally2.so");
    let lockout_threshold = match lockout {
        Some((_, args)) => Some(
            arg_value(args, "deny")
                .map(str::to_string)
                .or_else(|| faillock.iter().rev().find(|(k, _)| k == "deny").map(|(_, v)| v.clone()))
                .and_then(|v| v.parse().ok())
                // pam_faillock's default is 3 failures.
                .unwrap_or(3),
        ),
        None if modules.is_empty() => None,
        None => Some(0),
    };

    let logs = [
        ("/var/log/auth.log", "auth.log"),
        ("/var/log/secure", "secure"),
        ("/var/log/journal", "journald"),
        ("/var/log/btmp", "btmp"),
    ];
    let present: Vec<&str> = logs.iter().filter(|(p, _)| host.exists(p)).map(|(_, n)| *n).collect();

    Ok((
        PasswordPolicy {
            min_length,
            max_age_days: max_days,
            lockout_threshold,
            complexity_required: complexity,
            source: "pam".to_string(),
        },
        LoginMonitoring {
            failed_logins_recorded: !present.is_empty(),
            lockout_configured: lockout_threshold.map(|n| n > 0),
            source: if present.is_empty() {
                "none".to_string()
            } else {
                present.join(",")
            },
        },
    ))
}

/// The Logon audit subcategory's GUID: the same in every language.
const LOGON_SUBCATEGORY: &str = "{0CCE9215-69AE-11D9-BED3-505054503030}";

/// Whether failed log-ons are audited, from `auditpol /get /category:* /r` (CSV). The
/// subcategory is found by GUID; its setting must be English (`Failure`, `Success and Failure`).
pub fn parse_auditpol_logon_failures(csv: &str) -> Result<bool, String> {
    let row = csv
        .lines()
        .find(|l| l.contains(LOGON_SUBCATEGORY))
        .ok_or_else(|| "unrecognised auditpol output: no Logon subcategory".to_string())?;
    let setting = row.split(',').nth(4).unwrap_or("").trim();
    match setting {
        "Success and Failure" | "Failure" => Ok(true),
        "Success" | "No Auditing" => Ok(false),
        other => Err(format!(
            "unrecognised auditpol setting {other:?} (only English is understood)"
        )),
    }
}

/// Parses `net accounts` (English). Unknown output is an error.
pub fn parse_net_accounts(text: &str) -> Result<PasswordPolicy, String> {
    let field = |label: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == label).then(|| v.trim().to_string())
        })
    };
    let min_len = field("Minimum password length");
    let max_age = field("Maximum password age (days)");
    let threshold = field("Lockout threshold");
    if min_len.is_none() && max_age.is_none() && threshold.is_none() {
        return Err(format!(
            "unrecognised net accounts output (only English is understood): {}",
            text.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("empty output")
        ));
    }
    let number = |v: Option<String>, never: u32| {
        v.and_then(|v| match v.as_str() {
            "Unlimited" | "Never" => Some(never),
            "None" => Some(0),
            n => n.parse().ok(),
        })
    };
    Ok(PasswordPolicy {
        min_length: number(min_len, 0),
        max_age_days: number(max_age, 99999),
        lockout_threshold: number(threshold, 0),
        complexity_required: None,
        source: "net-accounts".to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testutil::{FakeRunner, host, payload, recorded};

    const NOW: &str = "2026-11-24T10:00:00Z";

    #[test]
    fn debian_defaults() {
        let (p, l) = linux(&host("passwords-debian", FakeRunner::default(), NOW)).unwrap();
        assert_eq!(p.max_age_days, Some(99999));
        assert_eq!(p.min_length, Some(6));
        assert_eq!(p.complexity_required, Some(false));
        assert_eq!(p.lockout_threshold, Some(0));
        assert!(l.failed_logins_recorded);
        assert_eq!(l.lockout_configured, Some(false));
        assert_eq!(l.source, "auth.log,btmp");
    }

    #[test]
    fn hardened_pwquality_and_faillock() {
        let (p, l) = linux(&host("passwords-hardened", FakeRunner::default(), NOW)).unwrap();
        assert_eq!(p.min_length, Some(14));
        assert_eq!(p.complexity_required, Some(true));
        assert_eq!(p.max_age_days, Some(90));
        assert_eq!(p.lockout_threshold, Some(5));
        assert_eq!(l.lockout_configured, Some(true));
    }

    #[test]
    fn net_accounts_outputs() {
        let p = parse_net_accounts(&recorded("net-accounts/workstation.txt")).unwrap();
        assert_eq!(
            (p.min_length, p.max_age_days, p.lockout_threshold),
            (Some(7), Some(42), Some(5))
        );
        let p = parse_net_accounts(&recorded("net-accounts/server-defaults.txt")).unwrap();
        assert_eq!(
            (p.min_length, p.max_age_days, p.lockout_threshold),
            (Some(0), Some(42), Some(0))
        );
        let p = parse_net_accounts(&recorded("net-accounts/unlimited.txt")).unwrap();
        assert_eq!(
            (p.min_length, p.max_age_days, p.lockout_threshold),
            (Some(8), Some(99999), Some(5))
        );
        assert!(parse_net_accounts("System error 5 has occurred.").is_err());

        let h = host(
            "empty",
            FakeRunner::default()
                .with("net accounts", Ok(&recorded("net-accounts/workstation.txt")))
                .with(
                    "auditpol /get /category:* /r",
                    Ok(&recorded("auditpol/category-all-ws2022.csv")),
                ),
            NOW,
        );
        let obs = collect(&h, Platform::Windows);
        let p: PasswordPolicy = payload(&obs, "host");
        assert_eq!(p.source, "net-accounts");
        let l: LoginMonitoring = payload(&obs, "host");
        assert_eq!((l.failed_logins_recorded, l.lockout_configured), (true, Some(true)));
        assert!(parse_auditpol_logon_failures("Error 0x00000522 occurred:").is_err());
    }

    #[test]
    fn pam_lines_with_bracketed_controls() {
        let m = pam_modules("password\t[success=1 default=ignore]\tpam_unix.so obscure yescrypt\n");
        assert_eq!(
            m,
            [(
                "pam_unix.so".to_string(),
                vec!["obscure".to_string(), "yescrypt".to_string()]
            )]
        );
    }
}
