//! Table-driven tests of every rule of the built-in pack: pass, fail, error, not applicable
//! where the rule can be, and both sides of every threshold. Each case is
//! `(name, observations, parameter overrides, expected status)`.

use chrono::Duration;
use rounds_policies::{Os, Role, Status};
use rounds_protocol::Observation;
use serde_json::{Value, json};

use crate::support::*;

use Status::{Error, Fail, NotApplicable as NA, Pass};

pub(crate) type Case = (&'static str, Vec<Observation>, &'static str, Status);

#[track_caller]
pub(crate) fn run(rule: &str, cases: Vec<Case>) {
    for (name, observations, params, expect) in cases {
        let f = finding_with(
            rule,
            &observations,
            &if params.is_empty() {
                String::new()
            } else {
                format!("[params.\"{rule}\"]\n{params}\n")
            },
            &ctx(Os::Linux, Some(Role::Server)),
        );
        assert_eq!(
            f.status, expect,
            "{rule} / {name}: expected {expect}, got {}: {}\nevidence: {}",
            f.status, f.message, f.evidence
        );
        match expect {
            Fail => {
                assert!(
                    f.evidence["failing"].as_array().is_some_and(|a| !a.is_empty()),
                    "{rule} / {name}: no failing subjects"
                );
                assert!(
                    f.remediation.is_some(),
                    "{rule} / {name}: a failure carries remediation"
                );
            }
            Pass => assert!(f.message.starts_with("ok: "), "{rule} / {name}: {}", f.message),
            Error => assert!(
                f.message.starts_with("could not check: "),
                "{rule} / {name}: {}",
                f.message
            ),
            NA => assert!(f.remediation.is_none()),
        }
    }
}

fn volume() -> Value {
    json!({"device": "/dev/mapper/root", "mount_point": "/", "volume_type": "fixed", "encrypted": true,
           "method": "luks", "state": "on", "device_chain": ["/dev/mapper/root", "/dev/sda2"]})
}
fn swap() -> Value {
    json!({"devices": ["/dev/mapper/swap"], "unencrypted": [], "encrypted": true})
}

#[test]
fn encryption_at_rest() {
    let vol = |patch| ok("encryption.volume", "/", with(&volume(), patch));
    let sw = |patch| ok("encryption.swap", "swap", with(&swap(), patch));
    run(
        "hipaa.encryption.at_rest",
        vec![
            ("all encrypted", vec![vol(json!({})), sw(json!({}))], "", Pass),
            (
                "volume not encrypted",
                vec![
                    vol(json!({"encrypted": false, "method": "none", "state": "off"})),
                    sw(json!({})),
                ],
                "",
                Fail,
            ),
            (
                "swap not encrypted",
                vec![
                    vol(json!({})),
                    sw(json!({"encrypted": false, "unencrypted": ["/swapfile"]})),
                ],
                "",
                Fail,
            ),
            (
                "removable volumes are not judged",
                vec![
                    vol(json!({})),
                    ok(
                        "encryption.volume",
                        "/media/usb",
                        with(
                            &volume(),
                            json!({"mount_point": "/media/usb", "volume_type": "removable", "encrypted": false}),
                        ),
                    ),
                    sw(json!({})),
                ],
                "",
                Pass,
            ),
            (
                "check could not run",
                vec![
                    err("encryption.volume", "host", "cryptsetup: permission denied"),
                    sw(json!({})),
                ],
                "",
                Error,
            ),
            ("no swap observation", vec![vol(json!({}))], "", Error),
            (
                "failure wins over error",
                vec![
                    vol(json!({"encrypted": false})),
                    err("encryption.swap", "swap", "no /proc/swaps"),
                ],
                "",
                Fail,
            ),
            ("only removable media and no swap kind", vec![], "", Error),
        ],
    );
    // Several subjects: the evidence lists exactly the failing ones.
    let f = check(
        "hipaa.encryption.at_rest",
        &[
            ok("encryption.volume", "/", volume()),
            ok(
                "encryption.volume",
                "/data",
                with(&volume(), json!({"mount_point": "/data", "encrypted": false})),
            ),
            ok("encryption.swap", "swap", swap()),
        ],
        "",
        Fail,
    );
    assert_eq!(f.evidence["failing"], json!(["/data"]));
    assert!(
        f.message.contains("/data") && f.message.contains("encrypted: false"),
        "{}",
        f.message
    );
    assert!(!f.message.contains("/ ("), "{}", f.message);
}

fn probe() -> Value {
    json!({"probe": "https", "target": "https://ehr.example/fhir/metadata", "up": true, "latency_ms": 180.0,
           "http_status": 200, "tls_version": "TLSv1.3", "certificate_expires_at": ahead(Duration::days(41)),
           "certificate_valid": true, "failure": null, "reason": null, "attempts": 1,
           "address": "192.0.2.10:443", "tls_cipher": "TLS13_AES_256_GCM_SHA384", "chain_verified": true,
           "hostname_match": true, "leaf_expires_in_days": 41, "chain_expires_in_days": 41, "roots": "system"})
}

