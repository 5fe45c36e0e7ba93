//! Issue 15: no secret reaches any log. A real collector and a real agent run at trace log
//! level through enrollment, reports, a failed log-in and a revocation; the agent secret, the
//! enrollment token, the API key and the passwords appear in no log of either, nor in any
//! output of the administrative commands except the one line meant to hand them over. The
//! revoked agent stops on its own with a clear message.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{Running, bin, client_trusting, eventually, last_line};

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_any_log_through_enrollment_reports_a_failed_login_and_a_revocation() {
    let work = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let dd = data.path().to_str().unwrap().to_string();
    let collector_log = work.path().join("collector.log");
    let mut collector = Running::start_with(
        "rounds-collector",
        &["serve", "--data-dir", &dd, "--listen", "127.0.0.1:0"],
        "trace",
        Stdio::from(std::fs::File::create(&collector_log).unwrap()),
    );
    let line = collector.wait_for_line("serving on https://", Duration::from_secs(30));
    let port: u16 = line.rsplit(':').next().unwrap().trim().parse().unwrap();
    let first = collector.wait_for_line(
        "dashboard user `admin` created with password: ",
        Duration::from_secs(30),
    );
    let admin_password = first.rsplit(' ').next().unwrap().trim().to_string();
    let url = format!("https://localhost:{port}");
    let ca = data.path().join("ca.pem");

    // Administrative commands at trace level: their stderr is a log too.
    let mut admin_logs: Vec<Vec<u8>> = Vec::new();
    let mut admin = |args: &[&str]| {
        let out = Command::new(bin("rounds-collector"))
            .args(["--data-dir", &dd])
            .args(args)
            .env("RUST_LOG", "trace")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        admin_logs.push(out.stderr.clone());
        out
    };
    let token = last_line(&admin(&["token", "create", "--practice", "Smith", "--site", "Main"]));
    let key = last_line(&admin(&["apikey", "create", "--role", "admin", "--expires", "1d"]));

    let state = work.path().join("agent");
    let enroll = Command::new(bin("rounds-agent"))
        .args([
            "enroll",
            "--collector",
            &url,
            "--token",
            &token,
            "--ca",
            ca.to_str().unwrap(),
        ])
        .arg("--state-dir")
        .arg(&state)
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert!(enroll.status.success(), "{}", String::from_utf8_lossy(&enroll.stderr));
    let identity: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("identity.json")).unwrap()).unwrap();
    let agent_id = identity["agent_id"].as_str().unwrap().to_string();
    let agent_secret = identity["agent_secret"].as_str().unwrap().to_string();

    let mut config = String::from("heartbeat_interval_secs = 1\n[probes]\nbaseline = false\n");
    for name in rounds_agent_config::CHECKS {
        if *name != "inventory" {
            config.push_str(&format!("[checks.{name}]\nenabled = false\n"));
        }
    }
    config.push_str("[checks.inventory]\nschedule = \"*/2 * * * * *\"\n");
    let config_file = work.path().join("agent.toml");
    std::fs::write(&config_file, config).unwrap();
    let agent_log = work.path().join("agent.log");
    let agent_out = work.path().join("agent.out");
    let mut agent = Command::new(bin("rounds-agent"))
        .arg("run")
        .arg("--state-dir")
        .arg(&state)
        .arg("--config")
        .arg(&config_file)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::from(std::fs::File::create(&agent_out).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&agent_log).unwrap()))
        .spawn()
        .unwrap();

    // Reports arrive.
    let client = client_trusting(&ca);
    let get = |path: String| {
        let (client, key, url) = (client.clone(), key.clone(), url.clone());
        async move {
            let resp = client
                .get(format!("{url}{path}"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
            resp.json::<serde_json::Value>().await.unwrap()
        }
    };
    eventually("a report at the collector", Duration::from_secs(60), || async {
        let a = get("/api/v1/agents".into()).await;
        a.as_array()
            .and_then(|a| a.first().cloned())
            .filter(|a| !a["last_report_at"].is_null())
    })
    .await;

    // A failed log-in: a password typed into the username box, and a wrong password.
    let typed_username = "Typed-Into-Username-9f3c1e";
    let wrong_password = "wrong-password-7a2b9d44";
    let page = client.get(format!("{url}/login")).send().await.unwrap();
    let cookie = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("rounds_csrf="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let csrf = cookie.trim_start_matches("rounds_csrf=").to_string();
    for (user, password) in [(typed_username, wrong_password), ("admin", wrong_password)] {
        let resp = client
            .post(format!("{url}/login"))
            .header("cookie", &cookie)
            .form(&[("username", user), ("password", password), ("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), reqwest::StatusCode::UNAUTHORIZED);
    }

    // Revocation: the running agent stops on its own, non-zero, saying why.
    admin(&["agent", "revoke", &agent_id]);
    let status = eventually("the revoked agent to exit", Duration::from_secs(30), || {
        let status = agent.try_wait().unwrap();
        async move { status }
    })
    .await;
    assert!(!status.success(), "a revoked agent exits non-zero: {status:?}");
    collector.terminate();

    let agent_text = std::fs::read(&agent_log).unwrap();
    assert!(
        contains(&agent_text, "revoked this agent's credentials"),
        "the agent says why it stopped: {}",
        String::from_utf8_lossy(&agent_text[agent_text.len().saturating_sub(2000)..])
    );
    let collector_text = std::fs::read(&collector_log).unwrap();
    assert!(
        collector_text.len() > 1000 && agent_text.len() > 1000,
        "the trace logs hold the run"
    );
    assert!(contains(&collector_text, "dashboard login failed"));
    let secrets = [
        ("agent secret", agent_secret.as_str()),
        ("enrollment token", token.as_str()),
        ("API key", key.as_str()),
        ("admin password", admin_password.as_str()),
        ("password typed as a username", typed_username),
        ("wrong password", wrong_password),
    ];
    let mut outputs: Vec<(String, Vec<u8>)> = vec![
        ("collector log".into(), collector_text),
        ("agent log".into(), agent_text),
        ("agent stdout".into(), std::fs::read(&agent_out).unwrap()),
        ("agent enroll stderr".into(), enroll.stderr.clone()),
        ("agent enroll stdout".into(), enroll.stdout.clone()),
        (
            "collector stdout but the first-start line".into(),
            collector
                .seen
                .iter()
                .filter(|l| !l.contains("created with password"))
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
                .into_bytes(),
        ),
    ];
    for (i, l) in admin_logs.iter().enumerate() {
        outputs.push((format!("admin command {i} stderr"), l.clone()));
    }
    for (what, bytes) in &outputs {
        for (name, secret) in secrets {
            assert!(!contains(bytes, secret), "the {name} is in the {what}");
        }
    }
    // The search finds a secret where it is meant to be.
    assert!(contains(
        &std::fs::read(state.join("identity.json")).unwrap(),
        &agent_secret
    ));
}
