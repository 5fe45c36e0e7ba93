//! The collector's recurring operational events, each logged and counted here, in one place.
//!
//! Every function below emits one event: a `tracing` line with fields first and a constant
//! message, and the matching counter of [`Metrics`] for `/metrics`. Call sites never log or
//! count these events themselves, so the log and the counters cannot drift apart (vector's
//! `internal_events` pattern).

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters for `/metrics`. Each is incremented by the event function of the same name.
#[derive(Debug, Default)]
pub struct Metrics {
    pub enrollments: AtomicU64,
    pub enrollments_refused: AtomicU64,
    pub heartbeats: AtomicU64,
    pub reports_stored: AtomicU64,
    pub reports_duplicate: AtomicU64,
    pub reports_rejected: AtomicU64,
    pub observations_stored: AtomicU64,
    pub observations_future_dated: AtomicU64,
    pub logins: AtomicU64,
    pub logins_failed: AtomicU64,
    pub evaluations: AtomicU64,
    pub evaluations_failed: AtomicU64,
    pub changes_published: AtomicU64,
    pub consumer_lagged: AtomicU64,
    // --- Security (issue 15) ---
    /// Argon2 password checks run by dashboard log-ins (real or against the dummy hash).
    pub password_checks: AtomicU64,
    // --- Retention (issue 17) ---
    /// Raw observations and hourly rollups folded into coarser rollups (and removed).
    pub retention_rolled_up: AtomicU64,
    /// Records and expired leases removed by retention (without a rollup).
    pub retention_removed: AtomicU64,
    /// Retention runs that failed.
    pub retention_failed: AtomicU64,
    /// When this collector last finished a retention run, seconds since the epoch (0: never).
    pub retention_last_run: AtomicU64,
}

impl Metrics {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text exposition of the counters.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let rows: [(&str, &str, &AtomicU64); 14] = [
            ("rounds_enrollments_total", "Agents enrolled.", &self.enrollments),
            (
                "rounds_enrollments_refused_total",
                "Enrollment attempts refused.",
                &self.enrollments_refused,
            ),
            ("rounds_heartbeats_total", "Heartbeats received.", &self.heartbeats),
            ("rounds_reports_stored_total", "Reports stored.", &self.reports_stored),
            (
                "rounds_reports_duplicate_total",
                "Reports received again and acknowledged without storing.",
                &self.reports_duplicate,
            ),
            (
                "rounds_reports_rejected_total",
                "Agent requests rejected (bad body, auth, version).",
                &self.reports_rejected,
            ),
            (
                "rounds_observations_stored_total",
                "Observations received in stored reports.",
                &self.observations_stored,
            ),
            (
                "rounds_observations_future_dated_total",
                "Observations dated beyond the allowed clock skew, stored with the receive time.",
                &self.observations_future_dated,
            ),
            ("rounds_logins_total", "Successful dashboard logins.", &self.logins),
            (
                "rounds_logins_failed_total",
                "Failed dashboard logins.",
                &self.logins_failed,
            ),
            (
                "rounds_evaluations_total",
                "Policy evaluations of an agent whose findings were stored.",
                &self.evaluations,
            ),
            (
                "rounds_evaluations_failed_total",
                "Policy evaluations that could not run or whose findings could not be stored.",
                &self.evaluations_failed,
            ),
            (
                "rounds_changes_published_total",
                "Changes published on the in-process change stream.",
                &self.changes_published,
            ),
            (
                "rounds_change_consumer_lagged_total",
                "Changes a slow change-stream subscriber missed because it lagged.",
                &self.consumer_lagged,
            ),
        ];
        for (name, help, v) in rows {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                v.load(Ordering::Relaxed)
            ));
        }
        // Retention (issue 17).
        let retention: [(&str, &str, &str, &AtomicU64); 4] = [
            (
                "rounds_retention_rows_rolled_up_total",
                "counter",
                "Raw observations and hourly rollups retention folded into coarser rollups and removed.",
                &self.retention_rolled_up,
            ),
            (
                "rounds_retention_rows_removed_total",
                "counter",
                "Records (finding history, incidents, issued reports, audit log) and expired leases retention removed.",
                &self.retention_removed,
            ),
            (
                "rounds_retention_runs_failed_total",
                "counter",
                "Retention runs that failed.",
                &self.retention_failed,
            ),
            (
                "rounds_retention_last_run_timestamp_seconds",
                "gauge",
                "When this collector last finished a retention run (0: never).",
                &self.retention_last_run,
            ),
        ];
        for (name, kind, help, v) in retention {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}\n",
                v.load(Ordering::Relaxed)
            ));
        }
        out
    }
}

/// An agent enrolled.
pub fn enrolled(m: &Metrics, agent_id: &str, hostname: &str, practice: &str, site: &str) {
    Metrics::inc(&m.enrollments);
    tracing::info!(agent_id, hostname, practice, site, "agent enrolled");
}

