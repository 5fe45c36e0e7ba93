//! Start-up and serving: open the store, prepare TLS, ensure a first admin, serve until
//! cancelled.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rounds_policies::{LoadErrors, Policy};
use tokio_util::sync::CancellationToken;

use crate::app::{AppState, router};
use crate::config::Settings;
use crate::secrets;
use crate::store::sqlite::SqliteStore;
use crate::store::{Role, Store, StoreError};
use crate::tls::{TlsError, TlsMaterial};

/// Name of the SQLite file in the data dir.
pub const DB_FILE: &str = "rounds.db";

/// Errors of start-up and serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot create data dir {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("the built-in policy pack does not load: {0}")]
    Policy(#[from] LoadErrors),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("server failed: {0}")]
    Server(std::io::Error),
    /// notify: a [[channel]] could not be set up (its CA file).
    #[error("notification channels: {0}")]
    Channels(String),
}

/// A collector ready to serve.
#[derive(Debug)]
pub struct Prepared {
    pub settings: Settings,
    pub store: Arc<dyn Store>,
    pub tls: TlsMaterial,
    /// The policy reports are evaluated against.
    pub policy: Arc<Policy>,
    /// Password of the admin user created by this start, to print once.
    pub initial_admin_password: Option<String>,
    /// The clock of the server and of its certificate renewal (issue 15); tests replace it.
    pub clock: Arc<dyn crate::clock::Clock>,
}

/// Creates the data dir (mode 0700) if needed.
pub fn ensure_data_dir(dir: &Path) -> Result<(), ServeError> {
    let err = |source| ServeError::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
        }
    }
    // An existing dir readable by others is fixed, and the log says so (issue 15).
    crate::security::files::keep_private(dir, true).map_err(err)?;
    Ok(())
}

/// Opens the store the settings name: PostgreSQL when `database_url` (or
/// `ROUNDS_DATABASE_URL`) is set, else the embedded SQLite store in the data dir (issue 17:
/// the one place that picks the backend). Either is brought to this build's schema.
pub async fn open_store(settings: &Settings) -> Result<Arc<dyn Store>, ServeError> {
    Ok(open_store_migrated(settings).await?.0)
}

/// [`open_store`], also saying which schema versions it migrated between (`migrate`).
pub async fn open_store_migrated(settings: &Settings) -> Result<(Arc<dyn Store>, crate::store::Migrated), ServeError> {
    if let Some(url) = &settings.database_url {
        let (store, migrated) =
            crate::store::postgres::PgStore::open_migrated(url.expose(), crate::store::postgres::POOL_SIZE).await?;
        return Ok((Arc::new(store), migrated));
    }
    let db = settings.data_dir.join(DB_FILE);
    let from = if db.exists() {
        crate::store::sqlite::file_schema_version(&db)?
    } else {
        0
    };
    let store = open_sqlite(&settings.data_dir)?;
    let migrated = crate::store::Migrated {
        from,
        to: crate::store::sqlite::schema_version(),
    };
    Ok((store, migrated))
}

/// Opens the embedded store in the data dir, creating the dir if needed.
pub fn open_sqlite(data_dir: &Path) -> Result<Arc<dyn Store>, ServeError> {
    ensure_data_dir(data_dir)?;
    let db = data_dir.join(DB_FILE);
    // Created 0600 before SQLite opens it (issue 15).
    crate::security::files::prepare_database(&db).map_err(|source| ServeError::DataDir {
        path: db.clone(),
        source,
    })?;
    Ok(Arc::new(SqliteStore::open(&db)?))
}

/// Loads the policy, opens the store, prepares TLS and creates the first admin when there is
/// no user yet.
pub async fn prepare(settings: Settings) -> Result<Prepared, ServeError> {
    let policy = Arc::new(Policy::builtin()?);
    let store = open_store(&settings).await?;
    let tls = crate::tls::prepare(&settings.tls, &settings.data_dir)?;
    let mut initial_admin_password = None;
    if store.user_count().await? == 0 {
        let password = secrets::random_password();
        let hash = secrets::hash_password(&password).map_err(|e| {
            StoreError::message(
                crate::store::DbErrorKind::Other,
                "creating the first admin",
                format!("hashing: {e}"),
            )
        })?;
        let now = chrono::Utc::now();
        let mut tx = store.begin().await?;
        tx.add_user("admin", &hash, Role::Admin, None, now).await?;
        tx.audit(
            "collector",
            "user.add",
            "first admin `admin` created at first start",
            now,
        )
        .await?;
        tx.commit().await?;
        initial_admin_password = Some(password);
    }
    Ok(Prepared {
        settings,
        store,
        tls,
        policy,
        initial_admin_password,
        clock: Arc::new(crate::clock::SystemClock),
    })
}

