//! Shared helpers: a collector app over a fresh SQLite store in a temp dir, seeding a store
//! (agents enrolled, reports ingested) and the PostgreSQL test database.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response};
use chrono::{DateTime, Duration, Utc};
use rounds_collector::app::{AppState, router};
use rounds_collector::clock::FakeClock;
use rounds_collector::config::{Overrides, Settings, validate};
use rounds_collector::secrets::hash_secret;
use rounds_collector::store::sqlite::SqliteStore;
use rounds_collector::store::{IncomingReport, Ingested, NewAgent, NewToken, Role, Scope, Store, StoreError};
use rounds_policies::Policy;
use rounds_protocol::{Observation, Report};
use tower::ServiceExt;

/// The built-in policy, loaded once for the whole test binary.
pub fn policy() -> Arc<Policy> {
    static POLICY: OnceLock<Arc<Policy>> = OnceLock::new();
    Arc::clone(POLICY.get_or_init(|| Arc::new(Policy::builtin().unwrap())))
}

/// The `metrics_token` of every test collector (issue 15: `/metrics` needs one).
pub const METRICS_TOKEN: &str = "test-metrics-token-0123456789";

/// A test collector: state, router, a settable clock and the temp dir keeping it alive.
pub struct TestApp {
    pub state: AppState,
    pub clock: Arc<FakeClock>,
    pub _dir: tempfile::TempDir,
}

impl TestApp {
    pub fn new() -> Self {
        Self::with_settings(|_| {})
    }

    pub fn with_settings(f: impl FnOnce(&mut Settings)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = validate(Default::default(), &Overrides::default(), None).unwrap();
        settings.data_dir = dir.path().to_path_buf();
        settings.metrics_token = Some(METRICS_TOKEN.to_string());
        f(&mut settings);
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("rounds.db")).unwrap());
        // Millisecond precision, as the store keeps times.
        let start = chrono::DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap();
        let clock = Arc::new(FakeClock::new(start));
        let state = AppState::with_clock(store, settings, policy(), clock.clone());
        TestApp {
            state,
            clock,
            _dir: dir,
        }
    }

    /// A test collector over the data dir `dir` (a copy of a seeded one), its clock at `now`.
    pub fn in_dir(dir: tempfile::TempDir, now: chrono::DateTime<Utc>) -> Self {
        let mut settings = validate(Default::default(), &Overrides::default(), None).unwrap();
        settings.data_dir = dir.path().to_path_buf();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("rounds.db")).unwrap());
        let clock = Arc::new(FakeClock::new(now));
        let state = AppState::with_clock(store, settings, policy(), clock.clone());
        TestApp {
            state,
            clock,
            _dir: dir,
        }
    }

    /// The SQLite file of this collector, for tests that reach under the store.
    pub fn db_path(&self) -> std::path::PathBuf {
        self._dir.path().join("rounds.db")
    }

    pub fn store(&self) -> &dyn Store {
        self.state.store.as_ref()
    }

    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    pub fn advance(&self, secs: i64) {
        self.clock.advance(chrono::Duration::seconds(secs));
    }

    /// Sends one request through the router.
    pub async fn send(&self, req: Request<Body>) -> Response<Body> {
        self.router().oneshot(req).await.unwrap()
    }
}

// --- Seeding a store ---

/// The scope of an admin: every practice.
pub fn admin() -> Scope {
    Scope {
        role: Role::Admin,
        practice_id: None,
    }
}

/// An agent as `rounds-agent enroll` registers it.
pub fn agent(id: &str) -> NewAgent {
    NewAgent {
        agent_id: id.into(),
        secret_hash: hash_secret(&format!("secret-{id}")),
        hostname: format!("host-{id}"),
        os: "linux".into(),
        agent_version: "0.1.0".into(),
    }
}

/// Enrolls agent `id` at `practice`/`site` through a token of its own, as the API does.
pub async fn enroll(store: &dyn Store, practice: &str, site: &str, id: &str) {
    let token = format!("tok-{id}");
    let t = NewToken {
        practice: practice.into(),
        site: site.into(),
        token_hash: hash_secret(&token),
        expires_at: Utc::now() + Duration::hours(1),
    };
    store.create_token(t, Utc::now()).await.unwrap();
    store.enroll(&hash_secret(&token), agent(id), Utc::now()).await.unwrap();
}

