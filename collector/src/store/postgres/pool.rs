//! A small pool of PostgreSQL connections: at most `size` clients, each with its connection
//! task spawned, made when first needed and kept while they work. A checkout is an owned
//! [`Pooled`] guard; a guard dropped inside an open transaction rolls it back (on a spawned
//! task) before its client is used again, and a client whose connection broke is discarded.
//!
//! Each connection ([`Conn`]) keeps the statements prepared on it, by SQL text: a statement
//! is parsed and described once per connection, then every run is one round trip (a query
//! by text alone is two: prepare, then execute). Runs of cached statements are sent in the
//! order they are first polled, so independent statements joined together are pipelined.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Error, Row, Statement};

use super::codec;
use super::tls::{MakeRustls, Target};
use crate::store::{DbErrorKind, StoreError, StoreResult};

/// The pool.
#[derive(Debug)]
pub struct Pool {
    /// The connection settings and the TLS mode ([`super::tls`]).
    target: Target,
    tls: MakeRustls,
    /// What errors name: the URL with its password replaced.
    shown: String,
    idle: Mutex<Vec<Conn>>,
    permits: Arc<Semaphore>,
}

impl Pool {
    /// A pool of at most `size` connections to `target` through `tls` (nothing is connected
    /// yet).
    pub fn new(target: Target, tls: MakeRustls, shown: String, size: usize) -> Arc<Self> {
        Arc::new(Pool {
            target,
            tls,
            shown,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(size.max(1))),
        })
    }

    /// The database as errors name it (no password).
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// A client of its own, waiting while all are in use.
    pub async fn get(self: &Arc<Self>) -> StoreResult<Pooled> {
        let permit = Arc::clone(&self.permits).acquire_owned().await.map_err(|_| {
            StoreError::message(
                DbErrorKind::Unavailable,
                "checking out a connection",
                "the pool is closed",
            )
        })?;
        let idle = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                match idle.pop() {
                    Some(c) if c.is_closed() => continue,
                    other => break other,
                }
            }
        };
        let client = match idle {
            Some(c) => c,
            None => self.connect().await?,
        };
        Ok(Pooled {
            client: Some(client),
            in_tx: false,
            pool: Arc::clone(self),
            permit: Some(permit),
        })
    }

    /// A new connection, its connection task spawned.
    pub async fn connect(&self) -> StoreResult<Conn> {
        let (client, connection) = self.target.config.connect(self.tls.clone()).await.map_err(|e| {
            let context = format!("connecting to {}", self.shown);
            match super::tls::failure(&e, &self.target) {
                Some(why) => StoreError::message(DbErrorKind::Unavailable, context, why),
                None => codec::db_in(e, context),
            }
        })?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "a PostgreSQL connection ended");
            }
        });
        Ok(Conn::new(client))
    }

    fn put_back(&self, client: Conn) {
        if !client.is_closed() {
            self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(client);
        }
    }
}

/// At most this many statements are kept per connection (the SQL texts are the store's own,
/// a few hundred at most); past it the cache starts again.
const MAX_STATEMENTS: usize = 512;

/// A connection and the statements prepared on it, by SQL text.
#[derive(Debug)]
pub struct Conn {
    client: Client,
    statements: Mutex<HashMap<String, Statement>>,
}

impl Conn {
    fn new(client: Client) -> Self {
        Conn {
            client,
            statements: Mutex::new(HashMap::new()),
        }
    }

