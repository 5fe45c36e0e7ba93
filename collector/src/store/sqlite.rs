//! The embedded default store: one SQLite file, WAL mode, versioned migrations.
//!
//! One connection behind a mutex, used on the blocking pool: SQLite allows one writer at a
//! time anyway, and WAL lets readers of other processes (the admin subcommands) work while
//! the server runs. Times are stored as integer milliseconds since the epoch (UTC).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rounds_policies::{Finding, Status};
use rounds_protocol::{Observation, ObservationStatus};
use rusqlite::{Connection, OptionalExtension, params};
use serde::de::DeserializeOwned;

use super::*;

/// Versioned migrations; index + 1 is the schema version. Never edit a released one: append.
const MIGRATIONS: &[&str] = &[
    // 1: practices, sites, agents, reports and observations, users, sessions, API keys, audit log.
    r#"
CREATE TABLE practices (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
CREATE TABLE sites (
    id INTEGER PRIMARY KEY,
    practice_id INTEGER NOT NULL REFERENCES practices(id),
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (practice_id, name)
);
CREATE TABLE enrollment_tokens (
    id INTEGER PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    site_id INTEGER NOT NULL REFERENCES sites(id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER,
    used_by_agent TEXT
);
CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    site_id INTEGER NOT NULL REFERENCES sites(id),
    hostname TEXT NOT NULL,
    os TEXT NOT NULL,
    agent_version TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    enrolled_at INTEGER NOT NULL,
    last_seen_at INTEGER,
    last_report_at INTEGER,
    last_sequence INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE reports (
    agent_id TEXT NOT NULL REFERENCES agents(id),
    sequence INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    observation_count INTEGER NOT NULL,
    PRIMARY KEY (agent_id, sequence)
);
CREATE TABLE observations (
    id INTEGER PRIMARY KEY,
    agent_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    observed_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    data TEXT NOT NULL,
    error TEXT
);
CREATE INDEX observations_by_agent ON observations (agent_id, kind, observed_at);
CREATE TABLE latest_observations (
    agent_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    observed_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    data TEXT NOT NULL,
    error TEXT,
    PRIMARY KEY (agent_id, kind, subject)
);
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    practice_id INTEGER REFERENCES practices(id),
    created_at INTEGER NOT NULL
);
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    csrf_token TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    practice_id INTEGER REFERENCES practices(id),
    label TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
"#,
    // 2: the current finding per agent and rule. `citations`, `evidence` and `exception` are
    // JSON; `status_since` is when the rule last changed status on this agent.
    r#"
CREATE TABLE findings (
    agent_id TEXT NOT NULL REFERENCES agents(id),
    rule TEXT NOT NULL,
    status TEXT NOT NULL,
    severity TEXT NOT NULL,
    title TEXT NOT NULL,
    citations TEXT NOT NULL,
    evidence TEXT NOT NULL,
    message TEXT NOT NULL,
    remediation TEXT,
    exception TEXT,
    evaluated_at INTEGER NOT NULL,
    status_since INTEGER NOT NULL,
    PRIMARY KEY (agent_id, rule)
);
"#,
    // 3: policy settings per practice (`site_id` NULL) and per site: the pack profile (practice
    // level only) and the overrides TOML text, as set by `rounds-collector policy set`.
    r#"
CREATE TABLE policy_settings (
    id INTEGER PRIMARY KEY,
    scope TEXT NOT NULL CHECK (scope IN ('practice', 'site')),
    practice_id INTEGER NOT NULL REFERENCES practices(id),
    site_id INTEGER REFERENCES sites(id),
    profile TEXT,
    overrides_toml TEXT,
    updated_at INTEGER NOT NULL,
    updated_by TEXT NOT NULL,
    CHECK ((scope = 'practice' AND site_id IS NULL)
        OR (scope = 'site' AND site_id IS NOT NULL AND profile IS NULL))
);
CREATE UNIQUE INDEX policy_settings_per_practice ON policy_settings (practice_id) WHERE site_id IS NULL;
CREATE UNIQUE INDEX policy_settings_per_site ON policy_settings (site_id) WHERE site_id IS NOT NULL;
"#,
];

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(v).unwrap_or_default()
}

