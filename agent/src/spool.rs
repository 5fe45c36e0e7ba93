//! The on-disk spool: every report is written here, durably, before it counts as produced, and
//! leaves only when the collector acknowledged it.
//!
//! One append-only file, `spool.jsonl` in the state dir (mode 0600), one JSON record per line:
//!
//! | record | meaning |
//! | --- | --- |
//! | `{"op":"base","next":N,"prev_hash":H,"gaps":[..]}` | first line: next sequence, last chain hash, gaps not yet announced |
//! | `{"op":"report","priority":P,"report":{..}}` | a report, with its sequence and chain hash |
//! | `{"op":"ack","through":N}` | every report up to N was acknowledged |
//! | `{"op":"drop","sequence":N,"reason":R}` | report N was dropped without delivery (R: `spool_full`, `too_old`, `rejected`) |
//!
//! Invariants:
//! - Allocating a sequence number and appending its report are one step under one lock: the
//!   report line is written and fsynced (`sync_data`) before [`Spool::append`] returns its
//!   sequence, and the next sequence is only ever derived from the file. No sequence is used
//!   without its report; none is reused after a crash.
//! - The hash chain is computed at that step: `prev_hash` is the `hash` of the previous
//!   sequence (even if that one was later dropped), the seed [`chain_seed`] for the first report
//!   after enrollment, and `hash = hex(sha256(rounds_protocol::chain_input(&report)))`.
//! - A torn last line (a crash mid-write) is detected when the spool is opened and cut off with
//!   a warning; a failed write is truncated back at once, so the file is always whole lines.
//! - Bounded by `[spool] max_bytes` and `max_age_secs`: when a new report does not fit, routine
//!   entries are dropped (oldest first) before findings and state changes; expired entries are
//!   dropped whatever their priority. Dropped sequences are announced in the `dropped` ranges of
//!   the next report appended (part of its hash), so the collector knows the gap is explained.
//! - A write error (disk full) is returned as [`SpoolError::Write`] and kept as
//!   [`Spool::last_error`]; nothing in memory changes, and the next append tries again.
//! - When dead lines (acknowledged, dropped) outweigh live ones, the file is rewritten
//!   atomically (temporary file, fsync, rename, fsync of the directory).

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use rounds_agent_config::spool::SpoolSettings;
use rounds_protocol::{DroppedRange, Observation, PROTOCOL_MAJOR, Report};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tracing::{error, info, warn};

use crate::clock::Clock;

/// File name of the spool inside the state dir.
pub const SPOOL_FILE: &str = "spool.jsonl";

/// Dead bytes below which the file is never rewritten.
const COMPACT_MIN_DEAD_BYTES: u64 = 1 << 20;

/// How much a spooled report matters when the spool must drop something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// A check run that saw the same as the previous one: dropped first.
    Routine,
    /// A finding or a state change (a check that saw something new, a probe going down):
    /// dropped only when no routine entry is left.
    Important,
}

/// Why the spool could not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SpoolError {
    #[error("cannot write the spool {path}: {detail}")]
    Write { path: PathBuf, detail: String },
    #[error("cannot read the spool {path}: {detail}")]
    Read { path: PathBuf, detail: String },
    #[error("the spool {path} is corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("a report of {bytes} bytes does not fit in a spool of at most {max_bytes} bytes")]
    TooLarge { bytes: u64, max_bytes: u64 },
}

/// The seed of an agent's hash chain: `prev_hash` of its first report after enrollment,
/// `hex(sha256("rounds-chain-seed:" + agent_id))`.
pub fn chain_seed(agent_id: &str) -> String {
    sha256_hex(format!("rounds-chain-seed:{agent_id}").as_bytes())
}