#[test]
fn transmission_tls_version() {
    let p = |patch| ok("ehr.probe", "ehr", with(&probe(), patch));
    run(
        "hipaa.transmission.tls_version",
        vec![
            ("tls 1.3", vec![p(json!({}))], "", Pass),
            ("tls 1.2", vec![p(json!({"tls_version": "TLSv1.2"}))], "", Pass),
            ("tls 1.1", vec![p(json!({"tls_version": "TLSv1.1"}))], "", Fail),
            (
                "tls 1.2 when only 1.3 is allowed",
                vec![p(json!({"tls_version": "TLSv1.2"}))],
                r#"allowed_versions = ["TLSv1.3"]"#,
                Fail,
            ),
            (
                "older than 1.2 (handshake refused by the agent)",
                vec![p(
                    json!({"tls_version": "older than TLSv1.2", "up": false, "reason": "tls_handshake"}),
                )],
                "",
                Fail,
            ),
            (
                "handshake not reached (down at tcp)",
                vec![p(json!({"tls_version": null, "up": false, "reason": "tcp_refused"}))],
                "",
                NA,
            ),
            (
                "probe could not run",
                vec![err("ehr.probe", "ehr", "dns: no such host")],
                "",
                Error,
            ),
            ("no EHR endpoint configured", vec![], "", NA),
            (
                "only tcp probes",
                vec![p(json!({"probe": "tcp", "tls_version": null}))],
                "",
                NA,
            ),
        ],
    );
}

#[test]
fn transmission_certificate() {
    let p = |patch| ok("ehr.probe", "ehr", with(&probe(), patch));
    run(
        "hipaa.transmission.certificate",
        vec![
            ("41 days left", vec![p(json!({}))], "", Pass),
            (
                "exactly 30 days left",
                vec![p(json!({"chain_expires_in_days": 30}))],
                "",
                Pass,
            ),
            (
                "29 days left",
                vec![p(json!({"chain_expires_in_days": 29, "leaf_expires_in_days": 80}))],
                "",
                Fail,
            ),
            (
                "expired",
                vec![p(
                    json!({"chain_verified": false, "reason": "cert_expired", "chain_expires_in_days": -1}),
                )],
                "",
                Fail,
            ),
            (
                "untrusted chain",
                vec![p(json!({"chain_verified": false, "reason": "cert_untrusted"}))],
                "",
                Fail,
            ),
            (
                "wrong host name",
                vec![p(json!({"hostname_match": false, "reason": "cert_hostname"}))],
                "",
                Fail,
            ),
            (
                "41 days left with a 60 day margin",
                vec![p(json!({}))],
                "min_days_left = 60",
                Fail,
            ),
            (
                "expiry unknown",
                vec![p(json!({"chain_expires_in_days": null}))],
                "",
                Error,
            ),
            (
                "handshake not reached",
                vec![p(json!({"chain_verified": null, "hostname_match": null, "up": false}))],
                "",
                NA,
            ),
            (
                "probe could not run",
                vec![err("ehr.probe", "ehr", "connect timeout")],
                "",
                Error,
            ),
            (
                "an observation from before chain checks",
                vec![ok(
                    "ehr.probe",
                    "ehr",
                    json!({"probe": "https", "target": "https://ehr.example/", "up": true, "tls_version": "TLSv1.3"}),
                )],
                "",
                NA,
            ),
            ("no EHR endpoint configured", vec![], "", NA),
        ],
    );
    let f = finding_with(
        "hipaa.transmission.certificate",
        &[p(json!({"chain_expires_in_days": 12}))],
        "",
        &ctx(Os::Linux, Some(Role::Server)),
    );
    assert!(
        f.message.contains("chain_expires_in_days: 12"),
        "the days left are named: {}",
        f.message
    );
}

fn service() -> Value {
    json!({"service": "auditd", "installed": true, "running": true, "enabled": true, "persistent": true,
           "rules_configured": 12, "rules_loaded": null, "immutable_configured": false, "immutable": null,
           "max_log_file_action": "keep_logs", "space_left_action": "email", "admin_space_left_action": "single",
           "disk_full_action": "suspend", "kernel_audit": false, "storage": null, "seal": null,
           "sealing_keys": null, "verify_passed": null, "verify_failures": []})
}

