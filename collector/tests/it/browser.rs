//! The dashboard in a real headless Chromium (Debian's `chromium` and `chromium-driver`,
//! installed by .ci/run), driven through chromedriver with fantoccini, against the real TLS
//! server (rustls, the collector's generated CA) with a fake clock.
//!
//! One chromedriver and one browser session for the whole module: a single test walks through
//! log-in, a hostile agent's text, an agent going offline live, the practice and machine pages,
//! an enrollment token and acknowledging an incident, taking screenshots on the way (saved under
//! `$CARGO_TARGET_DIR/dash-screenshots/`, or `target/dash-screenshots/`, path printed).
//!
//! The browser is started with `--ignore-certificate-errors`, for this test only: its
//! certificate store cannot be given the per-test CA without a user profile's NSS database.
//! The TLS stack served is the production one (`tls::prepare` + axum-server/rustls).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use rounds_collector::app::router;
use rounds_protocol::{Observation, obs};

use crate::dash::Fleet;
use crate::web::{agent, report_and_evaluate};

const PASSWORD: &str = "correct horse battery staple";

/// chromedriver, ended when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("dash-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    let path = screenshots_dir().join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    println!("screenshot: {}", path.display());
}

/// Starts chromedriver and a headless Chromium session.
async fn browser() -> (Driver, Client) {
    let bin = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("chromedriver is not installed: apt-get install -y chromium chromium-driver (.ci/run does)");
    let port = free_port();
    let child = Command::new(bin)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let driver = Driver(child);
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--ignore-certificate-errors",
                "--window-size=1366,900",
                "--lang=en-US",
            ],
        }),
    );
    let started = Instant::now();
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => return (driver, c),
            Err(e) if started.elapsed() < Duration::from_secs(20) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("cannot start a chromium session through chromedriver: {e}"),
        }
    }
}

/// Serves the fleet's collector over HTTPS on a free port; returns its address.
async fn serve(f: &Fleet) -> SocketAddr {
    let tls = rounds_collector::tls::prepare(&f.app.state.settings.tls, f.app._dir.path()).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(f.app.state.clone());
    let config = axum_server::tls_rustls::RustlsConfig::from_config(tls.server_config);
    tokio::spawn(async move {
        axum_server::from_tcp_rustls(listener, config)
            .serve(app.into_make_service_with_connect_info::<SocketAddr>())
            .await
            .unwrap();
    });
    addr
}

