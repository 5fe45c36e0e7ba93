//! Dashboard tests through the router: login and CSRF, sessions, scoping, escaping, status.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use rounds_collector::admin;
use rounds_collector::secrets;
use rounds_collector::store::{NewAgent, NewToken, Role};
use rounds_policies::{Exception, Finding, Severity, Status};
use rounds_protocol::{Observation, obs};

use crate::support::{TestApp, body_text};

pub(crate) const PASSWORD: &str = "correct horse battery staple";

// ---- requests and responses

pub(crate) fn get(path: &str, cookies: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::get(path);
    if !cookies.is_empty() {
        b = b.header(header::COOKIE, cookie_header(cookies));
    }
    b.body(Body::empty()).unwrap()
}

pub(crate) fn post_form(path: &str, cookies: &[(&str, &str)], fields: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if !cookies.is_empty() {
        b = b.header(header::COOKIE, cookie_header(cookies));
    }
    let body = fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    b.body(Body::from(body)).unwrap()
}

fn cookie_header(cookies: &[(&str, &str)]) -> String {
    cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Percent-encodes everything but unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The `Set-Cookie` header that sets cookie `name`, if the response has one.
pub(crate) fn set_cookie(resp: &Response<Body>, name: &str) -> Option<String> {
    resp.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with(&format!("{name}=")))
}

/// The value part of a `Set-Cookie` header.
pub(crate) fn cookie_value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string()
}

pub(crate) fn location(resp: &Response<Body>) -> Option<&str> {
    resp.headers().get(header::LOCATION).map(|v| v.to_str().unwrap())
}

/// The value of the hidden `csrf` field in a page.
pub(crate) fn hidden_csrf(body: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = body.find(marker).unwrap_or_else(|| panic!("no csrf field in {body}")) + marker.len();
    body[start..].split('"').next().unwrap().to_string()
}

/// The table row of the agent with this (escaped) hostname, which links to its page.
pub(crate) fn row<'b>(body: &'b str, hostname: &str) -> &'b str {
    let cell = format!(r#"">{hostname}</a></td>"#);
    let at = body
        .find(&cell)
        .unwrap_or_else(|| panic!("no row for {hostname} in {body}"));
    let start = body[..at].rfind("<tr").unwrap();
    let end = at + body[at..].find("</tr>").unwrap();
    &body[start..end]
}

/// The page without the one script tag every page has (the collector's own `/static/app.js`),
/// so what remains must hold no `<script` at all.
pub fn without_app_script(body: &str) -> String {
    let tag = r#"<script src="/static/app.js" defer></script>"#;
    assert_eq!(body.matches(tag).count(), 1, "{body}");
    body.replace(tag, "")
}

// ---- data

pub(crate) async fn user(app: &TestApp, name: &str, role: Role, practice: Option<&str>) {
    admin::user_add(app.store(), name, role, practice, Some(PASSWORD.to_string()))
        .await
        .unwrap();
}

/// Enrolls an agent through the store; returns its id.
pub(crate) async fn agent(
    app: &TestApp,
    practice: &str,
    site: &str,
    hostname: &str,
    os: &str,
    version: &str,
) -> String {
    let token = secrets::random_secret("rnd_tok_");
    let now = app.state.now();
    app.store()
        .create_token(
            NewToken {
                practice: practice.into(),
                site: site.into(),
                token_hash: secrets::hash_secret(&token),
                expires_at: now + chrono::Duration::hours(1),
            },
            now,
        )
        .await
        .unwrap();
    let agent_id = secrets::random_id();
    app.store()
        .enroll(
            &secrets::hash_secret(&token),
            NewAgent {
                agent_id: agent_id.clone(),
                secret_hash: secrets::hash_secret(&secrets::random_secret("rnd_sec_")),
                hostname: hostname.into(),
                os: os.into(),
                agent_version: version.into(),
            },
            now,
        )
        .await
        .unwrap();
    agent_id
}

// ---- flows

/// Opens the login page; returns the CSRF token (cookie and hidden field agree).
async fn login_form(app: &TestApp) -> String {
    let resp = app.send(get("/login", &[])).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let cookie = set_cookie(&resp, "rounds_csrf").expect("csrf cookie");
    let body = body_text(resp).await;
    let csrf = hidden_csrf(&body);
    assert_eq!(cookie_value(&cookie), csrf);
    csrf
}

pub(crate) async fn login(app: &TestApp, username: &str, password: &str) -> Response<Body> {
    let csrf = login_form(app).await;
    app.send(post_form(
        "/login",
        &[("rounds_csrf", &csrf)],
        &[("username", username), ("password", password), ("csrf", &csrf)],
    ))
    .await
}