#[test]
fn audit_logging_enabled() {
    let s = |name: &str, patch| ok("audit.service", name, with(&service(), patch));
    run(
        "hipaa.audit.logging_enabled",
        vec![
            ("auditd on", vec![s("auditd", json!({}))], "", Pass),
            ("auditd stopped", vec![s("auditd", json!({"running": false}))], "", Fail),
            (
                "auditd rotates old logs away",
                vec![s("auditd", json!({"max_log_file_action": "rotate"}))],
                "",
                Fail,
            ),
            (
                "auditd rotating allowed",
                vec![s("auditd", json!({"max_log_file_action": "rotate"}))],
                "require_keep_logs = false",
                Pass,
            ),
            (
                "auditd ignores a full disk",
                vec![s("auditd", json!({"disk_full_action": "ignore"}))],
                "",
                Fail,
            ),
            (
                "auditd without rules",
                vec![s("auditd", json!({"rules_configured": 0}))],
                "",
                Fail,
            ),
            (
                "immutable asked, rules mutable",
                vec![s("auditd", json!({"immutable_configured": false}))],
                "require_immutable = true",
                Fail,
            ),
            (
                "immutable asked and set",
                vec![s("auditd", json!({"immutable_configured": true, "immutable": true}))],
                "require_immutable = true",
                Pass,
            ),
            (
                "kernel audit=1 asked",
                vec![s("auditd", json!({"kernel_audit": false}))],
                "require_kernel_audit = true",
                Fail,
            ),
            (
                "journald seal asked, not set",
                vec![s("journald", json!({"service": "journald", "seal": false}))],
                "require_seal = true",
                Fail,
            ),
            (
                "journald verify failed",
                vec![s(
                    "journald",
                    json!({"service": "journald", "seal": true, "verify_passed": false,
                                           "verify_failures": ["/var/log/journal/x/system.journal"]}),
                )],
                "",
                Fail,
            ),
            (
                "not installed",
                vec![s(
                    "auditd",
                    json!({"installed": false, "running": null, "enabled": null, "persistent": null}),
                )],
                "",
                Fail,
            ),
            (
                "journald volatile",
                vec![s("journald", json!({"service": "journald", "persistent": false}))],
                "",
                Fail,
            ),
            (
                "journald volatile allowed",
                vec![s("journald", json!({"service": "journald", "persistent": false}))],
                "require_persistent = false",
                Pass,
            ),
            (
                "one good service is enough",
                vec![
                    s("auditd", json!({"installed": false})),
                    s("journald", json!({"service": "journald"})),
                ],
                "",
                Pass,
            ),
            (
                "running unknown",
                vec![s("auditd", json!({"running": null}))],
                "",
                Error,
            ),
            (
                "check could not run",
                vec![err("audit.service", "auditd", "systemctl: not found")],
                "",
                Error,
            ),
            ("no observation", vec![], "", Error),
        ],
    );
}

fn log() -> Value {
    json!({"path": "/var/log/audit/audit.log", "present": true, "append_only": true, "truncated": false,
           "rewritten": false, "world_writable": false, "last_entry_at": ago(Duration::minutes(5)),
           "longest_gap_secs": 120, "cleared": false, "change": "appended", "deleted": false,
           "replaced": false, "group_writable": false, "owner_changed": false, "mode_widened": false,
           "rotation": null, "missing_records": null, "events": []})
}

#[test]
fn audit_log_integrity() {
    let l = |patch| ok("audit.log", "/var/log/audit/audit.log", with(&log(), patch));
    run(
        "hipaa.audit.log_integrity",
        vec![
            ("intact", vec![l(json!({}))], "", Pass),
            (
                "truncated",
                vec![l(json!({"truncated": true, "append_only": false}))],
                "",
                Fail,
            ),
            ("rewritten", vec![l(json!({"rewritten": true}))], "", Fail),
            ("cleared", vec![l(json!({"cleared": true}))], "", Fail),
            ("world writable", vec![l(json!({"world_writable": true}))], "", Fail),
            (
                "deleted",
                vec![l(json!({"present": false, "deleted": true, "change": "deleted"}))],
                "",
                Fail,
            ),
            (
                "replaced without rotation",
                vec![l(json!({"replaced": true, "append_only": false}))],
                "",
                Fail,
            ),
            ("owner changed", vec![l(json!({"owner_changed": true}))], "", Fail),
            (
                "mode widened to group",
                vec![l(json!({"mode_widened": true, "group_writable": true}))],
                "",
                Fail,
            ),
            (
                "group writable allowed by default",
                vec![l(json!({"group_writable": true}))],
                "",
                Pass,
            ),
            (
                "group writable forbidden",
                vec![l(json!({"group_writable": true}))],
                "forbid_group_writable = true",
                Fail,
            ),
            (
                "rotated by rename",
                vec![l(json!({"rotation": "rename", "change": "rotated"}))],
                "",
                Pass,
            ),
            (
                "rotated away, new file not there yet",
                vec![l(json!({"present": false, "rotation": "rename", "change": "rotated"}))],
                "",
                Pass,
            ),
            (
                "first look: a baseline",
                vec![l(
                    json!({"change": "new", "append_only": null, "truncated": null, "rewritten": null}),
                )],
                "",
                Pass,
            ),
            (
                "audit records missing",
                vec![l(json!({"missing_records": 3}))],
                "",
                Fail,
            ),
            (
                "audit records missing within the allowance",
                vec![l(json!({"missing_records": 3}))],
                "max_missing_records = 5",
                Pass,
            ),
            (
                "Windows audit events dropped",
                vec![l(
                    json!({"events": [{"log": "Security", "event_id": 1101, "what": "events_dropped", "at": null}]}),
                )],
                "",
                Fail,
            ),
            (
                "Windows audit policy changed: allowed by default",
                vec![l(
                    json!({"events": [{"log": "Security", "event_id": 4719, "what": "audit_policy_changed", "at": null}]}),
                )],
                "",
                Pass,
            ),
            (
                "Windows audit policy changed: forbidden",
                vec![l(
                    json!({"events": [{"log": "Security", "event_id": 4719, "what": "audit_policy_changed", "at": null}]}),
                )],
                "fail_on_audit_policy_change = true",
                Fail,
            ),
            ("missing", vec![l(json!({"present": false}))], "", Fail),
            (
                "nothing to compare yet",
                vec![l(
                    json!({"change": null, "append_only": null, "truncated": null, "rewritten": null, "cleared": null}),
                )],
                "",
                Error,
            ),
            (
                "check could not run",
                vec![err("audit.log", "/var/log/audit/audit.log", "permission denied")],
                "",
                Error,
            ),
            ("no observation", vec![], "", Error),
        ],
    );
}

