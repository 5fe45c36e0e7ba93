//! Hardening of remote-access services: RDP with Network Level Authentication, SMB signing,
//! SSH without password log-in for root.
//!
//! - Linux: OpenSSH from /etc/ssh/sshd_config and its includes (enabled when /usr/sbin/sshd
//!   is installed too); xrdp when /etc/xrdp/xrdp.ini exists (xrdp cannot require NLA); Samba's
//!   `server signing` (or an AD DC, which signs by default) from /etc/samba/smb.conf when smbd
//!   is installed. World-readable files, no privilege.
//! - Windows: `reg query` of `fDenyTSConnections` (Remote Desktop on), RDP-Tcp's
//!   `UserAuthentication` (NLA) and LanmanServer's `RequireSecuritySignature`; `sc query
//!   sshd` for the OpenSSH server (Windows has no root account, so root password log-in is
//!   `false`). No privilege.
//! - macOS: `systemsetup -getremotelogin` (root) and the same sshd_config reading as Linux;
//!   no RDP server; `defaults read /Library/Preferences/SystemConfiguration/com.apple.smb.server
//!   SigningRequired` for file sharing.

use rounds_protocol::obs::RemoteAccess;

use super::Host;
use super::hostcfg::host_check;
use super::hostcfg::{parse_sshd_config, reg_dword, ssh_root_password_login, sshd_config};
use super::mfa::{TERMINAL_SERVER, defaults_read, parse_defaults_bool, parse_remote_login};

host_check! {
    /// Observes remote-access hardening.
    RemoteAccessCheck,
    "remote_access",
    RemoteAccess
}

/// Whether Samba requires signing: `server signing = mandatory` (or `required`) in `[global]`,
/// or an Active Directory domain controller role without `server signing` set.
pub fn samba_signing_required(smb_conf: &str) -> bool {
    let mut global = false;
    let mut signing = None;
    let mut dc = false;
    for line in smb_conf.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            global = line.eq_ignore_ascii_case("[global]");
            continue;
        }
        let Some((k, v)) = line.split_once('=') else { continue };
        if !global {
            continue;
        }
        let key: String = k.split_whitespace().collect::<Vec<_>>().join(" ").to_ascii_lowercase();
        let value = v.trim().to_ascii_lowercase();
        match key.as_str() {
            "server signing" => signing = Some(value == "mandatory" || value == "required"),
            "server role" => dc = value.contains("domain controller"),
            _ => {}
        }
    }
    signing.unwrap_or(dc)
}

/// `(ssh_enabled, ssh_root_password_login)` from sshd_config under the host root.
fn ssh(host: &Host, installed: bool) -> Result<(Option<bool>, Option<bool>), String> {
    match sshd_config(host)? {
        Some(text) if installed => Ok((Some(true), Some(ssh_root_password_login(&parse_sshd_config(&text))))),
        _ => Ok((Some(false), None)),
    }
}

fn linux(host: &Host) -> Result<RemoteAccess, String> {
    let (ssh_enabled, ssh_root_password_login) = ssh(host, host.exists("/usr/sbin/sshd"))?;
    let xrdp = host.exists("/etc/xrdp/xrdp.ini");
    let smb = if host.exists("/usr/sbin/smbd") {
        host.read_opt("/etc/samba/smb.conf")?
            .map(|t| samba_signing_required(&t))
    } else {
        None
    };
    Ok(RemoteAccess {
        rdp_enabled: Some(xrdp),
        rdp_nla_required: xrdp.then_some(false),
        smb_signing_required: smb,
        ssh_enabled,
        ssh_root_password_login,
    })
}

const RDP_TCP: &str = r"HKLM\SYSTEM\CurrentControlSet\Control\Terminal Server\WinStations\RDP-Tcp";
const LANMAN_SERVER: &str = r"HKLM\SYSTEM\CurrentControlSet\Services\LanmanServer\Parameters";

fn windows(host: &Host) -> Result<RemoteAccess, String> {
    let rdp = reg_dword(host, TERMINAL_SERVER, "fDenyTSConnections")?.map(|deny| deny == 0);
    let nla = match rdp {
        Some(true) => reg_dword(host, RDP_TCP, "UserAuthentication")?.map(|v| v == 1),
        _ => None,
    };
    let smb = reg_dword(host, LANMAN_SERVER, "RequireSecuritySignature")?.map(|v| v == 1);
    let sshd = match host.runner.run("sc", &["query", "sshd"]) {
        Ok(_) => true,
        Err(e) if e.contains("1060") => false,
        Err(e) => return Err(e),
    };
    Ok(RemoteAccess {
        // No fDenyTSConnections value: Remote Desktop has never been turned on.
        rdp_enabled: Some(rdp.unwrap_or(false)),
        rdp_nla_required: nla,
        smb_signing_required: smb,
        ssh_enabled: Some(sshd),
        ssh_root_password_login: sshd.then_some(false),
    })
}

