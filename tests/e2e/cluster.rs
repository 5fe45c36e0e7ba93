//! Two collectors on one PostgreSQL database with real processes (issue 17): two
//! `rounds-collector serve` sharing one database schema and one server certificate given as
//! files, five `rounds-agent run` at two sites reaching them through a small TCP load balancer
//! in this test (TLS passes through it), and a webhook channel on both collectors pointing at a
//! receiver here that records every notification.
//!
//! Shown: both collectors' APIs agree on the agents and their findings; a live page on one
//! collector hears of findings an agent reported to the other (LISTEN/NOTIFY); no
//! notification is sent twice (the agents' own failing findings, no audit log and no backup on
//! this machine, raise incidents too: each is notified once); a site outage is notified
//! exactly once; after the collector holding the alert engine's and the outbox's
//! leases is killed with SIGKILL, the survivor holds both within their lease times, notifies
//! the site's recovery once, and every report any agent had acknowledged is in the database
//! and served by the survivor. Runs when `ROUNDS_TEST_POSTGRES_URL` is set.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::delivery::EVERY_SECOND;
use crate::support::{Collector, bin, client_trusting_for, eventually, login, pg_client, pg_schema, pg_url, run};

/// The alert engine's tick (`[alerting] tick_secs`): its lease lasts three ticks.
const TICK_SECS: u64 = 1;
/// The outbox's lease (fixed in the engine).
const OUTBOX_LEASE: Duration = Duration::from_secs(30);

/// One notification as the receiver got it: the path names the collector whose channel sent it.
#[derive(Debug, Clone)]
struct Hook {
    path: String,
    body: serde_json::Value,
}

impl Hook {
    fn is(&self, kind: &str, source: &str, site: &str) -> bool {
        self.body["kind"] == kind && self.body["source"] == source && self.body["site"] == site
    }
}

type Hooks = Arc<Mutex<Vec<Hook>>>;

/// An HTTP receiver on a local port recording every request's path and JSON body; answers 200.
async fn webhook_receiver() -> (u16, Hooks) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hooks: Hooks = Arc::default();
    let h = hooks.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let hooks = h.clone();
            tokio::spawn(async move {
                let _ = receive(conn, hooks).await;
            });
        }
    });
    (port, hooks)
}

async fn receive(conn: TcpStream, hooks: Hooks) -> std::io::Result<()> {
    let mut conn = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if conn.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut len = 0;
        loop {
            let mut header = String::new();
            conn.read_line(&mut header).await?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((k, v)) = header.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        conn.read_exact(&mut body).await?;
        let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        hooks.lock().unwrap().push(Hook { path, body });
        conn.get_mut()
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await?;
    }
}

/// One front of the load balancer: a local port whose connections go to the first of its
/// collectors that accepts one, bytes passed through both ways (TLS ends at the collector).
struct Front {
    port: u16,
    /// Connections forwarded, by collector port.
    forwarded: Arc<Mutex<HashMap<u16, usize>>>,
}

impl Front {
    async fn start(collectors: Vec<u16>) -> Front {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let forwarded: Arc<Mutex<HashMap<u16, usize>>> = Arc::default();
        let f = forwarded.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let (collectors, forwarded) = (collectors.clone(), f.clone());
                tokio::spawn(async move {
                    for c in collectors {
                        if let Ok(mut out) = TcpStream::connect(("127.0.0.1", c)).await {
                            *forwarded.lock().unwrap().entry(c).or_default() += 1;
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                            return;
                        }
                    }
                });
            }
        });
        Front { port, forwarded }
    }

    fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    fn forwarded_to(&self, collector: u16) -> usize {
        self.forwarded.lock().unwrap().get(&collector).copied().unwrap_or(0)
    }
}