/// A report of `observations` as an agent sends it (no check, no hash chain).
pub fn report(agent_id: &str, sequence: u64, created_at: DateTime<Utc>, observations: Vec<Observation>) -> Report {
    Report {
        protocol: 1,
        agent_id: agent_id.into(),
        sequence,
        created_at,
        check: None,
        complete: false,
        prev_hash: None,
        hash: None,
        dropped: Vec::new(),
        observations,
    }
}

/// Stores a report of `observations` through the trait, as the ingest path does.
pub async fn ingest(
    store: &dyn Store,
    agent_id: &str,
    sequence: u64,
    created_at: DateTime<Utc>,
    observations: &[Observation],
    now: DateTime<Utc>,
) -> Result<Ingested, StoreError> {
    let report = report(agent_id, sequence, created_at, observations.to_vec());
    store
        .ingest_report(
            agent_id,
            IncomingReport {
                report: &report,
                received_at: now,
                future_after: now + Duration::minutes(5),
            },
        )
        .await
}

/// Stores each of `rows` in a report of its own (created when observed), sequences 1.. in the
/// order given, received at `now`.
pub async fn ingest_each(store: &dyn Store, agent_id: &str, rows: &[Observation], now: DateTime<Utc>) {
    for (i, o) in rows.iter().enumerate() {
        ingest(
            store,
            agent_id,
            i as u64 + 1,
            o.observed_at,
            std::slice::from_ref(o),
            now,
        )
        .await
        .unwrap();
    }
}

/// Two practices of one machine each: `a1` at Smith/Main and `b1` at Lakeside/Clinic.
pub async fn enroll_smith_and_lakeside(store: &dyn Store) {
    enroll(store, "Smith", "Main", "a1").await;
    enroll(store, "Lakeside", "Clinic", "b1").await;
}

/// The body of a response as text.
pub async fn body_text(resp: Response<Body>) -> String {
    let bytes = axum::body::to_bytes(resp.into_body(), 16 * 1024 * 1024).await.unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

// --- PostgreSQL backend (issue 17) ---

/// The PostgreSQL server the tests may use (`ROUNDS_TEST_POSTGRES_URL`), or `None` after
/// saying loudly, once per test binary, that the PostgreSQL half is skipped.
pub fn pg_url() -> Option<String> {
    static SAID: std::sync::Once = std::sync::Once::new();
    match std::env::var("ROUNDS_TEST_POSTGRES_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            SAID.call_once(|| {
                use std::io::Write;
                // Straight to stderr, past the test harness's capture, so that it is seen.
                let _ = writeln!(
                    std::io::stderr(),
                    "\n*** ROUNDS_TEST_POSTGRES_URL is not set: the PostgreSQL half of the storage tests is SKIPPED ***\n"
                );
            });
            None
        }
    }
}

/// `url` with the search path set to `schema` (tokio-postgres passes `options` to the server).
pub fn pg_url_in_schema(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-csearch_path%3D{schema}")
}

/// A fresh schema `t_<random>` in the test database, and the URL that uses it. Schemas are
/// left to the per-run scratch database (.ci/run drops it).
pub async fn pg_schema() -> Option<String> {
    let url = pg_url()?;
    let schema = format!("t_{:016x}", rand::random::<u64>());
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connecting to ROUNDS_TEST_POSTGRES_URL");
    let task = tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .expect("creating a test schema");
    drop(client);
    let _ = task.await;
    Some(pg_url_in_schema(&url, &schema))
}

/// A PostgreSQL store in a fresh schema, when `ROUNDS_TEST_POSTGRES_URL` is set.
pub async fn pg_store() -> Option<Arc<dyn Store>> {
    let url = pg_schema().await?;
    let store = rounds_collector::store::postgres::PgStore::open(&url)
        .await
        .expect("opening the PostgreSQL test store");
    Some(Arc::new(store))
}
