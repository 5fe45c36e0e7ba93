//! The storage conformance suite: every `Store` implementation runs the same cases.
//! (quickwit's `metastore_test_suite!` pattern.) `sqlite_backend` always; `postgres_backend` when
//! `ROUNDS_TEST_POSTGRES_URL` is set (issue 17).

use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rounds_collector::secrets::hash_secret;
use rounds_collector::store::sqlite::SqliteStore;
use rounds_collector::store::{
    AgentPolicySettings, AgentReportedState, ChangeQuery, DbErrorKind, FindingChange, FindingCounts, HeartbeatPrior,
    IncomingReport, Ingested, NewToken, PolicySettingsRow, Role, Scope, Store, StoreError, TokenRefusal,
};
use rounds_policies::{Exception, Finding, Severity, Status};
use rounds_protocol::{Observation, Report, obs};
use serde_json::json;

use crate::support::{admin, agent, enroll, ingest, report};

fn inventory(hostname: &str, at: chrono::DateTime<Utc>) -> Observation {
    Observation::ok(
        "host",
        at,
        &obs::Inventory {
            hostname: hostname.into(),
            ..Default::default()
        },
    )
}

pub async fn practices_and_sites_are_created_once(store: Arc<dyn Store>) {
    let a = store.ensure_site("Smith", "Main", Utc::now()).await.unwrap();
    let b = store.ensure_site("Smith", "Main", Utc::now()).await.unwrap();
    let c = store.ensure_site("Smith", "Annex", Utc::now()).await.unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    let p = store.practices(&admin()).await.unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].sites, vec!["Annex".to_string(), "Main".to_string()]);
}

pub async fn tokens_redeem_once_and_refuse_with_reason(store: Arc<dyn Store>) {
    let now = Utc::now();
    let t = NewToken {
        practice: "P".into(),
        site: "S".into(),
        token_hash: hash_secret("t1"),
        expires_at: now + Duration::hours(1),
    };
    store.create_token(t, now).await.unwrap();
    let e = store.enroll(&hash_secret("t1"), agent("a1"), now).await.unwrap();
    assert_eq!((e.practice.as_str(), e.site.as_str()), ("P", "S"));
    let again = store.enroll(&hash_secret("t1"), agent("a2"), now).await;
    assert!(
        matches!(again, Err(StoreError::Token(TokenRefusal::AlreadyUsed))),
        "{again:?}"
    );
    let unknown = store.enroll(&hash_secret("nope"), agent("a3"), now).await;
    assert!(matches!(unknown, Err(StoreError::Token(TokenRefusal::Unknown))));
    let t = NewToken {
        practice: "P".into(),
        site: "S".into(),
        token_hash: hash_secret("t2"),
        expires_at: now + Duration::hours(1),
    };
    store.create_token(t, now).await.unwrap();
    let expired = store
        .enroll(&hash_secret("t2"), agent("a4"), now + Duration::hours(2))
        .await;
    assert!(matches!(expired, Err(StoreError::Token(TokenRefusal::Expired))));
    let ids: Vec<String> = store
        .agents(&admin())
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.agent_id)
        .collect();
    assert_eq!(ids, vec!["a1".to_string()], "refused enrollments create no agent");
}

pub async fn reports_are_idempotent_per_agent_and_sequence(store: Arc<dyn Store>) {
    enroll(store.as_ref(), "P", "S", "a1").await;
    enroll(store.as_ref(), "P", "S", "a2").await;
    let now = Utc::now();
    let o = [inventory("one", now)];
    assert_eq!(
        ingest(store.as_ref(), "a1", 1, now, &o, now).await.unwrap(),
        Ingested::Stored
    );
    assert_eq!(
        ingest(store.as_ref(), "a1", 1, now, &o, now).await.unwrap(),
        Ingested::Duplicate
    );
    assert_eq!(
        ingest(store.as_ref(), "a2", 1, now, &o, now).await.unwrap(),
        Ingested::Stored
    );
    assert_eq!(store.report_count().await.unwrap(), 2);
    let a1 = store
        .agents(&admin())
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.agent_id == "a1")
        .unwrap();
    assert_eq!(a1.last_sequence, 1);
    assert!(a1.last_report_at.is_some());
}

pub async fn latest_observation_is_the_newest_even_when_reports_arrive_out_of_order(store: Arc<dyn Store>) {
    enroll(store.as_ref(), "P", "S", "a1").await;
    let t0 = Utc::now();
    let newer = [inventory("new-name", t0 + Duration::minutes(5))];
    let older = [inventory("old-name", t0)];
    ingest(store.as_ref(), "a1", 2, t0, &newer, t0).await.unwrap();
    ingest(store.as_ref(), "a1", 1, t0, &older, t0).await.unwrap();
    let latest = store
        .latest_observations(&admin(), "a1", Some("inventory"))
        .await
        .unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].observation.data["hostname"], "new-name");
    assert_eq!(latest[0].sequence, 2);
}

pub async fn practice_scope_hides_other_practices(store: Arc<dyn Store>) {
    enroll(store.as_ref(), "Alpha", "S", "a1").await;
    enroll(store.as_ref(), "Beta", "S", "b1").await;
    let alpha = store.ensure_practice("Alpha", Utc::now()).await.unwrap();
    let pm = Scope {
        role: Role::PracticeManager,
        practice_id: Some(alpha),
    };
    let names: Vec<String> = store
        .practices(&pm)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, vec!["Alpha".to_string()]);
    let ids: Vec<String> = store
        .agents(&pm)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.agent_id)
        .collect();
    assert_eq!(ids, vec!["a1".to_string()]);
    let hidden = store.latest_observations(&pm, "b1", None).await;
    assert!(matches!(hidden, Err(StoreError::NotFound { .. })));
    let nobody = Scope {
        role: Role::PracticeManager,
        practice_id: None,
    };
    assert!(store.agents(&nobody).await.unwrap().is_empty());
}

pub async fn heartbeats_never_move_last_seen_backwards(store: Arc<dyn Store>) {
    enroll(store.as_ref(), "P", "S", "a1").await;
    let t = Utc::now();
    store.heartbeat("a1", "0.2.0", None, t).await.unwrap();
    store
        .heartbeat("a1", "0.2.0", None, t - Duration::minutes(10))
        .await
        .unwrap();
    let a = store.agents(&admin()).await.unwrap().remove(0);
    assert_eq!(a.last_seen_at.map(|x| x.timestamp_millis()), Some(t.timestamp_millis()));
    assert_eq!(a.agent_version, "0.2.0");
    assert!(matches!(
        store.heartbeat("ghost", "0.1.0", None, t).await,
        Err(StoreError::NotFound { .. })
    ));
}

// Heartbeats at scale (issue 16).
pub async fn a_heartbeat_records_its_state_and_answers_the_agents_row_before_it(store: Arc<dyn Store>) {
    enroll(store.as_ref(), "P", "S", "a1").await;
    let t = at(1_000);
    let reported = AgentReportedState {
        config_version: Some("cfg-1".into()),
        config_error: None,
        spool_depth: Some(3),
        spool_error: Some("disk full".into()),
    };
    let first = store
        .record_heartbeat("a1", "0.2.0", Some(Duration::seconds(2)), &reported, t)
        .await
        .unwrap();
    assert_eq!(
        first,
        HeartbeatPrior {
            clock_skew_ms: None,
            reported: false
        }
    );
    let status = store.delivery_status(&admin(), "a1").await.unwrap();
    assert_eq!(status.reported, reported);

    let second = store
        .record_heartbeat(
            "a1",
            "0.2.1",
            Some(Duration::minutes(9)),
            &AgentReportedState::default(),
            t + Duration::seconds(30),
        )
        .await
        .unwrap();
    assert_eq!(
        second,
        HeartbeatPrior {
            clock_skew_ms: Some(2_000),
            reported: false
        },
        "the skew of the heartbeat before"
    );
    ingest(store.as_ref(), "a1", 1, t, &[inventory("h", t)], t)
        .await
        .unwrap();
    let third = store
        .record_heartbeat(
            "a1",
            "0.2.1",
            Some(Duration::zero()),
            &AgentReportedState::default(),
            t + Duration::seconds(60),
        )
        .await
        .unwrap();
    assert_eq!(
        third,
        HeartbeatPrior {
            clock_skew_ms: Some(540_000),
            reported: true
        }
    );
    let a = store.agent(&admin(), "a1").await.unwrap();
    assert_eq!(a.clock_skew_ms, Some(0));
    assert_eq!(a.agent_version, "0.2.1");
    assert_eq!(a.last_seen_at, Some(t + Duration::seconds(60)));
    let status = store.delivery_status(&admin(), "a1").await.unwrap();
    assert_eq!(
        status.reported,
        AgentReportedState::default(),
        "the newest heartbeat's state replaced the old"
    );

    assert!(matches!(
        store.record_heartbeat("ghost", "0.1.0", None, &reported, t).await,
        Err(StoreError::NotFound { what: "agent", .. })
    ));
}

