//! Fidelity of the HIPAA pack to the regulation (issue 18): designations and partial marks in
//! the catalogue and on findings, citations checked against the pack's list of real section
//! ids, a reference (or a reason) on every 2025 proposed-rule entry, and the 2025 profile.

use chrono::Duration;
use rounds_policies::{LoadErrors, Os, Pack, ParamValue, Policy, Requirement, Role, Status, evaluate};
use serde_json::json;

use crate::support::*;

/// Every citation appears in the catalogue's summary table and in its rule's table with its
/// designation and whether it is partial; the four standards with implementation
/// specifications are `standard`.
#[test]
fn catalogue_shows_every_designation_and_partial_mark() {
    let md = rounds_policies::catalogue::markdown(pack());
    for rule in &pack().rules {
        for c in &rule.citations {
            let short = if c.partial {
                format!("{} ({}, partial)", c.reference, c.requirement)
            } else {
                format!("{} ({})", c.reference, c.requirement)
            };
            assert!(md.contains(&short), "{}: summary lacks {short}", rule.id);
            let row = format!(
                "| {} | {} | {} |",
                c.reference,
                c.requirement,
                if c.partial { "partial" } else { "full" }
            );
            assert!(md.contains(&row), "{}: rule table lacks {row}", rule.id);
        }
    }
    let designation = |rule: &str, reference: &str| {
        let r = pack().rule(rule).unwrap();
        let c = r.citations.iter().find(|c| c.reference == reference).unwrap();
        (c.requirement, c.partial)
    };
    assert_eq!(
        designation("hipaa.audit.log_integrity", "164.312(c)(1)"),
        (Requirement::Standard, true)
    );
    assert_eq!(
        designation("hipaa.availability.ehr_reachable", "164.308(a)(7)(i)"),
        (Requirement::Standard, true)
    );
    assert_eq!(
        designation("hipaa.encryption.removable_media", "164.310(d)(1)"),
        (Requirement::Standard, false)
    );
    assert_eq!(
        designation("hipaa.transmission.certificate", "164.312(e)(1)"),
        (Requirement::Standard, false)
    );
    assert!(md.contains("`standard` for a standard that has implementation specifications"));
}

/// The corrections of issue 18, one per rule.
#[test]
fn citation_corrections() {
    let refs = |rule: &str| pack().rule(rule).unwrap().citation_refs();
    let log = pack().rule("hipaa.audit.log_integrity").unwrap();
    assert_eq!(log.citations[0].reference, "164.312(b)", "(b) is the primary citation");
    assert_eq!(
        refs("hipaa.availability.ehr_reachable"),
        ["164.308(a)(7)(i)", "164.306(a)(1)"]
    );
    assert_eq!(refs("hipaa.availability.disk_space"), ["164.308(a)(1)(ii)(B)"]);
    assert_eq!(
        refs("hipaa.network.firewall"),
        ["164.308(a)(1)(ii)(B)", "164.312(a)(1)"]
    );
    assert!(refs("hipaa.access.unique_user_ids").contains(&"164.312(d)".to_string()));
    assert!(refs("hipaa.backup.restore_tested").contains(&"164.308(a)(7)(ii)(B)".to_string()));
    let partial = |rule: &str, reference: &str| {
        pack()
            .rule(rule)
            .unwrap()
            .citations
            .iter()
            .any(|c| c.reference == reference && c.partial)
    };
    assert!(partial("hipaa.backup.recent", "164.310(d)(2)(iv)"));
    assert!(partial("hipaa.encryption.at_rest", "164.310(c)"));
    for rule in &pack().rules {
        assert!(
            !rule.citations.iter().any(|c| c.rationale.contains("Partial fit")),
            "{}: a partial fit is a mark, not a remark",
            rule.id
        );
    }
}

/// Findings carry the partial citations, so reports can say so.
#[test]
fn findings_carry_partial_citations() {
    let f = check(
        "hipaa.network.firewall",
        &[ok(
            "firewall",
            "host",
            json!({"backend": "ufw", "enabled": true, "default_inbound": "deny", "profiles": []}),
        )],
        "",
        Status::Pass,
    );
    assert_eq!(f.partial_citations, ["164.308(a)(1)(ii)(B)", "164.312(a)(1)"]);
    let json = serde_json::to_value(&f).unwrap();
    assert_eq!(json["partial_citations"][1], "164.312(a)(1)");
    let full = check(
        "hipaa.access.automatic_logoff",
        &[ok(
            "screen_lock",
            "host",
            json!({"enabled": true, "idle_timeout_secs": 300, "enforced": true, "shell_timeout_secs": null,
                   "source": "gnome", "graphical": true}),
        )],
        "",
        Status::Pass,
    );
    assert!(full.partial_citations.is_empty());
    assert!(serde_json::to_value(&full).unwrap().get("partial_citations").is_none());
}

