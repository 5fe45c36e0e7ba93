//! Reliable delivery between the real binaries over real TLS: a collector outage, an agent
//! killed with SIGKILL again and again, and a spool that cannot be written.
//!
//! "Exactly once, in order, no gaps" is read from the collector's own store: the rows of the
//! `reports` table for the agent are sequences 1..=N, each once (its primary key), and N is the
//! last sequence the agent's spool handed out.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{Collector, run};

/// Only inventory, every second, heartbeats every second.
pub(crate) const EVERY_SECOND: &str = "heartbeat_interval_secs = 1\n\
[checks.inventory]\nschedule = \"* * * * * *\"\n\
[checks.encryption]\nenabled = false\n[checks.firewall]\nenabled = false\n\
[checks.updates]\nenabled = false\n[checks.screen_lock]\nenabled = false\n\
[checks.malware]\nenabled = false\n[checks.time_sync]\nenabled = false\n\
[checks.passwords]\nenabled = false\n[checks.accounts]\nenabled = false\n\
[checks.disk_space]\nenabled = false\n";

struct Agent {
    state: tempfile::TempDir,
    config: std::path::PathBuf,
}

impl Agent {
    fn enroll(c: &Collector) -> Agent {
        Self::enroll_in(c, tempfile::tempdir().unwrap())
    }

    fn enroll_in(c: &Collector, state: tempfile::TempDir) -> Agent {
        c.enroll_agent("Smith Family Practice", "Main Street", state.path());
        let config = state.path().join("agent.toml");
        std::fs::write(&config, EVERY_SECOND).unwrap();
        Agent { state, config }
    }

    fn start(&self, env: &[(&str, &str)]) -> std::process::Child {
        let mut cmd = Command::new(crate::support::bin("rounds-agent"));
        cmd.args(["run", "--state-dir", self.state.path().to_str().unwrap()])
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.spawn().unwrap()
    }

