//! Benchmark: reports per second end to end with the spool: reports appended to an agent's
//! spool (fsynced), delivered by the agent's sender over real TLS to a real collector (in this
//! process, SQLite in a temporary data dir), stored and acknowledged, until the spool is empty.
//!
//! Run: `cargo bench -p rounds --bench delivery`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rounds_agent::clock::SystemClock;
use rounds_agent::spool::{Priority, Spool, SpoolOptions};
use rounds_collector::{admin, config, serve};
use rounds_protocol::Observation;
use tokio_util::sync::CancellationToken;

const REPORTS: u64 = 1000;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(bench());
}

async fn bench() {
    let data = tempfile::tempdir().expect("temp dir");
    let overrides = config::Overrides {
        data_dir: Some(data.path().to_path_buf()),
        listen: Some("127.0.0.1:0".into()),
    };
    let settings = config::load(None, &overrides).expect("settings");
    let listener = serve::bind(settings.listen).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let prepared = serve::prepare(settings).await.expect("collector");
    let store = prepared.store.clone();
    let ca_file = prepared.tls.ca_file.clone().expect("generated CA");
    let shutdown = CancellationToken::new();
    let collector = tokio::spawn(serve::run(prepared, listener, shutdown.clone()));

    let url = format!("https://localhost:{port}");
    let state_dir = data.path().join("agent");
    let token = admin::token_create(store.as_ref(), "Bench", "Main", Duration::from_secs(600))
        .await
        .expect("token");
    let identity = rounds_agent::enroll(rounds_agent::EnrollOptions {
        collector: url.clone(),
        token,
        ca_file: ca_file.clone(),
        state_dir: state_dir.clone(),
        hostname: Some("bench".into()),
    })
    .await
    .expect("enroll");

    let spool = Arc::new(
        Spool::open(
            SpoolOptions {
                dir: state_dir.clone(),
                agent_id: identity.agent_id.clone(),
                settings: Default::default(),
                first_sequence: 1,
                fail_writes_while: None,
            },
            Arc::new(SystemClock),
        )
        .expect("spool"),
    );
    let client = rounds_agent::client::CollectorClient::new(
        &url,
        &std::fs::read(&ca_file).expect("ca"),
        "ca.pem",
        Some(rounds_agent::client::Credentials {
            agent_id: identity.agent_id.clone(),
            agent_secret: identity.agent_secret.clone(),
        }),
    )
    .expect("client");
    let obs = vec![Observation::error(
        "inventory",
        "host",
        chrono::Utc::now(),
        "x".repeat(1500),
    )];

    let stop = CancellationToken::new();
    let sender = {
        let (spool, stop, id) = (spool.clone(), stop.clone(), identity.agent_id.clone());
        tokio::spawn(async move {
            rounds_agent::sender::deliver(&client, &spool, &id, Default::default(), &stop, |_| async {}).await;
        })
    };
    let start = Instant::now();
    for _ in 0..REPORTS {
        spool
            .append_async(Some("inventory".into()), true, Priority::Routine, obs.clone())
            .await
            .expect("append");
    }
    while spool.summary().depth > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = start.elapsed();
    stop.cancel();
    let _ = sender.await;
    shutdown.cancel();
    let _ = collector.await;
    println!(
        "end to end with the spool: {REPORTS} reports appended (fsync), delivered over TLS, stored and acknowledged in {:.2} s = {:.0} reports/s",
        took.as_secs_f64(),
        REPORTS as f64 / took.as_secs_f64()
    );
}
