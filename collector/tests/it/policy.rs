//! Per-practice and per-site policy settings: set through the administrative commands (and the
//! real binary), they change what the findings API says for the next report of that practice
//! or site only.

use std::process::Command;

use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use rounds_collector::admin::{self, AdminError, OverridesFile, PolicyChange};
use rounds_collector::store::{Role, StoreError};
use rounds_policies::Pack;
use rounds_protocol::{EnrollResponse, Observation, obs};
use serde_json::Value;

use crate::api::{deliver, enroll_body, findings, firewall, get, metric, post_json, rule, token};
use crate::support::{TestApp, body_text};

async fn body_of(app: &TestApp, req: axum::http::Request<axum::body::Body>) -> String {
    body_text(app.send(req).await).await
}

fn pack() -> Pack {
    Pack::builtin().unwrap()
}

async fn enrolled_at(app: &TestApp, practice: &str, site: &str, hostname: &str) -> EnrollResponse {
    let t = token(app, practice, site).await;
    let resp = app
        .send(post_json("/api/v1/agent/enroll", &enroll_body(&t, hostname), None))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    serde_json::from_str(&body_text(resp).await).unwrap()
}

async fn tech_key(app: &TestApp) -> String {
    admin::apikey_create(app.store(), Role::Technician, None, "t")
        .await
        .unwrap()
}

fn server_inventory(at: DateTime<Utc>) -> Observation {
    let inv = obs::Inventory {
        hostname: "ehr-server".into(),
        os_family: "linux".into(),
        role: Some("server".into()),
        ..Default::default()
    };
    Observation::ok("host", at, &inv)
}

fn workstation_inventory(at: DateTime<Utc>) -> Observation {
    let inv = obs::Inventory {
        hostname: "frontdesk".into(),
        os_family: "linux".into(),
        role: Some("workstation".into()),
        ..Default::default()
    };
    Observation::ok("host", at, &inv)
}

fn disk(used_percent: f64, at: DateTime<Utc>) -> Observation {
    let d = obs::DiskSpace {
        mount_point: "/".into(),
        total_bytes: 100_000_000_000,
        available_bytes: ((100.0 - used_percent) * 1_000_000_000.0) as u64,
        used_percent,
    };
    Observation::ok("/", at, &d)
}

fn backup(last_success_at: DateTime<Utc>, at: DateTime<Utc>) -> Observation {
    let b = obs::Backup {
        tool: "restic".into(),
        repository: "/srv/backup".into(),
        last_success_at: Some(last_success_at),
        last_result: "success".into(),
        last_attempt_at: Some(last_success_at),
        size_bytes: None,
        encrypted: Some(true),
        last_restore_test_at: Some(last_success_at),
        ..obs::Backup::default()
    };
    Observation::ok("nightly", at, &b)
}

fn overrides(name: &str, text: &str) -> Option<OverridesFile> {
    Some(OverridesFile {
        name: name.into(),
        text: text.into(),
    })
}

/// The status of `rule_id` for an agent through the findings API.
async fn status(app: &TestApp, key: &str, agent_id: &str, rule_id: &str) -> Value {
    let (code, body) = findings(app, agent_id, key).await;
    assert_eq!(code, StatusCode::OK);
    rule(&body, rule_id).clone()
}

const DISK: &str = "hipaa.availability.disk_space";