/// Binds the listener for `settings.listen`.
pub fn bind(addr: std::net::SocketAddr) -> Result<std::net::TcpListener, ServeError> {
    let listener = std::net::TcpListener::bind(addr).map_err(|source| ServeError::Listen {
        addr: addr.to_string(),
        source,
    })?;
    listener.set_nonblocking(true).map_err(|source| ServeError::Listen {
        addr: addr.to_string(),
        source,
    })?;
    Ok(listener)
}

/// Serves HTTPS on `listener` until `shutdown` is cancelled, then drains connections for up
/// to 10 seconds.
pub async fn run(
    prepared: Prepared,
    listener: std::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let Prepared {
        settings,
        store,
        tls,
        policy,
        initial_admin_password: _,
        clock,
    } = prepared;
    let renew_names = match &settings.tls {
        crate::config::TlsSettings::Generated { subject_alt_names } => Some(subject_alt_names.clone()),
        crate::config::TlsSettings::Files { .. } => None,
    };
    let data_dir = settings.data_dir.clone();
    let addr = listener.local_addr().map_err(ServeError::Server)?;
    let header_timeout = settings.header_timeout;
    if let Some(warning) = crate::config::idle_race_warning(&settings) {
        tracing::warn!("{warning}");
    }
    let connections = Arc::new(crate::security::limits::ConnectionLimits::new(
        settings.limits.max_connections,
        settings.limits.max_connections_per_address,
    ));
    let state = AppState::with_clock(store, settings, policy, Arc::clone(&clock));
    // notify: the engine delivers through the configured [[channel]]s.
    let channels = crate::notify::Channels::from_settings(&state.settings).map_err(ServeError::Channels)?;
    let state = state.with_notifier(Arc::new(channels));
    // Alerting (issue 12): the engine runs beside the server on the evaluator's change stream.
    let alerts = Arc::clone(&state.alerts);
    let changes = state.evaluator.changes().subscribe("alert-engine");
    let engine_stop = shutdown.clone();
    tokio::spawn(async move { alerts.run(changes, engine_stop).await });
    // Cluster (issue 17): on PostgreSQL, changes cross to the other collectors' live pages.
    if let Some(url) = &state.settings.database_url
        && let Err(e) = crate::cluster::Relay::start(url.expose(), state.evaluator.changes().clone(), shutdown.clone())
    {
        tracing::error!(error = %e, "cluster: live updates from other collectors not started");
    }
    // --- Compliance reports (issue 14): the report scheduler, a background task ---
    if !state.settings.report_schedules.is_empty() {
        match crate::reports::ReportService::for_app(&state) {
            Ok(service) => {
                let scheduler = std::sync::Arc::new(crate::reports::schedule::ReportScheduler::new(
                    service,
                    std::sync::Arc::clone(&state.store),
                    state.settings.smtp.clone(),
                    std::sync::Arc::clone(&state.clock),
                    state.settings.report_schedules.clone(),
                ));
                tokio::spawn(scheduler.run(Duration::from_secs(30), shutdown.clone()));
            }
            Err(e) => tracing::error!(error = %e, "report schedules not started"),
        }
    }
    // --- Retention (issue 17): hourly under the `retention` lease, once across collectors ---
    let retention = Arc::new(
        crate::retention::RetentionService::new(
            Arc::clone(&state.store),
            Arc::clone(&state.clock),
            state.settings.retention,
        )
        .with_metrics(Arc::clone(&state.metrics)),
    );
    let holder = format!("{}-{:08x}", std::process::id(), rand::random::<u32>());
    tokio::spawn(retention.run_every(holder, shutdown.clone()));
    let app = router(state);
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    let shutdown_renewal = shutdown.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        h.graceful_shutdown(Some(Duration::from_secs(10)));
    });
    let rustls_config = axum_server::tls_rustls::RustlsConfig::from_config(tls.server_config);
    // The generated certificate renews itself from the CA (issue 15).
    if let Some(names) = renew_names {
        let renewer = crate::security::renew::Renewer {
            data_dir,
            names,
            clock,
            config: rustls_config.clone(),
        };
        tokio::spawn(renewer.run(shutdown_renewal.clone()));
    }
    tracing::info!(%addr, "collector listening");
    let mut server = axum_server::from_tcp_rustls(listener, rustls_config)
        .map(|tls| tls.acceptor(crate::security::limits::LimitAcceptor::new(connections)))
        .handle(handle);
    // A client that does not finish its request headers in time is disconnected, so slow
    // senders cannot hold connections open (the TLS handshake has its own 10 s limit).
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    server
        .serve(app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .await
        .map_err(ServeError::Server)?;
    tracing::info!("collector stopped");
    Ok(())
}

/// Resolves to the first SIGINT or SIGTERM; a second one exits at once.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        tokio::spawn(async move {
            // `recv` yields `None` when the runtime shuts down: that is not a second signal.
            tokio::select! {
                Some(()) = term.recv() => {},
                Some(()) = int.recv() => {},
                else => return,
            }
            eprintln!("second signal: exiting now");
            std::process::exit(130);
        });
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
