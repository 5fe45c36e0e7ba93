//! When each interactive account last logged in, for finding dormant accounts.
//!
//! - Linux: the accounts with a login shell in /etc/passwd; enabled unless their /etc/shadow
//!   hash is locked (`!` or `*`, root only: unprivileged, `enabled` is unknown); the last
//!   log-in from /var/log/lastlog (binary, one record per UID; world-readable), or, where that
//!   file does not exist (distributions that moved to lastlog2), the `lastlog` command's
//!   output. An empty record means never.
//! - Windows: `powershell -NoProfile -NonInteractive -Command "Get-LocalUser | Select-Object
//!   Name,Enabled,LastLogon | ConvertTo-Json"`. No privilege.
//! - macOS: accounts with a UniqueID of 501 or more and no leading `_` (`dscl . -list /Users
//!   UniqueID`); the last log-in from `last` (wtmp), whose dates carry no year: a date later
//!   than now is taken as last year's. `enabled` is unknown.

use chrono::{DateTime, Datelike, NaiveDateTime, TimeZone, Utc};
use rounds_protocol::obs::{AccountActivity, AccountLogin};
use serde_json::Value;

use super::Host;
use super::accounts::{interactive, parse_passwd};
use super::hostcfg::host_check;

host_check! {
    /// Observes the last log-in of every interactive account.
    AccountActivityCheck,
    "account_activity",
    AccountActivity
}

/// The size of one /var/log/lastlog record and of its time field: 292 bytes with a 32-bit
/// time on x86_64 and 32-bit platforms (glibc's `__WORDSIZE_TIME64_COMPAT32`), 296 with a
/// 64-bit time elsewhere.
pub const LASTLOG_LAYOUT: (usize, usize) = if cfg!(any(target_arch = "x86_64", target_pointer_width = "32")) {
    (292, 4)
} else {
    (296, 8)
};

/// The last log-in of `uid` in a /var/log/lastlog file: `None` when never (no record, or a
/// zero time).
pub fn lastlog_record(bytes: &[u8], uid: u32, layout: (usize, usize)) -> Option<DateTime<Utc>> {
    let (size, time_len) = layout;
    let start = (uid as usize).checked_mul(size)?;
    let field = bytes.get(start..start + time_len)?;
    let secs = match time_len {
        4 => i64::from(i32::from_le_bytes(field.try_into().ok()?)),
        _ => i64::from_le_bytes(field.try_into().ok()?),
    };
    (secs > 0).then(|| DateTime::from_timestamp(secs, 0)).flatten()
}

/// `name -> last log-in` from `lastlog` output (`Username Port From Latest`); `None` for
/// `**Never logged in**`. Lines whose date does not parse are left out.
pub fn parse_lastlog(text: &str) -> Vec<(String, Option<DateTime<Utc>>)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let name = l.split_whitespace().next()?.to_string();
            if l.contains("**Never logged in**") {
                return Some((name, None));
            }
            // The date is the last six words: `Fri Feb 15 09:40:56 -0600 2019`.
            let words: Vec<&str> = l.split_whitespace().collect();
            let date = words.get(words.len().checked_sub(6)?..)?.join(" ");
            let at = DateTime::parse_from_str(&date, "%a %b %e %H:%M:%S %z %Y").ok()?;
            Some((name, Some(at.with_timezone(&Utc))))
        })
        .collect()
}

fn linux(host: &Host) -> Result<AccountActivity, String> {
    let passwd = host
        .read_opt("/etc/passwd")?
        .ok_or_else(|| "/etc/passwd does not exist".to_string())?;
    let users: Vec<_> = parse_passwd(&passwd)
        .into_iter()
        .filter(|u| interactive(&u.shell))
        .collect();
    let shadow = host.read_opt("/etc/shadow").ok().flatten();
    let locked = |name: &str| -> Option<bool> {
        let shadow = shadow.as_ref()?;
        shadow.lines().find_map(|l| {
            let mut f = l.split(':');
            (f.next()? == name).then(|| f.next().is_some_and(|h| h.starts_with('!') || h.starts_with('*')))
        })
    };
    let (logins, source): (Vec<Option<DateTime<Utc>>>, &str) = match std::fs::read(host.path("/var/log/lastlog")) {
        Ok(bytes) => (
            users
                .iter()
                .map(|u| lastlog_record(&bytes, u.uid, LASTLOG_LAYOUT))
                .collect(),
            "/var/log/lastlog",
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let table = parse_lastlog(&host.runner.run("lastlog", &[])?);
            (
                users
                    .iter()
                    .map(|u| table.iter().find(|(n, _)| n == &u.name).and_then(|(_, at)| *at))
                    .collect(),
                "lastlog",
            )
        }
        Err(e) => return Err(format!("cannot read /var/log/lastlog: {e}")),
    };
    Ok(AccountActivity {
        accounts: users
            .iter()
            .zip(logins)
            .map(|(u, at)| AccountLogin {
                name: u.name.clone(),
                enabled: locked(&u.name).map(|l| !l),
                last_login_at: at,
            })
            .collect(),
        source: source.into(),
    })
}

