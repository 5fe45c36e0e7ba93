//! API tests through the router: enrollment, heartbeats, reports, refusals, the automation API.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use rounds_collector::admin;
use rounds_collector::store::Role;
use rounds_protocol::{EnrollResponse, Observation, PROTOCOL_MAJOR, ReportAck, obs};
use serde_json::{Value, json};

use crate::support::{TestApp, body_text};

pub(crate) fn post_json(path: &str, body: &Value, auth: Option<(&str, &str)>) -> Request<Body> {
    post_raw(path, body.to_string(), "application/json", auth)
}

fn post_raw(path: &str, body: String, content_type: &str, auth: Option<(&str, &str)>) -> Request<Body> {
    let mut b = Request::post(path).header(header::CONTENT_TYPE, content_type);
    if let Some((id, secret)) = auth {
        let enc = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        b = b.header(header::AUTHORIZATION, format!("Basic {enc}"));
    }
    b.body(Body::from(body)).unwrap()
}

pub(crate) fn get(path: &str, key: Option<&str>) -> Request<Body> {
    let mut b = Request::get(path);
    if let Some(k) = key {
        b = b.header(header::AUTHORIZATION, format!("Bearer {k}"));
    }
    b.body(Body::empty()).unwrap()
}

pub(crate) fn enroll_body(token: &str, hostname: &str) -> Value {
    json!({"protocol": PROTOCOL_MAJOR, "token": token, "hostname": hostname, "os": "linux", "agent_version": "0.1.0"})
}

pub(crate) async fn token(app: &TestApp, practice: &str, site: &str) -> String {
    admin::token_create(app.store(), practice, site, std::time::Duration::from_secs(3600))
        .await
        .unwrap()
}

pub(crate) async fn enrolled(app: &TestApp, practice: &str, hostname: &str) -> EnrollResponse {
    let t = token(app, practice, "Main").await;
    let resp = app
        .send(post_json("/api/v1/agent/enroll", &enroll_body(&t, hostname), None))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    serde_json::from_str(&body_text(resp).await).unwrap()
}

fn report(agent_id: &str, sequence: u64) -> Value {
    let inv = obs::Inventory {
        hostname: "frontdesk".into(),
        os_family: "linux".into(),
        ..Default::default()
    };
    let o = Observation::ok("host", chrono::Utc::now(), &inv);
    json!({"protocol": 1, "agent_id": agent_id, "sequence": sequence, "created_at": chrono::Utc::now(), "observations": [o]})
}

#[tokio::test]
async fn enrollment_trades_a_token_once() {
    let app = TestApp::new();
    let t = token(&app, "Smith Family Practice", "Main St").await;
    let resp = app
        .send(post_json("/api/v1/agent/enroll", &enroll_body(&t, "frontdesk"), None))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let e: EnrollResponse = serde_json::from_str(&body_text(resp).await).unwrap();
    assert_eq!(e.practice, "Smith Family Practice");
    assert_eq!(e.site, "Main St");
    assert!(e.agent_secret.len() >= 64);
    assert_eq!(e.heartbeat_interval_secs, 30);

    // The secret is not stored, only its hash.
    let auth = app.store().agent_auth(&e.agent_id).await.unwrap().unwrap();
    assert_ne!(auth.secret_hash, e.agent_secret);
    assert!(!auth.secret_hash.contains(&e.agent_secret));

    let again = app
        .send(post_json("/api/v1/agent/enroll", &enroll_body(&t, "other"), None))
        .await;
    assert_eq!(again.status(), StatusCode::FORBIDDEN);
    assert!(body_text(again).await.contains("enrollment token already used"));
}

