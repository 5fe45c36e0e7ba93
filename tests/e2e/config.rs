//! Central configuration between the real binaries over real TLS: a configuration set with
//! `rounds-collector agent-config set` reaches a running agent within one heartbeat interval and
//! changes what it runs; one the agent cannot apply is refused with the reason shown at the
//! collector, and the agent keeps the last good one.

use std::time::{Duration, Instant};

use rounds_collector::store::Store;
use rounds_collector::store::sqlite::SqliteStore;

use crate::support::{Collector, Running, eventually};

const HEARTBEAT_SECS: u64 = 2;

/// A collector whose agents heartbeat every [`HEARTBEAT_SECS`], and the dir of its config file.
fn collector() -> (Collector, tempfile::TempDir) {
    let conf = tempfile::tempdir().unwrap();
    let file = conf.path().join("collector.toml");
    std::fs::write(&file, format!("heartbeat_interval_secs = {HEARTBEAT_SECS}\n")).unwrap();
    let c = Collector::start_in(tempfile::tempdir().unwrap(), &["--config", file.to_str().unwrap()]);
    (c, conf)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configuration_change_reaches_a_running_agent_within_a_heartbeat_and_a_bad_one_is_refused() {
    let (c, conf) = collector();
    let state = tempfile::tempdir().unwrap();
    c.enroll_agent("Maple Clinic", "Main", state.path());
    let _agent = Running::start("rounds-agent", &["run", "--state-dir", state.path().to_str().unwrap()]);
    let key = c.api_key();
    let list = eventually("the agent online", Duration::from_secs(30), || async {
        let v = c.get_json(&key, "/api/v1/agents").await;
        (v[0]["online"] == true).then_some(v)
    })
    .await;
    let id = list[0]["agent_id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/agents/{id}");

    // It runs the full default: every check once at start, then hourly; it reports the
    // default configuration's version.
    let first = eventually("the default configuration applied", Duration::from_secs(60), || async {
        let d = c.get_json(&key, &path).await;
        let ok = d["delivery"]["reported"]["config_version"].is_string()
            && d["delivery"]["last_sequence"].as_u64() >= Some(rounds_agent_config::CHECKS.len() as u64);
        ok.then_some(d)
    })
    .await;
    let default_version = first["delivery"]["reported"]["config_version"].clone();
    tokio::time::sleep(Duration::from_secs(HEARTBEAT_SECS)).await;
    let before = c.get_json(&key, &path).await["delivery"]["last_sequence"]
        .as_u64()
        .unwrap();

    // The change: inventory every second.
    let file = conf.path().join("maple.toml");
    std::fs::write(&file, "[checks.inventory]\nschedule = \"* * * * * *\"\n").unwrap();
    let set_at = Instant::now();
    let out = c.admin(&[
        "agent-config",
        "set",
        "--practice",
        "Maple Clinic",
        "--file",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let changed = eventually("reports every second", Duration::from_secs(30), || async {
        let d = c.get_json(&key, &path).await;
        (d["delivery"]["last_sequence"].as_u64().unwrap() > before).then_some(d)
    })
    .await;
    let took = set_at.elapsed();
    eprintln!("configuration change to the first report on the new schedule: {took:?}");
    assert!(
        took <= Duration::from_secs(HEARTBEAT_SECS + 2),
        "took {took:?}, more than one heartbeat interval ({HEARTBEAT_SECS} s) plus fetch and a 1-s tick"
    );
    assert_eq!(changed["delivery"]["gaps"], serde_json::json!([]));
    let applied = eventually("the new version reported", Duration::from_secs(10), || async {
        let d = c.get_json(&key, &path).await;
        let v = &d["delivery"]["reported"]["config_version"];
        (v.is_string() && *v != default_version).then_some(d)
    })
    .await;
    let good_version = applied["delivery"]["reported"]["config_version"].clone();
    let at = applied["delivery"]["last_sequence"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = c.get_json(&key, &path).await["delivery"]["last_sequence"]
        .as_u64()
        .unwrap();
    assert!(later >= at + 2, "inventory runs every second: {at} -> {later}");

    // A configuration this agent build cannot apply: a newer collector sharing the database
    // (a rolling upgrade) stored one naming a check this agent does not have. The agent refuses
    // it, keeps running the last good one, and the reason shows at the collector.
    let store = SqliteStore::open(&c.data_dir.path().join("rounds.db")).unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.set_agent_config(
        "Maple Clinic",
        None,
        Some("[checks.inventory]\nschedule = \"* * * * * *\"\n\n[checks.network_map]\nschedule = \"0 0 3 * * *\"\n"),
        "a newer collector",
        "cli",
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let refused = eventually("the refusal at the collector", Duration::from_secs(30), || async {
        let d = c.get_json(&key, &path).await;
        d["delivery"]["reported"]["config_error"].is_string().then_some(d)
    })
    .await;
    let reason = refused["delivery"]["reported"]["config_error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("unknown check `network_map`"), "{reason}");
    assert_eq!(
        refused["delivery"]["reported"]["config_version"], good_version,
        "it keeps the last good configuration"
    );
    let at = refused["delivery"]["last_sequence"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = c.get_json(&key, &path).await["delivery"]["last_sequence"]
        .as_u64()
        .unwrap();
    assert!(later >= at + 2, "still running inventory every second: {at} -> {later}");
}
