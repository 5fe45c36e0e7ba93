//! The PostgreSQL store (issue 17): the same tables as SQLite (migrations translated one to
//! one), for installations that outgrow one machine and run several collectors on one
//! database.
//!
//! Modules by what they own mirror `store/sqlite/`: each holds `async` functions of the same
//! names and arguments over a `&pool::Conn` (a client and the statements prepared on it).
//! This module owns the pool ([`pool`]), the migrations (`migrations/*.sql`; table
//! `schema_version` records each applied one) and the units of work.
//!
//! Units of work hold transaction-scoped advisory locks (`pg_advisory_xact_lock`) that every
//! collector on the database takes. A unit of work of one agent's reports, findings or tamper
//! events ([`Store::begin_for_agent`]: `deliver_reports`, `ingest_report`, `replace_findings`,
//! `note_tampers`) holds the writer lock shared and its agent's lock: units of different agents run at once,
//! two of one agent never interleave. Every other unit holds the writer lock exclusively (and
//! this process's writer mutex first), so it runs alone, as SQLite's `BEGIN IMMEDIATE` has it.
//! The one thing agents' units share, a practice's per-rule tally (the triggers of migrations
//! 0011 and 0012 recount it from every agent of the practice), is recounted under the
//! practice's lock, taken by `findings::replace` before a write that fires the recount. Reads
//! outside a unit of work run beside it on other pooled connections (read committed, like
//! SQLite's WAL readers). Times are stored as integer milliseconds since the epoch (UTC).
//! TLS to the server follows libpq's `sslmode` and `sslrootcert` ([`tls`]); without `sslmode`
//! it is `prefer` for a local host and `verify-full` for any other.

mod agent_config;
mod agents;
mod alerting;
mod audit;
mod auth;
pub mod codec;
mod dashboard;
mod delivery;
mod findings;
mod issued;
mod policy;
pub mod pool;
mod reports;
// Retention (issue 17).
mod retention;
mod security;
// Runtime silences (alerting, issue 12).
mod silences;
mod tamper;
// TLS to the server: sslmode, sslrootcert.
pub mod tls;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rounds_policies::Finding;
use tokio::sync::{Mutex, OwnedMutexGuard};

use self::codec::db;
use self::pool::{Conn, Pool, Pooled};
use super::*;
pub use crate::store::Migrated;

/// Versioned migrations; index + 1 is the schema version. They mirror SQLite's one to one
/// (same numbers, tables and columns). Never edit a released one: append.
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
    ("0008_reports", include_str!("migrations/0008_reports.sql")),
    ("0009_tamper_ack", include_str!("migrations/0009_tamper_ack.sql")),
    // Runtime silences (alerting, issue 12).
    ("0010_silences", include_str!("migrations/0010_silences.sql")),
    // Dashboard counts and indexes (issue 13): the same tables, kept by plpgsql triggers.
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

/// The advisory lock every unit of work holds (`pg_advisory_xact_lock`): "Rounds" in ASCII;
/// exclusively, or shared by units of one agent each.
const WRITER_LOCK: i64 = 0x526f_756e_6473;
/// The advisory lock migrations hold, so that collectors starting together migrate once.
const MIGRATION_LOCK: i64 = 0x526f_756e_6474;
/// Classes of the two-key advisory locks (`pg_advisory_xact_lock(class, key)`, a key space
/// apart from the one-key locks'): an agent's units of work, keyed by [`agent_key`], and a
/// practice's tally recounts, keyed by the practice id.
const AGENT_LOCK_CLASS: i32 = 0x526f_7541;
pub(crate) const PRACTICE_LOCK_CLASS: i32 = 0x526f_7550;

/// The key of an agent's lock: FNV-1a of its id. Two agents that share a key only wait for
/// each other.
fn agent_key(agent_id: &str) -> i32 {
    let hash = agent_id
        .bytes()
        .fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    hash as i32
}