/// The chain hash of a report: `hex(sha256(chain_input(report)))`.
pub fn report_hash(report: &Report) -> String {
    sha256_hex(&rounds_protocol::chain_input(report))
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Record {
    Base {
        next: u64,
        prev_hash: String,
        #[serde(default)]
        gaps: Vec<DroppedRange>,
    },
    Report {
        priority: Priority,
        report: Report,
    },
    Ack {
        through: u64,
    },
    Drop {
        sequence: u64,
        reason: String,
    },
}

impl Record {
    fn line(&self) -> Vec<u8> {
        // Serializing plain data cannot fail.
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

/// One undelivered report, located in the file.
#[derive(Debug, Clone)]
struct Entry {
    sequence: u64,
    priority: Priority,
    created_at: DateTime<Utc>,
    offset: u64,
    len: u64,
}

/// A spooled report on its way out.
#[derive(Debug, Clone)]
pub struct Pending {
    pub report: Report,
    /// Its size in the spool, about its size on the wire.
    pub bytes: u64,
}

/// What a look at the spool shows, for `status` and heartbeats.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SpoolSummary {
    /// Reports waiting for delivery.
    pub depth: u64,
    /// When the oldest of them was produced.
    pub oldest: Option<DateTime<Utc>>,
    /// The sequence number the next report gets.
    pub next_sequence: u64,
    /// Bytes of undelivered reports.
    pub bytes: u64,
}

/// How to open a spool.
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    /// The state dir.
    pub dir: PathBuf,
    /// The enrolled agent's id (written into every report, and the chain seed).
    pub agent_id: String,
    pub settings: SpoolSettings,
    /// The first sequence number when the spool file does not exist yet (an agent upgraded
    /// from one without a spool continues its old sequence file).
    pub first_sequence: u64,
    /// Test hook: while this file exists, every write fails as if the disk were full. Only in
    /// unit tests and builds with the non-default `test-hooks` feature, never in the agent
    /// release binary.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fail_writes_while: Option<PathBuf>,
}

impl SpoolOptions {
    /// Options without any test hook (the same with or without the `test-hooks` feature).
    pub fn new(dir: PathBuf, agent_id: String, settings: SpoolSettings, first_sequence: u64) -> Self {
        SpoolOptions {
            dir,
            agent_id,
            settings,
            first_sequence,
            #[cfg(any(test, feature = "test-hooks"))]
            fail_writes_while: None,
        }
    }
}

#[derive(Debug)]
struct Inner {
    file: File,
    /// Length of the whole lines in the file.
    len: u64,
    next: u64,
    last_hash: String,
    entries: VecDeque<Entry>,
    gaps: Vec<DroppedRange>,
    live_bytes: u64,
    dead_bytes: u64,
    settings: SpoolSettings,
    last_error: Option<String>,
}

/// The spool. Its methods block on disk I/O (fsync): call them from blocking threads, or use
/// the `*_async` wrappers.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    agent_id: String,
    clock: Arc<dyn Clock>,
    #[cfg(any(test, feature = "test-hooks"))]
    fail_writes_while: Option<PathBuf>,
    inner: Mutex<Inner>,
    ready: Notify,
}

struct Replayed {
    len: u64,
    next: u64,
    last_hash: String,
    entries: VecDeque<Entry>,
    gaps: Vec<DroppedRange>,
    live_bytes: u64,
    dead_bytes: u64,
    /// Bytes cut off the end (a torn last record).
    torn: u64,
}

/// Reads a spool file into its index. `bytes` is the whole file.
fn replay(path: &Path, bytes: &[u8]) -> Result<Replayed, SpoolError> {
    let mut r = Replayed {
        len: 0,
        next: 1,
        last_hash: String::new(),
        entries: VecDeque::new(),
        gaps: Vec::new(),
        live_bytes: 0,
        dead_bytes: 0,
        torn: 0,
    };
    let mut offset = 0usize;
    let mut saw_base = false;
    while offset < bytes.len() {
        let Some(nl) = bytes[offset..].iter().position(|&b| b == b'\n') else {
            break; // no newline: torn
        };
        let line = &bytes[offset..offset + nl];
        let len = (nl + 1) as u64;
        let record: Record = match serde_json::from_slice(line) {
            Ok(rec) => rec,
            Err(e) => {
                if offset + nl + 1 >= bytes.len() {
                    break; // the last line is garbage: torn
                }
                return Err(SpoolError::Corrupt {
                    path: path.to_path_buf(),
                    detail: format!("record at byte {offset} is not valid: {e}"),
                });
            }
        };
        match record {
            Record::Base { next, prev_hash, gaps } => {
                r.next = next;
                r.last_hash = prev_hash;
                r.gaps = gaps;
                r.dead_bytes += len;
                saw_base = true;
            }
            Record::Report { priority, report } => {
                let sequence = report.sequence;
                if sequence >= r.next {
                    r.next = sequence + 1;
                    r.last_hash = report.hash.clone().unwrap_or_default();
                    r.gaps.clear();
                }
                r.entries.push_back(Entry {
                    sequence,
                    priority,
                    created_at: report.created_at,
                    offset: offset as u64,
                    len,
                });
                r.live_bytes += len;
            }
            Record::Ack { through } => {
                r.dead_bytes += len;
                while r.entries.front().is_some_and(|e| e.sequence <= through) {
                    let e = r.entries.pop_front().expect("front exists");
                    r.live_bytes -= e.len;
                    r.dead_bytes += e.len;
                }
            }
            Record::Drop { sequence, reason } => {
                r.dead_bytes += len;
                if let Some(i) = r.entries.iter().position(|e| e.sequence == sequence) {
                    let e = r.entries.remove(i).expect("index exists");
                    r.live_bytes -= e.len;
                    r.dead_bytes += e.len;
                }
                add_gap(&mut r.gaps, sequence, &reason);
            }
        }
        offset += nl + 1;
        r.len = offset as u64;
    }
    if !saw_base && r.len > 0 {
        return Err(SpoolError::Corrupt {
            path: path.to_path_buf(),
            detail: "the first record is not a base record".into(),
        });
    }
    r.torn = bytes.len() as u64 - r.len;
    Ok(r)
}

