//! Retention (issue 17): what both backends share of rolling up and pruning history. The
//! stored shapes ([`Rollup`], [`RawObservation`], [`RecordKind`], [`RetentionCutoffs`],
//! [`StorageReport`]), the folding of observations into buckets, the merge of rollups into
//! the observation history the reports read, and the SQL both backends run (written with
//! SQLite's `?N` placeholders; [`pg`] turns them into PostgreSQL's `$N`), so that the two
//! cannot drift apart in what they select, keep or remove.
//!
//! Invariants: the newest observation row of an (agent, kind, subject), the current state,
//! is never rolled up nor removed, whatever its age; a rollup and the removal of the raw rows
//! it summarises commit in the same unit of work; merging a rollup into a stored bucket is
//! the same whatever order the rows arrive in (counts add, the earliest first and the latest
//! last stay).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rounds_protocol::{Observation, ObservationStatus};
use serde::Serialize;

use super::codec::{from_ms, ms};
use super::{DbErrorKind, StoreError, StoreResult, StoredObservation};

/// The size of a rollup's bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    Hour,
    Day,
}

impl Bucket {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Hour => "hour",
            Bucket::Day => "day",
        }
    }

    /// From the stored name.
    pub fn parse(s: &str) -> StoreResult<Bucket> {
        match s {
            "hour" => Ok(Bucket::Hour),
            "day" => Ok(Bucket::Day),
            other => Err(StoreError::message(
                DbErrorKind::Corrupt,
                "reading observation_rollups",
                format!("unknown bucket `{other}`"),
            )),
        }
    }

    /// The bucket's length in milliseconds.
    pub fn millis(self) -> i64 {
        match self {
            Bucket::Hour => 3_600_000,
            Bucket::Day => 86_400_000,
        }
    }

    /// The first instant of the bucket holding `at`.
    pub fn start_of(self, at: DateTime<Utc>) -> DateTime<Utc> {
        from_ms(ms(at).div_euclid(self.millis()) * self.millis())
    }
}

/// One observation as a rollup keeps it (the first or the last of its bucket), encoded as
/// stored (status name, payload JSON text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolledObservation {
    pub sequence: u64,
    pub observed_at: DateTime<Utc>,
    pub status: String,
    pub data: String,
    pub error: Option<String>,
}

impl RolledObservation {
    /// Order in a bucket: by time, then sequence.
    fn key(&self) -> (DateTime<Utc>, u64) {
        (self.observed_at, self.sequence)
    }
}

/// The observation rows of one (agent, kind, subject) in one bucket, summarised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollup {
    pub agent_id: String,
    pub kind: String,
    pub subject: String,
    pub bucket: Bucket,
    pub bucket_start: DateTime<Utc>,
    /// How many observation rows (payload changes) it summarises.
    pub count: u64,
    pub first: RolledObservation,
    pub last: RolledObservation,
}

impl Rollup {
    /// Takes in `other`, of the same bucket: counts add, the earlier first and the later last stay.
    fn absorb(&mut self, other: Rollup) {
        self.count += other.count;
        if other.first.key() < self.first.key() {
            self.first = other.first;
        }
        if other.last.key() >= self.last.key() {
            self.last = other.last;
        }
    }

    /// The observations it keeps, as the history gives them: the first, and the last when it
    /// is another row.
    fn observations(&self) -> StoreResult<Vec<StoredObservation>> {
        let mut out = vec![self.stored(&self.first)?];
        if self.count > 1 && self.last.key() != self.first.key() {
            out.push(self.stored(&self.last)?);
        }
        Ok(out)
    }

    fn stored(&self, o: &RolledObservation) -> StoreResult<StoredObservation> {
        Ok(StoredObservation {
            agent_id: self.agent_id.clone(),
            sequence: o.sequence,
            confirmed_at: None,
            future_dated: false,
            observation: Observation {
                kind: self.kind.clone(),
                subject: self.subject.clone(),
                observed_at: o.observed_at,
                status: if o.status == "ok" {
                    ObservationStatus::Ok
                } else {
                    ObservationStatus::Error
                },
                data: serde_json::from_str(&o.data)
                    .map_err(|e| StoreError::database(DbErrorKind::Corrupt, "decoding a rolled-up observation", e))?,
                error: o.error.clone(),
            },
        })
    }
}

/// A raw observation row due to be rolled up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawObservation {
    pub id: i64,
    pub agent_id: String,
    pub kind: String,
    pub subject: String,
    pub observation: RolledObservation,
}

