//! Retention (issue 17): raw observations older than `[retention] observations_days` are rolled
//! up hourly and removed, hourly rollups older than `hourly_days` become daily ones, and the
//! records HIPAA asks to keep six years (findings' history, incidents and their timeline,
//! issued reports, the audit log) are removed once older than `records_years`.
//!
//! [`RetentionService`] owns the store and the clock. `serve` runs it every `interval_minutes`
//! under the job lease `retention` ([`RetentionService::run_every`]), so that of several
//! collectors on one database one runs it; `rounds-collector retention run` runs it once (or
//! counts what it would do, `--dry-run`). A run works in bounded batches, each one unit of
//! work: the rollup rows of a batch and the removal of the raw rows they summarise commit
//! together, so a crash mid-run leaves every row either raw or rolled up, never both or
//! neither. The current state (the newest observation of each agent, kind and subject, the
//! current findings) is never removed, whatever its age.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Months, Utc};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::RetentionSettings;
use crate::events::{self, Metrics};
use crate::store::rollup::{fold_hourly, fold_raw};
use crate::store::{Bucket, RecordKind, RetentionCutoffs, Store, StoreResult};

/// The name of the job lease a run holds.
pub const LEASE: &str = "retention";

/// Rows per unit of work unless told otherwise.
pub const DEFAULT_BATCH: u32 = 2000;

/// Job leases expired this long ago are removed (nobody holds them).
const LEASES_KEPT_DAYS: i64 = 7;

/// The tables a run reports on, in the order it reports them.
pub const TABLES: [&str; 10] = [
    "observations",
    "observation_rollups",
    "finding_changes",
    "incident_events",
    "alert_outbox",
    "incidents",
    "report_deliveries",
    "issued_reports",
    "audit_log",
    "job_leases",
];

/// What a run removed (or, for a dry run, would remove).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    pub at: DateTime<Utc>,
    pub cutoffs: RetentionCutoffs,
    pub dry_run: bool,
    /// Rows removed per table, every table of [`TABLES`] in that order. `observations` and
    /// (hourly) `observation_rollups` were rolled up before they were removed.
    pub removed: Vec<(&'static str, u64)>,
    /// Rollup rows written or merged into (not counted by a dry run).
    pub rollups_written: u64,
    /// Units of work committed.
    pub batches: u64,
}

impl RunReport {
    /// Rows of `table` removed.
    pub fn removed(&self, table: &str) -> u64 {
        self.removed.iter().find(|(t, _)| *t == table).map_or(0, |(_, n)| *n)
    }

    /// Raw observations and hourly rollups folded into coarser rollups.
    pub fn rolled_up(&self) -> u64 {
        self.removed("observations") + self.removed("observation_rollups")
    }

    /// Rows removed without being rolled up (records, expired leases).
    pub fn records_removed(&self) -> u64 {
        self.removed.iter().map(|(_, n)| n).sum::<u64>() - self.rolled_up()
    }

    /// One line per table, as `retention run` prints them.
    pub fn lines(&self) -> Vec<String> {
        let verb = if self.dry_run { "would remove" } else { "removed" };
        self.removed
            .iter()
            .map(|(table, n)| {
                let how = match *table {
                    "observations" => " (raw observations, rolled up into hourly rollups first)",
                    "observation_rollups" => " (hourly rollups, folded into daily rollups first)",
                    _ => "",
                };
                format!("{table}: {verb} {n}{how}")
            })
            .collect()
    }

