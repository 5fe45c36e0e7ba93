//! `rounds-collector export` and `import` (issue 17): a whole installation copied table by
//! table between stores, so that one outgrowing SQLite moves to PostgreSQL without losing
//! history (and back, or SQLite to SQLite).
//!
//! The file is JSON lines: a header `{"rounds_export": 1, "schema_version": N, ...}`; per
//! table, in dependency order (the order the migrations create them), a line
//! `{"table": NAME, "columns": [...]}` followed by one JSON array per row (integers, reals,
//! text and NULL as JSON values); and an end line `{"end": {"rows": {NAME: COUNT, ...}}}` that
//! tells a complete file from a truncated one. Both backends have the same tables and columns
//! (the PostgreSQL migrations mirror SQLite's one to one), so a file of one imports into the
//! other.
//!
//! Export reads one consistent snapshot (one read transaction) and writes a temporary file it
//! renames at the end. Import refuses a file of another schema version, refuses a target that
//! holds rows unless told to replace them, runs in one transaction (a bad line leaves the
//! target as it was), and on PostgreSQL moves every identity sequence past the ids it inserted.
//! Collectors using the target should be stopped while it runs.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use futures_util::{StreamExt, pin_mut};
use serde_json::{Value, json};
use tokio_postgres::types::ToSql;

use crate::store::{StoreError, postgres, sqlite};

/// The version of the file format (not of the schema).
pub const FORMAT_VERSION: u64 = 1;

/// Tables derived from others and kept by triggers in the same transaction (the dashboard's
/// counts of current findings, migration 0011): neither exported nor imported; importing the
/// findings rebuilds them on the target.
const DERIVED: &[&str] = &["finding_counts", "practice_rule_tallies"];

/// Rows per `INSERT` statement on PostgreSQL (fewer when a table has many columns).
const BATCH_ROWS: usize = 500;

/// A store to export from or import into.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// The SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL (shown without its password).
    Postgres(String),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(p) => write!(f, "SQLite {}", p.display()),
            Location::Postgres(url) => write!(f, "PostgreSQL {}", postgres::codec::redact_url(url)),
        }
    }
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// What an export or import moved: the schema version and the rows per table, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub schema_version: usize,
    pub tables: Vec<(String, u64)>,
}

impl Summary {
    /// Rows over every table.
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "schema version {}, {} tables, {} rows",
            self.schema_version,
            self.tables.len(),
            self.rows()
        )
    }
}

/// Why an export or import failed; nothing was changed in the target.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}, line {line}: {message}")]
    Format { path: PathBuf, line: u64, message: String },
    #[error(
        "{path} holds schema version {file}, but {target} has schema version {target_version}; export and import with the same collector version"
    )]
    SchemaVersion {
        path: PathBuf,
        file: u64,
        target: String,
        target_version: usize,
    },
    #[error(
        "{target} is not empty (table {table} holds {rows} rows); import into an empty store, or give --replace to replace everything in it"
    )]
    NotEmpty { target: String, table: String, rows: u64 },
    #[error("{path} does not match the schema of {target}: {message}")]
    Schema {
        path: PathBuf,
        target: String,
        message: String,
    },
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{target}: {message}")]
    Database { target: String, message: String },
}

impl TransferError {
    /// Whether what was asked cannot work as given (another schema version, a store with data,
    /// a file that is not an export), rather than a failure of the database or the disk.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            TransferError::Format { .. }
                | TransferError::SchemaVersion { .. }
                | TransferError::NotEmpty { .. }
                | TransferError::Schema { .. }
        )
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TransferError + '_ {
    move |source| TransferError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A table as the target has it: its columns with their declared types.
#[derive(Debug, Clone)]
struct Table {
    name: String,
    columns: Vec<(String, String)>,
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn column_list(t: &Table) -> String {
    t.columns.iter().map(|(c, _)| quote(c)).collect::<Vec<_>>().join(", ")
}

// --- export ---

/// Writes every table of `from` to `file` (created; an existing file is refused). `now` is
/// recorded in the header.
pub async fn export(from: &Location, file: &Path, now: DateTime<Utc>) -> Result<Summary, TransferError> {
    if file.exists() {
        return Err(TransferError::Io {
            path: file.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "the file exists; give a new file"),
        });
    }
    let tmp = file.with_extension("partial");
    // Readable by its owner only: it holds password and key hashes and every report.
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    let out = open.open(&tmp).map_err(io(&tmp))?;
    let mut w = BufWriter::new(out);
    let result = match from {
        Location::Sqlite(path) => export_sqlite(path, from, &mut w, &tmp, now),
        Location::Postgres(url) => export_postgres(url, from, &mut w, &tmp, now).await,
    };
    let finished = result.and_then(|s| {
        let f = w.into_inner().map_err(|e| io(&tmp)(e.into_error()))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, file).map_err(io(file))?;
        Ok(s)
    });
    if finished.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    finished
}