/// A stored rollup with its row id (an hourly one due to become part of a daily one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRollup {
    pub id: i64,
    pub rollup: Rollup,
}

/// Hourly rollups of raw rows, one per (agent, kind, subject, hour).
pub fn fold_raw(rows: &[RawObservation]) -> Vec<Rollup> {
    fold(rows.iter().map(|r| Rollup {
        agent_id: r.agent_id.clone(),
        kind: r.kind.clone(),
        subject: r.subject.clone(),
        bucket: Bucket::Hour,
        bucket_start: Bucket::Hour.start_of(r.observation.observed_at),
        count: 1,
        first: r.observation.clone(),
        last: r.observation.clone(),
    }))
}

/// Daily rollups of hourly ones, one per (agent, kind, subject, day).
pub fn fold_hourly(rows: &[StoredRollup]) -> Vec<Rollup> {
    fold(rows.iter().map(|r| Rollup {
        bucket: Bucket::Day,
        bucket_start: Bucket::Day.start_of(r.rollup.bucket_start),
        ..r.rollup.clone()
    }))
}

fn fold(rollups: impl Iterator<Item = Rollup>) -> Vec<Rollup> {
    type Key = (String, String, String, DateTime<Utc>);
    let mut out: BTreeMap<Key, Rollup> = BTreeMap::new();
    for r in rollups {
        let key = (r.agent_id.clone(), r.kind.clone(), r.subject.clone(), r.bucket_start);
        match out.get_mut(&key) {
            Some(have) => have.absorb(r),
            None => {
                out.insert(key, r);
            }
        }
    }
    out.into_values().collect()
}

/// The observation history of a period from the raw rows and the rollups read for it: what
/// was observed in `from..to`, and for each (kind, subject) the newest observation before
/// `from`, oldest first. `raw` holds the raw rows in the period and the newest raw row before
/// it per subject; `rollups` those overlapping the period and the newest before it per subject.
pub fn merge_history(
    raw: Vec<StoredObservation>,
    rollups: &[Rollup],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> StoreResult<Vec<StoredObservation>> {
    let mut all = raw;
    for r in rollups {
        all.extend(r.observations()?);
    }
    let mut before: BTreeMap<(String, String), StoredObservation> = BTreeMap::new();
    let mut out = Vec::new();
    for o in all {
        let at = o.observation.observed_at;
        if at >= to {
            continue;
        }
        if at >= from {
            out.push(o);
            continue;
        }
        let key = (o.observation.kind.clone(), o.observation.subject.clone());
        let newer = before
            .get(&key)
            .is_none_or(|b| (b.observation.observed_at, b.sequence) < (at, o.sequence));
        if newer {
            before.insert(key, o);
        }
    }
    out.extend(before.into_values());
    out.sort_by(|a, b| {
        (
            a.observation.observed_at,
            &a.observation.kind,
            &a.observation.subject,
            a.sequence,
        )
            .cmp(&(
                b.observation.observed_at,
                &b.observation.kind,
                &b.observation.subject,
                b.sequence,
            ))
    });
    Ok(out)
}

/// Records kept `records_years` (HIPAA 164.316(b)(2)(i)), removed in batches when older.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// Finding history recorded before the cutoff, except the change in force per (agent,
    /// rule) (the newest one, unless it retired the finding).
    FindingChanges,
    /// Incidents resolved before the cutoff, with their timeline and notifications (an
    /// incident with a child that stays, stays too).
    Incidents,
    /// Reports issued before the cutoff, with their delivery attempts.
    IssuedReports,
    /// Audit-log entries made before the cutoff.
    AuditLog,
    /// Job leases expired before the cutoff (a week ago): nobody holds them.
    ExpiredLeases,
}

impl RecordKind {
    /// Every kind, in the order a run removes them.
    pub const ALL: [RecordKind; 5] = [
        RecordKind::FindingChanges,
        RecordKind::Incidents,
        RecordKind::IssuedReports,
        RecordKind::AuditLog,
        RecordKind::ExpiredLeases,
    ];
}

/// The cutoffs of one retention run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionCutoffs {
    /// Raw observations observed before this (an hour boundary) are rolled up.
    pub observations_before: DateTime<Utc>,
    /// Hourly rollups of hours before this (a day boundary) become daily ones.
    pub hourly_before: DateTime<Utc>,
    /// Records (see [`RecordKind`]) older than this are removed.
    pub records_before: DateTime<Utc>,
    /// Job leases expired before this are removed.
    pub leases_before: DateTime<Utc>,
}

