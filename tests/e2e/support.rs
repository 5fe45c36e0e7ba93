//! Starting the real binaries, reading their output, and talking to the collector over TLS
//! with the CA it generated.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The directory holding the workspace's binaries (`target/debug`), building the agent and
/// collector binaries first if this test run did not.
pub fn bin_dir() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().unwrap();
            let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
            let missing = ["rounds-collector", "rounds-agent"]
                .iter()
                .any(|b| !dir.join(b).exists());
            if missing {
                eprintln!("e2e: building rounds-collector and rounds-agent binaries first");
                let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
                let status = Command::new(cargo)
                    .args(["build", "-p", "rounds-collector", "-p", "rounds-agent", "--bins"])
                    // The agent's test hooks (a spool write failure on demand), as `cargo test`
                    // builds it through the root package's dev-dependency.
                    .args(["--features", "rounds-agent/test-hooks"])
                    .status()
                    .expect("run cargo build");
                assert!(status.success(), "cargo build of the binaries failed");
            }
            dir
        })
        .clone()
}

pub fn bin(name: &str) -> PathBuf {
    if name == "rounds" {
        return PathBuf::from(env!("CARGO_BIN_EXE_rounds"));
    }
    bin_dir().join(name)
}

/// Runs a binary to completion.
pub fn run(name: &str, args: &[&str]) -> Output {
    Command::new(bin(name))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// The last non-empty line of a command's stdout.
pub fn last_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

/// A long-running child process whose stdout lines are collected; killed on drop.
pub struct Running {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Running {
    pub fn start(name: &str, args: &[&str]) -> Self {
        Self::start_with(name, args, "info", Stdio::inherit())
    }

    /// [`start`](Self::start) at log level `rust_log`, its stderr (the log) to `stderr`.
    pub fn start_with(name: &str, args: &[&str], rust_log: &str, stderr: Stdio) -> Self {
        let mut child = Command::new(bin(name))
            .args(args)
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a stdout line containing `needle`, and returns it.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {needle:?} within {timeout:?}; saw: {:#?}", self.seen),
            }
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "process did not stop within 20 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A collector process on a free port with its own data dir.
pub struct Collector {
    pub process: Running,
    pub data_dir: tempfile::TempDir,
    pub port: u16,
    /// The configuration file it was started with, which admin commands get too.
    pub config: Option<PathBuf>,
    /// The CA agents trust, when not the one generated in the data dir (`[tls]` files).
    pub ca_file: Option<PathBuf>,
}

impl Collector {
    pub fn start() -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), &[])
    }

    /// Stops the process (SIGTERM) and starts it again on the same port and data dir.
    pub fn restart_after(self, pause: Duration) -> Self {
        let Collector {
            mut process,
            data_dir,
            port,
            ..
        } = self;
        let status = process.terminate();
        assert!(status.success(), "collector exits cleanly on SIGTERM: {status:?}");
        drop(process);
        std::thread::sleep(pause);
        Self::start_on(data_dir, port, &[])
    }

    /// A collector on `data_dir` (a fresh one, or one a stopped collector left: a restart),
    /// on a free port, with `extra` arguments to `serve` (such as `--config FILE`).
    pub fn start_in(data_dir: tempfile::TempDir, extra: &[&str]) -> Self {
        Self::start_on(data_dir, 0, extra)
    }

    /// A collector on `data_dir` with the configuration file `config` (given to its admin
    /// commands too), whose agents trust `ca` (the CA of its `[tls]` certificate files).
    pub fn start_configured(data_dir: tempfile::TempDir, config: &Path, ca: &Path) -> Self {
        let mut c = Self::start_on(data_dir, 0, &["--config", config.to_str().unwrap()]);
        c.config = Some(config.to_path_buf());
        c.ca_file = Some(ca.to_path_buf());
        c
    }

    fn start_on(data_dir: tempfile::TempDir, port: u16, extra: &[&str]) -> Self {
        let dd = data_dir.path().to_str().unwrap().to_string();
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["serve", "--data-dir", &dd, "--listen", &listen];
        args.extend_from_slice(extra);
        let mut process = Running::start("rounds-collector", &args);
        let line = process.wait_for_line("serving on https://", Duration::from_secs(30));
        let port = line.rsplit(':').next().unwrap().trim().parse().unwrap();
        Collector {
            process,
            data_dir,
            port,
            config: None,
            ca_file: None,
        }
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    pub fn ca(&self) -> PathBuf {
        self.ca_file
            .clone()
            .unwrap_or_else(|| self.data_dir.path().join("ca.pem"))
    }

    /// Runs an administrative subcommand on this collector's data dir (and configuration file).
    pub fn admin(&self, args: &[&str]) -> Output {
        let mut all = vec!["--data-dir", self.data_dir.path().to_str().unwrap()];
        if let Some(config) = &self.config {
            all.extend(["--config", config.to_str().unwrap()]);
        }
        all.extend_from_slice(args);
        run("rounds-collector", &all)
    }

    pub fn token(&self, practice: &str, site: &str) -> String {
        let out = self.admin(&["token", "create", "--practice", practice, "--site", site]);
        assert!(
            out.status.success(),
            "token create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        last_line(&out)
    }

    /// Enrolls an agent into `state` with a new token for `practice` and `site`, through the
    /// real `rounds-agent enroll`.
    pub fn enroll_agent(&self, practice: &str, site: &str, state: &Path) {
        self.enroll_agent_via(&self.url(), practice, site, state);
    }

    /// [`enroll_agent`](Self::enroll_agent) through `url` (a load balancer in front of this
    /// collector), which the agent then keeps reporting to.
    pub fn enroll_agent_via(&self, url: &str, practice: &str, site: &str, state: &Path) {
        let token = self.token(practice, site);
        let out = run(
            "rounds-agent",
            &[
                "enroll",
                "--collector",
                url,
                "--token",
                &token,
                "--ca",
                self.ca().to_str().unwrap(),
                "--state-dir",
                state.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "enroll: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn api_key(&self) -> String {
        let out = self.admin(&["apikey", "create", "--role", "admin"]);
        assert!(
            out.status.success(),
            "apikey create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        last_line(&out)
    }

    /// An HTTPS client trusting only this collector's CA.
    pub fn client(&self) -> reqwest::Client {
        client_trusting(&self.ca())
    }

    /// GET a JSON document from the automation API.
    pub async fn get_json(&self, key: &str, path: &str) -> serde_json::Value {
        let resp = self
            .client()
            .get(format!("{}{path}", self.url()))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
        resp.json().await.unwrap()
    }
}

/// A reqwest client over rustls (ring) that trusts only the CA in `ca`.
pub fn client_trusting(ca: &Path) -> reqwest::Client {
    client_trusting_for(ca, Some(Duration::from_secs(10)))
}

/// [`client_trusting`] whose requests take at most `timeout` (`None`: a stream that stays
/// open, such as the dashboard's live events).
pub fn client_trusting_for(ca: &Path, timeout: Option<Duration>) -> reqwest::Client {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let builder = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none());
    match timeout {
        Some(t) => builder.timeout(t),
        None => builder.connect_timeout(Duration::from_secs(10)),
    }
    .build()
    .unwrap()
}

/// Polls `f` every 100 ms until it yields `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of the first `Set-Cookie` named `name` in a response.
fn cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .find_map(|v| {
            let v = v.to_str().ok()?;
            let (k, rest) = v.split_once('=')?;
            (k.trim() == name).then(|| rest.split(';').next().unwrap_or("").to_string())
        })
}

/// Logs in through the login form (with its CSRF token) and returns the overview page's HTML.
pub async fn dashboard_after_login(http: &reqwest::Client, url: &str, user: &str, password: &str) -> String {
    let session = login(http, url, user, password).await;
    let page = http
        .get(format!("{url}/"))
        .header(reqwest::header::COOKIE, format!("rounds_session={session}"))
        .send()
        .await
        .unwrap();
    assert!(page.status().is_success(), "GET /: {}", page.status());
    page.text().await.unwrap()
}

/// Logs in through the login form (with its CSRF token) and returns the session cookie's value.
pub async fn login(http: &reqwest::Client, url: &str, user: &str, password: &str) -> String {
    let login = http.get(format!("{url}/login")).send().await.unwrap();
    assert!(login.status().is_success(), "GET /login: {}", login.status());
    let csrf_cookie = cookie(&login, "rounds_csrf").expect("login page sets the csrf cookie");
    let html = login.text().await.unwrap();
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("login form has a csrf field") + marker.len();
    let csrf = &html[start..start + html[start..].find('"').unwrap()];
    let resp = http
        .post(format!("{url}/login"))
        .header(reqwest::header::COOKIE, format!("rounds_csrf={csrf_cookie}"))
        .form(&[("username", user), ("password", password), ("csrf", csrf)])
        .send()
        .await
        .unwrap();
    cookie(&resp, "rounds_session").unwrap_or_else(|| panic!("login sets a session: {}", resp.status()))
}

// --- PostgreSQL (issue 17) ---

/// The PostgreSQL server the tests may use (`ROUNDS_TEST_POSTGRES_URL`), or `None` after
/// saying loudly that `what` is skipped.
pub fn pg_url(what: &str) -> Option<String> {
    match std::env::var("ROUNDS_TEST_POSTGRES_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            use std::io::Write;
            // Straight to stderr, past the test harness's capture, so that it is seen.
            let _ = writeln!(
                std::io::stderr(),
                "\n*** ROUNDS_TEST_POSTGRES_URL is not set: {what} is SKIPPED ***\n"
            );
            None
        }
    }
}

/// A client of the PostgreSQL database at `url`, its connection driven on a task.
pub async fn pg_client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connecting to ROUNDS_TEST_POSTGRES_URL");
    tokio::spawn(conn);
    client
}

/// A fresh schema `t_<random>` in the database of `url`, and the URL that uses it (the
/// collector connects with that search path). Schemas are left to the per-run scratch database.
pub async fn pg_schema(url: &str) -> String {
    let schema = format!("t_{:016x}", rand::random::<u64>());
    pg_client(url)
        .await
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .expect("creating a test schema");
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-csearch_path%3D{schema}")
}