#[test]
fn audit_time_sync() {
    let t = |v: Value| ok("time_sync", "host", v);
    run(
        "hipaa.audit.time_sync",
        vec![
            (
                "synchronised",
                vec![t(json!({"synchronized": true, "service": "chrony", "offset_ms": 1.5}))],
                "",
                Pass,
            ),
            (
                "offset at the limit",
                vec![t(json!({"synchronized": true, "offset_ms": 1000.0}))],
                "",
                Pass,
            ),
            (
                "offset just over",
                vec![t(json!({"synchronized": true, "offset_ms": 1000.5}))],
                "",
                Fail,
            ),
            (
                "negative offset just over",
                vec![t(json!({"synchronized": true, "offset_ms": -1000.5}))],
                "",
                Fail,
            ),
            (
                "tighter limit",
                vec![t(json!({"synchronized": true, "offset_ms": 60.0}))],
                "max_offset_ms = 50",
                Fail,
            ),
            (
                "not synchronised",
                vec![t(json!({"synchronized": false, "service": null, "offset_ms": null}))],
                "",
                Fail,
            ),
            (
                "offset unknown",
                vec![t(
                    json!({"synchronized": true, "service": "w32time", "offset_ms": null}),
                )],
                "",
                Pass,
            ),
            (
                "check could not run",
                vec![err("time_sync", "host", "timedatectl failed")],
                "",
                Error,
            ),
            ("no observation", vec![], "", Error),
        ],
    );
}

fn screen() -> Value {
    json!({"enabled": true, "idle_timeout_secs": 600, "enforced": true, "shell_timeout_secs": null,
           "source": "gnome-dconf", "graphical": true})
}

#[test]
fn access_automatic_logoff() {
    let s = |patch| ok("screen_lock", "host", with(&screen(), patch));
    run(
        "hipaa.access.automatic_logoff",
        vec![
            ("10 minutes", vec![s(json!({}))], "", Pass),
            (
                "exactly 15 minutes",
                vec![s(json!({"idle_timeout_secs": 900}))],
                "",
                Pass,
            ),
            (
                "15 minutes and a second",
                vec![s(json!({"idle_timeout_secs": 901}))],
                "",
                Fail,
            ),
            (
                "10 minutes with a 5 minute limit",
                vec![s(json!({}))],
                r#"max_idle = "5m""#,
                Fail,
            ),
            ("lock disabled", vec![s(json!({"enabled": false}))], "", Fail),
            (
                "timeout unknown",
                vec![s(json!({"idle_timeout_secs": null}))],
                "",
                Error,
            ),
            (
                "headless with TMOUT",
                vec![s(
                    json!({"graphical": false, "enabled": false, "idle_timeout_secs": null, "shell_timeout_secs": 900}),
                )],
                "",
                Pass,
            ),
            (
                "headless with a long TMOUT",
                vec![s(
                    json!({"graphical": false, "enabled": false, "shell_timeout_secs": 3600}),
                )],
                "",
                Fail,
            ),
            (
                "headless without TMOUT",
                vec![s(
                    json!({"graphical": false, "enabled": false, "shell_timeout_secs": null}),
                )],
                "",
                Fail,
            ),
            (
                "check could not run",
                vec![err("screen_lock", "host", "dconf: no session bus")],
                "",
                Error,
            ),
            ("no observation", vec![], "", Error),
        ],
    );
}

fn accounts() -> Value {
    json!({"uid0_accounts": ["root"], "duplicate_uids": [], "duplicate_names": [], "empty_password_accounts": [],
           "auto_login": false, "guest_enabled": false, "interactive_accounts": 3})
}

#[test]
fn access_unique_user_ids() {
    let a = |patch| ok("accounts", "host", with(&accounts(), patch));
    run(
        "hipaa.access.unique_user_ids",
        vec![
            ("clean", vec![a(json!({}))], "", Pass),
            (
                "shadow unreadable",
                vec![a(
                    json!({"empty_password_accounts": null, "auto_login": null, "guest_enabled": null}),
                )],
                "",
                Pass,
            ),
            (
                "second uid 0",
                vec![a(json!({"uid0_accounts": ["root", "toor"]}))],
                "",
                Fail,
            ),
            (
                "second uid 0 allowed",
                vec![a(json!({"uid0_accounts": ["root", "toor"]}))],
                r#"allowed_superusers = ["root", "toor"]"#,
                Pass,
            ),
            (
                "windows built-in administrator enabled",
                vec![a(json!({"uid0_accounts": ["Administrator"]}))],
                "",
                Fail,
            ),
            ("duplicate uid", vec![a(json!({"duplicate_uids": [1000]}))], "", Fail),
            (
                "duplicate name",
                vec![a(json!({"duplicate_names": ["frontdesk"]}))],
                "",
                Fail,
            ),
            (
                "empty password",
                vec![a(json!({"empty_password_accounts": ["frontdesk"]}))],
                "",
                Fail,
            ),
            ("auto login", vec![a(json!({"auto_login": true}))], "", Fail),
            ("guest", vec![a(json!({"guest_enabled": true}))], "", Fail),
            (
                "check could not run",
                vec![err("accounts", "host", "getent failed")],
                "",
                Error,
            ),
            ("no observation", vec![], "", Error),
        ],
    );
}