impl RetentionCutoffs {
    /// The cutoff of one kind of records.
    pub fn of(&self, kind: RecordKind) -> DateTime<Utc> {
        match kind {
            RecordKind::ExpiredLeases => self.leases_before,
            _ => self.records_before,
        }
    }
}

/// Rows of a table removed (or that would be).
pub type TableRows = (&'static str, u64);

/// The size of one table (its indexes included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableSize {
    pub table: String,
    /// Rows; `None` where the backend gives no figure (a PostgreSQL table never analysed).
    pub rows: Option<u64>,
    /// Bytes on disk; `None` where the backend cannot tell per table.
    pub bytes: Option<u64>,
}

/// The storage of the store, per table, and how it was measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StorageReport {
    /// How the sizes were measured, in words (`dbstat`, a page-count estimate, `pg_total_relation_size`).
    pub method: String,
    /// The whole database, in bytes.
    pub total_bytes: u64,
    /// Largest first.
    pub tables: Vec<TableSize>,
}

// --- SQL shared by both backends (`?N` placeholders; [`pg`] for PostgreSQL) ---

/// `o` is an observation row that is not the newest of its (agent, kind, subject).
const SUPERSEDED: &str = "EXISTS (SELECT 1 FROM observations n
     WHERE n.agent_id = o.agent_id AND n.kind = o.kind AND n.subject = o.subject
       AND n.sequence >= o.sequence AND n.id <> o.id AND (n.sequence > o.sequence OR n.id > o.id))";

/// Raw rows to roll up: observed before ?1, after the cursor (?2 time, ?3 id), at most ?4.
pub fn select_raw() -> String {
    format!(
        "SELECT o.id, o.agent_id, o.kind, o.subject, o.sequence, o.observed_at, o.status, o.data, o.error
         FROM observations o
         WHERE o.observed_at >= ?2 AND o.observed_at < ?1 AND (o.observed_at > ?2 OR o.id > ?3) AND {SUPERSEDED}
         ORDER BY o.observed_at, o.id LIMIT ?4"
    )
}

/// How many raw rows observed before ?1 a run rolls up.
pub fn count_raw() -> String {
    format!("SELECT COUNT(*) FROM observations o WHERE o.observed_at < ?1 AND {SUPERSEDED}")
}

/// The columns of a rollup, in table order after `id`.
pub const ROLLUP_COLUMNS: &str = "agent_id, kind, subject, bucket, bucket_start, count, first_sequence, first_at, \
     first_status, first_data, first_error, last_sequence, last_at, last_status, last_data, last_error";

/// Hourly rollups of hours before ?1, oldest first, at most ?2.
pub fn select_hourly() -> String {
    format!(
        "SELECT id, {ROLLUP_COLUMNS} FROM observation_rollups WHERE bucket = 'hour' AND bucket_start < ?1
         ORDER BY bucket_start, id LIMIT ?2"
    )
}

/// How many hourly rollups of hours before ?1 a run folds into daily ones.
pub const COUNT_HOURLY: &str = "SELECT COUNT(*) FROM observation_rollups WHERE bucket = 'hour' AND bucket_start < ?1";

/// Adds one rollup (?1..?16 in [`ROLLUP_COLUMNS`] order); a stored bucket absorbs it.
pub fn merge_rollup() -> String {
    let t = "observation_rollups";
    let earlier = format!(
        "(excluded.first_at < {t}.first_at OR (excluded.first_at = {t}.first_at AND excluded.first_sequence < {t}.first_sequence))"
    );
    let later = format!(
        "(excluded.last_at > {t}.last_at OR (excluded.last_at = {t}.last_at AND excluded.last_sequence >= {t}.last_sequence))"
    );
    let pick = |cond: &str, col: &str| format!("{col} = CASE WHEN {cond} THEN excluded.{col} ELSE {t}.{col} END");
    let mut sets = vec![format!("count = {t}.count + excluded.count")];
    for col in [
        "first_sequence",
        "first_at",
        "first_status",
        "first_data",
        "first_error",
    ] {
        sets.push(pick(&earlier, col));
    }
    for col in ["last_sequence", "last_at", "last_status", "last_data", "last_error"] {
        sets.push(pick(&later, col));
    }
    format!(
        "INSERT INTO {t} ({ROLLUP_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
         ON CONFLICT (agent_id, kind, subject, bucket, bucket_start) DO UPDATE SET {}",
        sets.join(", ")
    )
}

