//! Audit-log integrity: watched logs, and the health of the services that write them.
//!
//! - Watched logs ([`tracker`]): every `[[audit_log]]` path or glob, and auditd's log (from
//!   `log_file` in /etc/audit/auditd.conf, default /var/log/audit/audit.log) when it exists.
//!   Per file the state (`<state dir>/audit-logs.json`, or memory when there is no state dir)
//!   keeps inode, size, owner, mode and checkpoint hashes; each run compares. The first look of
//!   a process re-hashes everything seen (so a change made while the agent was stopped is found
//!   at start), as does every look where the file did not grow and every look
//!   [`FULL_VERIFY_EVERY`] after the last full one; otherwise only appended bytes are hashed.
//!   auditd's log is also scanned for record serial and time gaps (record headers only).
//! - Linux services ([`auditd`], [`journald`]): auditd running, its rules (rules.d, and
//!   `auditctl -l`/`-s` as root), immutability, log-file and disk-space actions, kernel
//!   `audit=1`; journald `Storage=`, `Seal=`, sealing keys, `journalctl --verify` (at most
//!   hourly, [`VERIFY_EVERY`]). Service observations are re-read at most every
//!   [`HEALTH_EVERY`]; runs woken by the watcher in between repeat the last ones.
//! - Windows ([`windows`]): Security and System log clears, dropped audit events and audit
//!   policy changes from `wevtutil`; the EventLog service from `sc`.
//! - macOS: the unified log's persistent store (/var/db/diagnostics/Persist) and `logd`.
//!
//! The check never sends a log line (they may hold patient names): metadata and hashes only.

pub mod auditd;
pub mod journald;
pub mod tracker;
pub mod windows;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use rounds_agent_config::audit_log::AuditLogSpec;
use rounds_protocol::Observation;
use rounds_protocol::obs::{AuditLog, AuditService, LogEvent, Payload};
use serde::{Deserialize, Serialize};

use self::auditd::RecordScan;
use self::tracker::{Depth, FileState, Outcome};
use super::{Check, Host, Platform, platform};

/// The longest an incremental look goes on before every byte seen is re-hashed again.
pub const FULL_VERIFY_EVERY: chrono::Duration = chrono::Duration::minutes(5);
/// auditd's log when auditd.conf does not say.
pub const AUDITD_LOG: &str = "/var/log/audit/audit.log";
/// The state file under the state dir.
pub const STATE_FILE: &str = "audit-logs.json";
/// Most bytes of auditd's log scanned for record gaps in one run.
const MAX_SCAN_BYTES: u64 = 64 << 20;
/// Service health observations are re-read at most this often; runs woken by the watcher in
/// between repeat the last ones (a busy log wakes the check many times a minute).
pub const HEALTH_EVERY: chrono::Duration = chrono::Duration::seconds(60);
/// While logs only grow, the state is written at most this often (a change of any other kind
/// is written at once). After a crash the agent compares with a state at most this old: bytes
/// appended since are then taken as new, and everything seen before is still checked.
pub const SAVE_EVERY: chrono::Duration = chrono::Duration::seconds(30);
/// `journalctl --verify` reads every journal file: it runs at most this often.
pub const VERIFY_EVERY: chrono::Duration = chrono::Duration::hours(1);
/// Without a record of the last look, Windows events this recent count as new.
const WINDOWS_LOOKBACK: chrono::Duration = chrono::Duration::days(1);

/// What the check keeps between runs: no log content, only metadata and hashes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Store {
    /// By host path.
    #[serde(default)]
    pub files: BTreeMap<String, FileState>,
    /// Record scans of auditd logs, by host path.
    #[serde(default)]
    pub records: BTreeMap<String, RecordScan>,
    /// Newest record id seen per Windows event log.
    #[serde(default)]
    pub windows_seen: BTreeMap<String, u64>,
}

