//! The collector's HTTP application: shared state and the router.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};

use rounds_policies::{LoadErrors, Policy};

use crate::config::Settings;
pub use crate::events::Metrics;
use crate::ingest::Evaluator;
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
    /// Ingest and evaluation, apart from HTTP; owns the cache of practice and site policies
    /// and the change stream.
    pub evaluator: Arc<Evaluator>,
    /// The bounded queue in front of the store for report ingest (`429` when full).
    pub ingest_gate: Arc<crate::api::delivery::IngestGate>,
    /// Failed dashboard log-ins per (username, address), for throttling.
    pub login_throttle: Arc<crate::web::throttle::LoginThrottle>,
    // --- Alerting (issue 12) ---
    /// The alert engine (incidents, outbox); its tasks are spawned by `serve::run`.
    pub alerts: Arc<crate::alerting::Engine>,
    // --- Security (issue 15) ---
    /// Requests per authenticated agent (`429` with `Retry-After` over the rate).
    pub agent_rate: Arc<crate::security::limits::AgentRate>,
    /// The fleet figures of `/metrics`, computed at most every few seconds.
    pub metrics_cache: Arc<crate::security::metrics::FleetCache>,
    // --- Heartbeats at scale (issue 16) ---
    /// Agents' effective central configurations, merged once per distinct set of sources.
    pub agent_configs: Arc<crate::agent_config::EffectiveCache>,
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
        Self::with_clock(store, settings, policy, Arc::new(crate::clock::SystemClock))
    }

    /// State over a store, with a policy and a clock given by the caller.
    pub fn with_clock(store: Arc<dyn Store>, settings: Settings, policy: Arc<Policy>, clock: Arc<dyn Clock>) -> Self {
        let metrics = Arc::new(Metrics::default());
        let evaluator = Evaluator::new(
            Arc::clone(&store),
            Arc::clone(&policy),
            Arc::clone(&clock),
            Arc::clone(&metrics),
            settings.max_clock_skew,
            settings.change_stream_capacity,
        );
        // Alerting (issue 12): without channels until `with_notifier` gives some.
        let alerts = Arc::new(crate::alerting::Engine::new(
            Arc::clone(&store),
            Arc::clone(&clock),
            settings.alerting.clone(),
            Arc::new(crate::alerting::NoChannels),
        ));
        let agent_rate = Arc::new(crate::security::limits::AgentRate::new(
            settings.limits.agent_requests_per_minute,
            settings.limits.agent_request_burst,
        ));
        AppState {
            alerts,
            agent_rate,
            metrics_cache: Arc::default(),
            agent_configs: Arc::default(),
            store,
            ingest_gate: Arc::default(),
            settings: Arc::new(settings),
            metrics,
            clock,
            policy,
            evaluator: Arc::new(evaluator),
            login_throttle: Arc::default(),
        }
    }

    /// Alerting (issue 12): the same state with the alert engine delivering through
    /// `notifier` (the configured channels).
    pub fn with_notifier(mut self, notifier: Arc<dyn crate::notify::Notifier>) -> Self {
        self.alerts = Arc::new(crate::alerting::Engine::new(
            Arc::clone(&self.store),
            Arc::clone(&self.clock),
            self.settings.alerting.clone(),
            notifier,
        ));
        self
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
        // Alerting (issue 12).
        .route("/api/v1/incidents", get(api::incidents::list))
        .route("/api/v1/incidents/{id}", get(api::incidents::detail))
        .route("/api/v1/incidents/{id}/acknowledge", post(api::incidents::acknowledge))
        .route("/api/v1/incidents/{id}/resolve", post(api::incidents::resolve))
        .route("/api/v1/incidents/{id}/notes", post(api::incidents::note))
        // Runtime silences (alerting, issue 12).
        .route(
            "/api/v1/silences",
            get(api::incidents::silences).post(api::incidents::create_silence),
        )
        .route("/api/v1/silences/{id}/end", post(api::incidents::end_silence))
        // Tamper acknowledgement (core, issue 11).
        .route(
            "/api/v1/agents/{agent_id}/tamper/{tamper_id}/acknowledge",
            post(api::tamper::acknowledge),
        )
        .route("/api/v1/openapi.json", get(api::admin::openapi))
        // --- Security: revocation (issue 15) ---
        .route("/api/v1/agents/{agent_id}/revoke", post(api::security::revoke_agent))
        .route(
            "/api/v1/apikeys",
            get(api::security::api_keys).post(api::security::create_api_key),
        )
        .route("/api/v1/apikeys/{id}/revoke", post(api::security::revoke_api_key))
        .route(
            "/api/v1/users/{username}",
            axum::routing::delete(api::security::remove_user),
        )
        // Compliance reports (issue 14).
        .route(
            "/api/v1/practices/{practice_id}/report",
            get(crate::reports::http::download),
        )
        .route("/healthz", get(api::admin::healthz))
        .route("/metrics", get(api::admin::metrics))
        .merge(web::routes())
        // Body and request deadlines (issue 15).
        .layer(axum::middleware::from_fn_with_state(
            state.settings.limits.clone(),
            crate::security::limits::timeouts,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(web::security_headers))
        .layer(axum::middleware::from_fn(crate::request::with_id))
        .with_state(state)
}