fn header(
    w: &mut impl Write,
    path: &Path,
    version: usize,
    source: &Location,
    now: DateTime<Utc>,
) -> Result<(), TransferError> {
    line(
        w,
        path,
        &json!({
            "rounds_export": FORMAT_VERSION,
            "schema_version": version,
            "source": match source { Location::Sqlite(_) => "sqlite", Location::Postgres(_) => "postgres" },
            "exported_at": now.to_rfc3339(),
            "collector_version": env!("CARGO_PKG_VERSION"),
        }),
    )
}

fn line(w: &mut impl Write, path: &Path, v: &Value) -> Result<(), TransferError> {
    serde_json::to_writer(&mut *w, v).map_err(|e| io(path)(e.into()))?;
    w.write_all(b"\n").map_err(io(path))
}

fn end(w: &mut impl Write, path: &Path, tables: &[(String, u64)]) -> Result<(), TransferError> {
    let rows: serde_json::Map<String, Value> = tables.iter().map(|(t, n)| (t.clone(), json!(n))).collect();
    line(w, path, &json!({ "end": { "rows": rows } }))
}

/// A value of a kind the file format has no place for.
fn not_carried(at: &Location, t: &Table, col: &str, what: &str) -> TransferError {
    TransferError::Database {
        target: at.to_string(),
        message: format!("{}.{col} holds {what}, which export does not carry", t.name),
    }
}

fn sqlite_err(at: &Location) -> impl Fn(rusqlite::Error) -> TransferError + '_ {
    move |e| TransferError::Database {
        target: at.to_string(),
        message: e.to_string(),
    }
}

fn pg_err(at: &Location) -> impl Fn(tokio_postgres::Error) -> TransferError + '_ {
    move |e| TransferError::Database {
        target: at.to_string(),
        message: postgres::codec::redact_url(&match e.as_db_error() {
            Some(d) => d.to_string(),
            None => e.to_string(),
        }),
    }
}

/// Opens the SQLite store (bringing its schema up to date) and a connection beside it.
fn open_sqlite(path: &Path, at: &Location) -> Result<(rusqlite::Connection, usize), TransferError> {
    drop(sqlite::SqliteStore::open(path)?);
    let conn = rusqlite::Connection::open(path).map_err(sqlite_err(at))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(sqlite_err(at))?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(sqlite_err(at))?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(sqlite_err(at))?;
    Ok((conn, version.max(0) as usize))
}

/// The tables of a SQLite database in the order they were created, with their columns.
fn sqlite_tables(conn: &rusqlite::Connection, at: &Location) -> Result<Vec<Table>, TransferError> {
    let names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(sqlite_err(at))?;
    names
        .into_iter()
        .filter(|name| !DERIVED.contains(&name.as_str()))
        .map(|name| {
            let columns = conn
                .prepare(&format!("PRAGMA table_info({})", quote(&name)))
                .and_then(|mut s| {
                    s.query_map([], |r| {
                        Ok((r.get::<_, String>(1)?, r.get::<_, String>(2)?.to_uppercase()))
                    })?
                    .collect()
                })
                .map_err(sqlite_err(at))?;
            Ok(Table { name, columns })
        })
        .collect()
}