/// Adds `sequence` to the gap ranges, extending the last range when it follows on.
fn add_gap(gaps: &mut Vec<DroppedRange>, sequence: u64, reason: &str) {
    if let Some(last) = gaps.last_mut()
        && last.reason == reason
        && last.last + 1 == sequence
    {
        last.last = sequence;
        return;
    }
    gaps.push(DroppedRange {
        first: sequence,
        last: sequence,
        reason: reason.to_string(),
    });
}

/// Reads the spool in `dir` without changing it, for `rounds-agent status`. `None` when there
/// is no spool yet.
pub fn inspect(dir: &Path) -> Result<Option<SpoolSummary>, SpoolError> {
    let path = dir.join(SPOOL_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(SpoolError::Read {
                path,
                detail: e.to_string(),
            });
        }
    };
    let r = replay(&path, &bytes)?;
    Ok(Some(SpoolSummary {
        depth: r.entries.len() as u64,
        oldest: r.entries.iter().map(|e| e.created_at).min(),
        next_sequence: r.next,
        bytes: r.live_bytes,
    }))
}

impl Spool {
    /// Opens (or creates) the spool in `opts.dir`, cutting a torn last record with a warning.
    pub fn open(opts: SpoolOptions, clock: Arc<dyn Clock>) -> Result<Spool, SpoolError> {
        let SpoolOptions {
            dir,
            agent_id,
            settings,
            first_sequence,
            #[cfg(any(test, feature = "test-hooks"))]
            fail_writes_while,
        } = opts;
        let path = dir.join(SPOOL_FILE);
        let write_err = |e: io::Error| SpoolError::Write {
            path: path.clone(),
            detail: e.to_string(),
        };
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let base = Record::Base {
                    next: first_sequence.max(1),
                    prev_hash: chain_seed(&agent_id),
                    gaps: vec![],
                };
                crate::state::write_atomic(&path, &base.line()).map_err(|e| SpoolError::Write {
                    path: path.clone(),
                    detail: e.to_string(),
                })?;
                base.line()
            }
            Err(e) => {
                return Err(SpoolError::Read {
                    path,
                    detail: e.to_string(),
                });
            }
        };
        let r = replay(&path, &bytes)?;
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        let file = options.open(&path).map_err(write_err)?;
        if r.torn > 0 {
            warn!(path = %path.display(), bytes = r.torn, "spool: torn last record cut off (the agent stopped while writing it)");
            file.set_len(r.len).map_err(write_err)?;
            file.sync_data().map_err(write_err)?;
        }
        if r.last_hash.is_empty() {
            return Err(SpoolError::Corrupt {
                path,
                detail: "no chain hash recorded".into(),
            });
        }
        let depth = r.entries.len();
        if depth > 0 {
            info!(depth, next_sequence = r.next, "spool holds undelivered reports");
        }
        Ok(Spool {
            path,
            agent_id,
            clock,
            #[cfg(any(test, feature = "test-hooks"))]
            fail_writes_while,
            inner: Mutex::new(Inner {
                file,
                len: r.len,
                next: r.next,
                last_hash: r.last_hash,
                entries: r.entries,
                gaps: r.gaps,
                live_bytes: r.live_bytes,
                dead_bytes: r.dead_bytes,
                settings,
                last_error: None,
            }),
            ready: Notify::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every change to `Inner` is applied only after its write succeeded, so a panic
        // elsewhere cannot leave it half-updated.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the limits (a new configuration); they apply from the next append.
    pub fn set_settings(&self, settings: SpoolSettings) {
        self.lock().settings = settings;
    }

    /// Builds the next report from `observations`, takes its sequence number, chains it,
    /// writes it and fsyncs: when this returns `Ok(sequence)`, the report is produced.
    /// Makes room first if the spool is full (see the module docs).
    pub fn append(
        &self,
        check: Option<&str>,
        complete: bool,
        priority: Priority,
        observations: Vec<Observation>,
    ) -> Result<u64, SpoolError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let settings = inner.settings;
        let max_age = chrono::Duration::from_std(settings.max_age).unwrap_or(chrono::Duration::MAX);

        // What to drop, decided before anything is written.
        let mut drops: Vec<(u64, &'static str)> = inner
            .entries
            .iter()
            .filter(|e| now - e.created_at > max_age)
            .map(|e| (e.sequence, "too_old"))
            .collect();
        let mut gaps = inner.gaps.clone();
        for (seq, reason) in &drops {
            add_gap(&mut gaps, *seq, reason);
        }
        let mut report = Report {
            protocol: PROTOCOL_MAJOR,
            agent_id: self.agent_id.clone(),
            sequence: inner.next,
            created_at: now,
            check: check.map(str::to_string),
            complete,
            prev_hash: Some(inner.last_hash.clone()),
            hash: None,
            dropped: vec![],
            observations,
        };
        // The size with the gap ranges it will carry (a few bytes more per range).
        let estimate = Record::Report {
            priority,
            report: report.clone(),
        }
        .line()
        .len() as u64
            + 128;
        if estimate > settings.max_bytes {
            return Err(SpoolError::TooLarge {
                bytes: estimate,
                max_bytes: settings.max_bytes,
            });
        }
        let dropped_bytes: u64 = inner
            .entries
            .iter()
            .filter(|e| drops.iter().any(|(s, _)| *s == e.sequence))
            .map(|e| e.len)
            .sum();
        let mut live = inner.live_bytes - dropped_bytes;
        if live + estimate > settings.max_bytes {
            for wanted in [Priority::Routine, Priority::Important] {
                for e in inner.entries.iter().filter(|e| e.priority == wanted) {
                    if live + estimate <= settings.max_bytes {
                        break;
                    }
                    if drops.iter().any(|(s, _)| *s == e.sequence) {
                        continue;
                    }
                    drops.push((e.sequence, "spool_full"));
                    live -= e.len;
                }
            }
            drops.sort_unstable();
            gaps = inner.gaps.clone();
            for (seq, reason) in &drops {
                add_gap(&mut gaps, *seq, reason);
            }
        }
        report.dropped = gaps;
        report.hash = Some(report_hash(&report));
        let hash = report.hash.clone().unwrap_or_default();
        let sequence = report.sequence;

        let mut buf = Vec::new();
        for (seq, reason) in &drops {
            buf.extend(
                Record::Drop {
                    sequence: *seq,
                    reason: (*reason).to_string(),
                }
                .line(),
            );
        }
        let report_offset = inner.len + buf.len() as u64;
        let line = Record::Report { priority, report }.line();
        let report_len = line.len() as u64;
        buf.extend(line);
        self.write(&mut inner, &buf, true)?;

        for (seq, reason) in &drops {
            if let Some(i) = inner.entries.iter().position(|e| e.sequence == *seq) {
                let e = inner.entries.remove(i).expect("index exists");
                inner.live_bytes -= e.len;
                inner.dead_bytes += e.len;
            }
            warn!(sequence = seq, reason, "spool: undelivered report dropped");
        }
        inner.dead_bytes += buf.len() as u64 - report_len;
        inner.entries.push_back(Entry {
            sequence,
            priority,
            created_at: now,
            offset: report_offset,
            len: report_len,
        });
        inner.live_bytes += report_len;
        inner.gaps.clear();
        inner.next = sequence + 1;
        inner.last_hash = hash;
        drop(inner);
        self.ready.notify_one();
        Ok(sequence)
    }

    /// [`append`](Self::append) on the blocking pool.
    pub async fn append_async(
        self: &Arc<Self>,
        check: Option<String>,
        complete: bool,
        priority: Priority,
        observations: Vec<Observation>,
    ) -> Result<u64, SpoolError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.append(check.as_deref(), complete, priority, observations))
            .await
            .unwrap_or_else(|e| {
                Err(SpoolError::Write {
                    path: self.path.clone(),
                    detail: format!("spool task failed: {e}"),
                })
            })
    }

    /// Appends `buf` at the end of the whole lines; on failure cuts the file back and records
    /// the error.
    fn write(&self, inner: &mut Inner, buf: &[u8], sync: bool) -> Result<(), SpoolError> {
        let result: io::Result<()> = (|| {
            #[cfg(any(test, feature = "test-hooks"))]
            if let Some(flag) = &self.fail_writes_while
                && flag.exists()
            {
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "No space left on device (injected for a test)",
                ));
            }
            inner.file.seek(SeekFrom::Start(inner.len))?;
            inner.file.write_all(buf)?;
            if sync {
                inner.file.sync_data()?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                inner.len += buf.len() as u64;
                if inner.last_error.take().is_some() {
                    info!(path = %self.path.display(), "spool writable again");
                }
                Ok(())
            }
            Err(e) => {
                // Whatever part was written is cut off, so the file stays whole lines. If even
                // that fails, the next write starts at `len` again and overwrites it.
                let _ = inner.file.set_len(inner.len);
                let err = SpoolError::Write {
                    path: self.path.clone(),
                    detail: e.to_string(),
                };
                if inner.last_error.is_none() {
                    error!(error = %err, "spool write failed, reports are not being recorded");
                }
                inner.last_error = Some(err.to_string());
                Err(err)
            }
        }
    }

    /// The oldest undelivered reports, in sequence order: at most `max_count`, and at most
    /// `max_bytes` in all (but always at least one).
    pub fn pending(&self, max_count: usize, max_bytes: u64) -> Result<Vec<Pending>, SpoolError> {
        let mut inner = self.lock();
        let mut out = Vec::new();
        let mut total = 0;
        let wanted: Vec<Entry> = inner.entries.iter().take(max_count.max(1)).cloned().collect();
        for e in wanted {
            if !out.is_empty() && total + e.len > max_bytes {
                break;
            }
            let (_, report) = self.read_entry(&mut inner, &e)?;
            total += e.len;
            out.push(Pending { report, bytes: e.len });
        }
        Ok(out)
    }

    /// Reads the report record of index entry `e` from the file.
    fn read_entry(&self, inner: &mut Inner, e: &Entry) -> Result<(Priority, Report), SpoolError> {
        let mut line = vec![0u8; e.len as usize];
        inner
            .file
            .seek(SeekFrom::Start(e.offset))
            .and_then(|_| inner.file.read_exact(&mut line))
            .map_err(|err| SpoolError::Read {
                path: self.path.clone(),
                detail: err.to_string(),
            })?;
        match serde_json::from_slice::<Record>(&line) {
            Ok(Record::Report { priority, report }) if report.sequence == e.sequence => Ok((priority, report)),
            _ => Err(SpoolError::Corrupt {
                path: self.path.clone(),
                detail: format!("report {} is not where the index says", e.sequence),
            }),
        }
    }

    /// Removes every report up to `through`: the collector acknowledged them.
    pub fn ack_through(&self, through: u64) -> Result<(), SpoolError> {
        let mut inner = self.lock();
        if inner.entries.front().is_none_or(|e| e.sequence > through) {
            return Ok(());
        }
        let line = Record::Ack { through }.line();
        // Not fsynced, and a failed write (disk full) still removes the reports from memory: a
        // lost acknowledgement only means a resend after a restart, which the collector
        // acknowledges without storing twice.
        match self.write(&mut inner, &line, false) {
            Ok(()) => inner.dead_bytes += line.len() as u64,
            Err(e) => warn!(error = %e, "cannot record an acknowledgement in the spool"),
        }
        while inner.entries.front().is_some_and(|e| e.sequence <= through) {
            let e = inner.entries.pop_front().expect("front exists");
            inner.live_bytes -= e.len;
            inner.dead_bytes += e.len;
        }
        self.maybe_compact(&mut inner);
        Ok(())
    }

    /// Removes report `sequence` without delivery (the collector refused it for good); the
    /// next report announces it with `reason`.
    pub fn drop_entry(&self, sequence: u64, reason: &str) -> Result<(), SpoolError> {
        let mut inner = self.lock();
        let Some(i) = inner.entries.iter().position(|e| e.sequence == sequence) else {
            return Ok(());
        };
        let line = Record::Drop {
            sequence,
            reason: reason.to_string(),
        }
        .line();
        self.write(&mut inner, &line, true)?;
        let e = inner.entries.remove(i).expect("index exists");
        inner.live_bytes -= e.len;
        inner.dead_bytes += e.len + line.len() as u64;
        add_gap(&mut inner.gaps, sequence, reason);
        self.maybe_compact(&mut inner);
        Ok(())
    }

    /// The collector already holds other reports up to `next_expected - 1` (this agent's
    /// sequence went back in time): renumbers every undelivered report from `next_expected`
    /// on, recomputing the chain, and rewrites the spool. The first renumbered report chains to
    /// `chain_hash`, the collector's hash of report `next_expected - 1`, when it gave one (so
    /// the collector's copy of the chain stays whole); else to the agent's own history. Returns
    /// how many were renumbered.
    pub fn renumber_from(&self, next_expected: u64, chain_hash: Option<&str>) -> Result<usize, SpoolError> {
        let pending = self.pending(usize::MAX, u64::MAX)?;
        let mut inner = self.lock();
        let mut prev = match chain_hash {
            Some(h) => h.to_string(),
            None => pending
                .first()
                .and_then(|p| p.report.prev_hash.clone())
                .unwrap_or_else(|| inner.last_hash.clone()),
        };
        let mut records = Vec::new();
        let mut next = next_expected.max(1);
        for (p, e) in pending.into_iter().zip(inner.entries.iter()) {
            let mut report = p.report;
            report.sequence = next;
            report.prev_hash = Some(prev.clone());
            report.hash = None;
            report.hash = Some(report_hash(&report));
            prev = report.hash.clone().unwrap_or_default();
            next += 1;
            records.push(Record::Report {
                priority: e.priority,
                report,
            });
        }
        let count = records.len();
        self.rewrite(&mut inner, next, prev, records)?;
        Ok(count)
    }

    /// Rewrites the file with only the live reports, when dead lines outweigh them.
    fn maybe_compact(&self, inner: &mut Inner) {
        if inner.dead_bytes < COMPACT_MIN_DEAD_BYTES || inner.dead_bytes < inner.live_bytes {
            return;
        }
        let records = match self.read_live(inner) {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "spool compaction skipped");
                return;
            }
        };
        let (next, last_hash) = (inner.next, inner.last_hash.clone());
        if let Err(e) = self.rewrite(inner, next, last_hash, records) {
            warn!(error = %e, "spool compaction failed, the old file stays");
        }
    }

    fn read_live(&self, inner: &mut Inner) -> Result<Vec<Record>, SpoolError> {
        let mut out = Vec::new();
        let entries: Vec<Entry> = inner.entries.iter().cloned().collect();
        for e in entries {
            let (priority, report) = self.read_entry(inner, &e)?;
            out.push(Record::Report { priority, report });
        }
        Ok(out)
    }

    /// Replaces the file atomically with a base record and `reports`, and the index with theirs.
    fn rewrite(&self, inner: &mut Inner, next: u64, last_hash: String, reports: Vec<Record>) -> Result<(), SpoolError> {
        let mut buf = Record::Base {
            next,
            prev_hash: last_hash.clone(),
            gaps: inner.gaps.clone(),
        }
        .line();
        let base_len = buf.len() as u64;
        let mut entries = VecDeque::new();
        for rec in &reports {
            if let Record::Report { priority, report } = rec {
                let line = rec.line();
                entries.push_back(Entry {
                    sequence: report.sequence,
                    priority: *priority,
                    created_at: report.created_at,
                    offset: buf.len() as u64,
                    len: line.len() as u64,
                });
                buf.extend(line);
            }
        }
        let werr = |e: String| SpoolError::Write {
            path: self.path.clone(),
            detail: e,
        };
        #[cfg(any(test, feature = "test-hooks"))]
        if let Some(flag) = &self.fail_writes_while
            && flag.exists()
        {
            return Err(werr("No space left on device (injected for a test)".into()));
        }
        crate::state::write_atomic(&self.path, &buf).map_err(|e| werr(e.to_string()))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(|e| werr(e.to_string()))?;
        inner.file = file;
        inner.len = buf.len() as u64;
        inner.live_bytes = buf.len() as u64 - base_len;
        inner.dead_bytes = base_len;
        inner.entries = entries;
        inner.next = next.max(inner.entries.back().map_or(0, |e| e.sequence + 1));
        inner.last_hash = last_hash;
        Ok(())
    }

    /// Drops expired entries without waiting for the next append.
    pub fn expire(&self) -> Result<(), SpoolError> {
        let now = self.clock.now();
        let expired: Vec<u64> = {
            let inner = self.lock();
            let max_age = chrono::Duration::from_std(inner.settings.max_age).unwrap_or(chrono::Duration::MAX);
            inner
                .entries
                .iter()
                .filter(|e| now - e.created_at > max_age)
                .map(|e| e.sequence)
                .collect()
        };
        for seq in expired {
            warn!(sequence = seq, reason = "too_old", "spool: undelivered report dropped");
            self.drop_entry(seq, "too_old")?;
        }
        Ok(())
    }

    /// Depth, oldest entry, next sequence.
    pub fn summary(&self) -> SpoolSummary {
        let inner = self.lock();
        SpoolSummary {
            depth: inner.entries.len() as u64,
            oldest: inner.entries.front().map(|e| e.created_at),
            next_sequence: inner.next,
            bytes: inner.live_bytes,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.lock().entries.is_empty()
    }

    /// The last write error, until a write succeeds again.
    pub fn last_error(&self) -> Option<String> {
        self.lock().last_error.clone()
    }

    /// Waits until there is something to deliver.
    pub async fn wait_for_entries(&self) {
        loop {
            if !self.is_empty() {
                return;
            }
            // `notify_one` leaves a permit when nobody waits, so an append between the check
            // and here is not missed.
            self.ready.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::TokioClock;

    fn opts(dir: &Path, max_bytes: u64) -> SpoolOptions {
        SpoolOptions {
            dir: dir.to_path_buf(),
            agent_id: "agt_1".into(),
            settings: SpoolSettings {
                max_bytes,
                max_age: std::time::Duration::from_secs(3600),
            },
            first_sequence: 1,
            fail_writes_while: None,
        }
    }

    fn clock() -> Arc<dyn Clock> {
        Arc::new(TokioClock::starting_at(Utc::now()))
    }

    fn obs(n: usize) -> Vec<Observation> {
        vec![Observation::error("inventory", "host", Utc::now(), "x".repeat(n))]
    }

    fn seqs(s: &Spool) -> Vec<u64> {
        s.pending(usize::MAX, u64::MAX)
            .unwrap()
            .iter()
            .map(|p| p.report.sequence)
            .collect()
    }

    #[tokio::test]
    async fn sequences_and_chain_survive_reopening() {
        let tmp = tempfile::tempdir().unwrap();
        let s = Spool::open(opts(tmp.path(), 1 << 20), clock()).unwrap();
        assert_eq!(s.append(Some("inventory"), true, Priority::Routine, obs(1)).unwrap(), 1);
        assert_eq!(s.append(Some("inventory"), true, Priority::Routine, obs(1)).unwrap(), 2);
        s.ack_through(1).unwrap();
        drop(s);
        let s = Spool::open(opts(tmp.path(), 1 << 20), clock()).unwrap();
        assert_eq!(seqs(&s), vec![2]);
        assert_eq!(s.append(None, false, Priority::Important, obs(1)).unwrap(), 3);
        let p = s.pending(10, u64::MAX).unwrap();
        assert_eq!(p[1].report.prev_hash, p[0].report.hash, "chained");
        assert_eq!(p[1].report.hash.clone().unwrap(), report_hash(&p[1].report));
    }

    #[tokio::test]
    async fn the_first_report_chains_to_the_seed() {
        let tmp = tempfile::tempdir().unwrap();
        let s = Spool::open(opts(tmp.path(), 1 << 20), clock()).unwrap();
        s.append(None, true, Priority::Routine, obs(1)).unwrap();
        let p = s.pending(1, u64::MAX).unwrap();
        assert_eq!(p[0].report.prev_hash.as_deref(), Some(chain_seed("agt_1").as_str()));
    }

    #[tokio::test]
    async fn a_torn_last_record_is_cut() {
        let tmp = tempfile::tempdir().unwrap();
        let s = Spool::open(opts(tmp.path(), 1 << 20), clock()).unwrap();
        s.append(None, true, Priority::Routine, obs(1)).unwrap();
        drop(s);
        let path = tmp.path().join(SPOOL_FILE);
        let whole = fs::read(&path).unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"op\":\"report\",\"priority\":\"rout").unwrap();
        drop(f);
        let s = Spool::open(opts(tmp.path(), 1 << 20), clock()).unwrap();
        assert_eq!(fs::read(&path).unwrap(), whole);
        assert_eq!(s.append(None, true, Priority::Routine, obs(1)).unwrap(), 2);
        assert_eq!(seqs(&s), vec![1, 2]);
    }

    #[tokio::test]
    async fn a_full_spool_drops_routine_before_important_and_announces_the_gap() {
        let tmp = tempfile::tempdir().unwrap();
        let s = Spool::open(opts(tmp.path(), 1 << 20), clock()).unwrap();
        s.append(None, true, Priority::Important, obs(900)).unwrap(); // 1
        // Room for three and a half reports.
        let line = s.summary().bytes;
        let max_bytes = 3 * line + line / 2;
        s.set_settings(SpoolSettings {
            max_bytes,
            max_age: std::time::Duration::from_secs(3600),
        });
        s.append(None, true, Priority::Routine, obs(900)).unwrap(); // 2
        s.append(None, true, Priority::Routine, obs(900)).unwrap(); // 3
        s.append(None, true, Priority::Important, obs(900)).unwrap(); // 4: drops 2
        assert_eq!(seqs(&s), vec![1, 3, 4]);
        let last = s.pending(10, u64::MAX).unwrap().pop().unwrap().report;
        assert_eq!(
            last.dropped,
            vec![DroppedRange {
                first: 2,
                last: 2,
                reason: "spool_full".into()
            }]
        );
        s.append(None, true, Priority::Important, obs(900)).unwrap(); // 5: drops 3
        s.append(None, true, Priority::Important, obs(900)).unwrap(); // 6: drops 1, the oldest important
        assert_eq!(seqs(&s), vec![4, 5, 6]);
        // Reopening gives the same picture.
        drop(s);
        let s = Spool::open(opts(tmp.path(), max_bytes), clock()).unwrap();
        assert_eq!(seqs(&s), vec![4, 5, 6]);
        assert!(s.summary().bytes <= max_bytes);
    }

    #[tokio::test(start_paused = true)]
    async fn expired_reports_are_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let s = Spool::open(opts(tmp.path(), 1 << 20), clock()).unwrap();
        s.append(None, true, Priority::Important, obs(1)).unwrap();
        tokio::time::advance(std::time::Duration::from_secs(3601)).await;
        s.append(None, true, Priority::Routine, obs(1)).unwrap();
        assert_eq!(seqs(&s), vec![2]);
        let r = &s.pending(1, u64::MAX).unwrap()[0].report;
        assert_eq!(r.dropped[0].reason, "too_old");
    }

    #[tokio::test]
    async fn a_write_error_is_reported_changes_nothing_and_clears() {
        let tmp = tempfile::tempdir().unwrap();
        let flag = tmp.path().join("full");
        let mut o = opts(tmp.path(), 1 << 20);
        o.fail_writes_while = Some(flag.clone());
        let s = Spool::open(o, clock()).unwrap();
        s.append(None, true, Priority::Routine, obs(1)).unwrap();
        fs::write(&flag, b"").unwrap();
        let err = s.append(None, true, Priority::Routine, obs(1)).unwrap_err().to_string();
        assert!(err.contains("No space left") && err.contains(SPOOL_FILE), "{err}");
        assert!(s.last_error().is_some());
        fs::remove_file(&flag).unwrap();
        assert_eq!(
            s.append(None, true, Priority::Routine, obs(1)).unwrap(),
            2,
            "no sequence lost"
        );
        assert!(s.last_error().is_none());
    }

    #[tokio::test]
    async fn renumbering_rechains_from_next_expected() {
        let tmp = tempfile::tempdir().unwrap();
        let s = Spool::open(opts(tmp.path(), 1 << 20), clock()).unwrap();
        for _ in 0..3 {
            s.append(None, true, Priority::Routine, obs(1)).unwrap();
        }
        s.ack_through(1).unwrap();
        assert_eq!(s.renumber_from(40, Some("c0ffee")).unwrap(), 2);
        assert_eq!(seqs(&s), vec![40, 41]);
        let first = s.pending(1, u64::MAX).unwrap();
        assert_eq!(
            first[0].report.prev_hash.as_deref(),
            Some("c0ffee"),
            "chained to the collector's head"
        );
        assert_eq!(s.append(None, true, Priority::Routine, obs(1)).unwrap(), 42);
        let p = s.pending(10, u64::MAX).unwrap();
        for w in p.windows(2) {
            assert_eq!(w[1].report.prev_hash, w[0].report.hash);
        }
        drop(s);
        let s = Spool::open(opts(tmp.path(), 1 << 20), clock()).unwrap();
        assert_eq!(seqs(&s), vec![40, 41, 42]);
    }

    #[tokio::test]
    async fn compaction_keeps_live_reports() {
        let tmp = tempfile::tempdir().unwrap();
        let s = Spool::open(opts(tmp.path(), 16 << 20), clock()).unwrap();
        for _ in 0..300 {
            s.append(None, true, Priority::Routine, obs(8000)).unwrap();
        }
        s.ack_through(299).unwrap();
        assert!(fs::metadata(tmp.path().join(SPOOL_FILE)).unwrap().len() < 20_000);
        assert_eq!(seqs(&s), vec![300]);
        assert_eq!(s.append(None, true, Priority::Routine, obs(1)).unwrap(), 301);
        drop(s);
        let s = Spool::open(opts(tmp.path(), 16 << 20), clock()).unwrap();
        assert_eq!(seqs(&s), vec![300, 301]);
    }
}
