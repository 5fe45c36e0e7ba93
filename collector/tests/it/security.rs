//! Security (issue 15): revocation, API-key expiry, caps on echoed values, login throttling,
//! limits of the real TLS server, key files.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use rounds_collector::security::revoke;
use rounds_collector::store::Role;
use rounds_protocol::error_codes::CREDENTIALS_REVOKED;
use serde_json::{Value, json};

use crate::api::{enrolled, get, post_json};
use crate::support::{TestApp, body_text};

fn heartbeat(agent_id: &str) -> Value {
    json!({"protocol": 1, "agent_id": agent_id, "sent_at": chrono::Utc::now(), "agent_version": "0.1.0", "agent_uptime_secs": 5})
}

fn bearer(method: &str, path: &str, key: &str, body: Option<Value>) -> Request<Body> {
    let b = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {key}"));
    match body {
        Some(v) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    }
}

async fn admin_key(app: &TestApp) -> String {
    revoke::apikey_create(app.store(), Role::Admin, None, "admin", None, "test", app.state.now())
        .await
        .unwrap()
        .key
}

#[tokio::test]
async fn a_revoked_agent_is_refused_with_the_revoked_code_on_its_next_request() {
    let app = TestApp::new();
    let e = enrolled(&app, "Smith", "frontdesk").await;
    let creds = Some((e.agent_id.as_str(), e.agent_secret.as_str()));
    let resp = app
        .send(post_json("/api/v1/agent/heartbeat", &heartbeat(&e.agent_id), creds))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);

    assert!(
        revoke::agent_revoke(app.store(), &e.agent_id, "cli", app.state.now())
            .await
            .unwrap()
    );
    let resp = app
        .send(post_json("/api/v1/agent/heartbeat", &heartbeat(&e.agent_id), creds))
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: Value = serde_json::from_str(&body_text(resp).await).unwrap();
    assert_eq!(body["code"], CREDENTIALS_REVOKED, "{body}");

    // A wrong secret for the revoked id learns nothing about revocation.
    let resp = app
        .send(post_json(
            "/api/v1/agent/heartbeat",
            &heartbeat(&e.agent_id),
            Some((&e.agent_id, "wrong")),
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: Value = serde_json::from_str(&body_text(resp).await).unwrap();
    assert!(body.get("code").is_none(), "{body}");

    // Revoking again says so; an unknown agent is not found; the audit log has it once.
    assert!(
        !revoke::agent_revoke(app.store(), &e.agent_id, "cli", app.state.now())
            .await
            .unwrap()
    );
    assert!(
        revoke::agent_revoke(app.store(), "nope", "cli", app.state.now())
            .await
            .is_err()
    );
    let audit = app.store().audit_entries(50).await.unwrap();
    assert_eq!(audit.iter().filter(|a| a.action == "agent.revoke").count(), 1);
}

#[tokio::test]
async fn revoked_and_expired_api_keys_are_refused_from_the_next_request() {
    let app = TestApp::new();
    let key = revoke::apikey_create(app.store(), Role::Technician, None, "t", None, "test", app.state.now())
        .await
        .unwrap();
    assert_eq!(
        app.send(get("/api/v1/agents", Some(&key.key))).await.status(),
        StatusCode::OK
    );
    assert!(
        revoke::apikey_revoke(app.store(), key.id, "cli", app.state.now())
            .await
            .unwrap()
    );
    assert_eq!(
        app.send(get("/api/v1/agents", Some(&key.key))).await.status(),
        StatusCode::UNAUTHORIZED
    );

    let short = revoke::apikey_create(
        app.store(),
        Role::Technician,
        None,
        "short",
        Some(std::time::Duration::from_secs(3600)),
        "test",
        app.state.now(),
    )
    .await
    .unwrap();
    assert_eq!(
        app.send(get("/api/v1/agents", Some(&short.key))).await.status(),
        StatusCode::OK
    );
    app.advance(3601);
    assert_eq!(
        app.send(get("/api/v1/agents", Some(&short.key))).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let listed = app.store().api_keys().await.unwrap();
    assert!(listed.iter().any(|k| k.id == key.id && k.revoked_at.is_some()));
    assert!(listed.iter().any(|k| k.id == short.id && k.expires_at.is_some()));
}

#[tokio::test]
async fn apikey_practice_is_refused_for_roles_that_see_every_practice() {
    let app = TestApp::new();
    let _ = enrolled(&app, "Alpha", "h").await;
    for role in [Role::Admin, Role::Technician] {
        let e = rounds_collector::admin::apikey_create(app.store(), role, Some("Alpha"), "k")
            .await
            .unwrap_err();
        assert!(e.is_usage(), "{e}");
        assert!(
            e.to_string()
                .contains("--practice applies only to the practice_manager role"),
            "{e}"
        );
    }
    assert!(app.store().api_keys().await.unwrap().is_empty(), "nothing was stored");
    rounds_collector::admin::apikey_create(app.store(), Role::PracticeManager, Some("Alpha"), "pm")
        .await
        .unwrap();
}

#[tokio::test]
async fn the_admin_api_revokes_agents_and_keys_and_removes_users_for_admins_only() {
    let app = TestApp::new();
    let e = enrolled(&app, "Smith", "frontdesk").await;
    let admin = admin_key(&app).await;
    let tech = revoke::apikey_create(app.store(), Role::Technician, None, "t", None, "test", app.state.now())
        .await
        .unwrap();
    let path = format!("/api/v1/agents/{}/revoke", e.agent_id);
    assert_eq!(
        app.send(bearer("POST", &path, &tech.key, None)).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.send(bearer("POST", &path, &admin, None)).await.status(),
        StatusCode::OK
    );
    let creds = Some((e.agent_id.as_str(), e.agent_secret.as_str()));
    let resp = app
        .send(post_json("/api/v1/agent/heartbeat", &heartbeat(&e.agent_id), creds))
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // Keys: create with an expiry, list, revoke.
    let resp = app
        .send(bearer(
            "POST",
            "/api/v1/apikeys",
            &admin,
            Some(json!({"role": "technician", "label": "ci", "expires": "1d"})),
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let created: Value = serde_json::from_str(&body_text(resp).await).unwrap();
    let new_key = created["key"].as_str().unwrap().to_string();
    assert!(created["expires_at"].is_string(), "{created}");
    assert_eq!(
        app.send(get("/api/v1/agents", Some(&new_key))).await.status(),
        StatusCode::OK
    );
    let resp = app.send(bearer("GET", "/api/v1/apikeys", &admin, None)).await;
    let listed = body_text(resp).await;
    assert!(!listed.contains(&new_key), "the key itself is never listed");
    let path = format!("/api/v1/apikeys/{}/revoke", created["id"]);
    assert_eq!(
        app.send(bearer("POST", &path, &admin, None)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.send(get("/api/v1/agents", Some(&new_key))).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let resp = app
        .send(bearer(
            "POST",
            "/api/v1/apikeys",
            &admin,
            Some(json!({"role": "admin", "practice": "Smith"})),
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    // Users: a removed user's session ends; the last admin stays.
    rounds_collector::admin::user_add(
        app.store(),
        "carol",
        Role::Technician,
        None,
        Some("a long password 1".into()),
    )
    .await
    .unwrap();
    let carol = app.store().user("carol").await.unwrap().unwrap();
    let now = app.state.now();
    app.store()
        .create_session("h", carol.id, "csrf", now, now + chrono::Duration::hours(1))
        .await
        .unwrap();
    assert!(app.store().session("h", now).await.unwrap().is_some());
    assert_eq!(
        app.send(bearer("DELETE", "/api/v1/users/carol", &admin, None))
            .await
            .status(),
        StatusCode::OK
    );
    assert!(app.store().session("h", now).await.unwrap().is_none());
    assert!(app.store().user("carol").await.unwrap().is_none());
    rounds_collector::admin::user_add(app.store(), "root", Role::Admin, None, Some("a long password 1".into()))
        .await
        .unwrap();
    assert_eq!(
        app.send(bearer("DELETE", "/api/v1/users/root", &admin, None))
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
}

/// Log lines written while the returned guard lives, on this thread (the tests' runtime is
/// single-threaded, so every request's log lines land here).
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    fn start() -> (Self, tracing::subscriber::DefaultGuard) {
        let c = Captured::default();
        let writer = c.clone();
        let sub = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (c, tracing::subscriber::set_default(sub))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn an_unknown_protocol_value_is_echoed_capped_in_the_answer_and_the_log() {
    let app = TestApp::new();
    let (log, _guard) = Captured::start();
    let huge = "A".repeat(200_000);
    let body = json!({"protocol": huge, "token": "t", "hostname": "h", "os": "linux", "agent_version": "1"});
    let resp = app.send(post_json("/api/v1/agent/enroll", &body, None)).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let text = body_text(resp).await;
    assert!(text.len() < 1024, "answer of {} bytes", text.len());
    assert!(text.contains("bytes)"), "says it was cut: {text}");
    // An unknown enum value quoted by the parser is capped too.
    let os = "B".repeat(200_000);
    let body = json!({"protocol": 1, "token": "t", "hostname": "h", "os": os, "agent_version": "1"});
    let resp = app.send(post_json("/api/v1/agent/enroll", &body, None)).await;
    let status = resp.status();
    let text = body_text(resp).await;
    assert!(status.is_client_error(), "{status}");
    assert!(text.len() < 2048, "answer of {} bytes", text.len());
    let logged = log.text();
    assert!(logged.contains("agent request refused"), "{logged}");
    assert!(logged.len() < 8 * 1024, "log of {} bytes", logged.len());
    assert!(!logged.contains(&"A".repeat(1000)) && !logged.contains(&"B".repeat(1000)));
}

#[tokio::test]
async fn failed_logins_name_known_users_and_never_the_text_typed_for_unknown_ones() {
    use crate::web::{PASSWORD, login, user};
    let app = TestApp::new();
    user(&app, "alice", Role::Technician, None).await;
    let (log, _guard) = Captured::start();
    // A password typed into the username box.
    let typed = "Summer2026!Sunshine";
    assert_eq!(login(&app, typed, "x").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        login(&app, "alice", "not her password").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let audit = app.store().audit_entries(50).await.unwrap();
    let failed: Vec<_> = audit.iter().filter(|a| a.action == "login_failed").collect();
    assert_eq!(failed.len(), 2);
    assert!(failed.iter().any(|a| a.actor == "alice"), "{failed:?}");
    assert!(
        failed.iter().any(|a| a.actor.starts_with("unknown-user#")),
        "{failed:?}"
    );
    for a in &audit {
        assert!(!a.actor.contains(typed) && !a.detail.contains(typed), "{a:?}");
    }
    let logged = log.text();
    assert!(logged.contains("dashboard login failed"), "{logged}");
    assert!(logged.contains("alice"), "{logged}");
    assert!(!logged.contains(typed), "{logged}");
    assert!(!logged.contains(PASSWORD));
}

#[tokio::test]
async fn a_too_long_password_pays_the_same_argon2_check_as_any_other() {
    use crate::web::{login, user};
    use std::sync::atomic::Ordering;
    let app = TestApp::new();
    user(&app, "alice", Role::Technician, None).await;
    let checks = || app.state.metrics.password_checks.load(Ordering::Relaxed);
    for (username, password) in [
        ("alice", "wrong".to_string()),
        ("alice", "w".repeat(5_000)),
        ("nobody", "w".repeat(5_000)),
    ] {
        let before = checks();
        let resp = login(&app, username, &password).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            checks() - before,
            1,
            "{username} with {} characters ran one argon2 check",
            password.len()
        );
    }
}

/// The real HTTPS server on a free port with `settings` changed by `f`; its data dir, port,
/// shutdown token and task.
pub(crate) struct Served {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub shutdown: tokio_util::sync::CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), rounds_collector::serve::ServeError>>,
}

pub(crate) async fn serve_with(f: impl FnOnce(&mut rounds_collector::config::Settings)) -> Served {
    use rounds_collector::config::{Overrides, validate};
    use rounds_collector::serve;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = validate(Default::default(), &Overrides::default(), None).unwrap();
    settings.data_dir = dir.path().to_path_buf();
    f(&mut settings);
    let listener = serve::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = listener.local_addr().unwrap().port();
    let prepared = serve::prepare(settings).await.unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(serve::run(prepared, listener, shutdown.clone()));
    Served {
        dir,
        port,
        shutdown,
        task,
    }
}

impl Served {
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_body_is_cut_off_and_its_connection_freed_and_connections_are_limited_per_address() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let served = serve_with(|s| {
        s.limits.body_timeout = Duration::from_secs(1);
        s.limits.request_timeout = Duration::from_secs(3);
        s.limits.max_connections_per_address = 2;
    })
    .await;
    let (port, ca) = (served.port, served.dir.path().join("ca.pem"));
    let outcome = tokio::task::spawn_blocking(move || {
        // Two slow uploads: headers complete, then a trickle that never finishes.
        let mut slow: Vec<_> = (0..2)
            .map(|_| {
                let mut s = crate::serve::connect(port, &ca);
                s.write_all(
                    b"POST /api/v1/agent/enroll HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"protocol\":1,",
                )
                .unwrap();
                s.flush().unwrap();
                s
            })
            .collect();
        // A third connection from the same address is closed before any answer.
        std::thread::sleep(Duration::from_millis(200));
        let mut third = crate::serve::connect(port, &ca);
        let refused = third
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .and_then(|_| {
                let mut answer = String::new();
                third.read_to_string(&mut answer).map(|_| answer)
            });
        let third_answer = refused.unwrap_or_default();
        // The slow ones are answered and closed after the body timeout, not held open.
        let started = Instant::now();
        let mut answers = Vec::new();
        for s in &mut slow {
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            answers.push(answer);
        }
        let waited = started.elapsed();
        // Their places are free again: a new connection is served.
        let mut again = crate::serve::connect(port, &ca);
        again
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut ok = String::new();
        let _ = again.read_to_string(&mut ok);
        (third_answer, answers, waited, ok)
    })
    .await
    .unwrap();
    let (third_answer, answers, waited, ok) = outcome;
    assert!(
        !third_answer.starts_with("HTTP/1.1"),
        "the third connection was served: {third_answer}"
    );
    for a in &answers {
        assert!(a.starts_with("HTTP/1.1 400") || a.starts_with("HTTP/1.1 408"), "{a}");
        assert!(a.contains("did not arrive within 1 s"), "{a}");
    }
    assert!(waited < Duration::from_secs(5), "closed only after {waited:?}");
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    served.stop().await;
}

#[tokio::test]
async fn an_agent_over_its_request_rate_gets_429_with_retry_after() {
    let app = TestApp::with_settings(|s| {
        s.limits.agent_requests_per_minute = 60;
        s.limits.agent_request_burst = 3;
    });
    let e = enrolled(&app, "Smith", "frontdesk").await;
    let creds = Some((e.agent_id.as_str(), e.agent_secret.as_str()));
    for i in 0..3 {
        let resp = app
            .send(post_json("/api/v1/agent/heartbeat", &heartbeat(&e.agent_id), creds))
            .await;
        assert_eq!(resp.status(), StatusCode::OK, "request {i}");
    }
    let resp = app
        .send(post_json("/api/v1/agent/heartbeat", &heartbeat(&e.agent_id), creds))
        .await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
    // Another agent is not held up; after a second, this one gets one more.
    let other = enrolled(&app, "Smith", "backoffice").await;
    let resp = app
        .send(post_json(
            "/api/v1/agent/heartbeat",
            &heartbeat(&other.agent_id),
            Some((&other.agent_id, &other.agent_secret)),
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    app.advance(1);
    let resp = app
        .send(post_json("/api/v1/agent/heartbeat", &heartbeat(&e.agent_id), creds))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn healthz_touches_no_table_and_metrics_needs_its_token_and_is_cached() {
    let app = TestApp::new();
    let _ = enrolled(&app, "Smith", "frontdesk").await;
    // Break the tables a per-request count would read: /healthz still answers.
    let conn = rusqlite::Connection::open(app.db_path()).unwrap();
    conn.execute_batch("ALTER TABLE reports RENAME TO reports_gone")
        .unwrap();
    let resp = app.send(get("/healthz", None)).await;
    assert_eq!(resp.status(), StatusCode::OK, "{}", body_text(resp).await);
    conn.execute_batch("ALTER TABLE reports_gone RENAME TO reports")
        .unwrap();

    assert_eq!(app.send(get("/metrics", None)).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.send(get("/metrics", Some("wrong-token-wrong-token")))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let token = Some(crate::support::METRICS_TOKEN);
    let m = body_text(app.send(get("/metrics", token)).await).await;
    assert!(m.contains("rounds_agents{state=\"offline\"} 1"), "{m}");
    // A second agent: the figures come from memory until they are a few seconds old.
    let _ = enrolled(&app, "Smith", "backoffice").await;
    let m = body_text(app.send(get("/metrics", token)).await).await;
    assert!(m.contains("rounds_agents{state=\"offline\"} 1"), "cached: {m}");
    app.advance(rounds_collector::security::metrics::FLEET_TTL_SECS);
    let m = body_text(app.send(get("/metrics", token)).await).await;
    assert!(m.contains("rounds_agents{state=\"offline\"} 2"), "recomputed: {m}");

    // Without a token configured, /metrics does not exist.
    let open = TestApp::with_settings(|s| s.metrics_token = None);
    assert_eq!(open.send(get("/metrics", None)).await.status(), StatusCode::NOT_FOUND);
}

#[test]
fn a_short_metrics_token_and_bad_limits_are_refused_naming_the_key() {
    let raw = rounds_collector::config::parse(
        "metrics_token = \"short\"\n[limits]\nbody_timeout_secs = 0\nmax_connections = 2\nmax_connections_per_address = 5\n",
        std::path::Path::new("collector.toml"),
    )
    .unwrap();
    let e = rounds_collector::config::validate(raw, &Default::default(), Some(std::path::Path::new("collector.toml")))
        .unwrap_err()
        .to_string();
    assert!(e.contains("collector.toml: metrics_token"), "{e}");
    assert!(e.contains("limits.body_timeout_secs: must be at least 1"), "{e}");
    assert!(
        e.contains("limits.max_connections_per_address: 5 is more than max_connections (2)"),
        "{e}"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn planted_symlinks_are_not_followed_and_files_readable_by_others_are_fixed() {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let outside = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Someone with write access plants symlinks where temporary files used to go.
    let mut victims = Vec::new();
    for name in ["ca", "ca-key", "server", "server-key"] {
        let victim = outside.path().join(format!("{name}-victim"));
        std::fs::write(&victim, "untouched").unwrap();
        symlink(&victim, data.join(format!("{name}.tmp"))).unwrap();
        victims.push(victim);
    }
    let mut settings = rounds_collector::config::validate(Default::default(), &Default::default(), None).unwrap();
    settings.data_dir = data.clone();
    let prepared = rounds_collector::serve::prepare(settings.clone()).await.unwrap();
    drop(prepared);
    for v in &victims {
        assert_eq!(
            std::fs::read_to_string(v).unwrap(),
            "untouched",
            "{} was written through",
            v.display()
        );
    }
    assert!(
        std::fs::read_to_string(data.join("server-key.pem"))
            .unwrap()
            .contains("PRIVATE KEY")
    );
    assert_eq!(mode(&data), 0o700, "the data dir was made private");
    assert_eq!(mode(&data.join("rounds.db")), 0o600, "the database is created 0600");
    assert_eq!(mode(&data.join("server-key.pem")), 0o600);

    // Modes loosened later are fixed at the next start.
    for (p, m) in [
        (data.clone(), 0o755),
        (data.join("ca/ca-key.pem"), 0o644),
        (data.join("server-key.pem"), 0o644),
        (data.join("rounds.db"), 0o644),
    ] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).unwrap();
    }
    let (log, guard) = Captured::start();
    let prepared = rounds_collector::serve::prepare(settings).await.unwrap();
    drop((prepared, guard));
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("ca/ca-key.pem")), 0o600);
    assert_eq!(mode(&data.join("server-key.pem")), 0o600);
    assert_eq!(mode(&data.join("rounds.db")), 0o600);
    let logged = log.text();
    assert!(logged.contains("readable by other users; mode fixed"), "{logged}");
    assert!(logged.contains("ca-key.pem"), "{logged}");
}

/// Item 11: the store the server opens syncs the WAL at every commit, so a report acknowledged
/// after its commit survives a power loss (cost: BENCHMARKS.md, 437 -> 355 reports/s).
#[tokio::test]
async fn the_store_the_server_opens_commits_with_synchronous_full() {
    use rounds_collector::store::sqlite::{Durability, SqliteStore};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("rounds.db")).unwrap();
    assert_eq!(store.synchronous().unwrap(), 2, "PRAGMA synchronous is FULL (2)");
    let normal = SqliteStore::open_with(&dir.path().join("n.db"), Durability::Normal).unwrap();
    assert_eq!(
        normal.synchronous().unwrap(),
        1,
        "the benchmark's NORMAL is what it says"
    );
    // The server opens its store with the default.
    let _ = rounds_collector::serve::open_sqlite(dir.path()).unwrap();
    let reopened = SqliteStore::open(&dir.path().join(rounds_collector::serve::DB_FILE)).unwrap();
    assert_eq!(reopened.synchronous().unwrap(), 2);
    assert_eq!(Durability::default(), Durability::Full);
}

/// A TLS client living at the collector's fake time: an agent in the future the clock shows.
#[derive(Debug)]
struct At(std::sync::Arc<rounds_collector::clock::FakeClock>);

impl rustls::time_provider::TimeProvider for At {
    fn current_time(&self) -> Option<rustls::pki_types::UnixTime> {
        use rounds_collector::clock::Clock;
        Some(rustls::pki_types::UnixTime::since_unix_epoch(
            std::time::Duration::from_secs(self.0.now().timestamp() as u64),
        ))
    }
}

/// Connects trusting only `ca`, at the fake clock's time; the leaf's expiry and the answer.
fn fetch_healthz(
    port: u16,
    ca: &std::path::Path,
    clock: std::sync::Arc<rounds_collector::clock::FakeClock>,
) -> (chrono::DateTime<chrono::Utc>, String) {
    use rustls::pki_types::pem::PemObject;
    use std::io::{Read, Write};
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_details(
        std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        std::sync::Arc::new(At(clock)),
    )
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let conn = rustls::ClientConnection::new(
        std::sync::Arc::new(config),
        rustls::pki_types::ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = tls.read_to_string(&mut answer);
    let leaf = tls.conn.peer_certificates().unwrap()[0].clone();
    (
        rounds_collector::security::renew::der_not_after(leaf.as_ref()).unwrap(),
        answer,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_certificate_near_expiry_is_renewed_from_the_ca_and_agents_still_connect() {
    use rounds_collector::clock::FakeClock;
    use rounds_collector::security::renew::{RENEW_BEFORE_DAYS, ca_key_path, not_after};
    let dir = tempfile::tempdir().unwrap();
    let mut settings = rounds_collector::config::validate(Default::default(), &Default::default(), None).unwrap();
    settings.data_dir = dir.path().to_path_buf();
    let mut prepared = rounds_collector::serve::prepare(settings).await.unwrap();
    let server_pem = dir.path().join("server.pem");
    let old = not_after(&server_pem).unwrap();
    let ca_before = std::fs::read(dir.path().join("ca.pem")).unwrap();
    // The CA key is apart from what the server loads, private.
    assert!(ca_key_path(dir.path()).is_file());
    assert!(!dir.path().join("ca-key.pem").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("ca")), 0o700);
        assert_eq!(mode(&ca_key_path(dir.path())), 0o600);
    }

    // The collector's clock shows ten days before the leaf expires: due for renewal.
    let clock = std::sync::Arc::new(FakeClock::new(old - chrono::Duration::days(10)));
    prepared.clock = clock.clone();
    let listener = rounds_collector::serve::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = listener.local_addr().unwrap().port();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(rounds_collector::serve::run(prepared, listener, shutdown.clone()));
    let mut renewed = old;
    for _ in 0..100 {
        renewed = not_after(&server_pem).unwrap();
        if renewed != old {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        renewed > old + chrono::Duration::days(300),
        "renewed until {renewed}, was {old}"
    );
    assert!(renewed - rounds_collector::clock::Clock::now(clock.as_ref()) > chrono::Duration::days(RENEW_BEFORE_DAYS));
    assert_eq!(
        std::fs::read(dir.path().join("ca.pem")).unwrap(),
        ca_before,
        "the CA stays"
    );

    // An agent trusting only the CA connects and is served the new certificate, with no restart.
    let ca = dir.path().join("ca.pem");
    let c = clock.clone();
    let (served, answer) = tokio::task::spawn_blocking(move || fetch_healthz(port, &ca, c))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(served, renewed, "the running server swapped in the new certificate");
    shutdown.cancel();
    server.await.unwrap().unwrap();
}
