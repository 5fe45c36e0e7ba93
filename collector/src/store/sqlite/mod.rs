//! The embedded default store: one SQLite file, WAL mode, versioned migrations.
//!
//! Modules by what they own: [`agents`] (practices, sites, enrollment tokens, agents,
//! heartbeats), [`reports`] (reports, observations, the current state per subject),
//! [`findings`] (current findings and their history), [`auth`] (users, sessions, API keys),
//! [`policy`] (policy settings), [`audit`] (the collector's audit log). Each holds plain
//! functions over a `&Connection`; this module owns the connection, the migrations
//! (`migrations/*.sql`, applied in order, `user_version` = how many) and the units of work.
//!
//! One writer connection behind an async mutex, used on the blocking pool (SQLite allows one
//! writer at a time anyway), and a few read-only connections used in turn, so that reads run
//! beside the writer; WAL also lets readers of other processes (the admin subcommands) work
//! while the server runs. A [`SqliteTx`] holds the connection from its first write to its
//! commit (`BEGIN IMMEDIATE`), and rolls back when dropped uncommitted. Times are stored as
//! integer milliseconds since the epoch (UTC).

mod agent_config;
mod agents;
mod alerting;
mod audit;
mod auth;
mod codec;
// Technician dashboard (issue 13).
mod dashboard;
mod delivery;
mod findings;
// Group commit of ingest (core, issue 7).
pub mod group;
mod policy;
// Tamper acknowledgement (core, issue 11).
mod reports;
// Retention (issue 17).
mod retention;
mod security;
// Runtime silences (alerting, issue 12).
mod silences;
// Compliance reports (issue 14).
mod issued;
mod tamper;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rounds_policies::Finding;
use rusqlite::Connection;
use tokio::sync::{Mutex, OwnedMutexGuard};

use self::codec::db;
use super::*;

/// Versioned migrations; index + 1 is the schema version. Never edit a released one: append.
const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_initial", include_str!("migrations/0001_initial.sql")),
    ("0002_findings", include_str!("migrations/0002_findings.sql")),
    (
        "0003_policy_settings",
        include_str!("migrations/0003_policy_settings.sql"),
    ),
    (
        "0004_history_sequence_skew",
        include_str!("migrations/0004_history_sequence_skew.sql"),
    ),
    (
        "0005_delivery_config",
        include_str!("migrations/0005_delivery_config.sql"),
    ),
    ("0006_alerting", include_str!("migrations/0006_alerting.sql")),
    ("0007_security", include_str!("migrations/0007_security.sql")),
    // Compliance reports (issue 14).
    ("0008_reports", include_str!("migrations/0008_reports.sql")),
    // Tamper acknowledgement (core, issue 11).
    ("0009_tamper_ack", include_str!("migrations/0009_tamper_ack.sql")),
    // Runtime silences (alerting, issue 12).
    ("0010_silences", include_str!("migrations/0010_silences.sql")),
    // Dashboard counts and indexes (issue 13; number 0011 as assigned, after 0010).
    ("0011_dashboard", include_str!("migrations/0011_dashboard.sql")),
    // Dashboard counts recounted only when a counted value changed (issue 16).
    (
        "0012_tally_when_changed",
        include_str!("migrations/0012_tally_when_changed.sql"),
    ),
    // Retention (issue 17): observation rollups and the indexes pruning reads.
    ("0013_retention", include_str!("migrations/0013_retention.sql")),
    // Ingest throughput (core, issue 7): the time of an agent's last evaluation, once per agent.
    (
        "0014_evaluated_at_per_agent",
        include_str!("migrations/0014_evaluated_at_per_agent.sql"),
    ),
    // Incident lists by source (issue 16; 0014 is the evaluation time per agent, issue 7).
    (
        "0015_incidents_by_source",
        include_str!("migrations/0015_incidents_by_source.sql"),
    ),
    // Two indexes of the observation history fewer (core, issue 7: ingest throughput).
    (
        "0016_observation_indexes",
        include_str!("migrations/0016_observation_indexes.sql"),
    ),
    // Practice tallies moved by the changed finding, not counted again (core, issue 7).
    (
        "0017_incremental_tallies",
        include_str!("migrations/0017_incremental_tallies.sql"),
    ),
    // A check's complete run confirms its unchanged subjects once (core, issue 7).
    (
        "0018_check_confirmations",
        include_str!("migrations/0018_check_confirmations.sql"),
    ),
];

/// How `synchronous` is set: `Normal` loses at most the last transactions on power loss
/// (never corrupts) under WAL; `Full` syncs the WAL at every commit, so a report acknowledged
/// after its commit survives a power loss. The default is `Full` (see ARCHITECTURE.md, ingest
/// durability, for what it costs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    Normal,
    #[default]
    Full,
}

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The one writer; also serves reads that must see a unit of work in progress (none yet).
    conn: Arc<Mutex<Connection>>,
    /// Read-only connections, used in turn, so reads run beside the writer (WAL).
    readers: Arc<[Arc<Mutex<Connection>>]>,
    next_reader: Arc<std::sync::atomic::AtomicUsize>,
    path: PathBuf,
    /// Group commit of ingest (core, issue 7): units of many callers in one transaction.
    group: Arc<group::GroupCommit>,
    /// `false`: each unit in a transaction of its own (benchmarks compare the two).
    group_commit: bool,
}

