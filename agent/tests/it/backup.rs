//! The backup check against real repositories that each test makes with the real `restic` and
//! `borg` (Debian's packages, installed by .ci/run), judged by the built-in HIPAA pack; folder
//! sources through the real file watcher; restore tests; and that passwords go nowhere.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rounds_agent::checks::backup::{BackupCheck, restore};
use rounds_agent::checks::{Check, Host};
use rounds_policies::{EvalContext, Finding, Os, Policy, Role, Status};
use rounds_protocol::obs::Backup;
use rounds_protocol::{Observation, ObservationStatus};

const RESTIC_PASSWORD: &str = "restic-pw-7f3a9c1e";
const BORG_PASSWORD: &str = "borg-pw-2b8d4e6f";

/// Runs a tool the test needs; a missing tool fails loudly (CI installs it).
fn tool(program: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("{program} is needed by this test (apt-get install restic borgbackup): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A temp dir with data to back up and a password file.
struct Scene {
    dir: tempfile::TempDir,
}

impl Scene {
    fn new() -> Scene {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("charts")).unwrap();
        for i in 0..5 {
            std::fs::write(
                data.join(format!("charts/file{i}.txt")),
                format!("record {i}\n").repeat(100 * (i + 1)),
            )
            .unwrap();
        }
        std::fs::write(dir.path().join("restic.pass"), format!("{RESTIC_PASSWORD}\n")).unwrap();
        std::fs::write(dir.path().join("borg.pass"), format!("{BORG_PASSWORD}\n")).unwrap();
        std::fs::write(dir.path().join("wrong.pass"), "not-the-password\n").unwrap();
        std::fs::create_dir(dir.path().join("state")).unwrap();
        Scene { dir }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn s(&self, p: &str) -> String {
        self.path(p).display().to_string()
    }

    /// A restic repository with one snapshot per `times` entry (`None`: now).
    fn restic_repo(&self, times: &[Option<&str>]) -> String {
        let repo = self.s("restic-repo");
        let env = [("RESTIC_PASSWORD", RESTIC_PASSWORD)];
        tool("restic", &["-q", "init", "-r", &repo], &env);
        for t in times {
            let data = self.s("data");
            let mut args = vec!["-q", "-r", repo.as_str(), "backup", data.as_str()];
            if let Some(t) = t {
                args.extend(["--time", t]);
            }
            tool("restic", &args, &env);
        }
        repo
    }

    fn borg_repo(&self) -> String {
        let repo = self.s("borg-repo");
        let env = [
            ("BORG_PASSPHRASE", BORG_PASSWORD),
            ("BORG_BASE_DIR", &self.s("borg-home")),
        ];
        tool("borg", &["init", "--encryption=repokey", &repo], &env);
        let data = self.s("data");
        tool("borg", &["create", &format!("{repo}::first"), &data], &env);
        repo
    }

    fn host(&self) -> Host {
        Host {
            state_dir: Some(self.path("state")),
            ..Host::system()
        }
    }

    fn check(&self, toml: &str) -> BackupCheck {
        let c = rounds_agent_config::parse(toml, Path::new("agent.toml")).unwrap();
        BackupCheck::new(c.backups)
    }
}

fn restic_source(repo: &str, pass: &Path) -> String {
    format!(
        "[[backup]]\nname = \"nightly\"\nkind = \"restic\"\nrepository = \"{repo}\"\npassword_file = \"{}\"\nstats = true\ndestination = \"nas\"\n",
        pass.display()
    )
}

fn finding(obs: &[Observation], rule: &str, now: DateTime<Utc>) -> Finding {
    let policy = Policy::builtin().unwrap();
    let ctx = EvalContext {
        now,
        os: Os::Linux,
        role: Some(Role::Server),
    };
    rounds_policies::evaluate(obs, &policy, &ctx)
        .into_iter()
        .find(|f| f.rule == rule)
        .unwrap()
}

fn backup_of(obs: &[Observation], subject: &str) -> Backup {
    let o = obs
        .iter()
        .find(|o| o.kind == "backup" && o.subject == subject)
        .unwrap_or_else(|| panic!("no backup {subject} in {obs:#?}"));
    assert_eq!(o.status, ObservationStatus::Ok, "{o:#?}");
    o.payload::<Backup>().unwrap().unwrap()
}

#[test]
fn a_fresh_restic_snapshot_passes_and_an_old_one_fails_with_its_time() {
    let scene = Scene::new();
    let repo = scene.restic_repo(&[Some("2020-01-02 03:04:05"), None]);
    let host = scene.host();
    let check = scene.check(&restic_source(&repo, &scene.path("restic.pass")));
    let obs = check.run(&host);
    let b = backup_of(&obs, "nightly");
    assert_eq!(
        (b.tool.as_str(), b.last_result.as_str(), b.encrypted),
        ("restic", "success", Some(true))
    );
    assert_eq!(b.backup_count, Some(2));
    assert!(
        b.size_bytes.is_some_and(|s| s > 1000) && b.previous_size_bytes == b.size_bytes,
        "{b:#?}"
    );
    let f = finding(&obs, "hipaa.backup.recent", host.now);
    assert_eq!(f.status, Status::Pass, "{f:#?}");

    let old = Scene::new();
    let repo = old.restic_repo(&[Some("2020-01-02 03:04:05")]);
    let obs = old
        .check(&restic_source(&repo, &old.path("restic.pass")))
        .run(&old.host());
    let f = finding(&obs, "hipaa.backup.recent", Utc::now());
    assert_eq!(f.status, Status::Fail, "{f:#?}");
    let values = &f.evidence["observations"][0]["values"];
    assert_eq!(values["last_success_at"], "2020-01-02T03:04:05Z", "{f:#?}");
    assert!(f.message.contains("2020-01-02T03:04:05Z"), "{}", f.message);
}

#[test]
fn wrong_password_and_missing_repository_are_errors_that_name_the_cause() {
    let scene = Scene::new();
    let repo = scene.restic_repo(&[None]);
    let text = format!(
        "{}\n[[backup]]\nname = \"gone\"\nkind = \"restic\"\nrepository = \"{}\"\npassword_file = \"{}\"\n",
        restic_source(&repo, &scene.path("wrong.pass")),
        scene.s("no-such-repo"),
        scene.path("restic.pass").display()
    );
    let obs = scene.check(&text).run(&scene.host());
    let f = finding(&obs, "hipaa.backup.recent", Utc::now());
    assert_eq!(f.status, Status::Error, "{f:#?}");
    assert!(
        f.message
            .contains(&format!("wrong password for restic repository {repo}")),
        "{}",
        f.message
    );
    assert!(
        f.message
            .contains(&format!("restic repository {} is missing", scene.s("no-such-repo"))),
        "{}",
        f.message
    );
    let missing_tool = scene.check(
        "[[backup]]\nname = \"b\"\nkind = \"borg\"\nrepository = \"/nonexistent/borg\"\npassword_env = \"ROUNDS_TEST_NO_SUCH_VAR\"\n",
    );
    let obs = missing_tool.run(&scene.host());
    let why = obs[0].error.as_deref().unwrap();
    assert!(why.contains("environment variable ROUNDS_TEST_NO_SUCH_VAR"), "{why}");
}

#[test]
fn borg_archives_are_read_and_a_wrong_passphrase_is_named() {
    let scene = Scene::new();
    let repo = scene.borg_repo();
    let text = format!(
        "[[backup]]\nname = \"borg\"\nkind = \"borg\"\nrepository = \"{repo}\"\npassword_file = \"{}\"\nstats = true\n\n[[backup]]\nname = \"borg-wrong\"\nkind = \"borg\"\nrepository = \"{repo}\"\npassword_file = \"{}\"\n",
        scene.path("borg.pass").display(),
        scene.path("wrong.pass").display()
    );
    let obs = scene.check(&text).run(&scene.host());
    let b = backup_of(&obs, "borg");
    assert_eq!(
        (b.last_result.as_str(), b.encrypted, b.backup_count),
        ("success", Some(true), Some(1))
    );
    assert!(b.size_bytes.is_some_and(|s| s > 1000), "{b:#?}");
    assert!(
        b.last_success_at
            .is_some_and(|t| Utc::now() - t < chrono::Duration::minutes(10))
    );
    let wrong = obs.iter().find(|o| o.subject == "borg-wrong").unwrap();
    let why = wrong.error.as_deref().unwrap_or("");
    assert!(
        why.starts_with(&format!("wrong passphrase for borg repository {repo}")),
        "{why}"
    );
}

#[test]
fn no_backup_configured_fails_recent_on_a_server() {
    let obs = BackupCheck::new(Vec::new()).run(&Host::system());
    let f = finding(&obs, "hipaa.backup.recent", Utc::now());
    assert_eq!(f.status, Status::Fail, "{f:#?}");
    assert!(
        f.message.contains("no backup is configured for this server"),
        "{}",
        f.message
    );
    for rule in [
        "hipaa.backup.succeeded",
        "hipaa.backup.encrypted",
        "hipaa.backup.restore_tested",
    ] {
        assert_eq!(finding(&obs, rule, Utc::now()).status, Status::NotApplicable, "{rule}");
    }
}

#[test]
fn a_restore_test_passes_on_a_sound_repository_and_fails_on_a_corrupted_pack() {
    let scene = Scene::new();
    let repo = scene.restic_repo(&[None]);
    let check = scene.check(&restic_source(&repo, &scene.path("restic.pass")));
    let source = check.source("nightly").unwrap();
    let host = scene.host();
    let t = restore::run(source, &host).unwrap();
    assert_eq!(t.outcome.result, "success", "{t:#?}");
    assert_eq!(t.files, 5);
    assert!(t.outcome.duration_secs.is_some_and(|d| d > 0.0));
    assert!(!scene.path("state/restore-test").exists(), "restored files are removed");
    let b = backup_of(&check.run(&host), "nightly");
    assert_eq!(b.last_restore_test_result.as_deref(), Some("success"));
    assert_eq!(b.last_restore_test_at, Some(host.now));
    assert_eq!(
        finding(&check.run(&host), "hipaa.backup.restore_tested", host.now).status,
        Status::Pass
    );

    // Flip bytes in the middle of every data pack file.
    let packs = files_under(&PathBuf::from(&repo).join("data"));
    assert!(!packs.is_empty());
    for p in packs {
        let mut bytes = std::fs::read(&p).unwrap();
        let mid = bytes.len() / 2;
        for b in &mut bytes[mid.saturating_sub(8)..mid + 8] {
            *b ^= 0xff;
        }
        let mut perm = std::fs::metadata(&p).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        std::fs::set_permissions(&p, perm).unwrap();
        std::fs::write(&p, bytes).unwrap();
    }
    let later = Host {
        now: host.now + chrono::Duration::hours(1),
        ..host.clone()
    };
    let t = restore::run(source, &later).unwrap();
    assert_eq!(t.outcome.result, "failed", "{t:#?}");
    assert!(t.outcome.error.is_some());
    let obs = check.run(&later);
    let b = backup_of(&obs, "nightly");
    assert_eq!(b.last_restore_test_result.as_deref(), Some("failed"));
    assert_eq!(
        b.last_successful_restore_test_at,
        Some(host.now),
        "the earlier pass stays the last success"
    );
    assert_eq!(
        finding(&obs, "hipaa.backup.restore_tested", later.now).status,
        Status::Fail
    );
}

#[tokio::test]
async fn a_new_file_in_a_backup_folder_shows_up_through_the_watcher_within_two_seconds() {
    let scene = Scene::new();
    let folder = scene.path("usb");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("monday.tar"), vec![1u8; 100]).unwrap();
    let check = scene.check(&format!(
        "[[backup]]\nname = \"usb\"\nkind = \"folder\"\npath = \"{}\"\n",
        folder.display()
    ));
    let host = Host {
        state_dir: Some(scene.path("state")),
        ..Host::system()
    };
    let before = backup_of(&check.run(&host), "usb");
    assert_eq!((before.file_count, before.size_bytes), (Some(1), Some(100)));
    let paths = check.watch_paths(&host);
    assert_eq!(paths, std::slice::from_ref(&folder));
    let mut watcher = rounds_agent::watch::Watcher::new(&paths, Duration::from_millis(100)).unwrap();
    let start = std::time::Instant::now();
    std::fs::write(folder.join("tuesday.tar"), vec![2u8; 300]).unwrap();
    tokio::time::timeout(Duration::from_secs(2), watcher.changed())
        .await
        .expect("the watcher wakes within 2 s");
    let after = backup_of(&check.run(&host), "usb");
    assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
    assert_eq!((after.file_count, after.size_bytes), (Some(2), Some(400)));
    assert!(after.last_success_at > before.last_success_at);
}

/// A `tracing` writer into memory.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn passwords_appear_in_no_log_observation_finding_or_state_file() {
    let scene = Scene::new();
    let restic = scene.restic_repo(&[None]);
    let borg = scene.borg_repo();
    let text = format!(
        "{}check_schedule = \"0 0 3 * * *\"\n\n[[backup]]\nname = \"borg\"\nkind = \"borg\"\nrepository = \"{borg}\"\npassword_file = \"{}\"\nstats = true\n",
        restic_source(&restic, &scene.path("restic.pass")),
        scene.path("borg.pass").display()
    );
    let check = scene.check(&text);
    let host = scene.host();
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let (obs, tests) = tracing::subscriber::with_default(subscriber, || {
        let t1 = restore::run(check.source("nightly").unwrap(), &host).unwrap();
        let t2 = restore::run(check.source("borg").unwrap(), &host).unwrap();
        (check.run(&host), [t1, t2])
    });
    for t in &tests {
        assert_eq!(t.outcome.result, "success", "{t:#?}");
    }
    assert_eq!(backup_of(&obs, "nightly").integrity_ok, Some(true));
    let findings = rounds_policies::evaluate(
        &obs,
        &Policy::builtin().unwrap(),
        &EvalContext {
            now: host.now,
            os: Os::Linux,
            role: Some(Role::Server),
        },
    );
    let mut haystacks = vec![
        String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned(),
        serde_json::to_string(&obs).unwrap(),
        serde_json::to_string(&findings).unwrap(),
        format!("{check:?} {tests:?}"),
    ];
    let state_files = files_under(&scene.path("state"));
    assert!(!state_files.is_empty());
    for f in state_files {
        haystacks.push(String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned());
    }
    assert!(
        haystacks[0].contains("restore test recorded"),
        "trace logs were captured"
    );
    for h in &haystacks {
        assert!(!h.contains(RESTIC_PASSWORD), "restic password leaked: {h}");
        assert!(!h.contains(BORG_PASSWORD), "borg password leaked: {h}");
    }
}

