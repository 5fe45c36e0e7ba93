//! Table-driven tests of the rules added for safeguards an agent can observe (issue 18):
//! multi-factor authentication, USB mass storage, administrator separation, dormant accounts,
//! log forwarding, end-of-life operating systems and remote-access hardening. Each case is
//! `(name, observations, parameter overrides, expected status)`.

use chrono::Duration;
use rounds_policies::Status;
use serde_json::{Value, json};

use crate::rules::run;
use crate::support::*;

use Status::{Error, Fail, NotApplicable as NA, Pass};

fn host(kind: &'static str, base: Value) -> impl Fn(Value) -> rounds_protocol::Observation {
    move |patch| ok(kind, "host", with(&base, patch))
}

#[test]
fn access_mfa() {
    let o = host(
        "mfa",
        json!({"local": true, "remote": true, "methods": ["pam_u2f"], "source": "/etc/pam.d"}),
    );
    let on = "required = true";
    run(
        "hipaa.access.mfa",
        vec![
            (
                "opt-in: not required by default",
                vec![o(json!({"local": false}))],
                "",
                NA,
            ),
            ("local and remote", vec![o(json!({}))], on, Pass),
            ("no remote log-in service", vec![o(json!({"remote": null}))], on, Pass),
            (
                "remote without a second factor",
                vec![o(json!({"remote": false}))],
                on,
                Fail,
            ),
            (
                "local without a second factor",
                vec![o(json!({"local": false, "methods": []}))],
                on,
                Fail,
            ),
            ("local unknown", vec![o(json!({"local": null}))], on, Error),
            (
                "check could not run",
                vec![err("mfa", "host", "cannot read /etc/pam.d")],
                on,
                Error,
            ),
            ("no observation", vec![], on, Error),
        ],
    );
}

#[test]
fn media_usb_storage() {
    let o = host(
        "usb_storage",
        json!({"usb_present": true, "blocked": false, "controlled": false, "mechanisms": []}),
    );
    run(
        "hipaa.media.usb_storage",
        vec![
            (
                "module blocked",
                vec![o(json!({"blocked": true, "mechanisms": ["modprobe-install-false"]}))],
                "",
                Pass,
            ),
            (
                "usbguard",
                vec![o(json!({"controlled": true, "mechanisms": ["usbguard"]}))],
                "",
                Pass,
            ),
            ("neither", vec![o(json!({}))], "", Fail),
            ("unknown", vec![o(json!({"controlled": null}))], "", Error),
            (
                "no USB controller (a VM)",
                vec![o(json!({"usb_present": false}))],
                "",
                NA,
            ),
            (
                "check could not run",
                vec![err("usb_storage", "host", "reg failed")],
                "",
                Error,
            ),
            ("no observation", vec![], "", Error),
        ],
    );
}

#[test]
fn access_admin_separation() {
    let o = host(
        "accounts.admin",
        json!({"groups": ["sudo"], "admins": ["msp-admin"], "interactive_admins": ["msp-admin"]}),
    );
    run(
        "hipaa.access.admin_separation",
        vec![
            (
                "only a listed administration account",
                vec![o(json!({}))],
                r#"allowed_admins = ["msp-admin"]"#,
                Pass,
            ),
            ("an unlisted one", vec![o(json!({}))], "", Fail),
            (
                "a daily-use account is an administrator",
                vec![o(
                    json!({"admins": ["msp-admin", "alice"], "interactive_admins": ["msp-admin", "alice"]}),
                )],
                r#"allowed_admins = ["msp-admin"]"#,
                Fail,
            ),
            (
                "admins without a login shell",
                vec![o(json!({"admins": ["deploy"], "interactive_admins": []}))],
                "",
                Pass,
            ),
            ("unknown", vec![o(json!({"interactive_admins": null}))], "", Error),
            (
                "nobody in the groups",
                vec![o(json!({"admins": [], "interactive_admins": []}))],
                "",
                NA,
            ),
            (
                "check could not run",
                vec![err("accounts.admin", "host", "no /etc/group")],
                "",
                Error,
            ),
            ("no observation", vec![], "", Error),
        ],
    );
}