/// How many read connections a store opens.
const READERS: usize = 2;

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub fn open(path: &Path) -> StoreResult<Self> {
        Self::open_with(path, Durability::default())
    }

    /// [`open`](Self::open) with a chosen durability.
    pub fn open_with(path: &Path, durability: Durability) -> StoreResult<Self> {
        let context = || format!("opening {}", path.display());
        let conn = Connection::open(path).map_err(|e| codec::db_in(e, context()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| codec::db_in(e, context()))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| codec::db_in(e, context()))?;
        let sync = match durability {
            Durability::Normal => "NORMAL",
            Durability::Full => "FULL",
        };
        conn.pragma_update(None, "synchronous", sync)
            .map_err(|e| codec::db_in(e, context()))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(|e| codec::db_in(e, context()))?;
        // Ingest (issue 7): each unit of a group commit runs in a savepoint, and SQLite keeps
        // the pages a savepoint may have to roll back in a statement journal, by default a
        // temporary file: about 40 page writes per report (4-byte page number and 4 KiB page,
        // two system calls each) that are never read unless a unit fails. In memory they cost
        // no system call; the journal holds one group's changed pages at most.
        conn.pragma_update(None, "temp_store", "MEMORY")
            .map_err(|e| codec::db_in(e, context()))?;
        conn.set_prepared_statement_cache_capacity(64);
        let mut conn = conn;
        migrate(&mut conn, path)?;
        let readers = (0..READERS)
            .map(|_| {
                let r = Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(|e| codec::db_in(e, context()))?;
                r.busy_timeout(std::time::Duration::from_secs(10))
                    .map_err(|e| codec::db_in(e, context()))?;
                r.set_prepared_statement_cache_capacity(64);
                Ok(Arc::new(Mutex::new(r)))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            readers: readers.into(),
            next_reader: Arc::default(),
            path: path.to_path_buf(),
            group: Arc::default(),
            group_commit: true,
        })
    }

    /// The `synchronous` setting of the writer connection (`PRAGMA synchronous`: 1 NORMAL,
    /// 2 FULL), which decides whether an acknowledged report survives a power loss (issue 15).
    pub fn synchronous(&self) -> StoreResult<i64> {
        let conn = self
            .conn
            .try_lock()
            .map_err(|_| StoreError::message(DbErrorKind::Busy, "reading synchronous", "the store is in use"))?;
        conn.pragma_query_value(None, "synchronous", |r| r.get(0)).map_err(db)
    }

    /// Groups committed by group commit so far, and the units in them (benchmark, tests).
    pub fn group_commit_counts(&self) -> (u64, u64) {
        self.group.counts()
    }

    /// Time the writer spent writing groups so far (the benchmark's writer occupancy).
    pub fn group_commit_busy(&self) -> std::time::Duration {
        self.group.busy()
    }

    /// Units of work waiting for the writer to be committed as a group (tests).
    pub fn group_commit_queued(&self) -> usize {
        self.group.queued()
    }

    /// The same store committing every unit of work in a transaction of its own, as before
    /// group commit (for benchmarks that compare the two).
    pub fn without_group_commit(mut self) -> Self {
        self.group_commit = false;
        self
    }

    /// Runs `f` as a unit of a group commit (see [`group`]), or alone without group commit.
    async fn grouped<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<group::Done<T>> + Send + 'static,
    {
        if self.group_commit {
            return self.group.submit(&self.conn, f).await;
        }
        let mut tx = SqliteTx {
            writer: None,
            conn: Some(writer_guard(Arc::clone(&self.conn)).await?),
            failed: false,
        };
        let done = tx.run(f).await?;
        if done.keep {
            Box::new(tx).commit().await?;
        }
        Ok(done.value)
    }

    /// One agent's deliveries as one unit of a group commit; with `read`, and when a report
    /// was kept, the evaluation's input read after them on the writer inside the same unit (its
    /// page cache holds what the unit wrote; a read connection would read those pages again).
    async fn deliver(
        &self,
        agent_id: &str,
        reports: &[IncomingReport<'_>],
        read: bool,
    ) -> StoreResult<(Vec<DeliveryOutcome>, Option<StoreResult<EvaluationInput>>)> {
        let agent_id = agent_id.to_string();
        let owned: Vec<delivery::OwnedDelivery> = reports.iter().map(|r| delivery::OwnedDelivery::new(*r)).collect();
        self.grouped(move |c| {
            let mut outcomes = Vec::with_capacity(owned.len());
            // The agent's current rows, read once for the unit and kept up to date by it.
            let mut state = reports::AgentState::load(c, &agent_id)?;
            for d in &owned {
                let out = delivery::deliver(c, &agent_id, d, &mut state)?;
                let conflict = matches!(out.delivery, Delivery::Conflict { .. });
                outcomes.push(out);
                if conflict {
                    return Ok(group::Done::discard((outcomes, None)));
                }
            }
            // Reads only: a failed read fails the input, not the unit. The observations are
            // the state the deliveries left; their payloads are decoded after the commit, off
            // the writer.
            let input = (read && kept_a_report(&outcomes)).then(|| {
                #[cfg(debug_assertions)]
                state.assert_stored(c, &agent_id)?;
                undecoded_input(c, &agent_id, state.into_undecoded(&agent_id, None))
            });
            Ok(group::Done::keep((outcomes, input)))
        })
        .await
        .map(|(outcomes, input)| (outcomes, input.map(|i| i.and_then(UndecodedInput::decode))))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> StoreResult<u32> {
        let conn = self
            .conn
            .try_lock()
            .map_err(|_| StoreError::message(DbErrorKind::Busy, "reading the schema version", "the store is in use"))?;
        conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(db)
    }

    /// Runs the read `f` on one of the read connections, on the blocking pool.
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let i = self.next_reader.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.readers.len();
        let guard = Arc::clone(&self.readers[i]).lock_owned().await;
        let (_guard, out) = blocking(guard, f).await?;
        out
    }

    /// Runs `f` on the writer connection on the blocking pool, outside any unit of work.
    async fn with<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let guard = Arc::clone(&self.conn).lock_owned().await;
        let (_guard, out) = blocking(guard, f).await?;
        out
    }
}

