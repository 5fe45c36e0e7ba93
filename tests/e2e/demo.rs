//! `rounds demo`: a collector and an agent for this machine, the dashboard and a login.

use std::time::Duration;

use crate::support::{Running, client_trusting, last_line, run};

#[tokio::test(flavor = "multi_thread")]
async fn demo_serves_a_dashboard_showing_this_machine_online() {
    let data = tempfile::tempdir().unwrap();
    let dd = data.path().to_str().unwrap();
    let mut demo = Running::start("rounds", &["demo", "--data-dir", dd, "--listen", "127.0.0.1:0"]);
    let url_line = demo.wait_for_line("dashboard: https://", Duration::from_secs(60));
    let url = url_line
        .split_whitespace()
        .last()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let login = demo.wait_for_line("login:", Duration::from_secs(5));
    let password = login.split_whitespace().last().unwrap().to_string();
    let online = demo.wait_for_line("online on the dashboard", Duration::from_secs(5));
    assert!(online.contains("this machine is online"), "{online}");

    // The machine is online in the API, through a key made while the demo runs.
    let out = run(
        "rounds-collector",
        &["--data-dir", dd, "apikey", "create", "--role", "admin"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key = last_line(&out);
    let http = client_trusting(&data.path().join("ca.pem"));
    let agents: serde_json::Value = http
        .get(format!("{url}/api/v1/agents"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(agents[0]["online"], true, "{agents}");
    let hostname = agents[0]["hostname"].as_str().unwrap().to_string();

    // The printed login opens the dashboard, which lists this machine as online.
    let page = crate::support::dashboard_after_login(&http, &url, "demo", &password).await;
    assert!(page.contains(&hostname), "dashboard lists {hostname}");
    assert!(page.to_lowercase().contains("online"));

    let status = demo.terminate();
    assert!(status.success(), "demo stops cleanly: {status:?}");
    demo.wait_for_line("Rounds demo stopped", Duration::from_secs(5));
}
