//! Group commit: the units of work of many requests (many agents) committed together in one
//! SQLite transaction, so one WAL sync serves them all.
//!
//! A caller enqueues its unit (a closure over the writer connection) and then takes the
//! writer. Whoever holds the writer drains the whole queue: `BEGIN IMMEDIATE`, each unit in its
//! own `SAVEPOINT` (a unit that fails, or decides not to keep its writes, is rolled back to its
//! savepoint and does not touch the others), one `COMMIT`. Each caller is answered only after
//! the commit that made its unit durable (or with the error of that commit), so an
//! acknowledgement still means "stored". A caller whose unit was drained by an earlier holder
//! finds the queue empty and just waits for its answer. There is no background task: batching
//! comes from callers queueing behind the writer while a batch is written.
//!
//! Order: units run in the order they were enqueued; a caller that needs its units in order
//! (one agent's reports) enqueues the next one after the previous was answered, as the
//! per-agent delivery does. A unit whose caller went away before it ran is skipped.

use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::codec::db;
use crate::store::{DbErrorKind, StoreError, StoreResult};

/// Largest number of units in one transaction (bounds the time the write lock is held).
pub const MAX_GROUP: usize = 256;

/// What a unit decided: its value, and whether its writes are kept.
pub struct Done<T> {
    pub value: T,
    pub keep: bool,
}

impl<T> Done<T> {
    /// Keep the writes.
    pub fn keep(value: T) -> Self {
        Done { value, keep: true }
    }

    /// Roll the unit's writes back (a refused delivery), still answering `value`.
    pub fn discard(value: T) -> Self {
        Done { value, keep: false }
    }
}

trait Unit: Send {
    /// Whether nobody waits for the answer any more.
    fn abandoned(&self) -> bool;
    /// Runs inside the group's transaction; returns whether its writes are kept.
    fn run(&mut self, c: &Connection) -> bool;
    /// Answers the caller once the group committed (`None`) or failed to (`Some(why)`).
    fn answer(self: Box<Self>, commit_failed: Option<&(DbErrorKind, String)>);
}

struct Job<T, F> {
    f: Option<F>,
    out: Option<StoreResult<T>>,
    reply: oneshot::Sender<StoreResult<T>>,
}

impl<T, F> Unit for Job<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> StoreResult<Done<T>> + Send + 'static,
{
    fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }

    fn run(&mut self, c: &Connection) -> bool {
        let Some(f) = self.f.take() else { return false };
        let (out, keep) = match f(c) {
            Ok(Done { value, keep }) => (Ok(value), keep),
            Err(e) => (Err(e), false),
        };
        self.out = Some(out);
        keep
    }

    fn answer(self: Box<Self>, commit_failed: Option<&(DbErrorKind, String)>) {
        let out = match (commit_failed, self.out) {
            (Some((kind, why)), Some(Ok(_))) => Err(StoreError::message(
                *kind,
                "committing a group of units of work",
                why.clone(),
            )),
            (_, Some(out)) => out,
            (_, None) => Err(StoreError::message(
                DbErrorKind::Other,
                "running a unit of work",
                "the unit was not run",
            )),
        };
        let _ = self.reply.send(out);
    }
}

/// The queue of units waiting for the writer.
#[derive(Default)]
pub struct GroupCommit {
    queue: Mutex<Vec<Box<dyn Unit>>>,
    /// Groups committed and units in them (for the benchmark's report and tests).
    groups: std::sync::atomic::AtomicU64,
    units: std::sync::atomic::AtomicU64,
    /// Time spent writing groups, in microseconds (the benchmark's writer occupancy).
    busy_us: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("groups", &self.groups)
            .field("units", &self.units)
            .finish_non_exhaustive()
    }
}