fn export_sqlite(
    path: &Path,
    at: &Location,
    w: &mut impl Write,
    file: &Path,
    now: DateTime<Utc>,
) -> Result<Summary, TransferError> {
    let (conn, version) = open_sqlite(path, at)?;
    // One read transaction: a consistent snapshot even while a collector writes (WAL).
    conn.execute_batch("BEGIN").map_err(sqlite_err(at))?;
    let tables = sqlite_tables(&conn, at)?;
    header(w, file, version, at, now)?;
    let mut counts = Vec::new();
    for t in &tables {
        line(
            w,
            file,
            &json!({"table": t.name, "columns": t.columns.iter().map(|(c, _)| c).collect::<Vec<_>>()}),
        )?;
        let sql = format!("SELECT {} FROM {} ORDER BY rowid", column_list(t), quote(&t.name));
        let mut stmt = conn.prepare(&sql).map_err(sqlite_err(at))?;
        let mut rows = stmt.query([]).map_err(sqlite_err(at))?;
        let mut n = 0u64;
        while let Some(r) = rows.next().map_err(sqlite_err(at))? {
            let mut values = Vec::with_capacity(t.columns.len());
            for (i, (col, _)) in t.columns.iter().enumerate() {
                use rusqlite::types::ValueRef;
                values.push(match r.get_ref(i).map_err(sqlite_err(at))? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(v) => json!(v),
                    ValueRef::Real(v) => json!(v),
                    ValueRef::Text(b) => {
                        Value::String(String::from_utf8(b.to_vec()).map_err(|_| TransferError::Database {
                            target: at.to_string(),
                            message: format!("{}.{col} holds text that is not UTF-8", t.name),
                        })?)
                    }
                    ValueRef::Blob(_) => return Err(not_carried(at, t, col, "a blob")),
                });
            }
            line(w, file, &Value::Array(values))?;
            n += 1;
        }
        counts.push((t.name.clone(), n));
    }
    end(w, file, &counts)?;
    conn.execute_batch("COMMIT").map_err(sqlite_err(at))?;
    Ok(Summary {
        schema_version: version,
        tables: counts,
    })
}

/// Opens the PostgreSQL store (bringing its schema up to date) and a client beside it.
async fn open_postgres(url: &str, at: &Location) -> Result<(tokio_postgres::Client, usize), TransferError> {
    let store = postgres::PgStore::open(url).await?;
    let version = store.schema_version().await? as usize;
    drop(store);
    // The store's TLS mode and CA file (sslmode, sslrootcert); the store opened with them above.
    let refused = |message: String| TransferError::Database {
        target: at.to_string(),
        message,
    };
    let target = postgres::tls::Target::parse(url).map_err(refused)?;
    let tls = target.connector().map_err(refused)?;
    let (client, conn) = target.config.connect(tls).await.map_err(pg_err(at))?;
    tokio::spawn(async move {
        if let Err(error) = conn.await {
            tracing::warn!(%error, "the export/import connection ended");
        }
    });
    Ok((client, version))
}

/// The tables of the PostgreSQL schema in the order they were created, with their columns
/// (the migrations' bookkeeping table `schema_version` excluded).
async fn postgres_tables(c: &tokio_postgres::Client, at: &Location) -> Result<Vec<Table>, TransferError> {
    let rows = c
        .query(
            "SELECT c.relname::TEXT, a.attname::TEXT, format_type(a.atttypid, a.atttypmod)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relname <> 'schema_version'
             ORDER BY c.oid, a.attnum",
            &[],
        )
        .await
        .map_err(pg_err(at))?;
    let mut tables: Vec<Table> = Vec::new();
    for r in rows {
        let (table, column, ty): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        if DERIVED.contains(&table.as_str()) {
            continue;
        }
        if tables.last().map(|t| &t.name) != Some(&table) {
            tables.push(Table {
                name: table,
                columns: Vec::new(),
            });
        }
        if let Some(t) = tables.last_mut() {
            t.columns.push((column, ty.to_uppercase()));
        }
    }
    Ok(tables)
}