/// A CA and a server certificate for localhost signed by it, as files both collectors use:
/// (ca.pem, server.pem with the chain, server-key.pem).
fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Rounds cluster test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let mut leaf = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
    let paths = (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server-key.pem"));
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem() + &ca_cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// A real agent process with its state dir; killed on drop.
struct Agent {
    state: tempfile::TempDir,
    config: PathBuf,
    child: Option<Child>,
    id: String,
    site: &'static str,
}

impl Agent {
    /// Enrolls through `url` (a front of the load balancer) with a token `c` made.
    fn enroll(c: &Collector, url: &str, practice: &str, site: &'static str) -> Agent {
        let state = tempfile::tempdir().unwrap();
        c.enroll_agent_via(url, practice, site, state.path());
        let config = state.path().join("agent.toml");
        std::fs::write(&config, EVERY_SECOND).unwrap();
        let mut agent = Agent {
            state,
            config,
            child: None,
            id: String::new(),
            site,
        };
        agent.id = agent.field("agent id:").expect("status names the agent id");
        agent
    }

    fn start(&mut self) {
        let log = std::fs::File::create(self.state.path().join("agent.log")).unwrap();
        let child = Command::new(bin("rounds-agent"))
            .args(["run", "--state-dir", self.state.path().to_str().unwrap()])
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGTERM, and waits for it to exit.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let _ = child.wait();
        }
    }

    fn status(&self) -> String {
        let out = run(
            "rounds-agent",
            &["status", "--state-dir", self.state.path().to_str().unwrap()],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn field(&self, name: &str) -> Option<String> {
        self.status()
            .lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    }

    /// The highest sequence a collector acknowledged (`last delivery: ... (sequence N)`).
    fn acked(&self) -> u64 {
        self.field("last delivery:")
            .and_then(|v| {
                let n = v.rsplit("(sequence ").next()?.trim_end_matches(')');
                n.parse().ok()
            })
            .unwrap_or(0)
    }

    fn spool_empty(&self) -> bool {
        self.field("spool:").is_some_and(|v| v == "empty")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.state.path().join("agent.log")).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The configuration of one collector: the shared database and certificate, short intervals,
/// and a webhook channel to the receiver at `/<name>`.
fn collector_config(dir: &Path, name: &str, database_url: &str, tls: (&Path, &Path), hook_port: u16) -> PathBuf {
    let text = format!(
        r#"database_url = "{database_url}"
heartbeat_interval_secs = 1
# Above the engine's suspicion time (heartbeat + 5 s), so a site that goes dark is one incident.
offline_after_secs = 8

[tls]
cert_file = "{cert}"
key_file = "{key}"

[alerting]
tick_secs = {TICK_SECS}

[[channel]]
name = "ops"
kind = "webhook"
url = "http://127.0.0.1:{hook_port}/{name}"
"#,
        cert = tls.0.display(),
        key = tls.1.display(),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// The pid of the collector holding the lease `name` (holders are `<pid>-<random>`).
async fn lease_pid(db: &tokio_postgres::Client, name: &str) -> Option<u32> {
    let row = db
        .query_opt("SELECT holder FROM job_leases WHERE name = $1", &[&name])
        .await
        .unwrap()?;
    let holder: String = row.get(0);
    holder.split('-').next()?.parse().ok()
}

/// One agent as a collector's API shows it.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Shown {
    id: String,
    practice: String,
    site: String,
    online: bool,
    /// `(rule, status)` of each finding.
    findings: Vec<(String, String)>,
}

/// The notifications about machines or sites going offline (the agents' findings raise
/// incidents of their own: no audit log, no backup on these machines).
fn outage(hooks: &Hooks) -> Vec<Hook> {
    let hooks = hooks.lock().unwrap();
    hooks
        .iter()
        .filter(|n| n.body["source"] == "site_offline" || n.body["source"] == "agent_offline")
        .cloned()
        .collect()
}

/// No notification was sent twice, by one collector or by both.
fn once_each(hooks: &Hooks) {
    let hooks = hooks.lock().unwrap();
    let mut seen = std::collections::HashSet::new();
    for n in hooks.iter() {
        let key = (n.body["incident_id"].to_string(), n.body["kind"].to_string());
        assert!(seen.insert(key), "notified twice: {n:#?}\nall: {hooks:#?}");
    }
}

/// Waits until the collector of pid `pid` holds the lease `name`.
async fn lease_moves(db: &tokio_postgres::Client, name: &str, pid: u32, timeout: Duration) {
    let what = format!("the lease {name} held by pid {pid}");
    eventually(&what, timeout, || async move {
        (lease_pid(db, name).await == Some(pid)).then_some(())
    })
    .await;
}

/// Waits until the receiver has a `kind` notification of the Annex's `site_offline` incident.
async fn notified(hooks: &Hooks, kind: &str, timeout: Duration) {
    let what = format!("the Annex outage's {kind} notification");
    eventually(&what, timeout, || async move {
        let hooks = hooks.lock().unwrap();
        hooks.iter().any(|n| n.is(kind, "site_offline", "Annex")).then_some(())
    })
    .await;
}

/// Every agent with its online state and per rule its finding's status, as `c`'s API says.
async fn fleet(c: &Collector, key: &str) -> Vec<Shown> {
    let agents = c.get_json(key, "/api/v1/agents").await;
    let mut out = Vec::new();
    for a in agents.as_array().unwrap() {
        let id = a["agent_id"].as_str().unwrap().to_string();
        let findings = c.get_json(key, &format!("/api/v1/agents/{id}/findings")).await;
        let mut rules: Vec<(String, String)> = findings
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["rule"].as_str().unwrap().to_string(), f["status"].to_string()))
            .collect();
        rules.sort();
        out.push(Shown {
            id,
            practice: a["practice"].as_str().unwrap().to_string(),
            site: a["site"].as_str().unwrap().to_string(),
            online: a["online"].as_bool().unwrap(),
            findings: rules,
        });
    }
    out.sort();
    out
}

/// The `(event, data)` pairs of a Server-Sent Events text.
fn sse_events(text: &str) -> Vec<(String, String)> {
    text.split("\n\n")
        .filter_map(|block| {
            let event = block.lines().find_map(|l| l.strip_prefix("event:"))?.trim();
            let data = block.lines().find_map(|l| l.strip_prefix("data:")).unwrap_or("").trim();
            Some((event.to_string(), data.to_string()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_collectors_on_one_postgres_notify_an_outage_once_and_outlive_one_of_them() {
    let Some(base) = pg_url("the end-to-end test of two collectors on one PostgreSQL database (cluster)") else {
        return;
    };
    let began = Instant::now();
    let url = pg_schema(&base).await;
    let db = pg_client(&url).await;
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls_files(dir.path());
    let (hook_port, hooks) = webhook_receiver().await;
    let names = ["a", "b"];

    // Collector a first: it migrates the schema and creates the first admin.
    let config_a = collector_config(dir.path(), names[0], &url, (&cert, &key), hook_port);
    let mut first = Collector::start_configured(tempfile::tempdir().unwrap(), &config_a, &ca);
    let line = first
        .process
        .wait_for_line("created with password: ", Duration::from_secs(10));
    let password = line.rsplit(": ").next().unwrap().trim().to_string();
    let config_b = collector_config(dir.path(), names[1], &url, (&cert, &key), hook_port);
    let second = Collector::start_configured(tempfile::tempdir().unwrap(), &config_b, &ca);
    let mut cs = [first, second];
    let ports = [cs[0].port, cs[1].port];
    let pids = [cs[0].process.child.id(), cs[1].process.child.id()];
    let fronts = [
        Front::start(vec![ports[0], ports[1]]).await,
        Front::start(vec![ports[1], ports[0]]).await,
    ];

    // A live page on collector b, open before any agent reports.
    let session = login(&cs[1].client(), &cs[1].url(), "admin", &password).await;
    let live = Arc::new(Mutex::new(String::new()));
    {
        let (http, url, live) = (client_trusting_for(&ca, None), cs[1].url(), live.clone());
        tokio::spawn(async move {
            let mut resp = http
                .get(format!("{url}/events"))
                .header(reqwest::header::COOKIE, format!("rounds_session={session}"))
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_success(), "GET /events: {}", resp.status());
            while let Ok(Some(chunk)) = resp.chunk().await {
                live.lock().unwrap().push_str(&String::from_utf8_lossy(&chunk));
            }
        });
    }

    // Five agents at two sites, enrolled through either collector: agent n through front n % 2,
    // which prefers collector n % 2.
    let sites = [
        ("Smith Family Practice", "Main Street"),
        ("Smith Family Practice", "Main Street"),
        ("Smith Family Practice", "Main Street"),
        ("Lakeside Clinic", "Annex"),
        ("Lakeside Clinic", "Annex"),
    ];
    // Each starts as soon as it is enrolled: one enrolled and silent past the offline window
    // would be an incident of its own.
    let mut agents: Vec<Agent> = Vec::new();
    for (n, &(practice, site)) in sites.iter().enumerate() {
        let mut a = Agent::enroll(&cs[n % 2], &fronts[n % 2].url(), practice, site);
        a.start();
        agents.push(a);
    }
    let key = cs[0].api_key();

    // Both collectors show the same five agents, online, with the same findings.
    let c = &cs;
    let k = key.as_str();
    let agreed = eventually(
        "both collectors' APIs agreeing on five agents online with findings",
        Duration::from_secs(40),
        || async move {
            let (x, y) = (fleet(&c[0], k).await, fleet(&c[1], k).await);
            (x.len() == 5 && x.iter().all(|a| a.online && !a.findings.is_empty()) && x == y).then_some(x)
        },
    )
    .await;
    assert_eq!(agreed.iter().filter(|a| a.site == "Annex").count(), 2, "{agreed:?}");
    for (n, f) in fronts.iter().enumerate() {
        assert!(
            f.forwarded_to(ports[n]) > 0,
            "front {n} forwarded to collector {}",
            names[n]
        );
        assert_eq!(
            f.forwarded_to(ports[1 - n]),
            0,
            "both collectors alive: no connection moved yet"
        );
    }
    // The page on b heard of the findings of an agent reporting to a.
    let on_a: Vec<&str> = agents.iter().step_by(2).map(|a| a.id.as_str()).collect();
    let (l, on_a) = (&live, &on_a);
    eventually(
        "a findings event on b's live page for an agent of a",
        Duration::from_secs(20),
        || async move {
            let text = l.lock().unwrap().clone();
            sse_events(&text)
                .iter()
                .any(|(e, d)| e == "findings" && on_a.iter().any(|id| d.contains(&format!("\"agent_id\":\"{id}\""))))
                .then_some(())
        },
    )
    .await;

    // The outage: both machines of the Annex, one on each collector, go dark.
    for a in agents.iter_mut().filter(|a| a.site == "Annex") {
        a.stop();
    }
    notified(&hooks, "opened", Duration::from_secs(30)).await;
    // A few engine periods more: nothing else, from either collector.
    tokio::time::sleep(Duration::from_secs(3 * TICK_SECS)).await;
    let sent = outage(&hooks);
    assert_eq!(sent.len(), 1, "exactly one notification for the outage: {sent:#?}");
    once_each(&hooks);

    // The collector holding the outbox's lease sent it; kill it mid-run. The engine's lease
    // (three ticks) is usually held by the same one, but a tick late under load lets the other
    // take it: either way the survivor must hold it within its lease time after the kill.
    let engine = lease_pid(&db, "alert-engine")
        .await
        .expect("the engine's lease is held");
    let outbox = lease_pid(&db, "alert-outbox")
        .await
        .expect("the outbox's lease is held");
    let dead = pids
        .iter()
        .position(|p| *p == outbox)
        .expect("a lease holder is one of ours");
    assert!(
        pids.contains(&engine),
        "the engine's lease holder {engine} is one of ours"
    );
    let engine_was_dead = engine == outbox;
    let survivor = 1 - dead;
    let survivor_pid = pids[survivor];
    assert_eq!(
        sent[0].path,
        format!("/{}", names[dead]),
        "the outbox's holder delivered it"
    );
    let acked_before: Vec<u64> = agents.iter().map(Agent::acked).collect();
    cs[dead].process.child.kill().unwrap();
    cs[dead].process.child.wait().unwrap();
    let killed = Instant::now();

    // The survivor takes the engine's lease within its lease time (three ticks).
    lease_moves(&db, "alert-engine", survivor_pid, Duration::from_secs(15)).await;
    let engine_moved = killed.elapsed();
    assert!(
        engine_moved <= Duration::from_secs(3 * TICK_SECS + 2),
        "the engine's lease moved after {engine_moved:?}"
    );
    // The Annex is back; its recovery is notified once, by the survivor, once the outbox's
    // lease has moved.
    for a in agents.iter_mut().filter(|a| a.site == "Annex") {
        a.start();
    }
    lease_moves(
        &db,
        "alert-outbox",
        survivor_pid,
        OUTBOX_LEASE + Duration::from_secs(15),
    )
    .await;
    let outbox_moved = killed.elapsed();
    assert!(
        outbox_moved <= OUTBOX_LEASE + Duration::from_secs(3),
        "the outbox's lease moved after {outbox_moved:?}"
    );
    notified(&hooks, "resolved", Duration::from_secs(20)).await;

    // Every agent delivers what it has through the survivor; then they stop.
    let all = &agents;
    eventually("every agent's spool empty", Duration::from_secs(30), || async move {
        all.iter().all(Agent::spool_empty).then_some(())
    })
    .await;
    for a in agents.iter_mut() {
        a.stop();
    }
    once_each(&hooks);
    let got: Vec<(String, String, String, String)> = outage(&hooks)
        .iter()
        .map(|n| {
            let s = |k: &str| n.body[k].as_str().unwrap_or("").to_string();
            (n.path.clone(), s("kind"), s("source"), s("site"))
        })
        .collect();
    let want = |who: usize, kind: &str| {
        (
            format!("/{}", names[who]),
            kind.to_string(),
            "site_offline".to_string(),
            "Annex".to_string(),
        )
    };
    assert_eq!(
        got,
        vec![want(dead, "opened"), want(survivor, "resolved")],
        "the outage opened once by the dead collector, resolved once by the survivor, nothing else about it"
    );
    for (n, f) in fronts.iter().enumerate() {
        if n == dead {
            assert!(
                f.forwarded_to(ports[survivor]) > 0,
                "front {n}'s agents moved to the survivor"
            );
        }
    }

    // No acknowledged report lost: the database holds every sequence up to the last one each
    // agent had acknowledged, and the survivor serves them.
    let alive = &cs[survivor];
    for (a, before) in agents.iter().zip(&acked_before) {
        let acked = a.acked();
        assert!(
            acked >= *before && acked > 0,
            "agent {}: acked {acked}, before {before}",
            a.id
        );
        let stored: Vec<i64> = db
            .query(
                "SELECT sequence FROM reports WHERE agent_id = $1 ORDER BY sequence",
                &[&a.id],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let upto: Vec<i64> = (1..=acked as i64).collect();
        assert_eq!(
            &stored[..stored.len().min(acked as usize)],
            upto.as_slice(),
            "agent {}: every report up to its acknowledged {acked} stored once; agent log:\n{}",
            a.id,
            a.log()
        );
        let detail = alive.get_json(&key, &format!("/api/v1/agents/{}", a.id)).await;
        let delivery = &detail["delivery"];
        assert!(
            delivery["last_sequence"].as_u64().unwrap() >= acked
                && delivery["reports_stored"].as_u64().unwrap() >= acked
                && delivery["gaps"].as_array().unwrap().is_empty(),
            "agent {}: the survivor serves every acknowledged report: {delivery}",
            a.id
        );
    }
    let killed_acked: u64 = agents
        .iter()
        .zip(&acked_before)
        .enumerate()
        .filter(|(n, _)| n % 2 == dead)
        .map(|(_, (_, b))| *b)
        .sum();
    assert!(killed_acked > 0, "the killed collector had acknowledged reports");
    let took = began.elapsed();
    eprintln!(
        "cluster: killed the holder of the outbox lease{}; engine lease on the survivor {engine_moved:.1?} and outbox lease {outbox_moved:.1?} after the SIGKILL; \
         {killed_acked} reports acknowledged by the killed collector all stored; test took {took:.1?}",
        if engine_was_dead {
            " and the engine's"
        } else {
            " (the engine's was the other's)"
        }
    );
    assert!(took < Duration::from_secs(120), "took {took:?}");
}
