//! Tamper acknowledgement (issue 11) through the router: a tamper event on a watched log holds
//! the log-integrity finding failing across passing observations until a person acknowledges
//! it (API or the service the CLI calls); who, when and why are kept in the finding history and
//! the audit log; a later tamper opens again; the endpoint is scoped.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use rounds_collector::admin;
use rounds_collector::store::{Role, Scope};
use rounds_collector::tamper::{self, AckError, LOG_INTEGRITY_RULE};
use rounds_protocol::{EnrollResponse, Observation, obs};
use serde_json::{Value, json};

use crate::api::{deliver, enrolled, findings, get, inventory, rule};
use crate::support::{TestApp, body_text};

const PATH: &str = "/var/log/ehr/access.log";

/// An `audit.log` observation: appended (pass) or, with `tamper`, the run that found it.
fn audit_log(
    at: chrono::DateTime<chrono::Utc>,
    tamper: Option<(&str, &str)>,
    last_tamper: Option<(&str, &str)>,
) -> Observation {
    let event = |(id, kind): (&str, &str)| obs::TamperEvent {
        id: id.into(),
        kind: kind.into(),
        detected_at: at,
        range_start: Some(4096),
        range_end: Some(8192),
        ..Default::default()
    };
    let tampered = tamper.is_some();
    let data = obs::AuditLog {
        path: PATH.into(),
        present: true,
        append_only: Some(!tampered),
        truncated: Some(false),
        rewritten: Some(tampered),
        world_writable: Some(false),
        change: Some(if tampered { "rewritten" } else { "appended" }.into()),
        size_bytes: Some(10_000),
        tamper: tamper.map(event),
        last_tamper: last_tamper.map(event),
        ..Default::default()
    };
    Observation::ok(PATH, at, &data)
}

async fn integrity(app: &TestApp, e: &EnrollResponse, key: &str) -> Value {
    let (status, f) = findings(app, &e.agent_id, key).await;
    assert_eq!(status, StatusCode::OK, "{f}");
    rule(&f, LOG_INTEGRITY_RULE).clone()
}