impl GroupCommit {
    /// Runs `f` as one unit of a group on the writer `conn`, answered after its group committed.
    pub async fn submit<T, F>(self: &Arc<Self>, conn: &Arc<tokio::sync::Mutex<Connection>>, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<Done<T>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.lock_queue().push(Box::new(Job {
            f: Some(f),
            out: None,
            reply,
        }));
        let mut answer = answer;
        let unanswered = || {
            StoreError::message(
                DbErrorKind::Other,
                "running a unit of work",
                "the unit was dropped unanswered",
            )
        };
        loop {
            // Answered while waiting for the writer (an earlier holder ran this unit): return
            // at once rather than queueing for the writer only to find the answer there, which
            // after a large group cost a hand-off of the lock per answered caller.
            let guard = tokio::select! {
                biased;
                out = &mut answer => return out.unwrap_or_else(|_| Err(unanswered())),
                guard = Arc::clone(conn).lock_owned() => guard,
            };
            match answer.try_recv() {
                Ok(out) => return out,
                Err(oneshot::error::TryRecvError::Closed) => return Err(unanswered()),
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let units: Vec<Box<dyn Unit>> = {
                let mut q = self.lock_queue();
                let n = q.len().min(MAX_GROUP);
                q.drain(..n).collect()
            };
            if !units.is_empty() {
                let this = Arc::clone(self);
                let (_guard, _) = super::blocking(guard, move |c| {
                    this.write(c, units);
                    Ok(())
                })
                .await?;
            }
            match answer.try_recv() {
                Ok(out) => return out,
                Err(oneshot::error::TryRecvError::Closed) => return Err(unanswered()),
                // Still queued (more than one group's worth ahead of it): take the writer again.
                Err(oneshot::error::TryRecvError::Empty) => continue,
            }
        }
    }

    /// Units waiting for the writer.
    pub fn queued(&self) -> usize {
        self.lock_queue().len()
    }

    /// Groups and units committed so far.
    pub fn counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.groups.load(Relaxed), self.units.load(Relaxed))
    }

    /// Time spent writing groups so far (from the first `BEGIN` to the last answer of each).
    pub fn busy(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.busy_us.load(std::sync::atomic::Ordering::Relaxed))
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Vec<Box<dyn Unit>>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One transaction over `units`, each in a savepoint; then every caller is answered.
    fn write(&self, c: &Connection, units: Vec<Box<dyn Unit>>) {
        let started = std::time::Instant::now();
        let mut units: Vec<Box<dyn Unit>> = units.into_iter().filter(|u| !u.abandoned()).collect();
        if units.is_empty() {
            return;
        }
        let failed = |e: rusqlite::Error| (super::codec::kind(&e), e.to_string());
        let mut commit_failed = None;
        if !c.is_autocommit()
            && let Err(e) = c.execute_batch("ROLLBACK")
        {
            commit_failed = Some(failed(e));
        }
        if commit_failed.is_none()
            && let Err(e) = c.execute_batch("BEGIN IMMEDIATE")
        {
            commit_failed = Some(failed(e));
        }
        if commit_failed.is_none() {
            // Prepared once per connection: every unit opens and releases its savepoint.
            let step = |sql: &str| c.prepare_cached(sql).and_then(|mut s| s.execute([])).map(drop);
            for u in &mut units {
                if let Err(e) = step("SAVEPOINT unit") {
                    commit_failed = Some(failed(e));
                    break;
                }
                let keep = u.run(c);
                let end = if keep {
                    step("RELEASE unit")
                } else {
                    step("ROLLBACK TO unit").and_then(|()| step("RELEASE unit"))
                };
                if let Err(e) = end {
                    commit_failed = Some(failed(e));
                    break;
                }
            }
        }
        if commit_failed.is_none()
            && let Err(e) = c.execute_batch("COMMIT")
        {
            commit_failed = Some(failed(e));
        }
        if commit_failed.is_some()
            && !c.is_autocommit()
            && let Err(error) = c.execute_batch("ROLLBACK").map_err(db)
        {
            tracing::error!(%error, "rolling back a group of units of work failed");
        }
        if commit_failed.is_none() {
            use std::sync::atomic::Ordering::Relaxed;
            self.groups.fetch_add(1, Relaxed);
            self.units.fetch_add(units.len() as u64, Relaxed);
        }
        for u in units {
            u.answer(commit_failed.as_ref());
        }
        let busy = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.busy_us.fetch_add(busy, std::sync::atomic::Ordering::Relaxed);
    }
}