/// Waits until `f` holds, polling the page (no reload).
async fn eventually<F, Fut>(what: &str, wait: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !f().await {
        assert!(started.elapsed() < wait, "{what}: not within {wait:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text(c: &Client, css: &str) -> String {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// No JavaScript dialog is open (a hostile value that ran `alert()` would leave one).
async fn no_dialog(c: &Client, case: &str) {
    assert!(c.get_alert_text().await.is_err(), "{case}: a dialog opened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_real_browser() {
    let f = Fleet::new().await;
    // A hostile machine: script in its hostname, markup in its evidence.
    let hostile = agent(
        &f.app,
        "Smith Family Practice",
        "Main St",
        "<script>alert(1)</script>",
        "linux",
        "0.3.1",
    )
    .await;
    let now = f.app.state.now();
    let evil = Observation::ok(
        "host",
        now,
        &obs::Firewall {
            backend: "<img src=x onerror=\"window.__xss=1;alert(2)\">".into(),
            enabled: false,
            default_inbound: "allow".into(),
            profiles: Vec::new(),
        },
    );
    report_and_evaluate(&f.app, &hostile, 1, &[evil]).await;
    let reported = rounds_collector::store::AgentReportedState::default();
    for id in [&f.a_agent, &f.b_agent, &hostile] {
        f.app
            .state
            .evaluator
            .heartbeat(id, "0.3.1", now, &reported)
            .await
            .unwrap();
    }
    let incident = f
        .incident(
            "Smith Family Practice",
            "EHR unreachable",
            "the EHR vendor's endpoint fails from 2 practices",
        )
        .await;
    let addr = serve(&f).await;
    let base = format!("https://localhost:{}", addr.port());
    let (_driver, c) = browser().await;

    // Log in.
    c.goto(&format!("{base}/")).await.unwrap();
    assert!(c.current_url().await.unwrap().path().ends_with("/login"));
    c.find(Locator::Css("input[name=username]"))
        .await
        .unwrap()
        .send_keys("tech")
        .await
        .unwrap();
    c.find(Locator::Css("input[name=password]"))
        .await
        .unwrap()
        .send_keys(PASSWORD)
        .await
        .unwrap();
    shot(&c, "01-login").await;
    c.find(Locator::Css("form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually("overview after login", Duration::from_secs(10), || async {
        c.current_url().await.map(|u| u.path() == "/").unwrap_or(false) && text(&c, "h1").await == "Overview"
    })
    .await;

    // The hostile hostname is text; nothing ran.
    let row = format!(r#"tr[data-agent="{hostile}"] td.host"#);
    assert_eq!(text(&c, &row).await, "<script>alert(1)</script>");
    no_dialog(&c, "overview").await;
    // The script converted times to the viewer's zone, and the live stream is up.
    eventually("live stream up", Duration::from_secs(10), || async {
        text(&c, "#live").await == "● live"
    })
    .await;
    let localised = c
        .execute("return document.querySelectorAll('time[data-local]').length", vec![])
        .await
        .unwrap();
    assert!(localised.as_u64().unwrap_or(0) > 0, "{localised:?}");
    shot(&c, "02-overview").await;

    // An agent goes offline: the open page turns it red without a reload.
    c.execute("window.__same_page = 1", vec![]).await.unwrap();
    let status = format!(r#"tr[data-agent="{}"] td.online"#, f.a_agent);
    assert_eq!(text(&c, &status).await, "● Online");
    // The fleet's total line: the three machines, all online (heartbeats just now).
    assert_eq!(text(&c, "#fleet-counts").await, "3 online, 0 offline");
    assert_eq!(text(&c, "#fleet-total .badge.offline").await, "0 offline");
    f.app.advance(200);
    eventually("agent shown offline", Duration::from_secs(10), || async {
        text(&c, &status).await == "○ Offline"
    })
    .await;
    let practice_cell = format!(r#"tr[data-practice="{}"] td[data-domain="agents"]"#, f.a);
    eventually("practice counts updated", Duration::from_secs(5), || async {
        text(&c, &practice_cell).await.contains("all 2 offline")
    })
    .await;
    // The total line follows the stream too, without a reload.
    eventually("fleet totals updated", Duration::from_secs(5), || async {
        text(&c, "#fleet-counts").await == "0 online, 3 offline"
    })
    .await;
    assert_eq!(text(&c, "#fleet-total .badge.online").await, "0 online");
    assert_eq!(text(&c, "#fleet-total .badge.offline").await, "3 offline");
    let same = c.execute("return window.__same_page === 1", vec![]).await.unwrap();
    assert_eq!(same, serde_json::Value::Bool(true), "the page was reloaded");
    shot(&c, "03-overview-offline").await;

    // The practice page, through its link.
    c.find(Locator::Css(&format!(r#"a[href="/practices/{}"]"#, f.a)))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually("practice page", Duration::from_secs(10), || async {
        text(&c, "h1").await.starts_with("Smith Family Practice")
    })
    .await;
    let svgs = c
        .execute("return document.querySelectorAll('svg.chart').length", vec![])
        .await
        .unwrap();
    assert!(svgs.as_u64().unwrap_or(0) >= 3, "{svgs:?}");
    // The hostile evidence is there as text, and ran nothing.
    let body_text = c.execute("return document.body.textContent", vec![]).await.unwrap();
    let body_text = body_text.as_str().unwrap();
    assert!(body_text.contains("<script>alert(1)</script>"));
    assert!(
        body_text.contains(r#"<img src=x onerror=\"window.__xss=1;alert(2)\">"#),
        "{body_text}"
    );
    let xss = c.execute("return typeof window.__xss", vec![]).await.unwrap();
    assert_eq!(xss, serde_json::Value::String("undefined".into()));
    no_dialog(&c, "practice page").await;
    shot(&c, "04-practice").await;

    // An enrollment token with the command to copy.
    c.find(Locator::Css("input[name=site]"))
        .await
        .unwrap()
        .send_keys("Annex")
        .await
        .unwrap();
    c.find(Locator::Css("#create-token"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually("install command shown", Duration::from_secs(10), || async {
        text(&c, "#install-command")
            .await
            .contains("rounds-agent enroll --collector https://localhost:")
    })
    .await;
    assert!(text(&c, "#install-command").await.contains("--token rnd_tok_"));
    shot(&c, "05-token").await;

    // Acknowledge an incident, from the overview's list.
    c.goto(&format!("{base}/")).await.unwrap();
    c.find(Locator::Css(&format!(r#"a[href="/incidents/{incident}"]"#)))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually("incident page", Duration::from_secs(10), || async {
        text(&c, "#incident-state").await.contains("open")
    })
    .await;
    c.find(Locator::Css("#acknowledge"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually("incident acknowledged", Duration::from_secs(10), || async {
        text(&c, "#incident-state").await.contains("acknowledged")
    })
    .await;
    assert!(c.source().await.unwrap().contains("acknowledged by tech"));
    shot(&c, "06-incident-acknowledged").await;

    // The hostile machine's page.
    c.goto(&format!("{base}/agents/{hostile}")).await.unwrap();
    eventually("machine page", Duration::from_secs(10), || async {
        text(&c, "h1").await == "<script>alert(1)</script>"
    })
    .await;
    assert!(
        c.source().await.unwrap().contains("Latest observation of every check"),
        "machine page"
    );
    no_dialog(&c, "machine page").await;
    shot(&c, "07-machine").await;

    // A tablet's width: the overview still reads (screenshot for a person to look at).
    c.set_window_size(820, 1180).await.unwrap();
    c.goto(&format!("{base}/")).await.unwrap();
    eventually("overview on a tablet", Duration::from_secs(10), || async {
        text(&c, "h1").await == "Overview"
    })
    .await;
    let overflow = c
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        overflow,
        serde_json::Value::Bool(true),
        "the page scrolls sideways on a tablet"
    );
    shot(&c, "08-overview-tablet").await;
    c.close().await.unwrap();
}
