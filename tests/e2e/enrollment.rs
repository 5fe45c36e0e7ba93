//! Enrollment and reporting between the real binaries over real TLS, and the refusals.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Collector, Running, client_trusting, eventually, run};

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

fn enroll(c: &Collector, token: &str, ca: &std::path::Path, state: &std::path::Path) -> std::process::Output {
    run(
        "rounds-agent",
        &[
            "enroll",
            "--collector",
            &c.url(),
            "--token",
            token,
            "--ca",
            ca.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_enrolls_over_tls_and_its_inventory_reaches_the_api() {
    let c = Collector::start();
    let token = c.token("Smith Family Practice", "Main Street");
    let state = tempfile::tempdir().unwrap();
    let out = enroll(&c, &token, &c.ca(), state.path());
    assert!(
        out.status.success(),
        "enroll failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Smith Family Practice"), "{stdout}");

    // The secret is kept only in files readable by the owner.
    #[cfg(unix)]
    for entry in std::fs::read_dir(state.path()).unwrap() {
        use std::os::unix::fs::PermissionsExt;
        let entry = entry.unwrap();
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        if text.contains("rnd_agt_") {
            let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(
                mode,
                0o600,
                "{} holds the secret with mode {mode:o}",
                entry.path().display()
            );
        }
    }

    let mut agent = Running::start("rounds-agent", &["run", "--state-dir", state.path().to_str().unwrap()]);
    let key = c.api_key();
    let agents = eventually("the agent to be online", Duration::from_secs(30), || async {
        let v = c.get_json(&key, "/api/v1/agents").await;
        (v[0]["online"] == true).then_some(v)
    })
    .await;
    let agent_id = agents[0]["agent_id"].as_str().unwrap().to_string();
    assert_eq!(agents[0]["practice"], "Smith Family Practice");
    assert_eq!(agents[0]["hostname"], hostname());

    let inventory = eventually("the inventory report", Duration::from_secs(30), || async {
        let v = c
            .get_json(&key, &format!("/api/v1/agents/{agent_id}/observations?kind=inventory"))
            .await;
        (!v.as_array().unwrap().is_empty()).then_some(v)
    })
    .await;
    let data = &inventory[0]["data"];
    assert_eq!(data["hostname"], hostname());
    assert_eq!(data["os_family"], "linux");
    assert!(data["memory_total_bytes"].as_u64().unwrap() > 0);
    assert!(data["cpu_cores"].as_u64().unwrap() >= 1);
    assert!(!data["disks"].as_array().unwrap().is_empty());
    assert!(data["uptime_secs"].as_u64().unwrap() > 0);

    let practices = c.get_json(&key, "/api/v1/practices").await;
    assert_eq!(practices[0]["sites"][0]["name"], "Main Street");
    assert_eq!(practices[0]["sites"][0]["agents_online"], 1);

    let status = agent.terminate();
    assert!(status.success(), "agent exits cleanly on SIGTERM: {status:?}");
    let mut c = c;
    let status = c.process.terminate();
    assert!(status.success(), "collector exits cleanly on SIGTERM: {status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_with_another_ca_refuses_to_connect_and_the_token_stays_unused() {
    let c = Collector::start();
    let other = tempfile::tempdir().unwrap();
    let other_ca = other.path().join("other-ca.pem");
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    std::fs::write(&other_ca, params.self_signed(&key).unwrap().pem()).unwrap();

    let token = c.token("P", "S");
    let state = tempfile::tempdir().unwrap();
    let out = enroll(&c, &token, &other_ca, state.path());
    assert!(
        !out.status.success(),
        "enrolling against an untrusted certificate must fail"
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        stderr.contains("certificate"),
        "the error names the certificate problem: {stderr}"
    );
    assert!(!state.path().join("identity.json").exists());

    // Nothing was stored: the same token still enrolls with the right CA, once.
    let out = enroll(&c, &token, &c.ca(), state.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again = tempfile::tempdir().unwrap();
    let out = enroll(&c, &token, &c.ca(), again.path());
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already used"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_reports_over_tls_get_clear_4xx_and_store_nothing() {
    let c = Collector::start();
    let token = c.token("P", "S");
    let http = client_trusting(&c.ca());
    let enrolled: Value = http
        .post(format!("{}/api/v1/agent/enroll", c.url()))
        .json(&json!({"protocol": 1, "token": token, "hostname": "h", "os": "linux", "agent_version": "0.1.0"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = enrolled["agent_id"].as_str().unwrap();
    let secret = enrolled["agent_secret"].as_str().unwrap();
    let report = |protocol: u64| json!({"protocol": protocol, "agent_id": id, "sequence": 1, "created_at": "2026-11-24T10:00:00Z", "observations": []});
    let url = format!("{}/api/v1/agent/reports", c.url());
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        (
            "wrong secret",
            http.post(&url).basic_auth(id, Some("rnd_agt_wrong")).json(&report(1)),
            401,
            "invalid agent credentials",
        ),
        (
            "not json",
            http.post(&url)
                .basic_auth(id, Some(secret))
                .header("content-type", "application/json")
                .body("{oops"),
            400,
            "not valid JSON",
        ),
        (
            "over 1 MiB",
            http.post(&url)
                .basic_auth(id, Some(secret))
                .header("content-type", "application/json")
                .body(format!("{{\"pad\":\"{}\"}}", "x".repeat(1024 * 1024 + 10))),
            413,
            "larger than the limit of 1048576 bytes",
        ),
        (
            "protocol 9",
            http.post(&url).basic_auth(id, Some(secret)).json(&report(9)),
            400,
            "unsupported protocol major version 9",
        ),
    ];
    for (name, req, status, needle) in cases {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{name}");
        let body = resp.text().await.unwrap();
        assert!(body.contains(needle), "{name}: {body}");
    }
    let key = c.api_key();
    let agents = c.get_json(&key, "/api/v1/agents").await;
    assert_eq!(agents[0]["last_sequence"], 0, "no refused report was stored");
    assert!(agents[0]["last_report_at"].is_null());
}

#[test]
fn admin_commands_work_while_the_server_runs_and_refuse_bad_input() {
    let c = Collector::start();
    let out = c.admin(&["user", "add", "tech1", "--role", "technician"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = c.admin(&["user", "add", "tech1", "--role", "technician"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let out = c.admin(&["apikey", "create", "--role", "janitor"]);
    assert_eq!(out.status.code(), Some(64));
    let out = c.admin(&["token", "create", "--practice", "P", "--site", "S", "--expires", "soon"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--expires"));

    let cfg = c.data_dir.path().join("bad.toml");
    std::fs::write(&cfg, "listen = \"127.0.0.1:0\"\nlisten_port = 5\n").unwrap();
    let out = run("rounds-collector", &["--config", cfg.to_str().unwrap(), "validate"]);
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml:2") && stderr.contains("listen_port"),
        "{stderr}"
    );
}
