//! Multi-factor authentication on interactive and remote log-in.
//!
//! - Linux: the PAM stacks of `login` (local log-in; display managers include the same
//!   common stack) and `sshd` under /etc/pam.d, following includes: a second-factor module
//!   (pam_u2f, pam_duo, pam_google_authenticator, pam_oath, pam_yubico) that must succeed and
//!   has no `nullok`. Remote log-in also counts as multi-factor when sshd_config's
//!   `AuthenticationMethods` needs two methods in every alternative; a PAM second factor for
//!   sshd counts only with `PubkeyAuthentication no` (a key log-in skips the PAM auth stack).
//!   No /etc/ssh/sshd_config: no remote log-in service (`remote` unknown). World-readable
//!   files, no privilege.
//! - Windows: `reg query` of the Windows Hello for Business policy
//!   (HKLM\SOFTWARE\Policies\Microsoft\PassportForWork `Enabled`), the Duo credential provider
//!   (HKLM\SOFTWARE\Duo Security\DuoCredProv, `RdpOnly`), smart-card enforcement
//!   (`scforceoption` of the System policies) and whether Remote Desktop is on
//!   (`fDenyTSConnections`). No privilege.
//! - macOS: `defaults read` of `enforceSmartCard` (managed preferences, then
//!   /Library/Preferences) for local log-in; `systemsetup -getremotelogin` (root) and the same
//!   sshd_config and PAM reading as Linux for SSH.

use rounds_protocol::obs::Mfa;

use super::Host;
use super::hostcfg::host_check;
use super::hostcfg::{PamAuth, pam_auth, parse_sshd_config, reg_dword, reg_key, ssh_requires_two_methods, sshd_config};

host_check! {
    /// Observes multi-factor authentication on log-in.
    MfaCheck,
    "mfa",
    Mfa
}

/// Second-factor modules that must succeed in a PAM stack.
fn second_factors(stack: &[PamAuth]) -> Vec<String> {
    stack
        .iter()
        .filter(|a| a.enforces_second_factor())
        .map(|a| a.module.clone())
        .collect()
}

/// `(remote, methods)` of the SSH server: `None` when there is no sshd_config.
fn ssh(host: &Host, methods: &mut Vec<String>) -> Result<Option<bool>, String> {
    let Some(text) = sshd_config(host)? else {
        return Ok(None);
    };
    let settings = parse_sshd_config(&text);
    if ssh_requires_two_methods(&settings) {
        methods.push("sshd-authentication-methods".into());
        return Ok(Some(true));
    }
    let pam = pam_auth(host, "sshd")?.unwrap_or_default();
    let factors = second_factors(&pam);
    let pubkey_off = settings
        .get("pubkeyauthentication")
        .is_some_and(|v| v.eq_ignore_ascii_case("no"));
    let pam_on = settings.get("usepam").is_some_and(|v| v.eq_ignore_ascii_case("yes"));
    let remote = !factors.is_empty() && pubkey_off && pam_on;
    if remote {
        methods.extend(factors);
    }
    Ok(Some(remote))
}

fn linux(host: &Host) -> Result<Mfa, String> {
    if !host.exists("/etc/pam.d") {
        return Err("/etc/pam.d does not exist: no PAM stack to read".into());
    }
    let local_stack = match pam_auth(host, "login")? {
        Some(s) => s,
        None => pam_auth(host, "system-auth")?.unwrap_or_default(),
    };
    let mut methods = second_factors(&local_stack);
    let local = !methods.is_empty();
    let remote = ssh(host, &mut methods)?;
    methods.sort();
    methods.dedup();
    Ok(Mfa {
        local: Some(local),
        remote,
        methods,
        source: "/etc/pam.d".into(),
    })
}

const WHFB: &str = r"HKLM\SOFTWARE\Policies\Microsoft\PassportForWork";
const DUO: &str = r"HKLM\SOFTWARE\Duo Security\DuoCredProv";
const SYSTEM_POLICIES: &str = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System";
pub(crate) const TERMINAL_SERVER: &str = r"HKLM\SYSTEM\CurrentControlSet\Control\Terminal Server";

/// What the registry says about second factors on Windows.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct WindowsFactors {
    pub hello_for_business: bool,
    pub duo: bool,
    pub duo_rdp_only: bool,
    pub smart_card_required: bool,
    pub rdp_enabled: bool,
}

/// Local and remote multi-factor from the registry's answers.
pub fn windows_verdict(f: &WindowsFactors) -> Mfa {
    let mut methods = Vec::new();
    if f.hello_for_business {
        methods.push("windows-hello-for-business".to_string());
    }
    if f.duo {
        methods.push("duo".to_string());
    }
    if f.smart_card_required {
        methods.push("smart-card".to_string());
    }
    let local = f.hello_for_business || f.smart_card_required || (f.duo && !f.duo_rdp_only);
    let remote = f.rdp_enabled.then_some(f.duo || f.smart_card_required);
    Mfa {
        local: Some(local),
        remote,
        methods,
        source: "registry".into(),
    }
}

fn windows(host: &Host) -> Result<Mfa, String> {
    let duo = reg_key(host, DUO)?;
    let factors = WindowsFactors {
        hello_for_business: reg_dword(host, WHFB, "Enabled")? == Some(1),
        duo_rdp_only: duo
            .as_ref()
            .and_then(|v| v.get("RdpOnly"))
            .is_some_and(|d| d == "0x1" || d == "1"),
        duo: duo.is_some(),
        smart_card_required: reg_dword(host, SYSTEM_POLICIES, "scforceoption")? == Some(1),
        rdp_enabled: reg_dword(host, TERMINAL_SERVER, "fDenyTSConnections")? == Some(0),
    };
    Ok(windows_verdict(&factors))
}