#[tokio::test]
async fn a_practice_threshold_flips_the_disk_finding_and_leaves_other_practices_alone() {
    let app = TestApp::new();
    let key = tech_key(&app).await;
    let smith = enrolled_at(&app, "Smith", "Main", "frontdesk").await;
    let lakeside = enrolled_at(&app, "Lakeside", "Main", "xray").await;
    let t0 = app.state.now();
    let obs = [workstation_inventory(t0), disk(85.0, t0)];
    deliver(&app, &smith, 1, &obs, true).await;
    deliver(&app, &lakeside, 1, &obs, true).await;
    for e in [&smith, &lakeside] {
        assert_eq!(
            status(&app, &key, &e.agent_id, DISK).await["status"],
            "pass",
            "85% under the default 90"
        );
    }
    assert!(
        app.state.evaluator.policies().is_empty(),
        "no settings: the shared built-in policy"
    );

    // Smith lowers the threshold to 80%: its next report fails, Lakeside's still passes.
    let lower = "[params.\"hipaa.availability.disk_space\"]\nmax_used_percent = 80\n";
    let change = PolicyChange {
        practice: "Smith".into(),
        overrides: overrides("smith.toml", lower),
        ..Default::default()
    };
    let stored = admin::policy_set(app.store(), &pack(), change).await.unwrap().unwrap();
    assert_eq!(stored.overrides_toml.as_deref(), Some(lower));
    for (seq, e) in [(2, &smith), (2, &lakeside)] {
        deliver(&app, e, seq, &obs, true).await;
    }
    let f = status(&app, &key, &smith.agent_id, DISK).await;
    assert_eq!(f["status"], "fail", "{f:#}");
    assert_eq!(
        f["evidence"]["params"]["max_used_percent"].as_f64(),
        Some(80.0),
        "{f:#}"
    );
    assert_eq!(status(&app, &key, &lakeside.agent_id, DISK).await["status"], "pass");
    assert_eq!(app.state.evaluator.policies().len(), 1, "one built policy, for Smith");

    // Raising it to 95% at the site passes again at 92% (site over practice).
    let raise = "[params.\"hipaa.availability.disk_space\"]\nmax_used_percent = 95\n";
    let change = PolicyChange {
        practice: "Smith".into(),
        site: Some("Main".into()),
        overrides: overrides("smith-main.toml", raise),
        ..Default::default()
    };
    admin::policy_set(app.store(), &pack(), change).await.unwrap();
    let t1 = app.state.now();
    deliver(&app, &smith, 3, &[workstation_inventory(t1), disk(92.0, t1)], true).await;
    assert_eq!(status(&app, &key, &smith.agent_id, DISK).await["status"], "pass");
    // Reports with the same settings reuse the built policy.
    deliver(&app, &smith, 4, &[disk(92.0, t1)], true).await;
    assert_eq!(app.state.evaluator.policies().len(), 2);

    // Clearing the site's overrides brings the practice's 80% back.
    let change = PolicyChange {
        practice: "Smith".into(),
        site: Some("Main".into()),
        clear_overrides: true,
        ..Default::default()
    };
    assert_eq!(admin::policy_set(app.store(), &pack(), change).await.unwrap(), None);
    deliver(&app, &smith, 5, &[disk(92.0, t1)], true).await;
    assert_eq!(status(&app, &key, &smith.agent_id, DISK).await["status"], "fail");

    let audit = app.store().audit_entries(10).await.unwrap();
    let details: Vec<&str> = audit
        .iter()
        .filter(|e| e.action == "policy.set")
        .map(|e| e.detail.as_str())
        .collect();
    assert_eq!(details.len(), 3, "{audit:#?}");
    assert!(
        details[0].contains("Smith / Main") && details[0].contains("cleared"),
        "{details:?}"
    );
    assert!(details[2].contains("smith.toml"), "{details:?}");
    let metrics = body_of(&app, get("/metrics", Some(crate::support::METRICS_TOKEN))).await;
    assert_eq!(metric(&metrics, "rounds_evaluations_failed_total"), 0);
}

#[tokio::test]
async fn a_site_accepted_risk_keeps_the_firewall_failing_with_an_exception() {
    let app = TestApp::new();
    let key = tech_key(&app).await;
    let main = enrolled_at(&app, "Smith", "Main", "frontdesk").await;
    let annex = enrolled_at(&app, "Smith", "Annex", "annex-desk").await;
    let accept = r#"
[[accept]]
rule = "hipaa.network.firewall"
reason = "imaging PC on an isolated VLAN; vendor forbids the host firewall"
accepted_by = "Dr. Smith, practice owner"
expires = 2099-01-31
"#;
    let change = PolicyChange {
        practice: "Smith".into(),
        site: Some("Main".into()),
        overrides: overrides("main-site.toml", accept),
        ..Default::default()
    };
    admin::policy_set(app.store(), &pack(), change).await.unwrap();
    let t0 = app.state.now();
    for e in [&main, &annex] {
        deliver(&app, e, 1, &[workstation_inventory(t0), firewall(false, t0)], true).await;
    }
    let fw = status(&app, &key, &main.agent_id, "hipaa.network.firewall").await;
    assert_eq!(fw["status"], "fail", "an accepted risk is never a pass: {fw:#}");
    assert_eq!(fw["exception"]["accepted_by"], "Dr. Smith, practice owner");
    assert_eq!(fw["exception"]["expires"], "2099-01-31");
    assert_eq!(fw["exception"]["source"], "Smith / Main (site overrides)");
    let other_site = status(&app, &key, &annex.agent_id, "hipaa.network.firewall").await;
    assert_eq!(other_site["status"], "fail");
    assert!(
        other_site["exception"].is_null(),
        "another site of the practice: {other_site:#}"
    );
    let agents: Value = serde_json::from_str(&body_of(&app, get("/api/v1/agents", Some(&key))).await).unwrap();
    let accepted: Vec<u64> = agents
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["findings"]["accepted"].as_u64().unwrap())
        .collect();
    assert_eq!(accepted.iter().sum::<u64>(), 1, "{agents:#}");
}