/// A parameter's value as both backends bind it (SQLite's and PostgreSQL's `ToSql` differ, the
/// values do not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param<'a> {
    Int(i64),
    Text(&'a str),
    OptText(Option<&'a str>),
}

/// The parameters of [`merge_rollup`] for `r`, in the order of its placeholders
/// (`ROLLUP_COLUMNS`).
pub fn merge_params(r: &Rollup) -> [Param<'_>; 16] {
    use Param::{Int, OptText, Text};
    let (first, last) = (&r.first, &r.last);
    [
        Text(&r.agent_id),
        Text(&r.kind),
        Text(&r.subject),
        Text(r.bucket.as_str()),
        Int(ms(r.bucket_start)),
        Int(r.count as i64),
        Int(first.sequence as i64),
        Int(ms(first.observed_at)),
        Text(&first.status),
        Text(&first.data),
        OptText(first.error.as_deref()),
        Int(last.sequence as i64),
        Int(ms(last.observed_at)),
        Text(&last.status),
        Text(&last.data),
        OptText(last.error.as_deref()),
    ]
}

/// The rollups of agent ?1 and kind ?2 that the history of `?3..?4` reads: those with an
/// observation in the period, and per subject the newest one before it.
pub const SELECT_HISTORY_ROLLUPS: &str =
    "SELECT r.id, r.agent_id, r.kind, r.subject, r.bucket, r.bucket_start, r.count,
        r.first_sequence, r.first_at, r.first_status, r.first_data, r.first_error,
        r.last_sequence, r.last_at, r.last_status, r.last_data, r.last_error
     FROM observation_rollups r
     WHERE r.agent_id = ?1 AND r.kind = ?2 AND r.first_at < ?4
       AND (r.last_at >= ?3 OR r.id = (SELECT p.id FROM observation_rollups p
             WHERE p.agent_id = r.agent_id AND p.kind = r.kind AND p.subject = r.subject AND p.last_at < ?3
             ORDER BY p.last_at DESC, p.id DESC LIMIT 1))
     ORDER BY r.first_at, r.id";

/// Finding changes removable at cutoff ?1: recorded before it, and not the change in force
/// (a newer one exists for the agent and rule, or it retired the finding).
const FINDING_CHANGES_WHERE: &str = "c.at < ?1 AND (c.new_status IS NULL OR EXISTS (SELECT 1 FROM finding_changes n
     WHERE n.agent_id = c.agent_id AND n.rule = c.rule AND (n.at > c.at OR (n.at = c.at AND n.id > c.id))))";

/// Incidents removable at cutoff ?1: resolved before it, without a child that stays.
const INCIDENTS_WHERE: &str = "i.state = 'resolved' AND i.resolved_at < ?1 AND NOT EXISTS (SELECT 1 FROM incidents ch
     WHERE ch.parent_id = i.id AND NOT (ch.state = 'resolved' AND ch.resolved_at < ?1))";

/// Removes at most ?2 finding changes removable at ?1.
pub fn delete_finding_changes() -> String {
    format!(
        "DELETE FROM finding_changes WHERE id IN (SELECT c.id FROM finding_changes c WHERE {FINDING_CHANGES_WHERE}
         ORDER BY c.at, c.id LIMIT ?2)"
    )
}

/// Ids of at most ?2 incidents removable at ?1, oldest resolved first.
pub fn select_incidents() -> String {
    format!("SELECT i.id FROM incidents i WHERE {INCIDENTS_WHERE} ORDER BY i.resolved_at, i.id LIMIT ?2")
}

/// Ids of at most ?2 reports issued before ?1, oldest first.
pub const SELECT_ISSUED: &str = "SELECT id FROM issued_reports WHERE issued_at < ?1 ORDER BY issued_at, id LIMIT ?2";

/// Removes at most ?2 audit-log entries made before ?1.
pub const DELETE_AUDIT: &str =
    "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < ?1 ORDER BY at, id LIMIT ?2)";

/// Removes the job leases expired before ?1.
pub const DELETE_LEASES: &str = "DELETE FROM job_leases WHERE until < ?1";

