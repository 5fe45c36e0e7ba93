//! The JSON shape `rounds-agent check --format json` prints, and a full-pack run over one
//! realistic machine.

use chrono::Duration;
use rounds_policies::{CheckReport, Os, Policy, Role, Status, evaluate};
use serde_json::json;

use crate::support::*;

/// One Linux server's observations, every kind present, everything healthy.
pub fn healthy_server() -> Vec<rounds_protocol::Observation> {
    vec![
        ok(
            "inventory",
            "host",
            json!({"hostname": "srv-1", "os_family": "linux", "os_name": "Debian", "os_version": "12",
            "kernel_version": "6.1", "arch": "x86_64", "role": "server", "hardware_vendor": "Dell", "hardware_model": "R250",
            "serial_number": "SN1", "cpu_model": null, "cpu_cores": 4, "memory_total_bytes": 1, "uptime_secs": 1,
            "boot_time": null, "disks": [], "interfaces": [], "listening": [], "agent_version": "0.1.0"}),
        ),
        ok(
            "encryption.volume",
            "/",
            json!({"device": "/dev/mapper/root", "mount_point": "/", "volume_type": "fixed",
            "encrypted": true, "method": "luks", "state": "on", "device_chain": []}),
        ),
        ok(
            "encryption.volume",
            "/srv",
            json!({"device": "/dev/mapper/srv", "mount_point": "/srv", "volume_type": "fixed",
            "encrypted": true, "method": "luks", "state": "on", "device_chain": []}),
        ),
        ok(
            "encryption.volume",
            "/media/backup-disk",
            json!({"device": "/dev/mapper/usb", "mount_point": "/media/backup-disk", "volume_type": "removable",
            "encrypted": true, "method": "luks", "state": "on", "device_chain": []}),
        ),
        ok(
            "encryption.swap",
            "swap",
            json!({"devices": [], "unencrypted": [], "encrypted": true}),
        ),
        ok(
            "firewall",
            "host",
            json!({"backend": "ufw", "enabled": true, "default_inbound": "deny", "profiles": []}),
        ),
        ok(
            "updates",
            "host",
            json!({"manager": "apt", "pending_count": 0, "pending_security_count": 0,
            "oldest_pending_security_days": null, "auto_security_updates": true, "reboot_required": false, "last_run": null}),
        ),
        ok(
            "screen_lock",
            "host",
            json!({"enabled": false, "idle_timeout_secs": null, "enforced": null,
            "shell_timeout_secs": 600, "source": "profile.d", "graphical": false}),
        ),
        ok(
            "malware",
            "clamav",
            json!({"product": "clamav", "installed": true, "running": true, "real_time_protection": true,
            "signatures_updated_at": null, "signatures_age_hours": 3.0}),
        ),
        ok(
            "time_sync",
            "host",
            json!({"synchronized": true, "service": "chrony", "offset_ms": 0.4}),
        ),
        ok(
            "password_policy",
            "host",
            json!({"min_length": 14, "max_age_days": null, "lockout_threshold": 5,
            "complexity_required": null, "source": "pwquality"}),
        ),
        ok(
            "accounts",
            "host",
            json!({"uid0_accounts": ["root"], "duplicate_uids": [], "duplicate_names": [],
            "empty_password_accounts": [], "auto_login": false, "guest_enabled": false, "interactive_accounts": 2}),
        ),
        ok(
            "login_monitoring",
            "host",
            json!({"failed_logins_recorded": true, "lockout_configured": true, "source": "faillock"}),
        ),
        ok(
            "disk_space",
            "/",
            json!({"mount_point": "/", "total_bytes": 100, "available_bytes": 40, "used_percent": 60.0}),
        ),
        ok(
            "disk_space",
            "/srv",
            json!({"mount_point": "/srv", "total_bytes": 100, "available_bytes": 40, "used_percent": 60.0}),
        ),
        ok(
            "backup",
            "nas",
            json!({"tool": "restic", "repository": "sftp:nas:/r", "last_success_at": ago(Duration::hours(5)),
            "last_result": "success", "last_attempt_at": ago(Duration::hours(5)), "size_bytes": 10, "encrypted": true,
            "last_restore_test_at": ago(Duration::days(20))}),
        ),
        ok(
            "ehr.probe",
            "ehr-fhir",
            json!({"probe": "fhir", "target": "https://ehr.example/fhir/metadata", "up": true,
            "latency_ms": 180.0, "http_status": 200, "tls_version": "TLSv1.3",
            "certificate_expires_at": ahead(Duration::days(41)), "certificate_valid": true, "failure": null,
            "chain_verified": true, "hostname_match": true, "leaf_expires_in_days": 41, "chain_expires_in_days": 41}),
        ),
        ok(
            "audit.log",
            "/var/log/audit/audit.log",
            // Every field the agent sends, defaults (null) where this test does not care.
            with(
                &serde_json::to_value(rounds_protocol::obs::AuditLog::default()).unwrap(),
                json!({"path": "/var/log/audit/audit.log", "present": true, "change": "appended",
                "append_only": true, "truncated": false, "rewritten": false, "world_writable": false,
                "cleared": false}),
            ),
        ),
        ok(
            "audit.service",
            "auditd",
            with(
                &serde_json::to_value(rounds_protocol::obs::AuditService::default()).unwrap(),
                json!({"service": "auditd", "installed": true, "running": true, "enabled": true,
                "persistent": true, "rules_configured": 12, "max_log_file_action": "keep_logs"}),
            ),
        ),
        ok(
            "mfa",
            "host",
            json!({"local": true, "remote": true, "methods": ["pam_u2f"], "source": "/etc/pam.d"}),
        ),
        ok(
            "usb_storage",
            "host",
            json!({"usb_present": true, "blocked": true, "controlled": false, "mechanisms": ["modprobe-install-false"]}),
        ),
        ok(
            "accounts.admin",
            "host",
            json!({"groups": ["sudo"], "admins": ["deploy"], "interactive_admins": []}),
        ),
        ok(
            "accounts.activity",
            "host",
            json!({"accounts": [{"name": "alice", "enabled": true, "last_login_at": ago(Duration::days(2))}],
            "source": "lastlog"}),
        ),
        ok(
            "log_forwarding",
            "host",
            json!({"forwarded": true, "mechanisms": ["rsyslog"], "destinations": ["logs.example:6514"]}),
        ),
        ok(
            "os_release",
            "host",
            json!({"os_id": "debian", "version": "12", "name": "Debian GNU/Linux 12 (bookworm)"}),
        ),
        ok(
            "remote_access",
            "host",
            json!({"rdp_enabled": false, "rdp_nla_required": null, "smb_signing_required": null,
            "ssh_enabled": true, "ssh_root_password_login": false}),
        ),
    ]
}