/// The primary-key columns of a table, in key order (rows are exported in that order, so that
/// a row referring to an earlier one of its table, an incident's parent, comes after it).
async fn postgres_key(c: &tokio_postgres::Client, table: &str, at: &Location) -> Result<Vec<String>, TransferError> {
    let rows = c
        .query(
            "SELECT a.attname::TEXT FROM pg_index i
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
             WHERE i.indrelid = $1::TEXT::regclass AND i.indisprimary
             ORDER BY array_position(i.indkey, a.attnum)",
            &[&quote(table)],
        )
        .await
        .map_err(pg_err(at))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

async fn export_postgres(
    url: &str,
    at: &Location,
    w: &mut impl Write,
    file: &Path,
    now: DateTime<Utc>,
) -> Result<Summary, TransferError> {
    let (c, version) = open_postgres(url, at).await?;
    // One snapshot for every table.
    c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(pg_err(at))?;
    let tables = postgres_tables(&c, at).await?;
    header(w, file, version, at, now)?;
    let mut counts = Vec::new();
    for t in &tables {
        line(
            w,
            file,
            &json!({"table": t.name, "columns": t.columns.iter().map(|(c, _)| c).collect::<Vec<_>>()}),
        )?;
        let key = postgres_key(&c, &t.name, at).await?;
        let order = if key.is_empty() {
            String::new()
        } else {
            format!(
                " ORDER BY {}",
                key.iter().map(|k| quote(k)).collect::<Vec<_>>().join(", ")
            )
        };
        let sql = format!("SELECT {} FROM {}{order}", column_list(t), quote(&t.name));
        let rows = c
            .query_raw(&sql, std::iter::empty::<&(dyn ToSql + Sync)>())
            .await
            .map_err(pg_err(at))?;
        pin_mut!(rows);
        let mut n = 0u64;
        while let Some(r) = rows.next().await {
            let r = r.map_err(pg_err(at))?;
            let mut values = Vec::with_capacity(t.columns.len());
            for (i, (col, ty)) in t.columns.iter().enumerate() {
                let bad = |e: tokio_postgres::Error| TransferError::Database {
                    target: at.to_string(),
                    message: format!("{}.{col}: {e}", t.name),
                };
                values.push(match ty.as_str() {
                    "BIGINT" => r
                        .try_get::<_, Option<i64>>(i)
                        .map_err(bad)?
                        .map_or(Value::Null, |v| json!(v)),
                    "INTEGER" => r
                        .try_get::<_, Option<i32>>(i)
                        .map_err(bad)?
                        .map_or(Value::Null, |v| json!(v)),
                    "DOUBLE PRECISION" => r
                        .try_get::<_, Option<f64>>(i)
                        .map_err(bad)?
                        .map_or(Value::Null, |v| json!(v)),
                    "BOOLEAN" => r
                        .try_get::<_, Option<bool>>(i)
                        .map_err(bad)?
                        .map_or(Value::Null, |v| json!(i64::from(v))),
                    "TEXT" => r
                        .try_get::<_, Option<String>>(i)
                        .map_err(bad)?
                        .map_or(Value::Null, Value::String),
                    other => return Err(not_carried(at, t, col, &format!("type {other}"))),
                });
            }
            line(w, file, &Value::Array(values))?;
            n += 1;
        }
        counts.push((t.name.clone(), n));
    }
    end(w, file, &counts)?;
    c.batch_execute("COMMIT").await.map_err(pg_err(at))?;
    Ok(Summary {
        schema_version: version,
        tables: counts,
    })
}

// --- import ---

/// Reads an export file line by line, checking its structure.
struct Reader {
    path: PathBuf,
    lines: std::io::Lines<BufReader<std::fs::File>>,
    line: u64,
}

/// One piece of an export file after the header.
enum Piece {
    Table { name: String, columns: Vec<String> },
    Row(Vec<Value>),
    End(BTreeMap<String, u64>),
}

impl Reader {
    fn open(path: &Path) -> Result<(Reader, u64), TransferError> {
        let f = std::fs::File::open(path).map_err(io(path))?;
        let mut r = Reader {
            path: path.to_path_buf(),
            lines: BufReader::new(f).lines(),
            line: 0,
        };
        let header = r.value()?.ok_or_else(|| r.error("the file is empty"))?;
        let format = header.get("rounds_export").and_then(Value::as_u64);
        if format != Some(FORMAT_VERSION) {
            return Err(r.error(format!(
                "not a rounds-collector export of format {FORMAT_VERSION} (the first line must be its header)"
            )));
        }
        let version = header
            .get("schema_version")
            .and_then(Value::as_u64)
            .ok_or_else(|| r.error("the header has no schema_version"))?;
        Ok((r, version))
    }

    fn error(&self, message: impl Into<String>) -> TransferError {
        TransferError::Format {
            path: self.path.clone(),
            line: self.line,
            message: message.into(),
        }
    }

    fn value(&mut self) -> Result<Option<Value>, TransferError> {
        let Some(text) = self.lines.next() else {
            return Ok(None);
        };
        self.line += 1;
        let text = text.map_err(io(&self.path))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| self.error(format!("not JSON: {e}")))
    }

    fn next(&mut self) -> Result<Piece, TransferError> {
        let v = self
            .value()?
            .ok_or_else(|| self.error("the file ends before its end line: it is truncated"))?;
        match v {
            Value::Array(values) => Ok(Piece::Row(values)),
            Value::Object(o) => {
                if let Some(end) = o.get("end") {
                    let rows = end
                        .get("rows")
                        .and_then(Value::as_object)
                        .ok_or_else(|| self.error("the end line has no row counts"))?;
                    return rows
                        .iter()
                        .map(|(t, n)| {
                            n.as_u64()
                                .map(|n| (t.clone(), n))
                                .ok_or_else(|| self.error(format!("the row count of {t} is not a number")))
                        })
                        .collect::<Result<_, _>>()
                        .map(Piece::End);
                }
                let name = o.get("table").and_then(Value::as_str);
                let columns = o.get("columns").and_then(Value::as_array).map(|cs| {
                    cs.iter()
                        .map(|c| c.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                });
                match (name, columns) {
                    (Some(name), Some(Some(columns))) => Ok(Piece::Table {
                        name: name.to_string(),
                        columns,
                    }),
                    _ => Err(self
                        .error("expected a table line ({\"table\": ..., \"columns\": [...]}), a row or the end line")),
                }
            }
            _ => Err(self.error("expected a table line, a row or the end line")),
        }
    }
}

/// What an import writes into, either backend.
enum Target {
    Sqlite(rusqlite::Connection),
    Postgres(tokio_postgres::Client),
}

/// Imports `file` into `into` in one transaction. `replace`: delete everything the target
/// holds first (in the same transaction); otherwise a target with rows is refused.
pub async fn import(into: &Location, file: &Path, replace: bool) -> Result<Summary, TransferError> {
    let (mut reader, file_version) = Reader::open(file)?;
    let (target, version) = match into {
        Location::Sqlite(path) => {
            let (c, v) = open_sqlite(path, into)?;
            (Target::Sqlite(c), v)
        }
        Location::Postgres(url) => {
            let (c, v) = open_postgres(url, into).await?;
            (Target::Postgres(c), v)
        }
    };
    if file_version != version as u64 {
        return Err(TransferError::SchemaVersion {
            path: file.to_path_buf(),
            file: file_version,
            target: into.to_string(),
            target_version: version,
        });
    }
    match &target {
        Target::Sqlite(c) => {
            c.execute_batch("BEGIN IMMEDIATE").map_err(sqlite_err(into))?;
            let out = import_sqlite(c, into, &mut reader, replace);
            match out {
                Ok(tables) => {
                    c.execute_batch("COMMIT").map_err(sqlite_err(into))?;
                    Ok(Summary {
                        schema_version: version,
                        tables,
                    })
                }
                Err(e) => {
                    let _ = c.execute_batch("ROLLBACK");
                    Err(e)
                }
            }
        }
        Target::Postgres(c) => {
            c.batch_execute("BEGIN").await.map_err(pg_err(into))?;
            match import_postgres(c, into, &mut reader, replace).await {
                Ok(tables) => {
                    c.batch_execute("COMMIT").await.map_err(pg_err(into))?;
                    Ok(Summary {
                        schema_version: version,
                        tables,
                    })
                }
                Err(e) => {
                    let _ = c.batch_execute("ROLLBACK").await;
                    Err(e)
                }
            }
        }
    }
}

/// A target table holding `n` rows refuses an import without `replace`.
fn refuse_rows(into: &Location, t: &Table, n: i64) -> Result<(), TransferError> {
    if n > 0 {
        return Err(TransferError::NotEmpty {
            target: into.to_string(),
            table: t.name.clone(),
            rows: n as u64,
        });
    }
    Ok(())
}

/// Checks that `name` with `columns` is the next table the target expects.
fn expect_table<'t>(
    reader: &Reader,
    into: &Location,
    tables: &'t [Table],
    done: &[(String, u64)],
    name: &str,
    columns: &[String],
) -> Result<&'t Table, TransferError> {
    let schema = |message: String| TransferError::Schema {
        path: reader.path.clone(),
        target: into.to_string(),
        message,
    };
    let t = tables
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| schema(format!("line {}: table {name} does not exist there", reader.line)))?;
    if done.iter().any(|(d, _)| d == name) {
        return Err(reader.error(format!("table {name} appears twice")));
    }
    let theirs: Vec<&str> = t.columns.iter().map(|(c, _)| c.as_str()).collect();
    if theirs != columns.iter().map(String::as_str).collect::<Vec<_>>() {
        return Err(schema(format!(
            "line {}: table {name} has columns ({}) there, the file ({})",
            reader.line,
            theirs.join(", "),
            columns.join(", ")
        )));
    }
    Ok(t)
}