/// `rounds-agent backup restore-test NAME` records a pass that `rounds-agent check --config`
/// then reports, with every other check, and the restic password is in neither output.
#[test]
fn the_restore_test_command_records_what_check_then_reports() {
    let scene = Scene::new();
    let repo = scene.restic_repo(&[None]);
    let config = scene.path("agent.toml");
    std::fs::write(&config, restic_source(&repo, &scene.path("restic.pass"))).unwrap();
    let bin = env!("CARGO_BIN_EXE_rounds-agent");
    let state = scene.s("state");
    let out = Command::new(bin)
        .args(["backup", "restore-test", "nightly", "--config"])
        .arg(&config)
        .args(["--state-dir", &state])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("restore test of nightly: success, 5 files"),
        "{stdout}"
    );
    let out = Command::new(bin)
        .args(["backup", "restore-test", "weekly", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no [[backup]] named `weekly` (defined: nightly)"));

    let out = Command::new(bin)
        .args(["check", "--format", "json", "--config"])
        .arg(&config)
        .args(["--state-dir", &state])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains(RESTIC_PASSWORD));
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let obs: Vec<Observation> = serde_json::from_value(report["observations"].clone()).unwrap();
    let b = backup_of(&obs, "nightly");
    assert_eq!(b.last_restore_test_result.as_deref(), Some("success"));
    assert!(b.last_restore_test_duration_secs.is_some());
    let f = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "hipaa.backup.restore_tested")
        .unwrap();
    assert_ne!(f["status"], "error", "{f:#}");
}