/// An enrollment was refused.
pub fn enrollment_refused(m: &Metrics, hostname: &str, reason: &dyn std::fmt::Display) {
    Metrics::inc(&m.enrollments_refused);
    tracing::warn!(hostname, %reason, "enrollment refused");
}

/// A heartbeat arrived.
pub fn heartbeat(m: &Metrics, agent_id: &str, clock_skew_ms: i64) {
    Metrics::inc(&m.heartbeats);
    tracing::debug!(agent_id, clock_skew_ms, "heartbeat");
}

/// A report was stored.
pub fn report_stored(m: &Metrics, agent_id: &str, sequence: u64, observations: usize, future_dated: usize) {
    Metrics::inc(&m.reports_stored);
    m.observations_stored.fetch_add(observations as u64, Ordering::Relaxed);
    m.observations_future_dated
        .fetch_add(future_dated as u64, Ordering::Relaxed);
    if future_dated > 0 {
        tracing::warn!(
            agent_id,
            sequence,
            observations,
            future_dated,
            "report stored with future-dated observations"
        );
    } else {
        tracing::info!(agent_id, sequence, observations, "report stored");
    }
}

/// A report was received again and acknowledged without storing.
pub fn report_duplicate(m: &Metrics, agent_id: &str, sequence: u64) {
    Metrics::inc(&m.reports_duplicate);
    tracing::info!(agent_id, sequence, "report already stored");
}

/// An agent request (report, heartbeat, enrollment body) was refused, and why.
pub fn report_refused(m: &Metrics, agent_id: Option<&str>, reason: &dyn std::fmt::Display) {
    Metrics::inc(&m.reports_rejected);
    let reason = crate::security::echo::capped_message(&reason.to_string());
    tracing::warn!(agent_id, %reason, "agent request refused");
}

/// A dashboard login succeeded.
pub fn login(m: &Metrics, username: &str, role: &str) {
    Metrics::inc(&m.logins);
    tracing::info!(username, role, "dashboard login");
}

/// A dashboard login failed (`throttled`: refused before checking the password).
pub fn login_failed(m: &Metrics, username: &str, throttled: bool) {
    Metrics::inc(&m.logins_failed);
    tracing::warn!(username, throttled, "dashboard login failed");
}

/// An agent was evaluated and its findings stored.
pub fn evaluated(m: &Metrics, agent_id: &str, pass: usize, fail: usize, error: usize, changes: usize) {
    Metrics::inc(&m.evaluations);
    tracing::info!(agent_id, pass, fail, error, changes, "agent evaluated");
}

/// An evaluation failed, or ran with the built-in policy because the stored settings did not
/// build.
pub fn evaluation_failed(m: &Metrics, agent_id: &str, error: &dyn std::fmt::Display) {
    Metrics::inc(&m.evaluations_failed);
    tracing::error!(agent_id, %error, "agent evaluation failed");
}

/// A change was published on the change stream (`receivers`: how many subscribers got it).
pub fn change_published(m: &Metrics, kind: &'static str, receivers: usize) {
    Metrics::inc(&m.changes_published);
    tracing::trace!(kind, receivers, "change published");
}

/// A change-stream subscriber lagged and missed `missed` changes.
pub fn consumer_lagged(m: &Metrics, consumer: &str, missed: u64) {
    m.consumer_lagged.fetch_add(missed, Ordering::Relaxed);
    tracing::warn!(consumer, missed, "change stream consumer lagged");
}

// --- Alerting (issue 12) ---

/// A notification was delivered to a channel.
pub fn alert_sent(source: &str, channel: &str, kind: &str) {
    tracing::info!(source, channel, kind, "alert sent");
}

/// A delivery attempt of a notification failed (it is retried or given up).
pub fn alert_failed(source: &str, channel: &str, error: &str) {
    tracing::warn!(source, channel, error, "alert delivery failed");
}

// --- Retention (issue 17) ---

/// A retention run finished.
pub fn retention_ran(
    m: &Metrics,
    rolled_up: u64,
    removed: u64,
    rollups_written: u64,
    at: chrono::DateTime<chrono::Utc>,
) {
    m.retention_rolled_up.fetch_add(rolled_up, Ordering::Relaxed);
    m.retention_removed.fetch_add(removed, Ordering::Relaxed);
    m.retention_last_run
        .store(at.timestamp().max(0) as u64, Ordering::Relaxed);
    tracing::info!(rolled_up, removed, rollups_written, "retention run finished");
}

/// A retention run failed (what it committed before stays; the next run goes on from there).
pub fn retention_failed(m: &Metrics, error: &dyn std::fmt::Display) {
    Metrics::inc(&m.retention_failed);
    tracing::error!(%error, "retention run failed");
}

/// Retention did not run here: another collector holds its lease.
pub fn retention_skipped(lease: &str, holder: &str) {
    tracing::debug!(lease, holder, "retention lease held by another collector");
}