/// Per table, the number of rows a run at these cutoffs removes: `(table, SQL counting them
/// with the cutoff as ?1)`, in the order a run reports them.
pub fn preview_counts() -> Vec<(&'static str, String)> {
    vec![
        ("finding_changes", format!("SELECT COUNT(*) FROM finding_changes c WHERE {FINDING_CHANGES_WHERE}")),
        (
            "incident_events",
            format!(
                "SELECT COUNT(*) FROM incident_events WHERE incident_id IN (SELECT i.id FROM incidents i WHERE {INCIDENTS_WHERE})"
            ),
        ),
        (
            "alert_outbox",
            format!(
                "SELECT COUNT(*) FROM alert_outbox WHERE incident_id IN (SELECT i.id FROM incidents i WHERE {INCIDENTS_WHERE})"
            ),
        ),
        ("incidents", format!("SELECT COUNT(*) FROM incidents i WHERE {INCIDENTS_WHERE}")),
        (
            "report_deliveries",
            "SELECT COUNT(*) FROM report_deliveries WHERE report_id IN (SELECT id FROM issued_reports WHERE issued_at < ?1)"
                .to_string(),
        ),
        ("issued_reports", "SELECT COUNT(*) FROM issued_reports WHERE issued_at < ?1".to_string()),
        ("audit_log", "SELECT COUNT(*) FROM audit_log WHERE at < ?1".to_string()),
        ("job_leases", "SELECT COUNT(*) FROM job_leases WHERE until < ?1".to_string()),
    ]
}

/// Which cutoff a table's preview count takes.
pub fn preview_cutoff(table: &str, c: &RetentionCutoffs) -> DateTime<Utc> {
    if table == "job_leases" {
        c.leases_before
    } else {
        c.records_before
    }
}

/// `sql` with SQLite's `?N` placeholders written as PostgreSQL's `$N`.
pub fn pg(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn raw(id: i64, subject: &str, seq: u64, t: &str) -> RawObservation {
        RawObservation {
            id,
            agent_id: "a".into(),
            kind: "k".into(),
            subject: subject.into(),
            observation: RolledObservation {
                sequence: seq,
                observed_at: at(t),
                status: "ok".into(),
                data: format!("{{\"n\":{seq}}}"),
                error: None,
            },
        }
    }

    #[test]
    fn raw_rows_fold_per_subject_and_hour_whatever_their_order() {
        let rows = vec![
            raw(3, "x", 3, "2026-01-01T10:50:00Z"),
            raw(1, "x", 1, "2026-01-01T10:05:00Z"),
            raw(2, "y", 2, "2026-01-01T10:10:00Z"),
            raw(4, "x", 4, "2026-01-01T11:00:00Z"),
        ];
        let out = fold_raw(&rows);
        assert_eq!(out.len(), 3, "{out:?}");
        let x10 = &out[0];
        assert_eq!((x10.subject.as_str(), x10.count), ("x", 2));
        assert_eq!(x10.bucket_start, at("2026-01-01T10:00:00Z"));
        assert_eq!((x10.first.sequence, x10.last.sequence), (1, 3));
        assert_eq!(out[1].bucket_start, at("2026-01-01T11:00:00Z"));
        assert_eq!(out[2].subject, "y");
        let daily = fold_hourly(
            &out.iter()
                .enumerate()
                .map(|(i, r)| StoredRollup {
                    id: i as i64,
                    rollup: r.clone(),
                })
                .collect::<Vec<_>>(),
        );
        assert_eq!(daily.len(), 2);
        assert_eq!(
            (daily[0].count, daily[0].first.sequence, daily[0].last.sequence),
            (3, 1, 4)
        );
        assert_eq!(daily[0].bucket_start, at("2026-01-01T00:00:00Z"));
    }

    #[test]
    fn history_keeps_the_newest_before_the_period_and_what_is_in_it() {
        let hour = fold_raw(&[
            raw(1, "x", 1, "2026-01-01T10:05:00Z"),
            raw(2, "x", 2, "2026-01-01T10:40:00Z"),
            raw(3, "x", 3, "2026-01-02T09:00:00Z"),
        ]);
        let out = merge_history(
            Vec::new(),
            &hour,
            at("2026-01-01T10:30:00Z"),
            at("2026-01-02T00:00:00Z"),
        )
        .unwrap();
        let seqs: Vec<u64> = out.iter().map(|o| o.sequence).collect();
        assert_eq!(
            seqs,
            vec![1, 2],
            "the state at the start, then what was observed in the period"
        );
    }

    #[test]
    fn placeholders_translate() {
        assert_eq!(pg("a = ?1 AND b < ?12 AND c = '?'"), "a = $1 AND b < $12 AND c = '?'");
    }
}
