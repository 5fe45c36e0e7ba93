//! Policies: profiles, practice and site overrides, accepted risks and their expiry.

use chrono::Duration;
use rounds_policies::{Os, Overrides, ParamValue, Policy, Role, Severity, Status, evaluate};
use serde_json::json;

use crate::support::*;

fn backup_at(hours: i64) -> rounds_protocol::Observation {
    ok(
        "backup",
        "nas",
        json!({"tool": "restic", "repository": "r", "last_success_at": ago(Duration::hours(hours)),
        "last_result": "success", "last_attempt_at": null, "size_bytes": null, "encrypted": true,
        "last_restore_test_at": ago(Duration::days(10))}),
    )
}

fn status(policy: &Policy, rule: &str, obs: &[rounds_protocol::Observation]) -> rounds_policies::Finding {
    evaluate(obs, policy, &ctx(Os::Linux, Some(Role::Server)))
        .into_iter()
        .find(|f| f.rule == rule)
        .unwrap()
}

#[test]
fn proposed_2025_profile_tightens_timers() {
    let base = Policy::new(pack(), None, &[]).unwrap();
    let proposed = Policy::new(pack(), Some("hipaa-2025-proposed"), &[]).unwrap();
    assert_eq!(proposed.profile.as_deref(), Some("hipaa-2025-proposed"));
    let param = |p: &Policy, rule: &str, name: &str| p.rule(rule).unwrap().params[name].clone();
    assert_eq!(
        param(&base, "hipaa.backup.recent", "max_age"),
        ParamValue::Duration(Duration::hours(72))
    );
    assert_eq!(
        param(&proposed, "hipaa.backup.recent", "max_age"),
        ParamValue::Duration(Duration::hours(48))
    );
    assert_eq!(
        param(&base, "hipaa.updates.security_patches", "max_pending_age"),
        ParamValue::Duration(Duration::days(30))
    );
    assert_eq!(
        param(&proposed, "hipaa.updates.security_patches", "max_pending_age"),
        ParamValue::Duration(Duration::days(15))
    );
    assert_eq!(
        proposed.rule("hipaa.backup.restore_tested").unwrap().severity,
        Severity::High
    );
    assert_eq!(
        base.rule("hipaa.backup.restore_tested").unwrap().severity,
        Severity::Medium
    );

    // 60 hours: passes today's default, fails the proposed 48 hours; 47 hours passes both.
    assert_eq!(
        status(&base, "hipaa.backup.recent", &[backup_at(60)]).status,
        Status::Pass
    );
    let f = status(&proposed, "hipaa.backup.recent", &[backup_at(60)]);
    assert_eq!(f.status, Status::Fail);
    assert_eq!(f.severity, Severity::Critical);
    assert_eq!(f.evidence["params"]["max_age"], "48h");
    assert_eq!(
        status(&proposed, "hipaa.backup.recent", &[backup_at(47)]).status,
        Status::Pass
    );
}

#[test]
fn site_overrides_win_over_practice_over_profile() {
    let practice = Overrides::from_toml(
        "practice.toml",
        "[params.\"hipaa.backup.recent\"]\nmax_age = \"36h\"\n",
        pack(),
    )
    .unwrap();
    let site = Overrides::from_toml(
        "site.toml",
        "[params.\"hipaa.backup.recent\"]\nmax_age = \"30h\"\n",
        pack(),
    )
    .unwrap();
    let p = Policy::new(pack(), Some("hipaa-2025-proposed"), &[&practice]).unwrap();
    assert_eq!(
        p.rule("hipaa.backup.recent").unwrap().params["max_age"],
        ParamValue::Duration(Duration::hours(36))
    );
    let p = Policy::new(pack(), Some("hipaa-2025-proposed"), &[&practice, &site]).unwrap();
    assert_eq!(
        p.rule("hipaa.backup.recent").unwrap().params["max_age"],
        ParamValue::Duration(Duration::hours(30))
    );
    assert_eq!(status(&p, "hipaa.backup.recent", &[backup_at(31)]).status, Status::Fail);
    assert_eq!(status(&p, "hipaa.backup.recent", &[backup_at(29)]).status, Status::Pass);
}

const ACCEPT: &str = r#"
[[accept]]
rule = "hipaa.backup.encrypted"
reason = "legacy NAS replaced in January; the NAS sits in a locked room"
accepted_by = "Dr. Rivera, practice owner"
expires = 2026-12-01
"#;

fn unencrypted_backup() -> rounds_protocol::Observation {
    ok(
        "backup",
        "nas",
        json!({"tool": "folder", "repository": "/mnt/nas", "last_success_at": ago(Duration::hours(3)),
        "last_result": "success", "last_attempt_at": null, "size_bytes": null, "encrypted": false,
        "last_restore_test_at": null}),
    )
}