#[test]
fn access_password_policy() {
    let p = |min: Value| {
        ok(
            "password_policy",
            "host",
            json!({"min_length": min, "max_age_days": null, "lockout_threshold": 5,
            "complexity_required": null, "source": "pwquality"}),
        )
    };
    run(
        "hipaa.access.password_policy",
        vec![
            ("14", vec![p(json!(14))], "", Pass),
            ("exactly 12", vec![p(json!(12))], "", Pass),
            ("11", vec![p(json!(11))], "", Fail),
            ("12 with a 15 minimum", vec![p(json!(12))], "min_length = 15", Fail),
            ("8 with an 8 minimum", vec![p(json!(8))], "min_length = 8", Pass),
            ("unknown", vec![p(Value::Null)], "", Error),
            (
                "check could not run",
                vec![err("password_policy", "host", "no /etc/security/pwquality.conf")],
                "",
                Error,
            ),
            ("no observation", vec![], "", Error),
        ],
    );
}

#[test]
fn access_login_monitoring() {
    let l = |recorded: bool, lockout: Value| {
        ok(
            "login_monitoring",
            "host",
            json!({"failed_logins_recorded": recorded, "lockout_configured": lockout, "source": "auth.log"}),
        )
    };
    run(
        "hipaa.access.login_monitoring",
        vec![
            ("recorded", vec![l(true, json!(false))], "", Pass),
            ("not recorded", vec![l(false, json!(true))], "", Fail),
            (
                "lockout required and on",
                vec![l(true, json!(true))],
                "require_lockout = true",
                Pass,
            ),
            (
                "lockout required and off",
                vec![l(true, json!(false))],
                "require_lockout = true",
                Fail,
            ),
            (
                "lockout required and unknown",
                vec![l(true, Value::Null)],
                "require_lockout = true",
                Error,
            ),
            (
                "check could not run",
                vec![err("login_monitoring", "host", "auditd rules unreadable")],
                "",
                Error,
            ),
            ("no observation", vec![], "", Error),
        ],
    );
}

fn av() -> Value {
    json!({"product": "clamav", "installed": true, "running": true, "real_time_protection": true,
           "signatures_updated_at": ago(Duration::hours(5)), "signatures_age_hours": 5.0})
}

#[test]
fn malware_protection() {
    let m = |subject: &str, patch| ok("malware", subject, with(&av(), patch));
    run(
        "hipaa.malware.protection",
        vec![
            ("running and current", vec![m("clamav", json!({}))], "", Pass),
            (
                "signatures exactly 72 hours old",
                vec![m("clamav", json!({"signatures_age_hours": 72.0}))],
                "",
                Pass,
            ),
            (
                "signatures 73 hours old",
                vec![m("clamav", json!({"signatures_age_hours": 73.0}))],
                "",
                Fail,
            ),
            (
                "signatures 5 hours old with a 4 hour limit",
                vec![m("clamav", json!({}))],
                r#"max_signature_age = "4h""#,
                Fail,
            ),
            (
                "age from the update time only",
                vec![m(
                    "clamav",
                    json!({"signatures_age_hours": null, "signatures_updated_at": ago(Duration::hours(80))}),
                )],
                "",
                Fail,
            ),
            (
                "age from the update time, recent",
                vec![m("clamav", json!({"signatures_age_hours": null}))],
                "",
                Pass,
            ),
            (
                "not installed",
                vec![m("clamav", json!({"installed": false, "running": null}))],
                "",
                Fail,
            ),
            (
                "no real-time protection",
                vec![m("clamav", json!({"real_time_protection": false}))],
                "",
                Fail,
            ),
            (
                "no real-time protection allowed",
                vec![m("clamav", json!({"real_time_protection": false}))],
                "require_real_time = false",
                Pass,
            ),
            (
                "defender off but another product on",
                vec![
                    m("defender", json!({"product": "defender", "running": false})),
                    m("sentinelone", json!({"product": "sentinelone"})),
                ],
                "",
                Pass,
            ),
            (
                "signature age unknown",
                vec![m(
                    "clamav",
                    json!({"signatures_age_hours": null, "signatures_updated_at": null}),
                )],
                "",
                Error,
            ),
            (
                "check could not run",
                vec![err("malware", "host", "clamdscan: not found")],
                "",
                Error,
            ),
            ("no observation", vec![], "", Error),
        ],
    );
}

fn updates() -> Value {
    json!({"manager": "apt", "pending_count": 3, "pending_security_count": 1, "oldest_pending_security_days": 4,
           "auto_security_updates": true, "reboot_required": false, "last_run": ago(Duration::hours(3))})
}

#[test]
fn encryption_removable_media() {
    let usb = |patch| {
        ok(
            "encryption.volume",
            "/media/usb",
            with(
                &volume(),
                with(
                    &json!({"mount_point": "/media/usb", "device": "/dev/sdb1", "volume_type": "removable"}),
                    patch,
                ),
            ),
        )
    };
    let fixed_plain = ok(
        "encryption.volume",
        "/",
        with(&volume(), json!({"encrypted": false, "method": "none"})),
    );
    run(
        "hipaa.encryption.removable_media",
        vec![
            (
                "encrypted stick",
                vec![ok("encryption.volume", "/", volume()), usb(json!({}))],
                "",
                Pass,
            ),
            (
                "plain stick",
                vec![usb(json!({"encrypted": false, "method": "none", "state": "off"}))],
                "",
                Fail,
            ),
            ("no removable medium mounted", vec![fixed_plain.clone()], "", NA),
            (
                "a plain fixed volume is not this rule's business",
                vec![fixed_plain, usb(json!({}))],
                "",
                Pass,
            ),
            (
                "check could not run",
                vec![err("encryption.volume", "host", "permission denied")],
                "",
                Error,
            ),
            ("no observation", vec![], "", Error),
        ],
    );
}

