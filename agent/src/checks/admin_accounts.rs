//! Daily-use accounts that are administrators.
//!
//! - Linux: members of the `sudo`, `wheel` and `admin` groups in /etc/group, and accounts whose
//!   primary group is one of them (/etc/passwd); root is left out (judged by `accounts`). An
//!   account with a login shell is interactive. World-readable files, no privilege.
//! - Windows: `net localgroup Administrators` (English output). The built-in Administrator
//!   (judged by `accounts`) and the domain's own administration groups (`Domain Admins`,
//!   `Enterprise Admins`, judged by the domain's policy) are not counted as interactive; every
//!   other member is. No privilege.
//! - macOS: `dscl . -read /Groups/admin GroupMembership`; root is left out. Every other member
//!   is interactive.

use std::collections::BTreeSet;

use rounds_protocol::obs::AdminAccounts;

use super::Host;
use super::accounts::{interactive, parse_passwd};
use super::hostcfg::host_check;

host_check! {
    /// Observes administrators that log in interactively.
    AdminAccountsCheck,
    "admin_accounts",
    AdminAccounts
}

/// Groups of Linux that grant administration through sudo or polkit.
pub const LINUX_ADMIN_GROUPS: &[&str] = &["sudo", "wheel", "admin"];

/// `(group, gid, members)` of /etc/group.
pub fn parse_group(text: &str) -> Vec<(String, u32, Vec<String>)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            let members = f[3]
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .collect();
            Some((f[0].to_string(), f[2].parse().ok()?, members))
        })
        .collect()
}

fn linux(host: &Host) -> Result<AdminAccounts, String> {
    let group = host
        .read_opt("/etc/group")?
        .ok_or_else(|| "/etc/group does not exist".to_string())?;
    let passwd = host
        .read_opt("/etc/passwd")?
        .ok_or_else(|| "/etc/passwd does not exist".to_string())?;
    let users = parse_passwd(&passwd);
    let mut groups = Vec::new();
    let mut admins = BTreeSet::new();
    for (name, gid, members) in parse_group(&group) {
        if !LINUX_ADMIN_GROUPS.contains(&name.as_str()) {
            continue;
        }
        groups.push(name);
        admins.extend(members);
        admins.extend(users.iter().filter(|u| u.gid == Some(gid)).map(|u| u.name.clone()));
    }
    admins.remove("root");
    let interactive_admins = admins
        .iter()
        .filter(|a| users.iter().any(|u| &u.name == *a && interactive(&u.shell)))
        .cloned()
        .collect();
    Ok(AdminAccounts {
        groups,
        admins: admins.into_iter().collect(),
        interactive_admins: Some(interactive_admins),
    })
}

/// Members listed by `net localgroup <group>` (English): the lines between the dashes and
/// `The command completed successfully.`; `None` when the output is not recognised.
pub fn parse_net_localgroup(text: &str) -> Option<Vec<String>> {
    let mut lines = text.lines().map(str::trim);
    lines.by_ref().find(|l| l.starts_with("-----"))?;
    Some(
        lines
            .take_while(|l| !l.starts_with("The command completed"))
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect(),
    )
}

fn windows(host: &Host) -> Result<AdminAccounts, String> {
    let out = host.runner.run("net", &["localgroup", "Administrators"])?;
    let admins = parse_net_localgroup(&out)
        .ok_or("unrecognised net localgroup Administrators output (only English is understood)")?;
    let domain_group = |m: &str| {
        let name = m.rsplit('\\').next().unwrap_or(m);
        name.eq_ignore_ascii_case("Domain Admins") || name.eq_ignore_ascii_case("Enterprise Admins")
    };
    let interactive_admins = admins
        .iter()
        .filter(|m| !m.eq_ignore_ascii_case("Administrator") && !domain_group(m))
        .cloned()
        .collect();
    Ok(AdminAccounts {
        groups: vec!["Administrators".into()],
        admins,
        interactive_admins: Some(interactive_admins),
    })
}

/// Members of `dscl . -read /Groups/admin GroupMembership` output; empty when the group has
/// no `GroupMembership` line (`No such key`).
pub fn parse_group_membership(text: &str) -> Vec<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("GroupMembership:"))
        .map(|rest| rest.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

fn macos(host: &Host) -> Result<AdminAccounts, String> {
    let out = host
        .runner
        .run("dscl", &[".", "-read", "/Groups/admin", "GroupMembership"])?;
    let admins: Vec<String> = parse_group_membership(&out)
        .into_iter()
        .filter(|m| m != "root")
        .collect();
    Ok(AdminAccounts {
        groups: vec!["admin".into()],
        interactive_admins: Some(admins.clone()),
        admins,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Platform;
    use crate::checks::testutil::{FakeRunner, error_of, host, payload, recorded};

    #[test]
    fn linux_sudo_members_with_login_shells() {
        let h = host("access-hardened", FakeRunner::default(), "2026-11-24T10:00:00Z");
        let a: AdminAccounts = payload(&collect(&h, Platform::Linux), "host");
        assert_eq!(a.groups, ["sudo"]);
        assert_eq!(a.admins, ["alice", "deploy", "msp-admin"]);
        // deploy's shell is /usr/sbin/nologin.
        assert_eq!(
            a.interactive_admins,
            Some(vec!["alice".to_string(), "msp-admin".to_string()])
        );
        let h = host("empty", FakeRunner::default(), "2026-11-24T10:00:00Z");
        assert!(error_of(&collect(&h, Platform::Linux), "accounts.admin", "host").contains("/etc/group"));
    }

    #[test]
    fn windows_net_localgroup() {
        let domain = parse_net_localgroup(&recorded("net-localgroup/administrators-domain.txt")).unwrap();
        assert_eq!(domain, ["Administrator", "BLACKOPS\\Domain Admins", "fsociety"]);
        let h = host(
            "empty",
            FakeRunner::default().with(
                "net localgroup Administrators",
                Ok(&recorded("net-localgroup/administrators-domain.txt")),
            ),
            "2026-11-24T10:00:00Z",
        );
        let a: AdminAccounts = payload(&collect(&h, Platform::Windows), "host");
        assert_eq!(a.interactive_admins, Some(vec!["fsociety".to_string()]));
        let local = parse_net_localgroup(&recorded("net-localgroup/administrators-local.txt")).unwrap();
        assert_eq!(local, ["Administrator", "mrb3n", "sarah"]);
        assert_eq!(parse_net_localgroup("Der Befehl wurde erfolgreich ausgeführt."), None);
    }

    #[test]
    fn macos_dscl_admin_group() {
        let out = recorded("dscl/admin-groupmembership.txt");
        assert_eq!(parse_group_membership(&out), ["root", "williamj"]);
        assert!(parse_group_membership("No such key: GroupMembership").is_empty());
        let h = host(
            "empty",
            FakeRunner::default().with("dscl . -read /Groups/admin GroupMembership", Ok(&out)),
            "2026-11-24T10:00:00Z",
        );
        let a: AdminAccounts = payload(&collect(&h, Platform::MacOs), "host");
        assert_eq!(a.interactive_admins, Some(vec!["williamj".to_string()]));
    }
}
