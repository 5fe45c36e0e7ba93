//! The technician dashboard over the router: overview by domain, practice and machine pages,
//! actions, isolation of every route, API endpoint and the live stream, CSRF.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use futures_util::StreamExt;
use rounds_collector::admin;
use rounds_collector::store::{Role, Scope};
use rounds_protocol::{Observation, obs};

use crate::support::{TestApp, body_text};
use crate::web::{agent, get, hidden_csrf, post_form, report_and_evaluate, session, user};

/// Two practices with a machine each, and users of every role.
pub struct Fleet {
    pub app: TestApp,
    /// Smith Family Practice.
    pub a: i64,
    pub a_agent: String,
    /// Lakeside Dental.
    pub b: i64,
    pub b_agent: String,
}

pub fn probe(up: bool, latency_ms: f64, at: chrono::DateTime<chrono::Utc>) -> Observation {
    Observation::ok(
        "ehr-cloud",
        at,
        &obs::EhrProbe {
            probe: "https".into(),
            target: "https://ehr.example/fhir/metadata".into(),
            up,
            latency_ms: Some(latency_ms),
            failure: (!up).then(|| "connection refused".into()),
            ..Default::default()
        },
    )
}

pub fn backup(result: &str, at: chrono::DateTime<chrono::Utc>) -> Observation {
    Observation::ok(
        "restic:/srv/backup",
        at,
        &obs::Backup {
            tool: "restic".into(),
            repository: "/srv/backup".into(),
            last_result: result.into(),
            last_success_at: (result == "success").then_some(at),
            last_attempt_at: Some(at),
            ..Default::default()
        },
    )
}

fn firewall_off(at: chrono::DateTime<chrono::Utc>) -> Observation {
    Observation::ok(
        "host",
        at,
        &obs::Firewall {
            backend: "<b>ufw</b>".into(),
            enabled: false,
            default_inbound: "allow".into(),
            profiles: Vec::new(),
        },
    )
}

impl Fleet {
    /// Opens an incident through the store, as the alert engine does.
    pub async fn incident(&self, practice: &str, title: &str, cause: &str) -> i64 {
        let mut tx = self.app.store().begin().await.unwrap();
        let inc = tx
            .open_incident(
                &rounds_collector::alerting::NewIncident {
                    source: "ehr".into(),
                    subject: format!("{practice}/{title}"),
                    severity: rounds_policies::Severity::High,
                    title: title.into(),
                    probable_cause: cause.into(),
                    cause_kind: rounds_collector::alerting::CauseKind::EhrVendor,
                    practice: Some(practice.into()),
                    site: None,
                    agent_id: None,
                    practices_affected: vec![practice.into()],
                    parent_id: None,
                    manual_resolve: false,
                    detail: serde_json::Value::Null,
                },
                self.app.state.now(),
            )
            .await
            .unwrap();
        tx.commit().await.unwrap();
        inc.id
    }

    pub async fn new() -> Fleet {
        let app = TestApp::new();
        let a_agent = agent(
            &app,
            "Smith Family Practice",
            "Main St",
            "smith-frontdesk",
            "linux",
            "0.3.1",
        )
        .await;
        let b_agent = agent(&app, "Lakeside Dental", "Clinic", "lakeside-xray", "windows", "0.3.1").await;
        let now = app.state.now();
        report_and_evaluate(
            &app,
            &a_agent,
            1,
            &[probe(true, 120.0, now), backup("success", now), firewall_off(now)],
        )
        .await;
        report_and_evaluate(&app, &b_agent, 1, &[probe(true, 80.0, now)]).await;
        for (name, role, practice) in [
            ("admin", Role::Admin, None),
            ("tech", Role::Technician, None),
            ("pm-a", Role::PracticeManager, Some("Smith Family Practice")),
        ] {
            user(&app, name, role, practice).await;
        }
        let all = Scope {
            role: Role::Admin,
            practice_id: None,
        };
        let practices = app.store().practices(&all).await.unwrap();
        let id = |n: &str| practices.iter().find(|p| p.name == n).unwrap().id;
        Fleet {
            a: id("Smith Family Practice"),
            b: id("Lakeside Dental"),
            app,
            a_agent,
            b_agent,
        }
    }

    pub async fn page(&self, session: &str, path: &str) -> (StatusCode, String) {
        let resp = self.app.send(get(path, &[("rounds_session", session)])).await;
        let status = resp.status();
        (status, body_text(resp).await)
    }

    pub async fn post(&self, session: &str, path: &str, fields: &[(&str, &str)]) -> (StatusCode, String) {
        let resp = self
            .app
            .send(post_form(path, &[("rounds_session", session)], fields))
            .await;
        let status = resp.status();
        (status, body_text(resp).await)
    }
}