fn ack_request(agent_id: &str, tamper_id: &str, key: &str, by: &str, reason: &str) -> Request<Body> {
    Request::post(format!("/api/v1/agents/{agent_id}/tamper/{tamper_id}/acknowledge"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .body(Body::from(json!({"by": by, "reason": reason}).to_string()))
        .unwrap()
}

async fn ack(app: &TestApp, agent_id: &str, tamper_id: &str, key: &str) -> (StatusCode, Value) {
    let resp = app
        .send(ack_request(
            agent_id,
            tamper_id,
            key,
            "Dana Tech",
            "vendor support edited the log by hand",
        ))
        .await;
    let status = resp.status();
    let text = body_text(resp).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[tokio::test]
async fn a_tamper_is_held_failing_until_acknowledged_and_a_new_one_opens_again() {
    let app = TestApp::new();
    let tech = admin::apikey_create(app.store(), Role::Technician, None, "t")
        .await
        .unwrap();
    let e = enrolled(&app, "Smith Family Practice", "frontdesk").await;
    let start = app.state.now();
    deliver(&app, &e, 1, &[inventory(start), audit_log(start, None, None)], true).await;
    assert_eq!(integrity(&app, &e, &tech).await["status"], "pass");

    app.advance(60);
    let t1 = app.state.now();
    let t1_id = "tmp-rewritten-1";
    deliver(
        &app,
        &e,
        2,
        &[audit_log(t1, Some((t1_id, "rewritten")), Some((t1_id, "rewritten")))],
        true,
    )
    .await;
    assert_eq!(integrity(&app, &e, &tech).await["status"], "fail");

    // The next look passes by the policy (only appended), naming the tamper as last_tamper:
    // still failing, and saying why.
    app.advance(60);
    let now = app.state.now();
    deliver(&app, &e, 3, &[audit_log(now, None, Some((t1_id, "rewritten")))], true).await;
    let f = integrity(&app, &e, &tech).await;
    assert_eq!(f["status"], "fail", "{f:#}");
    assert!(f["message"].as_str().unwrap().contains(t1_id), "{f:#}");
    assert_eq!(f["evidence"]["open_tampers"][0]["id"], t1_id);
    // Even when the agent no longer names it (its state was removed): still failing.
    app.advance(60);
    let now = app.state.now();
    deliver(&app, &e, 4, &[audit_log(now, None, None)], true).await;
    assert_eq!(integrity(&app, &e, &tech).await["status"], "fail");

    // Acknowledged through the API: released, and the change names who and why.
    app.advance(60);
    let t_ack = app.state.now();
    let (status, body) = ack(&app, &e.agent_id, t1_id, &tech).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["acknowledged"]["by"], "Dana Tech");
    let f = integrity(&app, &e, &tech).await;
    assert_eq!(f["status"], "pass", "{f:#}");
    let history = {
        let resp = app
            .send(get(
                &format!(
                    "/api/v1/agents/{}/findings/history?from={}&to={}",
                    e.agent_id,
                    rfc3339(start),
                    rfc3339(t_ack + chrono::Duration::seconds(1))
                ),
                Some(&tech),
            ))
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        serde_json::from_str::<Value>(&body_text(resp).await).unwrap()
    };
    let changes: Vec<&Value> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["rule"] == LOG_INTEGRITY_RULE && !c["old_status"].is_null())
        .collect();
    assert_eq!(
        changes.len(),
        2,
        "pass -> fail at the tamper, fail -> pass at the ack only: {history:#}"
    );
    assert_eq!(changes[0]["at"], json!(t1));
    assert_eq!(
        (&changes[1]["old_status"], &changes[1]["new_status"]),
        (&json!("fail"), &json!("pass"))
    );
    assert_eq!(changes[1]["at"], json!(t_ack));
    let acked = &changes[1]["evidence"]["acknowledged_tampers"][0];
    assert_eq!(acked["id"], t1_id, "{:#}", changes[1]);
    assert_eq!(acked["acknowledged_by"], "Dana Tech");
    assert_eq!(acked["reason"], "vendor support edited the log by hand");
    assert_eq!(acked["acknowledged_at"], json!(t_ack));
    let audit = app.store().audit_entries(10).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.actor == "Dana Tech" && a.action == "tamper.acknowledge" && a.detail.contains(t1_id)),
        "{audit:?}"
    );

    // Acknowledged once: a second acknowledgement is refused and names the first.
    let (status, body) = ack(&app, &e.agent_id, t1_id, &tech).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.to_string().contains("already acknowledged by Dana Tech"), "{body}");

    // A later tamper has a new id and opens again, across a passing look.
    app.advance(60);
    let now = app.state.now();
    let t2_id = "tmp-truncated-2";
    deliver(
        &app,
        &e,
        5,
        &[audit_log(now, Some((t2_id, "truncated")), Some((t2_id, "truncated")))],
        true,
    )
    .await;
    app.advance(60);
    let now = app.state.now();
    deliver(&app, &e, 6, &[audit_log(now, None, Some((t2_id, "truncated")))], true).await;
    let f = integrity(&app, &e, &tech).await;
    assert_eq!(f["status"], "fail", "{f:#}");
    let open: Vec<&Value> = f["evidence"]["open_tampers"].as_array().unwrap().iter().collect();
    assert_eq!(open.len(), 1, "{f:#}");
    assert_eq!(open[0]["id"], t2_id);
}

/// Report 1 of `e`: an inventory and the look that found tamper `id` of `kind`.
async fn first_report_tampered(app: &TestApp, e: &EnrollResponse, id: &str, kind: &str) {
    let at = app.state.now();
    let look = audit_log(at, Some((id, kind)), Some((id, kind)));
    deliver(app, e, 1, &[inventory(at), look], true).await;
}