#[test]
fn updates_security_patches() {
    let u = |patch| ok("updates", "host", with(&updates(), patch));
    run(
        "hipaa.updates.security_patches",
        vec![
            ("4 days pending", vec![u(json!({}))], "", Pass),
            (
                "exactly 30 days",
                vec![u(json!({"oldest_pending_security_days": 30}))],
                "",
                Pass,
            ),
            (
                "31 days",
                vec![u(json!({"oldest_pending_security_days": 31}))],
                "",
                Fail,
            ),
            (
                "16 days with 15",
                vec![u(json!({"oldest_pending_security_days": 16}))],
                r#"max_pending_age = "15d""#,
                Fail,
            ),
            (
                "15 days with 15",
                vec![u(json!({"oldest_pending_security_days": 15}))],
                r#"max_pending_age = "15d""#,
                Pass,
            ),
            (
                "nothing pending",
                vec![u(
                    json!({"pending_security_count": 0, "oldest_pending_security_days": null}),
                )],
                "",
                Pass,
            ),
            (
                "pending of unknown age, automatic updates ran 3 h ago",
                vec![u(json!({"oldest_pending_security_days": null}))],
                "",
                Pass,
            ),
            (
                "pending of unknown age, automatic updates last ran exactly 30 days ago",
                vec![u(
                    json!({"oldest_pending_security_days": null, "last_run": ago(Duration::days(30))}),
                )],
                "",
                Pass,
            ),
            (
                "pending of unknown age, automatic updates last ran 30 days and a minute ago",
                vec![u(json!({"oldest_pending_security_days": null,
                    "last_run": ago(Duration::days(30) + Duration::minutes(1))}))],
                "",
                Fail,
            ),
            (
                "pending of unknown age, automatic updates never ran",
                vec![u(json!({"oldest_pending_security_days": null, "last_run": null}))],
                "",
                Error,
            ),
            (
                "pending of unknown age, no automatic updates",
                vec![u(
                    json!({"oldest_pending_security_days": null, "auto_security_updates": false}),
                )],
                "",
                Error,
            ),
            (
                "count unknown, automatic updates off",
                vec![u(
                    json!({"pending_security_count": null, "oldest_pending_security_days": null,
                    "auto_security_updates": false}),
                )],
                "",
                Error,
            ),
            (
                "count unknown, automatic updates ran recently",
                vec![u(
                    json!({"pending_security_count": null, "oldest_pending_security_days": null}),
                )],
                "",
                Pass,
            ),
            (
                "check could not run",
                vec![err("updates", "host", "apt lock held")],
                "",
                Error,
            ),
            ("no observation", vec![], "", Error),
        ],
    );
}

#[test]
fn network_firewall() {
    let fw = |v: Value| ok("firewall", "host", v);
    let profile = |name: &str, enabled: bool, inbound: &str| json!({"name": name, "enabled": enabled, "default_inbound": inbound});
    run(
        "hipaa.network.firewall",
        vec![
            (
                "ufw default deny",
                vec![fw(
                    json!({"backend": "ufw", "enabled": true, "default_inbound": "deny", "profiles": []}),
                )],
                "",
                Pass,
            ),
            (
                "off",
                vec![fw(
                    json!({"backend": "ufw", "enabled": false, "default_inbound": "deny", "profiles": []}),
                )],
                "",
                Fail,
            ),
            (
                "default allow",
                vec![fw(
                    json!({"backend": "nftables", "enabled": true, "default_inbound": "allow", "profiles": []}),
                )],
                "",
                Fail,
            ),
            (
                "default allow accepted",
                vec![fw(
                    json!({"backend": "nftables", "enabled": true, "default_inbound": "allow", "profiles": []}),
                )],
                "require_default_deny = false",
                Pass,
            ),
            (
                "default unknown",
                vec![fw(
                    json!({"backend": "nftables", "enabled": true, "default_inbound": "unknown", "profiles": []}),
                )],
                "",
                Error,
            ),
            (
                "windows all profiles on",
                vec![fw(
                    json!({"backend": "windows-firewall", "enabled": true, "default_inbound": "unknown", "profiles": [profile("domain", true, "deny"), profile("private", true, "deny"), profile("public", true, "deny")]}),
                )],
                "",
                Pass,
            ),
            (
                "windows public profile off",
                vec![fw(
                    json!({"backend": "windows-firewall", "enabled": true, "default_inbound": "deny", "profiles": [profile("domain", true, "deny"), profile("public", false, "deny")]}),
                )],
                "",
                Fail,
            ),
            (
                "check could not run",
                vec![err("firewall", "host", "permission denied reading /etc/ufw/ufw.conf")],
                "",
                Error,
            ),
            ("no observation", vec![], "", Error),
        ],
    );
}

fn backup() -> Value {
    json!({"tool": "restic", "repository": "sftp:nas:/backups", "last_success_at": ago(Duration::hours(10)),
           "last_result": "success", "last_attempt_at": ago(Duration::hours(10)), "size_bytes": 1_000_000,
           "encrypted": true, "last_restore_test_at": ago(Duration::days(30))})
}