/// The built-in pack keeps its list of real section ids with its source, and every citation
/// is in it with the same designation (loading enforces this; the test states it).
#[test]
fn every_citation_is_a_real_section_with_its_designation() {
    let sections = pack()
        .sections
        .as_ref()
        .expect("the built-in pack has a [sections] list");
    assert!(sections.source.contains("Appendix A"), "{}", sections.source);
    assert!(sections.proposed_2025_source.contains("90 FR 898"));
    for rule in &pack().rules {
        for c in &rule.citations {
            assert_eq!(
                sections.current.get(&c.reference),
                Some(&c.requirement),
                "{} cites {}",
                rule.id,
                c.reference
            );
        }
    }
}

const MANIFEST: &str = r#"[pack]
name = "test"
title = "Test pack"
version = "1"
description = "for tests"

[sections]
source = "test list"
proposed_2025_source = "test notice"
proposed_2025 = ["164.312(i)(2)(i)"]

[sections.current]
"164.308(a)(7)(ii)(A)" = "required"
"164.308(a)(7)" = "standard"
"#;

const RULE: &str = r#"[[rule]]
id = "test.backup.recent"
title = "Backups are recent"
description = "The last successful backup is recent."
severity = "high"
kinds = ["backup"]
condition = 'data.last_success_at != null'
evidence = ["last_success_at"]
applies_to = { os = ["linux"], role = ["server"] }

[[rule.citations]]
ref = "164.308(a)(7)(ii)(A)"
requirement = "required"
rationale = "A recent copy is a maintained copy."

[[rule.proposed_2025]]
ref = "164.312(i)(2)(i)"
note = "48 hours."

[rule.remediation]
linux = "Run the backup."
"#;

#[track_caller]
fn load_error(from: &str, to: &str) -> String {
    assert!(RULE.contains(from), "test bug: {from:?}");
    match Pack::from_sources(
        ("t/pack.toml", MANIFEST),
        &[("t/rules/b.toml", &RULE.replacen(from, to, 1))],
    ) {
        Ok(_) => panic!("loaded with {to:?}"),
        Err(LoadErrors(errors)) => {
            assert_eq!(errors.len(), 1, "{errors:#?}");
            errors[0].to_string()
        }
    }
}

