//! Tests of the audit check on fixture trees and recorded outputs: auditd configurations
//! (Debian's shipped defaults vs hardened: immutable, keep_logs), record serial and time gaps in
//! recorded audit.log files, and the four Windows events from `wevtutil` output.

use rounds_protocol::obs::{AuditLog, AuditService};

use super::*;
use crate::checks::testutil::{FakeRunner, host, payload, recorded};

fn run(tree: &str) -> Vec<Observation> {
    AuditCheck::new(Vec::new()).collect(
        &host(tree, FakeRunner::default(), "2025-12-01T12:00:00Z"),
        Platform::Linux,
    )
}

#[test]
fn debian_defaults_rotate_and_are_not_immutable() {
    let obs = run("auditd-debian-default");
    let s: AuditService = payload(&obs, "auditd");
    assert!(s.installed);
    assert_eq!(
        (s.running, s.enabled, s.persistent),
        (Some(true), Some(true), Some(true))
    );
    assert_eq!(s.max_log_file_action.as_deref(), Some("rotate"));
    assert_eq!(s.space_left_action.as_deref(), Some("syslog"));
    assert_eq!(s.disk_full_action.as_deref(), Some("suspend"));
    assert_eq!((s.rules_configured, s.immutable_configured), (Some(0), Some(false)));
    assert_eq!(s.kernel_audit, Some(false));
    // Not live: auditctl is not asked.
    assert_eq!((s.rules_loaded, s.immutable), (None, None));
}

#[test]
fn hardened_auditd_keeps_logs_and_is_immutable() {
    let obs = run("auditd-hardened");
    let s: AuditService = payload(&obs, "auditd");
    assert_eq!(s.max_log_file_action.as_deref(), Some("keep_logs"));
    assert_eq!(s.space_left_action.as_deref(), Some("email"));
    assert_eq!(s.disk_full_action.as_deref(), Some("halt"));
    assert_eq!((s.rules_configured, s.immutable_configured), (Some(34), Some(true)));
    assert_eq!(s.kernel_audit, Some(true));
}

#[test]
fn auditctl_is_asked_on_a_live_host() {
    let runner = FakeRunner::default()
        .with(
            "auditctl -l",
            Ok("-w /etc/passwd -p wa -k identity\n-a always,exit -F arch=b64 -S adjtimex -k time\n"),
        )
        .with(
            "auditctl -s",
            Ok("enabled 2\nfailure 1\npid 612\nrate_limit 0\nbacklog_limit 8192\nlost 0\nbacklog 0\n"),
        );
    let mut h = host("auditd-hardened", runner, "2025-12-01T12:00:00Z");
    h.live = true;
    let s = auditd_service(&h).unwrap();
    assert_eq!((s.rules_loaded, s.immutable), (Some(2), Some(true)));
}