#[test]
fn access_dormant_accounts() {
    let login = |name: &str, enabled: Value, at: Value| json!({"name": name, "enabled": enabled, "last_login_at": at});
    let o = |accounts: Vec<Value>| {
        ok(
            "accounts.activity",
            "host",
            json!({"accounts": accounts, "source": "lastlog"}),
        )
    };
    run(
        "hipaa.access.dormant_accounts",
        vec![
            (
                "recent",
                vec![o(vec![login("alice", json!(true), ago(Duration::days(3)))])],
                "",
                Pass,
            ),
            (
                "exactly 90 days",
                vec![o(vec![login("alice", json!(true), ago(Duration::days(90)))])],
                "",
                Pass,
            ),
            (
                "91 days",
                vec![o(vec![login("bob", json!(true), ago(Duration::days(91)))])],
                "",
                Fail,
            ),
            (
                "91 days with a 120-day limit",
                vec![o(vec![login("bob", json!(true), ago(Duration::days(91)))])],
                r#"max_inactive = "120d""#,
                Pass,
            ),
            (
                "never logged in",
                vec![o(vec![login("new", json!(true), Value::Null)])],
                "",
                Fail,
            ),
            (
                "dormant but disabled",
                vec![o(vec![login("gone", json!(false), ago(Duration::days(400)))])],
                "",
                Pass,
            ),
            (
                "enabled unknown counts as enabled",
                vec![o(vec![login("carol", Value::Null, ago(Duration::days(200)))])],
                "",
                Fail,
            ),
            ("no interactive account", vec![o(vec![])], "", NA),
            (
                "check could not run",
                vec![err("accounts.activity", "host", "lastlog not found")],
                "",
                Error,
            ),
            ("no observation", vec![], "", Error),
        ],
    );
}

#[test]
fn audit_logs_forwarded() {
    let o = host(
        "log_forwarding",
        json!({"forwarded": true, "mechanisms": ["rsyslog"], "destinations": ["logs.example:514"]}),
    );
    run(
        "hipaa.audit.logs_forwarded",
        vec![
            ("rsyslog forwards", vec![o(json!({}))], "", Pass),
            (
                "nothing forwards",
                vec![o(json!({"forwarded": false, "mechanisms": [], "destinations": []}))],
                "",
                Fail,
            ),
            ("unknown", vec![o(json!({"forwarded": null}))], "", Error),
            (
                "check could not run",
                vec![err("log_forwarding", "host", "tasklist failed")],
                "",
                Error,
            ),
            ("no observation", vec![], "", Error),
        ],
    );
}

#[test]
fn updates_os_supported() {
    // The tests' clock is 2026-11-24.
    let o = |os: &str, version: &str| {
        ok(
            "os_release",
            "host",
            json!({"os_id": os, "version": version, "name": format!("{os} {version}")}),
        )
    };
    run(
        "hipaa.updates.os_supported",
        vec![
            ("Debian 12", vec![o("debian", "12")], "", Pass),
            ("Debian 11: LTS ended 2026-08-31", vec![o("debian", "11")], "", Fail),
            ("Windows 10 22H2", vec![o("windows", "10 22H2")], "", Fail),
            (
                "Windows 11 24H2: until 2026-10-13",
                vec![o("windows", "11 24H2")],
                "",
                Fail,
            ),
            ("Windows 11 25H2", vec![o("windows", "11 25H2")], "", Pass),
            ("Windows Server 2019", vec![o("windows_server", "2019")], "", Pass),
            ("macOS 15: no end announced", vec![o("macos", "15")], "", Pass),
            ("macOS 12", vec![o("macos", "12")], "", Fail),
            ("a release the table does not list", vec![o("arch", "rolling")], "", NA),
            (
                "check could not run",
                vec![err("os_release", "host", "no /etc/os-release")],
                "",
                Error,
            ),
            ("no observation", vec![], "", Error),
        ],
    );
}

#[test]
fn access_remote_access_hardened() {
    let o = host(
        "remote_access",
        json!({"rdp_enabled": false, "rdp_nla_required": null, "smb_signing_required": null,
               "ssh_enabled": true, "ssh_root_password_login": false}),
    );
    run(
        "hipaa.access.remote_access_hardened",
        vec![
            ("ssh without root passwords", vec![o(json!({}))], "", Pass),
            (
                "ssh root password log-in",
                vec![o(json!({"ssh_root_password_login": true}))],
                "",
                Fail,
            ),
            (
                "RDP with NLA, SMB signed",
                vec![o(
                    json!({"rdp_enabled": true, "rdp_nla_required": true, "smb_signing_required": true,
                              "ssh_enabled": false, "ssh_root_password_login": null}),
                )],
                "",
                Pass,
            ),
            (
                "RDP without NLA",
                vec![o(json!({"rdp_enabled": true, "rdp_nla_required": false}))],
                "",
                Fail,
            ),
            (
                "SMB signing not required",
                vec![o(json!({"smb_signing_required": false}))],
                "",
                Fail,
            ),
            ("RDP on, NLA unknown", vec![o(json!({"rdp_enabled": true}))], "", Error),
            (
                "ssh state unknown",
                vec![o(json!({"ssh_enabled": null, "ssh_root_password_login": null}))],
                "",
                Error,
            ),
            (
                "no remote access service",
                vec![o(json!({"ssh_enabled": false, "ssh_root_password_login": null}))],
                "",
                NA,
            ),
            (
                "check could not run",
                vec![err("remote_access", "host", "reg failed")],
                "",
                Error,
            ),
            ("no observation", vec![], "", Error),
        ],
    );
}