#[test]
fn a_citation_outside_the_section_list_fails_to_load() {
    assert!(Pack::from_sources(("t/pack.toml", MANIFEST), &[("t/rules/b.toml", RULE)]).is_ok());
    let e = load_error(r#"ref = "164.308(a)(7)(ii)(A)""#, r#"ref = "164.308(a)(7)(ii)(F)""#);
    assert!(e.starts_with("t/rules/b.toml:12: rule `test.backup.recent`: "), "{e}");
    assert!(
        e.contains("`164.308(a)(7)(ii)(F)` is not a section of the Security Rule"),
        "{e}"
    );
    assert!(e.contains("test list"), "names the list's source: {e}");
    let e = load_error(
        "ref = \"164.308(a)(7)(ii)(A)\"\nrequirement = \"required\"",
        "ref = \"164.308(a)(7)\"\nrequirement = \"required\"",
    );
    assert!(
        e.contains("marked `required`, but the Security Rule designates it `standard`"),
        "{e}"
    );
    let e = load_error(r#"ref = "164.312(i)(2)(i)""#, r#"ref = "164.312(i)(2)(ix)""#);
    assert!(e.contains("is not a section of the proposed rule"), "{e}");
    assert!(e.contains("test notice"), "{e}");
}

/// Every `proposed_2025` entry of the built-in pack has a reference from the list, or says why
/// none applies; loading refuses an entry with neither.
#[test]
fn every_proposed_entry_has_a_ref_or_a_reason() {
    let sections = pack().sections.as_ref().unwrap();
    let mut with_ref = 0;
    for rule in &pack().rules {
        assert!(!rule.proposed_2025.is_empty(), "{} has no proposed_2025 entry", rule.id);
        for p in &rule.proposed_2025 {
            match (&p.reference, &p.no_ref_reason) {
                (Some(r), None) => {
                    assert!(sections.proposed_2025.contains(r), "{}: {r}", rule.id);
                    with_ref += 1;
                }
                (None, Some(why)) => assert!(why.len() > 20, "{}: {why}", rule.id),
                other => panic!("{}: {other:?}", rule.id),
            }
        }
    }
    assert!(with_ref >= 30, "{with_ref}");
    let e = load_error(
        "[[rule.proposed_2025]]\nref = \"164.312(i)(2)(i)\"\n",
        "[[rule.proposed_2025]]\n",
    );
    assert!(e.contains("needs a `ref` or a `no_ref_reason`"), "{e}");
    let e = load_error(
        "note = \"48 hours.\"",
        "note = \"48 hours.\"\nno_ref_reason = \"because\"",
    );
    assert!(e.contains("takes no `no_ref_reason`"), "{e}");
}

fn policy(profile: Option<&str>) -> Policy {
    Policy::new(pack(), profile, &[]).unwrap()
}

/// The profile follows the proposal: monthly test restores (31 days), MFA required, and patches
/// by severity: critical (and unknown severity) 15 days, high 30.
#[test]
fn proposed_profile_restores_monthly_and_patches_by_severity() {
    let proposed = policy(Some("hipaa-2025-proposed"));
    let param = |rule: &str, name: &str| proposed.rule(rule).unwrap().params[name].clone();
    assert_eq!(
        param("hipaa.backup.restore_tested", "max_age"),
        ParamValue::Duration(Duration::days(31))
    );
    assert_eq!(param("hipaa.access.mfa", "required"), ParamValue::Boolean(true));
    let profile = pack().profile("hipaa-2025-proposed").unwrap();
    assert!(
        profile.description.contains("treated as critical"),
        "{}",
        profile.description
    );

    let updates = |patch: serde_json::Value| {
        let mut v = json!({"manager": "windows-update", "pending_count": 2, "pending_security_count": 2,
            "oldest_pending_security_days": 25, "auto_security_updates": true, "reboot_required": false,
            "last_run": null});
        for (k, x) in patch.as_object().unwrap() {
            v[k] = x.clone();
        }
        vec![ok("updates", "host", v)]
    };
    let status = |p: &Policy, obs: &[rounds_protocol::Observation]| {
        evaluate(obs, p, &ctx(Os::Windows, Some(Role::Workstation)))
            .into_iter()
            .find(|f| f.rule == "hipaa.updates.security_patches")
            .unwrap()
            .status
    };
    let base = policy(None);
    let cases = [
        // (case, observation patch, current pack, proposed profile)
        (
            "unknown severity, 25 days: critical",
            json!({}),
            Status::Pass,
            Status::Fail,
        ),
        (
            "unknown severity, 14 days",
            json!({"oldest_pending_security_days": 14}),
            Status::Pass,
            Status::Pass,
        ),
        (
            "high only, 25 days",
            json!({"severity_known": true, "oldest_pending_critical_days": null, "oldest_pending_high_days": 25}),
            Status::Pass,
            Status::Pass,
        ),
        (
            "high 31 days",
            json!({"severity_known": true, "oldest_pending_high_days": 31}),
            Status::Fail,
            Status::Fail,
        ),
        (
            "critical 16 days",
            json!({"severity_known": true, "oldest_pending_critical_days": 16, "oldest_pending_high_days": null}),
            Status::Pass,
            Status::Fail,
        ),
        (
            "critical 15 days, high 30",
            json!({"severity_known": true, "oldest_pending_critical_days": 15, "oldest_pending_high_days": 30}),
            Status::Pass,
            Status::Pass,
        ),
        (
            "known severity, only moderate ones pending (left to the practice's policy)",
            json!({"severity_known": true, "oldest_pending_critical_days": null, "oldest_pending_high_days": null,
                   "oldest_pending_security_days": 60}),
            Status::Pass,
            Status::Pass,
        ),
    ];
    for (name, patch, today, proposal) in cases {
        assert_eq!(status(&base, &updates(patch.clone())), today, "current pack: {name}");
        assert_eq!(status(&proposed, &updates(patch)), proposal, "proposed profile: {name}");
    }
}

/// The end-of-life table is in the pack with its source and date, and shown in the catalogue.
#[test]
fn end_of_life_table_has_its_source_and_date() {
    let eol = pack()
        .end_of_life
        .as_ref()
        .expect("the built-in pack has an end-of-life table");
    assert!(eol.source.contains("lifecycle"), "{}", eol.source);
    assert_eq!(eol.checked, "2026-12-01");
    let md = rounds_policies::catalogue::markdown(pack());
    assert!(md.contains("## End-of-life table"));
    assert!(md.contains("| windows | 10 22H2 | 2025-10-14 |"));
    assert!(md.contains("| macos | 15 | none announced |"));
}
