//! A small pool of PostgreSQL connections: at most `size` clients, each with its connection
//! task spawned, made when first needed and kept while they work. A checkout is an owned
//! [`Pooled`] guard; a guard dropped inside an open transaction rolls it back (on a spawned
//! task) before its client is used again, and a client whose connection broke is discarded.

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, Config, NoTls};

use super::codec;
use crate::store::{DbErrorKind, StoreError, StoreResult};

/// The pool.
#[derive(Debug)]
pub struct Pool {
    config: Config,
    /// What errors name: the URL with its password replaced.
    shown: String,
    idle: Mutex<Vec<Client>>,
    permits: Arc<Semaphore>,
}

impl Pool {
    /// A pool of at most `size` connections to `config` (nothing is connected yet).
    pub fn new(config: Config, shown: String, size: usize) -> Arc<Self> {
        Arc::new(Pool {
            config,
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
    pub async fn connect(&self) -> StoreResult<Client> {
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| codec::db_in(e, format!("connecting to {}", self.shown)))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "a PostgreSQL connection ended");
            }
        });
        Ok(client)
    }

    fn put_back(&self, client: Client) {
        if !client.is_closed() {
            self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(client);
        }
    }
}

/// A checked-out client; back to the pool when dropped.
#[derive(Debug)]
pub struct Pooled {
    client: Option<Client>,
    /// A transaction was begun and not yet ended on this client.
    in_tx: bool,
    pool: Arc<Pool>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Pooled {
    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("a pooled client is present until dropped")
    }

    /// Marks whether a transaction is open on this client (set after `BEGIN`, cleared after
    /// `COMMIT`/`ROLLBACK`), so that dropping the guard rolls it back.
    pub fn set_in_tx(&mut self, open: bool) {
        self.in_tx = open;
    }
}

impl std::ops::Deref for Pooled {
    type Target = Client;
    fn deref(&self) -> &Client {
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
