//! The audit-log check on real files with the watcher running (acceptance of issue 11, agent
//! side): each case takes a baseline, starts `rounds_agent::watch::Watcher` on the check's
//! `watch_paths`, changes the log as a person or logrotate would, waits for the watcher to wake
//! (within 2 s) and re-runs the check; the observation is judged by the built-in HIPAA pack's
//! `hipaa.audit.log_integrity`.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use rounds_agent::checks::audit::AuditCheck;
use rounds_agent::checks::{Check, CommandRunner, Host};
use rounds_agent::watch::Watcher;
use rounds_agent_config::audit_log::AuditLogSpec;
use rounds_policies::{EvalContext, Os, Policy, Role, Status};
use rounds_protocol::Observation;
use rounds_protocol::obs::AuditLog;

const LOG: &str = "/var/log/ehr/app.log";

#[derive(Debug)]
struct NoCommands;

impl CommandRunner for NoCommands {
    fn run(&self, program: &str, _args: &[&str]) -> Result<String, String> {
        Err(format!("cannot run {program}: audit tests run no commands"))
    }
}

/// A host root with one watched log and a state dir.
struct Rig {
    root: tempfile::TempDir,
    state: tempfile::TempDir,
}

impl Rig {
    fn new() -> Rig {
        let rig = Rig {
            root: tempfile::tempdir().unwrap(),
            state: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(rig.path().parent().unwrap()).unwrap();
        let mut content = String::new();
        for i in 0..400 {
            content.push_str(&format!("2026-12-01T10:{:02}:00Z login ok user{i}\n", i % 60));
        }
        std::fs::write(rig.path(), content).unwrap();
        set_mode(&rig.path(), 0o640);
        rig
    }

    fn path(&self) -> PathBuf {
        self.root.path().join(LOG.trim_start_matches('/'))
    }

    fn host(&self) -> Host {
        Host {
            root: self.root.path().to_path_buf(),
            runner: Arc::new(NoCommands),
            now: Utc::now(),
            live: false,
            state_dir: Some(self.state.path().to_path_buf()),
        }
    }

    fn check(&self) -> AuditCheck {
        AuditCheck::new(vec![AuditLogSpec::file(LOG)])
    }
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn log_of(obs: &[Observation]) -> AuditLog {
    let o = obs
        .iter()
        .find(|o| o.kind == "audit.log" && o.subject == LOG)
        .unwrap_or_else(|| panic!("no audit.log observation of {LOG}: {obs:#?}"));
    o.payload::<AuditLog>().unwrap_or_else(|| panic!("{o:#?}")).unwrap()
}

fn verdict(obs: &[Observation]) -> Status {
    let policy = Policy::builtin().unwrap();
    let ctx = EvalContext {
        now: Utc::now(),
        os: Os::Linux,
        role: Some(Role::Server),
    };
    let mine: Vec<Observation> = obs.iter().filter(|o| o.kind == "audit.log").cloned().collect();
    rounds_policies::evaluate(&mine, &policy, &ctx)
        .into_iter()
        .find(|f| f.rule == "hipaa.audit.log_integrity")
        .unwrap()
        .status
}

/// Takes the baseline, starts the watcher, applies `change`, waits for the watcher (at most
/// 2 s) and re-runs the check; returns the observations and how long detection took.
async fn watched(rig: &Rig, check: &AuditCheck, change: impl FnOnce(&Path)) -> (Vec<Observation>, Duration) {
    let first = check.run(&rig.host());
    assert_eq!(log_of(&first).change.as_deref(), Some("new"), "{first:#?}");
    let mut w = Watcher::new(&check.watch_paths(&rig.host()), Duration::from_millis(100)).unwrap();
    // inotify watches are in place once `new` returns; give the backend a moment all the same.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let start = Instant::now();
    change(&rig.path());
    tokio::time::timeout(Duration::from_secs(2), w.changed())
        .await
        .expect("the watcher wakes within 2 s");
    let obs = check.run(&rig.host());
    (obs, start.elapsed())
}

fn append(p: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn flip_byte(p: &Path, at: u64) {
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(p).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(b"#").unwrap();
    f.sync_all().unwrap();
}

#[tokio::test]
async fn a_append_passes() {
    let rig = Rig::new();
    let check = rig.check();
    let (obs, _) = watched(&rig, &check, |p| append(p, "2026-12-01T11:00:00Z login ok user9\n")).await;
    let log = log_of(&obs);
    assert_eq!(log.change.as_deref(), Some("appended"), "{log:#?}");
    assert_eq!(log.append_only, Some(true));
    assert!(log.size_bytes > log.old_size_bytes);
    assert_eq!(verdict(&obs), Status::Pass);
}

#[tokio::test]
async fn b_one_byte_changed_in_the_middle_is_tamper_with_its_range_within_2_s() {
    let rig = Rig::new();
    let check = rig.check();
    let size = std::fs::metadata(rig.path()).unwrap().len();
    let middle = size / 2;
    let (obs, took) = watched(&rig, &check, |p| flip_byte(p, middle)).await;
    assert!(took < Duration::from_secs(2), "{took:?}");
    let log = log_of(&obs);
    assert_eq!(log.rewritten, Some(true), "{log:#?}");
    let t = log.tamper.clone().expect("a tamper event");
    assert_eq!(t.kind, "rewritten");
    let (a, b) = (t.range_start.unwrap(), t.range_end.unwrap());
    assert!(
        a <= middle && middle < b && b - a <= 4096,
        "range {a}..{b} holds byte {middle}"
    );
    assert_eq!((t.old_size_bytes, t.new_size_bytes), (Some(size), Some(size)));
    assert_eq!(log.last_tamper.as_ref().map(|l| &l.id), Some(&t.id));
    assert_eq!(verdict(&obs), Status::Fail);
    // The event keeps its id in later observations, for the collector to keep until acknowledged.
    let later = log_of(&check.run(&rig.host()));
    assert_eq!(later.last_tamper.map(|l| l.id), Some(t.id));
    assert_eq!(later.tamper, None);
}

#[test]
fn c_an_edit_made_while_the_agent_is_stopped_is_caught_at_the_next_start() {
    let rig = Rig::new();
    let size = std::fs::metadata(rig.path()).unwrap().len();
    {
        let before = rig.check();
        let first = before.run(&rig.host());
        assert_eq!(log_of(&first).change.as_deref(), Some("new"));
        append(&rig.path(), "2026-12-01T11:00:00Z login ok user9\n");
        assert_eq!(log_of(&before.run(&rig.host())).change.as_deref(), Some("appended"));
    }
    // The agent is stopped: the same edit, then a new process (a new check object, same state dir).
    flip_byte(&rig.path(), size / 2);
    let obs = rig.check().run(&rig.host());
    let log = log_of(&obs);
    assert_eq!(log.rewritten, Some(true), "{log:#?}");
    let t = log.tamper.unwrap();
    assert!(t.range_start.unwrap() <= size / 2 && size / 2 < t.range_end.unwrap());
    assert_eq!(verdict(&obs), Status::Fail);
}

#[tokio::test]
async fn d_truncation_is_tamper() {
    let rig = Rig::new();
    let check = rig.check();
    let size = std::fs::metadata(rig.path()).unwrap().len();
    let (obs, _) = watched(&rig, &check, |p| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(p)
            .unwrap()
            .set_len(size / 3)
            .unwrap();
    })
    .await;
    let log = log_of(&obs);
    assert_eq!(log.truncated, Some(true), "{log:#?}");
    let t = log.tamper.unwrap();
    assert_eq!(
        (t.kind.as_str(), t.range_start, t.range_end),
        ("truncated", Some(size / 3), Some(size))
    );
    assert_eq!(verdict(&obs), Status::Fail);
}

#[tokio::test]
async fn e_delete_and_recreate_is_tamper() {
    let rig = Rig::new();
    let check = rig.check();
    let (obs, _) = watched(&rig, &check, |p| {
        std::fs::remove_file(p).unwrap();
        std::fs::write(p, "2026-12-01T12:00:00Z a fresh start\n").unwrap();
    })
    .await;
    let log = log_of(&obs);
    let t = log.tamper.clone().unwrap_or_else(|| panic!("{log:#?}"));
    assert!(matches!(t.kind.as_str(), "replaced" | "deleted"), "{t:#?}");
    assert_eq!(verdict(&obs), Status::Fail);
}

#[tokio::test]
async fn f_logrotate_rename_and_a_new_file_pass() {
    let rig = Rig::new();
    let check = rig.check();
    let (obs, _) = watched(&rig, &check, |p| {
        append(p, "2026-12-01T23:59:59Z last line before rotation\n");
        std::fs::rename(p, p.with_extension("log.1")).unwrap();
        std::fs::write(p, "").unwrap();
        set_mode(p, 0o640);
    })
    .await;
    let log = log_of(&obs);
    assert_eq!(
        (log.change.as_deref(), log.rotation.as_deref()),
        (Some("rotated"), Some("rename")),
        "{log:#?}"
    );
    assert!(log.rotated_to.unwrap().ends_with("app.log.1"));
    assert_eq!(log.tamper, None);
    assert_eq!(verdict(&obs), Status::Pass);
}

#[tokio::test]
async fn g_copytruncate_passes() {
    let rig = Rig::new();
    let check = rig.check();
    let (obs, _) = watched(&rig, &check, |p| {
        append(p, "2026-12-01T23:59:59Z last line before rotation\n");
        std::fs::copy(p, p.with_extension("log.1")).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(p)
            .unwrap()
            .set_len(0)
            .unwrap();
    })
    .await;
    let log = log_of(&obs);
    assert_eq!(
        (log.change.as_deref(), log.rotation.as_deref()),
        (Some("rotated"), Some("copytruncate")),
        "{log:#?}"
    );
    assert_eq!(verdict(&obs), Status::Pass);
}

#[tokio::test]
async fn g_truncation_with_a_copy_that_differs_is_still_tamper() {
    let rig = Rig::new();
    let check = rig.check();
    let (obs, _) = watched(&rig, &check, |p| {
        let mut copy = std::fs::read(p).unwrap();
        copy[10] ^= 1;
        std::fs::write(p.with_extension("log.1"), copy).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(p)
            .unwrap()
            .set_len(0)
            .unwrap();
    })
    .await;
    assert_eq!(log_of(&obs).truncated, Some(true));
    assert_eq!(verdict(&obs), Status::Fail);
}

#[test]
fn a_copy_put_aside_does_not_excuse_a_replaced_log() {
    let rig = Rig::new();
    let check = rig.check();
    check.run(&rig.host());
    let p = rig.path();
    std::fs::copy(&p, p.with_extension("log.1")).unwrap();
    let mut edited = std::fs::read(&p).unwrap();
    edited[100] = b'#';
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, edited).unwrap();
    std::fs::rename(&tmp, &p).unwrap();
    let obs = check.run(&rig.host());
    assert_eq!(log_of(&obs).replaced, Some(true), "{:#?}", log_of(&obs));
    assert_eq!(verdict(&obs), Status::Fail);
}

#[test]
fn a_deleted_log_is_one_tamper_event_not_one_per_look() {
    let rig = Rig::new();
    let check = rig.check();
    check.run(&rig.host());
    std::fs::remove_file(rig.path()).unwrap();
    let first = log_of(&check.run(&rig.host()));
    assert_eq!((first.deleted, first.present), (Some(true), false));
    let id = first.tamper.unwrap().id;
    let again = log_of(&check.run(&rig.host()));
    assert_eq!((again.change.as_deref(), again.tamper), (Some("missing"), None));
    assert_eq!(again.last_tamper.map(|t| t.id), Some(id));
}

#[tokio::test]
async fn h_chmod_o_plus_w_fails() {
    let rig = Rig::new();
    let check = rig.check();
    let (obs, _) = watched(&rig, &check, |p| set_mode(p, 0o642)).await;
    let log = log_of(&obs);
    assert_eq!(
        (log.world_writable, log.mode_widened),
        (Some(true), Some(true)),
        "{log:#?}"
    );
    assert_eq!(log.mode.as_deref(), Some("0642"));
    assert_eq!(log.tamper.map(|t| t.kind), Some("mode_widened".to_string()));
    assert_eq!(verdict(&obs), Status::Fail);
}

#[test]
fn a_rewrite_hidden_behind_an_append_is_found_by_the_next_full_look() {
    let rig = Rig::new();
    let check = rig.check();
    check.run(&rig.host());
    flip_byte(&rig.path(), 100);
    append(&rig.path(), "more\n");
    // Same process, the file grew: only the appended bytes are hashed now...
    let quick = log_of(&check.run(&rig.host()));
    // ...and a full look (a new process, or FULL_VERIFY_EVERY later) finds the rewrite.
    let mut later = rig.host();
    later.now = Utc::now() + rounds_agent::checks::audit::FULL_VERIFY_EVERY;
    append(&rig.path(), "more\n");
    let full = log_of(&check.run(&later));
    assert_eq!(
        (quick.change.as_deref(), quick.rewritten),
        (Some("appended"), Some(false)),
        "{quick:#?}"
    );
    assert_eq!(full.rewritten, Some(true), "{full:#?}");
    let t = full.tamper.unwrap();
    assert_eq!((t.range_start, t.range_end), (Some(0), Some(4096)));
    assert_eq!(full.verified_bytes.map(|b| b > 0), Some(true));
}

#[test]
fn globs_watch_every_match_and_report_what_they_lose() {
    let rig = Rig::new();
    let other = rig.path().with_file_name("other.log");
    std::fs::write(&other, "x\n").unwrap();
    let check = AuditCheck::new(vec![AuditLogSpec {
        name: "ehr".into(),
        path: "/var/log/ehr/*.log".into(),
        rotated: vec![],
    }]);
    let obs = check.run(&rig.host());
    let subjects: Vec<&str> = obs
        .iter()
        .filter(|o| o.kind == "audit.log")
        .map(|o| o.subject.as_str())
        .collect();
    assert_eq!(subjects, ["/var/log/ehr/app.log", "/var/log/ehr/other.log"]);
    assert!(
        check
            .watch_paths(&rig.host())
            .contains(&rig.path().parent().unwrap().to_path_buf())
    );
    std::fs::remove_file(&other).unwrap();
    let obs = check.run(&rig.host());
    let gone = obs.iter().find(|o| o.subject == "/var/log/ehr/other.log").unwrap();
    assert_eq!(gone.payload::<AuditLog>().unwrap().unwrap().deleted, Some(true));
}

#[test]
fn the_state_file_holds_hashes_and_metadata_never_log_lines() {
    let rig = Rig::new();
    let obs = rig.check().run(&rig.host());
    let state = std::fs::read_to_string(rig.state.path().join(rounds_agent::checks::audit::STATE_FILE)).unwrap();
    assert!(!state.contains("login ok") && !state.contains("user1"), "{state}");
    let sent = serde_json::to_string(&obs).unwrap();
    assert!(!sent.contains("login ok") && !sent.contains("user1"), "{sent}");
}

/// `rounds-agent check --state-dir DIR --config FILE` keeps the state between runs: an edit
/// between two runs (processes) is found by the second.
#[test]
fn check_with_a_state_dir_compares_two_runs() {
    let rig = Rig::new();
    let config = rig.state.path().join("agent.toml");
    std::fs::write(&config, format!("[[audit_log]]\npath = \"{LOG}\"\n")).unwrap();
    let state = rig.state.path().join("state");
    let run = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rounds-agent"))
            .args(["check", "--format", "json", "--root"])
            .arg(rig.root.path())
            .arg("--state-dir")
            .arg(&state)
            .arg("--config")
            .arg(&config)
            .env_remove("ROUNDS_AGENT_STATE_DIR")
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        let obs: Vec<Observation> = serde_json::from_value(report["observations"].clone()).unwrap();
        log_of(&obs)
    };
    assert_eq!(run().change.as_deref(), Some("new"));
    assert_eq!(run().change.as_deref(), Some("unchanged"));
    flip_byte(&rig.path(), 5000);
    let log = run();
    assert_eq!(log.rewritten, Some(true), "{log:#?}");
    assert_eq!(
        log.tamper.map(|t| (t.range_start, t.range_end)),
        Some((Some(4096), Some(8192)))
    );
}