#[tokio::test]
async fn the_proposed_profile_tightens_the_backup_age_for_that_practice_only() {
    let app = TestApp::new();
    let key = tech_key(&app).await;
    let smith = enrolled_at(&app, "Smith", "Main", "ehr-server").await;
    let lakeside = enrolled_at(&app, "Lakeside", "Main", "ehr-server").await;
    const RECENT: &str = "hipaa.backup.recent";
    let t0 = app.state.now();
    let obs = [server_inventory(t0), backup(t0 - Duration::hours(60), t0)];
    deliver(&app, &smith, 1, &obs, true).await;
    let f = status(&app, &key, &smith.agent_id, RECENT).await;
    assert_eq!(
        (f["status"].as_str(), f["severity"].as_str()),
        (Some("pass"), Some("high")),
        "60 h < 72 h: {f:#}"
    );

    let change = PolicyChange {
        practice: "Smith".into(),
        profile: Some("hipaa-2025-proposed".into()),
        ..Default::default()
    };
    let stored = admin::policy_set(app.store(), &pack(), change).await.unwrap().unwrap();
    assert_eq!(stored.profile.as_deref(), Some("hipaa-2025-proposed"));
    deliver(&app, &smith, 2, &obs, true).await;
    deliver(&app, &lakeside, 1, &obs, true).await;
    let f = status(&app, &key, &smith.agent_id, RECENT).await;
    assert_eq!(
        (f["status"].as_str(), f["severity"].as_str()),
        (Some("fail"), Some("critical")),
        "{f:#}"
    );
    assert_eq!(status(&app, &key, &lakeside.agent_id, RECENT).await["status"], "pass");

    // Clearing the profile restores the current rule.
    let change = PolicyChange {
        practice: "Smith".into(),
        clear_profile: true,
        ..Default::default()
    };
    admin::policy_set(app.store(), &pack(), change).await.unwrap();
    deliver(&app, &smith, 3, &obs, true).await;
    assert_eq!(status(&app, &key, &smith.agent_id, RECENT).await["status"], "pass");
}

#[tokio::test]
async fn bad_settings_are_refused_with_file_line_and_rule_and_nothing_is_stored() {
    let app = TestApp::new();
    app.store().ensure_site("Smith", "Main", app.state.now()).await.unwrap();
    let typo = "# practice settings\n[params.\"hipaa.availability.disk_space\"]\nmax_used = 80\n";
    let wrong_type = "[params.\"hipaa.backup.recent\"]\nmax_age = 26\n";
    let no_reason =
        "[[accept]]\nrule = \"hipaa.network.firewall\"\nreason = \"\"\naccepted_by = \"x\"\nexpires = 2099-01-01\n";
    let cases: Vec<(&str, PolicyChange, &[&str])> = vec![
        (
            "unknown parameter",
            PolicyChange {
                practice: "Smith".into(),
                overrides: overrides("smith.toml", typo),
                ..Default::default()
            },
            &["smith.toml:3", "hipaa.availability.disk_space", "max_used"],
        ),
        (
            "parameter of the wrong type",
            PolicyChange {
                practice: "Smith".into(),
                site: Some("Main".into()),
                overrides: overrides("main.toml", wrong_type),
                ..Default::default()
            },
            &["main.toml:2", "hipaa.backup.recent", "max_age"],
        ),
        (
            "accepted risk without a reason",
            PolicyChange {
                practice: "Smith".into(),
                overrides: overrides("accept.toml", no_reason),
                ..Default::default()
            },
            &["accept.toml:2", "hipaa.network.firewall", "reason"],
        ),
        (
            "unknown profile",
            PolicyChange {
                practice: "Smith".into(),
                profile: Some("hipaa-2031".into()),
                ..Default::default()
            },
            &["hipaa-2031", "hipaa-2025-proposed"],
        ),
        (
            "profile for a site",
            PolicyChange {
                practice: "Smith".into(),
                site: Some("Main".into()),
                profile: Some("hipaa-2025-proposed".into()),
                ..Default::default()
            },
            &["per practice"],
        ),
        (
            "nothing to change",
            PolicyChange {
                practice: "Smith".into(),
                ..Default::default()
            },
            &["nothing to change"],
        ),
        (
            "unknown practice",
            PolicyChange {
                practice: "Nobody".into(),
                profile: Some("hipaa-2025-proposed".into()),
                ..Default::default()
            },
            &["practice not found: Nobody"],
        ),
        (
            "unknown site",
            PolicyChange {
                practice: "Smith".into(),
                site: Some("Nowhere".into()),
                clear_overrides: true,
                ..Default::default()
            },
            &["site not found"],
        ),
    ];
    for (case, change, needles) in cases {
        let err = admin::policy_set(app.store(), &pack(), change).await.unwrap_err();
        assert!(err.is_usage(), "{case}: exits 64: {err:?}");
        let msg = err.to_string();
        for needle in needles {
            assert!(msg.contains(needle), "{case}: `{needle}` in {msg}");
        }
    }
    assert!(matches!(
        admin::policy_set(
            app.store(),
            &pack(),
            PolicyChange {
                practice: "Nobody".into(),
                clear_profile: true,
                ..Default::default()
            }
        )
        .await,
        Err(AdminError::Store(StoreError::NotFound { .. }))
    ));
    assert_eq!(app.store().policy_settings("Smith", None).await.unwrap(), None);
    assert_eq!(app.store().policy_settings("Smith", Some("Main")).await.unwrap(), None);
    let audit = app.store().audit_entries(50).await.unwrap();
    assert!(audit.iter().all(|e| e.action != "policy.set"), "{audit:#?}");
}