/// A PowerShell 5.1 JSON date (`/Date(1605771872777)/`) or an ISO 8601 one (PowerShell 7).
fn powershell_date(v: &Value) -> Option<DateTime<Utc>> {
    let s = v.as_str()?;
    if let Some(ms) = s.strip_prefix("/Date(").and_then(|r| r.strip_suffix(")/")) {
        return DateTime::from_timestamp_millis(ms.parse().ok()?);
    }
    DateTime::parse_from_rfc3339(s).ok().map(|d| d.with_timezone(&Utc))
}

/// Accounts of `Get-LocalUser | Select-Object Name,Enabled,LastLogon | ConvertTo-Json` (an
/// array, or one object for a single user).
pub fn parse_local_users(json: &str) -> Result<Vec<AccountLogin>, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("Get-LocalUser output is not JSON: {e}"))?;
    let items = match v {
        Value::Array(items) => items,
        one @ Value::Object(_) => vec![one],
        _ => return Err("Get-LocalUser output is neither an array nor an object".into()),
    };
    items
        .iter()
        .map(|u| {
            Ok(AccountLogin {
                name: u["Name"]
                    .as_str()
                    .ok_or("a Get-LocalUser entry has no Name")?
                    .to_string(),
                enabled: u["Enabled"].as_bool(),
                last_login_at: powershell_date(&u["LastLogon"]),
            })
        })
        .collect()
}

const GET_LOCAL_USER: &str = "Get-LocalUser | Select-Object Name,Enabled,LastLogon | ConvertTo-Json";

fn windows(host: &Host) -> Result<AccountActivity, String> {
    let out = host.runner.run(
        "powershell",
        &["-NoProfile", "-NonInteractive", "-Command", GET_LOCAL_USER],
    )?;
    Ok(AccountActivity {
        accounts: parse_local_users(&out)?,
        source: "Get-LocalUser".into(),
    })
}

/// `(name, uid)` of `dscl . -list /Users UniqueID`.
pub fn parse_dscl_uids(text: &str) -> Vec<(String, u32)> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.parse().ok()?))
        })
        .collect()
}

/// The newest log-in of `user` in macOS `last` output (`alice  console  Mon Nov 23 08:10 ...`),
/// the year taken from `now` (last year's when the date would be in the future).
pub fn last_login_in(last: &str, user: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    last.lines().find_map(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        if words.first() != Some(&user) {
            return None;
        }
        // Find `Mon Nov 23 08:10`: a weekday followed by a month, a day and a time.
        let i = words
            .iter()
            .position(|w| ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].contains(w))?;
        let text = format!("{} {} {}", words.get(i + 1)?, words.get(i + 2)?, words.get(i + 3)?);
        for year in [now.year(), now.year() - 1] {
            let parsed = NaiveDateTime::parse_from_str(&format!("{year} {text}"), "%Y %b %e %H:%M").ok()?;
            let at = Utc.from_utc_datetime(&parsed);
            if at <= now {
                return Some(at);
            }
        }
        None
    })
}