fn backup_na_on_workstation(rule: &str) {
    let f = finding_with(
        rule,
        &[ok("backup", "nas", backup())],
        "",
        &ctx(Os::Windows, Some(Role::Workstation)),
    );
    assert_eq!(f.status, NA, "{rule}: {}", f.message);
    assert!(f.message.contains("server"), "{}", f.message);
    // Unknown role: the rule still judges.
    let f = finding_with(rule, &[ok("backup", "nas", backup())], "", &ctx(Os::Windows, None));
    assert_eq!(f.status, Pass, "{rule}: {}", f.message);
}

#[test]
fn backup_recent() {
    let b = |subject: &str, patch| ok("backup", subject, with(&backup(), patch));
    run(
        "hipaa.backup.recent",
        vec![
            ("10 hours old", vec![b("nas", json!({}))], "", Pass),
            (
                "exactly 72 hours old",
                vec![b("nas", json!({"last_success_at": ago(Duration::hours(72))}))],
                "",
                Pass,
            ),
            (
                "72 hours and a minute old",
                vec![b(
                    "nas",
                    json!({"last_success_at": ago(Duration::hours(72) + Duration::minutes(1))}),
                )],
                "",
                Fail,
            ),
            (
                "30 hours old with 26h",
                vec![b("nas", json!({"last_success_at": ago(Duration::hours(30))}))],
                r#"max_age = "26h""#,
                Fail,
            ),
            (
                "25 hours old with 26h",
                vec![b("nas", json!({"last_success_at": ago(Duration::hours(25))}))],
                r#"max_age = "26h""#,
                Pass,
            ),
            (
                "never succeeded",
                vec![b("nas", json!({"last_success_at": null, "last_result": "failed"}))],
                "",
                Fail,
            ),
            (
                "one of two repositories stale",
                vec![
                    b("nas", json!({})),
                    b("b2", json!({"last_success_at": ago(Duration::days(5))})),
                ],
                "",
                Fail,
            ),
            (
                "check could not run",
                vec![err("backup", "nas", "restic: repository locked")],
                "",
                Error,
            ),
            ("no backup observed", vec![], "", Error),
        ],
    );
    backup_na_on_workstation("hipaa.backup.recent");
}

#[test]
fn backup_succeeded() {
    let b = |patch| ok("backup", "nas", with(&backup(), patch));
    run(
        "hipaa.backup.succeeded",
        vec![
            ("success", vec![b(json!({}))], "", Pass),
            ("failed", vec![b(json!({"last_result": "failed"}))], "", Fail),
            ("running", vec![b(json!({"last_result": "running"}))], "", Error),
            ("unknown", vec![b(json!({"last_result": "unknown"}))], "", Error),
            (
                "check could not run",
                vec![err("backup", "nas", "status file missing")],
                "",
                Error,
            ),
            ("no backup observed", vec![], "", Error),
        ],
    );
    backup_na_on_workstation("hipaa.backup.succeeded");
}

#[test]
fn backup_encrypted() {
    let b = |patch| ok("backup", "nas", with(&backup(), patch));
    run(
        "hipaa.backup.encrypted",
        vec![
            ("encrypted", vec![b(json!({}))], "", Pass),
            ("not encrypted", vec![b(json!({"encrypted": false}))], "", Fail),
            ("unknown", vec![b(json!({"encrypted": null}))], "", Error),
            (
                "check could not run",
                vec![err("backup", "nas", "status file missing")],
                "",
                Error,
            ),
            ("no backup observed", vec![], "", Error),
        ],
    );
    backup_na_on_workstation("hipaa.backup.encrypted");
}

#[test]
fn backup_restore_tested() {
    let b = |patch| ok("backup", "nas", with(&backup(), patch));
    run(
        "hipaa.backup.restore_tested",
        vec![
            ("30 days ago", vec![b(json!({}))], "", Pass),
            (
                "exactly 365 days ago",
                vec![b(json!({"last_restore_test_at": ago(Duration::days(365))}))],
                "",
                Pass,
            ),
            (
                "366 days ago",
                vec![b(json!({"last_restore_test_at": ago(Duration::days(366))}))],
                "",
                Fail,
            ),
            (
                "100 days ago with 90d",
                vec![b(json!({"last_restore_test_at": ago(Duration::days(100))}))],
                r#"max_age = "90d""#,
                Fail,
            ),
            ("never tested", vec![b(json!({"last_restore_test_at": null}))], "", Fail),
            (
                "check could not run",
                vec![err("backup", "nas", "status file missing")],
                "",
                Error,
            ),
            ("no backup observed", vec![], "", Error),
        ],
    );
    backup_na_on_workstation("hipaa.backup.restore_tested");
}

#[test]
fn availability_ehr_reachable() {
    let p = |patch| ok("ehr.probe", "ehr", with(&probe(), patch));
    run(
        "hipaa.availability.ehr_reachable",
        vec![
            ("up and fast", vec![p(json!({}))], "", Pass),
            ("exactly 2000 ms", vec![p(json!({"latency_ms": 2000.0}))], "", Pass),
            ("2001 ms", vec![p(json!({"latency_ms": 2001.0}))], "", Fail),
            (
                "180 ms with a 100 ms limit",
                vec![p(json!({}))],
                "max_latency_ms = 100",
                Fail,
            ),
            (
                "down",
                vec![p(
                    json!({"up": false, "latency_ms": null, "failure": "connection refused"}),
                )],
                "",
                Fail,
            ),
            (
                "tcp probe up, latency unknown",
                vec![p(json!({"probe": "tcp", "latency_ms": null}))],
                "",
                Pass,
            ),
            (
                "probe could not run",
                vec![err("ehr.probe", "ehr", "no route to host")],
                "",
                Error,
            ),
            ("no EHR endpoint configured", vec![], "", NA),
        ],
    );
}