fn status_str(s: ObservationStatus) -> &'static str {
    match s {
        ObservationStatus::Ok => "ok",
        ObservationStatus::Error => "error",
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let conn =
            Connection::open(path).map_err(|e| StoreError::Database(format!("cannot open {}: {e}", path.display())))?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(db)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(db)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
        let store = SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_path_buf(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> StoreResult<u32> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(db)
    }

    fn migrate(&self) -> StoreResult<()> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db)?;
        let version: usize = tx.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(db)?;
        if version > MIGRATIONS.len() {
            return Err(StoreError::Database(format!(
                "database {} has schema version {version}, newer than this collector ({}); upgrade the collector",
                self.path.display(),
                MIGRATIONS.len()
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            tx.execute_batch(sql)
                .map_err(|e| StoreError::Database(format!("migration {}: {e}", i + 1)))?;
        }
        tx.pragma_update(None, "user_version", MIGRATIONS.len()).map_err(db)?;
        tx.commit().map_err(db)
    }

    async fn with<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Database(format!("database task failed: {e}")))?
    }
}

fn ensure_practice(conn: &Connection, name: &str, now: i64) -> StoreResult<i64> {
    conn.execute(
        "INSERT INTO practices (name, created_at) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
        params![name, now],
    )
    .map_err(db)?;
    conn.query_row("SELECT id FROM practices WHERE name = ?1", [name], |r| r.get(0))
        .map_err(db)
}

fn ensure_site(conn: &Connection, practice: &str, site: &str, now: i64) -> StoreResult<i64> {
    let pid = ensure_practice(conn, practice, now)?;
    conn.execute(
        "INSERT INTO sites (practice_id, name, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (practice_id, name) DO NOTHING",
        params![pid, site, now],
    )
    .map_err(db)?;
    conn.query_row(
        "SELECT id FROM sites WHERE practice_id = ?1 AND name = ?2",
        params![pid, site],
        |r| r.get(0),
    )
    .map_err(db)
}

fn practice_id(conn: &Connection, name: &str) -> StoreResult<i64> {
    conn.query_row("SELECT id FROM practices WHERE name = ?1", [name], |r| r.get(0))
        .optional()
        .map_err(db)?
        .ok_or_else(|| StoreError::NotFound {
            what: "practice",
            name: name.to_string(),
        })
}

/// The id of a practice and, when `site` is given, of that site of it. `NotFound` for either.
fn practice_and_site(conn: &Connection, practice: &str, site: Option<&str>) -> StoreResult<(i64, Option<i64>)> {
    let pid = practice_id(conn, practice)?;
    let Some(site) = site else {
        return Ok((pid, None));
    };
    let sid: Option<i64> = conn
        .query_row(
            "SELECT id FROM sites WHERE practice_id = ?1 AND name = ?2",
            params![pid, site],
            |r| r.get(0),
        )
        .optional()
        .map_err(db)?;
    let sid = sid.ok_or_else(|| StoreError::NotFound {
        what: "site",
        name: format!("{practice} / {site}"),
    })?;
    Ok((pid, Some(sid)))
}

/// Columns of an [`AgentRow`], read by [`agent_row`]. The finding counts are correlated
/// subqueries on `findings`' primary key, so reading one agent never aggregates all agents'
/// findings.
const AGENT_COLUMNS: &str = "a.id, a.hostname, a.os, a.agent_version, p.id, p.name, s.name, a.enrolled_at,
    a.last_seen_at, a.last_report_at, a.last_sequence,
    (SELECT COUNT(*) FROM findings f WHERE f.agent_id = a.id AND f.status = 'pass'),
    (SELECT COUNT(*) FROM findings f WHERE f.agent_id = a.id AND f.status = 'fail'),
    (SELECT COUNT(*) FROM findings f WHERE f.agent_id = a.id AND f.status = 'error'),
    (SELECT COUNT(*) FROM findings f WHERE f.agent_id = a.id AND f.status = 'not_applicable'),
    (SELECT COUNT(*) FROM findings f
      WHERE f.agent_id = a.id AND f.exception IS NOT NULL AND f.status IN ('fail', 'error')),
    NULLIF(TRIM(COALESCE(json_extract(inv.data, '$.os_name'), '') || ' ' || COALESCE(json_extract(inv.data, '$.os_version'), '')), '')";