fn macos(host: &Host) -> Result<RemoteAccess, String> {
    let remote_login = parse_remote_login(&host.runner.run("systemsetup", &["-getremotelogin"])?)
        .ok_or("unrecognised systemsetup -getremotelogin output")?;
    let (ssh_enabled, ssh_root_password_login) = ssh(host, remote_login)?;
    let smb = defaults_read(
        host,
        "/Library/Preferences/SystemConfiguration/com.apple.smb.server",
        "SigningRequired",
    )?
    .and_then(|v| parse_defaults_bool(&v));
    Ok(RemoteAccess {
        rdp_enabled: Some(false),
        rdp_nla_required: None,
        smb_signing_required: smb,
        ssh_enabled,
        ssh_root_password_login,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Platform;
    use crate::checks::testutil::{FakeRunner, error_of, host, payload, recorded};

    #[test]
    fn linux_fixture_hosts() {
        let h = host("access-hardened", FakeRunner::default(), "2026-11-24T10:00:00Z");
        let r: RemoteAccess = payload(&collect(&h, Platform::Linux), "host");
        assert_eq!((r.ssh_enabled, r.ssh_root_password_login), (Some(true), Some(false)));
        assert_eq!((r.rdp_enabled, r.smb_signing_required), (Some(false), Some(true)));
        let h = host("golden-host", FakeRunner::default(), "2026-11-24T10:00:00Z");
        let r: RemoteAccess = payload(&collect(&h, Platform::Linux), "host");
        assert_eq!(
            (r.ssh_enabled, r.rdp_enabled, r.smb_signing_required),
            (Some(false), Some(false), None)
        );
        assert!(samba_signing_required(
            "[global]\n   server role = active directory domain controller\n"
        ));
        assert!(!samba_signing_required(
            "[global]\nserver signing = auto\n[share]\nserver signing = mandatory\n"
        ));
    }

    #[test]
    fn windows_rdp_nla_smb_signing() {
        let h = host(
            "empty",
            FakeRunner::default()
                .with(
                    &format!("reg query {TERMINAL_SERVER} /v fDenyTSConnections"),
                    Ok(&recorded("reg/fdenytsconnections-0.txt")),
                )
                .with(
                    &format!("reg query {RDP_TCP} /v UserAuthentication"),
                    Ok(&recorded("reg/userauthentication-0.txt")),
                )
                .with(
                    &format!("reg query {LANMAN_SERVER} /v RequireSecuritySignature"),
                    Ok(&recorded("reg/requiresecuritysignature-1.txt")),
                )
                .with("sc query sshd", Err(&recorded("sc/query-not-installed.txt"))),
            "2026-11-24T10:00:00Z",
        );
        let r: RemoteAccess = payload(&collect(&h, Platform::Windows), "host");
        assert_eq!((r.rdp_enabled, r.rdp_nla_required), (Some(true), Some(false)));
        assert_eq!(r.smb_signing_required, Some(true));
        assert_eq!((r.ssh_enabled, r.ssh_root_password_login), (Some(false), None));
        let broken = host("empty", FakeRunner::default(), "2026-11-24T10:00:00Z");
        assert!(error_of(&collect(&broken, Platform::Windows), "remote_access", "host").contains("reg"));
    }

    #[test]
    fn macos_remote_login() {
        let h = host(
            "access-hardened",
            FakeRunner::default()
                .with("systemsetup -getremotelogin", Ok(&recorded("systemsetup/remote-login-on.txt")))
                .with(
                    "defaults read /Library/Preferences/SystemConfiguration/com.apple.smb.server SigningRequired",
                    Err("The domain/default pair of (/Library/Preferences/SystemConfiguration/com.apple.smb.server, SigningRequired) does not exist"),
                ),
            "2026-11-24T10:00:00Z",
        );
        let r: RemoteAccess = payload(&collect(&h, Platform::MacOs), "host");
        assert_eq!((r.ssh_enabled, r.ssh_root_password_login), (Some(true), Some(false)));
        assert_eq!((r.rdp_enabled, r.smb_signing_required), (Some(false), None));
    }
}
