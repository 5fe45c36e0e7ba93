//! Benchmark: one `rounds-agent run` probing N local HTTPS endpoints (rustls servers in this
//! process, certificates from a test CA) every 30 s, against the same agent with no endpoint;
//! and prometheus-blackbox-exporter probing the same endpoints, scraped every 30 s like
//! Prometheus would. Prints the average CPU (share of one core, from /proc/PID/stat) and the
//! resident memory (VmRSS) of each process.
//!
//! Run (the agent at its shipping profile, the collector only enrolls it and receives reports):
//! ```sh
//! cargo build --profile agent -p rounds-agent && cargo build -p rounds-collector
//! BENCH_SECS=300 cargo bench -p rounds-agent --bench probes
//! ```
//! Environment: `BENCH_SECS` (each measured window, default 300), `ENDPOINTS` (default 100),
//! `AGENT_BIN`, `COLLECTOR_BIN` (default `$CARGO_TARGET_DIR/{agent,debug}/...`), `BLACKBOX_BIN`
//! (default `prometheus-blackbox-exporter` on the PATH; skipped when absent).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn target_dir() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// Clock ticks (user + system) and resident KiB of a process.
fn usage(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = after.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (ticks, rss)
}

/// Average share of one core and final RSS (KiB) of `pid` over `window`, after `warmup`.
fn measure(pid: u32, warmup: Duration, window: Duration) -> (f64, u64) {
    std::thread::sleep(warmup);
    let (t0, _) = usage(pid);
    let start = Instant::now();
    std::thread::sleep(window);
    let (t1, rss) = usage(pid);
    let ticks_per_sec = 100.0;
    (
        (t1 - t0) as f64 / ticks_per_sec / start.elapsed().as_secs_f64() * 100.0,
        rss,
    )
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `n` TLS servers on 127.0.0.1 answering `200 OK`; their ports and the CA's PEM.
fn servers(runtime: &tokio::runtime::Runtime, n: usize) -> (Vec<u16>, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, "bench ca");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let leaf = leaf.signed_by(&key, &ca, &ca_key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let mut ports = Vec::new();
    for _ in 0..n {
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        ports.push(listener.local_addr().unwrap().port());
        let acceptor = acceptor.clone();
        runtime.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = [0u8; 2048];
                    let _ = tls.read(&mut buf).await;
                    let _ = tls
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                        .await;
                    let _ = tls.shutdown().await;
                });
            }
        });
    }
    (ports, ca.pem())
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An enrolled agent running `config`; the collector process must outlive it.
fn agent(bin: &Path, collector: &str, token: &str, ca: &Path, dir: &Path, config: &str) -> Killed {
    let state = dir.join("state");
    run(Command::new(bin)
        .args(["enroll", "--collector", collector, "--token", token, "--ca"])
        .arg(ca)
        .arg("--state-dir")
        .arg(&state));
    let file = dir.join("agent.toml");
    std::fs::write(&file, config).unwrap();
    Killed(
        Command::new(bin)
            .arg("run")
            .arg("--state-dir")
            .arg(&state)
            .arg("--config")
            .arg(&file)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn main() {
    let window = Duration::from_secs(env_or("BENCH_SECS", 300));
    let n: usize = env_or("ENDPOINTS", 100);
    let agent_bin = std::env::var("AGENT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| target_dir().join("agent/rounds-agent"));
    let collector_bin = std::env::var("COLLECTOR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| target_dir().join("debug/rounds-collector"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (ports, ca_pem) = servers(&runtime, n);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("endpoints-ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();

    let data = dir.path().join("collector");
    let mut collector = Command::new(&collector_bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = collector.stdout.take().unwrap();
    let collector = Killed(collector);
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let url = loop {
        let line = lines.next().expect("collector announces its address").unwrap();
        if let Some(i) = line.find("serving on https://") {
            let port = line[i..].rsplit(':').next().unwrap().trim().to_string();
            break format!("https://localhost:{port}");
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let token_for = |site: &str| {
        let out = run(Command::new(&collector_bin).arg("--data-dir").arg(&data).args([
            "token",
            "create",
            "--practice",
            "Bench",
            "--site",
            site,
        ]));
        out.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap()
            .trim()
            .to_string()
    };
    let collector_ca = data.join("ca.pem");

    let endpoints: String = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "[[endpoint]]\nname = \"ehr-{i}\"\nkind = \"https\"\nurl = \"https://127.0.0.1:{p}/\"\nca_file = \"{}\"\n\n",
                ca_file.display()
            )
        })
        .collect();
    let every_check_off: String = rounds_agent_config::CHECKS
        .iter()
        .map(|c| format!("[checks.{c}]\nenabled = false\n"))
        .collect();
    let warmup = Duration::from_secs(35);
    println!(
        "{n} endpoints every 30 s, measured over {} s after {} s warm-up",
        window.as_secs(),
        warmup.as_secs()
    );

    if std::env::var("ONLY").as_deref() != Ok("blackbox") {
        agents(
            &agent_bin,
            &url,
            &token_for,
            &collector_ca,
            dir.path(),
            &every_check_off,
            &endpoints,
            n,
            warmup,
            window,
        );
    }
    blackbox(&runtime, dir.path(), &ca_file, &ports, warmup, window);
    drop(collector);
}

/// The idle and the probing agent, measured side by side.
#[allow(clippy::too_many_arguments)]
fn agents(
    agent_bin: &Path,
    url: &str,
    token_for: &dyn Fn(&str) -> String,
    collector_ca: &Path,
    dir: &Path,
    every_check_off: &str,
    endpoints: &str,
    n: usize,
    warmup: Duration,
    window: Duration,
) {
    let idle_dir = dir.join("idle");
    std::fs::create_dir_all(&idle_dir).unwrap();
    let idle = agent(
        agent_bin,
        url,
        &token_for("idle"),
        collector_ca,
        &idle_dir,
        &format!("{every_check_off}[probes]\nbaseline = false\n"),
    );
    let busy_dir = dir.join("busy");
    std::fs::create_dir_all(&busy_dir).unwrap();
    let busy = agent(
        agent_bin,
        url,
        &token_for("busy"),
        collector_ca,
        &busy_dir,
        &format!("{every_check_off}[probes]\nbaseline = false\ninterval_secs = 30\n\n{endpoints}"),
    );
    let (idle_pid, busy_pid) = (idle.0.id(), busy.0.id());
    let idle_m = std::thread::spawn(move || measure(idle_pid, warmup, window));
    let (busy_cpu, busy_rss) = measure(busy_pid, warmup, window);
    let (idle_cpu, idle_rss) = idle_m.join().unwrap();
    println!(
        "rounds-agent, no endpoint:   cpu {idle_cpu:.3}% of a core, rss {:.1} MB",
        idle_rss as f64 / 1024.0
    );
    println!(
        "rounds-agent, {n} endpoints: cpu {busy_cpu:.3}% of a core, rss {:.1} MB",
        busy_rss as f64 / 1024.0
    );
    println!(
        "rounds-agent extra for {n} endpoints: cpu {:.3}% of a core, rss {:.1} MB",
        busy_cpu - idle_cpu,
        (busy_rss as f64 - idle_rss as f64) / 1024.0
    );
    drop((idle, busy));
}

/// prometheus-blackbox-exporter probing the same endpoints, scraped every 30 s.
fn blackbox(
    runtime: &tokio::runtime::Runtime,
    dir: &Path,
    ca_file: &Path,
    ports: &[u16],
    warmup: Duration,
    window: Duration,
) {
    let n = ports.len();
    let blackbox = std::env::var("BLACKBOX_BIN").unwrap_or_else(|_| "prometheus-blackbox-exporter".into());
    let bb_config = dir.join("blackbox.yml");
    std::fs::write(
        &bb_config,
        format!(
            "modules:\n  https_ca:\n    prober: http\n    timeout: 10s\n    http:\n      method: GET\n      tls_config:\n        ca_file: {}\n",
            ca_file.display()
        ),
    )
    .unwrap();
    let bb_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let Ok(bb) = Command::new(&blackbox)
        .arg(format!("--config.file={}", bb_config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{bb_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        println!("{blackbox} not found: blackbox comparison skipped (apt-get install prometheus-blackbox-exporter)");
        return;
    };
    let bb = Killed(bb);
    std::thread::sleep(Duration::from_secs(1));
    let (_, bb_idle_rss) = usage(bb.0.id());
    // The scraper: every 30 s one /probe request per endpoint, spread over the interval as
    // Prometheus spreads its scrapes.
    let stop = tokio_util::sync::CancellationToken::new();
    for (i, p) in ports.iter().enumerate() {
        let stop = stop.clone();
        let request = format!(
            "GET /probe?module=https_ca&target=https://127.0.0.1:{p}/ HTTP/1.1\r\nHost: 127.0.0.1:{bb_port}\r\nConnection: close\r\n\r\n"
        );
        let offset = Duration::from_millis(30_000 * i as u64 / n as u64);
        runtime.spawn(async move {
            tokio::time::sleep(offset).await;
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            loop {
                tokio::select! { _ = stop.cancelled() => return, _ = tick.tick() => {} }
                let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", bb_port)).await else {
                    continue;
                };
                let mut answer = Vec::new();
                if s.write_all(request.as_bytes()).await.is_ok()
                    && s.read_to_end(&mut answer).await.is_ok()
                    && !String::from_utf8_lossy(&answer).contains("probe_success 1")
                {
                    eprintln!("blackbox probe failed: {request}");
                }
            }
        });
    }
    let (bb_cpu, bb_rss) = measure(bb.0.id(), warmup, window);
    stop.cancel();
    println!(
        "prometheus-blackbox-exporter, {n} endpoints: cpu {bb_cpu:.3}% of a core, rss {:.1} MB ({:.1} MB before probing, {:.1} MB extra)",
        bb_rss as f64 / 1024.0,
        bb_idle_rss as f64 / 1024.0,
        (bb_rss as f64 - bb_idle_rss as f64) / 1024.0
    );
}