    fn summary(&self) -> String {
        self.removed
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(t, n)| format!("{t} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Runs retention on a store, on the collector's clock.
#[derive(Debug, Clone)]
pub struct RetentionService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    settings: RetentionSettings,
    metrics: Arc<Metrics>,
    batch: u32,
}

impl RetentionService {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, settings: RetentionSettings) -> Self {
        RetentionService {
            store,
            clock,
            settings,
            metrics: Arc::default(),
            batch: DEFAULT_BATCH,
        }
    }

    /// Counts runs on these metrics (the server's `/metrics`).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Works in units of at most `rows` rows (tests use small ones to cross batch edges).
    pub fn with_batch(mut self, rows: u32) -> Self {
        self.batch = rows.max(1);
        self
    }

    /// The cutoffs of a run at `now`: observations on an hour boundary, hourly rollups on a
    /// day boundary (so a bucket is rolled up whole), records `records_years` calendar years back.
    pub fn cutoffs(&self, now: DateTime<Utc>) -> RetentionCutoffs {
        let s = &self.settings;
        let days = |n: u64| Duration::days(i64::try_from(n).unwrap_or(i64::MAX / 86_400_000).min(36_500));
        let years = u32::try_from(s.records_years.saturating_mul(12)).unwrap_or(u32::MAX);
        RetentionCutoffs {
            observations_before: Bucket::Hour.start_of(now - days(s.observations_days)),
            hourly_before: Bucket::Day.start_of(now - days(s.hourly_days)),
            records_before: now
                .checked_sub_months(Months::new(years))
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
            leases_before: now - Duration::days(LEASES_KEPT_DAYS),
        }
    }

    /// What a run now would remove, per table; changes nothing.
    pub async fn preview(&self) -> StoreResult<RunReport> {
        let at = self.clock.now();
        let cutoffs = self.cutoffs(at);
        let counts = self.store.retention_preview(&cutoffs).await?;
        let mut removed: BTreeMap<&'static str, u64> = BTreeMap::new();
        for (t, n) in counts {
            *removed.entry(t).or_default() += n;
        }
        Ok(RunReport {
            at,
            cutoffs,
            dry_run: true,
            removed: TABLES
                .iter()
                .map(|t| (*t, removed.get(t).copied().unwrap_or(0)))
                .collect(),
            rollups_written: 0,
            batches: 0,
        })
    }

    /// Runs once without a lease (nothing else may run retention on the store meanwhile).
    pub async fn run(&self) -> StoreResult<RunReport> {
        self.execute(None).await
    }

    /// Runs once if this `holder` gets the job lease (held `lease` past each batch);
    /// `None` when another holds it. A run that loses the lease midway stops after its
    /// current batch.
    pub async fn run_leased(&self, holder: &str, lease: std::time::Duration) -> StoreResult<Option<RunReport>> {
        let lease = Some((holder, Duration::from_std(lease).unwrap_or(Duration::hours(1))));
        if !self.holds(lease).await? {
            events::retention_skipped(LEASE, holder);
            return Ok(None);
        }
        self.execute(lease).await.map(Some)
    }

    /// Gives the lease up (the CLI, after its run), so that a collector takes it at its next tick.
    pub async fn release(&self, holder: &str) -> StoreResult<()> {
        let now = self.clock.now();
        self.store.claim_lease(LEASE, holder, now, now).await.map(|_| ())
    }

    async fn holds(&self, lease: Option<(&str, Duration)>) -> StoreResult<bool> {
        match lease {
            None => Ok(true),
            Some((holder, d)) => {
                let now = self.clock.now();
                self.store.claim_lease(LEASE, holder, now + d, now).await
            }
        }
    }

    async fn execute(&self, lease: Option<(&str, Duration)>) -> StoreResult<RunReport> {
        let at = self.clock.now();
        let cutoffs = self.cutoffs(at);
        let result = self.work(&cutoffs, lease).await;
        let (removed, rollups_written, batches) = match result {
            Ok(done) => done,
            Err(e) => {
                events::retention_failed(&self.metrics, &e);
                return Err(e);
            }
        };
        let report = RunReport {
            at,
            cutoffs,
            dry_run: false,
            removed: TABLES
                .iter()
                .map(|t| (*t, removed.get(t).copied().unwrap_or(0)))
                .collect(),
            rollups_written,
            batches,
        };
        if report.removed.iter().any(|(_, n)| *n > 0) {
            self.store
                .audit(
                    "retention",
                    "retention.run",
                    &format!("removed {}", report.summary()),
                    self.clock.now(),
                )
                .await?;
        }
        events::retention_ran(
            &self.metrics,
            report.rolled_up(),
            report.records_removed(),
            report.rollups_written,
            at,
        );
        Ok(report)
    }

    /// The run's batches: hourly rollups into daily ones first (so that what a dry run counts
    /// is what the run removes: rows rolled up hourly by this run become daily at the next),
    /// then raw observations into hourly rollups, then records.
    async fn work(
        &self,
        cutoffs: &RetentionCutoffs,
        lease: Option<(&str, Duration)>,
    ) -> StoreResult<(BTreeMap<&'static str, u64>, u64, u64)> {
        let mut removed: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut written = 0u64;
        let mut batches = 0u64;
        // Hourly into daily.
        loop {
            if !self.holds(lease).await? {
                return Ok((removed, written, batches));
            }
            let mut tx = self.store.begin().await?;
            let rows = tx.hourly_rollups_before(cutoffs.hourly_before, self.batch).await?;
            if rows.is_empty() {
                break;
            }
            let daily = fold_hourly(&rows);
            tx.merge_rollups(&daily).await?;
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            let n = tx.remove_rollups(&ids).await?;
            tx.commit().await?;
            batches += 1;
            written += daily.len() as u64;
            *removed.entry("observation_rollups").or_default() += n;
            if rows.len() < self.batch as usize {
                break;
            }
        }
        // Raw observations into hourly rollups, past the rows kept as the current state.
        let mut cursor = (DateTime::<Utc>::MIN_UTC, i64::MIN);
        loop {
            if !self.holds(lease).await? {
                return Ok((removed, written, batches));
            }
            let mut tx = self.store.begin().await?;
            let rows = tx
                .observations_to_roll_up(cutoffs.observations_before, cursor, self.batch)
                .await?;
            let Some(last) = rows.last() else {
                break;
            };
            cursor = (last.observation.observed_at, last.id);
            let hourly = fold_raw(&rows);
            tx.merge_rollups(&hourly).await?;
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            let n = tx.remove_observations(&ids).await?;
            tx.commit().await?;
            batches += 1;
            written += hourly.len() as u64;
            *removed.entry("observations").or_default() += n;
            if rows.len() < self.batch as usize {
                break;
            }
        }
        // Records.
        for kind in RecordKind::ALL {
            loop {
                if !self.holds(lease).await? {
                    return Ok((removed, written, batches));
                }
                let mut tx = self.store.begin().await?;
                let counts = tx.prune_records(kind, cutoffs.of(kind), self.batch).await?;
                tx.commit().await?;
                batches += 1;
                let principal = counts.first().map_or(0, |(_, n)| *n);
                for (t, n) in counts {
                    *removed.entry(t).or_default() += n;
                }
                if kind == RecordKind::ExpiredLeases || principal < u64::from(self.batch) {
                    break;
                }
            }
        }
        Ok((removed, written, batches))
    }

    /// Runs every `interval_minutes` under the lease until `shutdown` (the server's job).
    /// The first run is at start. The lease is held an interval past each batch, so the
    /// collector that ran keeps running it, and another takes over within an interval of its
    /// death.
    pub async fn run_every(self: Arc<Self>, holder: String, shutdown: CancellationToken) {
        let every = self.settings.interval;
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            // A failure is counted and logged (`retention_failed`); the next tick tries again.
            let _ = self.run_leased(&holder, every).await;
        }
    }
}