#[tokio::test]
async fn enrollment_whose_audit_entry_fails_leaves_the_token_unused_and_no_agent() {
    let app = TestApp::new();
    let t = token(&app, "P", "Main").await;
    // Make every audit write fail, under the store, as a full disk or a bug would.
    let conn = rusqlite::Connection::open(app.db_path()).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER fail_audit BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'injected audit failure'); END;",
    )
    .unwrap();
    let resp = app
        .send(post_json("/api/v1/agent/enroll", &enroll_body(&t, "frontdesk"), None))
        .await;
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    // The 500 says nothing of the cause, but names the request id its log lines carry.
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let body = body_text(resp).await;
    assert_eq!(body, format!("internal server error (request id {id})"));
    assert!(!body.contains("injected"), "{body}");
    let everyone = rounds_collector::store::Scope {
        role: Role::Admin,
        practice_id: None,
    };
    assert!(
        app.store().agents(&everyone).await.unwrap().is_empty(),
        "no agent stored"
    );

    conn.execute_batch("DROP TRIGGER fail_audit;").unwrap();
    let resp = app
        .send(post_json("/api/v1/agent/enroll", &enroll_body(&t, "frontdesk"), None))
        .await;
    assert_eq!(resp.status(), StatusCode::OK, "the token is still unused");
    assert_eq!(app.store().agents(&everyone).await.unwrap().len(), 1);
    let audit = app.store().audit_entries(10).await.unwrap();
    assert_eq!(
        audit.iter().filter(|e| e.action == "agent.enroll").count(),
        1,
        "{audit:?}"
    );
}