#[tokio::test]
async fn settings_that_no_longer_build_fall_back_to_the_built_in_policy_and_are_counted() {
    let app = TestApp::new();
    let key = tech_key(&app).await;
    let e = enrolled_at(&app, "Smith", "Main", "frontdesk").await;
    // Stored behind the validation's back (e.g. by a newer collector with another pack).
    app.store()
        .set_policy_settings("Smith", None, Some("retired-profile"), None, "test", app.state.now())
        .await
        .unwrap();
    let t0 = app.state.now();
    deliver(&app, &e, 1, &[workstation_inventory(t0), disk(85.0, t0)], true).await;
    assert_eq!(
        status(&app, &key, &e.agent_id, DISK).await["status"],
        "pass",
        "findings stay current"
    );
    let metrics = body_of(&app, get("/metrics", Some(crate::support::METRICS_TOKEN))).await;
    assert_eq!(metric(&metrics, "rounds_evaluations_total"), 1);
    assert_eq!(metric(&metrics, "rounds_evaluations_failed_total"), 1);
    let shown = admin::policy_show(app.store(), &pack(), "Smith", None).await.unwrap();
    assert!(shown.contains("does not build"), "{shown}");
}

/// Runs the real `rounds-collector` on a data dir: exit code, stdout, stderr.
pub(crate) fn collector(data_dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rounds-collector"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_cli_sets_shows_and_refuses_with_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (code, _, err) = collector(&data, &["token", "create", "--practice", "Smith", "--site", "Main"]);
    assert_eq!(code, 0, "{err}");
    let good = dir.path().join("smith.toml");
    std::fs::write(
        &good,
        "[params.\"hipaa.availability.disk_space\"]\nmax_used_percent = 80\n",
    )
    .unwrap();
    let bad = dir.path().join("broken.toml");
    std::fs::write(
        &bad,
        "[params.\"hipaa.availability.disk_space\"]\nmax_used_percent = \"lots\"\n",
    )
    .unwrap();
    let bad_path = bad.display().to_string();
    let good_path = good.display().to_string();

    let (code, out, err) = collector(
        &data,
        &["policy", "set", "--practice", "Smith", "--overrides", &bad_path],
    );
    assert_eq!(code, 64, "{out}{err}");
    assert!(
        err.contains(&format!("{bad_path}:2")) && err.contains("hipaa.availability.disk_space"),
        "{err}"
    );
    let (code, out, _) = collector(&data, &["policy", "show", "--practice", "Smith"]);
    assert_eq!(code, 0);
    assert!(out.contains("no settings"), "nothing stored: {out}");

    let (code, _, err) = collector(
        &data,
        &[
            "policy",
            "set",
            "--practice",
            "Smith",
            "--site",
            "Main",
            "--profile",
            "hipaa-2025-proposed",
        ],
    );
    assert_eq!(code, 2, "clap refuses --profile with --site: {err}");
    let (code, _, err) = collector(&data, &["policy", "set", "--practice", "Nobody", "--clear-profile"]);
    assert_eq!(code, 64, "{err}");

    let (code, out, err) = collector(
        &data,
        &[
            "policy",
            "set",
            "--practice",
            "Smith",
            "--overrides",
            &good_path,
            "--profile",
            "hipaa-2025-proposed",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("stored"), "{out}");
    let (code, out, _) = collector(&data, &["policy", "show", "--practice", "Smith", "--site", "Main"]);
    assert_eq!(code, 0);
    for needle in [
        "practice Smith (inherited)",
        "profile: hipaa-2025-proposed",
        "max_used_percent = 80",
        "site Smith / Main",
        "updated ",
        "hipaa.backup.recent max_age = 48h",
    ] {
        assert!(out.contains(needle), "`{needle}` in {out}");
    }
}