/// Logs in; returns the session token.
pub(crate) async fn session(app: &TestApp, username: &str) -> String {
    let resp = login(app, username, PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "login of {username}");
    assert_eq!(location(&resp), Some("/"));
    cookie_value(&set_cookie(&resp, "rounds_session").expect("session cookie"))
}

/// `GET /` with a session; the status and the body.
async fn overview(app: &TestApp, session: &str) -> (StatusCode, String) {
    let resp = app.send(get("/", &[("rounds_session", session)])).await;
    let status = resp.status();
    (status, body_text(resp).await)
}

async fn assert_sent_to_login(app: &TestApp, cookies: &[(&str, &str)], case: &str) {
    let resp = app.send(get("/", cookies)).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{case}");
    assert_eq!(location(&resp), Some("/login"), "{case}");
}

// ---- tests

#[tokio::test]
async fn login_page_sets_a_locked_down_csrf_cookie_matching_the_form() {
    let app = TestApp::new();
    let resp = app.send(get("/login", &[])).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let cookie = set_cookie(&resp, "rounds_csrf").expect("csrf cookie");
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/login"] {
        assert!(cookie.contains(attr), "{attr} missing in {cookie}");
    }
    let ctype = resp.headers()[header::CONTENT_TYPE].to_str().unwrap().to_string();
    assert!(ctype.starts_with("text/html"), "{ctype}");
    assert!(
        resp.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
    assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
    let body = body_text(resp).await;
    assert_eq!(hidden_csrf(&body), cookie_value(&cookie));
    assert!(cookie_value(&cookie).len() >= 64, "{cookie}");
    for field in [
        r#"name="username""#,
        r#"name="password""#,
        r#"method="post" action="/login""#,
    ] {
        assert!(body.contains(field), "{field} missing in {body}");
    }
    // Nothing loaded from elsewhere, no script but the collector's own file.
    let body = without_app_script(&body);
    assert!(!body.contains("http://") && !body.contains("https://") && !body.contains("<script"));

    // Every visit gets a token; the same browser keeps its token (two tabs both work).
    let other = login_form(&app).await;
    assert_ne!(other, cookie_value(&cookie));
    let again = app.send(get("/login", &[("rounds_csrf", &other)])).await;
    assert_eq!(hidden_csrf(&body_text(again).await), other);
    // A cookie that is not one of ours is not echoed into the page.
    let odd = app.send(get("/login", &[("rounds_csrf", "attacker-chosen")])).await;
    assert_ne!(hidden_csrf(&body_text(odd).await), "attacker-chosen");
}

#[tokio::test]
async fn login_sets_a_secure_session_and_the_overview_shows_the_fleet() {
    let app = TestApp::new();
    agent(
        &app,
        "Smith Family Practice",
        "Main St",
        "frontdesk-01",
        "Windows 11 Pro",
        "0.3.1",
    )
    .await;
    user(&app, "alice", Role::Technician, None).await;

    let resp = login(&app, "alice", PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp), Some("/"));
    let cookie = set_cookie(&resp, "rounds_session").expect("session cookie");
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(cookie.contains(attr), "{attr} missing in {cookie}");
    }
    // The login form's CSRF cookie is spent.
    assert!(set_cookie(&resp, "rounds_csrf").unwrap().contains("Max-Age=0"));
    let token = cookie_value(&cookie);
    assert!(token.starts_with("rnd_ses_") && token.len() == 8 + 64, "{token}");
    assert_eq!(app.state.metrics.logins.load(std::sync::atomic::Ordering::Relaxed), 1);

    // Only the token's hash is stored.
    let now = app.state.now();
    assert!(
        app.store()
            .session(&secrets::hash_secret(&token), now)
            .await
            .unwrap()
            .is_some()
    );
    assert!(app.store().session(&token, now).await.unwrap().is_none());

    let (status, body) = overview(&app, &token).await;
    assert_eq!(status, StatusCode::OK);
    for text in [
        "Rounds",
        "alice",
        "(technician)",
        "Smith Family Practice",
        "Main St",
        "frontdesk-01",
        "Windows 11 Pro",
        "0.3.1",
        r#"<script src="/static/app.js" defer></script>"#,
        r#"action="/logout""#,
    ] {
        assert!(body.contains(text), "{text:?} missing in {body}");
    }
    assert!(!body.contains("No practices yet"));
    // A logged-in user who opens the login page goes to the overview.
    let resp = app.send(get("/login", &[("rounds_session", &token)])).await;
    assert_eq!((resp.status(), location(&resp)), (StatusCode::SEE_OTHER, Some("/")));
}

