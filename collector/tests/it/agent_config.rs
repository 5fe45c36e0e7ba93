//! Central agent configuration: set (validated first, versions kept, audited), show, clear,
//! the practice-then-site merge, and serving with ETag and 304.

use std::path::Path;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use rounds_collector::agent_config;
use rounds_protocol::{AgentConfig, EnrollResponse};
use serde_json::Value;

use crate::api::{enrolled, post_json};
use crate::policy::collector;
use crate::support::{TestApp, body_text};

fn config_request(e: &EnrollResponse, etag: Option<&str>) -> Request<Body> {
    let enc = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", e.agent_id, e.agent_secret));
    let mut b = Request::get("/api/v1/agent/config").header(header::AUTHORIZATION, format!("Basic {enc}"));
    if let Some(t) = etag {
        b = b.header(header::IF_NONE_MATCH, t);
    }
    b.body(Body::empty()).unwrap()
}

/// The served configuration and its ETag.
async fn served(app: &TestApp, e: &EnrollResponse) -> (AgentConfig, String) {
    let resp = app.send(config_request(e, None)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let etag = resp.headers()[header::ETAG].to_str().unwrap().to_string();
    let cfg: AgentConfig = serde_json::from_str(&body_text(resp).await).unwrap();
    assert_eq!(cfg.version, etag);
    (cfg, etag)
}

async fn heartbeat_etag(app: &TestApp, e: &EnrollResponse) -> String {
    let hb = serde_json::json!({"protocol": 1, "agent_id": e.agent_id, "sent_at": chrono::Utc::now(),
        "agent_version": "0.1.0", "agent_uptime_secs": 1});
    let resp = app
        .send(post_json(
            "/api/v1/agent/heartbeat",
            &hb,
            Some((&e.agent_id, &e.agent_secret)),
        ))
        .await;
    let ack: Value = serde_json::from_str(&body_text(resp).await).unwrap();
    ack["config_etag"].as_str().unwrap().to_string()
}

async fn set(app: &TestApp, site: Option<&str>, name: &str, text: &str) -> Result<i64, agent_config::AgentConfigError> {
    agent_config::set(
        app.store(),
        30,
        "P",
        site,
        Path::new(name),
        text,
        "cli",
        app.state.now(),
    )
    .await
}

#[tokio::test]
async fn practice_then_site_is_served_with_an_etag_that_changes_and_304_otherwise() {
    let app = TestApp::new();
    let e = enrolled(&app, "P", "frontdesk").await;
    let (default, default_tag) = served(&app, &e).await;
    assert_eq!(default.origin, "default");
    assert_eq!(heartbeat_etag(&app, &e).await, default_tag);

    set(
        &app,
        None,
        "practice.toml",
        "heartbeat_interval_secs = 60\n[checks.firewall]\nenabled = false\n[[backup]]\nname = \"nas\"\nkind = \"folder\"\npath = \"/mnt/nas\"\n",
    )
    .await
    .unwrap();
    let (practice, practice_tag) = served(&app, &e).await;
    assert_eq!(practice.origin, "practice P");
    assert_ne!(practice_tag, default_tag);
    assert_eq!(
        heartbeat_etag(&app, &e).await,
        practice_tag,
        "heartbeats announce the change"
    );
    let resp = app.send(config_request(&e, Some(&practice_tag))).await;
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(resp.headers()[header::ETAG].to_str().unwrap(), practice_tag);

    set(
        &app,
        Some("Main"),
        "main-street.toml",
        "[checks.firewall]\nschedule = \"0 */10 * * * *\"\n[[backup]]\nname = \"usb\"\nkind = \"folder\"\npath = \"/media/usb\"\n",
    )
    .await
    .unwrap();
    let (site, site_tag) = served(&app, &e).await;
    assert_eq!(site.origin, "practice P, site Main");
    assert_ne!(site_tag, practice_tag);
    let resp = app.send(config_request(&e, Some(&practice_tag))).await;
    assert_eq!(resp.status(), StatusCode::OK, "the old ETag no longer matches");
    let c = rounds_agent_config::parse(&site.toml, Path::new("served")).unwrap();
    assert_eq!(c.heartbeat_interval, Some(std::time::Duration::from_secs(60)));
    assert!(!c.is_enabled("firewall"), "the practice disabled it");
    assert_eq!(
        c.schedule_of("firewall").source(),
        "0 */10 * * * *",
        "the site's key on top"
    );
    assert!(
        rounds_agent_config::CHECKS
            .iter()
            .filter(|n| **n != "firewall")
            .all(|n| c.is_enabled(n))
    );
    let names: Vec<&str> = c.backups.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, vec!["nas", "usb"], "named entries merge by name");

    // Clearing the site falls back to the practice's.
    agent_config::clear(app.store(), 30, "P", Some("Main"), "cli", app.state.now())
        .await
        .unwrap();
    assert_eq!(served(&app, &e).await.1, practice_tag);
}

