//! EHR probes between the real binaries: a `rounds-agent run` probing an endpoint the test
//! opens and closes on 127.0.0.1, a real `rounds-collector` storing what it sends: the state
//! change arrives within seconds of the endpoint going down, summaries arrive on their cadence,
//! and the collector itself is probed as the network baseline's reference endpoint.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Collector, Running, eventually};

/// A TCP endpoint that records when each probe connected; dropping the task closes the port.
async fn endpoint() -> (u16, Arc<Mutex<Vec<Instant>>>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepts = Arc::new(Mutex::new(Vec::new()));
    let seen = accepts.clone();
    let task = tokio::spawn(async move {
        while let Ok((_s, _)) = listener.accept().await {
            seen.lock().unwrap().push(Instant::now());
        }
    });
    (port, accepts, task)
}

fn by_subject<'a>(observations: &'a Value, subject: &str) -> Option<&'a Value> {
    observations.as_array()?.iter().find(|o| o["subject"] == subject)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_reaches_the_collector_within_seconds_and_summaries_on_their_cadence() {
    let c = Collector::start();
    let state = tempfile::tempdir().unwrap();
    c.enroll_agent("Smith Family Practice", "Main Street", state.path());

    let (port, accepts, server) = endpoint().await;
    let config = state.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[probes]\ninterval_secs = 5\nsummary_interval_secs = 5\n\n\
             [[endpoint]]\nname = \"EHR server\"\nkind = \"tcp\"\ntarget = \"127.0.0.1:{port}\"\n"
        ),
    )
    .unwrap();
    let _agent = Running::start(
        "rounds-agent",
        &[
            "run",
            "--state-dir",
            state.path().to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let key = c.api_key();
    let agent_id = eventually("the agent to be listed", Duration::from_secs(30), || async {
        let v = c.get_json(&key, "/api/v1/agents").await;
        v[0]["agent_id"].as_str().map(str::to_string)
    })
    .await;
    let probes_url = format!("/api/v1/agents/{agent_id}/observations?kind=ehr.probe");
    let up = eventually("the first state (up)", Duration::from_secs(30), || async {
        let v = c.get_json(&key, &probes_url).await;
        by_subject(&v, "EHR server").cloned()
    })
    .await;
    assert_eq!(up["data"]["up"], true, "{up}");
    assert_eq!(up["data"]["address"], format!("127.0.0.1:{port}"));

    // The collector is the baseline's reference endpoint, probed with the agent's CA.
    let baseline = eventually("the collector as reference", Duration::from_secs(30), || async {
        let v = c
            .get_json(
                &key,
                &format!("/api/v1/agents/{agent_id}/observations?kind=network.baseline"),
            )
            .await;
        by_subject(&v, "collector").cloned()
    })
    .await;
    assert_eq!(baseline["data"]["role"], "reference");
    assert_eq!(baseline["data"]["up"], true, "{baseline}");

    // Summaries every 5 s, one per target, each covering the period since the last.
    let summaries_url = format!("/api/v1/agents/{agent_id}/observations?kind=ehr.summary");
    let first = eventually("a summary", Duration::from_secs(20), || async {
        let v = c.get_json(&key, &summaries_url).await;
        by_subject(&v, "EHR server").cloned()
    })
    .await;
    let period = |s: &Value, f: &str| chrono::DateTime::parse_from_rfc3339(s["data"][f].as_str().unwrap()).unwrap();
    let next = eventually("the next summary", Duration::from_secs(20), || async {
        let v = c.get_json(&key, &summaries_url).await;
        by_subject(&v, "EHR server")
            .filter(|s| s["sequence"] != first["sequence"])
            .cloned()
    })
    .await;
    let cadence = (period(&next, "period_end") - period(&first, "period_end")).num_milliseconds();
    assert!(
        (4_000..=6_500).contains(&cadence),
        "summaries {cadence} ms apart: {first} {next}"
    );
    assert_eq!(period(&next, "period_start"), period(&first, "period_end"));
    assert!(next["data"]["probes"].as_u64().unwrap() >= 1, "{next}");
    assert_eq!(next["data"]["down"], 0);

    // Go down just before a probe is due (probes come every 5 s), so the time measured is the
    // agent's: the probe, its retry 2 s later, the report, the collector's commit.
    let seen = accepts.lock().unwrap().len();
    let fresh = eventually("the next probe", Duration::from_secs(10), || async {
        accepts.lock().unwrap().get(seen).copied()
    })
    .await;
    tokio::time::sleep_until((fresh + Duration::from_millis(4_500)).into()).await;
    server.abort();
    let _ = server.await;
    let went_down = Instant::now();
    let down = eventually("the down state", Duration::from_secs(15), || async {
        let v = c.get_json(&key, &probes_url).await;
        by_subject(&v, "EHR server")
            .filter(|o| o["data"]["up"] == false)
            .cloned()
    })
    .await;
    let took = went_down.elapsed();
    assert!(
        took <= Duration::from_secs(5),
        "the outage took {took:?} to be stored: {down}"
    );
    assert_eq!(down["data"]["reason"], "tcp_refused", "{down}");
    assert_eq!(down["data"]["attempts"], 2);

    // The findings are written by the evaluation that follows the report's commit (a second
    // transaction), so they may trail the stored observation by a few milliseconds.
    let findings_url = format!("/api/v1/agents/{agent_id}/findings");
    let reachable = eventually("the reachability finding to fail", Duration::from_secs(5), || async {
        let findings = c.get_json(&key, &findings_url).await;
        findings
            .as_array()?
            .iter()
            .find(|f| f["rule"] == "hipaa.availability.ehr_reachable" && f["status"] == "fail")
            .cloned()
    })
    .await;
    assert_eq!(
        reachable["evidence"]["observations"][0]["values"]["up"], false,
        "{reachable}"
    );
}