/// Agents with their site, practice and newest inventory, for `SELECT {AGENT_COLUMNS} FROM {AGENT_TABLES}`.
const AGENT_TABLES: &str = "agents a JOIN sites s ON s.id = a.site_id JOIN practices p ON p.id = s.practice_id
    LEFT JOIN latest_observations inv
      ON inv.agent_id = a.id AND inv.kind = 'inventory' AND inv.subject = 'host' AND inv.status = 'ok'";

fn agent_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AgentRow> {
    let count = |i: usize| -> rusqlite::Result<u32> { Ok(u32::try_from(r.get::<_, i64>(i)?).unwrap_or(0)) };
    Ok(AgentRow {
        agent_id: r.get(0)?,
        hostname: r.get(1)?,
        os: r.get(2)?,
        os_description: r.get(16)?,
        agent_version: r.get(3)?,
        practice_id: r.get(4)?,
        practice: r.get(5)?,
        site: r.get(6)?,
        enrolled_at: from_ms(r.get(7)?),
        last_seen_at: r.get::<_, Option<i64>>(8)?.map(from_ms),
        last_report_at: r.get::<_, Option<i64>>(9)?.map(from_ms),
        last_sequence: r.get::<_, i64>(10)?.max(0) as u64,
        findings: FindingCounts {
            pass: count(11)?,
            fail: count(12)?,
            error: count(13)?,
            not_applicable: count(14)?,
            accepted: count(15)?,
        },
    })
}

/// `NotFound` unless the agent exists and `scope` sees its practice.
fn check_visible(conn: &Connection, scope: &Scope, agent_id: &str) -> StoreResult<()> {
    let practice: Option<i64> = conn
        .query_row(
            "SELECT s.practice_id FROM agents a JOIN sites s ON s.id = a.site_id WHERE a.id = ?1",
            [agent_id],
            |r| r.get(0),
        )
        .optional()
        .map_err(db)?;
    match practice {
        Some(p) if scope.sees(p) => Ok(()),
        _ => Err(StoreError::NotFound {
            what: "agent",
            name: agent_id.to_string(),
        }),
    }
}

fn to_json<T: Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Database(format!("cannot encode json: {e}")))
}

fn from_json<T: DeserializeOwned>(what: &str, text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Database(format!("stored {what} is not valid: {e}")))
}

/// A snake_case enum name as stored, read back through its serde name.
fn from_name<T: DeserializeOwned>(what: &str, name: &str) -> StoreResult<T> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|_| StoreError::Database(format!("stored {what} `{name}` is not known")))
}