/// `defaults read` of a boolean: `Some(true)` for `1`/`true`, `Some(false)` for `0`/`false`.
pub fn parse_defaults_bool(output: &str) -> Option<bool> {
    match output.trim() {
        "1" | "true" | "YES" => Some(true),
        "0" | "false" | "NO" => Some(false),
        _ => None,
    }
}

/// `Remote Login: On` / `Remote Login: Off` of `systemsetup -getremotelogin`.
pub fn parse_remote_login(output: &str) -> Option<bool> {
    let rest = output.trim().strip_prefix("Remote Login:")?;
    match rest.trim() {
        "On" => Some(true),
        "Off" => Some(false),
        _ => None,
    }
}

/// `defaults read DOMAIN KEY`: the value, or `None` when the domain or key does not exist.
pub(crate) fn defaults_read(host: &Host, domain: &str, key: &str) -> Result<Option<String>, String> {
    match host.runner.run("defaults", &["read", domain, key]) {
        Ok(out) => Ok(Some(out)),
        Err(e) if e.contains("does not exist") => Ok(None),
        Err(e) => Err(e),
    }
}

fn macos(host: &Host) -> Result<Mfa, String> {
    let mut smart_card = None;
    for domain in [
        "/Library/Managed Preferences/com.apple.security.smartcard",
        "/Library/Preferences/com.apple.security.smartcard",
    ] {
        if let Some(v) = defaults_read(host, domain, "enforceSmartCard")? {
            smart_card = parse_defaults_bool(&v);
            break;
        }
    }
    let local = smart_card.unwrap_or(false);
    let mut methods = if local {
        vec!["smart-card".to_string()]
    } else {
        Vec::new()
    };
    let remote_login = parse_remote_login(&host.runner.run("systemsetup", &["-getremotelogin"])?)
        .ok_or("unrecognised systemsetup -getremotelogin output")?;
    let remote = if remote_login { ssh(host, &mut methods)? } else { None };
    Ok(Mfa {
        local: Some(local),
        remote,
        methods,
        source: "com.apple.security.smartcard".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Platform;
    use crate::checks::testutil::{FakeRunner, error_of, host, payload, recorded};

    #[test]
    fn linux_hardened_and_plain() {
        let h = host("access-hardened", FakeRunner::default(), "2026-11-24T10:00:00Z");
        let m: Mfa = payload(&collect(&h, Platform::Linux), "host");
        // login has pam_google_authenticator with nullok: not enforced; sshd needs two methods.
        assert_eq!((m.local, m.remote), (Some(false), Some(true)));
        assert_eq!(m.methods, ["sshd-authentication-methods"]);
        let h = host("golden-host", FakeRunner::default(), "2026-11-24T10:00:00Z");
        let m: Mfa = payload(&collect(&h, Platform::Linux), "host");
        assert_eq!((m.local, m.remote), (Some(false), None));
        let h = host("empty", FakeRunner::default(), "2026-11-24T10:00:00Z");
        assert!(error_of(&collect(&h, Platform::Linux), "mfa", "host").contains("/etc/pam.d"));
    }

    #[test]
    fn windows_from_recorded_registry_answers() {
        let missing = Err("ERROR: The system was unable to find the specified registry key or value.");
        let h = host(
            "empty",
            FakeRunner::default()
                .with(&format!("reg query {WHFB} /v Enabled"), missing)
                .with(&format!("reg query {DUO}"), missing)
                .with(&format!("reg query {SYSTEM_POLICIES} /v scforceoption"), missing)
                .with(
                    &format!("reg query {TERMINAL_SERVER} /v fDenyTSConnections"),
                    Ok(&recorded("reg/fdenytsconnections-0.txt")),
                ),
            "2026-11-24T10:00:00Z",
        );
        let m: Mfa = payload(&collect(&h, Platform::Windows), "host");
        assert_eq!((m.local, m.remote), (Some(false), Some(false)));
        let duo_everywhere = windows_verdict(&WindowsFactors {
            duo: true,
            rdp_enabled: true,
            ..WindowsFactors::default()
        });
        assert_eq!((duo_everywhere.local, duo_everywhere.remote), (Some(true), Some(true)));
        let duo_rdp_only = windows_verdict(&WindowsFactors {
            duo: true,
            duo_rdp_only: true,
            rdp_enabled: true,
            ..WindowsFactors::default()
        });
        assert_eq!(duo_rdp_only.local, Some(false));
        let whfb_no_rdp = windows_verdict(&WindowsFactors {
            hello_for_business: true,
            ..WindowsFactors::default()
        });
        assert_eq!((whfb_no_rdp.local, whfb_no_rdp.remote), (Some(true), None));
        let broken = host("empty", FakeRunner::default(), "2026-11-24T10:00:00Z");
        assert!(!error_of(&collect(&broken, Platform::Windows), "mfa", "host").is_empty());
    }

    #[test]
    fn macos_smart_card_and_remote_login() {
        assert_eq!(
            parse_remote_login(&recorded("systemsetup/remote-login-on.txt")),
            Some(true)
        );
        assert_eq!(
            parse_remote_login(&recorded("systemsetup/remote-login-off.txt")),
            Some(false)
        );
        let h = host(
            "access-hardened",
            FakeRunner::default()
                .with(
                    "defaults read /Library/Managed Preferences/com.apple.security.smartcard enforceSmartCard",
                    Ok("1\n"),
                )
                .with(
                    "systemsetup -getremotelogin",
                    Ok(&recorded("systemsetup/remote-login-off.txt")),
                ),
            "2026-11-24T10:00:00Z",
        );
        let m: Mfa = payload(&collect(&h, Platform::MacOs), "host");
        assert_eq!((m.local, m.remote), (Some(true), None));
        assert_eq!(m.methods, ["smart-card"]);
    }
}
