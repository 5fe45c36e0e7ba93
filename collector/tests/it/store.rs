//! The storage conformance suite: every `Store` implementation runs the same cases.
//! (quickwit's `metastore_test_suite!` pattern.) PostgreSQL joins with its own `store_suite!`.

use std::sync::Arc;

use chrono::{Duration, Utc};
use rounds_collector::secrets::hash_secret;
use rounds_collector::store::sqlite::SqliteStore;
use rounds_collector::store::{Ingested, NewAgent, NewToken, Role, Scope, Store, StoreError, TokenRefusal};
use rounds_protocol::{Observation, obs};

fn admin() -> Scope {
    Scope {
        role: Role::Admin,
        practice_id: None,
    }
}

fn agent(id: &str) -> NewAgent {
    NewAgent {
        agent_id: id.into(),
        secret_hash: hash_secret(&format!("secret-{id}")),
        hostname: format!("host-{id}"),
        os: "linux".into(),
        agent_version: "0.1.0".into(),
    }
}

async fn enroll(store: &dyn Store, practice: &str, site: &str, id: &str) {
    let token = format!("tok-{id}");
    let t = NewToken {
        practice: practice.into(),
        site: site.into(),
        token_hash: hash_secret(&token),
        expires_at: Utc::now() + Duration::hours(1),
    };
    store.create_token(t).await.unwrap();
    store.enroll(&hash_secret(&token), agent(id), Utc::now()).await.unwrap();
}

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
    let a = store.ensure_site("Smith", "Main").await.unwrap();
    let b = store.ensure_site("Smith", "Main").await.unwrap();
    let c = store.ensure_site("Smith", "Annex").await.unwrap();
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
    store.create_token(t).await.unwrap();
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
    store.create_token(t).await.unwrap();
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
        store.ingest_report("a1", 1, now, &o, now).await.unwrap(),
        Ingested::Stored
    );
    assert_eq!(
        store.ingest_report("a1", 1, now, &o, now).await.unwrap(),
        Ingested::Duplicate
    );
    assert_eq!(
        store.ingest_report("a2", 1, now, &o, now).await.unwrap(),
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
    store.ingest_report("a1", 2, t0, &newer, t0).await.unwrap();
    store.ingest_report("a1", 1, t0, &older, t0).await.unwrap();
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
    let alpha = store.ensure_practice("Alpha").await.unwrap();
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
    store.heartbeat("a1", "0.2.0", t).await.unwrap();
    store.heartbeat("a1", "0.2.0", t - Duration::minutes(10)).await.unwrap();
    let a = store.agents(&admin()).await.unwrap().remove(0);
    assert_eq!(a.last_seen_at.map(|x| x.timestamp_millis()), Some(t.timestamp_millis()));
    assert_eq!(a.agent_version, "0.2.0");
    assert!(matches!(
        store.heartbeat("ghost", "0.1.0", t).await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn users_sessions_and_api_keys(store: Arc<dyn Store>) {
    let id = store
        .add_user("alice", "$argon2id$fake", Role::Technician, None)
        .await
        .unwrap();
    assert!(matches!(
        store.add_user("alice", "x", Role::Admin, None).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        store.add_user("bob", "x", Role::PracticeManager, Some("Nope")).await,
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
    store.ensure_practice("Alpha").await.unwrap();
    store
        .create_api_key("key-hash", Role::PracticeManager, Some("Alpha"), "pm")
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

macro_rules! store_suite {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;
            store_suite!(@cases $make;
                practices_and_sites_are_created_once,
                tokens_redeem_once_and_refuse_with_reason,
                reports_are_idempotent_per_agent_and_sequence,
                latest_observation_is_the_newest_even_when_reports_arrive_out_of_order,
                practice_scope_hides_other_practices,
                heartbeats_never_move_last_seen_backwards,
                users_sessions_and_api_keys,
                audit_log_keeps_entries_newest_first,
            );
        }
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (store, _keep) = $make;
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

store_suite!(sqlite_backend, sqlite());

#[test]
fn sqlite_migrates_once_and_refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rounds.db");
    let s = SqliteStore::open(&path).unwrap();
    let v = s.schema_version().unwrap();
    assert!(v >= 1);
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