/// Applies the migrations the database does not have yet, in one transaction.
fn migrate(conn: &mut Connection, path: &Path) -> StoreResult<()> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(db)?;
    let version: usize = tx.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(db)?;
    if version > MIGRATIONS.len() {
        return Err(StoreError::message(
            DbErrorKind::Schema,
            format!("opening {}", path.display()),
            format!(
                "database has schema version {version}, newer than this collector ({}); upgrade the collector",
                MIGRATIONS.len()
            ),
        ));
    }
    for (name, sql) in MIGRATIONS.iter().skip(version) {
        tx.execute_batch(sql)
            .map_err(|e| codec::db_in(e, format!("applying migration {name} to {}", path.display())))?;
    }
    tx.pragma_update(None, "user_version", MIGRATIONS.len()).map_err(db)?;
    tx.commit().map_err(db)
}

/// Runs `f` with the connection on the blocking pool and gives the guard back. A transaction
/// left open by a unit of work that panicked is rolled back first.
async fn blocking<T, F>(
    guard: OwnedMutexGuard<Connection>,
    f: F,
) -> StoreResult<(OwnedMutexGuard<Connection>, StoreResult<T>)>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let out = f(&guard);
        (guard, out)
    })
    .await
    .map_err(|e| StoreError::message(DbErrorKind::Other, "running a database task", e.to_string()))
}

/// A unit of work on the SQLite store: the writer taken and `BEGIN IMMEDIATE` at its first
/// statement, `COMMIT` at [`Tx::commit`], `ROLLBACK` when dropped before. A unit that runs no
/// statement never takes the writer, so opening and committing it costs nothing (issue 16: a
/// caller that finds nothing to write does not queue behind ingest).
#[derive(Debug)]
pub struct SqliteTx {
    /// The writer connection, until the unit's first statement takes it.
    writer: Option<Arc<Mutex<Connection>>>,
    conn: Option<OwnedMutexGuard<Connection>>,
    /// A write failed: nothing more is written and commit refuses.
    failed: bool,
}

impl SqliteTx {
    async fn run<T, F>(&mut self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        if self.failed {
            return Err(aborted());
        }
        if let Some(writer) = self.writer.take() {
            self.conn = Some(writer_guard(writer).await?);
        }
        let guard = self.conn.take().ok_or_else(aborted)?;
        let (guard, out) = blocking(guard, move |c| {
            if c.is_autocommit() {
                c.execute_batch("BEGIN IMMEDIATE").map_err(db)?;
            }
            f(c)
        })
        .await?;
        self.conn = Some(guard);
        if out.is_err() {
            self.failed = true;
        }
        out
    }
}

/// The writer connection, with any transaction a unit of work whose task panicked left open
/// rolled back.
async fn writer_guard(writer: Arc<Mutex<Connection>>) -> StoreResult<OwnedMutexGuard<Connection>> {
    let guard = writer.lock_owned().await;
    if !guard.is_autocommit() {
        guard.execute_batch("ROLLBACK").map_err(db)?;
    }
    Ok(guard)
}

fn aborted() -> StoreError {
    StoreError::message(
        DbErrorKind::Other,
        "continuing a unit of work",
        "an earlier write of this unit of work failed; it was rolled back",
    )
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        if let Some(c) = &self.conn
            && !c.is_autocommit()
            && let Err(error) = c.execute_batch("ROLLBACK")
        {
            tracing::error!(%error, "rolling back a unit of work failed");
        }
    }
}

#[async_trait]
impl Tx for SqliteTx {
    async fn ensure_practice(&mut self, name: &str, now: DateTime<Utc>) -> StoreResult<i64> {
        let name = name.to_string();
        self.run(move |c| agents::ensure_practice(c, &name, now)).await
    }

    async fn ensure_site(&mut self, practice: &str, site: &str, now: DateTime<Utc>) -> StoreResult<i64> {
        let (practice, site) = (practice.to_string(), site.to_string());
        self.run(move |c| agents::ensure_site(c, &practice, &site, now)).await
    }

    async fn create_token(&mut self, token: NewToken, now: DateTime<Utc>) -> StoreResult<()> {
        self.run(move |c| agents::create_token(c, &token, now)).await
    }

    async fn enroll(&mut self, token_hash: &str, agent: NewAgent, now: DateTime<Utc>) -> StoreResult<Enrolled> {
        let token_hash = token_hash.to_string();
        self.run(move |c| agents::enroll(c, &token_hash, &agent, now)).await
    }

    async fn heartbeat(
        &mut self,
        agent_id: &str,
        agent_version: &str,
        clock_skew: Option<chrono::Duration>,
        now: DateTime<Utc>,
    ) -> StoreResult<HeartbeatPrior> {
        let (agent_id, agent_version) = (agent_id.to_string(), agent_version.to_string());
        self.run(move |c| agents::heartbeat(c, &agent_id, &agent_version, clock_skew, now))
            .await
    }

    async fn ingest_report(&mut self, agent_id: &str, report: IncomingReport<'_>) -> StoreResult<Ingested> {
        let agent_id = agent_id.to_string();
        let owned = reports::OwnedReport::new(report);
        self.run(move |c| reports::ingest(c, &agent_id, &owned)).await
    }

