//! Runtime silences (issue 12): created through the engine, the API, the CLI and the
//! dashboard's incidents page; applied as configured silences are (notifications held,
//! incidents recorded, start and end in the timelines); validated with errors naming the
//! field; refused to practice managers; audited.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::Duration;
use rounds_collector::alerting::config::AlertSettings;
use rounds_collector::alerting::{IncidentState, OutboxStatus, SilenceError, SilenceQuery, SilenceRequest};
use rounds_collector::notify::NotificationKind;
use rounds_collector::store::{Role, Scope};
use serde_json::{Value, json};

use crate::alerting::{Lab, admin};
use crate::support::{TestApp, body_text};
use crate::web::{get, hidden_csrf, post_form, session, user};

fn technician() -> Scope {
    Scope {
        role: Role::Technician,
        practice_id: None,
    }
}

fn req(practice: Option<&str>, duration: &str, reason: &str) -> SilenceRequest {
    SilenceRequest {
        practice: practice.map(str::to_string),
        duration: Some(duration.into()),
        reason: Some(reason.into()),
        ..SilenceRequest::default()
    }
}

fn timeline(d: &rounds_collector::alerting::IncidentDetail) -> Vec<String> {
    d.timeline
        .iter()
        .map(|e| format!("{}: {}", e.kind, e.message))
        .collect()
}