#[tokio::test]
async fn failed_logins_are_refused_alike_without_a_session() {
    let app = TestApp::new();
    user(&app, "alice", Role::Admin, None).await;
    let cases = [
        ("wrong password", "alice", "not the password!"),
        ("unknown user", "mallory", PASSWORD),
        ("empty password", "alice", ""),
        ("empty username", "", PASSWORD),
        ("username case differs", "Alice", PASSWORD),
    ];
    for (case, username, password) in cases {
        let resp = login(&app, username, password).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{case}");
        assert!(set_cookie(&resp, "rounds_session").is_none(), "{case}");
        let body = body_text(resp).await;
        assert!(body.contains("invalid username or password"), "{case}: {body}");
        // The form is shown again, ready for another try.
        assert!(body.contains(r#"name="password""#), "{case}");
    }
    let m = &app.state.metrics;
    assert_eq!(
        m.logins_failed.load(std::sync::atomic::Ordering::Relaxed),
        cases.len() as u64
    );
    assert_eq!(m.logins.load(std::sync::atomic::Ordering::Relaxed), 0);
    // Every failed attempt is in the collector's audit log (log-in monitoring).
    let audit = app.store().audit_entries(100).await.unwrap();
    let failed = audit.iter().filter(|e| e.action == "login_failed").count();
    assert_eq!(failed, cases.len());
}

#[tokio::test]
async fn login_without_the_right_csrf_token_is_forbidden() {
    let app = TestApp::new();
    user(&app, "alice", Role::Admin, None).await;
    let good = login_form(&app).await;
    let other = login_form(&app).await;
    let cases: [(&str, Option<&str>, Option<&str>); 6] = [
        ("no cookie, no field", None, None),
        ("no cookie", None, Some(&good)),
        ("no field", Some(&good), None),
        ("wrong field", Some(&good), Some("rnd_csrf_0000")),
        ("cookie and field from different visits", Some(&good), Some(&other)),
        ("both empty", Some(""), Some("")),
    ];
    for (case, cookie, field) in cases {
        let cookies: Vec<(&str, &str)> = cookie.map(|c| ("rounds_csrf", c)).into_iter().collect();
        let mut fields = vec![("username", "alice"), ("password", PASSWORD)];
        fields.extend(field.map(|f| ("csrf", f)));
        let resp = app.send(post_form("/login", &cookies, &fields)).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{case}");
        assert!(set_cookie(&resp, "rounds_session").is_none(), "{case}");
        let body = body_text(resp).await;
        assert!(body.contains("forbidden"), "{case}: {body}");
    }
    // Refused before the password was looked at.
    let m = &app.state.metrics;
    assert_eq!(m.logins.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert_eq!(m.logins_failed.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[tokio::test]
async fn logout_needs_the_sessions_csrf_token() {
    let app = TestApp::new();
    user(&app, "alice", Role::Admin, None).await;
    let login_csrf = login_form(&app).await;
    let token = session(&app, "alice").await;
    let cases: [(&str, Option<&str>); 4] = [
        ("no token", None),
        ("empty token", Some("")),
        ("wrong token", Some("rnd_csrf_0000")),
        ("a login form's token", Some(&login_csrf)),
    ];
    for (case, csrf) in cases {
        let fields: Vec<(&str, &str)> = csrf.map(|c| ("csrf", c)).into_iter().collect();
        let resp = app
            .send(post_form("/logout", &[("rounds_session", &token)], &fields))
            .await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{case}");
        // Still logged in.
        assert_eq!(overview(&app, &token).await.0, StatusCode::OK, "{case}");
    }
}

#[tokio::test]
async fn logout_ends_the_session() {
    let app = TestApp::new();
    user(&app, "alice", Role::Admin, None).await;
    let token = session(&app, "alice").await;
    let (status, body) = overview(&app, &token).await;
    assert_eq!(status, StatusCode::OK);
    let csrf = hidden_csrf(&body);

    let resp = app
        .send(post_form("/logout", &[("rounds_session", &token)], &[("csrf", &csrf)]))
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp), Some("/login"));
    let cleared = set_cookie(&resp, "rounds_session").expect("cookie cleared");
    assert!(
        cleared.starts_with("rounds_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );

    // The old cookie no longer works, here or in the store.
    assert_sent_to_login(&app, &[("rounds_session", &token)], "after logout").await;
    let now = app.state.now();
    assert!(
        app.store()
            .session(&secrets::hash_secret(&token), now)
            .await
            .unwrap()
            .is_none()
    );
    // Logging out again without a session just goes to the login page.
    let resp = app
        .send(post_form("/logout", &[("rounds_session", &token)], &[("csrf", &csrf)]))
        .await;
    assert_eq!(
        (resp.status(), location(&resp)),
        (StatusCode::SEE_OTHER, Some("/login"))
    );
}

#[tokio::test]
async fn overview_without_a_live_session_redirects_to_login() {
    let app = TestApp::new();
    user(&app, "alice", Role::Admin, None).await;
    let token = session(&app, "alice").await;
    let login_csrf = login_form(&app).await;
    let hash = secrets::hash_secret(&token);
    let cases: [(&str, &[(&str, &str)]); 6] = [
        ("no cookie", &[]),
        ("empty cookie", &[("rounds_session", "")]),
        ("made-up token", &[("rounds_session", "rnd_ses_0123456789abcdef")]),
        ("the stored hash instead of the token", &[("rounds_session", &hash)]),
        ("token under another cookie name", &[("session", &token)]),
        ("only a csrf cookie", &[("rounds_csrf", &login_csrf)]),
    ];
    for (case, cookies) in cases {
        assert_sent_to_login(&app, cookies, case).await;
    }
    // The real one still works, also among other cookies.
    let resp = app
        .send(get("/", &[("theme", "dark"), ("rounds_session", &token)]))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn expired_session_redirects_to_login() {
    let app = TestApp::with_settings(|s| s.session_ttl = Duration::from_secs(60));
    user(&app, "alice", Role::Admin, None).await;
    let resp = login(&app, "alice", PASSWORD).await;
    let cookie = set_cookie(&resp, "rounds_session").unwrap();
    assert!(cookie.contains("Max-Age=60"), "{cookie}");
    let token = cookie_value(&cookie);

    app.advance(59);
    assert_eq!(overview(&app, &token).await.0, StatusCode::OK);
    app.advance(2);
    assert_sent_to_login(&app, &[("rounds_session", &token)], "61 s after login with a 60 s ttl").await;
}

#[tokio::test]
async fn users_see_only_the_practices_their_role_allows() {
    let app = TestApp::new();
    agent(
        &app,
        "Smith Family Practice",
        "Main St",
        "smith-frontdesk",
        "Ubuntu 24.04",
        "0.3.1",
    )
    .await;
    agent(
        &app,
        "Lakeside Dental",
        "Clinic",
        "lakeside-xray",
        "Windows 11 Pro",
        "0.3.1",
    )
    .await;
    let cases = [
        ("admin", Role::Admin, None, &["smith", "lakeside"][..]),
        ("tech", Role::Technician, None, &["smith", "lakeside"][..]),
        (
            "pm-smith",
            Role::PracticeManager,
            Some("Smith Family Practice"),
            &["smith"][..],
        ),
        (
            "pm-lakeside",
            Role::PracticeManager,
            Some("Lakeside Dental"),
            &["lakeside"][..],
        ),
    ];
    for (name, role, practice, _) in &cases {
        user(&app, name, *role, *practice).await;
    }
    let all = [
        ("smith", ["Smith Family Practice", "Main St", "smith-frontdesk"]),
        ("lakeside", ["Lakeside Dental", "Clinic", "lakeside-xray"]),
    ];
    for (name, _, _, visible) in cases {
        let token = session(&app, name).await;
        let (status, body) = overview(&app, &token).await;
        assert_eq!(status, StatusCode::OK, "{name}");
        for (key, texts) in &all {
            for text in texts {
                assert_eq!(
                    body.contains(text),
                    visible.contains(key),
                    "{name} and {text:?}:\n{body}"
                );
            }
        }
    }
}

#[tokio::test]
async fn values_from_agents_and_people_are_escaped() {
    let app = TestApp::new();
    agent(
        &app,
        "O'Brien & <i>Partners</i>",
        "<u>Annex</u>",
        "<script>alert(1)</script>",
        r#""><img src=x onerror=alert(2)>"#,
        "<b>9.9</b>",
    )
    .await;
    user(&app, "<em>boss</em>", Role::Admin, None).await;
    let token = session(&app, "<em>boss</em>").await;
    let (status, body) = overview(&app, &token).await;
    assert_eq!(status, StatusCode::OK);
    // askama writes `<` `>` `&` `"` `'` as numeric character references.
    for escaped in [
        "&#60;script&#62;alert(1)&#60;/script&#62;",
        "&#34;&#62;&#60;img src=x onerror=alert(2)&#62;",
        "&#60;b&#62;9.9&#60;/b&#62;",
        "O&#39;Brien &#38; &#60;i&#62;Partners&#60;/i&#62;",
        "&#60;u&#62;Annex&#60;/u&#62;",
        "&#60;em&#62;boss&#60;/em&#62;",
    ] {
        assert!(body.contains(escaped), "{escaped} missing in {body}");
    }
    let body = without_app_script(&body);
    for raw in ["<script", "<img", "<b>", "<i>", "<u>", "<em>", "O'Brien"] {
        assert!(!body.contains(raw), "{raw} unescaped in {body}");
    }
}

#[tokio::test]
async fn online_and_offline_agents_are_shown_and_counted() {
    let app = TestApp::new();
    let up = agent(
        &app,
        "Smith Family Practice",
        "Main St",
        "frontdesk",
        "Ubuntu 24.04",
        "0.3.0",
    )
    .await;
    agent(
        &app,
        "Smith Family Practice",
        "Main St",
        "backoffice",
        "macOS 15.1",
        "0.3.0",
    )
    .await;
    agent(
        &app,
        "Smith Family Practice",
        "Annex",
        "exam-room",
        "Windows 11 Pro",
        "0.3.0",
    )
    .await;
    user(&app, "alice", Role::Admin, None).await;
    let token = session(&app, "alice").await;
    let seen = app.state.now();
    app.store().heartbeat(&up, "0.3.1", None, seen).await.unwrap();
    let absolute = seen.format("%Y-%m-%d %H:%M:%S UTC").to_string();

    // (seconds to wait, online hosts, offline hosts, how long ago `frontdesk` was seen)
    let steps: [(i64, &[&str], &[&str], &str); 3] = [
        (0, &["frontdesk"], &["backoffice", "exam-room"], "just now"),
        (80, &["frontdesk"], &["backoffice", "exam-room"], "1 min ago"),
        (1000, &[], &["frontdesk", "backoffice", "exam-room"], "18 min ago"),
    ];
    for (wait, online, offline, ago) in steps {
        app.advance(wait);
        let (status, body) = overview(&app, &token).await;
        assert_eq!(status, StatusCode::OK);
        let (n_on, n_off) = (online.len(), offline.len());
        assert!(
            body.contains(&format!("{n_on} online, {n_off} offline")),
            "{wait}: {body}"
        );
        assert!(
            body.contains(&format!(r#"<span class="badge online">{n_on} online</span>"#)),
            "{wait}"
        );
        assert!(
            body.contains(&format!(r#"<span class="badge offline">{n_off} offline</span>"#)),
            "{wait}"
        );
        for host in online {
            let r = row(&body, host);
            assert!(
                r.contains("Online") && !r.contains("Offline"),
                "{host} after {wait}: {r}"
            );
        }
        for host in offline {
            let r = row(&body, host);
            assert!(
                r.contains("Offline") && !r.contains("Online"),
                "{host} after {wait}: {r}"
            );
        }
        let r = row(&body, "frontdesk");
        assert!(r.contains(&absolute) && r.contains(ago), "{ago} after {wait}: {r}");
        // The heartbeat's version replaced the enrolled one.
        assert!(r.contains("0.3.1"), "{r}");
        assert!(row(&body, "backoffice").contains("never"));
    }
}

#[tokio::test]
async fn empty_collector_explains_how_to_start() {
    let app = TestApp::new();
    user(&app, "alice", Role::Admin, None).await;
    let token = session(&app, "alice").await;
    let (status, body) = overview(&app, &token).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("No practices yet."), "{body}");
    assert!(
        body.contains("rounds-collector token create --practice NAME --site NAME"),
        "{body}"
    );
}

// ---- agent page

/// `GET /agents/{id}` with a session; the status and the body.
async fn agent_page(app: &TestApp, session: &str, agent_id: &str) -> (StatusCode, String) {
    let resp = app
        .send(get(&format!("/agents/{agent_id}"), &[("rounds_session", session)]))
        .await;
    let status = resp.status();
    (status, body_text(resp).await)
}

/// The findings table row of a rule.
fn finding_row<'b>(body: &'b str, rule: &str) -> &'b str {
    let marker = format!(r#"<tr id="finding-{rule}">"#);
    let start = body
        .find(&marker)
        .unwrap_or_else(|| panic!("no row for {rule} in {body}"));
    let end = start + body[start..].find("</tr>").unwrap();
    &body[start..end]
}

/// Stores a report for an agent enrolled through the store, and evaluates it as the report
/// endpoint does.
pub(crate) async fn report_and_evaluate(app: &TestApp, agent_id: &str, sequence: u64, observations: &[Observation]) {
    let now = app.state.now();
    crate::support::ingest(app.store(), agent_id, sequence, now, observations, now)
        .await
        .unwrap();
    app.state.evaluator.evaluate_agent(agent_id).await.unwrap();
}

pub(crate) fn hostile_inventory(at: chrono::DateTime<chrono::Utc>) -> Observation {
    Observation::ok(
        "host",
        at,
        &obs::Inventory {
            hostname: "frontdesk".into(),
            os_family: "linux".into(),
            os_name: Some("<b>Ubuntu</b>".into()),
            os_version: Some("24.04".into()),
            kernel_version: Some("6.8.0-<i>generic</i>".into()),
            cpu_model: Some("Intel Core i5".into()),
            cpu_cores: 4,
            memory_total_bytes: 16 * 1024 * 1024 * 1024,
            disks: vec![obs::InventoryDisk {
                device: "/dev/<u>sda1</u>".into(),
                mount_point: "/".into(),
                file_system: "ext4".into(),
                total_bytes: 512 * 1024 * 1024 * 1024,
                available_bytes: 100 * 1024 * 1024 * 1024,
                removable: false,
            }],
            agent_version: "0.3.1".into(),
            ..Default::default()
        },
    )
}

fn firewall(enabled: bool, backend: &str, at: chrono::DateTime<chrono::Utc>) -> Observation {
    Observation::ok(
        "host",
        at,
        &obs::Firewall {
            backend: backend.into(),
            enabled,
            default_inbound: if enabled { "deny" } else { "allow" }.into(),
            profiles: Vec::new(),
        },
    )
}

#[tokio::test]
async fn agent_page_shows_details_and_findings_worst_first_all_escaped() {
    let app = TestApp::new();
    let id = agent(
        &app,
        "O'Brien & <i>Partners</i>",
        "Main St",
        "<script>alert(1)</script>",
        "linux",
        "0.3.1",
    )
    .await;
    user(&app, "alice", Role::Technician, None).await;
    let token = session(&app, "alice").await;

    // Enrolled, not evaluated yet.
    let (status, body) = agent_page(&app, &token, &id).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("not evaluated yet") && body.contains("No findings yet"),
        "{body}"
    );
    assert!(body.contains("no inventory received yet"), "{body}");

    let t0 = app.state.now();
    let backend = r#""><img src=x onerror=alert(2)>"#;
    report_and_evaluate(&app, &id, 1, &[hostile_inventory(t0), firewall(false, backend, t0)]).await;
    app.advance(120);
    let (status, body) = agent_page(&app, &token, &id).await;
    assert_eq!(status, StatusCode::OK);
    for text in [
        "Main St",
        "&#60;b&#62;Ubuntu&#60;/b&#62; 24.04",
        "6.8.0-&#60;i&#62;generic&#60;/i&#62;",
        "Intel Core i5 (4 cores)",
        "16.0 GiB",
        "/dev/&#60;u&#62;sda1&#60;/u&#62;",
        "100.0 GiB free of 512.0 GiB",
        "0.3.1",
        &id,
    ] {
        assert!(body.contains(text), "{text:?} missing in {body}");
    }
    // Findings: the firewall fails, with its citation, since when, the message and the fix.
    let fw = finding_row(&body, "hipaa.network.firewall");
    let rule = app.state.policy.rule("hipaa.network.firewall").unwrap();
    for text in [
        r#"<span class="badge fail">Fail</span>"#,
        "high",
        rule.rule.title.as_str(),
        rule.rule.citation_refs()[0].as_str(),
        "2 min ago",
        "enabled: false",
        "Fix:",
        // The agent's value in the message and the evidence, escaped.
        "&#34;&#62;&#60;img src=x onerror=alert(2)&#62;",
    ] {
        assert!(fw.contains(text), "{text:?} missing in {fw}");
    }
    // Worst first: every failure comes before every error, every error before every pass.
    let pos = |needle: &str| body.find(needle);
    let last_fail = body.rfind(r#"<span class="badge fail">Fail</span>"#).unwrap();
    let first_error = pos(r#"<span class="badge warn">Error</span>"#).expect("unobserved rules are errors");
    assert!(last_fail < first_error);
    if let Some(first_pass) = pos(r#"<span class="badge pass">Pass</span>"#) {
        assert!(body.rfind(r#"<span class="badge warn">Error</span>"#).unwrap() < first_pass);
    }
    // Nothing an agent or a person wrote reaches the page as markup.
    let body = without_app_script(&body);
    for raw in ["<script", "<img", "<b>", "<i>", "<u>", "O'Brien"] {
        assert!(!body.contains(raw), "{raw} unescaped in {body}");
    }
    assert!(body.contains("&#60;script&#62;alert(1)&#60;/script&#62;"));

    // The overview links the host to this page and counts its findings in words.
    let (_, overview_body) = overview(&app, &token).await;
    let r = row(&overview_body, "&#60;script&#62;alert(1)&#60;/script&#62;");
    assert!(r.contains(&format!(r#"href="/agents/{id}""#)), "{r}");
    let n = app.store().agent(&admin_scope(), &id).await.unwrap().findings;
    assert!(
        r.contains(&format!(
            r#"<span class="badge fail">{} fail, {} error</span>"#,
            n.fail, n.error
        )),
        "{n:?}: {r}"
    );

    // Fixed: the firewall passes, since the fix, and no fix is offered.
    let t1 = app.state.now();
    report_and_evaluate(&app, &id, 2, &[firewall(true, "ufw", t1)]).await;
    app.advance(30);
    let (_, body) = agent_page(&app, &token, &id).await;
    let fw = finding_row(&body, "hipaa.network.firewall");
    assert!(fw.contains(r#"<span class="badge pass">Pass</span>"#), "{fw}");
    assert!(fw.contains("30 s ago") && !fw.contains("Fix:"), "{fw}");
}

fn admin_scope() -> rounds_collector::store::Scope {
    rounds_collector::store::Scope {
        role: Role::Admin,
        practice_id: None,
    }
}

#[tokio::test]
async fn accepted_risks_show_as_exceptions_never_as_passes() {
    let app = TestApp::new();
    let id = agent(&app, "Smith Family Practice", "Main St", "xray", "windows", "0.3.1").await;
    user(&app, "alice", Role::Admin, None).await;
    let token = session(&app, "alice").await;
    let finding = |rule: &str, status: Status, accepted_by: Option<&str>| Finding {
        rule: rule.into(),
        title: format!("title of {rule}"),
        status,
        severity: Severity::Critical,
        citations: vec!["164.312(a)(2)(iv)".into()],
        partial_citations: Vec::new(),
        evidence: serde_json::json!({}),
        message: format!("message of {rule}"),
        remediation: (status == Status::Fail).then(|| "turn it on".to_string()),
        exception: accepted_by.map(|by| Exception {
            reason: "imaging vendor forbids <it>".into(),
            accepted_by: by.into(),
            expires: chrono::NaiveDate::from_ymd_opt(2099, 1, 1).unwrap(),
            source: "practice.toml".into(),
        }),
    };
    let now = app.state.now();
    app.store()
        .replace_findings(
            &id,
            &[
                finding("r.accepted", Status::Fail, Some("Dr. O'Brien")),
                finding("r.na", Status::NotApplicable, None),
            ],
            now,
        )
        .await
        .unwrap();
    let (status, body) = agent_page(&app, &token, &id).await;
    assert_eq!(status, StatusCode::OK);
    let r = finding_row(&body, "r.accepted");
    assert!(r.contains(r#"<span class="badge fail">Fail</span>"#), "{r}");
    assert!(!r.contains("Pass"), "{r}");
    assert!(
        r.contains("exception (accepted by Dr. O&#39;Brien until 2099-01-01)"),
        "{r}"
    );
    assert!(r.contains("imaging vendor forbids &#60;it&#62;"), "{r}");
    let na = finding_row(&body, "r.na");
    assert!(na.contains(r#"<span class="badge na">Not applicable</span>"#), "{na}");
    let (_, overview_body) = overview(&app, &token).await;
    assert!(
        row(&overview_body, "xray").contains(r#"<span class="badge fail">1 fail (1 accepted)</span>"#),
        "{overview_body}"
    );
}

#[tokio::test]
async fn agent_page_is_scoped_to_the_users_practice() {
    let app = TestApp::new();
    let smith = agent(&app, "Smith Family Practice", "Main St", "smith-pc", "linux", "0.3.1").await;
    let lakeside = agent(&app, "Lakeside Dental", "Clinic", "lakeside-pc", "linux", "0.3.1").await;
    report_and_evaluate(&app, &lakeside, 1, &[firewall(false, "ufw", app.state.now())]).await;
    user(&app, "pm-smith", Role::PracticeManager, Some("Smith Family Practice")).await;
    user(&app, "tech", Role::Technician, None).await;
    let pm = session(&app, "pm-smith").await;
    let tech = session(&app, "tech").await;

    let (status, body) = agent_page(&app, &pm, &smith).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("smith-pc"));
    for (case, id) in [
        ("another practice's agent", lakeside.as_str()),
        ("no such agent", "nope"),
    ] {
        let (status, body) = agent_page(&app, &pm, id).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{case}");
        assert!(!body.contains("lakeside") && !body.contains("hipaa."), "{case}: {body}");
        assert!(body.contains("Not found"), "{case}: {body}");
    }
    let (status, body) = agent_page(&app, &tech, &lakeside).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("hipaa.network.firewall"), "{body}");
    // Without a session: to the login page.
    let resp = app.send(get(&format!("/agents/{smith}"), &[])).await;
    assert_eq!(
        (resp.status(), location(&resp)),
        (StatusCode::SEE_OTHER, Some("/login"))
    );
}

#[tokio::test]
async fn repeated_failed_logins_are_throttled_then_forgiven() {
    use rounds_collector::web::throttle::{MAX_FAILURES, WINDOW_MINUTES};
    let app = TestApp::new();
    user(&app, "alice", Role::Technician, None).await;
    user(&app, "bob", Role::Technician, None).await;
    for i in 0..MAX_FAILURES {
        let resp = login(&app, "alice", "wrong password!").await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "failure {i}");
    }
    // Now even the right password is refused, without a session, and says why.
    let resp = login(&app, "Alice", PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(set_cookie(&resp, "rounds_session").is_none());
    assert!(body_text(resp).await.contains("too many failed log-ins"));
    // Another user is not affected.
    assert_eq!(login(&app, "bob", PASSWORD).await.status(), StatusCode::SEE_OTHER);
    let audit = app.store().audit_entries(100).await.unwrap();
    assert_eq!(audit.iter().filter(|e| e.action == "login_throttled").count(), 1);
    // After the window, the right password works again.
    app.advance(WINDOW_MINUTES * 60 - 1);
    assert_eq!(
        login(&app, "alice", PASSWORD).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    app.advance(1);
    assert_eq!(login(&app, "alice", PASSWORD).await.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn agent_page_shows_delivery_gaps_integrity_and_a_refused_configuration_escaped() {
    use rounds_collector::store::{AgentReportedState, IncomingReport};
    let app = TestApp::new();
    let id = agent(&app, "P", "Main", "frontdesk", "linux", "0.1.0").await;
    user(&app, "alice", Role::Technician, None).await;
    let token = session(&app, "alice").await;
    let (_, body) = agent_page(&app, &token, &id).await;
    assert!(body.contains("intact") && body.contains("not reported"), "{body}");

    let now = app.state.now();
    let mut tx = app.store().begin().await.unwrap();
    for (sequence, dropped) in [
        (1, vec![]),
        (
            5,
            vec![rounds_protocol::DroppedRange {
                first: 2,
                last: 3,
                reason: "spool_full".into(),
            }],
        ),
    ] {
        let report = rounds_protocol::Report {
            protocol: 1,
            agent_id: id.clone(),
            sequence,
            created_at: now,
            check: None,
            complete: false,
            prev_hash: None,
            hash: None,
            dropped,
            observations: vec![],
        };
        let incoming = IncomingReport {
            report: &report,
            received_at: now,
            future_after: now,
        };
        tx.deliver_report(&id, incoming).await.unwrap();
    }
    tx.agent_reported_state(
        &id,
        &AgentReportedState {
            config_version: Some("\"v7\"".into()),
            config_error: Some("unknown check `<backup>`".into()),
            spool_depth: Some(4),
            spool_error: None,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let (status, body) = agent_page(&app, &token, &id).await;
    assert_eq!(status, StatusCode::OK);
    for text in [
        "2..3 (dropped by the agent: spool_full)",
        "4 (missing, unexplained)",
        "1 problem(s)",
        "report 4 is missing",
        "configuration refused: unknown check `&#60;backup&#62;`",
        "4 waiting",
    ] {
        assert!(body.contains(text), "{text:?} missing in {body}");
    }
}

// Tamper acknowledgement (core, issue 11).
#[tokio::test]
async fn agent_page_lists_open_tamper_events_escaped_until_acknowledged() {
    let app = TestApp::new();
    let id = agent(&app, "P", "Main", "frontdesk", "linux", "0.1.0").await;
    user(&app, "alice", Role::Technician, None).await;
    let token = session(&app, "alice").await;
    let now = app.state.now();
    let path = "/var/log/<b>ehr</b>.log";
    let tamper = serde_json::json!({"id": "tmp-1", "kind": "truncated", "detected_at": now});
    let o = Observation {
        kind: "audit.log".into(),
        subject: path.into(),
        observed_at: now,
        status: rounds_protocol::ObservationStatus::Ok,
        data: serde_json::json!({"path": path, "present": true, "truncated": true, "append_only": false,
                                 "tamper": tamper, "last_tamper": tamper}),
        error: None,
    };
    report_and_evaluate(&app, &id, 1, &[o]).await;
    let (_, body) = agent_page(&app, &token, &id).await;
    assert!(
        body.contains("tmp-1 (truncated on /var/log/&#60;b&#62;ehr&#60;/b&#62;.log"),
        "{body}"
    );
    assert!(body.contains("--tamper tmp-1"), "{body}");
    let scope = rounds_collector::store::Scope {
        role: Role::Admin,
        practice_id: None,
    };
    rounds_collector::tamper::acknowledge(
        &app.state.evaluator,
        &scope,
        "cli",
        &id,
        "tmp-1",
        "alice",
        "rotation test",
    )
    .await
    .unwrap();
    let (_, body) = agent_page(&app, &token, &id).await;
    assert!(!body.contains("open-tamper"), "{body}");
}