    fn status(&self) -> String {
        let out = run(
            "rounds-agent",
            &["status", "--state-dir", self.state.path().to_str().unwrap()],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The last sequence the spool handed out.
    fn last_sequence(&self) -> u64 {
        let status = self.status();
        let line = status.lines().find(|l| l.starts_with("next sequence:")).unwrap();
        line.split_whitespace().last().unwrap().parse::<u64>().unwrap() - 1
    }

    /// How many reports the spool still holds (after the agent stopped: made after the last
    /// delivery, kept for the next start).
    fn undelivered(&self) -> u64 {
        let status = self.status();
        let line = status.lines().find(|l| l.starts_with("spool:")).unwrap();
        if line.contains("empty") {
            return 0;
        }
        line.split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("spool line not understood: {line}"))
    }

    /// Waits until the spool is empty.
    fn wait_delivered(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.status().contains("spool:           empty") {
            assert!(Instant::now() < deadline, "spool never emptied: {}", self.status());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The sequences the collector stored for its only agent, in order.
fn stored_sequences(data_dir: &Path) -> Vec<u64> {
    let db =
        rusqlite::Connection::open_with_flags(data_dir.join("rounds.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = db.prepare("SELECT sequence FROM reports ORDER BY sequence").unwrap();
    stmt.query_map([], |r| r.get::<_, i64>(0))
        .unwrap()
        .map(|r| r.unwrap() as u64)
        .collect()
}

fn assert_exactly_once(stored: &[u64], last: u64) {
    assert!(last > 0);
    assert_eq!(
        stored,
        (1..=last).collect::<Vec<_>>().as_slice(),
        "every report from 1 to {last} stored once, no gaps"
    );
}

fn kill(child: &mut std::process::Child, signal: &str) {
    let _ = Command::new("kill").args([signal, &child.id().to_string()]).status();
    let _ = child.wait();
}

fn stderr_of(child: std::process::Child) -> String {
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_collector_stopped_for_30_s_gets_every_report_once_and_in_order() {
    let c = Collector::start();
    let agent = Agent::enroll(&c);
    let mut child = agent.start(&[]);
    std::thread::sleep(Duration::from_secs(3));
    let c = c.restart_after(Duration::from_secs(30));
    // The agent kept checking every second while the collector was away.
    std::thread::sleep(Duration::from_secs(2));
    agent.wait_delivered(Duration::from_secs(90));
    kill(&mut child, "-TERM");
    let last = agent.last_sequence();
    assert!(last >= 30, "a report a second through the outage: {last}");
    assert_exactly_once(&stored_sequences(c.data_dir.path()), last);
}

#[test]
fn an_agent_killed_20_times_while_sending_loses_nothing_and_duplicates_nothing() {
    let c = Collector::start();
    let agent = Agent::enroll(&c);
    // A cheap pseudo-random source: the low bits of the clock.
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    for _ in 0..20 {
        let mut child = agent.start(&[]);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(300 + seed % 1500));
        kill(&mut child, "-KILL");
    }
    let child = agent.start(&[]);
    agent.wait_delivered(Duration::from_secs(60));
    let mut child = child;
    kill(&mut child, "-TERM");
    let last = agent.last_sequence();
    assert!(last >= 20, "{last}");
    // The agent makes a report every second: one made between the spool emptying and the
    // TERM may still be in the spool (durable, sent at the next start), never lost.
    let spooled = agent.undelivered();
    assert!(spooled <= 2, "{spooled} reports left in the spool: {}", agent.status());
    assert_exactly_once(&stored_sequences(c.data_dir.path()), last - spooled);
}

/// A 4 MiB tmpfs, unmounted on drop.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    /// Mounts one, if this process may (root); `None` otherwise.
    fn mount() -> Option<SmallFs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallFs { dir })
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Fills the file system holding `dir` with `dir/filler`.
fn fill(dir: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).and_then(|()| f.sync_data()).is_ok() {}
    // The last partial blocks too.
    while f.write_all(&chunk[..512]).and_then(|()| f.sync_data()).is_ok() {}
}

#[test]
fn a_full_disk_is_a_clear_error_in_log_and_status_and_delivery_resumes() {
    let c = Collector::start();
    // A real full file system when this test may mount one, else an injected write error.
    let small = SmallFs::mount();
    let agent = match &small {
        Some(fs) => Agent::enroll_in(&c, tempfile::tempdir_in(fs.dir.path()).unwrap()),
        None => {
            eprintln!("delivery: cannot mount a tmpfs (not root?), injecting the write error instead");
            Agent::enroll(&c)
        }
    };
    let full = agent.state.path().join("disk-full");
    let mut child = agent.start(&[("ROUNDS_AGENT_TEST_SPOOL_FAIL_WHILE", full.to_str().unwrap())]);
    agent.wait_delivered(Duration::from_secs(30));
    // Let the status file reach its full size before the disk fills.
    std::thread::sleep(Duration::from_secs(2));
    match &small {
        Some(fs) => fill(fs.dir.path()),
        None => std::fs::write(&full, b"").unwrap(),
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !agent.status().contains("spool error:") {
        assert!(
            Instant::now() < deadline,
            "no spool error in status (an injected error needs an agent built with the \
             rounds-agent/test-hooks feature, as `cargo test` builds it): {}",
            agent.status()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = agent.status();
    assert!(status.contains("No space left on device"), "{status}");
    // Still running: heartbeats go on while the disk is full.
    std::thread::sleep(Duration::from_secs(2));
    assert!(child.try_wait().unwrap().is_none(), "the agent keeps running");
    let before = agent.last_sequence();
    match &small {
        Some(fs) => std::fs::remove_file(fs.dir.path().join("filler")).unwrap(),
        None => std::fs::remove_file(&full).unwrap(),
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while agent.last_sequence() < before + 3 || agent.status().contains("spool error:") {
        assert!(Instant::now() < deadline, "spooling never resumed: {}", agent.status());
        std::thread::sleep(Duration::from_millis(200));
    }
    agent.wait_delivered(Duration::from_secs(30));
    kill(&mut child, "-TERM");
    let log = stderr_of(child);
    assert!(
        log.contains("spool write failed") && log.contains("No space left on device"),
        "{log}"
    );
    assert!(log.contains("spool writable again"), "{log}");
    assert_exactly_once(&stored_sequences(c.data_dir.path()), agent.last_sequence());
}