#[tokio::test]
async fn acknowledging_is_scoped_and_errors_name_what_was_typed() {
    let app = TestApp::new();
    let e = enrolled(&app, "Smith Family Practice", "frontdesk").await;
    let _other = enrolled(&app, "Lakeside Dental", "xray").await;
    let id = "tmp-deleted-1";
    first_report_tampered(&app, &e, id, "deleted").await;
    let pm_other = admin::apikey_create(app.store(), Role::PracticeManager, Some("Lakeside Dental"), "pm")
        .await
        .unwrap();
    let pm_own = admin::apikey_create(app.store(), Role::PracticeManager, Some("Smith Family Practice"), "pm")
        .await
        .unwrap();
    let tech = admin::apikey_create(app.store(), Role::Technician, None, "t")
        .await
        .unwrap();

    // Another practice's manager does not learn the agent exists; their own may not ack.
    let (status, _) = ack(&app, &e.agent_id, id, &pm_other).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = ack(&app, &e.agent_id, id, &pm_own).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        integrity(&app, &e, &tech).await["status"],
        "fail",
        "nothing acknowledged"
    );

    // An unknown tamper id is refused with the open ones listed.
    let (status, body) = ack(&app, &e.agent_id, "tmp-typo", &tech).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let text = body.to_string();
    assert!(text.contains("tmp-typo") && text.contains(id), "{text}");

    // The service the CLI calls: unknown agent and an empty reason name what was typed.
    let admin_scope = Scope {
        role: Role::Admin,
        practice_id: None,
    };
    let err = tamper::acknowledge(&app.state.evaluator, &admin_scope, "cli", "agt_nope", id, "Dana", "why")
        .await
        .unwrap_err();
    assert!(matches!(err, AckError::UnknownAgent(_)), "{err}");
    assert_eq!(err.to_string(), "unknown agent `agt_nope`");
    let err = tamper::acknowledge(&app.state.evaluator, &admin_scope, "cli", &e.agent_id, id, "Dana", " ")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--reason"), "{err}");
    assert_eq!(
        integrity(&app, &e, &tech).await["status"],
        "fail",
        "still nothing acknowledged"
    );

    // The next look passes by the policy; acknowledging through the CLI's service releases it.
    app.advance(60);
    let now = app.state.now();
    deliver(&app, &e, 2, &[audit_log(now, None, Some((id, "deleted")))], true).await;
    assert_eq!(integrity(&app, &e, &tech).await["status"], "fail", "held");
    let row = tamper::acknowledge(
        &app.state.evaluator,
        &admin_scope,
        "cli",
        &e.agent_id,
        id,
        "Dana",
        "restored",
    )
    .await
    .unwrap();
    assert_eq!(row.acknowledged.unwrap().by, "Dana");
    assert_eq!(integrity(&app, &e, &tech).await["status"], "pass");
}

#[tokio::test]
async fn the_cli_acknowledges_and_names_what_was_typed_with_exit_64() {
    let app = TestApp::new();
    let tech = admin::apikey_create(app.store(), Role::Technician, None, "t")
        .await
        .unwrap();
    let e = enrolled(&app, "Smith Family Practice", "frontdesk").await;
    let id = "tmp-replaced-1";
    first_report_tampered(&app, &e, id, "replaced").await;
    app.advance(60);
    let now = app.state.now();
    deliver(&app, &e, 2, &[audit_log(now, None, Some((id, "replaced")))], true).await;
    let data = app._dir.path();
    let ack = |agent: &str, tamper: &str| {
        crate::policy::collector(
            data,
            &[
                "audit",
                "ack",
                "--agent",
                agent,
                "--tamper",
                tamper,
                "--reason",
                "new log host",
                "--by",
                "Dana",
            ],
        )
    };

    let (code, _, err) = ack("agt_typo", id);
    // The last line: a fresh temporary data dir is readable by others, so the collector first
    // warns that it made it private.
    assert_eq!(
        (code, err.trim().lines().last().unwrap_or_default()),
        (64, "error: unknown agent `agt_typo`"),
        "{err}"
    );
    let (code, _, err) = ack(&e.agent_id, "tmp-typo");
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("no tamper event `tmp-typo`")
            && err.contains("its open tamper events: tmp-replaced-1 (replaced on /var/log/ehr/access.log)"),
        "{err}"
    );
    assert_eq!(integrity(&app, &e, &tech).await["status"], "fail");

    let (code, out, err) = ack(&e.agent_id, id);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("acknowledged by Dana"), "{out}");
    assert_eq!(
        integrity(&app, &e, &tech).await["status"],
        "pass",
        "re-evaluated by the command"
    );
}