fn macos(host: &Host) -> Result<AccountActivity, String> {
    let users = parse_dscl_uids(&host.runner.run("dscl", &[".", "-list", "/Users", "UniqueID"])?);
    let last = host.runner.run("last", &[])?;
    Ok(AccountActivity {
        accounts: users
            .into_iter()
            .filter(|(name, uid)| *uid >= 501 && !name.starts_with('_'))
            .map(|(name, _)| AccountLogin {
                last_login_at: last_login_in(&last, &name, host.now),
                name,
                enabled: None,
            })
            .collect(),
        source: "last".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Platform;
    use crate::checks::testutil::{FakeRunner, at, error_of, host, payload, recorded};

    #[test]
    fn lastlog_binary_records() {
        let (size, _) = LASTLOG_LAYOUT;
        let mut bytes = vec![0u8; size * 1001];
        let t = at("2026-11-20T08:00:00Z").timestamp();
        match LASTLOG_LAYOUT.1 {
            4 => bytes[size * 1000..size * 1000 + 4].copy_from_slice(&(t as i32).to_le_bytes()),
            _ => bytes[size * 1000..size * 1000 + 8].copy_from_slice(&t.to_le_bytes()),
        }
        assert_eq!(
            lastlog_record(&bytes, 1000, LASTLOG_LAYOUT),
            Some(at("2026-11-20T08:00:00Z"))
        );
        assert_eq!(lastlog_record(&bytes, 0, LASTLOG_LAYOUT), None, "zero time: never");
        assert_eq!(
            lastlog_record(&bytes, 5000, LASTLOG_LAYOUT),
            None,
            "past the end: never"
        );
    }

    #[test]
    fn lastlog_command_output() {
        let t = parse_lastlog(&recorded("lastlog/rhel-sos.txt"));
        assert_eq!(t[0], ("root".to_string(), Some(at("2019-02-15T15:40:56Z"))));
        assert_eq!(t[1], ("bin".to_string(), None));
        let t = parse_lastlog(&recorded("lastlog/centos.txt"));
        assert_eq!(
            t.iter().find(|(n, _)| n == "nick").unwrap().1,
            Some(at("2018-05-06T08:06:39Z"))
        );
    }

    #[test]
    fn linux_fixture_host() {
        let h = host("access-hardened", FakeRunner::default(), "2026-11-24T10:00:00Z");
        let a: AccountActivity = payload(&collect(&h, Platform::Linux), "host");
        assert_eq!(a.source, "/var/log/lastlog");
        let names: Vec<&str> = a.accounts.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["root", "alice", "msp-admin", "bob"]);
        assert_eq!(a.accounts[0].enabled, Some(false), "root is locked");
        assert_eq!(a.accounts[1].enabled, Some(true));
        // The fixture's lastlog is all zeros: nobody logged in.
        assert!(a.accounts.iter().all(|l| l.last_login_at.is_none()));
        // Without /var/log/lastlog the lastlog command is asked.
        let h = host(
            "two-uid0",
            FakeRunner::default().with("lastlog", Ok(&recorded("lastlog/rhel-sos.txt"))),
            "2026-11-24T10:00:00Z",
        );
        let a: AccountActivity = payload(&collect(&h, Platform::Linux), "host");
        assert_eq!(a.source, "lastlog");
        assert_eq!(a.accounts[0].last_login_at, Some(at("2019-02-15T15:40:56Z")));
        let h = host("two-uid0", FakeRunner::default(), "2026-11-24T10:00:00Z");
        assert!(error_of(&collect(&h, Platform::Linux), "accounts.activity", "host").contains("lastlog"));
    }

    #[test]
    fn windows_get_local_user() {
        let out = recorded("get-localuser/select-name-enabled-lastlogon.json");
        let users = parse_local_users(&out).unwrap();
        assert_eq!(users.len(), 5);
        assert_eq!(users[0].name, "Administrator");
        assert_eq!(users[0].enabled, Some(true));
        assert_eq!(
            users[0].last_login_at,
            DateTime::from_timestamp_millis(1_605_771_872_777)
        );
        assert_eq!((users[1].enabled, users[1].last_login_at), (Some(false), None));
        let h = host(
            "empty",
            FakeRunner::default().with(
                &format!("powershell -NoProfile -NonInteractive -Command {GET_LOCAL_USER}"),
                Ok(&out),
            ),
            "2026-11-24T10:00:00Z",
        );
        let a: AccountActivity = payload(&collect(&h, Platform::Windows), "host");
        assert_eq!(a.accounts.len(), 5);
        assert!(parse_local_users("not json").unwrap_err().contains("not JSON"));
        let one =
            parse_local_users(r#"{"Name": "solo", "Enabled": true, "LastLogon": "2026-11-01T10:00:00Z"}"#).unwrap();
        assert_eq!(one[0].last_login_at, Some(at("2026-11-01T10:00:00Z")));
    }

    #[test]
    fn macos_last_without_years() {
        let now = at("2026-01-10T12:00:00Z");
        let last = "alice     console                   Mon Jan  5 08:10   still logged in\n\
                    bob       ttys000                   Sat Dec 20 17:02 - 18:00  (00:58)\n";
        assert_eq!(last_login_in(last, "alice", now), Some(at("2026-01-05T08:10:00Z")));
        assert_eq!(
            last_login_in(last, "bob", now),
            Some(at("2025-12-20T17:02:00Z")),
            "last year's"
        );
        assert_eq!(last_login_in(last, "carol", now), None);
        let h = host(
            "empty",
            FakeRunner::default()
                .with(
                    "dscl . -list /Users UniqueID",
                    Ok("_amavisd 83\nalice 501\nbob 502\nroot 0\n"),
                )
                .with("last", Ok(last)),
            "2026-01-10T12:00:00Z",
        );
        let a: AccountActivity = payload(&collect(&h, Platform::MacOs), "host");
        let names: Vec<&str> = a.accounts.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["alice", "bob"]);
    }
}