#[tokio::test]
async fn overview_rows_are_practices_with_a_status_per_domain_worst_first_and_filters() {
    let f = Fleet::new().await;
    let s = session(&f.app, "tech").await;
    let (status, body) = f.page(&s, "/").await;
    assert_eq!(status, StatusCode::OK);
    for heading in [
        "Agents online",
        "EHR connectivity",
        "Backups",
        "Encryption",
        "Audit logs",
        "Host hygiene",
    ] {
        assert!(
            body.contains(&format!(r#"<th scope="col">{heading}</th>"#)),
            "{heading}"
        );
    }
    // Smith has a failing firewall: worse than Lakeside, so listed first, with words and icon.
    let smith = body.find(&format!(r#"href="/practices/{}""#, f.a)).unwrap();
    let lakeside = body.find(&format!(r#"href="/practices/{}""#, f.b)).unwrap();
    assert!(smith < lakeside, "worst first: {body}");
    let smith_row = &body[body[..smith].rfind("<tr").unwrap()..smith + body[smith..].find("</tr>").unwrap()];
    assert!(
        smith_row.contains(r#"data-domain="hygiene"><span class="badge fail"><span aria-hidden="true">✖</span> "#),
        "{smith_row}"
    );
    assert!(smith_row.contains("failing"), "{smith_row}");
    assert!(smith_row.contains("since <time datetime="), "{smith_row}");
    // Filters are query parameters applied on the server.
    for (query, smith_shown, lakeside_shown) in [
        ("?q=lakeside", false, true),
        ("?practice=smith", true, false),
        ("?site=clinic", false, true),
        ("?os=windows", false, true),
        ("?domain=hygiene&status=fail", true, false),
        ("?domain=hygiene", true, true),
        ("?status=fail", true, false),
        ("?domain=ehr&status=ok", true, true),
        ("?domain=backups&status=warn", false, true),
    ] {
        let (status, body) = f.page(&s, &format!("/{query}")).await;
        assert_eq!(status, StatusCode::OK, "{query}");
        assert_eq!(body.contains("smith-frontdesk"), smith_shown, "{query}: {body}");
        assert_eq!(body.contains("lakeside-xray"), lakeside_shown, "{query}");
    }
}

#[tokio::test]
async fn practice_page_shows_machines_failing_findings_charts_and_accepted_risks() {
    let f = Fleet::new().await;
    let s = session(&f.app, "tech").await;
    // History: the EHR went down and came back, a backup failed, 30 days of compliance.
    f.app.advance(600);
    report_and_evaluate(
        &f.app,
        &f.a_agent,
        2,
        &[
            probe(false, 3000.0, f.app.state.now()),
            backup("failed", f.app.state.now()),
        ],
    )
    .await;
    f.app.advance(600);
    report_and_evaluate(&f.app, &f.a_agent, 3, &[probe(true, 150.0, f.app.state.now())]).await;
    // A probe summary of 10 minutes two hours ago: 9 of 10 probes up (the bars read its fields).
    let end = f.app.state.now() - chrono::Duration::hours(2);
    let summary = Observation::ok(
        "ehr-cloud",
        end,
        &obs::ProbeSummary {
            role: "endpoint".into(),
            probe: "https".into(),
            target: "https://ehr.example/fhir/metadata".into(),
            period_start: Some(end - chrono::Duration::minutes(10)),
            period_end: Some(end),
            probes: 10,
            up: 9,
            down: 1,
            latency_ms_p50: Some(140.0),
            ..Default::default()
        },
    );
    report_and_evaluate(&f.app, &f.a_agent, 4, &[summary]).await;
    // An accepted risk, set as `policy set` sets it.
    let pack = rounds_policies::Pack::builtin().unwrap();
    admin::policy_set(
        f.app.store(),
        &pack,
        admin::PolicyChange {
            practice: "Smith Family Practice".into(),
            overrides: Some(admin::OverridesFile {
                name: "smith.toml".into(),
                text: "[[accept]]\nrule = \"hipaa.network.firewall\"\nreason = \"<i>edge</i> firewall covers it\"\naccepted_by = \"Dr. Smith\"\nexpires = 2099-01-01\n".into(),
            }),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (status, body) = f.page(&s, &format!("/practices/{}", f.a)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for text in [
        "Smith Family Practice",
        "Main St",
        "smith-frontdesk",
        "hipaa.network.firewall",
        "164.312",
        "<strong>Fix:</strong>",
        "&#60;b&#62;ufw&#60;/b&#62;",
        "ehr-cloud",
        "last 24 hours",
        "last 30 days",
        "Latency, last 24 hours",
        "restic:/srv/backup",
        "Compliance score, last 30 days",
        "&#60;i&#62;edge&#60;/i&#62; firewall covers it",
        "Dr. Smith",
        "until 2099-01-01",
        r#"action="/practices/"#,
    ] {
        assert!(body.contains(text), "{text:?} missing in {body}");
    }
    assert!(!body.contains("<i>edge") && !body.contains("<b>ufw"));
    // The hour with the outage is amber (down part of the time), the current one green.
    let day = &body[body.find("availability by hour").unwrap()..];
    let day = &day[..day.find("</svg>").unwrap()];
    assert!(
        day.contains(r#"data-level="warn""#) || day.contains(r#"data-level="fail""#),
        "{day}"
    );
    assert!(day.contains("down part of the time") || day.contains("down"), "{day}");
    assert!(day.contains("90.0 % up (9 of 10 probes)"), "{day}");
    let backups = &body[body.find("backups by day").unwrap()..];
    assert!(backups[..backups.find("</svg>").unwrap()].contains(r#"data-level="fail""#));
}

#[tokio::test]
async fn machine_page_shows_every_check_history_and_delivery() {
    let f = Fleet::new().await;
    let s = session(&f.app, "tech").await;
    let (status, body) = f.page(&s, &format!("/agents/{}", f.a_agent)).await;
    assert_eq!(status, StatusCode::OK);
    for text in [
        "Latest observation of every check",
        "<code>ehr.probe</code>",
        "<code>backup</code>",
        "<code>firewall</code>",
        "Finding history",
        "appeared as Fail",
        "Delivery and integrity",
        "Last sequence",
        &format!(r#"data-agent="{}""#, f.a_agent),
    ] {
        assert!(body.contains(text), "{text:?} missing in {body}");
    }
}

/// Every page and API endpoint of practice B, for a practice manager of A.
#[tokio::test]
async fn a_practice_manager_gets_nothing_of_another_practice_and_changes_nothing() {
    let f = Fleet::new().await;
    let pm = session(&f.app, "pm-a").await;
    let b = f.b;
    let ba = &f.b_agent;
    // Their own practice is readable.
    assert_eq!(f.page(&pm, &format!("/practices/{}", f.a)).await.0, StatusCode::OK);
    assert_eq!(f.page(&pm, &format!("/agents/{}", f.a_agent)).await.0, StatusCode::OK);
    for path in [
        format!("/practices/{b}"),
        format!("/agents/{ba}"),
        "/practices/999999".to_string(),
        "/practices/not-a-number".to_string(),
    ] {
        let (status, body) = f.page(&pm, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(!body.contains("Lakeside") && !body.contains("lakeside-xray"), "{path}");
    }
    let (_, overview) = f.page(&pm, "/").await;
    assert!(!overview.contains("Lakeside") && !overview.contains("lakeside-xray"));
    // Read only: no action of theirs changes anything, even with the right CSRF token.
    let (_, own) = f.page(&pm, &format!("/practices/{}", f.a)).await;
    let csrf = hidden_csrf(&own);
    assert!(!own.contains("Create enrollment token"), "no forms for a reader");
    let audit_before = f.app.store().audit_entries(1000).await.unwrap().len();
    for (path, fields) in [
        (
            format!("/practices/{b}/tokens"),
            vec![("csrf", csrf.as_str()), ("site", "Clinic")],
        ),
        (
            format!("/practices/{}/tokens", f.a),
            vec![("csrf", csrf.as_str()), ("site", "Main St")],
        ),
        (
            format!("/practices/{b}/policy"),
            vec![("csrf", csrf.as_str()), ("profile", "")],
        ),
        (
            "/admin/users".to_string(),
            vec![("csrf", csrf.as_str()), ("username", "mallory"), ("role", "admin")],
        ),
    ] {
        let (status, _) = f.post(&pm, &path, &fields).await;
        assert!(
            matches!(status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND),
            "{path}: {status}"
        );
    }
    for path in ["/admin/users", "/admin/audit"] {
        assert_eq!(f.page(&pm, path).await.0, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(f.app.store().audit_entries(1000).await.unwrap().len(), audit_before);
    assert!(f.app.store().user("mallory").await.unwrap().is_none());
    for id in [&f.a_agent, &f.b_agent] {
        assert!(!f.app.store().agent_auth(id).await.unwrap().unwrap().revoked);
    }
    // The automation API with a key of practice A.
    let key = admin::apikey_create(
        f.app.store(),
        Role::PracticeManager,
        Some("Smith Family Practice"),
        "pm",
    )
    .await
    .unwrap();
    for path in [
        format!("/api/v1/agents/{ba}"),
        format!("/api/v1/agents/{ba}/observations"),
        format!("/api/v1/agents/{ba}/findings"),
        format!("/api/v1/agents/{ba}/findings/history?from=2000-01-01T00:00:00Z"),
        format!("/api/v1/agents/{ba}/findings?at=2000-01-01T00:00:00Z"),
    ] {
        let req = Request::get(&path)
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap();
        let resp = f.app.send(req).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
    }
    for path in ["/api/v1/agents", "/api/v1/practices"] {
        let req = Request::get(path)
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap();
        let body = body_text(f.app.send(req).await).await;
        assert!(
            !body.contains("Lakeside") && !body.contains(ba.as_str()),
            "{path}: {body}"
        );
    }
}

#[tokio::test]
async fn a_technician_cannot_reach_admin_pages_and_forms_need_the_csrf_token() {
    let f = Fleet::new().await;
    let tech = session(&f.app, "tech").await;
    for path in ["/admin/users", "/admin/audit"] {
        let (status, body) = f.page(&tech, path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert!(!body.contains("pm-a"), "{path}");
    }
    let (_, overview) = f.page(&tech, "/").await;
    assert!(!overview.contains(r#"href="/admin/users""#));
    let (status, _) = f
        .post(
            &tech,
            "/admin/users",
            &[
                ("csrf", &hidden_csrf(&overview)),
                ("username", "eve"),
                ("role", "admin"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(f.app.store().user("eve").await.unwrap().is_none());

    // Without the session's CSRF token (absent, forged, or another session's) nothing changes.
    let admin = session(&f.app, "admin").await;
    let admin_csrf = hidden_csrf(&f.page(&admin, "/").await.1);
    let tech_csrf = hidden_csrf(&overview);
    let audit_before = f.app.store().audit_entries(1000).await.unwrap().len();
    let a = f.a;
    let requests = [
        (
            &tech,
            &admin_csrf,
            format!("/practices/{a}/tokens"),
            vec![("site", "Main St")],
        ),
        (
            &tech,
            &admin_csrf,
            format!("/practices/{a}/policy"),
            vec![("profile", "")],
        ),
        (
            &admin,
            &tech_csrf,
            "/admin/users".to_string(),
            vec![("username", "eve"), ("role", "technician")],
        ),
    ];
    for (who, others, path, fields) in &requests {
        for csrf in [None, Some("rnd_csrf_forged"), Some(others.as_str())] {
            let mut fields = fields.clone();
            if let Some(c) = csrf {
                fields.push(("csrf", c));
            }
            let (status, _) = f.post(who, path, &fields).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path} with {csrf:?}");
        }
    }
    assert_eq!(f.app.store().audit_entries(1000).await.unwrap().len(), audit_before);
    assert!(f.app.store().user("eve").await.unwrap().is_none());
    assert!(!f.app.store().agent_auth(&f.a_agent).await.unwrap().unwrap().revoked);
}

#[tokio::test]
async fn actions_create_a_token_set_policy_and_users_and_go_to_the_audit_log() {
    let f = Fleet::new().await;
    let tech = session(&f.app, "tech").await;
    let (_, page) = f.page(&tech, &format!("/practices/{}", f.a)).await;
    let csrf = hidden_csrf(&page);
    let (status, body) = f
        .post(
            &tech,
            &format!("/practices/{}/tokens", f.a),
            &[("csrf", &csrf), ("site", "Annex"), ("hours", "2")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("rounds-agent enroll --collector https://"), "{body}");
    let token = body.split("--token ").nth(1).unwrap().split(' ').next().unwrap();
    assert!(token.starts_with("rnd_tok_"), "{token}");
    // The token enrolls a machine at the new site.
    let enrolled = f
        .app
        .store()
        .enroll(
            &rounds_collector::secrets::hash_secret(token),
            rounds_collector::store::NewAgent {
                agent_id: rounds_collector::secrets::random_id(),
                secret_hash: "x".into(),
                hostname: "annex-01".into(),
                os: "linux".into(),
                agent_version: "0.3.1".into(),
            },
            f.app.state.now(),
        )
        .await
        .unwrap();
    assert_eq!(enrolled.site, "Annex");

    // Policy settings go through `policy set`'s validation: a bad rule is refused by name.
    let bad = "[[accept]]\nrule = \"hipaa.no_such_rule\"\nreason = \"x\"\naccepted_by = \"y\"\nexpires = 2099-01-01\n";
    let (status, body) = f
        .post(
            &tech,
            &format!("/practices/{}/policy", f.a),
            &[("csrf", &csrf), ("overrides", bad)],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("hipaa.no_such_rule"), "{body}");
    assert!(
        f.app
            .store()
            .policy_settings("Smith Family Practice", None)
            .await
            .unwrap()
            .is_none()
    );
    let good = "[[accept]]\nrule = \"hipaa.network.firewall\"\nreason = \"edge firewall\"\naccepted_by = \"Dr. Smith\"\nexpires = 2099-01-01\n";
    let (status, body) = f
        .post(
            &tech,
            &format!("/practices/{}/policy", f.a),
            &[("csrf", &csrf), ("overrides", good)],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("until 2099-01-01"), "{body}");
    let stored = f
        .app
        .store()
        .policy_settings("Smith Family Practice", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.updated_by, "web:tech");

    // Users: admins only; the password is shown once.
    let admin = session(&f.app, "admin").await;
    let (status, page) = f.page(&admin, "/admin/users").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("pm-a") && page.contains("Smith Family Practice"));
    let (status, body) = f
        .post(
            &admin,
            "/admin/users",
            &[
                ("csrf", &hidden_csrf(&page)),
                ("username", "bob"),
                ("role", "practice_manager"),
                ("practice", "Lakeside Dental"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("User bob added"), "{body}");
    let bob = f.app.store().user("bob").await.unwrap().unwrap();
    assert_eq!((bob.role, bob.practice_id), (Role::PracticeManager, Some(f.b)));
    let (status, body) = f
        .post(
            &admin,
            "/admin/users",
            &[
                ("csrf", &hidden_csrf(&page)),
                ("username", "carol"),
                ("role", "practice_manager"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("a practice manager needs --practice"), "{body}");

    // Revoking an agent from its page.
    let (_, machine) = f.page(&tech, &format!("/agents/{}", f.b_agent)).await;
    assert!(machine.contains("Revoke this agent"));
    let (status, body) = f
        .post(
            &tech,
            &format!("/agents/{}/revoke", f.b_agent),
            &[("csrf", &hidden_csrf(&machine))],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("lakeside-xray revoked") && body.contains("✖ revoked"),
        "{body}"
    );
    assert!(f.app.store().agent_auth(&f.b_agent).await.unwrap().unwrap().revoked);

    // Every change is in the audit log, under the user's name, on the admin's page.
    let (status, audit) = f.page(&admin, "/admin/audit").await;
    assert_eq!(status, StatusCode::OK);
    for text in [
        "web:tech",
        "token.create",
        "Smith Family Practice/Annex",
        "policy.set",
        "web:admin",
        "user.add",
        "bob as practice_manager",
        "agent.revoke",
    ] {
        assert!(audit.contains(text), "{text:?} missing in {audit}");
    }
}

/// Reads a stream of Server-Sent Events continuously, as a browser does, into a channel of
/// (event name, data).
fn sse_reader(
    mut body: impl futures_util::Stream<Item = Result<axum::body::Bytes, axum::Error>> + Unpin + Send + 'static,
) -> tokio::sync::mpsc::UnboundedReceiver<(String, String)> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                let field = |k: &str| frame.lines().find_map(|l| l.strip_prefix(k)).unwrap_or("").to_string();
                let name = field("event: ");
                if !name.is_empty() && tx.send((name, field("data: "))).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// The events received until `until` says stop or `wait` passes.
async fn read_events(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
    wait: Duration,
    mut until: impl FnMut(&str, &str) -> bool,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some((name, data))) = tokio::time::timeout_at(deadline, rx.recv()).await {
        let stop = until(&name, &data);
        out.push((name, data));
        if stop {
            break;
        }
    }
    out
}

#[tokio::test]
async fn the_live_stream_carries_offline_transitions_and_only_what_the_role_may_see() {
    let f = Fleet::new().await;
    let reported = rounds_collector::store::AgentReportedState::default();
    for id in [&f.a_agent, &f.b_agent] {
        f.app
            .state
            .evaluator
            .heartbeat(id, "0.3.1", f.app.state.now(), &reported)
            .await
            .unwrap();
    }
    let pm = session(&f.app, "pm-a").await;
    let tech = session(&f.app, "tech").await;
    // Without a session there is no stream.
    let resp = f.app.send(get("/events", &[])).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let open = |s: String| {
        let app = f.app.router();
        async move {
            use tower::ServiceExt;
            let resp = app.oneshot(get("/events", &[("rounds_session", &s)])).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            assert!(
                resp.headers()[header::CONTENT_TYPE]
                    .to_str()
                    .unwrap()
                    .starts_with("text/event-stream")
            );
            sse_reader(resp.into_body().into_data_stream())
        }
    };
    let mut pm_stream = open(pm).await;
    let mut tech_stream = open(tech).await;
    for s in [&mut pm_stream, &mut tech_stream] {
        let hello = read_events(s, Duration::from_secs(5), |n, _| n == "hello").await;
        assert_eq!(hello.last().map(|e| e.0.as_str()), Some("hello"));
    }
    // Both machines fall silent past the offline window: the tick notices.
    f.app.advance(200);
    let a = f.a_agent.clone();
    let b = f.b_agent.clone();
    let tech_events = read_events(&mut tech_stream, Duration::from_secs(8), {
        let mut seen = (false, false);
        move |n, d| {
            if n == "agent" && d.contains(&a) {
                seen.0 = true;
            }
            if n == "agent" && d.contains(&b) {
                seen.1 = true;
            }
            seen.0 && seen.1
        }
    })
    .await;
    for id in [&f.a_agent, &f.b_agent] {
        let e = tech_events
            .iter()
            .find(|(n, d)| n == "agent" && d.contains(id.as_str()));
        let data: serde_json::Value = serde_json::from_str(&e.unwrap_or_else(|| panic!("{tech_events:?}")).1).unwrap();
        assert_eq!(data["online"], false);
        assert_eq!(data["practice_text"], "all 1 offline");
    }
    let a = f.a_agent.clone();
    let mut pm_events = read_events(&mut pm_stream, Duration::from_secs(8), move |n, d| {
        n == "agent" && d.contains(&a) && d.contains(r#""online":false"#)
    })
    .await;
    assert!(
        pm_events
            .iter()
            .any(|(n, d)| n == "agent" && d.contains(&f.a_agent) && d.contains(r#""online":false"#)),
        "{pm_events:?}"
    );
    // B comes back with new findings, then A: the manager of A hears of A only.
    f.app
        .state
        .evaluator
        .heartbeat(&f.b_agent, "0.3.1", f.app.state.now(), &reported)
        .await
        .unwrap();
    report_and_evaluate(&f.app, &f.b_agent, 2, &[probe(false, 1.0, f.app.state.now())]).await;
    f.app
        .state
        .evaluator
        .heartbeat(&f.a_agent, "0.3.1", f.app.state.now(), &reported)
        .await
        .unwrap();
    let a = f.a_agent.clone();
    pm_events.extend(
        read_events(&mut pm_stream, Duration::from_secs(8), move |n, d| {
            n == "agent" && d.contains(&a) && d.contains(r#""online":true"#)
        })
        .await,
    );
    assert!(
        pm_events
            .iter()
            .any(|(n, d)| n == "agent" && d.contains(&f.a_agent) && d.contains(r#""online":true"#)),
        "{pm_events:?}"
    );
    // Nothing more arrives for the manager (B's heartbeat and findings were never sent).
    pm_events.extend(read_events(&mut pm_stream, Duration::from_millis(1500), |_, _| false).await);
    for (_, d) in &pm_events {
        assert!(!d.contains(&f.b_agent), "practice B leaked: {d}");
        assert!(
            !d.contains(&format!(r#""practice_id":{}"#, f.b)),
            "practice B leaked: {d}"
        );
    }
    // The technician hears of B's new findings.
    let b = f.b_agent.clone();
    let tech_more = read_events(&mut tech_stream, Duration::from_secs(5), move |n, d| {
        n == "findings" && d.contains(&b)
    })
    .await;
    assert!(
        tech_more.iter().any(|(n, d)| n == "findings" && d.contains(&f.b_agent)),
        "{tech_more:?}"
    );
    // Its EHR went down: the practice's EHR cell turns red.
    let b_practice = format!(r#""practice_id":{}"#, f.b);
    let domain = read_events(&mut tech_stream, Duration::from_secs(5), move |n, d| {
        n == "domain" && d.contains(&b_practice) && d.contains(r#""domain":"ehr""#)
    })
    .await;
    let ehr = domain
        .iter()
        .find(|(n, d)| n == "domain" && d.contains(r#""domain":"ehr""#));
    let ehr: serde_json::Value = serde_json::from_str(&ehr.unwrap_or_else(|| panic!("{domain:?}")).1).unwrap();
    assert_eq!(
        (ehr["class"].as_str(), ehr["text"].as_str()),
        (Some("fail"), Some("1 failing")),
        "{ehr}"
    );
}

#[tokio::test]
async fn incidents_are_listed_with_their_cause_and_acknowledged_resolved_and_noted_in_scope() {
    let f = Fleet::new().await;
    let a = f
        .incident(
            "Smith Family Practice",
            "EHR <b>unreachable</b>",
            "the EHR vendor's endpoint fails from 3 practices",
        )
        .await;
    let b = f
        .incident("Lakeside Dental", "Lakeside EHR down", "site internet link")
        .await;
    let tech = session(&f.app, "tech").await;
    let (_, overview) = f.page(&tech, "/").await;
    for text in [
        "Open incidents",
        "EHR &#60;b&#62;unreachable&#60;/b&#62;",
        "the EHR vendor&#39;s endpoint fails from 3 practices",
        "Lakeside EHR down",
    ] {
        assert!(overview.contains(text), "{text:?} missing in {overview}");
    }
    let (status, list) = f.page(&tech, "/incidents").await;
    assert_eq!(status, StatusCode::OK);
    assert!(list.contains(&format!(r#"href="/incidents/{a}""#)) && list.contains(&format!(r#"href="/incidents/{b}""#)));
    let (status, page) = f.page(&tech, &format!("/incidents/{a}")).await;
    assert_eq!(status, StatusCode::OK);
    let csrf = hidden_csrf(&page);
    // Without the token nothing happens.
    let (status, _) = f.post(&tech, &format!("/incidents/{a}/acknowledge"), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = f
        .post(&tech, &format!("/incidents/{a}/acknowledge"), &[("csrf", &csrf)])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("Incident acknowledged.") && body.contains("acknowledged by tech"),
        "{body}"
    );
    let (status, body) = f
        .post(
            &tech,
            &format!("/incidents/{a}/notes"),
            &[("csrf", &csrf), ("note", "called the <i>vendor</i>")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("called the &#60;i&#62;vendor&#60;/i&#62;"), "{body}");
    let (status, body) = f
        .post(
            &tech,
            &format!("/incidents/{a}/resolve"),
            &[("csrf", &csrf), ("note", "vendor fixed it")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("✔</span> resolved"), "{body}");
    let (_, active) = f.page(&tech, "/incidents").await;
    assert!(
        !active.contains(&format!(r#"href="/incidents/{a}""#)),
        "resolved is not active"
    );
    let (_, resolved) = f.page(&tech, "/incidents?state=resolved").await;
    assert!(resolved.contains(&format!(r#"href="/incidents/{a}""#)));
    let (_, audit) = f.page(&session(&f.app, "admin").await, "/admin/audit").await;
    for text in ["incident.acknowledge", "incident.note", "incident.resolve", "web:tech"] {
        assert!(audit.contains(text), "{text}");
    }

    // The manager of Smith: sees Smith's, not Lakeside's; acts on none.
    let pm = session(&f.app, "pm-a").await;
    let (_, list) = f.page(&pm, "/incidents?state=all").await;
    assert!(
        list.contains(&format!(r#"href="/incidents/{a}""#)) && !list.contains("Lakeside"),
        "{list}"
    );
    let (_, overview) = f.page(&pm, "/").await;
    assert!(!overview.contains("Lakeside EHR down"));
    assert_eq!(f.page(&pm, &format!("/incidents/{b}")).await.0, StatusCode::NOT_FOUND);
    let (_, own) = f.page(&pm, &format!("/incidents/{a}")).await;
    let pm_csrf = hidden_csrf(&own);
    for action in ["acknowledge", "resolve", "notes"] {
        for id in [a, b] {
            let (status, _) = f
                .post(
                    &pm,
                    &format!("/incidents/{id}/{action}"),
                    &[("csrf", &pm_csrf), ("note", "x")],
                )
                .await;
            assert!(
                matches!(status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND),
                "{action} {id}: {status}"
            );
        }
    }
    let detail = f
        .app
        .state
        .alerts
        .detail(
            &Scope {
                role: Role::Admin,
                practice_id: None,
            },
            b,
        )
        .await
        .unwrap();
    assert_eq!(detail.incident.state, rounds_collector::alerting::IncidentState::Open);
}

/// Issue 15, item 4: the admin page says when the server certificate expires and when the
/// collector renews it, read from the certificate in the data dir.
#[tokio::test]
async fn the_admin_page_says_when_the_server_certificate_expires_and_renews() {
    let app = TestApp::new();
    user(&app, "admin", Role::Admin, None).await;
    let admin = session(&app, "admin").await;
    async fn page(app: &TestApp, s: &str) -> (StatusCode, String) {
        let resp = app.send(get("/admin/audit", &[("rounds_session", s)])).await;
        (resp.status(), body_text(resp).await)
    }
    // No certificate generated yet: the page says it cannot be read, not nothing.
    let (status, body) = page(&app, &admin).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Server certificate: cannot be read"), "{body}");

    let dir = app.state.settings.data_dir.clone();
    rounds_collector::tls::prepare(&app.state.settings.tls, &dir).unwrap();
    let expires = rounds_collector::security::renew::not_after(&dir.join("server.pem")).unwrap();
    let renews = expires - chrono::Duration::days(rounds_collector::security::renew::RENEW_BEFORE_DAYS);
    let (_, body) = page(&app, &admin).await;
    let fmt = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    assert!(
        body.contains(&format!("expires {}", fmt(expires)))
            && body.contains(&format!("renewed from the CA on {}", fmt(renews))),
        "{body}"
    );
}

/// Counts one rule's finding of an agent for the tallies test.
fn tally_finding(rule: &str, status: rounds_policies::Status, accepted: bool) -> rounds_policies::Finding {
    rounds_policies::Finding {
        rule: rule.into(),
        title: rule.into(),
        status,
        severity: rounds_policies::Severity::High,
        citations: vec!["164.312(a)(1)".into()],
        partial_citations: Vec::new(),
        evidence: serde_json::json!({"rule": rule}),
        message: format!("{rule} is {status}"),
        remediation: None,
        exception: accepted.then(|| rounds_policies::Exception {
            reason: "isolated VLAN".into(),
            accepted_by: "Dr. Smith".into(),
            expires: chrono::NaiveDate::from_ymd_opt(2027, 6, 1).unwrap(),
            source: "practice.toml".into(),
        }),
    }
}

/// What the tallies must be: the current findings counted per (practice, rule), and per agent.
async fn counted(
    s: &dyn rounds_collector::store::Store,
    scope: &Scope,
) -> (
    Vec<rounds_collector::store::RuleTally>,
    Vec<(String, rounds_collector::store::FindingCounts)>,
) {
    use rounds_collector::store::{FindingCounts, RuleTally};
    use rounds_policies::Status;
    let agents = s.agents(scope).await.unwrap();
    let mut tallies: std::collections::BTreeMap<(i64, String), RuleTally> = Default::default();
    let mut counts: std::collections::BTreeMap<String, FindingCounts> = agents
        .iter()
        .map(|a| (a.agent_id.clone(), FindingCounts::default()))
        .collect();
    for b in s.finding_briefs(scope).await.unwrap() {
        let practice_id = agents.iter().find(|a| a.agent_id == b.agent_id).unwrap().practice_id;
        tallies
            .entry((practice_id, b.rule.clone()))
            .or_insert_with(|| RuleTally {
                practice_id,
                rule: b.rule.clone(),
                ..Default::default()
            })
            .add(b.status, b.accepted, b.status_since);
        let c = counts.get_mut(&b.agent_id).unwrap();
        match b.status {
            Status::Pass => c.pass += 1,
            Status::Fail => c.fail += 1,
            Status::Error => c.error += 1,
            Status::NotApplicable => c.not_applicable += 1,
        }
        if b.accepted && matches!(b.status, Status::Fail | Status::Error) {
            c.accepted += 1;
        }
    }
    (tallies.into_values().collect(), counts.into_iter().collect())
}

/// The SQLite store keeps the overview's counts (per practice and rule, per agent) with
/// triggers on the current findings: after every kind of change (appearance, status change,
/// accepted risk added and removed, retirement, an unchanged evaluation) they equal the current
/// findings counted one by one, and a practice manager's tallies are their practice's only.
#[tokio::test]
async fn sqlite_tallies_follow_every_change_of_the_current_findings() {
    use rounds_collector::store::Store;
    use rounds_collector::store::sqlite::SqliteStore;
    let dir = tempfile::tempdir().unwrap();
    let s: std::sync::Arc<dyn Store> = std::sync::Arc::new(SqliteStore::open(&dir.path().join("rounds.db")).unwrap());
    tallies_follow_every_change(s).await;
}

/// The same on PostgreSQL (issue 17: migration 0011's triggers in plpgsql), when
/// ROUNDS_TEST_POSTGRES_URL is set.
#[tokio::test]
async fn postgres_tallies_follow_every_change_of_the_current_findings() {
    let Some(s) = crate::support::pg_store().await else {
        return;
    };
    tallies_follow_every_change(s).await;
}

async fn tallies_follow_every_change(s: std::sync::Arc<dyn rounds_collector::store::Store>) {
    use rounds_policies::Status::{Error, Fail, NotApplicable, Pass};
    for (practice, site, id) in [("P1", "S1", "a1"), ("P1", "S2", "a2"), ("P2", "S", "a3")] {
        crate::support::enroll(s.as_ref(), practice, site, id).await;
    }
    let t0 = chrono::DateTime::from_timestamp_millis(1_795_000_000_000).unwrap();
    let f = tally_finding;
    let steps = [
        (
            "a1",
            vec![f("r.a", Pass, false), f("r.b", Fail, false), f("r.c", Error, false)],
        ),
        (
            "a2",
            vec![
                f("r.a", Fail, false),
                f("r.b", Fail, true),
                f("r.c", NotApplicable, false),
            ],
        ),
        ("a3", vec![f("r.a", Fail, false)]),
        // r.a starts failing on a1 later than on a2; r.c retires on a1.
        ("a1", vec![f("r.a", Fail, false), f("r.b", Pass, false)]),
        // The accepted risk goes, another comes.
        (
            "a2",
            vec![f("r.a", Fail, false), f("r.b", Fail, false), f("r.c", Error, true)],
        ),
        (
            "a2",
            vec![f("r.a", Fail, false), f("r.b", Fail, false), f("r.c", Error, true)],
        ),
        ("a3", vec![]),
    ];
    let admin = Scope {
        role: Role::Admin,
        practice_id: None,
    };
    for (i, (agent, findings)) in steps.iter().enumerate() {
        let at = t0 + chrono::Duration::minutes(i as i64);
        s.replace_findings(agent, findings, at).await.unwrap();
        let (tallies, counts) = counted(s.as_ref(), &admin).await;
        let mut stored = s.rule_tallies(&admin).await.unwrap();
        stored.sort_by(|a, b| (a.practice_id, &a.rule).cmp(&(b.practice_id, &b.rule)));
        assert_eq!(stored, tallies, "after step {i}");
        for (id, c) in counts {
            assert_eq!(s.agent(&admin, &id).await.unwrap().findings, c, "{id} after step {i}");
        }
    }
    // The end state in figures: P1's r.a fails on both machines, since a2's (older) failure.
    let p1 = s.agent(&admin, "a1").await.unwrap().practice_id;
    let stored = s.rule_tallies(&admin).await.unwrap();
    let ra = stored.iter().find(|t| t.practice_id == p1 && t.rule == "r.a").unwrap();
    assert_eq!(
        (ra.fail, ra.pass, ra.bad_since),
        (2, 0, Some(t0 + chrono::Duration::minutes(1)))
    );
    let rc = stored.iter().find(|t| t.practice_id == p1 && t.rule == "r.c").unwrap();
    assert_eq!((rc.error, rc.accepted, rc.bad_since), (0, 1, None));
    assert!(!stored.iter().any(|t| t.practice_id != p1), "P2 has no finding left");
    let manager = Scope {
        role: Role::PracticeManager,
        practice_id: Some(p1),
    };
    assert_eq!(s.rule_tallies(&manager).await.unwrap().len(), 3);
    s.replace_findings("a3", &[f("r.z", Pass, false)], t0).await.unwrap();
    assert!(
        s.rule_tallies(&manager)
            .await
            .unwrap()
            .iter()
            .all(|t| t.practice_id == p1)
    );

    // The triggers move the tallies by the changed finding (migration 0017): 300 random
    // evaluations over five agents of two practices (statuses, accepted risks, rules that
    // appear and retire, the oldest failure resolving) leave them equal to a count from scratch.
    for (practice, site, id) in [("P1", "S1", "b1"), ("P1", "S2", "b2"), ("P2", "S", "b3")] {
        crate::support::enroll(s.as_ref(), practice, site, id).await;
    }
    let agents = ["a1", "a2", "a3", "b1", "b2", "b3"];
    let statuses = [Pass, Fail, Error, NotApplicable];
    let mut seed: u64 = 0x5eed_7a11;
    let mut next = |n: u64| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    for i in 0..300 {
        let agent = agents[next(agents.len() as u64) as usize];
        let mut findings = Vec::new();
        for rule in ["r.a", "r.b", "r.c", "r.d"] {
            if next(5) > 0 {
                let status = statuses[next(4) as usize];
                findings.push(f(rule, status, next(4) == 0));
            }
        }
        let at = t0 + chrono::Duration::minutes(100 + i);
        s.replace_findings(agent, &findings, at).await.unwrap();
        let (tallies, _) = counted(s.as_ref(), &admin).await;
        let mut stored = s.rule_tallies(&admin).await.unwrap();
        stored.sort_by(|a, b| (a.practice_id, &a.rule).cmp(&(b.practice_id, &b.rule)));
        assert_eq!(stored, tallies, "after random step {i} ({agent}: {findings:?})");
    }
}

/// SQLite's `observation_fields` (json_extract) gives what picking the fields from
/// `observation_history` gives (the trait's default): the same rows that ran, in order, with
/// booleans, numbers, strings and missing fields as in the payload, one field or several.
#[tokio::test]
async fn sqlite_observation_fields_are_the_payloads_fields() {
    let f = Fleet::new().await;
    let t = f.app.state.now();
    let failed = Observation::error("ehr.probe", "ehr-other", t, "could not probe");
    report_and_evaluate(
        &f.app,
        &f.a_agent,
        2,
        &[probe(false, 3000.0, t), backup("failed", t), failed],
    )
    .await;
    f.app.advance(60);
    report_and_evaluate(&f.app, &f.a_agent, 3, &[probe(true, 150.5, f.app.state.now())]).await;
    let store = f.app.store();
    let scope = Scope {
        role: Role::Technician,
        practice_id: None,
    };
    let (from, to) = (t - chrono::Duration::days(1), t + chrono::Duration::days(1));
    for (kind, fields) in [
        ("ehr.probe", &["up"][..]),
        ("ehr.probe", &["up", "latency_ms", "target", "no_such_field"][..]),
        ("backup", &["tool", "last_result", "last_success_at"][..]),
        ("backup", &[][..]),
    ] {
        let got = store
            .observation_fields(&scope, f.a, kind, from, to, fields)
            .await
            .unwrap();
        let want: Vec<_> = store
            .observation_history(&scope, f.a, kind, from, to)
            .await
            .unwrap()
            .into_iter()
            .filter(|o| o.observation.status == rounds_protocol::ObservationStatus::Ok)
            .map(|o| rounds_collector::store::ObservedFields {
                values: fields
                    .iter()
                    .map(|k| o.observation.data.get(k).cloned().unwrap_or_default())
                    .collect(),
                agent_id: o.agent_id,
                subject: o.observation.subject,
                observed_at: o.observation.observed_at,
            })
            .collect();
        assert!(!want.is_empty(), "{kind}");
        assert_eq!(got, want, "{kind} {fields:?}");
    }
    let probes = store
        .observation_fields(&scope, f.a, "ehr.probe", from, to, &["up", "latency_ms"])
        .await
        .unwrap();
    let values: Vec<_> = probes.iter().map(|o| o.values.clone()).collect();
    assert_eq!(
        values,
        vec![
            // Fleet::new's first report, then the two above.
            vec![serde_json::json!(true), serde_json::json!(120.0)],
            vec![serde_json::json!(false), serde_json::json!(3000.0)],
            vec![serde_json::json!(true), serde_json::json!(150.5)]
        ]
    );
    // Another practice's manager gets nothing of it.
    let other = Scope {
        role: Role::PracticeManager,
        practice_id: Some(f.b),
    };
    assert!(
        store
            .observation_fields(&other, f.a, "ehr.probe", from, to, &["up"])
            .await
            .is_err()
    );
}