#[test]
fn availability_disk_space() {
    let d = |mount: &str, used: f64| {
        ok(
            "disk_space",
            mount,
            json!({"mount_point": mount, "total_bytes": 100_000, "available_bytes": 100_000 - (used * 1000.0) as u64, "used_percent": used}),
        )
    };
    run(
        "hipaa.availability.disk_space",
        vec![
            ("half full", vec![d("/", 50.0)], "", Pass),
            ("exactly 90%", vec![d("/", 90.0)], "", Pass),
            ("90.1%", vec![d("/", 90.1)], "", Fail),
            (
                "85% with an 80% limit",
                vec![d("/", 85.0)],
                "max_used_percent = 80",
                Fail,
            ),
            ("one full volume of two", vec![d("/", 50.0), d("/var", 97.0)], "", Fail),
            (
                "check could not run",
                vec![err("disk_space", "/", "statvfs failed")],
                "",
                Error,
            ),
            ("no observation", vec![], "", Error),
        ],
    );
}

fn inventory() -> Value {
    json!({"hostname": "frontdesk-1", "os_family": "linux", "os_name": "Debian GNU/Linux", "os_version": "12",
           "kernel_version": "6.1", "arch": "x86_64", "role": "server", "hardware_vendor": "Dell Inc.",
           "hardware_model": "OptiPlex 7010", "serial_number": "ABC1234", "cpu_model": null, "cpu_cores": 4,
           "memory_total_bytes": 8_000_000_000u64, "uptime_secs": 1000, "boot_time": null, "disks": [],
           "interfaces": [], "listening": [], "agent_version": "0.1.0"})
}

#[test]
fn inventory_device_recorded() {
    let i = |patch| ok("inventory", "host", with(&inventory(), patch));
    let mut old = i(json!({}));
    old.observed_at = now() - Duration::days(8);
    let mut exactly = i(json!({}));
    exactly.observed_at = now() - Duration::days(7);
    run(
        "hipaa.inventory.device_recorded",
        vec![
            ("recorded", vec![i(json!({}))], "", Pass),
            ("exactly 7 days old", vec![exactly], "", Pass),
            ("8 days old", vec![old.clone()], "", Fail),
            ("8 days old with 10d", vec![old], r#"max_age = "10d""#, Pass),
            ("no host name", vec![i(json!({"hostname": ""}))], "", Fail),
            ("empty serial", vec![i(json!({"serial_number": ""}))], "", Fail),
            ("serial unknown", vec![i(json!({"serial_number": null}))], "", Error),
            (
                "serial not required",
                vec![i(json!({"serial_number": null}))],
                "require_serial = false",
                Pass,
            ),
            (
                "check could not run",
                vec![err("inventory", "host", "sysinfo failed")],
                "",
                Error,
            ),
            ("no observation", vec![], "", Error),
        ],
    );
}

/// Rules that apply to every OS and role cannot be not-applicable by applies-to; the ones that
/// do not apply everywhere are exactly these, and each is not applicable where it should be.
#[test]
fn applies_to_is_as_documented() {
    let mut narrowed = Vec::new();
    for rule in &pack().rules {
        assert_eq!(rule.applies_to.os, [Os::Linux, Os::Windows, Os::Macos], "{}", rule.id);
        if rule.applies_to.role != [Role::Server, Role::Workstation] {
            narrowed.push((rule.id.as_str(), rule.applies_to.role.clone()));
        }
    }
    assert_eq!(
        narrowed,
        [
            ("hipaa.backup.recent", vec![Role::Server]),
            ("hipaa.backup.succeeded", vec![Role::Server]),
            ("hipaa.backup.encrypted", vec![Role::Server]),
            ("hipaa.backup.restore_tested", vec![Role::Server]),
        ]
    );
}

/// The newest observation of a (kind, subject) decides; older ones are ignored.
#[test]
fn newest_observation_wins() {
    let mut old = ok(
        "time_sync",
        "host",
        json!({"synchronized": false, "service": null, "offset_ms": null}),
    );
    old.observed_at = now() - Duration::hours(5);
    let new = ok(
        "time_sync",
        "host",
        json!({"synchronized": true, "service": "chrony", "offset_ms": 1.0}),
    );
    check("hipaa.audit.time_sync", &[new.clone(), old.clone()], "", Pass);
    check("hipaa.audit.time_sync", &[old, new], "", Pass);
}

/// An observation whose payload lacks a field the condition reads (an older agent) gives an
/// error naming the problem, not a pass or a fail.
#[test]
fn payload_missing_a_field_is_an_error() {
    let f = check(
        "hipaa.availability.disk_space",
        &[ok("disk_space", "/", json!({"mount_point": "/"}))],
        "",
        Error,
    );
    assert!(f.message.contains("condition could not be evaluated"), "{}", f.message);
}