impl Store {
    fn load(dir: &Path) -> Result<Store, String> {
        let path = dir.join(STATE_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("cannot parse {}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Store::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Writes the state atomically (temporary file, fsync, rename).
    fn save(&self, dir: &Path) -> Result<(), String> {
        use std::io::Write as _;
        let path = dir.join(STATE_FILE);
        let tmp = dir.join(format!("{STATE_FILE}.tmp"));
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&serde_json::to_vec(self).map_err(std::io::Error::other)?)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

/// One file to look at.
#[derive(Debug, Clone)]
struct Target {
    host_path: String,
    rotated: Vec<String>,
    /// Reported even when it was never seen and is absent (a configured path).
    required: bool,
    auditd: bool,
}

/// When `journalctl --verify` last ran, whether it passed, and the files that failed.
type JournalVerify = (DateTime<Utc>, Option<bool>, Vec<String>);

/// Observes audit-log integrity and audit services.
#[derive(Debug)]
pub struct AuditCheck {
    logs: Vec<AuditLogSpec>,
    /// State when there is no state dir, and the state of this process.
    memory: Mutex<Option<Store>>,
    /// Paths whose every byte was re-hashed by this process.
    verified: Mutex<HashSet<String>>,
    /// The last service observations (Linux, macOS) and when they were read.
    health: Mutex<Option<(DateTime<Utc>, Vec<Observation>)>>,
    /// The last `journalctl --verify` result and when it ran.
    verified_journal: Mutex<Option<JournalVerify>>,
    /// When this process last wrote the state, and whether it changed since.
    saved_at: Mutex<Option<DateTime<Utc>>>,
    dirty: Mutex<bool>,
    /// One run at a time: a watcher-woken run and a scheduled one never interleave.
    running: Mutex<()>,
}

/// How a run changed the state: at all, or in a way that is written at once.
#[derive(Debug, Default, Clone, Copy)]
struct Changes {
    any: bool,
    urgent: bool,
}

impl Changes {
    fn note(&mut self, any: bool, urgent: bool) {
        self.any |= any || urgent;
        self.urgent |= urgent;
    }
}

impl AuditCheck {
    /// Watches `logs` (and auditd's log when present).
    pub fn new(logs: Vec<AuditLogSpec>) -> Self {
        AuditCheck {
            logs,
            memory: Mutex::new(None),
            verified: Mutex::new(HashSet::new()),
            health: Mutex::new(None),
            verified_journal: Mutex::new(None),
            saved_at: Mutex::new(None),
            dirty: Mutex::new(false),
            running: Mutex::new(()),
        }
    }

    fn auditd_log(host: &Host) -> String {
        host.read_opt("/etc/audit/auditd.conf")
            .ok()
            .flatten()
            .and_then(|t| auditd::parse_auditd_conf(&t).log_file)
            .unwrap_or_else(|| AUDITD_LOG.to_string())
    }

    fn host_path_of(host: &Host, real: &Path) -> String {
        match real.strip_prefix(&host.root) {
            Ok(rest) => format!("/{}", rest.display()),
            Err(_) => real.display().to_string(),
        }
    }

    fn targets(&self, host: &Host, store: &Store) -> Vec<Target> {
        let auditd_log = Self::auditd_log(host);
        let mut out: Vec<Target> = Vec::new();
        for spec in &self.logs {
            let AuditLogSpec { name: _, path, rotated } = spec;
            let mut paths: Vec<(String, bool)> = Vec::new();
            if spec.is_glob() {
                for real in tracker::expand(&host.path(path)) {
                    paths.push((Self::host_path_of(host, &real), false));
                }
                let (dir, pat) = path.rsplit_once('/').unwrap_or(("", path));
                for known in store.files.keys() {
                    if let Some((d, n)) = known.rsplit_once('/')
                        && d == dir
                        && tracker::wildcard(pat, n)
                    {
                        paths.push((known.clone(), false));
                    }
                }
            } else {
                paths.push((path.clone(), true));
            }
            for (p, required) in paths {
                if out.iter().all(|t| t.host_path != p) {
                    out.push(Target {
                        auditd: p == auditd_log,
                        host_path: p,
                        rotated: rotated.clone(),
                        required,
                    });
                }
            }
        }
        if out.iter().all(|t| t.host_path != auditd_log)
            && (host.exists(&auditd_log) || store.files.contains_key(&auditd_log))
        {
            out.push(Target {
                host_path: auditd_log,
                rotated: Vec::new(),
                required: false,
                auditd: true,
            });
        }
        out
    }

    /// The state: this process's (taken out of memory for the run, put back by [`keep`]), else
    /// the state dir's.
    fn load(&self, host: &Host) -> Result<Store, String> {
        let memory = self.memory.lock().unwrap_or_else(|p| p.into_inner()).take();
        match (memory, &host.state_dir) {
            (Some(store), _) => Ok(store),
            (None, Some(dir)) => Store::load(dir),
            (None, None) => Ok(Store::default()),
        }
    }

    /// Keeps `store` in memory, and in the state dir when it `changed` in a way that must be
    /// written now (`urgent`) or the last write is [`SAVE_EVERY`] old.
    fn keep(&self, host: &Host, store: Store, changes: Changes) -> Option<String> {
        let mut saved_at = self.saved_at.lock().unwrap_or_else(|p| p.into_inner());
        let mut dirty = self.dirty.lock().unwrap_or_else(|p| p.into_inner());
        *dirty |= changes.any;
        let due = changes.urgent || saved_at.is_none_or(|at| host.now - at >= SAVE_EVERY || host.now < at);
        let error = match (&host.state_dir, *dirty && due) {
            (Some(dir), true) => {
                let e = store.save(dir).err();
                if e.is_none() {
                    *saved_at = Some(host.now);
                    *dirty = false;
                }
                e
            }
            _ => None,
        };
        *self.memory.lock().unwrap_or_else(|p| p.into_inner()) = Some(store);
        error
    }

    /// Looks at every watched log; updates `store`.
    fn watched(&self, host: &Host, store: &mut Store, changes: &mut Changes) -> Vec<Observation> {
        let mut out = Vec::new();
        for target in self.targets(host, store) {
            let obs = self.look_at(host, store, &target, changes);
            if let Some(o) = obs {
                out.push(o);
            }
        }
        out
    }

    fn depth(&self, host: &Host, target: &Target, seen: Option<&FileState>) -> Depth {
        let Some(seen) = seen else { return Depth::Full };
        let done = self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&target.host_path);
        let grew = std::fs::metadata(host.path(&target.host_path))
            .map(|m| tracker::Meta::of(&m))
            .is_ok_and(|m| m.size > seen.size && m.inode == seen.inode);
        if done && grew && host.now - seen.verified_at < FULL_VERIFY_EVERY {
            Depth::Incremental
        } else {
            Depth::Full
        }
    }

    fn look_at(&self, host: &Host, store: &mut Store, target: &Target, changes: &mut Changes) -> Option<Observation> {
        let real = host.path(&target.host_path);
        let seen = store.files.get(&target.host_path);
        let depth = self.depth(host, target, seen);
        let rotated: Vec<PathBuf> = target.rotated.iter().map(|g| host.path(g)).collect();
        let outcome = match tracker::look(&real, &target.host_path, seen, depth, &rotated, host.now) {
            Ok(o) => o,
            Err(e) => return Some(Observation::error(AuditLog::KIND, &target.host_path, host.now, e)),
        };
        // Growth is written lazily; anything else at once.
        let urgent = match (seen, &outcome.state) {
            (Some(was), Some(now)) => {
                (
                    was.dev,
                    was.inode,
                    was.created_ns,
                    was.uid,
                    was.gid,
                    was.mode,
                    &was.last_tamper,
                ) != (
                    now.dev,
                    now.inode,
                    now.created_ns,
                    now.uid,
                    now.gid,
                    now.mode,
                    &now.last_tamper,
                ) || now.size < was.size
            }
            (None, None) => false,
            _ => true,
        };
        changes.note(seen != outcome.state.as_ref(), urgent);
        if outcome.change == "missing" && !target.required {
            store.files.remove(&target.host_path);
            return None;
        }
        if depth == Depth::Full && outcome.meta.is_some() {
            self.verified
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(target.host_path.clone());
        }
        let mut log = to_payload(&target.host_path, &outcome);
        if target.auditd && outcome.meta.is_some() {
            let scan = store.records.entry(target.host_path.clone()).or_default();
            let before = scan.clone();
            let gaps = scan_auditd(&real, &outcome, scan);
            changes.note(*scan != before, before.inode != scan.inode);
            if let Some(g) = gaps {
                log.serial_gaps = Some(g.serial_gaps);
                log.missing_records = Some(g.missing_records);
                log.time_backwards = Some(g.time_backwards);
                log.longest_gap_secs = Some(g.longest_gap_secs);
                log.last_entry_at = g.last_time_ms.and_then(DateTime::from_timestamp_millis);
            }
        }
        match outcome.state {
            Some(state) => {
                store.files.insert(target.host_path.clone(), state);
            }
            None => {
                store.files.remove(&target.host_path);
            }
        }
        Some(Observation::ok(&target.host_path, host.now, &log))
    }
}

/// Scans the bytes of auditd's log not scanned yet (finishing the rotated file first).
fn scan_auditd(real: &Path, outcome: &Outcome, scan: &mut RecordScan) -> Option<auditd::RecordGaps> {
    use std::io::{Read, Seek, SeekFrom};
    let meta = outcome.meta?;
    let read_from = |path: &Path, offset: u64, scan: &mut RecordScan| -> Option<auditd::RecordGaps> {
        let mut f = std::fs::File::open(path).ok()?;
        f.seek(SeekFrom::Start(offset)).ok()?;
        let mut buf = Vec::new();
        f.take(MAX_SCAN_BYTES).read_to_end(&mut buf).ok()?;
        Some(auditd::scan_records(&buf, scan))
    };
    let mut total = auditd::RecordGaps::default();
    let mut add = |g: auditd::RecordGaps| {
        total.serial_gaps += g.serial_gaps;
        total.missing_records += g.missing_records;
        total.time_backwards += g.time_backwards;
        total.longest_gap_secs = total.longest_gap_secs.max(g.longest_gap_secs);
        total.last_time_ms = g.last_time_ms.or(total.last_time_ms);
    };
    if scan.inode != meta.inode || scan.offset > meta.size {
        if let (Some(to), true) = (&outcome.rotated_to, scan.inode != 0)
            && let Some(g) = read_from(to, scan.offset, scan)
        {
            add(g);
        }
        scan.inode = meta.inode;
        scan.offset = 0;
    }
    let offset = scan.offset;
    add(read_from(real, offset, scan)?);
    Some(total)
}

fn to_payload(host_path: &str, o: &Outcome) -> AuditLog {
    let judged = !matches!(o.change, "new" | "missing");
    let flag = |c: &str| judged.then_some(o.change == c);
    let mode = o.meta.and_then(|m| m.mode);
    AuditLog {
        path: host_path.to_string(),
        present: o.meta.is_some(),
        append_only: judged.then_some(matches!(o.change, "unchanged" | "appended" | "rotated")),
        truncated: flag("truncated"),
        rewritten: flag("rewritten"),
        world_writable: mode.map(|m| m & 0o002 != 0),
        last_entry_at: o
            .meta
            .and_then(|m| DateTime::from_timestamp_nanos(i64::try_from(m.mtime_ns).ok()?).into()),
        longest_gap_secs: None,
        cleared: None,
        change: Some(o.change.to_string()),
        deleted: flag("deleted"),
        replaced: flag("replaced"),
        group_writable: mode.map(|m| m & 0o020 != 0),
        owner_changed: judged.then_some(o.owner_changed),
        mode_widened: judged.then_some(o.mode_widened),
        rotation: o.rotation.map(str::to_string),
        rotated_to: o.rotated_to.as_ref().map(|p| p.display().to_string()),
        size_bytes: o.meta.map(|m| m.size),
        old_size_bytes: o.old.map(|m| m.size),
        inode: o.meta.map(|m| m.inode).filter(|i| *i != 0),
        old_inode: o.old.map(|m| m.inode).filter(|i| *i != 0),
        owner_uid: o.meta.and_then(|m| m.uid),
        owner_gid: o.meta.and_then(|m| m.gid),
        mode: mode.map(|m| format!("{m:04o}")),
        content_hash: o
            .state
            .as_ref()
            .filter(|_| o.meta.is_some())
            .map(FileState::content_hash),
        verified_bytes: Some(o.verified),
        tamper: o.tamper.clone(),
        last_tamper: o
            .state
            .as_ref()
            .and_then(|s| s.last_tamper.clone())
            .or_else(|| o.tamper.clone()),
        serial_gaps: None,
        missing_records: None,
        time_backwards: None,
        events: Vec::new(),
    }
}

/// Sorted contents of the host files in `dir` whose names end with `suffix`.
fn read_all(host: &Host, dir: &str, suffix: &str) -> Vec<String> {
    host.list_dir(dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.ends_with(suffix))
        .filter_map(|n| host.read_opt(format!("{dir}/{n}")).ok().flatten())
        .collect()
}

fn running(host: &Host, comm: &str) -> Option<bool> {
    host.processes().ok().map(|p| p.iter().any(|(_, c)| c == comm))
}

/// auditd's health.
pub fn auditd_service(host: &Host) -> Result<AuditService, String> {
    let conf = host.read_opt("/etc/audit/auditd.conf")?;
    let installed = conf.is_some() || host.exists("/sbin/auditd") || host.exists("/usr/sbin/auditd");
    let mut s = AuditService {
        service: "auditd".to_string(),
        installed,
        ..AuditService::default()
    };
    if !installed {
        return Ok(s);
    }
    let auditd::AuditdConf {
        log_file: _,
        write_logs,
        max_log_file_action,
        space_left_action,
        admin_space_left_action,
        disk_full_action,
    } = auditd::parse_auditd_conf(conf.as_deref().unwrap_or(""));
    s.running = running(host, "auditd");
    s.enabled = if host.exists("/etc/systemd/system/multi-user.target.wants/auditd.service") {
        Some(true)
    } else if host.exists("/etc/systemd/system") {
        Some(false)
    } else {
        None
    };
    s.persistent = Some(write_logs.as_deref() != Some("no"));
    let mut rules = read_all(host, "/etc/audit/rules.d", ".rules");
    if rules.is_empty()
        && let Ok(Some(t)) = host.read_opt("/etc/audit/audit.rules")
    {
        rules.push(t);
    }
    let files = auditd::parse_rules(rules.iter().map(String::as_str));
    s.rules_configured = Some(files.rules);
    s.immutable_configured = Some(files.immutable);
    if host.live {
        s.rules_loaded = host
            .runner
            .run("auditctl", &["-l"])
            .ok()
            .map(|t| auditd::count_loaded_rules(&t));
        s.immutable = host
            .runner
            .run("auditctl", &["-s"])
            .ok()
            .and_then(|t| auditd::parse_auditctl_status(&t).ok())
            .map(|e| e == 2);
    }
    s.max_log_file_action = max_log_file_action;
    s.space_left_action = space_left_action;
    s.admin_space_left_action = admin_space_left_action;
    s.disk_full_action = disk_full_action;
    s.kernel_audit = host.read_opt("/proc/cmdline")?.map(|c| auditd::kernel_audit(&c));
    Ok(s)
}

/// journald's health; `verify`: run `journalctl --verify` where sealing is set up.
pub fn journald_service(host: &Host, verify: bool) -> Result<AuditService, String> {
    let main = host.read_opt("/etc/systemd/journald.conf")?;
    let installed = main.is_some()
        || host.exists("/usr/lib/systemd/systemd-journald")
        || host.exists("/lib/systemd/systemd-journald");
    let mut s = AuditService {
        service: "journald".to_string(),
        installed,
        ..AuditService::default()
    };
    if !installed {
        return Ok(s);
    }
    let mut texts: Vec<String> = main.into_iter().collect();
    texts.extend(read_all(host, "/usr/lib/systemd/journald.conf.d", ".conf"));
    texts.extend(read_all(host, "/etc/systemd/journald.conf.d", ".conf"));
    let (storage, seal) = journald::parse_journald_conf(texts.iter().map(String::as_str));
    let storage = storage.unwrap_or_else(|| "auto".to_string());
    s.running = running(host, "systemd-journal");
    // journald is a static unit: systemd starts it whenever it is installed.
    s.enabled = Some(true);
    s.persistent = Some(match storage.as_str() {
        "persistent" => true,
        "auto" => host.exists("/var/log/journal"),
        _ => false,
    });
    s.seal = Some(seal.unwrap_or(true));
    s.storage = Some(storage);
    let keys = host
        .list_dir("/var/log/journal")?
        .iter()
        .any(|d| host.exists(format!("/var/log/journal/{d}/fss")));
    s.sealing_keys = Some(keys);
    if verify && keys && s.seal == Some(true) && host.live {
        let text = match host.runner.run("timeout", &["60", "journalctl", "--verify"]) {
            Ok(t) | Err(t) => t,
        };
        let (failed, passed) = journald::parse_verify(&text);
        if passed || !failed.is_empty() {
            s.verify_passed = Some(failed.is_empty());
            s.verify_failures = failed;
        }
    }
    Ok(s)
}

/// The unified log's health (macOS).
pub fn unified_log_service(host: &Host) -> AuditService {
    let installed = host.exists("/var/db/diagnostics");
    let persist = host.list_dir("/var/db/diagnostics/Persist").unwrap_or_default();
    AuditService {
        service: "unified-log".to_string(),
        installed,
        running: installed.then(|| running(host, "logd")).flatten(),
        enabled: installed.then_some(true),
        persistent: installed.then_some(!persist.is_empty()),
        ..AuditService::default()
    }
}

/// Windows event logs: new clears, dropped events and policy changes since the last look.
fn windows_logs(host: &Host, store: &mut Store) -> Vec<Observation> {
    let mut out = Vec::new();
    for (log, xpath) in windows::QUERIES {
        let q = format!("/q:{xpath}");
        let subject = format!("eventlog:{log}");
        let events = host
            .runner
            .run("wevtutil", &["qe", log, &q, "/c:50", "/rd:true", "/f:xml"])
            .map_err(|e| format!("wevtutil failed (reading the Security log needs administrator): {e}"))
            .and_then(|t| windows::parse_wevtutil_xml(&t));
        let events = match events {
            Ok(e) => e,
            Err(e) => {
                out.push(Observation::error(AuditLog::KIND, subject, host.now, e));
                continue;
            }
        };
        let seen = store.windows_seen.get(*log).copied();
        let new: Vec<LogEvent> = events
            .into_iter()
            .filter(|e| match (seen, e.record_id) {
                (Some(s), Some(id)) => id > s,
                _ => e.at.is_some_and(|t| host.now - t <= WINDOWS_LOOKBACK),
            })
            .collect();
        if let Some(max) = new.iter().filter_map(|e| e.record_id).max() {
            store.windows_seen.insert(log.to_string(), max.max(seen.unwrap_or(0)));
        }
        let cleared = new.iter().any(|e| e.what == "log_cleared");
        let log = AuditLog {
            path: subject.clone(),
            present: true,
            cleared: Some(cleared),
            change: Some(if cleared { "cleared" } else { "unchanged" }.to_string()),
            events: new,
            ..AuditLog::default()
        };
        out.push(Observation::ok(subject, host.now, &log));
    }
    let state = host
        .runner
        .run("sc", &["query", "EventLog"])
        .ok()
        .and_then(|t| windows::sc_field(&t, "STATE"));
    let start = host
        .runner
        .run("sc", &["qc", "EventLog"])
        .ok()
        .and_then(|t| windows::sc_field(&t, "START_TYPE"));
    out.push(Observation::ok(
        "eventlog",
        host.now,
        &AuditService {
            service: "eventlog".to_string(),
            installed: true,
            running: state.map(|s| s == "RUNNING"),
            enabled: start.map(|s| s == "AUTO_START"),
            persistent: Some(true),
            ..AuditService::default()
        },
    ));
    out
}

impl AuditCheck {
    /// Runs the check as on `platform`.
    pub fn collect(&self, host: &Host, platform: Platform) -> Vec<Observation> {
        let _one_at_a_time = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let mut store = match self.load(host) {
            Ok(s) => s,
            Err(e) => {
                return vec![Observation::error(AuditLog::KIND, "state", host.now, e)];
            }
        };
        let mut changes = Changes::default();
        let mut out = self.watched(host, &mut store, &mut changes);
        match platform {
            Platform::Linux | Platform::MacOs => out.extend(self.health(host, platform)),
            Platform::Windows => {
                let before = store.windows_seen.clone();
                out.extend(windows_logs(host, &mut store));
                changes.note(false, store.windows_seen != before);
            }
        }
        if let Some(e) = self.keep(host, store, changes) {
            tracing::warn!(check = "audit_log", error = %e, "cannot keep audit-log state");
            out.push(Observation::error(AuditLog::KIND, "state", host.now, e));
        }
        out
    }
}

impl AuditCheck {
    /// The service observations: read again when the last are older than [`HEALTH_EVERY`].
    fn health(&self, host: &Host, platform: Platform) -> Vec<Observation> {
        let mut cache = self.health.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, obs)) = &*cache
            && host.now >= *at
            && host.now - *at < HEALTH_EVERY
        {
            return obs.clone();
        }
        let obs = if platform == Platform::MacOs {
            vec![Observation::ok("unified-log", host.now, &unified_log_service(host))]
        } else {
            let mut last = self.verified_journal.lock().unwrap_or_else(|p| p.into_inner());
            let due = last
                .as_ref()
                .is_none_or(|(at, _, _)| host.now - *at >= VERIFY_EVERY || host.now < *at);
            let journald = journald_service(host, due).map(|mut j| {
                if due {
                    *last = Some((host.now, j.verify_passed, j.verify_failures.clone()));
                } else if let Some((_, passed, failures)) = &*last {
                    j.verify_passed = *passed;
                    j.verify_failures = failures.clone();
                }
                j
            });
            vec![
                Observation::from_result("auditd", host.now, auditd_service(host)),
                Observation::from_result("journald", host.now, journald),
            ]
        };
        *cache = Some((host.now, obs.clone()));
        obs
    }
}

impl Check for AuditCheck {
    fn name(&self) -> &'static str {
        "audit_log"
    }

    fn kinds(&self) -> &'static [&'static str] {
        &[AuditLog::KIND, AuditService::KIND]
    }

    fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(120)
    }

    fn run(&self, host: &Host) -> Vec<Observation> {
        self.collect(host, platform())
    }

    /// Every watched file (its directory is watched too, so rotation and recreation are seen),
    /// and the directory of every glob.
    fn watch_paths(&self, host: &Host) -> Vec<PathBuf> {
        let memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        let loaded;
        let store = match &*memory {
            Some(store) => store,
            None => {
                loaded = host
                    .state_dir
                    .as_ref()
                    .and_then(|d| Store::load(d).ok())
                    .unwrap_or_default();
                &loaded
            }
        };
        let mut out: Vec<PathBuf> = Vec::new();
        for t in self.targets(host, store) {
            out.push(host.path(&t.host_path));
        }
        for spec in self.logs.iter().filter(|s| s.is_glob()) {
            if let Some(dir) = host.path(&spec.path).parent() {
                out.push(dir.to_path_buf());
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests;