#[tokio::test]
async fn unknown_and_expired_tokens_are_refused_and_say_which() {
    let app = TestApp::new();
    let resp = app
        .send(post_json(
            "/api/v1/agent/enroll",
            &enroll_body("rnd_tok_nope", "x"),
            None,
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(body_text(resp).await.contains("enrollment token unknown"));

    let t = token(&app, "P", "S").await;
    app.advance(3601);
    let resp = app
        .send(post_json("/api/v1/agent/enroll", &enroll_body(&t, "x"), None))
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(body_text(resp).await.contains("enrollment token expired"));
    let agents = app
        .store()
        .agents(&rounds_collector::store::Scope {
            role: Role::Admin,
            practice_id: None,
        })
        .await;
    assert!(agents.unwrap().is_empty(), "a refused enrollment stores no agent");
}

#[tokio::test]
async fn report_is_stored_once_and_acknowledged_again() {
    let app = TestApp::new();
    let e = enrolled(&app, "P", "frontdesk").await;
    let auth = Some((e.agent_id.as_str(), e.agent_secret.as_str()));
    let body = report(&e.agent_id, 1);
    for expect_stored in [true, false] {
        let resp = app.send(post_json("/api/v1/agent/reports", &body, auth)).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let ack: ReportAck = serde_json::from_str(&body_text(resp).await).unwrap();
        assert_eq!(
            ack,
            ReportAck {
                sequence: 1,
                stored: expect_stored,
                next_expected: Some(2),
            }
        );
    }
    assert_eq!(app.store().report_count().await.unwrap(), 1);
}

/// Each refusal: status, a word of the message, and nothing stored.
#[tokio::test]
async fn refused_reports_store_nothing() {
    let app = TestApp::with_settings(|s| s.max_body_bytes = 4096);
    let e = enrolled(&app, "P", "frontdesk").await;
    let good = Some((e.agent_id.as_str(), e.agent_secret.as_str()));
    let other = enrolled(&app, "P", "backoffice").await;
    let mut huge = report(&e.agent_id, 3);
    huge["observations"][0]["data"]["padding"] = json!("x".repeat(5000));
    let mut v2 = report(&e.agent_id, 4);
    v2["protocol"] = json!(2);
    let mut no_version = report(&e.agent_id, 5);
    no_version.as_object_mut().unwrap().remove("protocol");
    let mut no_seq = report(&e.agent_id, 6);
    no_seq.as_object_mut().unwrap().remove("sequence");
    // The collector's own check and its record of the agent's journal are not the agent's to
    // write: a forged "journal intact" row would hide a broken chain.
    let mut reserved_check = report(&e.agent_id, 1);
    reserved_check["check"] = json!(rounds_collector::store::common::JOURNAL_CHECK);
    reserved_check["complete"] = json!(true);
    let mut forged_journal = report(&e.agent_id, 1);
    forged_journal["observations"][0]["kind"] = json!("audit.log");
    forged_journal["observations"][0]["subject"] = json!(rounds_collector::store::common::JOURNAL_SUBJECT);
    forged_journal["observations"][0]["data"] =
        json!({"path": "rounds-agent journal", "present": true, "tamper_events": []});

    let cases: Vec<(&str, Request<Body>, StatusCode, &str)> = vec![
        (
            "wrong secret",
            post_json(
                "/api/v1/agent/reports",
                &report(&e.agent_id, 1),
                Some((&e.agent_id, "rnd_agt_wrong")),
            ),
            StatusCode::UNAUTHORIZED,
            "invalid agent credentials",
        ),
        (
            "no credentials",
            post_json("/api/v1/agent/reports", &report(&e.agent_id, 1), None),
            StatusCode::UNAUTHORIZED,
            "missing",
        ),
        (
            "unknown agent",
            post_json("/api/v1/agent/reports", &report("nobody", 1), Some(("nobody", "x"))),
            StatusCode::UNAUTHORIZED,
            "invalid agent credentials",
        ),
        (
            "other agent's id",
            post_json("/api/v1/agent/reports", &report(&other.agent_id, 1), good),
            StatusCode::FORBIDDEN,
            "may not send on behalf",
        ),
        (
            "not json",
            post_raw("/api/v1/agent/reports", "{not json".into(), "application/json", good),
            StatusCode::BAD_REQUEST,
            "not valid JSON",
        ),
        (
            "wrong content type",
            post_raw("/api/v1/agent/reports", "x".into(), "text/plain", good),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "application/json",
        ),
        (
            "over the size limit",
            post_json("/api/v1/agent/reports", &huge, good),
            StatusCode::PAYLOAD_TOO_LARGE,
            "4096 bytes",
        ),
        (
            "unknown major version",
            post_json("/api/v1/agent/reports", &v2, good),
            StatusCode::BAD_REQUEST,
            "unsupported protocol major version 2",
        ),
        (
            "no version",
            post_json("/api/v1/agent/reports", &no_version, good),
            StatusCode::BAD_REQUEST,
            "missing field `protocol`",
        ),
        (
            "missing field",
            post_json("/api/v1/agent/reports", &no_seq, good),
            StatusCode::UNPROCESSABLE_ENTITY,
            "sequence",
        ),
        (
            "sequence zero",
            post_json("/api/v1/agent/reports", &report(&e.agent_id, 0), good),
            StatusCode::UNPROCESSABLE_ENTITY,
            "sequence",
        ),
        (
            "the collector's own check",
            post_json("/api/v1/agent/reports", &reserved_check, good),
            StatusCode::UNPROCESSABLE_ENTITY,
            "`collector.chain` is reserved",
        ),
        (
            "the collector's record of the journal",
            post_json("/api/v1/agent/reports", &forged_journal, good),
            StatusCode::UNPROCESSABLE_ENTITY,
            "observation 0: `audit.log` of subject `rounds-agent journal` is the collector's own",
        ),
        (
            "the collector's own check in a batch",
            post_json(
                "/api/v1/agent/reports/batch",
                &json!({"protocol": 1, "agent_id": e.agent_id, "reports": [report(&e.agent_id, 1), reserved_check]}),
                good,
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "report 1 of the batch: field `check`: `collector.chain` is reserved",
        ),
    ];
    for (name, req, status, needle) in cases {
        let resp = app.send(req).await;
        assert_eq!(resp.status(), status, "{name}");
        let body = body_text(resp).await;
        assert!(body.contains(needle), "{name}: {body}");
        assert!(
            serde_json::from_str::<Value>(&body).is_ok(),
            "{name}: error body is JSON: {body}"
        );
    }
    assert_eq!(
        app.store().report_count().await.unwrap(),
        0,
        "no refused report was stored"
    );
}

#[tokio::test]
async fn heartbeat_marks_online_and_silence_offline() {
    let app = TestApp::new();
    let e = enrolled(&app, "Smith", "frontdesk").await;
    let key = admin::apikey_create(app.store(), Role::Admin, None, "test")
        .await
        .unwrap();
    let hb = json!({"protocol": 1, "agent_id": e.agent_id, "sent_at": chrono::Utc::now(), "agent_version": "0.1.0", "agent_uptime_secs": 5});
    let resp = app
        .send(post_json(
            "/api/v1/agent/heartbeat",
            &hb,
            Some((&e.agent_id, &e.agent_secret)),
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);

    let agents: Value =
        serde_json::from_str(&body_text(app.send(get("/api/v1/agents", Some(&key))).await).await).unwrap();
    assert_eq!(agents[0]["hostname"], "frontdesk");
    assert_eq!(agents[0]["online"], true);
    assert!(agents[0]["last_seen_at"].is_string());

    app.advance(91);
    let agents: Value =
        serde_json::from_str(&body_text(app.send(get("/api/v1/agents", Some(&key))).await).await).unwrap();
    assert_eq!(agents[0]["online"], false);

    let practices: Value =
        serde_json::from_str(&body_text(app.send(get("/api/v1/practices", Some(&key))).await).await).unwrap();
    assert_eq!(practices[0]["name"], "Smith");
    assert_eq!(practices[0]["sites"][0]["agents"], 1);
    assert_eq!(practices[0]["sites"][0]["agents_online"], 0);
}

#[tokio::test]
async fn automation_api_needs_a_valid_key_and_respects_the_practice_scope() {
    let app = TestApp::new();
    let a = enrolled(&app, "Alpha Clinic", "a-host").await;
    let b = enrolled(&app, "Beta Dental", "b-host").await;
    for (auth, status) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some("rnd_key_bogus"), StatusCode::UNAUTHORIZED),
    ] {
        let resp = app.send(get("/api/v1/agents", auth)).await;
        assert_eq!(resp.status(), status);
    }
    let pm = admin::apikey_create(app.store(), Role::PracticeManager, Some("Alpha Clinic"), "pm")
        .await
        .unwrap();
    let agents: Value =
        serde_json::from_str(&body_text(app.send(get("/api/v1/agents", Some(&pm))).await).await).unwrap();
    let hosts: Vec<&str> = agents
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["hostname"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, vec!["a-host"]);
    let resp = app
        .send(get(&format!("/api/v1/agents/{}/observations", b.agent_id), Some(&pm)))
        .await;
    assert_eq!(
        resp.status(),
        StatusCode::NOT_FOUND,
        "another practice's agent is invisible"
    );
    let resp = app
        .send(get(&format!("/api/v1/agents/{}/observations", a.agent_id), Some(&pm)))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn latest_inventory_is_found_through_the_api() {
    let app = TestApp::new();
    let e = enrolled(&app, "P", "frontdesk").await;
    let auth = Some((e.agent_id.as_str(), e.agent_secret.as_str()));
    let resp = app
        .send(post_json("/api/v1/agent/reports", &report(&e.agent_id, 7), auth))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let key = admin::apikey_create(app.store(), Role::Technician, None, "t")
        .await
        .unwrap();
    let obs: Value = serde_json::from_str(
        &body_text(
            app.send(get(
                &format!("/api/v1/agents/{}/observations?kind=inventory", e.agent_id),
                Some(&key),
            ))
            .await,
        )
        .await,
    )
    .unwrap();
    assert_eq!(obs[0]["kind"], "inventory");
    assert_eq!(obs[0]["sequence"], 7);
    assert_eq!(obs[0]["data"]["hostname"], "frontdesk");
}

#[tokio::test]
async fn config_has_an_etag_and_answers_not_modified() {
    let app = TestApp::new();
    let e = enrolled(&app, "P", "h").await;
    let enc = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", e.agent_id, e.agent_secret));
    let req = || Request::get("/api/v1/agent/config").header(header::AUTHORIZATION, format!("Basic {enc}"));
    let resp = app.send(req().body(Body::empty()).unwrap()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let etag = resp.headers()[header::ETAG].to_str().unwrap().to_string();
    let cfg: Value = serde_json::from_str(&body_text(resp).await).unwrap();
    // Nobody set a configuration: the full default, every check, the collector's interval.
    let text = cfg["toml"].as_str().unwrap();
    assert!(text.starts_with("heartbeat_interval_secs = 30\n"), "{text}");
    let parsed = rounds_agent_config::parse(text, std::path::Path::new("served")).unwrap();
    assert_eq!(parsed.checks.len(), rounds_agent_config::CHECKS.len());
    assert_eq!(cfg["version"], etag.as_str());
    let resp = app
        .send(req().header(header::IF_NONE_MATCH, &etag).body(Body::empty()).unwrap())
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn health_metrics_and_openapi_answer() {
    let app = TestApp::new();
    let resp = app.send(get("/healthz", None)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    let _ = enrolled(&app, "P", "h").await;
    let metrics = body_text(app.send(get("/metrics", Some(crate::support::METRICS_TOKEN))).await).await;
    assert!(metrics.contains("rounds_enrollments_total 1"), "{metrics}");
    assert!(metrics.contains("rounds_agents{state=\"online\"} 0"), "{metrics}");
    assert!(metrics.contains("rounds_agents{state=\"offline\"} 1"), "{metrics}");
    assert!(metrics.contains("rounds_agents_failing 0"), "{metrics}");
    let doc: Value = serde_json::from_str(&body_text(app.send(get("/api/v1/openapi.json", None)).await).await).unwrap();
    for path in [
        "/api/v1/agent/reports",
        "/api/v1/agents",
        "/api/v1/agents/{agent_id}/findings",
        "/api/v1/practices",
        "/healthz",
    ] {
        assert!(doc["paths"].get(path).is_some(), "openapi documents {path}");
    }
}

pub(crate) fn inventory(at: chrono::DateTime<chrono::Utc>) -> Observation {
    let inv = obs::Inventory {
        hostname: "frontdesk".into(),
        os_family: "linux".into(),
        ..Default::default()
    };
    Observation::ok("host", at, &inv)
}

pub(crate) fn firewall(enabled: bool, at: chrono::DateTime<chrono::Utc>) -> Observation {
    let fw = obs::Firewall {
        backend: "ufw".into(),
        enabled,
        default_inbound: if enabled { "deny" } else { "allow" }.into(),
        profiles: Vec::new(),
    };
    Observation::ok("host", at, &fw)
}

pub(crate) fn report_of(agent_id: &str, sequence: u64, observations: &[Observation]) -> Value {
    // Dated by its observations, so that sending the same report again is the same content.
    let created_at = observations.first().map_or_else(chrono::Utc::now, |o| o.observed_at);
    json!({"protocol": 1, "agent_id": agent_id, "sequence": sequence, "created_at": created_at, "observations": observations})
}

/// Sends a report and checks it was stored (or, `stored: false`, acknowledged again).
pub(crate) async fn deliver(
    app: &TestApp,
    e: &EnrollResponse,
    sequence: u64,
    observations: &[Observation],
    stored: bool,
) {
    let resp = app
        .send(post_json(
            "/api/v1/agent/reports",
            &report_of(&e.agent_id, sequence, observations),
            Some((&e.agent_id, &e.agent_secret)),
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let ack: ReportAck = serde_json::from_str(&body_text(resp).await).unwrap();
    assert_eq!(ack.stored, stored);
}

/// `GET /api/v1/agents/{id}/findings` with `key`: the status and the JSON body.
pub(crate) async fn findings(app: &TestApp, agent_id: &str, key: &str) -> (StatusCode, Value) {
    let resp = app
        .send(get(&format!("/api/v1/agents/{agent_id}/findings"), Some(key)))
        .await;
    let status = resp.status();
    (status, serde_json::from_str(&body_text(resp).await).unwrap())
}

pub(crate) fn rule<'v>(findings: &'v Value, id: &str) -> &'v Value {
    findings
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == id)
        .unwrap_or_else(|| panic!("no finding for {id} in {findings:#}"))
}

pub(crate) fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_failing_firewall_is_a_finding_until_a_report_fixes_it() {
    let app = TestApp::new();
    let e = enrolled(&app, "Smith Family Practice", "frontdesk").await;
    let other = enrolled(&app, "Lakeside Dental", "xray").await;
    let tech = admin::apikey_create(app.store(), Role::Technician, None, "t")
        .await
        .unwrap();
    let pm_smith = admin::apikey_create(app.store(), Role::PracticeManager, Some("Smith Family Practice"), "pm")
        .await
        .unwrap();
    let pm_lakeside = admin::apikey_create(app.store(), Role::PracticeManager, Some("Lakeside Dental"), "pm")
        .await
        .unwrap();

    // Before any report: no findings, but the agent is there.
    let (status, body) = findings(&app, &e.agent_id, &tech).await;
    assert_eq!((status, body), (StatusCode::OK, json!([])));

    let t0 = app.state.now();
    deliver(&app, &e, 1, &[inventory(t0), firewall(false, t0)], true).await;
    let (status, body) = findings(&app, &e.agent_id, &tech).await;
    assert_eq!(status, StatusCode::OK);
    let fw = rule(&body, "hipaa.network.firewall");
    assert_eq!(fw["status"], "fail", "{fw:#}");
    let metrics = body_text(app.send(get("/metrics", Some(crate::support::METRICS_TOKEN))).await).await;
    assert!(metrics.contains("rounds_agents_failing 1"), "{metrics}");
    assert_eq!(fw["severity"], "high");
    assert!(fw["title"].as_str().unwrap().contains("firewall"), "{fw:#}");
    assert!(
        fw["citations"]
            .as_array()
            .is_some_and(|c| !c.is_empty() && c.iter().all(|c| c.is_string())),
        "{fw:#}"
    );
    assert!(
        fw["remediation"].as_str().is_some_and(|r| !r.is_empty()),
        "a failure says how to fix it"
    );
    assert!(fw["message"].as_str().unwrap().contains("enabled: false"), "{fw:#}");
    assert_eq!(fw["evidence"]["failing"], json!(["host"]));
    assert!(fw.get("exception").is_some_and(Value::is_null), "{fw:#}");
    let failed_since = fw["status_since"].as_str().unwrap().to_string();
    assert_eq!(fw["evaluated_at"], fw["status_since"]);
    // Every rule of the pack has a finding; nothing observed is an error, not a pass.
    let policy_rules = app.state.policy.rules.len();
    assert_eq!(body.as_array().unwrap().len(), policy_rules);
    assert_eq!(rule(&body, "hipaa.backup.recent")["status"], "error");
    let counts = |agents: &Value| agents[0]["findings"].clone();
    let agents: Value =
        serde_json::from_str(&body_text(app.send(get("/api/v1/agents", Some(&pm_smith))).await).await).unwrap();
    assert_eq!(counts(&agents)["fail"], 1, "{agents:#}");

    // The same report again is acknowledged and not evaluated again.
    deliver(&app, &e, 1, &[inventory(t0), firewall(false, t0)], false).await;

    // Another report with only some checks: the firewall stays failing, and since the first time.
    app.advance(60);
    let t1 = app.state.now();
    deliver(&app, &e, 2, &[inventory(t1)], true).await;
    let (_, body) = findings(&app, &e.agent_id, &tech).await;
    let fw = rule(&body, "hipaa.network.firewall");
    assert_eq!(
        (fw["status"].as_str(), fw["status_since"].as_str()),
        (Some("fail"), Some(failed_since.as_str()))
    );
    assert_ne!(fw["evaluated_at"], fw["status_since"]);

    // The fix flips it to pass, with a new status_since and no remediation.
    app.advance(60);
    let t2 = app.state.now();
    deliver(&app, &e, 3, &[firewall(true, t2)], true).await;
    let (_, body) = findings(&app, &e.agent_id, &pm_smith).await;
    let fw = rule(&body, "hipaa.network.firewall");
    assert_eq!(fw["status"], "pass", "{fw:#}");
    let since = fw["status_since"].as_str().unwrap();
    assert_ne!(since, failed_since);
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(since).unwrap().timestamp_millis(),
        t2.timestamp_millis()
    );
    assert!(fw["remediation"].is_null());

    // Another practice's key does not see it; nor does anyone see an agent that does not exist.
    for (case, agent_id, key) in [
        ("other practice", e.agent_id.as_str(), pm_lakeside.as_str()),
        ("no such agent", "no-such-agent", tech.as_str()),
    ] {
        let (status, body) = findings(&app, agent_id, key).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{case}");
        assert!(body["error"].as_str().unwrap().contains("not found"), "{case}: {body}");
    }
    assert_eq!(findings(&app, &other.agent_id, &pm_lakeside).await.0, StatusCode::OK);
    let resp = app
        .send(get(&format!("/api/v1/agents/{}/findings", e.agent_id), None))
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let metrics = body_text(app.send(get("/metrics", Some(crate::support::METRICS_TOKEN))).await).await;
    assert_eq!(metric(&metrics, "rounds_evaluations_total"), 3, "one per stored report");
    assert_eq!(metric(&metrics, "rounds_evaluations_failed_total"), 0);
}

#[tokio::test]
async fn without_an_inventory_the_enrolled_os_decides_and_an_unknown_os_stores_the_report() {
    let app = TestApp::new();
    let tech = admin::apikey_create(app.store(), Role::Technician, None, "t")
        .await
        .unwrap();
    let e = enrolled(&app, "P", "frontdesk").await;
    let t0 = app.state.now();
    deliver(&app, &e, 1, &[firewall(false, t0)], true).await;
    let (_, body) = findings(&app, &e.agent_id, &tech).await;
    assert_eq!(
        rule(&body, "hipaa.network.firewall")["status"],
        "fail",
        "judged as linux, the enrolled os"
    );

    // An OS the policy does not know: the report is stored and acknowledged, nothing evaluated.
    let t = token(&app, "P", "Main").await;
    let mut body = enroll_body(&t, "odd");
    body["os"] = json!("plan9");
    let resp = app.send(post_json("/api/v1/agent/enroll", &body, None)).await;
    let odd: EnrollResponse = serde_json::from_str(&body_text(resp).await).unwrap();
    deliver(&app, &odd, 1, &[firewall(false, t0)], true).await;
    assert_eq!(findings(&app, &odd.agent_id, &tech).await.1, json!([]));
    let metrics = body_text(app.send(get("/metrics", Some(crate::support::METRICS_TOKEN))).await).await;
    assert_eq!(metric(&metrics, "rounds_evaluations_total"), 1);
    assert_eq!(metric(&metrics, "rounds_evaluations_failed_total"), 1);
    // Its inventory names the family: the next report is evaluated.
    let inv = Observation::ok(
        "host",
        t0,
        &obs::Inventory {
            os_family: "windows".into(),
            ..Default::default()
        },
    );
    deliver(&app, &odd, 2, &[inv], true).await;
    let (_, body) = findings(&app, &odd.agent_id, &tech).await;
    assert_eq!(rule(&body, "hipaa.network.firewall")["status"], "fail");
}

/// `GET` a JSON body with `key`, asserting the status.
async fn get_json(app: &TestApp, path: &str, key: &str, expect: StatusCode) -> Value {
    let resp = app.send(get(path, Some(key))).await;
    assert_eq!(resp.status(), expect, "{path}");
    serde_json::from_str(&body_text(resp).await).unwrap()
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        .replace('+', "%2B")
}

#[tokio::test]
async fn finding_history_and_the_state_as_at_a_past_time_through_the_api() {
    let app = TestApp::new();
    let tech = admin::apikey_create(app.store(), Role::Technician, None, "t")
        .await
        .unwrap();
    let e = enrolled(&app, "Smith Family Practice", "frontdesk").await;
    let other = enrolled(&app, "Lakeside Dental", "xray").await;
    let start = app.state.now();
    deliver(&app, &e, 1, &[inventory(start), firewall(true, start)], true).await;
    app.advance(600);
    let t_fail = app.state.now();
    deliver(&app, &e, 2, &[firewall(false, t_fail)], true).await;
    // Another agent fails at the same time: never in this agent's history.
    deliver(&app, &other, 1, &[inventory(t_fail), firewall(false, t_fail)], true).await;
    app.advance(600);
    let t_pass = app.state.now();
    deliver(&app, &e, 3, &[firewall(true, t_pass)], true).await;

    let path = format!(
        "/api/v1/agents/{}/findings/history?from={}&to={}",
        e.agent_id,
        rfc3339(start),
        rfc3339(t_pass + chrono::Duration::seconds(1))
    );
    let history = get_json(&app, &path, &tech, StatusCode::OK).await;
    let fw: Vec<&Value> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["rule"] == "hipaa.network.firewall" && !c["old_status"].is_null())
        .collect();
    assert_eq!(fw.len(), 2, "pass -> fail -> pass: {history:#}");
    assert_eq!(
        (&fw[0]["old_status"], &fw[0]["new_status"]),
        (&json!("pass"), &json!("fail"))
    );
    assert_eq!(fw[0]["at"], json!(t_fail), "recorded at the collector's time");
    assert_eq!(fw[0]["evidence"]["failing"], json!(["host"]), "the evidence then");
    assert_eq!(
        (&fw[1]["old_status"], &fw[1]["new_status"]),
        (&json!("fail"), &json!("pass"))
    );
    assert_eq!(fw[1]["at"], json!(t_pass));
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["agent_id"] == e.agent_id.as_str()),
        "{history:#}"
    );

    // As at a time between the two changes: failing; now: passing.
    let between = t_fail + chrono::Duration::seconds(300);
    let then = get_json(
        &app,
        &format!("/api/v1/agents/{}/findings?at={}", e.agent_id, rfc3339(between)),
        &tech,
        StatusCode::OK,
    )
    .await;
    assert_eq!(rule(&then, "hipaa.network.firewall")["status"], "fail");
    let (_, now) = findings(&app, &e.agent_id, &tech).await;
    assert_eq!(rule(&now, "hipaa.network.firewall")["status"], "pass");

    // Bad or missing times are refused with the parameter named; other practices see nothing.
    let bad = get_json(
        &app,
        &format!("/api/v1/agents/{}/findings?at=yesterday", e.agent_id),
        &tech,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(bad["error"].as_str().unwrap().contains("`at`"), "{bad}");
    let missing = get_json(
        &app,
        &format!("/api/v1/agents/{}/findings/history", e.agent_id),
        &tech,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(missing["error"].as_str().unwrap().contains("`from`"), "{missing}");
    let pm_lakeside = admin::apikey_create(app.store(), Role::PracticeManager, Some("Lakeside Dental"), "pm")
        .await
        .unwrap();
    get_json(&app, &path, &pm_lakeside, StatusCode::NOT_FOUND).await;
}
