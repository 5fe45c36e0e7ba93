//! The repository password of a backup source never leaves the machine: a real agent checks a
//! real restic repository at trace log level and delivers to a real collector, and the
//! password appears in no log line, no file of the agent's state dir (its spool included) and
//! no file of the collector's data dir (its store included).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{Collector, eventually};

const PASSWORD: &str = "e2e-restic-pw-5b8d41c2";

/// Every file under `dir`, read whole.
fn files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_password_reaches_no_log_spool_or_store() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let pass = work.path().join("restic.pass");
    std::fs::write(&pass, format!("{PASSWORD}\n")).unwrap();
    let restic = |args: &[&str]| {
        let out = Command::new("restic")
            .args(args)
            .env("RESTIC_PASSWORD_FILE", &pass)
            .output()
            .unwrap_or_else(|e| panic!("restic is needed by this test (apt-get install restic): {e}"));
        assert!(
            out.status.success(),
            "restic {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let repo_s = repo.to_str().unwrap();
    restic(&["-q", "init", "-r", repo_s]);
    restic(&["-q", "backup", "-r", repo_s, pass.to_str().unwrap()]);

    let c = Collector::start();
    let key = c.api_key();
    let state = tempfile::tempdir().unwrap();
    c.enroll_agent("Smith Family Practice", "Main Street", state.path());

    // Only the backup check, every two seconds; no probes.
    let mut config = String::from("heartbeat_interval_secs = 1\n[probes]\nbaseline = false\n");
    for name in rounds_agent_config::CHECKS {
        if *name != "backup" {
            config.push_str(&format!("[checks.{name}]\nenabled = false\n"));
        }
    }
    config.push_str(&format!(
        "[checks.backup]\nschedule = \"*/2 * * * * *\"\n\n[[backup]]\nname = \"nightly\"\nkind = \"restic\"\nrepository = \"{repo_s}\"\npassword_file = \"{}\"\nstats = true\ndestination = \"nas\"\n",
        pass.display()
    ));
    let config_file = work.path().join("agent.toml");
    std::fs::write(&config_file, config).unwrap();
    let log = work.path().join("agent.log");
    let mut agent = Command::new(crate::support::bin("rounds-agent"))
        .args(["run", "--state-dir", state.path().to_str().unwrap()])
        .arg("--config")
        .arg(&config_file)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::from(
            std::fs::File::create(work.path().join("agent.out")).unwrap(),
        ))
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();

    // The check ran with the password (restic answered) and its report reached the store.
    let agents = eventually("the agent at the collector", Duration::from_secs(30), || async {
        let a = c.get_json(&key, "/api/v1/agents").await;
        a.as_array().filter(|a| !a.is_empty()).cloned()
    })
    .await;
    let id = agents[0]["agent_id"]
        .as_str()
        .or(agents[0]["id"].as_str())
        .unwrap()
        .to_string();
    let path = format!("/api/v1/agents/{id}/observations?kind=backup");
    let backup = eventually(
        "a backup observation at the collector",
        Duration::from_secs(60),
        || async {
            let o = c.get_json(&key, &path).await;
            o.as_array()
                .and_then(|a| a.iter().find(|o| o["subject"] == "nightly").cloned())
        },
    )
    .await;
    let _ = Command::new("kill").args(["-TERM", &agent.id().to_string()]).status();
    let _ = agent.wait();
    assert_eq!(backup["data"]["last_result"], "success", "{backup}");

    let mut looked = 0;
    for dir in [state.path(), c.data_dir.path()] {
        for (file, bytes) in files(dir) {
            looked += 1;
            assert!(!contains(&bytes, PASSWORD), "the password is in {}", file.display());
        }
    }
    let log_text = std::fs::read(&log).unwrap();
    assert!(log_text.len() > 1000, "the trace log holds the run");
    assert!(
        !contains(&log_text, PASSWORD),
        "the password is in the agent's trace log"
    );
    assert!(
        files(state.path()).iter().any(|(p, _)| p.ends_with("spool.jsonl")),
        "the spool was among the files searched"
    );
    assert!(looked > 3);
    // The search itself finds the password where it is: in the password file.
    assert!(
        files(work.path())
            .iter()
            .any(|(p, b)| p == &pass && contains(b, PASSWORD))
    );
}