    async fn replace_findings(
        &mut self,
        agent_id: &str,
        findings: &[Finding],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<FindingChange>> {
        let agent_id = agent_id.to_string();
        let findings = findings.to_vec();
        self.run(move |c| findings::replace(c, &agent_id, &findings, now)).await
    }

    async fn add_user(
        &mut self,
        username: &str,
        password_hash: &str,
        role: Role,
        practice: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<i64> {
        let (username, password_hash) = (username.to_string(), password_hash.to_string());
        let practice = practice.map(str::to_string);
        self.run(move |c| auth::add_user(c, &username, &password_hash, role, practice.as_deref(), now))
            .await
    }

    async fn set_password(&mut self, username: &str, password_hash: &str) -> StoreResult<()> {
        let (username, password_hash) = (username.to_string(), password_hash.to_string());
        self.run(move |c| auth::set_password(c, &username, &password_hash))
            .await
    }

    async fn create_api_key(
        &mut self,
        key_hash: &str,
        role: Role,
        practice: Option<&str>,
        label: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let (key_hash, label) = (key_hash.to_string(), label.to_string());
        let practice = practice.map(str::to_string);
        self.run(move |c| auth::create_api_key(c, &key_hash, role, practice.as_deref(), &label, now))
            .await
    }

    async fn audit(&mut self, actor: &str, action: &str, detail: &str, now: DateTime<Utc>) -> StoreResult<()> {
        let (actor, action, detail) = (actor.to_string(), action.to_string(), detail.to_string());
        self.run(move |c| audit::append(c, &actor, &action, &detail, now)).await
    }

    async fn set_policy_settings(
        &mut self,
        practice: &str,
        site: Option<&str>,
        profile: Option<&str>,
        overrides_toml: Option<&str>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        if site.is_some() && profile.is_some() {
            return Err(StoreError::Invalid(
                "a profile is set for a practice, not for a site".into(),
            ));
        }
        let (practice, site) = (practice.to_string(), site.map(str::to_string));
        let (profile, overrides) = (profile.map(str::to_string), overrides_toml.map(str::to_string));
        let actor = actor.to_string();
        self.run(move |c| {
            policy::set(
                c,
                &practice,
                site.as_deref(),
                profile.as_deref(),
                overrides.as_deref(),
                &actor,
                now,
            )
        })
        .await
    }

    // --- Reliable delivery and central agent configuration ---

    async fn deliver_report(&mut self, agent_id: &str, report: IncomingReport<'_>) -> StoreResult<DeliveryOutcome> {
        let agent_id = agent_id.to_string();
        let owned = delivery::OwnedDelivery::new(report);
        self.run(move |c| delivery::deliver(c, &agent_id, &owned, &mut reports::AgentState::load(c, &agent_id)?))
            .await
    }

    async fn record_integrity(
        &mut self,
        agent_id: &str,
        problems: &[crate::delivery::IntegrityProblem],
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let agent_id = agent_id.to_string();
        let problems = problems.to_vec();
        self.run(move |c| {
            delivery::record(c, &agent_id, &problems, now)?;
            delivery::journal_observation(c, &agent_id, now).map(drop)
        })
        .await
    }

    async fn agent_reported_state(&mut self, agent_id: &str, state: &AgentReportedState) -> StoreResult<()> {
        let agent_id = agent_id.to_string();
        let state = state.clone();
        self.run(move |c| delivery::reported_state(c, &agent_id, &state)).await
    }

    async fn set_agent_config(
        &mut self,
        practice: &str,
        site: Option<&str>,
        toml: Option<&str>,
        source: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<i64> {
        let (practice, site) = (practice.to_string(), site.map(str::to_string));
        let (toml, source, actor) = (toml.map(str::to_string), source.to_string(), actor.to_string());
        self.run(move |c| agent_config::set(c, &practice, site.as_deref(), toml.as_deref(), &source, &actor, now))
            .await
    }

    // --- Security: revocation and API-key expiry (issue 15) ---

    async fn revoke_agent(&mut self, agent_id: &str, now: DateTime<Utc>) -> StoreResult<bool> {
        let agent_id = agent_id.to_string();
        self.run(move |c| security::revoke_agent(c, &agent_id, now)).await
    }

    async fn create_api_key_expiring(
        &mut self,
        key_hash: &str,
        role: Role,
        practice: Option<&str>,
        label: &str,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> StoreResult<i64> {
        let (key_hash, label) = (key_hash.to_string(), label.to_string());
        let practice = practice.map(str::to_string);
        self.run(move |c| security::create_api_key(c, &key_hash, role, practice.as_deref(), &label, expires_at, now))
            .await
    }

    async fn revoke_api_key(&mut self, id: i64, now: DateTime<Utc>) -> StoreResult<bool> {
        self.run(move |c| security::revoke_api_key(c, id, now)).await
    }

    async fn remove_user(&mut self, username: &str) -> StoreResult<()> {
        let username = username.to_string();
        self.run(move |c| security::remove_user(c, &username)).await
    }

    // --- Alerting (issue 12) ---

    async fn active_incident(&mut self, source: &str, subject: &str) -> StoreResult<Option<Incident>> {
        let (source, subject) = (source.to_string(), subject.to_string());
        self.run(move |c| alerting::active(c, &source, &subject)).await
    }

    async fn incident_by_id(&mut self, id: i64) -> StoreResult<Option<Incident>> {
        self.run(move |c| alerting::by_id(c, id)).await
    }

    async fn active_incidents(&mut self) -> StoreResult<Vec<Incident>> {
        self.run(alerting::all_active).await
    }

    async fn open_incident(&mut self, new: &NewIncident, now: DateTime<Utc>) -> StoreResult<Incident> {
        let new = new.clone();
        self.run(move |c| alerting::open(c, &new, now)).await
    }

    async fn save_incident(&mut self, incident: &Incident) -> StoreResult<()> {
        let incident = incident.clone();
        self.run(move |c| alerting::save(c, &incident)).await
    }

    async fn incident_event(
        &mut self,
        incident_id: i64,
        event: &NewIncidentEvent,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let event = event.clone();
        self.run(move |c| alerting::event(c, incident_id, &event, now)).await
    }

    async fn enqueue_notification(&mut self, item: &NewOutboxItem, now: DateTime<Utc>) -> StoreResult<i64> {
        let item = item.clone();
        self.run(move |c| alerting::enqueue(c, &item, now)).await
    }

    async fn due_notifications(&mut self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<OutboxItem>> {
        self.run(move |c| alerting::due(c, now, limit)).await
    }

    async fn incident_notifications(&mut self, incident_id: i64) -> StoreResult<Vec<OutboxItem>> {
        self.run(move |c| alerting::of_incident(c, incident_id)).await
    }

    async fn save_notification(&mut self, item: &OutboxItem) -> StoreResult<()> {
        let item = item.clone();
        self.run(move |c| alerting::save_item(c, &item)).await
    }

    async fn alert_window(&mut self, source: &str, subject: &str) -> StoreResult<Option<AlertWindow>> {
        let (source, subject) = (source.to_string(), subject.to_string());
        self.run(move |c| alerting::window(c, &source, &subject)).await
    }

    async fn save_alert_window(&mut self, window: &AlertWindow) -> StoreResult<()> {
        let window = window.clone();
        self.run(move |c| alerting::save_window(c, &window)).await
    }

    async fn claim_lease(
        &mut self,
        name: &str,
        holder: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.run(move |c| alerting::claim_lease(c, &name, &holder, until, now))
            .await
    }

    // --- Runtime silences (alerting, issue 12) ---
    async fn create_silence(&mut self, new: &NewSilence, now: DateTime<Utc>) -> StoreResult<StoredSilence> {
        let new = new.clone();
        self.run(move |c| silences::create(c, &new, now)).await
    }

    async fn save_silence(&mut self, silence: &StoredSilence) -> StoreResult<()> {
        let silence = silence.clone();
        self.run(move |c| silences::save(c, &silence)).await
    }

    async fn silences(&mut self, query: &SilenceQuery) -> StoreResult<Vec<StoredSilence>> {
        let query = query.clone();
        self.run(move |c| silences::list(c, &query)).await
    }

    // --- Compliance reports (issue 14) ---
    async fn record_issued_report(&mut self, report: &IssuedReport) -> StoreResult<()> {
        let report = report.clone();
        self.run(move |c| issued::record(c, &report)).await
    }

    async fn record_report_delivery(&mut self, delivery: &ReportDelivery) -> StoreResult<()> {
        let delivery = delivery.clone();
        self.run(move |c| issued::record_delivery(c, &delivery)).await
    }

    async fn commit(mut self: Box<Self>) -> StoreResult<()> {
        if self.failed {
            return Err(aborted());
        }
        if self.writer.is_some() {
            // No statement ran: nothing to commit, and the writer was never taken.
            return Ok(());
        }
        let Some(guard) = self.conn.take() else {
            return Err(aborted());
        };
        let (guard, out) = blocking(guard, |c| {
            if !c.is_autocommit() {
                c.execute_batch("COMMIT").map_err(db)?;
            }
            Ok(())
        })
        .await?;
        // A failed COMMIT leaves the transaction open: dropping rolls it back.
        self.conn = Some(guard);
        out
    }

    // --- Tamper acknowledgement (core, issue 11) ---

    async fn note_tampers(&mut self, agent_id: &str, seen: &[TamperSeen], now: DateTime<Utc>) -> StoreResult<()> {
        let agent_id = agent_id.to_string();
        let seen = seen.to_vec();
        self.run(move |c| tamper::note(c, &agent_id, &seen, now)).await
    }

    async fn acknowledge_tamper(&mut self, agent_id: &str, tamper_id: &str, ack: &TamperAck) -> StoreResult<TamperRow> {
        let (agent_id, tamper_id, ack) = (agent_id.to_string(), tamper_id.to_string(), ack.clone());
        self.run(move |c| tamper::acknowledge(c, &agent_id, &tamper_id, &ack))
            .await
    }

    // --- Retention (issue 17) ---
    async fn observations_to_roll_up(
        &mut self,
        before: DateTime<Utc>,
        after: (DateTime<Utc>, i64),
        limit: u32,
    ) -> StoreResult<Vec<RawObservation>> {
        self.run(move |c| retention::observations_to_roll_up(c, before, after, limit))
            .await
    }

    async fn hourly_rollups_before(&mut self, before: DateTime<Utc>, limit: u32) -> StoreResult<Vec<StoredRollup>> {
        self.run(move |c| retention::hourly_before(c, before, limit)).await
    }

    async fn merge_rollups(&mut self, rollups: &[Rollup]) -> StoreResult<()> {
        let rollups = rollups.to_vec();
        self.run(move |c| retention::merge(c, &rollups)).await
    }

    async fn remove_observations(&mut self, ids: &[i64]) -> StoreResult<u64> {
        let ids = ids.to_vec();
        self.run(move |c| retention::remove_observations(c, &ids)).await
    }

    async fn remove_rollups(&mut self, ids: &[i64]) -> StoreResult<u64> {
        let ids = ids.to_vec();
        self.run(move |c| retention::remove_rollups(c, &ids)).await
    }

    async fn prune_records(
        &mut self,
        kind: RecordKind,
        before: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<TableRows>> {
        self.run(move |c| retention::prune(c, kind, before, limit)).await
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn begin(&self) -> StoreResult<Box<dyn Tx>> {
        Ok(Box::new(SqliteTx {
            writer: Some(Arc::clone(&self.conn)),
            conn: None,
            failed: false,
        }))
    }

    async fn agent_auth(&self, agent_id: &str) -> StoreResult<Option<AgentAuth>> {
        let agent_id = agent_id.to_string();
        self.read(move |c| agents::auth(c, &agent_id)).await
    }

    async fn practices(&self, scope: &Scope) -> StoreResult<Vec<PracticeRow>> {
        let scope = scope.clone();
        self.read(move |c| agents::practices(c, &scope)).await
    }

    async fn agents(&self, scope: &Scope) -> StoreResult<Vec<AgentRow>> {
        let scope = scope.clone();
        self.read(move |c| agents::list(c, &scope)).await
    }

    // Alerting (issue 12): the engine's tick.
    async fn agent_presence(&self) -> StoreResult<Vec<AgentPresence>> {
        self.read(agents::presence).await
    }

    async fn agent(&self, scope: &Scope, agent_id: &str) -> StoreResult<AgentRow> {
        let scope = scope.clone();
        let agent_id = agent_id.to_string();
        self.read(move |c| agents::one(c, &scope, &agent_id)).await
    }

    async fn latest_observations(
        &self,
        scope: &Scope,
        agent_id: &str,
        kind: Option<&str>,
    ) -> StoreResult<Vec<StoredObservation>> {
        let scope = scope.clone();
        let agent_id = agent_id.to_string();
        let kind = kind.map(str::to_string);
        self.read(move |c| {
            agents::check_visible(c, &scope, &agent_id)?;
            reports::latest(c, &agent_id, kind.as_deref())
        })
        .await
    }

    async fn findings(&self, scope: &Scope, agent_id: &str) -> StoreResult<Vec<FindingRow>> {
        let scope = scope.clone();
        let agent_id = agent_id.to_string();
        self.read(move |c| {
            agents::check_visible(c, &scope, &agent_id)?;
            findings::current(c, &agent_id)
        })
        .await
    }

    async fn findings_at(&self, scope: &Scope, agent_id: &str, at: DateTime<Utc>) -> StoreResult<Vec<FindingRow>> {
        let scope = scope.clone();
        let agent_id = agent_id.to_string();
        self.read(move |c| {
            agents::check_visible(c, &scope, &agent_id)?;
            findings::as_at(c, &agent_id, at)
        })
        .await
    }

    async fn finding_changes(&self, scope: &Scope, query: &ChangeQuery) -> StoreResult<Vec<FindingChange>> {
        let scope = scope.clone();
        let query = query.clone();
        self.read(move |c| {
            if let Some(agent_id) = &query.agent_id {
                agents::check_visible(c, &scope, agent_id)?;
            }
            findings::changes(c, &scope, &query)
        })
        .await
    }

    async fn report_count(&self) -> StoreResult<u64> {
        self.read(reports::count).await
    }

    async fn user_count(&self) -> StoreResult<u64> {
        self.read(auth::user_count).await
    }

    async fn user(&self, username: &str) -> StoreResult<Option<UserRow>> {
        let username = username.to_string();
        self.read(move |c| auth::user(c, &username)).await
    }

    async fn create_session(
        &self,
        token_hash: &str,
        user_id: i64,
        csrf_token: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let (token_hash, csrf_token) = (token_hash.to_string(), csrf_token.to_string());
        self.with(move |c| auth::create_session(c, &token_hash, user_id, &csrf_token, now, expires_at))
            .await
    }

    async fn session(&self, token_hash: &str, now: DateTime<Utc>) -> StoreResult<Option<SessionRow>> {
        let token_hash = token_hash.to_string();
        self.read(move |c| auth::session(c, &token_hash, now)).await
    }

    async fn delete_session(&self, token_hash: &str) -> StoreResult<()> {
        let token_hash = token_hash.to_string();
        self.with(move |c| auth::delete_session(c, &token_hash)).await
    }

    async fn api_key(&self, key_hash: &str) -> StoreResult<Option<Scope>> {
        let key_hash = key_hash.to_string();
        self.read(move |c| auth::api_key(c, &key_hash)).await
    }

    async fn audit_entries(&self, limit: u32) -> StoreResult<Vec<AuditEntry>> {
        self.read(move |c| audit::entries(c, limit)).await
    }

    async fn policy_settings(&self, practice: &str, site: Option<&str>) -> StoreResult<Option<PolicySettingsRow>> {
        let (practice, site) = (practice.to_string(), site.map(str::to_string));
        self.read(move |c| policy::get(c, &practice, site.as_deref())).await
    }

    async fn policy_settings_for_agent(&self, agent_id: &str) -> StoreResult<AgentPolicySettings> {
        let agent_id = agent_id.to_string();
        self.read(move |c| policy::for_agent(c, &agent_id)).await
    }

    // --- Reliable delivery and central agent configuration ---

    async fn delivery_status(&self, scope: &Scope, agent_id: &str) -> StoreResult<DeliveryStatus> {
        let scope = scope.clone();
        let agent_id = agent_id.to_string();
        self.with(move |c| {
            agents::check_visible(c, &scope, &agent_id)?;
            delivery::status(c, &agent_id)
        })
        .await
    }

    async fn agent_config(&self, practice: &str, site: Option<&str>) -> StoreResult<Option<AgentConfigRow>> {
        let (practice, site) = (practice.to_string(), site.map(str::to_string));
        self.with(move |c| agent_config::current(c, &practice, site.as_deref()))
            .await
    }

    async fn agent_config_history(&self, practice: &str, site: Option<&str>) -> StoreResult<Vec<AgentConfigRow>> {
        let (practice, site) = (practice.to_string(), site.map(str::to_string));
        self.with(move |c| agent_config::history(c, &practice, site.as_deref()))
            .await
    }

    async fn site_agent_configs(&self, practice: &str) -> StoreResult<Vec<AgentConfigRow>> {
        let practice = practice.to_string();
        self.with(move |c| agent_config::of_sites(c, &practice)).await
    }

    async fn agent_config_sources(&self, agent_id: &str) -> StoreResult<AgentConfigSources> {
        let agent_id = agent_id.to_string();
        self.read(move |c| agent_config::sources(c, &agent_id)).await
    }

    // --- Technician dashboard (issue 13) ---
    async fn finding_briefs(&self, scope: &Scope) -> StoreResult<Vec<crate::store::FindingBrief>> {
        let scope = scope.clone();
        self.read(move |c| dashboard::briefs(c, &scope)).await
    }

    async fn rule_tallies(&self, scope: &Scope) -> StoreResult<Vec<crate::store::RuleTally>> {
        let scope = scope.clone();
        self.read(move |c| dashboard::rule_tallies(c, &scope)).await
    }

    async fn observation_history(
        &self,
        scope: &Scope,
        practice_id: i64,
        kind: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<StoredObservation>> {
        let scope = scope.clone();
        let kind = kind.to_string();
        self.read(move |c| dashboard::history(c, &scope, practice_id, &kind, from, to))
            .await
    }

    async fn observation_fields(
        &self,
        scope: &Scope,
        practice_id: i64,
        kind: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        fields: &[&str],
    ) -> StoreResult<Vec<crate::store::ObservedFields>> {
        let scope = scope.clone();
        let kind = kind.to_string();
        let fields: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
        self.read(move |c| dashboard::fields(c, &scope, practice_id, &kind, from, to, &fields))
            .await
    }

    async fn users(&self) -> StoreResult<Vec<crate::store::UserSummary>> {
        self.read(dashboard::users).await
    }

    // --- Security: revocation and API-key expiry (issue 15) ---

    async fn api_keys(&self) -> StoreResult<Vec<ApiKeyRow>> {
        self.read(security::api_keys).await
    }

    async fn api_key_valid(&self, key_hash: &str, now: DateTime<Utc>) -> StoreResult<Option<ApiKeyGrant>> {
        let key_hash = key_hash.to_string();
        self.read(move |c| security::api_key_valid(c, &key_hash, now)).await
    }

    async fn admin_count(&self) -> StoreResult<u64> {
        self.read(security::admin_count).await
    }

    // --- Alerting (issue 12) ---

    async fn incidents(&self, scope: &Scope, query: &IncidentQuery) -> StoreResult<Vec<Incident>> {
        let (scope, query) = (scope.clone(), query.clone());
        self.read(move |c| alerting::list(c, &scope, &query)).await
    }

    async fn incident(&self, scope: &Scope, id: i64) -> StoreResult<IncidentDetail> {
        let scope = scope.clone();
        self.read(move |c| alerting::detail(c, &scope, id)).await
    }

    // Runtime silences (alerting, issue 12).
    async fn silences(&self, query: &SilenceQuery) -> StoreResult<Vec<StoredSilence>> {
        let query = query.clone();
        self.read(move |c| silences::list(c, &query)).await
    }

    // --- Compliance reports (issue 14) ---
    async fn agent_observation_history(
        &self,
        agent_id: &str,
        kinds: &[&str],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<StoredObservation>> {
        let agent_id = agent_id.to_string();
        let kinds: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
        // Retention (issue 17): raw rows and the rollups of removed ones, in one snapshot, so
        // that a run moving rows between the two cannot show a row twice or not at all.
        self.read(move |c| {
            let snapshot = c.unchecked_transaction().map_err(db)?;
            let raw = issued::observation_history(c, &agent_id, &kinds, from, to)?;
            let mut rolled = Vec::new();
            for kind in &kinds {
                rolled.extend(retention::history_rollups(c, &agent_id, kind, from, to)?);
            }
            drop(snapshot);
            crate::store::rollup::merge_history(raw, &rolled, from, to)
        })
        .await
    }

    // --- Retention (issue 17) ---
    async fn retention_preview(&self, cutoffs: &RetentionCutoffs) -> StoreResult<Vec<TableRows>> {
        let cutoffs = *cutoffs;
        self.read(move |c| {
            let snapshot = c.unchecked_transaction().map_err(db)?;
            let out = retention::preview(c, &cutoffs);
            drop(snapshot);
            out
        })
        .await
    }

    async fn storage(&self) -> StoreResult<StorageReport> {
        self.read(retention::storage).await
    }

    async fn report_receipts(
        &self,
        agent_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<DateTime<Utc>>> {
        let agent_id = agent_id.to_string();
        self.read(move |c| issued::receipts(c, &agent_id, from, to)).await
    }

    async fn issued_reports_by_file_hash(&self, file_sha256: &str) -> StoreResult<Vec<IssuedReport>> {
        let hash = file_sha256.to_string();
        self.read(move |c| issued::by_file_hash(c, &hash)).await
    }

    async fn issued_report(&self, report_id: &str) -> StoreResult<Option<IssuedReport>> {
        let id = report_id.to_string();
        self.read(move |c| issued::by_id(c, &id)).await
    }

    async fn issued_reports_of_practice(&self, practice_id: i64) -> StoreResult<Vec<IssuedReport>> {
        self.read(move |c| issued::of_practice(c, practice_id)).await
    }

    async fn report_deliveries(&self, schedule: &str) -> StoreResult<Vec<ReportDelivery>> {
        let schedule = schedule.to_string();
        self.read(move |c| issued::deliveries(c, &schedule)).await
    }

    // --- Tamper acknowledgement (core, issue 11) ---

    async fn tampers(&self, scope: &Scope, agent_id: &str) -> StoreResult<Vec<TamperRow>> {
        let scope = scope.clone();
        let agent_id = agent_id.to_string();
        self.read(move |c| {
            agents::check_visible(c, &scope, &agent_id)?;
            tamper::list(c, &agent_id)
        })
        .await
    }

    // --- Group commit of ingest (core, issue 7) ---

    async fn replace_findings(
        &self,
        agent_id: &str,
        findings: &[Finding],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<FindingChange>> {
        let agent_id = agent_id.to_string();
        let findings = findings.to_vec();
        self.grouped(move |c| findings::replace(c, &agent_id, &findings, now).map(group::Done::keep))
            .await
    }

    async fn deliver_reports(
        &self,
        agent_id: &str,
        reports: &[IncomingReport<'_>],
    ) -> StoreResult<Vec<DeliveryOutcome>> {
        self.deliver(agent_id, reports, false)
            .await
            .map(|(outcomes, _)| outcomes)
    }

    // Ingest throughput (core, issue 7): the evaluation's read on the writer, in the same unit.
    async fn deliver_reports_and_read(
        &self,
        agent_id: &str,
        reports: &[IncomingReport<'_>],
    ) -> StoreResult<(Vec<DeliveryOutcome>, Option<StoreResult<EvaluationInput>>)> {
        self.deliver(agent_id, reports, true).await
    }

    // --- Ingest throughput (core, issue 7) ---
    async fn evaluation_input(&self, agent_id: &str) -> StoreResult<EvaluationInput> {
        let agent_id = agent_id.to_string();
        self.read(move |c| {
            // One snapshot for the four reads; never left open on this read connection.
            c.execute_batch("BEGIN").map_err(db)?;
            let input = evaluation_input(c, &agent_id);
            if let Err(e) = c.execute_batch("COMMIT") {
                let _ = c.execute_batch("ROLLBACK");
                return Err(db(e));
            }
            input
        })
        .await
    }

    // --- Heartbeats at scale (issue 16) ---
    async fn record_heartbeat(
        &self,
        agent_id: &str,
        agent_version: &str,
        clock_skew: Option<chrono::Duration>,
        reported: &AgentReportedState,
        now: DateTime<Utc>,
    ) -> StoreResult<HeartbeatPrior> {
        let (agent_id, agent_version, reported) = (agent_id.to_string(), agent_version.to_string(), reported.clone());
        self.grouped(move |c| {
            let prior = agents::heartbeat(c, &agent_id, &agent_version, clock_skew, now)?;
            delivery::reported_state(c, &agent_id, &reported)?;
            Ok(group::Done::keep(prior))
        })
        .await
    }
}

// --- Ingest throughput (core, issue 7) ---
/// What [`Store::evaluation_input`] reads, on one connection.
fn evaluation_input(c: &Connection, agent_id: &str) -> StoreResult<EvaluationInput> {
    undecoded_input(c, agent_id, reports::latest_undecoded(c, agent_id, None)?)?.decode()
}

/// [`EvaluationInput`] with the observations' payloads as their stored JSON text.
struct UndecodedInput {
    /// The input, every observation's `data` still `null`.
    input: EvaluationInput,
    /// The stored JSON text of each observation's payload, in the same order.
    payloads: Vec<String>,
}

impl UndecodedInput {
    fn decode(self) -> StoreResult<EvaluationInput> {
        let UndecodedInput { mut input, payloads } = self;
        let rows = std::mem::take(&mut input.observations)
            .into_iter()
            .zip(payloads)
            .collect();
        input.observations = reports::decode_latest(rows)?;
        Ok(input)
    }
}

/// The evaluation's input around the agent's current `observations`.
fn undecoded_input(
    c: &Connection,
    agent_id: &str,
    observations: Vec<(StoredObservation, String)>,
) -> StoreResult<UndecodedInput> {
    let (os, clock_skew_ms) = agents::os_and_skew(c, agent_id)?;
    let (observations, payloads) = observations.into_iter().unzip();
    Ok(UndecodedInput {
        input: EvaluationInput {
            os,
            clock_skew_ms,
            observations,
            policy_settings: policy::for_agent(c, agent_id)?,
            tampers: tamper::list(c, agent_id)?,
        },
        payloads,
    })
}

// Backup and restore (deploy): the schema version this build writes, to check a backup with.
/// The schema version (`PRAGMA user_version`) of a database this build has migrated.
pub fn schema_version() -> usize {
    MIGRATIONS.len()
}

// PostgreSQL backend (issue 17): `migrate` says which version a file had before opening it.
/// The schema version (`PRAGMA user_version`) of the database file at `path`, read-only.
pub fn file_schema_version(path: &Path) -> StoreResult<usize> {
    let context = || format!("opening {}", path.display());
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| codec::db_in(e, context()))?;
    let v: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| codec::db_in(e, context()))?;
    Ok(v.max(0) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Migration 0016 (core, issue 7) left the observation history two indexes fewer: every
    /// query on it still searches an index, none scans the table or a whole index.
    #[test]
    fn the_queries_on_the_observation_history_search_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("rounds.db")).unwrap();
        let conn = Connection::open(store.path()).unwrap();
        let queries = [
            ("the dashboard's history", dashboard::HISTORY.to_string(), 4),
            (
                "a report's observation history",
                issued::OBSERVATION_HISTORY.to_string(),
                4,
            ),
            ("the rows retention rolls up", crate::store::rollup::select_raw(), 4),
            (
                "the count of rows retention rolls up",
                crate::store::rollup::count_raw(),
                1,
            ),
        ];
        for (name, sql, params) in queries {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let plan: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(vec![0i64; params]), |r| r.get(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            for line in &plan {
                let scanned = line.strip_prefix("SCAN ").map(|t| t.split(' ').next().unwrap_or(""));
                assert!(
                    !matches!(scanned, Some("o" | "p" | "n" | "observations")),
                    "{name} scans the observation history: {plan:?}"
                );
            }
            assert!(
                plan.iter()
                    .any(|l| l.contains("observations_by_subject") || l.contains("observations_by_time")),
                "{name}: {plan:?}"
            );
        }
    }
}
