//! The collector's HTTP application: shared state and the router.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};

use rounds_policies::{LoadErrors, Policy};

use crate::config::Settings;
use crate::evaluation::PolicyCache;
use crate::store::Store;
use crate::{api, web};

pub use crate::clock::Clock;

/// State shared by every request handler.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub settings: Arc<Settings>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    /// The policy reports are evaluated against when their practice and site have no policy
    /// settings, loaded once at start-up.
    pub policy: Arc<Policy>,
    /// Effective policies of practices and sites with settings, built on first use.
    pub policies: Arc<PolicyCache>,
    /// Held while an agent's findings are evaluated and replaced, so two reports arriving
    /// together cannot store findings from older observations over newer ones.
    pub evaluation_lock: Arc<tokio::sync::Mutex<()>>,
    /// The bounded queue in front of the store for report ingest (`429` when full).
    pub ingest_gate: Arc<crate::api::delivery::IngestGate>,
    /// Failed dashboard log-ins per (username, address), for throttling.
    pub login_throttle: Arc<crate::web::throttle::LoginThrottle>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.store)
            .field("settings", &self.settings)
            .field(
                "policy",
                &format_args!("{} v{}", self.policy.pack_name, self.policy.pack_version),
            )
            .finish()
    }
}

impl AppState {
    /// State over a store, with the system clock and the built-in HIPAA policy. Fails only
    /// when the built-in pack does not load, which is a start-up error.
    pub fn new(store: Arc<dyn Store>, settings: Settings) -> Result<Self, LoadErrors> {
        Ok(Self::with_policy(store, settings, Arc::new(Policy::builtin()?)))
    }

    /// State over a store, with the system clock and a policy loaded by the caller.
    pub fn with_policy(store: Arc<dyn Store>, settings: Settings, policy: Arc<Policy>) -> Self {
        AppState {
            store,
            ingest_gate: Arc::default(),
            settings: Arc::new(settings),
            metrics: Arc::new(Metrics::default()),
            clock: Arc::new(crate::clock::SystemClock),
            policy,
            policies: Arc::new(PolicyCache::default()),
            evaluation_lock: Arc::new(tokio::sync::Mutex::new(())),
            login_throttle: Arc::default(),
        }
    }

    /// The current time by the collector's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Whether an agent last seen at `last_seen` counts as online now.
    pub fn is_online(&self, last_seen: Option<DateTime<Utc>>) -> bool {
        let window = chrono::Duration::from_std(self.settings.offline_after).unwrap_or(chrono::Duration::seconds(90));
        last_seen.is_some_and(|t| self.now() - t <= window)
    }
}

/// Counters for `/metrics`. Each recurring event is counted where it is logged.
#[derive(Debug, Default)]
pub struct Metrics {
    pub enrollments: AtomicU64,
    pub enrollments_refused: AtomicU64,
    pub heartbeats: AtomicU64,
    pub reports_stored: AtomicU64,
    pub reports_duplicate: AtomicU64,
    pub reports_rejected: AtomicU64,
    pub observations_stored: AtomicU64,
    pub logins: AtomicU64,
    pub logins_failed: AtomicU64,
    pub evaluations: AtomicU64,
    pub evaluations_failed: AtomicU64,
}

impl Metrics {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text exposition of the counters.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let rows: [(&str, &str, &AtomicU64); 11] = [
            ("rounds_enrollments_total", "Agents enrolled.", &self.enrollments),
            (
                "rounds_enrollments_refused_total",
                "Enrollment attempts refused.",
                &self.enrollments_refused,
            ),
            ("rounds_heartbeats_total", "Heartbeats received.", &self.heartbeats),
            ("rounds_reports_stored_total", "Reports stored.", &self.reports_stored),
            (
                "rounds_reports_duplicate_total",
                "Reports received again and acknowledged without storing.",
                &self.reports_duplicate,
            ),
            (
                "rounds_reports_rejected_total",
                "Agent requests rejected (bad body, auth, version).",
                &self.reports_rejected,
            ),
            (
                "rounds_observations_stored_total",
                "Observations stored.",
                &self.observations_stored,
            ),
            ("rounds_logins_total", "Successful dashboard logins.", &self.logins),
            (
                "rounds_logins_failed_total",
                "Failed dashboard logins.",
                &self.logins_failed,
            ),
            (
                "rounds_evaluations_total",
                "Policy evaluations of an agent whose findings were stored.",
                &self.evaluations,
            ),
            (
                "rounds_evaluations_failed_total",
                "Policy evaluations that could not run or whose findings could not be stored.",
                &self.evaluations_failed,
            ),
        ];
        for (name, help, v) in rows {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                v.load(Ordering::Relaxed)
            ));
        }
        out
    }
}

/// The full router: agent API, admin API, dashboard, health and metrics.
pub fn router(state: AppState) -> Router {
    let limit = state.settings.max_body_bytes;
    Router::new()
        .route(rounds_protocol::paths::ENROLL, post(api::agent::enroll))
        .route(rounds_protocol::paths::HEARTBEAT, post(api::agent::heartbeat))
        .route(rounds_protocol::paths::REPORTS, post(api::agent::report))
        .route(rounds_protocol::paths::REPORT_BATCH, post(api::delivery::batch))
        .route("/api/v1/agents/{agent_id}", get(api::delivery::agent_detail))
        .route(rounds_protocol::paths::CONFIG, get(api::agent::config))
        .route("/api/v1/practices", get(api::admin::practices))
        .route("/api/v1/agents", get(api::admin::agents))
        .route("/api/v1/agents/{agent_id}/observations", get(api::admin::observations))
        .route("/api/v1/agents/{agent_id}/findings", get(api::admin::findings))
        .route(
            "/api/v1/agents/{agent_id}/findings/history",
            get(api::admin::findings_history),
        )
        .route("/api/v1/openapi.json", get(api::admin::openapi))
        .route("/healthz", get(api::admin::healthz))
        .route("/metrics", get(api::admin::metrics))
        .merge(web::routes())
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(web::security_headers))
        .with_state(state)
}
