//! A real collector process for the tests: `rounds-collector serve` in a temporary data dir
//! on a free loopback port, with enrollment tokens made by its own CLI.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rounds_sim::fleet::Token;

/// The workspace's `rounds-collector` binary (`ROUNDS_COLLECTOR_BIN`, else beside this test's
/// target dir), built with cargo when it is missing.
pub fn collector_bin() -> PathBuf {
    if let Ok(p) = std::env::var("ROUNDS_COLLECTOR_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/it-<hash> -> target/<profile>/rounds-collector
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let bin = profile_dir.join("rounds-collector");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "rounds-collector", "--bin", "rounds-collector"])
            .status()
            .expect("run cargo build -p rounds-collector");
        assert!(status.success(), "cargo build -p rounds-collector failed");
    }
    assert!(bin.exists(), "{} missing after building it", bin.display());
    bin
}

/// A running collector; killed when dropped.
pub struct Collector {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub url: String,
    bin: PathBuf,
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `metrics_token` of the test collector (issue 15: `/metrics` needs it).
pub const METRICS_TOKEN: &str = "sim-test-metrics-token-0123456789";

impl Collector {
    /// Starts a collector that counts an agent offline after `offline_after_secs`.
    pub fn start(offline_after_secs: u64) -> Collector {
        let bin = collector_bin();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let data = dir.path().join("data");
        let config = dir.path().join("collector.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = {:?}\nlisten = \"127.0.0.1:{port}\"\nheartbeat_interval_secs = 1\noffline_after_secs = {offline_after_secs}\nmetrics_token = {METRICS_TOKEN:?}\n",
                data.display().to_string()
            ),
        )
        .unwrap();
        let child = Command::new(&bin)
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("collector.log")).unwrap())
            .spawn()
            .expect("start rounds-collector serve");
        let url = format!("https://localhost:{port}");
        let mut c = Collector { child, dir, url, bin };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !c.ca().exists() || std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let log = || std::fs::read_to_string(c.dir.path().join("collector.log")).unwrap_or_default();
            if let Ok(Some(status)) = c.child.try_wait() {
                panic!("collector exited ({status}) before listening:\n{}", log());
            }
            assert!(
                Instant::now() < deadline,
                "collector did not listen on port {port} within 30 s:\n{}",
                log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        c
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn ca(&self) -> PathBuf {
        self.data_dir().join("ca.pem")
    }

    /// One token from `rounds-collector token create` (its last line of output).
    pub fn token(&self, practice: &str, site: &str) -> Token {
        let out = Command::new(&self.bin)
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["token", "create", "--practice", practice, "--site", site])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        Token {
            practice: practice.into(),
            site: site.into(),
            token: text.lines().last().unwrap().trim().into(),
        }
    }

    /// Writes `tokens` as a tokens file and returns its path.
    pub fn tokens_file(&self, tokens: &[Token]) -> PathBuf {
        let path = self.dir.path().join("tokens.tsv");
        let text: String = tokens
            .iter()
            .map(|t| format!("{}\t{}\t{}\n", t.practice, t.site, t.token))
            .collect();
        std::fs::write(&path, text).unwrap();
        path
    }
}