#[tokio::test]
async fn a_runtime_silence_holds_notifications_records_incidents_and_expires_by_itself() {
    let mut lab = Lab::new(AlertSettings::default(), &["ops"]).await;
    let a = lab.agent("Smith", "main", "a").await;
    lab.agent("Smith", "main", "b").await;
    let c = lab.agent("Lakeside", "main", "c").await;
    lab.agent("Lakeside", "main", "d").await;
    lab.run(30).await;
    let s = lab
        .engine
        .create_silence(&technician(), &req(Some("Smith"), "10m", "server move"), "alice")
        .await
        .unwrap();
    assert_eq!(s.created_by, "alice");
    assert!(s.start_recorded_at.is_some(), "in force at once");
    lab.alive.remove(&a);
    lab.alive.remove(&c);
    lab.run(150).await;
    let offline = lab.of_source("agent_offline").await;
    assert_eq!(offline.len(), 2, "both recorded");
    let sent = lab.notifier.sent();
    assert_eq!(sent.len(), 1, "only Lakeside's is sent: {sent:#?}");
    assert_eq!(sent[0].1.practice.as_deref(), Some("Lakeside"));
    let smith = offline.iter().find(|i| i.practice.as_deref() == Some("Smith")).unwrap();
    let d = lab.store.incident(&admin(), smith.id).await.unwrap();
    assert!(d.notifications.iter().all(|n| n.status == OutboxStatus::Silenced));
    assert!(
        timeline(&d)
            .iter()
            .any(|e| e.contains("held by silence #1 (server move)")),
        "{:#?}",
        timeline(&d)
    );
    // A restart in between neither repeats nor loses the silence's end.
    lab.restart();
    lab.run(450).await;
    let d = lab.store.incident(&admin(), smith.id).await.unwrap();
    let ended: Vec<_> = timeline(&d)
        .into_iter()
        .filter(|e| e.contains("silence #1 ended"))
        .collect();
    assert_eq!(ended.len(), 1, "{:#?}", timeline(&d));
    let sent = lab.notifier.sent();
    assert_eq!(sent.len(), 2, "held notification sent when it expired: {sent:#?}");
    assert_eq!(sent[1].1.practice.as_deref(), Some("Smith"));
    assert_eq!(sent[1].1.kind, NotificationKind::Opened);
    let audit = lab.store.audit_entries(20).await.unwrap();
    for action in ["silence.create", "silence_ended"] {
        assert!(
            audit.iter().any(|e| e.action == action && e.detail.contains("#1")),
            "{action}: {audit:#?}"
        );
    }
    let stored = lab.store.silences(&SilenceQuery::default()).await.unwrap();
    assert!(stored[0].end_recorded_at.is_some());
    assert!(
        lab.engine.silences(&technician(), false).await.unwrap().is_empty(),
        "over"
    );
    assert_eq!(lab.engine.silences(&technician(), true).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_silence_ended_early_records_its_start_and_end_in_open_incidents_and_sends_what_it_held() {
    let mut lab = Lab::new(AlertSettings::default(), &["ops"]).await;
    let a = lab.agent("Smith", "main", "a").await;
    lab.agent("Smith", "main", "b").await;
    let d_id = lab.agent("Smith", "annex", "d").await;
    lab.agent("Smith", "annex", "e").await;
    lab.run(30).await;
    // One incident already open when the silence starts.
    lab.alive.remove(&a);
    lab.run(120).await;
    assert_eq!(lab.notifier.sent().len(), 1);
    let silence = lab
        .engine
        .create_silence(
            &technician(),
            &SilenceRequest {
                practice: Some("Smith".into()),
                source: Some("agent_offline".into()),
                duration: Some("1d".into()),
                reason: Some("rewiring".into()),
                ..SilenceRequest::default()
            },
            "bob",
        )
        .await
        .unwrap();
    let first = lab.of_source("agent_offline").await[0].clone();
    let d = lab.store.incident(&admin(), first.id).await.unwrap();
    assert!(
        timeline(&d)
            .iter()
            .any(|e| e == "silenced: silence #1 started (rewiring)"),
        "{:#?}",
        timeline(&d)
    );
    // Another machine goes off while silenced: recorded, held.
    lab.alive.remove(&d_id);
    lab.run(120).await;
    assert_eq!(lab.of_source("agent_offline").await.len(), 2);
    assert_eq!(lab.notifier.sent().len(), 1, "held");
    let ended = lab.engine.end_silence(&technician(), silence.id, "bob").await.unwrap();
    assert_eq!(ended.ended_by.as_deref(), Some("bob"));
    assert!(matches!(
        lab.engine.end_silence(&technician(), silence.id, "bob").await,
        Err(SilenceError::Over(1))
    ));
    assert!(matches!(
        lab.engine.end_silence(&technician(), 99, "bob").await,
        Err(SilenceError::NotFound(99))
    ));
    lab.run(5).await;
    let sent = lab.notifier.sent();
    assert_eq!(sent.len(), 2, "the held one goes out: {sent:#?}");
    assert_eq!(sent[1].1.site.as_deref(), Some("annex"));
    for inc in lab.of_source("agent_offline").await {
        let d = lab.store.incident(&admin(), inc.id).await.unwrap();
        assert!(
            timeline(&d)
                .iter()
                .any(|e| e == "silenced: silence #1 ended (rewiring)"),
            "{:#?}",
            timeline(&d)
        );
    }
    // Ended is ended: later ticks record nothing more.
    lab.run(30).await;
    let d = lab.store.incident(&admin(), first.id).await.unwrap();
    assert_eq!(
        timeline(&d).iter().filter(|e| e.contains("silence #1")).count(),
        2,
        "{:#?}",
        timeline(&d)
    );
    assert_eq!(first.state, IncidentState::Open);
}

#[tokio::test]
async fn silence_matchers_are_validated_with_errors_that_name_the_field() {
    let mut lab = Lab::new(AlertSettings::default(), &["ops"]).await;
    lab.agent("Smith", "main", "a").await;
    let problems = |r: SilenceRequest| {
        let engine = lab.engine.clone();
        async move {
            match engine.create_silence(&technician(), &r, "t").await {
                Err(SilenceError::Invalid(p)) => p.join("\n"),
                other => panic!("{other:?}"),
            }
        }
    };
    let cases: Vec<(SilenceRequest, &str)> = vec![
        (req(Some("Nobody"), "1h", "x"), "practice: no practice named `Nobody`"),
        (
            SilenceRequest {
                site: Some("attic".into()),
                ..req(Some("Smith"), "1h", "x")
            },
            "site: practice `Smith` has no site named `attic`",
        ),
        (
            SilenceRequest {
                site: Some("attic".into()),
                ..req(None, "1h", "x")
            },
            "site: no practice has a site named `attic`",
        ),
        (
            SilenceRequest {
                source: Some("agent_ofline".into()),
                ..req(None, "1h", "x")
            },
            "source: `agent_ofline` is not one of agent_offline,",
        ),
        (
            req(None, "1h", "x"),
            "practice, site, source, subject: give at least one",
        ),
        (req(Some("Smith"), "soon", "x"), "duration: `soon` is not a duration"),
        (req(Some("Smith"), "40d", "x"), "duration: at most 31 days"),
        (req(Some("Smith"), "1h", " "), "reason: say why"),
        (
            SilenceRequest {
                end: Some("2020-01-01T00:00:00Z".into()),
                ..req(Some("Smith"), "1h", "x")
            },
            "end, duration: give one of them, not both",
        ),
        (
            SilenceRequest {
                duration: None,
                end: Some("tomorrow".into()),
                ..req(Some("Smith"), "1h", "x")
            },
            "end: `tomorrow` is not an RFC 3339 time",
        ),
        (
            SilenceRequest {
                duration: None,
                end: Some("2020-01-01T00:00:00Z".into()),
                start: Some("2019-01-01T00:00:00Z".into()),
                ..req(Some("Smith"), "1h", "x")
            },
            "end: the silence would be over already",
        ),
    ];
    for (r, want) in cases {
        let got = problems(r).await;
        assert!(got.contains(want), "want `{want}` in:\n{got}");
    }
    // Everything at once: every field named.
    let all = problems(SilenceRequest {
        practice: Some("Nobody".into()),
        source: Some("nope".into()),
        duration: Some("0m".into()),
        ..SilenceRequest::default()
    })
    .await;
    for field in ["practice:", "source:", "duration:", "reason:"] {
        assert!(all.contains(field), "{field} in {all}");
    }
    assert!(
        lab.store.silences(&SilenceQuery::default()).await.unwrap().is_empty(),
        "nothing stored"
    );
    // A practice manager may not, whatever the request.
    let manager = Scope {
        role: Role::PracticeManager,
        practice_id: Some(1),
    };
    assert!(matches!(
        lab.engine
            .create_silence(&manager, &req(Some("Smith"), "1h", "x"), "m")
            .await,
        Err(SilenceError::Forbidden)
    ));
    assert!(matches!(
        lab.engine.silences(&manager, true).await,
        Err(SilenceError::Forbidden)
    ));
}

fn call(key: &str, method: &str, path: &str, body: Option<Value>) -> Request<Body> {
    let mut r = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {key}"));
    if body.is_some() {
        r = r.header("content-type", "application/json");
    }
    r.body(body.map(|b| Body::from(b.to_string())).unwrap_or_else(Body::empty))
        .unwrap()
}

#[tokio::test]
async fn the_api_creates_lists_and_ends_silences_for_technicians_only_and_audits_them() {
    let app = TestApp::new();
    crate::web::agent(&app, "Smith", "main", "a", "linux", "1").await;
    crate::web::agent(&app, "Lakeside", "main", "b", "linux", "1").await;
    let store = app.store();
    let tech = rounds_collector::admin::apikey_create(store, Role::Technician, None, "t")
        .await
        .unwrap();
    let manager = rounds_collector::admin::apikey_create(store, Role::PracticeManager, Some("Smith"), "m")
        .await
        .unwrap();
    let body = json!({"practice": "Smith", "site": "main", "duration": "2h", "reason": "ISP works", "by": "carol"});
    // A practice manager, even of that practice: 403, nothing stored.
    for (method, path, b) in [
        ("POST", "/api/v1/silences", Some(body.clone())),
        ("GET", "/api/v1/silences", None),
        ("POST", "/api/v1/silences/1/end", None),
    ] {
        let resp = app.send(call(&manager, method, path, b)).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{method} {path}");
    }
    assert!(store.silences(&SilenceQuery::default()).await.unwrap().is_empty());
    // Invalid: 422 naming the field.
    let resp = app
        .send(call(
            &tech,
            "POST",
            "/api/v1/silences",
            Some(json!({"practice": "Smith", "source": "everything", "duration": "2h", "reason": "x"})),
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let text = body_text(resp).await;
    assert!(text.contains("source: `everything` is not one of"), "{text}");
    let resp = app
        .send(call(
            &tech,
            "POST",
            "/api/v1/silences",
            Some(json!({"practise": "Smith", "duration": "2h", "reason": "x"})),
        ))
        .await;
    assert!(resp.status().is_client_error(), "unknown field");
    // A technician: created, listed, ended.
    let resp = app.send(call(&tech, "POST", "/api/v1/silences", Some(body))).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let created: Value = serde_json::from_str(&body_text(resp).await).unwrap();
    assert_eq!(created["practice"], "Smith");
    // The person the caller names and the key it used (its label, `t`).
    assert_eq!(created["created_by"], "carol (API key \"t\")");
    let id = created["id"].as_i64().unwrap();
    let resp = app.send(call(&tech, "GET", "/api/v1/silences", None)).await;
    let list: Value = serde_json::from_str(&body_text(resp).await).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let resp = app
        .send(call(
            &tech,
            "POST",
            &format!("/api/v1/silences/{id}/end"),
            Some(json!({"by": "carol"})),
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = app.send(call(&tech, "GET", "/api/v1/silences", None)).await;
    let list: Value = serde_json::from_str(&body_text(resp).await).unwrap();
    assert!(list.as_array().unwrap().is_empty(), "{list}");
    let resp = app.send(call(&tech, "GET", "/api/v1/silences?all=true", None)).await;
    let list: Value = serde_json::from_str(&body_text(resp).await).unwrap();
    assert_eq!(list[0]["ended_by"], "carol (API key \"t\")");
    let resp = app
        .send(call(&tech, "POST", &format!("/api/v1/silences/{id}/end"), None))
        .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY, "already over");
    let audit = store.audit_entries(20).await.unwrap();
    let by = "carol (API key \"t\")";
    assert!(
        audit.iter().any(|e| e.actor == by && e.action == "silence.create"),
        "{audit:?}"
    );
    assert!(audit.iter().any(|e| e.actor == by && e.action == "silence.end"));
}

fn form(f: &[(String, String)]) -> Vec<(&str, &str)> {
    f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[tokio::test]
async fn the_incidents_page_silences_for_a_period_with_csrf_and_ends_a_silence() {
    let app = TestApp::new();
    crate::web::agent(&app, "Smith", "main", "a", "linux", "1").await;
    user(&app, "tina", Role::Technician, None).await;
    user(&app, "pam", Role::PracticeManager, Some("Smith")).await;
    let tina = session(&app, "tina").await;
    let resp = app.send(get("/incidents", &[("rounds_session", &tina)])).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let page = body_text(resp).await;
    assert!(page.contains(r#"id="silence-form""#), "{page}");
    assert!(page.contains("No silences."));
    let csrf = hidden_csrf(&page);
    let fields = |csrf: &str| {
        vec![
            ("csrf".to_string(), csrf.to_string()),
            ("practice".into(), "Smith".into()),
            ("site".into(), "main".into()),
            ("source".into(), String::new()),
            ("subject".into(), String::new()),
            ("duration".into(), "90m".into()),
            ("reason".into(), "<b>router</b> swap".into()),
        ]
    };
    // Without the CSRF token, or with a wrong one: nothing changes.
    for bad in ["", "wrong"] {
        let f = fields(bad);
        let resp = app
            .send(post_form(
                "/incidents/silences",
                &[("rounds_session", &tina)],
                &form(&f),
            ))
            .await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "csrf `{bad}`");
    }
    assert!(app.store().silences(&SilenceQuery::default()).await.unwrap().is_empty());
    // A practice manager: refused, nothing stored, and no form on the page.
    let pam = session(&app, "pam").await;
    let pam_page = body_text(app.send(get("/incidents", &[("rounds_session", &pam)])).await).await;
    assert!(!pam_page.contains("silence-form"));
    let f = fields(&hidden_csrf(&pam_page));
    let resp = app
        .send(post_form("/incidents/silences", &[("rounds_session", &pam)], &form(&f)))
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(app.store().silences(&SilenceQuery::default()).await.unwrap().is_empty());
    // An invalid one: 400 naming the field, what was typed kept.
    let mut f = fields(&csrf);
    f[2].1 = "attic".into();
    let resp = app
        .send(post_form(
            "/incidents/silences",
            &[("rounds_session", &tina)],
            &form(&f),
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let page = body_text(resp).await;
    assert!(
        page.contains("site: practice `Smith` has no site named `attic`"),
        "{page}"
    );
    assert!(page.contains(r#"value="attic""#));
    // The technician: created, listed with its reason escaped, then ended early.
    let f = fields(&csrf);
    let resp = app
        .send(post_form(
            "/incidents/silences",
            &[("rounds_session", &tina)],
            &form(&f),
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let page = body_text(resp).await;
    assert!(page.contains("Silence #1 created until"), "{page}");
    assert!(page.contains("practice=Smith site=main"), "{page}");
    assert!(page.contains("&#60;b&#62;router&#60;/b&#62; swap") && !page.contains("<b>router"));
    let stored = app.store().silences(&SilenceQuery::default()).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].created_by, "web:tina");
    assert_eq!(stored[0].ends_at - stored[0].starts_at, Duration::minutes(90));
    let resp = app
        .send(post_form(
            "/incidents/silences/1/end",
            &[("rounds_session", &tina)],
            &[("csrf", "wrong")],
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = app
        .send(post_form(
            "/incidents/silences/1/end",
            &[("rounds_session", &tina)],
            &[("csrf", &csrf)],
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let page = body_text(resp).await;
    assert!(page.contains("Silence #1 ended."), "{page}");
    assert!(page.contains("No silences."));
    let audit = app.store().audit_entries(20).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.actor == "web:tina" && e.action == "silence.create")
    );
    assert!(audit.iter().any(|e| e.actor == "web:tina" && e.action == "silence.end"));
}

#[tokio::test]
async fn an_incidents_page_silences_what_selects_that_incident_and_its_timeline_says_so() {
    let app = TestApp::new();
    crate::web::agent(&app, "Smith", "main", "a", "linux", "1").await;
    user(&app, "tina", Role::Technician, None).await;
    let now = app.state.now();
    let mut tx = app.store().begin().await.unwrap();
    let inc = tx
        .open_incident(
            &rounds_collector::alerting::NewIncident {
                source: "backup".into(),
                subject: "a:hipaa.backup.recent".into(),
                severity: rounds_policies::Severity::High,
                title: "Backup stale on a".into(),
                probable_cause: "newest snapshot is 3 days old".into(),
                cause_kind: rounds_collector::alerting::CauseKind::Finding,
                practice: Some("Smith".into()),
                site: Some("main".into()),
                agent_id: None,
                practices_affected: Vec::new(),
                parent_id: None,
                manual_resolve: false,
                detail: Value::Null,
            },
            now,
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let tina = session(&app, "tina").await;
    let path = format!("/incidents/{}", inc.id);
    let page = body_text(app.send(get(&path, &[("rounds_session", &tina)])).await).await;
    assert!(page.contains(r#"id="silence-form""#), "{page}");
    assert!(page.contains(r#"name="source" value="backup""#), "{page}");
    let csrf = hidden_csrf(&page);
    let id = inc.id.to_string();
    let resp = app
        .send(post_form(
            "/incidents/silences",
            &[("rounds_session", &tina)],
            &[
                ("csrf", &csrf),
                ("incident", &id),
                ("practice", "Smith"),
                ("site", "main"),
                ("source", "backup"),
                ("duration", "4h"),
                ("reason", "restoring the NAS"),
            ],
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let page = body_text(resp).await;
    assert!(page.contains("Silence #1 created until"), "{page}");
    assert!(
        page.contains("silence #1 started (restoring the NAS)"),
        "the incident's timeline shows it: {page}"
    );
}

#[tokio::test]
async fn the_cli_adds_lists_and_ends_silences() {
    let app = TestApp::new();
    crate::web::agent(&app, "Smith", "main", "a", "linux", "1").await;
    let data = app._dir.path().to_path_buf();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rounds-collector"))
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, _, err) = cli(&[
        "silence",
        "add",
        "--practice",
        "Smith",
        "--site",
        "attic",
        "--duration",
        "2h",
        "--reason",
        "x",
    ]);
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("site: practice `Smith` has no site named `attic`"),
        "{err}"
    );
    let (code, out, err) = cli(&[
        "silence",
        "add",
        "--practice",
        "Smith",
        "--source",
        "agent_offline",
        "--duration",
        "2h",
        "--reason",
        "moving desks",
        "--by",
        "dave",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("created silence #1 (practice=Smith source=agent_offline)")
            && out.contains("moving desks (by dave)"),
        "{out}"
    );
    let (code, out, _) = cli(&["silence", "list"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("silence #1 "), "{out}");
    let (code, out, err) = cli(&["silence", "end", "1", "--by", "dave"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ended silence #1"), "{out}");
    let (_, out, _) = cli(&["silence", "list"]);
    assert_eq!(out, "no silences\n");
    let (_, out, _) = cli(&["silence", "list", "--all"]);
    assert!(out.contains("[ended early by dave]"), "{out}");
    let (code, _, err) = cli(&["silence", "end", "1"]);
    assert_eq!(code, 1);
    assert!(err.contains("silence #1 is already over"), "{err}");
}

#[tokio::test]
async fn a_silence_that_starts_while_a_notification_waits_its_hold_time_holds_it() {
    let settings = AlertSettings {
        hold: std::time::Duration::from_secs(60),
        ..AlertSettings::default()
    };
    let mut lab = Lab::new(settings, &["ops"]).await;
    let a = lab.agent("Smith", "main", "a").await;
    lab.agent("Smith", "main", "b").await;
    lab.run(30).await;
    lab.alive.remove(&a);
    lab.run(100).await;
    let inc = lab.of_source("agent_offline").await[0].clone();
    let d = lab.store.incident(&admin(), inc.id).await.unwrap();
    assert!(
        d.notifications.iter().all(|n| n.status == OutboxStatus::Pending),
        "waiting its hold time"
    );
    let s = lab
        .engine
        .create_silence(
            &technician(),
            &SilenceRequest {
                subject: Some(a.clone()),
                duration: Some("10m".into()),
                reason: Some("reimaging".into()),
                ..SilenceRequest::default()
            },
            "t",
        )
        .await
        .unwrap();
    lab.run(60).await;
    assert!(lab.notifier.sent().is_empty(), "held");
    let d = lab.store.incident(&admin(), inc.id).await.unwrap();
    assert!(d.notifications.iter().all(|n| n.status == OutboxStatus::Silenced));
    assert!(
        timeline(&d)
            .iter()
            .any(|e| e == "silenced: opened notification held by silence #1 (reimaging)"),
        "{:#?}",
        timeline(&d)
    );
    lab.engine.end_silence(&technician(), s.id, "t").await.unwrap();
    lab.run(65).await;
    assert_eq!(lab.notifier.log().len(), 1, "sent once the silence ended");
}
