//! Times evaluating the full built-in pack over one machine's observations (one of every kind,
//! several subjects for volumes, disks, backups and EHR probes). Run with
//! `cargo bench -p rounds-policies --bench evaluate`; the goal is well under 1 ms per evaluation.

use std::hint::black_box;
use std::time::Instant;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use rounds_policies::{EvalContext, Os, Policy, Role, evaluate};
use rounds_protocol::{Observation, ObservationStatus};
use serde_json::{Value, json};

fn observations(now: DateTime<Utc>) -> Vec<Observation> {
    let ts = |d: Duration| Value::String((now - d).to_rfc3339_opts(SecondsFormat::Secs, true));
    let ok = |kind: &str, subject: &str, data: Value| Observation {
        kind: kind.into(),
        subject: subject.into(),
        observed_at: now - Duration::minutes(5),
        status: ObservationStatus::Ok,
        data,
        error: None,
    };
    let mut v = vec![
        ok(
            "inventory",
            "host",
            json!({"hostname": "srv-1", "os_family": "linux", "os_name": "Debian", "os_version": "12",
            "kernel_version": "6.1", "arch": "x86_64", "role": "server", "hardware_vendor": "Dell", "hardware_model": "R250",
            "serial_number": "SN1", "cpu_model": "Xeon", "cpu_cores": 4, "memory_total_bytes": 17_179_869_184u64,
            "uptime_secs": 86_400, "boot_time": ts(Duration::days(1)),
            "disks": [{"device": "/dev/mapper/root", "mount_point": "/", "file_system": "ext4", "total_bytes": 1, "available_bytes": 1, "removable": false}],
            "interfaces": [{"name": "eth0", "mac": "00:11:22:33:44:55", "addresses": ["192.0.2.10/24"]}],
            "listening": [{"protocol": "tcp", "address": "0.0.0.0", "port": 22, "process": "sshd"}], "agent_version": "0.1.0"}),
        ),
        ok(
            "encryption.swap",
            "swap",
            json!({"devices": ["/dev/mapper/swap"], "unencrypted": [], "encrypted": true}),
        ),
        ok(
            "firewall",
            "host",
            json!({"backend": "ufw", "enabled": true, "default_inbound": "deny", "profiles": []}),
        ),
        ok(
            "updates",
            "host",
            json!({"manager": "apt", "pending_count": 4, "pending_security_count": 2,
            "oldest_pending_security_days": 3, "auto_security_updates": true, "reboot_required": false, "last_run": ts(Duration::hours(2))}),
        ),
        ok(
            "screen_lock",
            "host",
            json!({"enabled": false, "idle_timeout_secs": null, "enforced": null, "shell_timeout_secs": 600, "source": "profile.d", "graphical": false}),
        ),
        ok(
            "malware",
            "clamav",
            json!({"product": "clamav", "installed": true, "running": true, "real_time_protection": true, "signatures_updated_at": ts(Duration::hours(3)), "signatures_age_hours": null}),
        ),
        ok(
            "time_sync",
            "host",
            json!({"synchronized": true, "service": "chrony", "offset_ms": 0.4}),
        ),
        ok(
            "password_policy",
            "host",
            json!({"min_length": 14, "max_age_days": null, "lockout_threshold": 5, "complexity_required": null, "source": "pwquality"}),
        ),
        ok(
            "accounts",
            "host",
            json!({"uid0_accounts": ["root"], "duplicate_uids": [], "duplicate_names": [], "empty_password_accounts": [], "auto_login": false, "guest_enabled": false, "interactive_accounts": 4}),
        ),
        ok(
            "login_monitoring",
            "host",
            json!({"failed_logins_recorded": true, "lockout_configured": true, "source": "faillock"}),
        ),
        ok(
            "audit.service",
            "auditd",
            json!({"service": "auditd", "installed": true, "running": true, "enabled": true, "persistent": true}),
        ),
        ok(
            "audit.service",
            "journald",
            json!({"service": "journald", "installed": true, "running": true, "enabled": true, "persistent": false}),
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
            json!({"accounts": [{"name": "alice", "enabled": true, "last_login_at": ts(Duration::days(2))}, {"name": "bob", "enabled": true, "last_login_at": ts(Duration::days(40))}], "source": "lastlog"}),
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
            json!({"rdp_enabled": false, "rdp_nla_required": null, "smb_signing_required": null, "ssh_enabled": true, "ssh_root_password_login": false}),
        ),
    ];
    for m in ["/", "/srv", "/var", "/home"] {
        v.push(ok("encryption.volume", m, json!({"device": format!("/dev/mapper{m}"), "mount_point": m, "volume_type": "fixed", "encrypted": true, "method": "luks", "state": "on", "device_chain": []})));
        v.push(ok(
            "disk_space",
            m,
            json!({"mount_point": m, "total_bytes": 100, "available_bytes": 40, "used_percent": 60.0}),
        ));
    }
    for b in ["nas", "b2"] {
        v.push(ok("backup", b, json!({"tool": "restic", "repository": b, "last_success_at": ts(Duration::hours(5)), "last_result": "success", "last_attempt_at": ts(Duration::hours(5)), "size_bytes": 10, "encrypted": true, "last_restore_test_at": ts(Duration::days(20))})));
    }
    for (name, probe) in [("ehr-fhir", "fhir"), ("ehr-web", "https"), ("ehr-db", "tcp")] {
        v.push(ok("ehr.probe", name, json!({"probe": probe, "target": "https://ehr.example/fhir/metadata", "up": true, "latency_ms": 180.0, "http_status": 200, "tls_version": "TLSv1.3", "certificate_expires_at": ts(-Duration::days(41)), "certificate_valid": true, "failure": null})));
    }
    for log in ["/var/log/audit/audit.log", "/var/log/auth.log"] {
        v.push(ok("audit.log", log, json!({"path": log, "present": true, "append_only": true, "truncated": false, "rewritten": false, "world_writable": false, "last_entry_at": ts(Duration::minutes(1)), "longest_gap_secs": 300, "cleared": false})));
    }
    v
}