    /// The statement for `sql`, prepared on this connection the first time it is asked for.
    pub async fn statement(&self, sql: &str) -> Result<Statement, Error> {
        if let Some(s) = self.cache().get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).await?;
        let mut cache = self.cache();
        if cache.len() >= MAX_STATEMENTS {
            cache.clear();
        }
        cache.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    /// Prepares every statement of `sqls` not prepared yet, before they are pipelined: a run
    /// that must prepare first is sent after its prepare's answer, so only prepared statements
    /// keep the order they are polled in.
    pub async fn prepare_all(&self, sqls: &[&str]) -> Result<(), Error> {
        for sql in sqls {
            self.statement(sql).await?;
        }
        Ok(())
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Statement>> {
        self.statements.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A statement whose plan the server refuses (its tables changed since it was prepared:
    /// "cached plan must not change result type") is prepared again next time.
    fn forget_on<T>(&self, sql: &str, out: Result<T, Error>) -> Result<T, Error> {
        if let Err(e) = &out
            && e.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED)
        {
            self.cache().remove(sql);
        }
        out
    }

    pub async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, Error> {
        let s = self.statement(sql).await?;
        let out = self.client.query(&s, params).await;
        self.forget_on(sql, out)
    }

    pub async fn query_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, Error> {
        let s = self.statement(sql).await?;
        let out = self.client.query_one(&s, params).await;
        self.forget_on(sql, out)
    }

    pub async fn query_opt(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>, Error> {
        let s = self.statement(sql).await?;
        let out = self.client.query_opt(&s, params).await;
        self.forget_on(sql, out)
    }

    pub async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, Error> {
        let s = self.statement(sql).await?;
        let out = self.client.execute(&s, params).await;
        self.forget_on(sql, out)
    }

    /// Statements as text in the simple protocol (no parameters, nothing cached).
    pub async fn batch_execute(&self, sql: &str) -> Result<(), Error> {
        self.client.batch_execute(sql).await
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

/// A statement's run waiting in a pipeline.
pub type Pending<'a, T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'a>>;

/// Runs `futures` together, each first polled in the order given, and returns their outputs
/// in that order, or the first error. Futures that each run one prepared statement (see
/// [`Conn::prepare_all`]) are so pipelined: sent in this order, answered in one round trip.
pub async fn pipeline_all<T, E>(futures: Vec<Pending<'_, T, E>>) -> Result<Vec<T>, E> {
    let mut futures = futures;
    let mut out: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futures.iter_mut().zip(out.iter_mut()) {
            if o.is_some() {
                continue;
            }
            match f.as_mut().poll(cx) {
                Poll::Ready(Ok(v)) => *o = Some(v),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => pending = true,
            }
        }
        if pending { Poll::Pending } else { Poll::Ready(Ok(())) }
    })
    .await?;
    Ok(out.into_iter().flatten().collect())
}

/// A checked-out client; back to the pool when dropped.
#[derive(Debug)]
pub struct Pooled {
    client: Option<Conn>,
    /// A transaction was begun and not yet ended on this client.
    in_tx: bool,
    pool: Arc<Pool>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Pooled {
    pub fn client(&self) -> &Conn {
        self.client.as_ref().expect("a pooled client is present until dropped")
    }

    /// Marks whether a transaction is open on this client (set after `BEGIN`, cleared after
    /// `COMMIT`/`ROLLBACK`), so that dropping the guard rolls it back.
    pub fn set_in_tx(&mut self, open: bool) {
        self.in_tx = open;
    }

    /// Whether the guard counts a transaction open on its client.
    pub fn in_tx(&self) -> bool {
        self.in_tx
    }

    /// Runs the reads of `f` in one read-only snapshot (`REPEATABLE READ READ ONLY`), so that
    /// rows a concurrent unit of work moves between tables are seen once, before or after.
    /// An error of `f` rolls the snapshot back at once and is returned; a failed `ROLLBACK` or
    /// `COMMIT`, or a caller that stops waiting midway, leaves the guard marked, and dropping
    /// it rolls back (or discards the client) before anyone else gets it.
    pub async fn read_snapshot<'a, T, F, Fut>(&'a mut self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&'a Conn) -> Fut,
        Fut: Future<Output = StoreResult<T>>,
    {
        // Marked first: a BEGIN cut short may still open the transaction.
        self.in_tx = true;
        let conn: &'a Conn = self.client.as_ref().expect("a pooled client is present until dropped");
        conn.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(|e| codec::db_in(e, "beginning a read-only snapshot"))?;
        let out = f(conn).await;
        let end = if out.is_ok() { "COMMIT" } else { "ROLLBACK" };
        conn.batch_execute(end)
            .await
            .map_err(|e| codec::db_in(e, "ending a read-only snapshot"))?;
        self.in_tx = false;
        out
    }
}

impl std::ops::Deref for Pooled {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.client()
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let permit = self.permit.take();
        if !self.in_tx {
            self.pool.put_back(client);
            drop(permit);
            return;
        }
        // Roll back before anyone else gets this client; the permit is held until then, so
        // the pool never hands out more than its size.
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return; // no runtime: the client (and its transaction) is discarded
        };
        let pool = Arc::clone(&self.pool);
        handle.spawn(async move {
            match client.batch_execute("ROLLBACK").await {
                Ok(()) => pool.put_back(client),
                Err(error) => {
                    tracing::warn!(%error, "rolling back an abandoned unit of work failed; connection dropped")
                }
            }
            drop(permit);
        });
    }
}