#[test]
fn accepted_risk_is_an_exception_never_a_pass() {
    let f = finding_with(
        "hipaa.backup.encrypted",
        &[unencrypted_backup()],
        ACCEPT,
        &ctx(Os::Linux, Some(Role::Server)),
    );
    assert_eq!(f.status, Status::Fail);
    let e = f.exception.as_ref().expect("exception attached");
    assert_eq!(e.accepted_by, "Dr. Rivera, practice owner");
    assert_eq!(e.source, "test-overrides.toml");
    let json = serde_json::to_value(&f).unwrap();
    assert_eq!(json["status"], "fail");
    assert_eq!(json["exception"]["expires"], "2026-12-01");
    // Other rules carry no exception.
    let other = finding_with(
        "hipaa.backup.recent",
        &[unencrypted_backup()],
        ACCEPT,
        &ctx(Os::Linux, Some(Role::Server)),
    );
    assert!(other.exception.is_none());
}

#[test]
fn accepted_risk_lapses_on_its_expiry_date() {
    let at = |date: &str| {
        let mut c = ctx(Os::Linux, Some(Role::Server));
        c.now = chrono::DateTime::parse_from_rfc3339(date)
            .unwrap()
            .with_timezone(&chrono::Utc);
        finding_with("hipaa.backup.encrypted", &[unencrypted_backup()], ACCEPT, &c)
    };
    let last_day = at("2026-11-30T23:59:59Z");
    assert!(last_day.exception.is_some());
    let lapsed = at("2026-12-01T00:00:00Z");
    assert!(lapsed.exception.is_none());
    assert_eq!(lapsed.status, Status::Fail);
    assert_eq!(lapsed.evidence["exception_lapsed_on"], "2026-12-01");
}

#[test]
fn site_acceptance_replaces_practice_acceptance() {
    let practice = Overrides::from_toml("practice.toml", ACCEPT, pack()).unwrap();
    let site_text = ACCEPT
        .replace("2026-12-01", "2027-06-30")
        .replace("Dr. Rivera", "Site lead");
    let site = Overrides::from_toml("site.toml", &site_text, pack()).unwrap();
    let p = Policy::new(pack(), None, &[&practice, &site]).unwrap();
    let e = p.rule("hipaa.backup.encrypted").unwrap().exception.clone().unwrap();
    assert_eq!(e.source, "site.toml");
    assert_eq!(e.expires.to_string(), "2027-06-30");
}

#[test]
fn accepting_the_same_rule_twice_in_one_file_is_an_error() {
    let err = Overrides::from_toml("practice.toml", &format!("{ACCEPT}{ACCEPT}"), pack()).unwrap_err();
    assert!(
        err.to_string()
            .contains("practice.toml:9: rule `hipaa.backup.encrypted`: risk accepted twice"),
        "{err}"
    );
}

#[test]
fn not_applicable_by_os_and_role() {
    use rounds_policies::Pack;
    let rule = r#"[[rule]]
id = "t.win.firewall"
title = "t"
description = "d"
severity = "low"
kinds = ["firewall"]
condition = 'data.enabled'
evidence = ["enabled"]
applies_to = { os = ["windows"], role = ["workstation"] }
[[rule.citations]]
ref = "164.312(e)(1)"
requirement = "required"
rationale = "r"
[rule.remediation]
windows = "turn it on"
"#;
    let manifest = "[pack]\nname = \"t\"\ntitle = \"t\"\nversion = \"1\"\ndescription = \"d\"\n";
    let pack = Pack::from_sources(("t/pack.toml", manifest), &[("t/rules/a.toml", rule)]).unwrap();
    let policy = Policy::new(&pack, None, &[]).unwrap();
    let obs = [ok(
        "firewall",
        "host",
        json!({"backend": "ufw", "enabled": false, "default_inbound": "deny", "profiles": []}),
    )];
    let run = |os, role| evaluate(&obs, &policy, &ctx(os, role)).remove(0);
    let f = run(Os::Linux, Some(Role::Workstation));
    assert_eq!(f.status, Status::NotApplicable);
    assert_eq!(f.message, "applies to windows only; this machine runs linux");
    let f = run(Os::Windows, Some(Role::Server));
    assert_eq!(f.status, Status::NotApplicable);
    assert_eq!(
        f.message,
        "applies to workstation machines only; this machine is a server"
    );
    assert_eq!(run(Os::Windows, Some(Role::Workstation)).status, Status::Fail);
    assert_eq!(run(Os::Windows, None).status, Status::Fail);
}

#[test]
fn context_from_inventory() {
    use rounds_policies::EvalContext;
    let inv = |os: &str, role: serde_json::Value| {
        ok(
            "inventory",
            "host",
            json!({"os_family": os, "role": role, "hostname": "h"}),
        )
    };
    let c = EvalContext::from_inventory(now(), &[inv("windows", json!("workstation"))]).unwrap();
    assert_eq!((c.os, c.role), (Os::Windows, Some(Role::Workstation)));
    let c = EvalContext::from_inventory(now(), &[inv("macos", serde_json::Value::Null)]).unwrap();
    assert_eq!((c.os, c.role), (Os::Macos, None));
    assert!(EvalContext::from_inventory(now(), &[inv("plan9", json!("server"))]).is_none());
    assert!(EvalContext::from_inventory(now(), &[]).is_none());
}
