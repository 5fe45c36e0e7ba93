//! The `rounds-agent` binary: subcommands, output and exit codes (64 bad configuration, 1 failure).

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use rounds_protocol::paths;
use tokio::process::Command;

use crate::support::{AGENT_ID, AGENT_SECRET, Ca, FakeCollector, healthy, write_ca};

fn agent() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rounds-agent"));
    c.env_remove("ROUNDS_AGENT_STATE_DIR")
        .env("RUST_LOG", "info")
        .kill_on_drop(true);
    c
}

async fn output(c: &mut Command) -> (i32, String, String) {
    let Output { status, stdout, stderr } = tokio::time::timeout(Duration::from_secs(60), c.output())
        .await
        .expect("rounds-agent finishes")
        .unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[tokio::test]
async fn validate_accepts_a_good_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(
        tmp.path(),
        "agent.toml",
        "heartbeat_interval_secs = 15\n[checks.inventory]\nschedule = \"0 30 * * * *\"\n",
    );
    let (code, out, err) = output(agent().arg("validate").arg("--config").arg(&cfg)).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("ok") && out.contains("15s") && out.contains("0 30 * * * *"),
        "{out}"
    );
}

#[tokio::test]
async fn validate_refuses_a_bad_file_with_64_naming_key_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(
        tmp.path(),
        "agent.toml",
        "heartbeat_interval_secs = 15\n\n[checks.inventory]\nschedule = \"often\"\n",
    );
    let (code, _, err) = output(agent().arg("validate").arg("--config").arg(&cfg)).await;
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("checks.inventory.schedule"), "{err}");
    assert!(
        err.contains(&format!("{}:4: ", cfg.display())),
        "names file and line: {err}"
    );

    let cfg = write(tmp.path(), "typo.toml", "heartbeat_interval = 15\n");
    let (code, _, err) = output(agent().arg("validate").arg("--config").arg(&cfg)).await;
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("heartbeat_interval") && err.contains("typo.toml:1: "),
        "{err}"
    );
}

#[tokio::test]
async fn run_with_a_bad_config_exits_64_before_anything_else() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(tmp.path(), "agent.toml", "surprise = true\n");
    let (code, _, err) = output(
        agent()
            .arg("run")
            .arg("--state-dir")
            .arg(tmp.path())
            .arg("--config")
            .arg(&cfg),
    )
    .await;
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("surprise"), "{err}");
}

#[tokio::test]
async fn status_and_run_without_enrollment_exit_1() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, out, _) = output(agent().arg("status").arg("--state-dir").arg(tmp.path())).await;
    assert_eq!(code, 1);
    assert!(out.contains("enrolled:        no"), "{out}");

    // The environment variable names the state dir too.
    let (code, out, _) = output(agent().arg("status").env("ROUNDS_AGENT_STATE_DIR", tmp.path())).await;
    assert_eq!(code, 1);
    assert!(out.contains(&tmp.path().display().to_string()), "{out}");

    let (code, _, err) = output(agent().arg("run").arg("--state-dir").arg(tmp.path())).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not enrolled"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrollment_refusal_is_shown_and_exits_1() {
    let ca = Ca::new("Rounds CA");
    let collector = FakeCollector::start(&ca, |_| (409, r#"{"error":"enrollment token already used"}"#.into())).await;
    let tmp = tempfile::tempdir().unwrap();
    let ca_file = write_ca(&ca, tmp.path(), "ca.pem");
    let (code, out, err) = output(
        agent()
            .args(["enroll", "--collector", &collector.url, "--token", "tok_used", "--ca"])
            .arg(&ca_file)
            .arg("--state-dir")
            .arg(tmp.path().join("state")),
    )
    .await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("enrollment refused by collector: enrollment token already used"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_status_run_and_stop_on_sigterm() {
    let ca = Ca::new("Rounds CA");
    let collector = FakeCollector::start(&ca, healthy).await;
    let tmp = tempfile::tempdir().unwrap();
    let state_dir = tmp.path().join("state");
    let ca_file = write_ca(&ca, tmp.path(), "ca.pem");

    let (code, out, err) = output(
        agent()
            .args(["enroll", "--collector", &collector.url, "--token", "tok_1", "--ca"])
            .arg(&ca_file)
            .arg("--state-dir")
            .arg(&state_dir),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    for want in [AGENT_ID, "Maple Family Practice", "Main Street"] {
        assert!(out.contains(want), "missing {want}: {out}");
    }
    assert!(
        !out.contains(AGENT_SECRET) && !err.contains(AGENT_SECRET),
        "the secret is never printed"
    );

    // `run` needs no --ca: the CA was copied into the state dir.
    std::fs::remove_file(&ca_file).unwrap();
    let cfg = write(tmp.path(), "agent.toml", "heartbeat_interval_secs = 1\n");
    let child = agent()
        .arg("run")
        .arg("--state-dir")
        .arg(&state_dir)
        .arg("--config")
        .arg(&cfg)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    collector
        .wait_for("a heartbeat and a report", |c| {
            !c.on(paths::HEARTBEAT).is_empty() && !c.on(paths::REPORTS).is_empty()
        })
        .await;
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("stops")
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("reports delivered") && err.contains("agent stopped"),
        "{err}"
    );
    assert!(!err.contains(AGENT_SECRET), "the secret is never logged");

    let (code, out, _) = output(agent().arg("status").arg("--state-dir").arg(&state_dir)).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("enrolled:        yes") && out.contains(AGENT_ID) && out.contains("(sequence "),
        "{out}"
    );
    assert!(!out.contains("last heartbeat:  never"), "{out}");
}

#[tokio::test]
async fn without_a_config_file_run_keeps_the_interval_announced_at_enrollment() {
    let ca = Ca::new("Rounds CA");
    let collector = FakeCollector::start(&ca, healthy).await;
    let tmp = tempfile::tempdir().unwrap();
    let state_dir = tmp.path().join("state");
    let ca_file = write_ca(&ca, tmp.path(), "ca.pem");
    let (code, _, err) = output(
        agent()
            .args(["enroll", "--collector", &collector.url, "--token", "tok_1", "--ca"])
            .arg(&ca_file)
            .arg("--state-dir")
            .arg(&state_dir),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    // The fake collector announces 1 s; the default would be 30 s.
    let mut child = agent().arg("run").arg("--state-dir").arg(&state_dir).spawn().unwrap();
    collector
        .wait_for("three heartbeats a second apart", |c| c.on(paths::HEARTBEAT).len() >= 3)
        .await;
    child.kill().await.unwrap();
}