pub async fn users_sessions_and_api_keys(store: Arc<dyn Store>) {
    let id = store
        .add_user("alice", "$argon2id$fake", Role::Technician, None, Utc::now())
        .await
        .unwrap();
    assert!(matches!(
        store.add_user("alice", "x", Role::Admin, None, Utc::now()).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        store
            .add_user("bob", "x", Role::PracticeManager, Some("Nope"), Utc::now())
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.user_count().await.unwrap(), 1);
    let now = Utc::now();
    store
        .create_session("sess-hash", id, "csrf", now, now + Duration::hours(1))
        .await
        .unwrap();
    let s = store.session("sess-hash", now).await.unwrap().unwrap();
    assert_eq!(
        (s.username.as_str(), s.role, s.csrf_token.as_str()),
        ("alice", Role::Technician, "csrf")
    );
    assert!(
        store
            .session("sess-hash", now + Duration::hours(2))
            .await
            .unwrap()
            .is_none(),
        "expired session"
    );
    store.set_password("alice", "$argon2id$new").await.unwrap();
    assert!(
        store.session("sess-hash", now).await.unwrap().is_none(),
        "a new password ends sessions"
    );
    store.ensure_practice("Alpha", Utc::now()).await.unwrap();
    store
        .create_api_key("key-hash", Role::PracticeManager, Some("Alpha"), "pm", Utc::now())
        .await
        .unwrap();
    let scope = store.api_key("key-hash").await.unwrap().unwrap();
    assert_eq!(scope.role, Role::PracticeManager);
    assert!(scope.practice_id.is_some());
    assert!(store.api_key("other").await.unwrap().is_none());
}

pub async fn audit_log_keeps_entries_newest_first(store: Arc<dyn Store>) {
    let t = Utc::now();
    store.audit("cli", "token.create", "P/S", t).await.unwrap();
    store.audit("alice", "login", "from dashboard", t).await.unwrap();
    let entries = store.audit_entries(10).await.unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, vec!["login", "token.create"]);
    assert_eq!(entries[0].actor, "alice");
    assert_eq!(store.audit_entries(1).await.unwrap().len(), 1);
}

/// A finding as evaluation would make it; failures carry a remediation.
pub(crate) fn finding(rule: &str, status: Status) -> Finding {
    Finding {
        rule: rule.into(),
        title: format!("title of {rule}"),
        status,
        severity: Severity::High,
        citations: vec!["164.312(a)(1)".into(), "164.308(a)(1)(ii)(B)".into()],
        partial_citations: Vec::new(),
        evidence: json!({"observations": [{"subject": "host", "values": {"enabled": status == Status::Pass}}]}),
        message: format!("{rule} is {status}"),
        remediation: (status == Status::Fail).then(|| format!("fix {rule}")),
        exception: None,
    }
}

/// A time with millisecond precision, as stores keep it.
pub(crate) fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_795_000_000_000 + secs * 1000).unwrap()
}

pub async fn findings_keep_status_since_until_the_status_changes(store: Arc<dyn Store>) {
    enroll(store.as_ref(), "P", "S", "a1").await;
    let status_of = |rows: &[rounds_collector::store::FindingRow], rule: &str| {
        let f = rows
            .iter()
            .find(|f| f.rule == rule)
            .unwrap_or_else(|| panic!("no {rule}"));
        (f.status, f.status_since, f.evaluated_at)
    };
    store
        .replace_findings(
            "a1",
            &[finding("r.a", Status::Pass), finding("r.b", Status::Fail)],
            at(0),
        )
        .await
        .unwrap();
    // Same statuses an hour later: `status_since` stays, `evaluated_at` moves.
    store
        .replace_findings(
            "a1",
            &[finding("r.a", Status::Pass), finding("r.b", Status::Fail)],
            at(3600),
        )
        .await
        .unwrap();
    let rows = store.findings(&admin(), "a1").await.unwrap();
    assert_eq!(status_of(&rows, "r.a"), (Status::Pass, at(0), at(3600)));
    assert_eq!(
        status_of(&rows, "r.b"),
        (Status::Fail, at(0), at(3600)),
        "red since the first time"
    );
    // r.b is fixed: its status_since moves; r.a is unchanged.
    store
        .replace_findings(
            "a1",
            &[finding("r.a", Status::Pass), finding("r.b", Status::Pass)],
            at(7200),
        )
        .await
        .unwrap();
    let rows = store.findings(&admin(), "a1").await.unwrap();
    assert_eq!(status_of(&rows, "r.a"), (Status::Pass, at(0), at(7200)));
    assert_eq!(status_of(&rows, "r.b"), (Status::Pass, at(7200), at(7200)));
    // Breaks again: a new status_since, not the first failure's.
    store
        .replace_findings(
            "a1",
            &[finding("r.a", Status::Pass), finding("r.b", Status::Fail)],
            at(9000),
        )
        .await
        .unwrap();
    let rows = store.findings(&admin(), "a1").await.unwrap();
    assert_eq!(status_of(&rows, "r.b"), (Status::Fail, at(9000), at(9000)));
}