/// How many connections a store keeps at most.
pub const POOL_SIZE: usize = 8;

/// The schema version a database migrated by this build has.
pub fn schema_version() -> usize {
    MIGRATIONS.len()
}

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: Arc<Pool>,
    /// This process's units of work, one at a time (the advisory lock orders processes).
    writer: Arc<Mutex<()>>,
}

impl PgStore {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/db[?sslmode=...&options=...]`) and brings
    /// its schema up to date. Refuses a schema newer than this build knows.
    pub async fn open(url: &str) -> StoreResult<Self> {
        Ok(Self::open_migrated(url, POOL_SIZE).await?.0)
    }

    /// [`open`](Self::open) with a pool size, also saying which versions it migrated between.
    pub async fn open_migrated(url: &str, pool_size: usize) -> StoreResult<(Self, Migrated)> {
        let shown = codec::redact_url(url);
        let opening = |why: String| StoreError::message(DbErrorKind::Unavailable, format!("opening {shown}"), why);
        let mut target = tls::Target::parse(url).map_err(opening)?;
        let config = &mut target.config;
        if config.get_application_name().is_none() {
            config.application_name("rounds-collector");
        }
        // A server that does not answer is an error after a while, not a hang.
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        let connector = target.connector().map_err(opening)?;
        let pool = Pool::new(target, connector, shown, pool_size);
        let mut conn = pool.get().await?;
        let migrated = migrate(&mut conn, pool.shown()).await?;
        drop(conn);
        Ok((
            PgStore {
                pool,
                writer: Arc::default(),
            },
            migrated,
        ))
    }

    /// The database as messages name it (the URL without its password).
    pub fn shown(&self) -> &str {
        self.pool.shown()
    }

    /// The schema version of the open database.
    pub async fn schema_version(&self) -> StoreResult<u32> {
        let c = self.pool.get().await?;
        let v = current_version(&c).await?;
        u32::try_from(v).map_err(|_| codec::out_of_range("schema version", v as i64))
    }

    async fn client(&self) -> StoreResult<Pooled> {
        self.pool.get().await
    }

    /// Opens a unit of work: of `agent`'s writes only (its lock, the writer lock shared), or,
    /// without one, of anything (the writer lock exclusively). `BEGIN` and the locks are one
    /// round trip.
    async fn begin_unit(&self, agent: Option<&str>) -> StoreResult<PgTx> {
        let writer = match agent {
            Some(_) => None,
            None => Some(Arc::clone(&self.writer).lock_owned().await),
        };
        let mut conn = self.client().await?;
        // The keys are numbers: nothing of the agent id reaches the SQL text.
        let sql = match agent {
            Some(a) => format!(
                "BEGIN; SELECT pg_advisory_xact_lock_shared({WRITER_LOCK}); SELECT pg_advisory_xact_lock({AGENT_LOCK_CLASS}, {})",
                agent_key(a)
            ),
            None => format!("BEGIN; SELECT pg_advisory_xact_lock({WRITER_LOCK})"),
        };
        // Marked first: a failed lock leaves the transaction open, and the guard rolls it back.
        conn.set_in_tx(true);
        conn.batch_execute(&sql)
            .await
            .map_err(|e| codec::db_in(e, "beginning a unit of work and taking the writer lock"))?;
        Ok(PgTx {
            conn: Some(conn),
            failed: false,
            _writer: writer,
        })
    }
}

/// The newest migration recorded, 0 for a database without the table.
async fn current_version(c: &Conn) -> StoreResult<usize> {
    let exists: bool = c
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM information_schema.tables
                            WHERE table_schema = current_schema() AND table_name = 'schema_version')",
            &[],
        )
        .await
        .map_err(db)?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let v: Option<i64> = c
        .query_one("SELECT max(version) FROM schema_version", &[])
        .await
        .map_err(db)?
        .get(0);
    Ok(v.unwrap_or(0).max(0) as usize)
}

/// Applies the migrations the database does not have yet, in one transaction.
async fn migrate(conn: &mut Pooled, shown: &str) -> StoreResult<Migrated> {
    let context = || format!("opening {shown}");
    conn.batch_execute("BEGIN")
        .await
        .map_err(|e| codec::db_in(e, context()))?;
    conn.set_in_tx(true);
    conn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| codec::db_in(e, context()))?;
    conn.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version BIGINT PRIMARY KEY,
             name TEXT NOT NULL
         )",
    )
    .await
    .map_err(|e| codec::db_in(e, context()))?;
    let version = current_version(conn).await?;
    if version > MIGRATIONS.len() {
        return Err(StoreError::message(
            DbErrorKind::Schema,
            context(),
            format!(
                "database has schema version {version}, newer than this collector ({}); upgrade the collector",
                MIGRATIONS.len()
            ),
        ));
    }
    for (i, (name, sql)) in MIGRATIONS.iter().enumerate().skip(version) {
        conn.batch_execute(sql)
            .await
            .map_err(|e| codec::db_in(e, format!("applying migration {name} to {shown}")))?;
        conn.execute(
            "INSERT INTO schema_version (version, name) VALUES ($1, $2)",
            &[&(i as i64 + 1), name],
        )
        .await
        .map_err(|e| codec::db_in(e, context()))?;
    }
    conn.batch_execute("COMMIT")
        .await
        .map_err(|e| codec::db_in(e, context()))?;
    conn.set_in_tx(false);
    Ok(Migrated {
        from: version,
        to: MIGRATIONS.len(),
    })
}

/// A unit of work on the PostgreSQL store: `BEGIN` and the writer lock at
/// [`Store::begin`], `COMMIT` at [`Tx::commit`], `ROLLBACK` when dropped before.
#[derive(Debug)]
pub struct PgTx {
    conn: Option<Pooled>,
    /// A write failed: nothing more is written and commit refuses.
    failed: bool,
    /// This process's writer mutex, held by a unit of work that is not one agent's.
    _writer: Option<OwnedMutexGuard<()>>,
}

impl PgTx {
    /// The client of this unit of work, unless an earlier write failed.
    fn client(&self) -> StoreResult<&Conn> {
        if self.failed {
            return Err(aborted());
        }
        self.conn.as_ref().map(|c| c.client()).ok_or_else(aborted)
    }

    /// Notes a failure: the unit of work is then rolled back.
    fn note<T>(&mut self, out: StoreResult<T>) -> StoreResult<T> {
        if out.is_err() {
            self.failed = true;
        }
        out
    }
}

fn aborted() -> StoreError {
    StoreError::message(
        DbErrorKind::Other,
        "continuing a unit of work",
        "an earlier write of this unit of work failed; it was rolled back",
    )
}

/// Runs a module function on the unit of work's client, noting a failure.
macro_rules! tx {
    ($self:ident, |$c:ident| $call:expr) => {{
        let out = match $self.client() {
            Ok($c) => $call.await,
            Err(e) => Err(e),
        };
        $self.note(out)
    }};
}

/// Runs a module function on a pooled client, outside any unit of work.
macro_rules! read {
    ($self:ident, |$c:ident| $call:expr) => {{
        let pooled = $self.client().await?;
        let $c: &Conn = &pooled;
        $call.await
    }};
}

#[async_trait]
impl Tx for PgTx {
    async fn ensure_practice(&mut self, name: &str, now: DateTime<Utc>) -> StoreResult<i64> {
        tx!(self, |c| agents::ensure_practice(c, name, now))
    }

    async fn ensure_site(&mut self, practice: &str, site: &str, now: DateTime<Utc>) -> StoreResult<i64> {
        tx!(self, |c| agents::ensure_site(c, practice, site, now))
    }

    async fn create_token(&mut self, token: NewToken, now: DateTime<Utc>) -> StoreResult<()> {
        tx!(self, |c| agents::create_token(c, &token, now))
    }

    async fn enroll(&mut self, token_hash: &str, agent: NewAgent, now: DateTime<Utc>) -> StoreResult<Enrolled> {
        tx!(self, |c| agents::enroll(c, token_hash, &agent, now))
    }

    async fn heartbeat(
        &mut self,
        agent_id: &str,
        agent_version: &str,
        clock_skew: Option<chrono::Duration>,
        now: DateTime<Utc>,
    ) -> StoreResult<HeartbeatPrior> {
        tx!(self, |c| agents::heartbeat(c, agent_id, agent_version, clock_skew, now))
    }

    async fn ingest_report(&mut self, agent_id: &str, report: IncomingReport<'_>) -> StoreResult<Ingested> {
        tx!(self, |c| reports::ingest(c, agent_id, report))
    }

    async fn replace_findings(
        &mut self,
        agent_id: &str,
        findings: &[Finding],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<FindingChange>> {
        tx!(self, |c| findings::replace(c, agent_id, findings, now))
    }

    async fn add_user(
        &mut self,
        username: &str,
        password_hash: &str,
        role: Role,
        practice: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<i64> {
        tx!(self, |c| auth::add_user(
            c,
            username,
            password_hash,
            role,
            practice,
            now
        ))
    }

    async fn set_password(&mut self, username: &str, password_hash: &str) -> StoreResult<()> {
        tx!(self, |c| auth::set_password(c, username, password_hash))
    }

    async fn create_api_key(
        &mut self,
        key_hash: &str,
        role: Role,
        practice: Option<&str>,
        label: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        tx!(self, |c| auth::create_api_key(c, key_hash, role, practice, label, now))
    }

    async fn audit(&mut self, actor: &str, action: &str, detail: &str, now: DateTime<Utc>) -> StoreResult<()> {
        tx!(self, |c| audit::append(c, actor, action, detail, now))
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
        tx!(self, |c| policy::set(
            c,
            practice,
            site,
            profile,
            overrides_toml,
            actor,
            now
        ))
    }

    // --- Reliable delivery and central agent configuration ---

    async fn deliver_report(&mut self, agent_id: &str, report: IncomingReport<'_>) -> StoreResult<DeliveryOutcome> {
        tx!(self, |c| delivery::deliver(c, agent_id, report))
    }

    async fn record_integrity(
        &mut self,
        agent_id: &str,
        problems: &[crate::delivery::IntegrityProblem],
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        tx!(self, |c| async {
            delivery::record(c, agent_id, problems, now).await?;
            delivery::journal_observation(c, agent_id, now).await
        })
    }

    async fn agent_reported_state(&mut self, agent_id: &str, state: &AgentReportedState) -> StoreResult<()> {
        tx!(self, |c| delivery::reported_state(c, agent_id, state))
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
        tx!(self, |c| agent_config::set(c, practice, site, toml, source, actor, now))
    }

    // --- Security: revocation and API-key expiry (issue 15) ---

    async fn revoke_agent(&mut self, agent_id: &str, now: DateTime<Utc>) -> StoreResult<bool> {
        tx!(self, |c| security::revoke_agent(c, agent_id, now))
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
        tx!(self, |c| security::create_api_key(
            c, key_hash, role, practice, label, expires_at, now
        ))
    }

    async fn revoke_api_key(&mut self, id: i64, now: DateTime<Utc>) -> StoreResult<bool> {
        tx!(self, |c| security::revoke_api_key(c, id, now))
    }

    async fn remove_user(&mut self, username: &str) -> StoreResult<()> {
        tx!(self, |c| security::remove_user(c, username))
    }

    // --- Alerting (issue 12) ---

    async fn active_incident(&mut self, source: &str, subject: &str) -> StoreResult<Option<Incident>> {
        tx!(self, |c| alerting::active(c, source, subject))
    }

    async fn incident_by_id(&mut self, id: i64) -> StoreResult<Option<Incident>> {
        tx!(self, |c| alerting::by_id(c, id))
    }

    async fn active_incidents(&mut self) -> StoreResult<Vec<Incident>> {
        tx!(self, |c| alerting::all_active(c))
    }

    async fn open_incident(&mut self, new: &NewIncident, now: DateTime<Utc>) -> StoreResult<Incident> {
        tx!(self, |c| alerting::open(c, new, now))
    }

    async fn save_incident(&mut self, incident: &Incident) -> StoreResult<()> {
        tx!(self, |c| alerting::save(c, incident))
    }

    async fn incident_event(
        &mut self,
        incident_id: i64,
        event: &NewIncidentEvent,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        tx!(self, |c| alerting::event(c, incident_id, event, now))
    }

    async fn enqueue_notification(&mut self, item: &NewOutboxItem, now: DateTime<Utc>) -> StoreResult<i64> {
        tx!(self, |c| alerting::enqueue(c, item, now))
    }

    async fn due_notifications(&mut self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<OutboxItem>> {
        tx!(self, |c| alerting::due(c, now, limit))
    }

    async fn incident_notifications(&mut self, incident_id: i64) -> StoreResult<Vec<OutboxItem>> {
        tx!(self, |c| alerting::of_incident(c, incident_id))
    }

    async fn save_notification(&mut self, item: &OutboxItem) -> StoreResult<()> {
        tx!(self, |c| alerting::save_item(c, item))
    }

    async fn alert_window(&mut self, source: &str, subject: &str) -> StoreResult<Option<AlertWindow>> {
        tx!(self, |c| alerting::window(c, source, subject))
    }

    async fn save_alert_window(&mut self, window: &AlertWindow) -> StoreResult<()> {
        tx!(self, |c| alerting::save_window(c, window))
    }

    async fn claim_lease(
        &mut self,
        name: &str,
        holder: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        tx!(self, |c| alerting::claim_lease(c, name, holder, until, now))
    }

    // --- Compliance reports (issue 14) ---
    async fn record_issued_report(&mut self, report: &IssuedReport) -> StoreResult<()> {
        tx!(self, |c| issued::record(c, report))
    }

    async fn record_report_delivery(&mut self, delivery: &ReportDelivery) -> StoreResult<()> {
        tx!(self, |c| issued::record_delivery(c, delivery))
    }

    async fn commit(mut self: Box<Self>) -> StoreResult<()> {
        if self.failed {
            return Err(aborted());
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(aborted());
        };
        // A failed COMMIT leaves the guard marked in a transaction: dropping rolls it back.
        conn.batch_execute("COMMIT")
            .await
            .map_err(|e| codec::db_in(e, "committing a unit of work"))?;
        conn.set_in_tx(false);
        Ok(())
    }

    // --- Tamper acknowledgement (core, issue 11) ---

    async fn note_tampers(&mut self, agent_id: &str, seen: &[TamperSeen], now: DateTime<Utc>) -> StoreResult<()> {
        tx!(self, |c| tamper::note(c, agent_id, seen, now))
    }

    async fn acknowledge_tamper(&mut self, agent_id: &str, tamper_id: &str, ack: &TamperAck) -> StoreResult<TamperRow> {
        tx!(self, |c| tamper::acknowledge(c, agent_id, tamper_id, ack))
    }

    // --- Runtime silences (alerting, issue 12) ---

    async fn create_silence(&mut self, new: &NewSilence, now: DateTime<Utc>) -> StoreResult<StoredSilence> {
        tx!(self, |c| silences::create(c, new, now))
    }

    async fn save_silence(&mut self, silence: &StoredSilence) -> StoreResult<()> {
        tx!(self, |c| silences::save(c, silence))
    }

    async fn silences(&mut self, query: &SilenceQuery) -> StoreResult<Vec<StoredSilence>> {
        tx!(self, |c| silences::list(c, query))
    }

    // --- Retention (issue 17) ---
    async fn observations_to_roll_up(
        &mut self,
        before: DateTime<Utc>,
        after: (DateTime<Utc>, i64),
        limit: u32,
    ) -> StoreResult<Vec<RawObservation>> {
        tx!(self, |c| retention::observations_to_roll_up(c, before, after, limit))
    }

    async fn hourly_rollups_before(&mut self, before: DateTime<Utc>, limit: u32) -> StoreResult<Vec<StoredRollup>> {
        tx!(self, |c| retention::hourly_before(c, before, limit))
    }

    async fn merge_rollups(&mut self, rollups: &[Rollup]) -> StoreResult<()> {
        tx!(self, |c| retention::merge(c, rollups))
    }

    async fn remove_observations(&mut self, ids: &[i64]) -> StoreResult<u64> {
        tx!(self, |c| retention::remove_observations(c, ids))
    }

    async fn remove_rollups(&mut self, ids: &[i64]) -> StoreResult<u64> {
        tx!(self, |c| retention::remove_rollups(c, ids))
    }

    async fn prune_records(
        &mut self,
        kind: RecordKind,
        before: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<TableRows>> {
        tx!(self, |c| retention::prune(c, kind, before, limit))
    }
}

#[async_trait]
impl Store for PgStore {
    async fn begin(&self) -> StoreResult<Box<dyn Tx>> {
        Ok(Box::new(self.begin_unit(None).await?))
    }

    // One agent's units of work (see the module documentation): beside other agents' units.
    async fn begin_for_agent(&self, agent_id: &str) -> StoreResult<Box<dyn Tx>> {
        Ok(Box::new(self.begin_unit(Some(agent_id)).await?))
    }

    /// The four reads of an evaluation on one connection, pipelined (one round trip once its
    /// statements are prepared).
    async fn evaluation_input(&self, agent_id: &str) -> StoreResult<EvaluationInput> {
        let c = self.client().await?;
        let scope = Scope {
            role: Role::Admin,
            practice_id: None,
        };
        let (agent, observations, policy_settings, tampers) = tokio::try_join!(
            agents::one(&c, &scope, agent_id),
            reports::latest(&c, agent_id, None),
            policy::for_agent(&c, agent_id),
            tamper::list(&c, agent_id),
        )?;
        Ok(EvaluationInput {
            os: agent.os,
            clock_skew_ms: agent.clock_skew_ms,
            observations,
            policy_settings,
            tampers,
        })
    }

    async fn agent_auth(&self, agent_id: &str) -> StoreResult<Option<AgentAuth>> {
        read!(self, |c| agents::auth(c, agent_id))
    }

    async fn practices(&self, scope: &Scope) -> StoreResult<Vec<PracticeRow>> {
        read!(self, |c| agents::practices(c, scope))
    }

    async fn agents(&self, scope: &Scope) -> StoreResult<Vec<AgentRow>> {
        read!(self, |c| agents::list(c, scope))
    }

    async fn agent(&self, scope: &Scope, agent_id: &str) -> StoreResult<AgentRow> {
        read!(self, |c| agents::one(c, scope, agent_id))
    }

    async fn latest_observations(
        &self,
        scope: &Scope,
        agent_id: &str,
        kind: Option<&str>,
    ) -> StoreResult<Vec<StoredObservation>> {
        read!(self, |c| async {
            agents::check_visible(c, scope, agent_id).await?;
            reports::latest(c, agent_id, kind).await
        })
    }

    async fn findings(&self, scope: &Scope, agent_id: &str) -> StoreResult<Vec<FindingRow>> {
        read!(self, |c| async {
            agents::check_visible(c, scope, agent_id).await?;
            findings::current(c, agent_id).await
        })
    }

    async fn findings_at(&self, scope: &Scope, agent_id: &str, at: DateTime<Utc>) -> StoreResult<Vec<FindingRow>> {
        read!(self, |c| async {
            agents::check_visible(c, scope, agent_id).await?;
            findings::as_at(c, agent_id, at).await
        })
    }

    async fn finding_changes(&self, scope: &Scope, query: &ChangeQuery) -> StoreResult<Vec<FindingChange>> {
        read!(self, |c| async {
            if let Some(agent_id) = &query.agent_id {
                agents::check_visible(c, scope, agent_id).await?;
            }
            findings::changes(c, scope, query).await
        })
    }

    async fn report_count(&self) -> StoreResult<u64> {
        read!(self, |c| reports::count(c))
    }

    async fn user_count(&self) -> StoreResult<u64> {
        read!(self, |c| auth::user_count(c))
    }

    async fn user(&self, username: &str) -> StoreResult<Option<UserRow>> {
        read!(self, |c| auth::user(c, username))
    }

    async fn create_session(
        &self,
        token_hash: &str,
        user_id: i64,
        csrf_token: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        read!(self, |c| auth::create_session(
            c, token_hash, user_id, csrf_token, now, expires_at
        ))
    }

    async fn session(&self, token_hash: &str, now: DateTime<Utc>) -> StoreResult<Option<SessionRow>> {
        read!(self, |c| auth::session(c, token_hash, now))
    }

    async fn delete_session(&self, token_hash: &str) -> StoreResult<()> {
        read!(self, |c| auth::delete_session(c, token_hash))
    }

    async fn api_key(&self, key_hash: &str) -> StoreResult<Option<Scope>> {
        read!(self, |c| auth::api_key(c, key_hash))
    }

    async fn audit_entries(&self, limit: u32) -> StoreResult<Vec<AuditEntry>> {
        read!(self, |c| audit::entries(c, limit))
    }

    async fn policy_settings(&self, practice: &str, site: Option<&str>) -> StoreResult<Option<PolicySettingsRow>> {
        read!(self, |c| policy::get(c, practice, site))
    }

    async fn policy_settings_for_agent(&self, agent_id: &str) -> StoreResult<AgentPolicySettings> {
        read!(self, |c| policy::for_agent(c, agent_id))
    }

    // --- Reliable delivery and central agent configuration ---

    async fn delivery_status(&self, scope: &Scope, agent_id: &str) -> StoreResult<DeliveryStatus> {
        read!(self, |c| async {
            agents::check_visible(c, scope, agent_id).await?;
            delivery::status(c, agent_id).await
        })
    }

    async fn agent_config(&self, practice: &str, site: Option<&str>) -> StoreResult<Option<AgentConfigRow>> {
        read!(self, |c| agent_config::current(c, practice, site))
    }

    async fn agent_config_history(&self, practice: &str, site: Option<&str>) -> StoreResult<Vec<AgentConfigRow>> {
        read!(self, |c| agent_config::history(c, practice, site))
    }

    async fn site_agent_configs(&self, practice: &str) -> StoreResult<Vec<AgentConfigRow>> {
        read!(self, |c| agent_config::of_sites(c, practice))
    }

    async fn agent_config_sources(&self, agent_id: &str) -> StoreResult<AgentConfigSources> {
        read!(self, |c| agent_config::sources(c, agent_id))
    }

    // --- Technician dashboard (issue 13) ---
    async fn finding_briefs(&self, scope: &Scope) -> StoreResult<Vec<FindingBrief>> {
        read!(self, |c| dashboard::briefs(c, scope))
    }

    async fn observation_history(
        &self,
        scope: &Scope,
        practice_id: i64,
        kind: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<StoredObservation>> {
        read!(self, |c| dashboard::history(c, scope, practice_id, kind, from, to))
    }

    async fn users(&self) -> StoreResult<Vec<UserSummary>> {
        read!(self, |c| dashboard::users(c))
    }

    // --- Security: revocation and API-key expiry (issue 15) ---

    async fn api_keys(&self) -> StoreResult<Vec<ApiKeyRow>> {
        read!(self, |c| security::api_keys(c))
    }

    async fn api_key_valid(&self, key_hash: &str, now: DateTime<Utc>) -> StoreResult<Option<ApiKeyGrant>> {
        read!(self, |c| security::api_key_valid(c, key_hash, now))
    }

    async fn admin_count(&self) -> StoreResult<u64> {
        read!(self, |c| security::admin_count(c))
    }

    // --- Alerting (issue 12) ---

    async fn incidents(&self, scope: &Scope, query: &IncidentQuery) -> StoreResult<Vec<Incident>> {
        read!(self, |c| alerting::list(c, scope, query))
    }

    async fn incident(&self, scope: &Scope, id: i64) -> StoreResult<IncidentDetail> {
        read!(self, |c| alerting::detail(c, scope, id))
    }

    // --- Compliance reports (issue 14) ---
    async fn agent_observation_history(
        &self,
        agent_id: &str,
        kinds: &[&str],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<StoredObservation>> {
        let kinds: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
        // Retention (issue 17): raw rows and the rollups of removed ones, in one snapshot, so
        // that a run moving rows between the two cannot show a row twice or not at all.
        let mut pooled = self.client().await?;
        let (raw, rolled) = pooled
            .read_snapshot(|c| async move {
                let raw = issued::observation_history(c, agent_id, &kinds, from, to).await?;
                let mut rolled = Vec::new();
                for kind in &kinds {
                    rolled.extend(retention::history_rollups(c, agent_id, kind, from, to).await?);
                }
                Ok((raw, rolled))
            })
            .await?;
        crate::store::rollup::merge_history(raw, &rolled, from, to)
    }

    // --- Retention (issue 17) ---
    async fn retention_preview(&self, cutoffs: &RetentionCutoffs) -> StoreResult<Vec<TableRows>> {
        let mut pooled = self.client().await?;
        pooled.read_snapshot(|c| retention::preview(c, cutoffs)).await
    }

    async fn storage(&self) -> StoreResult<StorageReport> {
        read!(self, |c| retention::storage(c))
    }

    async fn report_receipts(
        &self,
        agent_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<DateTime<Utc>>> {
        read!(self, |c| issued::receipts(c, agent_id, from, to))
    }

    async fn issued_reports_by_file_hash(&self, file_sha256: &str) -> StoreResult<Vec<IssuedReport>> {
        read!(self, |c| issued::by_file_hash(c, file_sha256))
    }

    async fn issued_report(&self, report_id: &str) -> StoreResult<Option<IssuedReport>> {
        read!(self, |c| issued::by_id(c, report_id))
    }

    async fn issued_reports_of_practice(&self, practice_id: i64) -> StoreResult<Vec<IssuedReport>> {
        read!(self, |c| issued::of_practice(c, practice_id))
    }

    async fn report_deliveries(&self, schedule: &str) -> StoreResult<Vec<ReportDelivery>> {
        read!(self, |c| issued::deliveries(c, schedule))
    }

    // --- Tamper acknowledgement (core, issue 11) ---

    async fn tampers(&self, scope: &Scope, agent_id: &str) -> StoreResult<Vec<TamperRow>> {
        read!(self, |c| async {
            agents::check_visible(c, scope, agent_id).await?;
            tamper::list(c, agent_id).await
        })
    }

    // Runtime silences (alerting, issue 12).
    async fn silences(&self, query: &SilenceQuery) -> StoreResult<Vec<StoredSilence>> {
        read!(self, |c| silences::list(c, query))
    }

    // Alerting (issue 12): the engine's tick.
    async fn agent_presence(&self) -> StoreResult<Vec<AgentPresence>> {
        read!(self, |c| agents::presence(c))
    }

    // Dashboard counts (issue 13): the tallies the triggers of migration 0011 keep.
    async fn rule_tallies(&self, scope: &Scope) -> StoreResult<Vec<crate::store::RuleTally>> {
        read!(self, |c| dashboard::rule_tallies(c, scope))
    }
}