/// Checks the end line against what was read and that every table of the target was in it.
fn check_end(
    reader: &Reader,
    into: &Location,
    tables: &[Table],
    done: &[(String, u64)],
    counts: &BTreeMap<String, u64>,
) -> Result<(), TransferError> {
    let read: BTreeMap<String, u64> = done.iter().cloned().collect();
    if &read != counts {
        return Err(reader.error(format!(
            "the end line counts rows {counts:?}, but the file holds {read:?}"
        )));
    }
    if let Some(missing) = tables.iter().find(|t| !read.contains_key(&t.name)) {
        return Err(TransferError::Schema {
            path: reader.path.clone(),
            target: into.to_string(),
            message: format!("the file has no table {}", missing.name),
        });
    }
    Ok(())
}

fn import_sqlite(
    c: &rusqlite::Connection,
    into: &Location,
    reader: &mut Reader,
    replace: bool,
) -> Result<Vec<(String, u64)>, TransferError> {
    let tables = sqlite_tables(c, into)?;
    for t in tables.iter().rev() {
        if replace {
            c.execute(&format!("DELETE FROM {}", quote(&t.name)), [])
                .map_err(sqlite_err(into))?;
            if t.name == "findings" {
                // What the findings' delete triggers left (rows of counts at zero): gone too,
                // so that the imported findings rebuild them from nothing.
                for d in DERIVED {
                    c.execute(&format!("DELETE FROM {}", quote(d)), [])
                        .map_err(sqlite_err(into))?;
                }
            }
        } else {
            let n: i64 = c
                .query_row(&format!("SELECT COUNT(*) FROM {}", quote(&t.name)), [], |r| r.get(0))
                .map_err(sqlite_err(into))?;
            refuse_rows(into, t, n)?;
        }
    }
    let mut done: Vec<(String, u64)> = Vec::new();
    let mut current: Option<(&Table, rusqlite::Statement<'_>)> = None;
    loop {
        match reader.next()? {
            Piece::Table { name, columns } => {
                let t = expect_table(reader, into, &tables, &done, &name, &columns)?;
                let marks = vec!["?"; t.columns.len()].join(", ");
                let stmt = c
                    .prepare(&format!(
                        "INSERT INTO {} ({}) VALUES ({marks})",
                        quote(&t.name),
                        column_list(t)
                    ))
                    .map_err(sqlite_err(into))?;
                done.push((t.name.clone(), 0));
                current = Some((t, stmt));
            }
            Piece::Row(values) => {
                let Some((t, stmt)) = current.as_mut() else {
                    return Err(reader.error("a row before the first table line"));
                };
                if values.len() != t.columns.len() {
                    return Err(reader.error(format!(
                        "a row of {} has {} values, not {}",
                        t.name,
                        values.len(),
                        t.columns.len()
                    )));
                }
                let mut params = Vec::with_capacity(values.len());
                for (v, (col, _)) in values.iter().zip(&t.columns) {
                    use rusqlite::types::Value as Sql;
                    params.push(match v {
                        Value::Null => Sql::Null,
                        Value::Number(n) if n.is_i64() => Sql::Integer(n.as_i64().unwrap_or_default()),
                        Value::Number(n) => match n.as_f64() {
                            Some(f) => Sql::Real(f),
                            None => return Err(reader.error(format!("{}.{col}: {n} is out of range", t.name))),
                        },
                        Value::String(s) => Sql::Text(s.clone()),
                        other => {
                            return Err(reader.error(format!("{}.{col}: {other} is not a stored value", t.name)));
                        }
                    });
                }
                stmt.execute(rusqlite::params_from_iter(params))
                    .map_err(|e| reader.error(format!("{} row not accepted by {into}: {e}", t.name)))?;
                if let Some(last) = done.last_mut() {
                    last.1 += 1;
                }
            }
            Piece::End(counts) => {
                check_end(reader, into, &tables, &done, &counts)?;
                return Ok(done);
            }
        }
    }
}

/// A JSON value as a parameter of a PostgreSQL column of type `ty`.
fn pg_param(v: &Value, ty: &str) -> Result<Box<dyn ToSql + Sync + Send>, String> {
    Ok(match (ty, v) {
        ("BIGINT", Value::Null) => Box::new(None::<i64>),
        ("BIGINT", Value::Number(n)) => Box::new(n.as_i64().ok_or_else(|| format!("{n} is not an integer"))?),
        ("INTEGER", Value::Null) => Box::new(None::<i32>),
        ("INTEGER", Value::Number(n)) => Box::new(
            n.as_i64()
                .and_then(|v| i32::try_from(v).ok())
                .ok_or_else(|| format!("{n} is not a 32-bit integer"))?,
        ),
        ("DOUBLE PRECISION", Value::Null) => Box::new(None::<f64>),
        ("DOUBLE PRECISION", Value::Number(n)) => Box::new(n.as_f64().ok_or_else(|| format!("{n} is not a number"))?),
        ("BOOLEAN", Value::Null) => Box::new(None::<bool>),
        ("BOOLEAN", Value::Number(n)) => Box::new(n.as_i64().ok_or_else(|| format!("{n} is not 0 or 1"))? != 0),
        ("TEXT", Value::Null) => Box::new(None::<String>),
        ("TEXT", Value::String(s)) => Box::new(s.clone()),
        (ty, v) => return Err(format!("{v} does not fit a column of type {ty}")),
    })
}

async fn import_postgres(
    c: &tokio_postgres::Client,
    into: &Location,
    reader: &mut Reader,
    replace: bool,
) -> Result<Vec<(String, u64)>, TransferError> {
    let tables = postgres_tables(c, into).await?;
    if replace {
        // TRUNCATE fires no row triggers: the derived counts are emptied with the rest.
        let all = tables
            .iter()
            .map(|t| quote(&t.name))
            .chain(DERIVED.iter().map(|d| quote(d)))
            .collect::<Vec<_>>()
            .join(", ");
        if !all.is_empty() {
            c.batch_execute(&format!("TRUNCATE {all}"))
                .await
                .map_err(pg_err(into))?;
        }
    } else {
        for t in &tables {
            let n: i64 = c
                .query_one(&format!("SELECT COUNT(*) FROM {}", quote(&t.name)), &[])
                .await
                .map_err(pg_err(into))?
                .get(0);
            refuse_rows(into, t, n)?;
        }
    }
    let mut done: Vec<(String, u64)> = Vec::new();
    let mut current: Option<&Table> = None;
    let mut batch: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    loop {
        let piece = reader.next()?;
        if !matches!(piece, Piece::Row(_))
            && let Some(t) = current
        {
            insert_batch(c, into, reader, t, &mut batch).await?;
        }
        match piece {
            Piece::Table { name, columns } => {
                let t = expect_table(reader, into, &tables, &done, &name, &columns)?;
                done.push((t.name.clone(), 0));
                current = Some(t);
            }
            Piece::Row(values) => {
                let Some(t) = current else {
                    return Err(reader.error("a row before the first table line"));
                };
                if values.len() != t.columns.len() {
                    return Err(reader.error(format!(
                        "a row of {} has {} values, not {}",
                        t.name,
                        values.len(),
                        t.columns.len()
                    )));
                }
                for (v, (col, ty)) in values.iter().zip(&t.columns) {
                    batch.push(pg_param(v, ty).map_err(|m| reader.error(format!("{}.{col}: {m}", t.name)))?);
                }
                if let Some(last) = done.last_mut() {
                    last.1 += 1;
                }
                if batch.len() >= batch_rows(t) * t.columns.len() {
                    insert_batch(c, into, reader, t, &mut batch).await?;
                }
            }
            Piece::End(counts) => {
                check_end(reader, into, &tables, &done, &counts)?;
                reset_identities(c, into).await?;
                fold_confirmations(c, into).await?;
                return Ok(done);
            }
        }
    }
}

fn batch_rows(t: &Table) -> usize {
    (60_000 / t.columns.len().max(1)).clamp(1, BATCH_ROWS)
}

/// Inserts the rows collected in `batch` (a multiple of the table's column count) in one
/// statement, and empties it.
async fn insert_batch(
    c: &tokio_postgres::Client,
    into: &Location,
    reader: &Reader,
    t: &Table,
    batch: &mut Vec<Box<dyn ToSql + Sync + Send>>,
) -> Result<(), TransferError> {
    let width = t.columns.len();
    if batch.is_empty() || width == 0 {
        return Ok(());
    }
    let rows = batch.len() / width;
    let values = (0..rows)
        .map(|r| {
            let marks: Vec<String> = (1..=width).map(|i| format!("${}", r * width + i)).collect();
            format!("({})", marks.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("INSERT INTO {} ({}) VALUES {values}", quote(&t.name), column_list(t));
    let params: Vec<&(dyn ToSql + Sync)> = batch.iter().map(|b| b.as_ref() as &(dyn ToSql + Sync)).collect();
    c.execute(&sql, &params).await.map_err(|e| {
        reader.error(format!(
            "rows of {} up to here not accepted by {into}: {}",
            t.name,
            pg_err(into)(e)
        ))
    })?;
    batch.clear();
    Ok(())
}

/// A SQLite store keeps the confirmation of a check's complete run once per (agent, check)
/// (`check_confirmations`, migration 0018); PostgreSQL reads each row's own. After an import
/// the rows a confirmation covers take its values (the rule of `store/sqlite/reports.rs`:
/// the row is of that check, older than the run, and written before it), so both backends
/// answer the same current state. The confirmations stay, so the tables still count what the
/// file held; no row is covered by them any more.
async fn fold_confirmations(c: &tokio_postgres::Client, into: &Location) -> Result<(), TransferError> {
    c.execute(
        "UPDATE latest_observations l SET sequence = cc.sequence, observed_at = cc.observed_at,
           confirmed_at = cc.confirmed_at, confirmed_sequence = cc.sequence, future_dated = cc.future_dated
         FROM check_confirmations cc
         WHERE cc.agent_id = l.agent_id AND cc.check_name = l.check_name AND cc.epoch > l.check_epoch
           AND cc.sequence > l.sequence",
        &[],
    )
    .await
    .map_err(pg_err(into))?;
    Ok(())
}

/// Moves every identity sequence past the largest id its table holds, so that the next row a
/// collector inserts does not collide with an imported one.
async fn reset_identities(c: &tokio_postgres::Client, into: &Location) -> Result<(), TransferError> {
    let rows = c
        .query(
            "SELECT table_name::TEXT, column_name::TEXT FROM information_schema.columns
             WHERE table_schema = current_schema() AND is_identity = 'YES'",
            &[],
        )
        .await
        .map_err(pg_err(into))?;
    for r in rows {
        let (table, column): (String, String) = (r.get(0), r.get(1));
        let sql = format!(
            "SELECT setval(pg_get_serial_sequence($1, $2), COALESCE(MAX({col}), 0) + 1, false) FROM {tab}",
            col = quote(&column),
            tab = quote(&table)
        );
        c.query_one(&sql, &[&quote(&table), &column])
            .await
            .map_err(pg_err(into))?;
    }
    Ok(())
}

/// Rows per table of a store, in the export order (for `import`'s report and for tests).
pub async fn table_counts(at: &Location) -> Result<Vec<(String, u64)>, TransferError> {
    match at {
        Location::Sqlite(path) => {
            let (c, _) = open_sqlite(path, at)?;
            sqlite_tables(&c, at)?
                .into_iter()
                .map(|t| {
                    let n: i64 = c
                        .query_row(&format!("SELECT COUNT(*) FROM {}", quote(&t.name)), [], |r| r.get(0))
                        .map_err(sqlite_err(at))?;
                    Ok((t.name, n as u64))
                })
                .collect()
        }
        Location::Postgres(url) => {
            let (c, _) = open_postgres(url, at).await?;
            let mut out = Vec::new();
            for t in postgres_tables(&c, at).await? {
                let n: i64 = c
                    .query_one(&format!("SELECT COUNT(*) FROM {}", quote(&t.name)), &[])
                    .await
                    .map_err(pg_err(at))?
                    .get(0);
                out.push((t.name, n as u64));
            }
            Ok(out)
        }
    }
}