#[test]
fn serial_and_time_gaps_within_one_boot_are_counted() {
    // Git keeps no file modes but the executable bit: give the fixture auditd's own mode.
    let log = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/auditd-debian-default/var/log/audit/audit.log");
    std::fs::set_permissions(&log, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let obs = run("auditd-debian-default");
    let log: AuditLog = payload(&obs, "/var/log/audit/audit.log");
    assert_eq!((log.serial_gaps, log.missing_records), (Some(1), Some(3)), "{log:#?}");
    assert_eq!(log.time_backwards, Some(1));
    assert_eq!(log.change.as_deref(), Some("new"));
    assert_eq!(log.mode.as_deref(), Some("0600"));
    assert!(log.last_entry_at.is_some());
}

#[test]
fn a_reboot_is_not_a_gap() {
    let obs = run("auditd-hardened");
    let log: AuditLog = payload(&obs, "/var/log/audit/audit.log");
    assert_eq!(
        (log.serial_gaps, log.missing_records, log.time_backwards),
        (Some(0), Some(0), Some(0)),
        "{log:#?}"
    );
}

#[test]
fn journald_is_reported_beside_auditd() {
    let obs = run("auditd-hardened");
    let j: AuditService = payload(&obs, "journald");
    assert!(!j.installed, "the tree has no journald: {j:?}");
}

fn windows_runner(security: &str) -> FakeRunner {
    let q = |log: &str, x: &str| format!("wevtutil qe {log} /q:{x} /c:50 /rd:true /f:xml");
    FakeRunner::default()
        .with(&q("Security", windows::QUERIES[0].1), Ok(security))
        .with(
            &q("System", windows::QUERIES[1].1),
            Ok(&recorded("wevtutil/system-104.xml")),
        )
        .with("sc query EventLog", Ok(&recorded("sc/query-eventlog.txt")))
        .with("sc qc EventLog", Ok(&recorded("sc/qc-eventlog.txt")))
}

#[test]
fn the_four_windows_events_are_read_from_wevtutil() {
    let security = recorded("wevtutil/security-1102-1101-4719.xml");
    let events = windows::parse_wevtutil_xml(&security).unwrap();
    let ids: Vec<(u32, &str, Option<u64>)> = events
        .iter()
        .map(|e| (e.event_id, e.what.as_str(), e.record_id))
        .collect();
    assert_eq!(
        ids,
        [
            (4719, "audit_policy_changed", Some(48213)),
            (1102, "log_cleared", Some(48211)),
            (1101, "events_dropped", Some(47002))
        ]
    );
    assert_eq!(events[1].account.as_deref(), Some("itadmin"));
    assert_eq!(events[0].account.as_deref(), Some("itadmin"));
    assert_eq!(
        events[1].at.map(|t| t.to_rfc3339()),
        Some("2026-11-30T16:44:51.091820400+00:00".to_string())
    );

    let h = host("empty", windows_runner(&security), "2026-11-30T18:00:00Z");
    let check = AuditCheck::new(Vec::new());
    let obs = check.collect(&h, Platform::Windows);
    let sec: AuditLog = payload(&obs, "eventlog:Security");
    assert_eq!(sec.cleared, Some(true));
    // 1101 is older than a day and there is no record of a last look: not new.
    assert_eq!(sec.events.iter().map(|e| e.event_id).collect::<Vec<_>>(), [4719, 1102]);
    let sys: AuditLog = payload(&obs, "eventlog:System");
    assert_eq!(
        (sys.cleared, sys.events.len(), sys.events[0].event_id),
        (Some(true), 1, 104)
    );
    let svc: AuditService = payload(&obs, "eventlog");
    assert_eq!((svc.running, svc.enabled), (Some(true), Some(true)));

    // The next look remembers the newest record id: nothing is new any more.
    let obs = check.collect(&h, Platform::Windows);
    let sec: AuditLog = payload(&obs, "eventlog:Security");
    assert_eq!((sec.cleared, sec.events.len()), (Some(false), 0));
}

#[test]
fn dropped_events_count_when_recent() {
    let security = recorded("wevtutil/security-1102-1101-4719.xml");
    let h = host("empty", windows_runner(&security), "2026-11-29T04:00:00Z");
    let obs = AuditCheck::new(Vec::new()).collect(&h, Platform::Windows);
    let sec: AuditLog = payload(&obs, "eventlog:Security");
    assert!(sec.events.iter().any(|e| e.what == "events_dropped"), "{sec:#?}");
}

#[test]
fn an_empty_event_log_answer_is_no_event_and_garbage_is_an_error() {
    assert_eq!(windows::parse_wevtutil_xml(&recorded("wevtutil/none.xml")), Ok(vec![]));
    let err = windows::parse_wevtutil_xml("Failed to read events. Access is denied.").unwrap_err();
    assert!(err.contains("Access is denied"), "{err}");
}

#[test]
fn the_unified_log_is_persistent_when_its_store_holds_files() {
    let s = unified_log_service(&host("empty", FakeRunner::default(), "2026-11-30T18:00:00Z"));
    assert!(!s.installed);
}

#[test]
fn journalctl_verify_runs_where_sealing_is_set_up_and_at_most_hourly() {
    let root = tempfile::tempdir().unwrap();
    let put = |p: &str, text: &str| {
        let path = root.path().join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    put("etc/systemd/journald.conf", "[Journal]\nStorage=persistent\nSeal=yes\n");
    put("var/log/journal/0123abcd/fss", "");
    put("proc/1/comm", "systemd\n");
    put("proc/300/comm", "systemd-journal\n");
    let runner = FakeRunner::default().with(
        "timeout 60 journalctl --verify",
        Err("PASS: /var/log/journal/0123abcd/system.journal\nFAIL: /var/log/journal/0123abcd/user-1000.journal (Bad message)"),
    );
    let mut h = host("empty", runner, "2026-11-30T18:00:00Z");
    h.root = root.path().to_path_buf();
    h.live = true;
    let check = AuditCheck::new(Vec::new());
    let j: AuditService = payload(&check.collect(&h, Platform::Linux), "journald");
    assert_eq!(
        (j.storage.as_deref(), j.seal, j.sealing_keys, j.persistent),
        (Some("persistent"), Some(true), Some(true), Some(true))
    );
    assert_eq!(j.running, Some(true));
    assert_eq!(j.verify_passed, Some(false));
    assert_eq!(j.verify_failures, ["/var/log/journal/0123abcd/user-1000.journal"]);
    // Two minutes later the health is read again, but the verification result is the last one.
    let mut later = h.clone();
    later.now += chrono::Duration::minutes(2);
    later.runner = std::sync::Arc::new(FakeRunner::default());
    let j: AuditService = payload(&check.collect(&later, Platform::Linux), "journald");
    assert_eq!(j.verify_passed, Some(false));
}