pub async fn findings_are_replaced_as_a_whole_and_round_trip(store: Arc<dyn Store>) {
    enroll(store.as_ref(), "P", "S", "a1").await;
    enroll(store.as_ref(), "P", "S", "a2").await;
    let mut accepted = finding("r.c", Status::Fail);
    accepted.exception = Some(Exception {
        reason: "legacy imaging PC, isolated VLAN".into(),
        accepted_by: "Dr. Smith".into(),
        expires: NaiveDate::from_ymd_opt(2027, 6, 1).unwrap(),
        source: "practice.toml".into(),
    });
    accepted.severity = Severity::Critical;
    let first = [
        finding("r.a", Status::Pass),
        finding("r.b", Status::Error),
        accepted.clone(),
    ];
    store.replace_findings("a1", &first, at(0)).await.unwrap();
    store
        .replace_findings("a2", &[finding("r.a", Status::Fail)], at(0))
        .await
        .unwrap();
    let rows = store.findings(&admin(), "a1").await.unwrap();
    let rules: Vec<&str> = rows.iter().map(|f| f.rule.as_str()).collect();
    assert_eq!(rules, vec!["r.a", "r.b", "r.c"], "ordered by rule");
    let c = rows.iter().find(|f| f.rule == "r.c").unwrap();
    let rounds_collector::store::FindingRow {
        rule,
        title,
        status,
        severity,
        citations,
        evidence,
        message,
        remediation,
        exception,
        status_since,
        evaluated_at,
    } = c.clone();
    let Finding {
        rule: r,
        title: t,
        status: st,
        severity: sev,
        citations: cit,
        partial_citations: _,
        evidence: ev,
        message: m,
        remediation: rem,
        exception: ex,
    } = accepted;
    assert_eq!(
        (
            rule,
            title,
            status,
            severity,
            citations,
            evidence,
            message,
            remediation,
            exception
        ),
        (r, t, st, sev, cit, ev, m, rem, ex),
        "every field comes back as stored"
    );
    assert_eq!((status_since, evaluated_at), (at(0), at(0)));

    // A later evaluation without r.b and r.c drops them, and touches no other agent.
    store
        .replace_findings("a1", &[finding("r.a", Status::Pass)], at(60))
        .await
        .unwrap();
    let rows = store.findings(&admin(), "a1").await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].rule, "r.a");
    let other = store.findings(&admin(), "a2").await.unwrap();
    assert_eq!((other.len(), other[0].status), (1, Status::Fail));
    // An empty evaluation clears them.
    store.replace_findings("a1", &[], at(120)).await.unwrap();
    assert!(store.findings(&admin(), "a1").await.unwrap().is_empty());
    assert!(matches!(
        store.replace_findings("ghost", &first, at(0)).await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn agents_count_their_findings_by_status(store: Arc<dyn Store>) {
    enroll(store.as_ref(), "P", "S", "a1").await;
    enroll(store.as_ref(), "P", "S", "a2").await;
    let mut accepted = finding("r.e", Status::Fail);
    accepted.exception = Some(Exception {
        reason: "r".into(),
        accepted_by: "x".into(),
        expires: NaiveDate::from_ymd_opt(2099, 1, 1).unwrap(),
        source: "s".into(),
    });
    let findings = [
        finding("r.a", Status::Pass),
        finding("r.b", Status::Fail),
        finding("r.c", Status::Error),
        finding("r.d", Status::NotApplicable),
        accepted,
    ];
    store.replace_findings("a1", &findings, at(0)).await.unwrap();
    let expect = FindingCounts {
        pass: 1,
        fail: 2,
        error: 1,
        not_applicable: 1,
        accepted: 1,
    };
    let agents = store.agents(&admin()).await.unwrap();
    let counts: Vec<(&str, FindingCounts)> = agents.iter().map(|a| (a.agent_id.as_str(), a.findings)).collect();
    assert_eq!(counts, vec![("a1", expect), ("a2", FindingCounts::default())]);
    assert_eq!(store.agent(&admin(), "a1").await.unwrap().findings, expect);
    assert_eq!(
        store.agent(&admin(), "a1").await.unwrap(),
        agents[0],
        "one agent reads as in the list"
    );
}

pub async fn findings_and_agents_are_hidden_outside_the_scope(store: Arc<dyn Store>) {
    enroll(store.as_ref(), "Alpha", "S", "a1").await;
    enroll(store.as_ref(), "Beta", "S", "b1").await;
    store
        .replace_findings("b1", &[finding("r.a", Status::Fail)], at(0))
        .await
        .unwrap();
    store
        .replace_findings("a1", &[finding("r.a", Status::Pass)], at(0))
        .await
        .unwrap();
    let alpha = store.ensure_practice("Alpha", Utc::now()).await.unwrap();
    let pm = Scope {
        role: Role::PracticeManager,
        practice_id: Some(alpha),
    };
    assert_eq!(store.findings(&pm, "a1").await.unwrap().len(), 1);
    assert_eq!(store.agent(&pm, "a1").await.unwrap().agent_id, "a1");
    for (case, id) in [("another practice's agent", "b1"), ("no such agent", "ghost")] {
        assert!(
            matches!(store.findings(&pm, id).await, Err(StoreError::NotFound { .. })),
            "{case}"
        );
        assert!(
            matches!(store.agent(&pm, id).await, Err(StoreError::NotFound { .. })),
            "{case}"
        );
    }
    let tech = Scope {
        role: Role::Technician,
        practice_id: None,
    };
    assert_eq!(store.findings(&tech, "b1").await.unwrap()[0].status, Status::Fail);
}

pub async fn policy_settings_are_set_replaced_and_cleared_per_practice_and_site(store: Arc<dyn Store>) {
    enroll(store.as_ref(), "Smith", "Main", "a1").await;
    enroll(store.as_ref(), "Smith", "Annex", "a2").await;
    enroll(store.as_ref(), "Lakeside", "Main", "b1").await;
    let none = AgentPolicySettings {
        practice: "Smith".into(),
        site: "Main".into(),
        ..AgentPolicySettings::default()
    };
    assert_eq!(store.policy_settings_for_agent("a1").await.unwrap(), none);
    assert_eq!(store.policy_settings("Smith", None).await.unwrap(), None);
    assert_eq!(store.policy_settings("Smith", Some("Main")).await.unwrap(), None);

    let practice_toml = "[params.\"r.a\"]\nx = 1\n";
    let site_toml = "[params.\"r.a\"]\nx = 2\n";
    store
        .set_policy_settings("Smith", None, Some("strict"), Some(practice_toml), "cli", at(0))
        .await
        .unwrap();
    store
        .set_policy_settings("Smith", Some("Main"), None, Some(site_toml), "alice", at(60))
        .await
        .unwrap();
    assert_eq!(
        store.policy_settings("Smith", None).await.unwrap(),
        Some(PolicySettingsRow {
            practice: "Smith".into(),
            site: None,
            profile: Some("strict".into()),
            overrides_toml: Some(practice_toml.into()),
            updated_at: at(0),
            updated_by: "cli".into(),
        })
    );
    assert_eq!(
        store.policy_settings("Smith", Some("Main")).await.unwrap(),
        Some(PolicySettingsRow {
            practice: "Smith".into(),
            site: Some("Main".into()),
            profile: None,
            overrides_toml: Some(site_toml.into()),
            updated_at: at(60),
            updated_by: "alice".into(),
        })
    );
    // An agent gets its practice's settings and its own site's, not another site's or practice's.
    let a1 = AgentPolicySettings {
        practice: "Smith".into(),
        site: "Main".into(),
        profile: Some("strict".into()),
        practice_overrides: Some(practice_toml.into()),
        site_overrides: Some(site_toml.into()),
    };
    assert_eq!(store.policy_settings_for_agent("a1").await.unwrap(), a1);
    let a2 = store.policy_settings_for_agent("a2").await.unwrap();
    assert_eq!(
        (a2.site.as_str(), a2.profile.as_deref(), a2.site_overrides),
        ("Annex", Some("strict"), None)
    );
    assert!(store.policy_settings_for_agent("b1").await.unwrap().is_default());

    // Setting again replaces the whole row; the site's settings are untouched.
    store
        .set_policy_settings("Smith", None, None, Some(site_toml), "bob", at(120))
        .await
        .unwrap();
    let row = store.policy_settings("Smith", None).await.unwrap().unwrap();
    assert_eq!(
        (
            row.profile,
            row.overrides_toml.as_deref(),
            row.updated_at,
            row.updated_by.as_str()
        ),
        (None, Some(site_toml), at(120), "bob")
    );
    assert_eq!(
        store
            .policy_settings_for_agent("a1")
            .await
            .unwrap()
            .site_overrides
            .as_deref(),
        Some(site_toml)
    );
    // Nothing left to set clears the level.
    store
        .set_policy_settings("Smith", None, None, None, "cli", at(180))
        .await
        .unwrap();
    store
        .set_policy_settings("Smith", Some("Main"), None, None, "cli", at(180))
        .await
        .unwrap();
    assert_eq!(store.policy_settings("Smith", None).await.unwrap(), None);
    assert_eq!(store.policy_settings("Smith", Some("Main")).await.unwrap(), None);
    assert_eq!(store.policy_settings_for_agent("a1").await.unwrap(), none);
}

pub async fn policy_settings_refuse_unknown_places_and_site_profiles(store: Arc<dyn Store>) {
    enroll(store.as_ref(), "Smith", "Main", "a1").await;
    enroll(store.as_ref(), "Lakeside", "Annex", "b1").await;
    for (case, practice, site) in [
        ("unknown practice", "Nobody", None),
        ("unknown practice with a site", "Nobody", Some("Main")),
        ("unknown site", "Smith", Some("Nowhere")),
        ("another practice's site", "Smith", Some("Annex")),
    ] {
        let set = store
            .set_policy_settings(practice, site, None, Some("[params]\n"), "cli", at(0))
            .await;
        assert!(matches!(set, Err(StoreError::NotFound { .. })), "{case}: {set:?}");
        let get = store.policy_settings(practice, site).await;
        assert!(matches!(get, Err(StoreError::NotFound { .. })), "{case}: {get:?}");
    }
    let site_profile = store
        .set_policy_settings("Smith", Some("Main"), Some("strict"), None, "cli", at(0))
        .await;
    assert!(matches!(site_profile, Err(StoreError::Invalid(_))), "{site_profile:?}");
    assert_eq!(store.policy_settings("Smith", Some("Main")).await.unwrap(), None);
    assert!(matches!(
        store.policy_settings_for_agent("ghost").await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn agents_carry_the_os_of_their_newest_inventory(store: Arc<dyn Store>) {
    enroll(store.as_ref(), "P", "S", "a1").await;
    let before = store.agents(&admin()).await.unwrap().remove(0);
    assert_eq!((before.os.as_str(), before.os_description.as_deref()), ("linux", None));
    let t = Utc::now();
    let inv = obs::Inventory {
        hostname: "h".into(),
        os_name: Some("Debian GNU/Linux".into()),
        os_version: Some("12".into()),
        ..Default::default()
    };
    ingest(store.as_ref(), "a1", 1, t, &[Observation::ok("host", t, &inv)], t)
        .await
        .unwrap();
    let after = store.agents(&admin()).await.unwrap().remove(0);
    assert_eq!(after.os_description.as_deref(), Some("Debian GNU/Linux 12"));
    let one = store.agent(&admin(), "a1").await.unwrap();
    assert_eq!(one.os_description, after.os_description);
}

pub async fn units_of_work_commit_together_or_not_at_all(store: Arc<dyn Store>) {
    let now = Utc::now();
    let token = |hash: &str| NewToken {
        practice: "P".into(),
        site: "S".into(),
        token_hash: hash_secret(hash),
        expires_at: now + Duration::hours(1),
    };
    {
        let mut tx = store.begin().await.unwrap();
        tx.create_token(token("dropped"), now).await.unwrap();
        tx.audit("cli", "token.create", "dropped", now).await.unwrap();
        // Dropped without commit.
    }
    assert!(store.practices(&admin()).await.unwrap().is_empty(), "rolled back");
    assert!(store.audit_entries(10).await.unwrap().is_empty(), "rolled back");
    let mut tx = store.begin().await.unwrap();
    tx.create_token(token("kept"), now).await.unwrap();
    tx.audit("cli", "token.create", "kept", now).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.practices(&admin()).await.unwrap().len(), 1);
    assert_eq!(store.audit_entries(10).await.unwrap().len(), 1);
    // A failed write spoils the whole unit: nothing of it is kept, and the store is usable.
    let mut tx = store.begin().await.unwrap();
    tx.audit("cli", "token.create", "spoiled", now).await.unwrap();
    let dup = tx.create_token(token("kept"), now).await.unwrap_err();
    assert_eq!(dup.kind(), Some(DbErrorKind::Constraint), "{dup}");
    assert!(tx.commit().await.is_err(), "a spoiled unit of work does not commit");
    assert_eq!(store.audit_entries(10).await.unwrap().len(), 1);
    store.audit("cli", "after", "", now).await.unwrap();
    assert_eq!(store.audit_entries(10).await.unwrap().len(), 2);
}

/// (old, new) status of each change, in order.
fn transitions(changes: &[FindingChange]) -> Vec<(Option<Status>, Option<Status>)> {
    changes.iter().map(|c| (c.old_status, c.new_status)).collect()
}

pub async fn finding_history_records_every_change_with_its_time_and_evidence(store: Arc<dyn Store>) {
    enroll(store.as_ref(), "P", "S", "a1").await;
    let pass = finding("r.a", Status::Pass);
    let fail = finding("r.a", Status::Fail);
    let first = store
        .replace_findings("a1", std::slice::from_ref(&pass), at(0))
        .await
        .unwrap();
    assert_eq!(transitions(&first), vec![(None, Some(Status::Pass))], "appearance");
    // Agreeing evaluations record nothing.
    let same = store
        .replace_findings("a1", std::slice::from_ref(&pass), at(50))
        .await
        .unwrap();
    assert!(same.is_empty(), "{same:?}");
    let to_fail = store
        .replace_findings("a1", std::slice::from_ref(&fail), at(100))
        .await
        .unwrap();
    assert_eq!(transitions(&to_fail), vec![(Some(Status::Pass), Some(Status::Fail))]);
    let back = store
        .replace_findings("a1", std::slice::from_ref(&pass), at(200))
        .await
        .unwrap();
    assert_eq!(transitions(&back), vec![(Some(Status::Fail), Some(Status::Pass))]);

    let all = store
        .finding_changes(
            &admin(),
            &ChangeQuery {
                agent_id: Some("a1".into()),
                practice_id: None,
                from: at(0),
                to: at(1000),
            },
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 3, "{all:#?}");
    let status_changes: Vec<&FindingChange> = all.iter().filter(|c| c.old_status.is_some()).collect();
    assert_eq!(status_changes.len(), 2, "pass -> fail -> pass is two status changes");
    assert_eq!(status_changes[0].at, at(100));
    assert_eq!(status_changes[0].evidence, fail.evidence, "evidence at that moment");
    assert_eq!(status_changes[0].message, fail.message);
    assert_eq!(status_changes[1].at, at(200));
    assert_eq!(status_changes[1].evidence, pass.evidence);
    assert_eq!(
        all,
        [first, to_fail, back].concat(),
        "replace_findings returns what it recorded"
    );

    // "Between": from inclusive, to exclusive.
    let between = store
        .finding_changes(
            &admin(),
            &ChangeQuery {
                agent_id: Some("a1".into()),
                practice_id: None,
                from: at(100),
                to: at(200),
            },
        )
        .await
        .unwrap();
    assert_eq!(transitions(&between), vec![(Some(Status::Pass), Some(Status::Fail))]);

    // "As at": between the changes it was failing, with the evidence of then.
    let then = store.findings_at(&admin(), "a1", at(150)).await.unwrap();
    assert_eq!(then.len(), 1);
    assert_eq!(then[0].status, Status::Fail);
    assert_eq!(then[0].evidence, fail.evidence);
    assert_eq!(then[0].status_since, at(100));
    assert_eq!(
        store.findings_at(&admin(), "a1", at(99)).await.unwrap()[0].status,
        Status::Pass
    );
    assert_eq!(
        store.findings_at(&admin(), "a1", at(200)).await.unwrap()[0].status,
        Status::Pass
    );
    assert!(
        store.findings_at(&admin(), "a1", at(-1)).await.unwrap().is_empty(),
        "before the first"
    );

    // An accepted risk that comes or goes is a change even when the status stays.
    let mut accepted = fail.clone();
    accepted.exception = Some(Exception {
        reason: "isolated VLAN".into(),
        accepted_by: "Dr. Smith".into(),
        expires: NaiveDate::from_ymd_opt(2099, 1, 1).unwrap(),
        source: "practice.toml".into(),
    });
    store
        .replace_findings("a1", std::slice::from_ref(&fail), at(300))
        .await
        .unwrap();
    let risk = store
        .replace_findings("a1", std::slice::from_ref(&accepted), at(400))
        .await
        .unwrap();
    assert_eq!(transitions(&risk), vec![(Some(Status::Fail), Some(Status::Fail))]);
    assert_eq!(
        (risk[0].old_exception.clone(), risk[0].exception.clone()),
        (None, accepted.exception.clone())
    );
    assert_eq!(
        store.findings_at(&admin(), "a1", at(450)).await.unwrap()[0].status_since,
        at(300),
        "status_since stays across an exception change"
    );

    // A rule no longer evaluated is retired, in the history too.
    let gone = store.replace_findings("a1", &[], at(500)).await.unwrap();
    assert_eq!(transitions(&gone), vec![(Some(Status::Fail), None)]);
    assert!(store.findings_at(&admin(), "a1", at(500)).await.unwrap().is_empty());
    assert_eq!(store.findings_at(&admin(), "a1", at(499)).await.unwrap().len(), 1);
}

pub async fn finding_history_is_scoped_by_agent_and_practice(store: Arc<dyn Store>) {
    enroll(store.as_ref(), "Alpha", "S", "a1").await;
    enroll(store.as_ref(), "Alpha", "S", "a2").await;
    enroll(store.as_ref(), "Beta", "S", "b1").await;
    for (id, secs) in [("a1", 0), ("a2", 10), ("b1", 20)] {
        store
            .replace_findings(id, &[finding("r.a", Status::Pass)], at(secs))
            .await
            .unwrap();
        store
            .replace_findings(id, &[finding("r.a", Status::Fail)], at(secs + 100))
            .await
            .unwrap();
    }
    let alpha = store.ensure_practice("Alpha", at(0)).await.unwrap();
    let beta = store.ensure_practice("Beta", at(0)).await.unwrap();
    let query = |agent_id: Option<&str>, practice_id: Option<i64>| ChangeQuery {
        agent_id: agent_id.map(str::to_string),
        practice_id,
        from: at(-1000),
        to: at(1000),
    };
    let agents_of = |changes: Vec<FindingChange>| -> Vec<String> {
        let mut ids: Vec<String> = changes.into_iter().map(|c| c.agent_id).collect();
        ids.dedup();
        ids.sort();
        ids.dedup();
        ids
    };
    let one = store.finding_changes(&admin(), &query(Some("a1"), None)).await.unwrap();
    assert_eq!(
        agents_of(one),
        vec!["a1"],
        "another agent's report never appears in this one's history"
    );
    let of_alpha = store
        .finding_changes(&admin(), &query(None, Some(alpha)))
        .await
        .unwrap();
    assert_eq!(agents_of(of_alpha), vec!["a1", "a2"]);
    let of_beta = store.finding_changes(&admin(), &query(None, Some(beta))).await.unwrap();
    assert_eq!(agents_of(of_beta), vec!["b1"]);
    // A practice manager of Alpha sees none of Beta's history, asked for it or not.
    let pm = Scope {
        role: Role::PracticeManager,
        practice_id: Some(alpha),
    };
    let everything = store.finding_changes(&pm, &query(None, None)).await.unwrap();
    assert_eq!(agents_of(everything), vec!["a1", "a2"]);
    assert!(
        store
            .finding_changes(&pm, &query(None, Some(beta)))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        store.finding_changes(&pm, &query(Some("b1"), None)).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.findings_at(&pm, "b1", at(500)).await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn an_unchanged_observation_is_confirmed_not_stored_again(store: Arc<dyn Store>) {
    enroll(store.as_ref(), "P", "S", "a1").await;
    for seq in 1..=3 {
        let t = at(seq * 3600);
        ingest(
            store.as_ref(),
            "a1",
            seq as u64,
            t,
            &[inventory("same", t)],
            t + Duration::seconds(2),
        )
        .await
        .unwrap();
    }
    let latest = store.latest_observations(&admin(), "a1", None).await.unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].sequence, 3, "the newest report is the current state");
    assert_eq!(latest[0].observation.observed_at, at(3 * 3600));
    assert_eq!(
        latest[0].confirmed_at,
        Some(at(3 * 3600) + Duration::seconds(2)),
        "last confirmed at"
    );
    assert!(!latest[0].future_dated);
}

/// PostgreSQL backend (issue 17): units of work of concurrent callers never interleave (SQLite:
/// one writer; PostgreSQL: the writer lock): a token is redeemed once, and reports delivered
/// at the same time in any order leave exact counts and no gap.
pub async fn concurrent_units_of_work_do_not_interleave(store: Arc<dyn Store>) {
    concurrent_units_of_work_do_not_interleave_across(&[Arc::clone(&store), store]).await;
}

/// [`concurrent_units_of_work_do_not_interleave`] with the callers spread over `stores`, all
/// on one database (several collectors on one PostgreSQL database).
pub(crate) async fn concurrent_units_of_work_do_not_interleave_across(stores: &[Arc<dyn Store>]) {
    let store = Arc::clone(&stores[0]);
    let pick = |i: usize| Arc::clone(&stores[i % stores.len()]);
    let now = Utc::now();
    store
        .create_token(
            NewToken {
                practice: "P".into(),
                site: "S".into(),
                token_hash: hash_secret("shared"),
                expires_at: now + Duration::hours(1),
            },
            now,
        )
        .await
        .unwrap();
    let enrollments: Vec<_> = (0..6)
        .map(|i| {
            let store = pick(i);
            tokio::spawn(async move { store.enroll(&hash_secret("shared"), agent(&format!("c{i}")), now).await })
        })
        .collect();
    let mut enrolled = Vec::new();
    for (i, task) in enrollments.into_iter().enumerate() {
        match task.await.unwrap() {
            Ok(_) => enrolled.push(format!("c{i}")),
            Err(StoreError::Token(TokenRefusal::AlreadyUsed)) => {}
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert_eq!(enrolled.len(), 1, "one token, one agent: {enrolled:?}");
    let agent_id = enrolled.remove(0);
    let order = [7u64, 2, 12, 1, 9, 4, 11, 3, 6, 10, 5, 8];
    let deliveries: Vec<_> = order
        .iter()
        .map(|&seq| {
            let (store, agent_id) = (pick(seq as usize), agent_id.clone());
            tokio::spawn(async move {
                let t = at(seq as i64 * 60);
                let report = Report {
                    protocol: 1,
                    agent_id: agent_id.clone(),
                    sequence: seq,
                    created_at: t,
                    check: None,
                    complete: false,
                    prev_hash: None,
                    hash: None,
                    dropped: Vec::new(),
                    observations: vec![inventory(&format!("h{seq}"), t)],
                };
                let incoming = IncomingReport {
                    report: &report,
                    received_at: t,
                    future_after: t + Duration::minutes(5),
                };
                store.deliver_reports(&agent_id, &[incoming]).await
            })
        })
        .collect();
    for task in deliveries {
        task.await.unwrap().unwrap();
    }
    let status = store.delivery_status(&admin(), &agent_id).await.unwrap();
    assert_eq!(status.reports_stored, 12);
    assert_eq!(status.last_sequence, 12);
    assert!(status.gaps.is_empty(), "every gap was filled: {:?}", status.gaps);
    assert_eq!(store.report_count().await.unwrap(), 12);
}

/// A report as the store takes it, of a check or not.
async fn ingest_check(
    store: &dyn Store,
    sequence: u64,
    check: Option<&str>,
    observations: Vec<Observation>,
    now: DateTime<Utc>,
) -> Ingested {
    let report = Report {
        check: check.map(str::to_string),
        complete: check.is_some(),
        ..report("a1", sequence, now, observations)
    };
    let incoming = IncomingReport {
        report: &report,
        received_at: now,
        future_after: now + Duration::minutes(5),
    };
    store.ingest_report("a1", incoming).await.unwrap()
}

fn bench_obs(i: usize, value: serde_json::Value, t: DateTime<Utc>) -> Observation {
    Observation {
        kind: format!("bench.kind{}", i % 5),
        subject: format!("s{i}"),
        observed_at: t,
        status: rounds_protocol::ObservationStatus::Ok,
        data: json!({ "v": value }),
        error: None,
    }
}

/// PostgreSQL writes a report's observations in one statement (`UNNEST` arrays, issue 17); on
/// both backends a report of 50 observations stores exactly the ones whose payload changed, in
/// the report's order: a subject named twice compares with its earlier place, a late report
/// writes its changes without moving the current state back, a repeat writes nothing, and a
/// complete report of a check retires the subjects of its kinds it no longer names.
pub async fn a_report_stores_exactly_its_changed_observations(store: Arc<dyn Store>) {
    enroll(store.as_ref(), "P", "S", "a1").await;
    let mut first: Vec<Observation> = (0..50).map(|i| bench_obs(i, json!(i), at(3600))).collect();
    first.push(Observation {
        kind: "other.kind".into(),
        subject: "kept".into(),
        observed_at: at(3600),
        status: rounds_protocol::ObservationStatus::Error,
        data: serde_json::Value::Null,
        error: Some("could not run".into()),
    });
    assert_eq!(
        ingest_check(store.as_ref(), 1, None, first, at(3600)).await,
        Ingested::Stored
    );
    // Every third changed, the rest as they were; s0 twice (changed, then the same again), s1
    // twice with two new values, and two subjects that are new.
    let second = |t| {
        let mut o: Vec<Observation> = (0..50)
            .map(|i| bench_obs(i, if i % 3 == 0 { json!(format!("new{i}")) } else { json!(i) }, t))
            .collect();
        o.push(bench_obs(0, json!("new0"), t));
        o.push(bench_obs(1, json!("one"), t));
        o.push(bench_obs(1, json!("uno"), t));
        o.push(bench_obs(50, json!(50), t));
        o.push(bench_obs(51, json!(51), t));
        o
    };
    assert_eq!(
        ingest_check(store.as_ref(), 2, None, second(at(7200)), at(7200)).await,
        Ingested::Stored
    );
    let kinds: Vec<&str> = vec![
        "bench.kind0",
        "bench.kind1",
        "bench.kind2",
        "bench.kind3",
        "bench.kind4",
        "other.kind",
    ];
    let rows_of = async |sequence: u64| -> Vec<(String, serde_json::Value)> {
        let mut rows: Vec<(String, serde_json::Value)> = store
            .agent_observation_history("a1", &kinds, at(0), at(100_000))
            .await
            .unwrap()
            .into_iter()
            .filter(|o| o.sequence == sequence)
            .map(|o| (o.observation.subject, o.observation.data["v"].clone()))
            .collect();
        rows.sort_by(|a, b| (&a.0, a.1.to_string()).cmp(&(&b.0, b.1.to_string())));
        rows
    };
    assert_eq!(rows_of(1).await.len(), 51, "the first report writes every observation");
    let mut expected: Vec<(String, serde_json::Value)> = (0..50)
        .filter(|i| i % 3 == 0)
        .map(|i| (format!("s{i}"), json!(format!("new{i}"))))
        .collect();
    expected.push(("s1".into(), json!("one")));
    expected.push(("s1".into(), json!("uno")));
    expected.push(("s50".into(), json!(50)));
    expected.push(("s51".into(), json!(51)));
    expected.sort_by(|a, b| (&a.0, a.1.to_string()).cmp(&(&b.0, b.1.to_string())));
    assert_eq!(
        rows_of(2).await,
        expected,
        "exactly the changed observations, none twice"
    );

    let current = |latest: &[rounds_collector::store::StoredObservation], subject: &str| {
        latest
            .iter()
            .find(|o| o.observation.subject == subject)
            .map(|o| (o.sequence, o.observation.data["v"].clone()))
    };
    let latest = store.latest_observations(&admin(), "a1", None).await.unwrap();
    assert_eq!(latest.len(), 53, "51 subjects of the first report and two new ones");
    assert_eq!(
        current(&latest, "s1"),
        Some((2, json!("uno"))),
        "the last place of a subject wins"
    );
    assert_eq!(current(&latest, "s3"), Some((2, json!("new3"))));
    assert_eq!(
        current(&latest, "s4"),
        Some((2, json!(4))),
        "confirmed by the newer report"
    );
    assert_eq!(current(&latest, "kept"), Some((1, serde_json::Value::Null)));

    // Sequence 4 repeats what sequence 2 left; then 3 arrives late with one change.
    let mut repeat = second(at(14_400));
    repeat.retain(|o| o.subject != "s1");
    repeat.push(bench_obs(1, json!("uno"), at(14_400)));
    assert_eq!(
        ingest_check(store.as_ref(), 4, None, repeat, at(14_400)).await,
        Ingested::Stored
    );
    assert!(rows_of(4).await.is_empty(), "a repeat writes no observation row");
    let late = vec![
        bench_obs(2, json!("late"), at(10_800)),
        bench_obs(3, json!("new3"), at(10_800)),
    ];
    assert_eq!(
        ingest_check(store.as_ref(), 3, None, late, at(10_800)).await,
        Ingested::Stored
    );
    assert_eq!(rows_of(3).await, vec![("s2".to_string(), json!("late"))]);
    let latest = store.latest_observations(&admin(), "a1", None).await.unwrap();
    assert_eq!(
        current(&latest, "s2"),
        Some((4, json!(2))),
        "a late report does not move it back"
    );
    assert_eq!(current(&latest, "s3"), Some((4, json!("new3"))));

    // A complete report of a check naming s0..s9: the other bench subjects (no check named
    // them, their kinds are the check's) are retired; `other.kind` is not the check's.
    let named: Vec<Observation> = (0..10)
        .map(|i| {
            let v = match i {
                1 => json!("uno"),
                i if i % 3 == 0 => json!(format!("new{i}")),
                i => json!(i),
            };
            bench_obs(i, v, at(18_000))
        })
        .collect();
    assert_eq!(
        ingest_check(store.as_ref(), 5, Some("bench"), named, at(18_000)).await,
        Ingested::Stored
    );
    assert!(rows_of(5).await.is_empty());
    let mut subjects: Vec<String> = store
        .latest_observations(&admin(), "a1", None)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.observation.subject)
        .collect();
    subjects.sort();
    let mut want: Vec<String> = (0..10).map(|i| format!("s{i}")).collect();
    want.push("kept".into());
    want.sort();
    assert_eq!(subjects, want);
    assert_eq!(
        ingest_check(store.as_ref(), 5, None, vec![], at(18_000)).await,
        Ingested::Duplicate
    );
}

/// Core, issue 7 (migration 0018): a complete run of a check that repeats its payloads
/// confirms them without writing them (SQLite keeps the confirmation once per check,
/// PostgreSQL on each row), and both backends read the same current state: the confirmed
/// subjects stand at the newest run's sequence and times; a late, older report's new subject
/// stands at its own until the next complete run retires it; a late change does not move a
/// confirmed subject back; a partial report confirms only what it names; a subject observed at
/// another time than the run's first observation keeps its own time.
pub async fn a_complete_run_confirms_its_subjects_once(store: Arc<dyn Store>) {
    enroll(store.as_ref(), "P", "S", "a1").await;
    let obs = |subject: &str, v: i64, t: i64| Observation {
        kind: "fw".into(),
        subject: subject.into(),
        observed_at: at(t),
        status: rounds_protocol::ObservationStatus::Ok,
        data: json!({ "v": v }),
        error: None,
    };
    let run = async |sequence: u64, complete: bool, observations: Vec<Observation>, received: i64| {
        let report = Report {
            check: Some("fw".into()),
            complete,
            ..report("a1", sequence, at(received), observations)
        };
        let incoming = IncomingReport {
            report: &report,
            received_at: at(received),
            future_after: at(received) + Duration::minutes(5),
        };
        assert_eq!(store.ingest_report("a1", incoming).await.unwrap(), Ingested::Stored);
    };
    let state = async || -> Vec<(String, u64, i64, Option<i64>, serde_json::Value)> {
        let mut rows: Vec<_> = store
            .latest_observations(&admin(), "a1", None)
            .await
            .unwrap()
            .into_iter()
            .map(|o| {
                (
                    o.observation.subject,
                    o.sequence,
                    (o.observation.observed_at - at(0)).num_seconds(),
                    o.confirmed_at.map(|t| (t - at(0)).num_seconds()),
                    o.observation.data["v"].clone(),
                )
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows
    };
    let row = |s: &str, seq: u64, observed: i64, confirmed: i64, v: i64| {
        (s.to_string(), seq, observed, Some(confirmed), json!(v))
    };
    run(1, true, vec![obs("a", 1, 100), obs("b", 2, 100)], 110).await;
    run(2, true, vec![obs("a", 1, 200), obs("b", 2, 200)], 210).await;
    assert_eq!(
        state().await,
        vec![row("a", 2, 200, 210, 1), row("b", 2, 200, 210, 2)],
        "the repeat confirms both"
    );
    run(4, true, vec![obs("a", 1, 400), obs("b", 3, 400)], 410).await;
    assert_eq!(state().await, vec![row("a", 4, 400, 410, 1), row("b", 4, 400, 410, 3)]);
    // Sequence 3 arrives late: its change of a is history only, its new subject c stands.
    run(3, true, vec![obs("a", 9, 300), obs("c", 5, 300)], 500).await;
    assert_eq!(
        state().await,
        vec![
            row("a", 4, 400, 410, 1),
            row("b", 4, 400, 410, 3),
            row("c", 3, 300, 500, 5)
        ],
        "a late report neither moves a back nor is covered by the newer run"
    );
    run(5, true, vec![obs("a", 1, 600), obs("b", 3, 600)], 610).await;
    assert_eq!(
        state().await,
        vec![row("a", 5, 600, 610, 1), row("b", 5, 600, 610, 3)],
        "the next complete run retires c"
    );
    run(6, false, vec![obs("a", 1, 700)], 710).await;
    assert_eq!(
        state().await,
        vec![row("a", 6, 700, 710, 1), row("b", 5, 600, 610, 3)],
        "a partial run confirms only what it names"
    );
    let z = Observation {
        kind: "zz".into(),
        ..obs("z", 6, 800)
    };
    let e = Observation {
        kind: "eq".into(),
        ..obs("e", 7, 800)
    };
    run(7, true, vec![obs("a", 1, 800), obs("b", 3, 805), e, z], 810).await;
    assert_eq!(
        state().await,
        vec![
            row("a", 7, 800, 810, 1),
            row("b", 7, 805, 810, 3),
            row("e", 7, 800, 810, 7),
            row("z", 7, 800, 810, 6)
        ],
        "each subject keeps the time it was observed"
    );
    // Another check's subject in the same kind range stays when fw's run no longer names b,
    // and a run that finds nothing retires all of the check's subjects.
    let report = Report {
        check: Some("other".into()),
        complete: true,
        ..report("a1", 8, at(900), vec![obs("m", 4, 900)])
    };
    let incoming = IncomingReport {
        report: &report,
        received_at: at(900),
        future_after: at(900) + Duration::minutes(5),
    };
    store.ingest_report("a1", incoming).await.unwrap();
    run(9, true, vec![obs("a", 1, 1000)], 1010).await;
    assert_eq!(
        state().await,
        vec![row("a", 9, 1000, 1010, 1), row("m", 8, 900, 900, 4)],
        "b, e and z (kinds the run no longer reports) retire, the other check's m stays"
    );
    run(10, true, vec![], 1110).await;
    assert_eq!(
        state().await,
        vec![row("m", 8, 900, 900, 4)],
        "an empty run retires its check's subjects"
    );
}

/// On both backends a complete report naming the collector's own check (`collector.chain`)
/// retires nothing: the `audit.log` observation that holds the collector's verdict on the
/// agent's journal stays (the review of core issue 7's retirement).
pub async fn a_run_of_the_collectors_check_retires_nothing(store: Arc<dyn Store>) {
    enroll(store.as_ref(), "P", "S", "a1").await;
    let mut first = report("a1", 1, at(100), vec![]);
    first.check = Some("inventory".into());
    first.complete = true;
    first.prev_hash = Some(rounds_collector::delivery::chain_seed("a1"));
    first.hash = Some(rounds_collector::delivery::digest(&first));
    let mut hostile = report("a1", 2, at(200), vec![]);
    hostile.check = Some("collector.chain".into());
    hostile.complete = true;
    let journal = async || {
        store
            .latest_observations(&admin(), "a1", Some("audit.log"))
            .await
            .unwrap()
            .into_iter()
            .filter(|o| o.observation.subject == "rounds-agent journal")
            .count()
    };
    for (r, what) in [
        (&first, "the chained report writes the journal's verdict"),
        (&hostile, "it stays"),
    ] {
        let incoming = IncomingReport {
            report: r,
            received_at: r.created_at,
            future_after: r.created_at + Duration::minutes(5),
        };
        store.deliver_reports("a1", &[incoming]).await.unwrap();
        assert_eq!(journal().await, 1, "{what}");
    }
}

/// One agent's units of work run beside other agents' on PostgreSQL (issue 17); the per-rule
/// tally of a practice, recounted from all its agents, stays exact when agents of that
/// practice change their findings at the same time (through `stores`, all on one database).
pub(crate) async fn concurrent_findings_keep_the_practice_tally_exact_across(stores: &[Arc<dyn Store>]) {
    const AGENTS: usize = 6;
    for i in 0..AGENTS {
        enroll(stores[0].as_ref(), "P", "S", &format!("t{i}")).await;
    }
    let tasks: Vec<_> = (0..AGENTS)
        .map(|i| {
            let store = Arc::clone(&stores[i % stores.len()]);
            tokio::spawn(async move {
                for round in 0..8i64 {
                    let a = if (round as usize + i).is_multiple_of(2) {
                        Status::Pass
                    } else {
                        Status::Fail
                    };
                    let b = if round % 3 == 0 { Status::Error } else { Status::Pass };
                    store
                        .replace_findings(
                            &format!("t{i}"),
                            &[finding("r.a", a), finding("r.b", b)],
                            at(round * 60),
                        )
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    // Last round (7): r.a passes on the odd agents and fails on the even ones; r.b passes.
    let tallies = stores[0].rule_tallies(&admin()).await.unwrap();
    let tally = |rule: &str| {
        let t = tallies.iter().find(|t| t.rule == rule).expect("a tally per rule");
        (t.pass, t.fail, t.error)
    };
    assert_eq!(tally("r.a"), (3, 3, 0));
    assert_eq!(tally("r.b"), (6, 0, 0));
    let mut fails = 0;
    for i in 0..AGENTS {
        let counts = stores[0].agent(&admin(), &format!("t{i}")).await.unwrap().findings;
        fails += counts.fail;
    }
    assert_eq!(fails, 3, "the agents' own counts agree");
}

pub async fn concurrent_findings_keep_the_practice_tally_exact(store: Arc<dyn Store>) {
    concurrent_findings_keep_the_practice_tally_exact_across(&[Arc::clone(&store), store]).await;
}

macro_rules! store_suite {
    ($backend:ident, $make:expr) => {
        mod $backend {
            #[allow(unused_imports)]
            use super::*;
            store_suite!(@cases $make;
                practices_and_sites_are_created_once,
                tokens_redeem_once_and_refuse_with_reason,
                reports_are_idempotent_per_agent_and_sequence,
                latest_observation_is_the_newest_even_when_reports_arrive_out_of_order,
                practice_scope_hides_other_practices,
                heartbeats_never_move_last_seen_backwards,
                a_heartbeat_records_its_state_and_answers_the_agents_row_before_it,
                users_sessions_and_api_keys,
                audit_log_keeps_entries_newest_first,
                agents_carry_the_os_of_their_newest_inventory,
                findings_keep_status_since_until_the_status_changes,
                findings_are_replaced_as_a_whole_and_round_trip,
                agents_count_their_findings_by_status,
                findings_and_agents_are_hidden_outside_the_scope,
                policy_settings_are_set_replaced_and_cleared_per_practice_and_site,
                policy_settings_refuse_unknown_places_and_site_profiles,
                units_of_work_commit_together_or_not_at_all,
                finding_history_records_every_change_with_its_time_and_evidence,
                finding_history_is_scoped_by_agent_and_practice,
                an_unchanged_observation_is_confirmed_not_stored_again,
                // PostgreSQL backend (issue 17).
                concurrent_units_of_work_do_not_interleave,
                a_report_stores_exactly_its_changed_observations,
                concurrent_findings_keep_the_practice_tally_exact,
                // Ingest throughput (core, issue 7): confirmations per check.
                a_complete_run_confirms_its_subjects_once,
                a_run_of_the_collectors_check_retires_nothing,
            );
        }
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                // PostgreSQL (issue 17): `None` when its half is skipped (said loudly).
                let Some((store, _keep)) = $make.await else {
                    return;
                };
                super::$case(store).await;
            }
        )*
    };
}

fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("rounds.db")).unwrap();
    (Arc::new(store), dir)
}

store_suite!(sqlite_backend, async { Some(sqlite()) });
// PostgreSQL (issue 17): every case again, each in a fresh schema, when
// ROUNDS_TEST_POSTGRES_URL is set.
store_suite!(postgres_backend, async {
    crate::support::pg_store().await.map(|s| (s, ()))
});

#[tokio::test]
async fn sqlite_writes_an_observation_row_only_when_the_payload_changes() {
    let (store, dir) = sqlite();
    enroll(store.as_ref(), "P", "S", "a1").await;
    let rows = || {
        let conn = rusqlite::Connection::open(dir.path().join("rounds.db")).unwrap();
        conn.query_row("SELECT COUNT(*) FROM observations", [], |r| r.get::<_, i64>(0))
            .unwrap()
    };
    for (seq, name) in [(1, "same"), (2, "same"), (3, "same"), (4, "renamed"), (5, "renamed")] {
        let t = at(seq * 3600);
        ingest(store.as_ref(), "a1", seq as u64, t, &[inventory(name, t)], t)
            .await
            .unwrap();
    }
    assert_eq!(rows(), 2, "one row for `same`, one for `renamed`");
}

/// Findings whose evidence moved are rewritten at every report with the status, exception and
/// status_since they had; the dashboard's (practice, rule) tally moves only when one of those
/// changed (migration 0012, issue 16), and then by the changed finding, without counting the
/// practice's findings again (migration 0017, core issue 7). A sentinel written into the tally
/// survives an evidence-only rewrite, and a status change moves it by one.
async fn tally_sentinel_case(store: Arc<dyn Store>, sentinel: impl AsyncFn(Option<i64>) -> (i64, i64)) {
    enroll(store.as_ref(), "P", "S", "a1").await;
    let with_evidence = |status, n: i64| {
        let mut f = finding("r.a", status);
        f.evidence = json!({"age_hours": n});
        f
    };
    store
        .replace_findings("a1", &[with_evidence(Status::Fail, 1)], at(0))
        .await
        .unwrap();
    assert_eq!(sentinel(None).await, (0, 1), "counted at insert: pass 0, fail 1");
    sentinel(Some(99)).await;
    store
        .replace_findings("a1", &[with_evidence(Status::Fail, 2)], at(60))
        .await
        .unwrap();
    assert_eq!(
        sentinel(None).await,
        (99, 1),
        "an evidence-only rewrite does not recount the tally"
    );
    store
        .replace_findings("a1", &[with_evidence(Status::Pass, 3)], at(120))
        .await
        .unwrap();
    assert_eq!(
        sentinel(None).await,
        (100, 0),
        "a status change moves the tally by one (fail to pass), not by a count from scratch"
    );
    assert_eq!(store.agent(&admin(), "a1").await.unwrap().findings.pass, 1);
}

#[tokio::test]
async fn sqlite_moves_a_tally_only_when_a_counted_value_changes() {
    let (store, dir) = sqlite();
    let path = dir.path().join("rounds.db");
    tally_sentinel_case(store, async |set: Option<i64>| {
        let conn = rusqlite::Connection::open(&path).unwrap();
        if let Some(v) = set {
            conn.execute("UPDATE practice_rule_tallies SET pass = ?1", [v]).unwrap();
        }
        conn.query_row(
            "SELECT pass, fail FROM practice_rule_tallies WHERE rule = 'r.a'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    })
    .await;
}

#[tokio::test]
async fn postgres_moves_a_tally_only_when_a_counted_value_changes() {
    let Some(url) = crate::support::pg_schema().await else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(rounds_collector::store::postgres::PgStore::open(&url).await.unwrap());
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    tally_sentinel_case(store, async |set: Option<i64>| {
        if let Some(v) = set {
            client
                .execute("UPDATE practice_rule_tallies SET pass = $1::int8", &[&v])
                .await
                .unwrap();
        }
        let row = client
            .query_one(
                "SELECT pass::int8, fail::int8 FROM practice_rule_tallies WHERE rule = 'r.a'",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    })
    .await;
}

#[test]
fn sqlite_migrates_once_and_refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rounds.db");
    let s = SqliteStore::open(&path).unwrap();
    let v = s.schema_version().unwrap();
    assert!(v >= 2, "findings came with schema version 2");
    drop(s);
    assert_eq!(
        SqliteStore::open(&path).unwrap().schema_version().unwrap(),
        v,
        "reopening keeps the schema"
    );
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", v + 1).unwrap();
    drop(conn);
    let err = SqliteStore::open(&path).unwrap_err().to_string();
    assert!(err.contains("newer than this collector"), "{err}");
}

#[tokio::test]
async fn sqlite_upgrades_a_version_1_database_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rounds.db");
    let s: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    enroll(s.as_ref(), "P", "S", "a1").await;
    drop(s);
    // What a collector of schema version 1 left behind.
    let conn = rusqlite::Connection::open(&path).unwrap();
    // Alerting (issue 12, migration 0006) first: its tables refer to practices.
    // Ingest throughput (core, issue 7, migrations 0016 and 0014): the indexes 0016 dropped
    // back, then 0014's table gone.
    conn.execute_batch(
        "CREATE INDEX observations_by_agent ON observations (agent_id, kind, observed_at);
         CREATE INDEX observations_by_agent_sequence ON observations (agent_id, sequence);
         DROP TABLE agent_evaluations;",
    )
    .unwrap();
    // Retention (issue 17, migration 0013).
    conn.execute_batch(
        "DROP TABLE observation_rollups; DROP INDEX observations_by_time; DROP INDEX observations_by_subject;
         DROP INDEX audit_log_by_time;",
    )
    .unwrap();
    // Runtime silences (issue 12, migration 0010).
    conn.execute_batch("DROP TABLE silences;").unwrap();
    conn.execute_batch(
        "DROP TABLE job_leases; DROP TABLE alert_windows; DROP TABLE alert_outbox;
         DROP TABLE incident_events; DROP TABLE incidents;",
    )
    .unwrap();
    conn.execute_batch(
        "DROP TABLE finding_changes; DROP INDEX observations_by_agent_sequence;
         ALTER TABLE reports DROP COLUMN check_name; ALTER TABLE reports DROP COLUMN complete;
         ALTER TABLE reports DROP COLUMN prev_hash; ALTER TABLE reports DROP COLUMN hash;
         ALTER TABLE latest_observations DROP COLUMN check_name;
         ALTER TABLE latest_observations DROP COLUMN confirmed_at;
         ALTER TABLE latest_observations DROP COLUMN confirmed_sequence;
         ALTER TABLE latest_observations DROP COLUMN future_dated;
         ALTER TABLE observations DROP COLUMN future_dated;
         ALTER TABLE agents DROP COLUMN clock_skew_ms; ALTER TABLE agents DROP COLUMN clock_skew_at;
         DROP TABLE policy_settings; DROP TABLE findings;
         DROP TABLE agent_config_versions; DROP TABLE integrity_events; DROP TABLE delivery_dropped;
         DROP TABLE delivery_gaps; ALTER TABLE reports DROP COLUMN digest;
         ALTER TABLE agents DROP COLUMN reports_stored; ALTER TABLE agents DROP COLUMN chain_sequence;
         ALTER TABLE agents DROP COLUMN chain_hash; ALTER TABLE agents DROP COLUMN config_version;
         ALTER TABLE agents DROP COLUMN config_error; ALTER TABLE agents DROP COLUMN spool_depth;
         ALTER TABLE agents DROP COLUMN spool_error;
         ALTER TABLE agents DROP COLUMN revoked_at; ALTER TABLE api_keys DROP COLUMN expires_at;
         ALTER TABLE api_keys DROP COLUMN revoked_at;
         DROP TABLE tamper_events;
         DROP TABLE report_deliveries; DROP TABLE issued_reports;
         DROP TABLE finding_counts; DROP TABLE practice_rule_tallies; DROP INDEX agents_by_site;
         DROP TABLE check_confirmations; ALTER TABLE latest_observations DROP COLUMN check_epoch;
         PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(conn);
    let s = SqliteStore::open(&path).unwrap();
    assert!(s.schema_version().unwrap() >= 3, "migrated past version 1");
    let s: Arc<dyn Store> = Arc::new(s);
    assert_eq!(
        s.agent(&admin(), "a1").await.unwrap().findings,
        FindingCounts::default()
    );
    s.replace_findings("a1", &[finding("r.a", Status::Fail)], at(0))
        .await
        .unwrap();
    assert_eq!(s.agent(&admin(), "a1").await.unwrap().findings.fail, 1);
    assert!(s.policy_settings_for_agent("a1").await.unwrap().is_default());
    s.set_policy_settings("P", Some("S"), None, Some("[params]\n"), "cli", at(0))
        .await
        .unwrap();
}