fn scope_clause(scope: &Scope) -> (String, Option<i64>) {
    match scope.role {
        Role::PracticeManager => ("p.id = ?1".to_string(), Some(scope.practice_id.unwrap_or(-1))),
        Role::Admin | Role::Technician => ("(?1 IS NULL OR 1 = 1)".to_string(), None),
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ensure_practice(&self, name: &str) -> StoreResult<i64> {
        let name = name.to_string();
        self.with(move |c| ensure_practice(c, &name, ms(Utc::now()))).await
    }

    async fn ensure_site(&self, practice: &str, site: &str) -> StoreResult<i64> {
        let (practice, site) = (practice.to_string(), site.to_string());
        self.with(move |c| ensure_site(c, &practice, &site, ms(Utc::now())))
            .await
    }

    async fn create_token(&self, token: NewToken) -> StoreResult<()> {
        self.with(move |c| {
            let tx = c.transaction().map_err(db)?;
            let now = ms(Utc::now());
            let site_id = ensure_site(&tx, &token.practice, &token.site, now)?;
            tx.execute(
                "INSERT INTO enrollment_tokens (token_hash, site_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![token.token_hash, site_id, now, ms(token.expires_at)],
            )
            .map_err(db)?;
            tx.commit().map_err(db)
        })
        .await
    }

    async fn enroll(&self, token_hash: &str, agent: NewAgent, now: DateTime<Utc>) -> StoreResult<Enrolled> {
        let token_hash = token_hash.to_string();
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db)?;
            let row: Option<(i64, i64, i64, Option<i64>)> = tx
                .query_row(
                    "SELECT id, site_id, expires_at, used_at FROM enrollment_tokens WHERE token_hash = ?1",
                    [&token_hash],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()
                .map_err(db)?;
            let Some((token_id, site_id, expires_at, used_at)) = row else {
                return Err(StoreError::Token(TokenRefusal::Unknown));
            };
            if used_at.is_some() {
                return Err(StoreError::Token(TokenRefusal::AlreadyUsed));
            }
            if expires_at <= ms(now) {
                return Err(StoreError::Token(TokenRefusal::Expired));
            }
            tx.execute(
                "UPDATE enrollment_tokens SET used_at = ?1, used_by_agent = ?2 WHERE id = ?3",
                params![ms(now), agent.agent_id, token_id],
            )
            .map_err(db)?;
            tx.execute(
                "INSERT INTO agents (id, site_id, hostname, os, agent_version, secret_hash, enrolled_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    agent.agent_id,
                    site_id,
                    agent.hostname,
                    agent.os,
                    agent.agent_version,
                    agent.secret_hash,
                    ms(now)
                ],
            )
            .map_err(db)?;
            let enrolled = tx
                .query_row(
                    "SELECT p.name, s.name FROM sites s JOIN practices p ON p.id = s.practice_id WHERE s.id = ?1",
                    [site_id],
                    |r| {
                        Ok(Enrolled {
                            practice: r.get(0)?,
                            site: r.get(1)?,
                        })
                    },
                )
                .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(enrolled)
        })
        .await
    }

    async fn agent_auth(&self, agent_id: &str) -> StoreResult<Option<AgentAuth>> {
        let agent_id = agent_id.to_string();
        self.with(move |c| {
            c.query_row(
                "SELECT id, secret_hash, revoked FROM agents WHERE id = ?1",
                [&agent_id],
                |r| {
                    Ok(AgentAuth {
                        agent_id: r.get(0)?,
                        secret_hash: r.get(1)?,
                        revoked: r.get::<_, i64>(2)? != 0,
                    })
                },
            )
            .optional()
            .map_err(db)
        })
        .await
    }

    async fn heartbeat(&self, agent_id: &str, agent_version: &str, now: DateTime<Utc>) -> StoreResult<()> {
        let (agent_id, agent_version) = (agent_id.to_string(), agent_version.to_string());
        self.with(move |c| {
            let n = c
                .execute(
                    "UPDATE agents SET last_seen_at = MAX(COALESCE(last_seen_at, 0), ?1), agent_version = ?2 WHERE id = ?3",
                    params![ms(now), agent_version, agent_id],
                )
                .map_err(db)?;
            if n == 0 {
                return Err(StoreError::NotFound { what: "agent", name: agent_id });
            }
            Ok(())
        })
        .await
    }

    async fn ingest_report(
        &self,
        agent_id: &str,
        sequence: u64,
        created_at: DateTime<Utc>,
        observations: &[Observation],
        now: DateTime<Utc>,
    ) -> StoreResult<Ingested> {
        let agent_id = agent_id.to_string();
        let observations = observations.to_vec();
        self.with(move |c| {
            let seq = i64::try_from(sequence).map_err(|_| StoreError::Database("sequence out of range".into()))?;
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(db)?;
            let inserted = tx
                .execute(
                    "INSERT INTO reports (agent_id, sequence, created_at, received_at, observation_count)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (agent_id, sequence) DO NOTHING",
                    params![agent_id, seq, ms(created_at), ms(now), observations.len() as i64],
                )
                .map_err(db)?;
            if inserted == 0 {
                return Ok(Ingested::Duplicate);
            }
            {
                let mut ins = tx
                    .prepare_cached(
                        "INSERT INTO observations (agent_id, sequence, kind, subject, observed_at, status, data, error)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    )
                    .map_err(db)?;
                let mut latest = tx
                    .prepare_cached(
                        "INSERT INTO latest_observations (agent_id, sequence, kind, subject, observed_at, status, data, error)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                         ON CONFLICT (agent_id, kind, subject) DO UPDATE SET
                           sequence = excluded.sequence, observed_at = excluded.observed_at, status = excluded.status,
                           data = excluded.data, error = excluded.error
                         WHERE excluded.observed_at >= latest_observations.observed_at",
                    )
                    .map_err(db)?;
                for o in &observations {
                    let data = o.data.to_string();
                    let p = params![
                        agent_id,
                        seq,
                        o.kind,
                        o.subject,
                        ms(o.observed_at),
                        status_str(o.status),
                        data,
                        o.error
                    ];
                    ins.execute(p).map_err(db)?;
                    latest.execute(p).map_err(db)?;
                }
            }
            tx.execute(
                "UPDATE agents SET last_seen_at = MAX(COALESCE(last_seen_at, 0), ?1), last_report_at = ?1,
                 last_sequence = MAX(last_sequence, ?2) WHERE id = ?3",
                params![ms(now), seq, agent_id],
            )
            .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(Ingested::Stored)
        })
        .await
    }

    async fn practices(&self, scope: &Scope) -> StoreResult<Vec<PracticeRow>> {
        let scope = scope.clone();
        self.with(move |c| {
            let (clause, arg) = scope_clause(&scope);
            let sql = format!(
                "SELECT p.id, p.name, p.created_at, s.name FROM practices p LEFT JOIN sites s ON s.practice_id = p.id
                 WHERE {clause} ORDER BY p.name, s.name"
            );
            let mut stmt = c.prepare(&sql).map_err(db)?;
            let rows = stmt
                .query_map(params![arg], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                })
                .map_err(db)?;
            let mut out: Vec<PracticeRow> = Vec::new();
            for row in rows {
                let (id, name, created, site) = row.map_err(db)?;
                if out.last().map(|p| p.id) != Some(id) {
                    out.push(PracticeRow {
                        id,
                        name,
                        sites: Vec::new(),
                        created_at: from_ms(created),
                    });
                }
                if let (Some(site), Some(p)) = (site, out.last_mut()) {
                    p.sites.push(site);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn agents(&self, scope: &Scope) -> StoreResult<Vec<AgentRow>> {
        let scope = scope.clone();
        self.with(move |c| {
            let (clause, arg) = scope_clause(&scope);
            let sql = format!(
                "SELECT {AGENT_COLUMNS} FROM {AGENT_TABLES} WHERE {clause} ORDER BY p.name, s.name, a.hostname, a.id"
            );
            let mut stmt = c.prepare(&sql).map_err(db)?;
            let rows = stmt.query_map(params![arg], agent_row).map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
        .await
    }

    async fn agent(&self, scope: &Scope, agent_id: &str) -> StoreResult<AgentRow> {
        let scope = scope.clone();
        let agent_id = agent_id.to_string();
        self.with(move |c| {
            check_visible(c, &scope, &agent_id)?;
            c.query_row(
                &format!("SELECT {AGENT_COLUMNS} FROM {AGENT_TABLES} WHERE a.id = ?1"),
                [&agent_id],
                agent_row,
            )
            .map_err(db)
        })
        .await
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
        self.with(move |c| {
            check_visible(c, &scope, &agent_id)?;
            let mut stmt = c
                .prepare(
                    "SELECT sequence, kind, subject, observed_at, status, data, error FROM latest_observations
                     WHERE agent_id = ?1 AND (?2 IS NULL OR kind = ?2) ORDER BY kind, subject",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map(params![agent_id, kind], |r| {
                    let data: String = r.get(5)?;
                    let status: String = r.get(4)?;
                    Ok(StoredObservation {
                        agent_id: agent_id.clone(),
                        sequence: r.get::<_, i64>(0)?.max(0) as u64,
                        observation: Observation {
                            kind: r.get(1)?,
                            subject: r.get(2)?,
                            observed_at: from_ms(r.get(3)?),
                            status: if status == "ok" {
                                ObservationStatus::Ok
                            } else {
                                ObservationStatus::Error
                            },
                            data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
                            error: r.get(6)?,
                        },
                    })
                })
                .map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
        .await
    }

    async fn replace_findings(&self, agent_id: &str, findings: &[Finding], now: DateTime<Utc>) -> StoreResult<()> {
        let agent_id = agent_id.to_string();
        let findings = findings.to_vec();
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db)?;
            let exists: Option<String> = tx
                .query_row("SELECT id FROM agents WHERE id = ?1", [&agent_id], |r| r.get(0))
                .optional()
                .map_err(db)?;
            if exists.is_none() {
                return Err(StoreError::NotFound {
                    what: "agent",
                    name: agent_id,
                });
            }
            let previous: std::collections::HashMap<String, (String, i64)> = {
                let mut stmt = tx
                    .prepare("SELECT rule, status, status_since FROM findings WHERE agent_id = ?1")
                    .map_err(db)?;
                let rows = stmt
                    .query_map([&agent_id], |r| Ok((r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?))))
                    .map_err(db)?;
                rows.collect::<Result<_, _>>().map_err(db)?
            };
            tx.execute("DELETE FROM findings WHERE agent_id = ?1", [&agent_id])
                .map_err(db)?;
            {
                let mut ins = tx
                    .prepare(
                        "INSERT INTO findings (agent_id, rule, status, severity, title, citations, evidence, message,
                                               remediation, exception, evaluated_at, status_since)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                         ON CONFLICT (agent_id, rule) DO UPDATE SET
                           status = excluded.status, severity = excluded.severity, title = excluded.title,
                           citations = excluded.citations, evidence = excluded.evidence, message = excluded.message,
                           remediation = excluded.remediation, exception = excluded.exception,
                           evaluated_at = excluded.evaluated_at, status_since = excluded.status_since",
                    )
                    .map_err(db)?;
                for f in &findings {
                    let Finding {
                        rule,
                        title,
                        status,
                        severity,
                        citations,
                        // Partial marks are the pack's: reports read them from the rule by id.
                        partial_citations: _,
                        evidence,
                        message,
                        remediation,
                        exception,
                    } = f;
                    let since = match previous.get(rule) {
                        Some((old, since)) if old == status.as_str() => *since,
                        _ => ms(now),
                    };
                    let exception = exception.as_ref().map(to_json).transpose()?;
                    ins.execute(params![
                        agent_id,
                        rule,
                        status.as_str(),
                        severity.as_str(),
                        title,
                        to_json(citations)?,
                        to_json(evidence)?,
                        message,
                        remediation,
                        exception,
                        ms(now),
                        since
                    ])
                    .map_err(db)?;
                }
            }
            tx.commit().map_err(db)
        })
        .await
    }

    async fn findings(&self, scope: &Scope, agent_id: &str) -> StoreResult<Vec<FindingRow>> {
        let scope = scope.clone();
        let agent_id = agent_id.to_string();
        self.with(move |c| {
            check_visible(c, &scope, &agent_id)?;
            let mut stmt = c
                .prepare(
                    "SELECT rule, status, severity, title, citations, evidence, message, remediation, exception,
                            evaluated_at, status_since
                     FROM findings WHERE agent_id = ?1 ORDER BY rule",
                )
                .map_err(db)?;
            type Raw = (
                String,
                String,
                String,
                String,
                String,
                String,
                String,
                Option<String>,
                Option<String>,
                i64,
                i64,
            );
            let rows = stmt
                .query_map([&agent_id], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                        r.get(9)?,
                        r.get(10)?,
                    ))
                })
                .map_err(db)?;
            let raw: Vec<Raw> = rows.collect::<Result<_, _>>().map_err(db)?;
            raw.into_iter()
                .map(
                    |(
                        rule,
                        status,
                        severity,
                        title,
                        citations,
                        evidence,
                        message,
                        remediation,
                        exception,
                        at,
                        since,
                    )| {
                        let status: Status = from_name("status", &status)?;
                        Ok(FindingRow {
                            status,
                            severity: from_name("severity", &severity)?,
                            citations: from_json("citations", &citations)?,
                            evidence: from_json("evidence", &evidence)?,
                            exception: exception.as_deref().map(|e| from_json("exception", e)).transpose()?,
                            rule,
                            title,
                            message,
                            remediation,
                            evaluated_at: from_ms(at),
                            status_since: from_ms(since),
                        })
                    },
                )
                .collect()
        })
        .await
    }

    async fn report_count(&self) -> StoreResult<u64> {
        self.with(|c| {
            c.query_row("SELECT COUNT(*) FROM reports", [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .map_err(db)
        })
        .await
    }

    async fn add_user(
        &self,
        username: &str,
        password_hash: &str,
        role: Role,
        practice: Option<&str>,
    ) -> StoreResult<i64> {
        let (username, password_hash) = (username.to_string(), password_hash.to_string());
        let practice = practice.map(str::to_string);
        self.with(move |c| {
            let pid = practice.as_deref().map(|p| practice_id(c, p)).transpose()?;
            let exists: Option<i64> =
                c.query_row("SELECT id FROM users WHERE username = ?1", [&username], |r| r.get(0)).optional().map_err(db)?;
            if exists.is_some() {
                return Err(StoreError::Conflict { what: "user", name: username });
            }
            c.execute(
                "INSERT INTO users (username, password_hash, role, practice_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![username, password_hash, role.as_str(), pid, ms(Utc::now())],
            )
            .map_err(db)?;
            Ok(c.last_insert_rowid())
        })
        .await
    }

    async fn set_password(&self, username: &str, password_hash: &str) -> StoreResult<()> {
        let (username, password_hash) = (username.to_string(), password_hash.to_string());
        self.with(move |c| {
            let tx = c.transaction().map_err(db)?;
            let n = tx
                .execute(
                    "UPDATE users SET password_hash = ?1 WHERE username = ?2",
                    params![password_hash, username],
                )
                .map_err(db)?;
            if n == 0 {
                return Err(StoreError::NotFound {
                    what: "user",
                    name: username,
                });
            }
            // A new password ends every session of that user.
            tx.execute(
                "DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE username = ?1)",
                params![username],
            )
            .map_err(db)?;
            tx.commit().map_err(db)
        })
        .await
    }

    async fn user_count(&self) -> StoreResult<u64> {
        self.with(|c| {
            c.query_row("SELECT COUNT(*) FROM users", [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .map_err(db)
        })
        .await
    }

    async fn user(&self, username: &str) -> StoreResult<Option<UserRow>> {
        let username = username.to_string();
        self.with(move |c| {
            c.query_row(
                "SELECT id, username, password_hash, role, practice_id FROM users WHERE username = ?1",
                [&username],
                |r| {
                    let role: String = r.get(3)?;
                    Ok(UserRow {
                        id: r.get(0)?,
                        username: r.get(1)?,
                        password_hash: r.get(2)?,
                        role: Role::parse(&role).unwrap_or(Role::PracticeManager),
                        practice_id: r.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(db)
        })
        .await
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
        self.with(move |c| {
            let now = ms(now);
            c.execute("DELETE FROM sessions WHERE expires_at <= ?1", [now]).map_err(db)?;
            c.execute(
                "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![token_hash, user_id, csrf_token, now, ms(expires_at)],
            )
            .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn session(&self, token_hash: &str, now: DateTime<Utc>) -> StoreResult<Option<SessionRow>> {
        let token_hash = token_hash.to_string();
        self.with(move |c| {
            c.query_row(
                "SELECT u.id, u.username, u.role, u.practice_id, s.csrf_token, s.expires_at
                 FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?1 AND s.expires_at > ?2",
                params![token_hash, ms(now)],
                |r| {
                    let role: String = r.get(2)?;
                    Ok(SessionRow {
                        user_id: r.get(0)?,
                        username: r.get(1)?,
                        role: Role::parse(&role).unwrap_or(Role::PracticeManager),
                        practice_id: r.get(3)?,
                        csrf_token: r.get(4)?,
                        expires_at: from_ms(r.get(5)?),
                    })
                },
            )
            .optional()
            .map_err(db)
        })
        .await
    }

    async fn delete_session(&self, token_hash: &str) -> StoreResult<()> {
        let token_hash = token_hash.to_string();
        self.with(move |c| {
            c.execute("DELETE FROM sessions WHERE token_hash = ?1", [&token_hash])
                .map(|_| ())
                .map_err(db)
        })
        .await
    }

    async fn create_api_key(&self, key_hash: &str, role: Role, practice: Option<&str>, label: &str) -> StoreResult<()> {
        let (key_hash, label) = (key_hash.to_string(), label.to_string());
        let practice = practice.map(str::to_string);
        self.with(move |c| {
            let pid = practice.as_deref().map(|p| practice_id(c, p)).transpose()?;
            c.execute(
                "INSERT INTO api_keys (key_hash, role, practice_id, label, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![key_hash, role.as_str(), pid, label, ms(Utc::now())],
            )
            .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn api_key(&self, key_hash: &str) -> StoreResult<Option<Scope>> {
        let key_hash = key_hash.to_string();
        self.with(move |c| {
            c.query_row(
                "SELECT role, practice_id FROM api_keys WHERE key_hash = ?1",
                [&key_hash],
                |r| {
                    let role: String = r.get(0)?;
                    Ok(Scope {
                        role: Role::parse(&role).unwrap_or(Role::PracticeManager),
                        practice_id: r.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(db)
        })
        .await
    }

    async fn audit(&self, actor: &str, action: &str, detail: &str, now: DateTime<Utc>) -> StoreResult<()> {
        let (actor, action, detail) = (actor.to_string(), action.to_string(), detail.to_string());
        self.with(move |c| {
            c.execute(
                "INSERT INTO audit_log (at, actor, action, detail) VALUES (?1, ?2, ?3, ?4)",
                params![ms(now), actor, action, detail],
            )
            .map(|_| ())
            .map_err(db)
        })
        .await
    }

    async fn audit_entries(&self, limit: u32) -> StoreResult<Vec<AuditEntry>> {
        self.with(move |c| {
            let mut stmt = c
                .prepare("SELECT at, actor, action, detail FROM audit_log ORDER BY id DESC LIMIT ?1")
                .map_err(db)?;
            let rows = stmt
                .query_map([limit], |r| {
                    Ok(AuditEntry {
                        at: from_ms(r.get(0)?),
                        actor: r.get(1)?,
                        action: r.get(2)?,
                        detail: r.get(3)?,
                    })
                })
                .map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
        .await
    }

    async fn set_policy_settings(
        &self,
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
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db)?;
            let (pid, sid) = practice_and_site(&tx, &practice, site.as_deref())?;
            tx.execute(
                "DELETE FROM policy_settings WHERE practice_id = ?1 AND site_id IS ?2",
                params![pid, sid],
            )
            .map_err(db)?;
            if profile.is_some() || overrides.is_some() {
                let scope = if sid.is_some() { "site" } else { "practice" };
                tx.execute(
                    "INSERT INTO policy_settings (scope, practice_id, site_id, profile, overrides_toml, updated_at, updated_by)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![scope, pid, sid, profile, overrides, ms(now), actor],
                )
                .map_err(db)?;
            }
            tx.commit().map_err(db)
        })
        .await
    }

    async fn policy_settings(&self, practice: &str, site: Option<&str>) -> StoreResult<Option<PolicySettingsRow>> {
        let (practice, site) = (practice.to_string(), site.map(str::to_string));
        self.with(move |c| {
            let (pid, sid) = practice_and_site(c, &practice, site.as_deref())?;
            c.query_row(
                "SELECT profile, overrides_toml, updated_at, updated_by FROM policy_settings
                 WHERE practice_id = ?1 AND site_id IS ?2",
                params![pid, sid],
                |r| {
                    Ok(PolicySettingsRow {
                        practice: practice.clone(),
                        site: site.clone(),
                        profile: r.get(0)?,
                        overrides_toml: r.get(1)?,
                        updated_at: from_ms(r.get(2)?),
                        updated_by: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(db)
        })
        .await
    }

    async fn policy_settings_for_agent(&self, agent_id: &str) -> StoreResult<AgentPolicySettings> {
        let agent_id = agent_id.to_string();
        self.with(move |c| {
            c.query_row(
                "SELECT p.name, s.name, ps.profile, ps.overrides_toml, ss.overrides_toml
                 FROM agents a JOIN sites s ON s.id = a.site_id JOIN practices p ON p.id = s.practice_id
                 LEFT JOIN policy_settings ps ON ps.practice_id = p.id AND ps.site_id IS NULL
                 LEFT JOIN policy_settings ss ON ss.site_id = s.id
                 WHERE a.id = ?1",
                [&agent_id],
                |r| {
                    Ok(AgentPolicySettings {
                        practice: r.get(0)?,
                        site: r.get(1)?,
                        profile: r.get(2)?,
                        practice_overrides: r.get(3)?,
                        site_overrides: r.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(db)?
            .ok_or(StoreError::NotFound {
                what: "agent",
                name: agent_id,
            })
        })
        .await
    }
}