#[test]
fn healthy_server_passes_every_rule() {
    let policy = Policy::builtin().unwrap();
    let findings = evaluate(&healthy_server(), &policy, &ctx(Os::Linux, Some(Role::Server)));
    assert_eq!(findings.len(), 28);
    for f in &findings {
        // Multi-factor authentication is opt-in in the current pack: not applicable by default.
        let expect = if f.rule == "hipaa.access.mfa" {
            Status::NotApplicable
        } else {
            Status::Pass
        };
        assert_eq!(f.status, expect, "{}: {}", f.rule, f.message);
        assert!(f.remediation.is_none());
    }
}

#[test]
fn findings_json_has_the_documented_shape() {
    let policy = Policy::builtin().unwrap();
    let mut observations = healthy_server();
    observations.retain(|o| o.kind != "backup");
    observations.push(ok(
        "backup",
        "nas",
        json!({"tool": "restic", "repository": "sftp:nas:/r",
        "last_success_at": ago(Duration::hours(80)), "last_result": "success", "last_attempt_at": null,
        "size_bytes": null, "encrypted": true, "last_restore_test_at": ago(Duration::days(20))}),
    ));
    let findings = evaluate(&observations, &policy, &ctx(Os::Linux, Some(Role::Server)));
    let report = CheckReport { findings, observations };
    let json = serde_json::to_value(&report).unwrap();
    let recent = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "hipaa.backup.recent")
        .unwrap();
    assert_eq!(recent["status"], "fail");
    assert_eq!(recent["severity"], "high");
    assert_eq!(
        recent["citations"],
        json!(["164.308(a)(7)(ii)(A)", "164.310(d)(2)(iv)"])
    );
    assert_eq!(recent["evidence"]["failing"], json!(["nas"]));
    assert_eq!(recent["evidence"]["params"], json!({"max_age": "72h"}));
    assert_eq!(
        recent["evidence"]["observations"][0]["values"]["last_success_at"],
        ago(Duration::hours(80))
    );
    assert_eq!(recent["evidence"]["observations"][0]["result"], "fail");
    assert!(
        recent["message"]
            .as_str()
            .unwrap()
            .starts_with("fails on nas (last_result: success, last_success_at: ")
    );
    assert!(recent["remediation"].as_str().unwrap().contains("restic"));
    assert!(recent.get("exception").is_none());
    assert_eq!(
        json["observations"].as_array().unwrap().len(),
        report.observations.len()
    );
    // Round trip: the collector can read back what the agent printed.
    let back: CheckReport = serde_json::from_value(json).unwrap();
    assert_eq!(back, report);
}

#[test]
fn not_applicable_status_is_snake_case() {
    assert_eq!(serde_json::to_value(Status::NotApplicable).unwrap(), "not_applicable");
}

#[test]
fn evaluation_is_deterministic() {
    let policy = Policy::builtin().unwrap();
    let a = evaluate(&healthy_server(), &policy, &ctx(Os::Linux, Some(Role::Server)));
    let mut reversed = healthy_server();
    reversed.reverse();
    let b = evaluate(&reversed, &policy, &ctx(Os::Linux, Some(Role::Server)));
    let strip = |f: &Vec<rounds_policies::Finding>| f.iter().map(|f| (f.rule.clone(), f.status)).collect::<Vec<_>>();
    assert_eq!(strip(&a), strip(&b));
}

#[test]
fn policy_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Policy>();
    assert_send_sync::<rounds_policies::Pack>();
}