fn main() {
    let policy = match Policy::builtin() {
        Ok(p) => p,
        Err(e) => panic!("built-in pack does not load: {e}"),
    };
    let now = Utc::now();
    let obs = observations(now);
    let ctx = EvalContext {
        now,
        os: Os::Linux,
        role: Some(Role::Server),
    };
    let findings = evaluate(&obs, &policy, &ctx);
    let statuses: Vec<String> = findings.iter().map(|f| format!("{}={}", f.rule, f.status)).collect();
    assert_eq!(findings.len(), policy.rules.len());
    // Warm up, then time batches and report the median and the worst batch.
    for _ in 0..200 {
        black_box(evaluate(black_box(&obs), &policy, &ctx));
    }
    let batches = 30;
    let per_batch = 200;
    let mut per_eval_us = Vec::with_capacity(batches);
    for _ in 0..batches {
        let start = Instant::now();
        for _ in 0..per_batch {
            black_box(evaluate(black_box(&obs), &policy, &ctx));
        }
        per_eval_us.push(start.elapsed().as_secs_f64() * 1e6 / per_batch as f64);
    }
    per_eval_us.sort_by(f64::total_cmp);
    let median = per_eval_us[batches / 2];
    let worst = per_eval_us[batches - 1];
    let best = per_eval_us[0];
    println!(
        "evaluate: {} rules over {} observations: median {median:.1} µs, best {best:.1} µs, worst batch {worst:.1} µs per evaluation ({batches} batches of {per_batch})",
        policy.rules.len(),
        obs.len()
    );
    println!("statuses: {}", statuses.join(" "));
    assert!(median < 1000.0, "evaluation takes {median:.1} µs, over the 1 ms budget");
}