#[tokio::test]
async fn every_change_is_a_version_in_the_history_and_the_audit_log() {
    let app = TestApp::new();
    let _e = enrolled(&app, "P", "frontdesk").await;
    set(&app, None, "a.toml", "heartbeat_interval_secs = 40\n")
        .await
        .unwrap();
    set(&app, None, "b.toml", "heartbeat_interval_secs = 50\n")
        .await
        .unwrap();
    agent_config::clear(app.store(), 30, "P", None, "cli", app.state.now())
        .await
        .unwrap();
    let history = app.store().agent_config_history("P", None).await.unwrap();
    let shown: Vec<(Option<&str>, &str)> = history.iter().map(|r| (r.toml.as_deref(), r.source.as_str())).collect();
    assert_eq!(
        shown,
        vec![
            (Some("heartbeat_interval_secs = 40\n"), "a.toml"),
            (Some("heartbeat_interval_secs = 50\n"), "b.toml"),
            (None, "cleared"),
        ]
    );
    assert!(app.store().agent_config("P", None).await.unwrap().is_none());
    let audit = app.store().audit_entries(10).await.unwrap();
    let actions: Vec<&str> = audit
        .iter()
        .map(|a| a.action.as_str())
        .filter(|a| a.starts_with("agent_config"))
        .collect();
    assert_eq!(
        actions,
        vec!["agent_config.clear", "agent_config.set", "agent_config.set"]
    );
    let text = agent_config::show(app.store(), 30, "P", None).await.unwrap();
    assert!(text.contains("# nothing set for practice P"), "{text}");
    assert!(text.contains("version 2: b.toml"), "{text}");
    assert!(text.contains("origin: default"), "{text}");
}

#[tokio::test]
async fn an_invalid_file_is_refused_naming_file_line_and_key_and_nothing_is_stored() {
    let app = TestApp::new();
    let _e = enrolled(&app, "P", "frontdesk").await;
    let err = set(
        &app,
        None,
        "/etc/rounds/central.toml",
        "heartbeat_interval_secs = 30\n[checks.inventory]\nschedule = \"every tuesday\"\n",
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("/etc/rounds/central.toml:3") && msg.contains("checks.inventory.schedule"),
        "{msg}"
    );
    assert!(err.is_usage());
    let err = set(&app, None, "x.toml", "[checks.backupz]\n").await.unwrap_err();
    assert!(err.to_string().contains("unknown check `backupz`"), "{err}");
    assert!(app.store().agent_config_history("P", None).await.unwrap().is_empty());
    let err = agent_config::set(
        app.store(),
        30,
        "Nope",
        None,
        Path::new("x.toml"),
        "",
        "cli",
        app.state.now(),
    )
    .await
    .unwrap_err();
    assert!(err.is_usage() && err.to_string().contains("Nope"), "{err}");
}

#[test]
fn the_cli_sets_shows_clears_and_refuses_with_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (code, _, err) = collector(&data, &["token", "create", "--practice", "Smith", "--site", "Main"]);
    assert_eq!(code, 0, "{err}");
    let good = dir.path().join("smith.toml");
    std::fs::write(&good, "[checks.inventory]\nschedule = \"0 */5 * * * *\"\n").unwrap();
    let bad = dir.path().join("broken.toml");
    std::fs::write(
        &bad,
        "heartbeat_interval_secs = 30\n\n[checks.inventory]\nenabled = \"yes\"\n",
    )
    .unwrap();

    let (code, _, err) = collector(
        &data,
        &[
            "agent-config",
            "set",
            "--practice",
            "Smith",
            "--file",
            bad.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains(&format!("{}:4", bad.display())) && err.contains("checks.inventory.enabled"),
        "{err}"
    );
    let (code, out, err) = collector(
        &data,
        &[
            "agent-config",
            "set",
            "--practice",
            "Smith",
            "--site",
            "Main",
            "--file",
            good.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("version 1 stored"), "{out}");
    let (code, out, _) = collector(
        &data,
        &["agent-config", "show", "--practice", "Smith", "--site", "Main"],
    );
    assert_eq!(code, 0);
    assert!(out.contains("# set for practice Smith, site Main: version 1"), "{out}");
    assert!(out.contains("origin: site Main"), "{out}");
    assert!(out.contains("schedule = \"0 */5 * * * *\""), "{out}");
    let (code, _, err) = collector(&data, &["agent-config", "show", "--practice", "Nope"]);
    assert_eq!(code, 64, "{err}");
    let (code, out, err) = collector(
        &data,
        &["agent-config", "clear", "--practice", "Smith", "--site", "Main"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("cleared (version 2)"), "{out}");
}
