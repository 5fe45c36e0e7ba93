//! The TLS client trusts exactly the enrolled CA: a server certified by another CA is refused.

use rounds_agent::client::{CollectorClient, Credentials, RequestError};
use rounds_protocol::{Heartbeat, PROTOCOL_MAJOR, paths};

use crate::support::{Ca, FakeCollector, base64, healthy};

fn heartbeat() -> Heartbeat {
    Heartbeat {
        protocol: PROTOCOL_MAJOR,
        agent_id: "agt_1".into(),
        sent_at: chrono::Utc::now(),
        agent_version: "0.0.0".into(),
        agent_uptime_secs: 1,
        config_version: None,
        config_error: None,
        spool_depth: None,
        spool_error: None,
    }
}

fn creds() -> Option<Credentials> {
    Some(Credentials {
        agent_id: "agt_1".into(),
        agent_secret: "pw".into(),
    })
}

#[tokio::test]
async fn a_server_certified_by_another_ca_is_refused() {
    let (ca1, ca2) = (Ca::new("Rounds CA one"), Ca::new("Rounds CA two"));
    let collector = FakeCollector::start(&ca1, healthy).await;
    let client = CollectorClient::new(&collector.url, ca2.pem().as_bytes(), "ca2.pem", creds()).unwrap();

    let err = client.heartbeat(&heartbeat()).await.unwrap_err();

    assert!(matches!(err, RequestError::Untrusted { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("certificate") && msg.contains("not trusted"), "{msg}");
    assert!(msg.contains("unknown issuer"), "{msg}");
    assert!(msg.contains(&collector.url), "the error names the URL: {msg}");
    assert!(
        collector.requests().is_empty(),
        "no request may reach an untrusted server"
    );
    assert!(err.is_retryable(), "the server may get the right certificate later");
}

#[tokio::test]
async fn a_server_certified_by_the_given_ca_is_trusted_and_sees_basic_auth() {
    let ca1 = Ca::new("Rounds CA one");
    let collector = FakeCollector::start(&ca1, healthy).await;
    let client = CollectorClient::new(&collector.url, ca1.pem().as_bytes(), "ca1.pem", creds()).unwrap();

    client.heartbeat(&heartbeat()).await.unwrap();

    let reqs = collector.on(paths::HEARTBEAT);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(
        reqs[0].header("authorization"),
        Some(format!("Basic {}", base64(b"agt_1:pw")).as_str())
    );
    assert_eq!(reqs[0].json()["agent_id"], "agt_1");
}

#[tokio::test]
async fn a_bundle_with_both_cas_trusts_either() {
    let (ca1, ca2) = (Ca::new("one"), Ca::new("two"));
    let collector = FakeCollector::start(&ca1, healthy).await;
    let bundle = format!("{}{}", ca2.pem(), ca1.pem());
    let client = CollectorClient::new(&collector.url, bundle.as_bytes(), "bundle.pem", creds()).unwrap();
    client.heartbeat(&heartbeat()).await.unwrap();
}

#[tokio::test]
async fn collector_errors_are_classified() {
    let ca = Ca::new("one");
    let collector = FakeCollector::start(&ca, |req| match req.path.as_str() {
        paths::HEARTBEAT => (401, r#"{"error":"unknown agent or wrong secret"}"#.into()),
        paths::REPORTS => (422, r#"{"error":"observation 3: unknown status"}"#.into()),
        _ => (503, "busy".into()),
    })
    .await;
    let client = CollectorClient::new(&collector.url, ca.pem().as_bytes(), "ca.pem", creds()).unwrap();

    let err = client.heartbeat(&heartbeat()).await.unwrap_err();
    assert!(matches!(err, RequestError::Unauthorized { .. }), "{err:?}");
    assert!(err.to_string().contains("re-enrollment is needed"), "{err}");
    assert!(err.to_string().contains("unknown agent or wrong secret"), "{err}");
    assert!(err.is_retryable());

    let report = rounds_protocol::Report {
        protocol: PROTOCOL_MAJOR,
        agent_id: "agt_1".into(),
        sequence: 1,
        created_at: chrono::Utc::now(),
        check: None,
        complete: false,
        prev_hash: None,
        hash: None,
        dropped: vec![],
        observations: vec![],
    };
    let err = client.report(&report).await.unwrap_err();
    assert!(matches!(err, RequestError::Rejected { status: 422, .. }), "{err:?}");
    assert_eq!(err.collector_message(), Some("observation 3: unknown status"));
    assert!(!err.is_retryable());

    let err = client
        .post::<_, serde_json::Value>(paths::CONFIG, &serde_json::json!({}))
        .await
        .unwrap_err();
    assert!(matches!(err, RequestError::Server { status: 503, .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error_naming_the_url() {
    let ca = Ca::new("one");
    // Bind and drop to find a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("https://127.0.0.1:{port}");
    let client = CollectorClient::new(&url, ca.pem().as_bytes(), "ca.pem", creds()).unwrap();
    let err = client.heartbeat(&heartbeat()).await.unwrap_err();
    assert!(matches!(err, RequestError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains(&url), "{err}");
    assert!(err.is_retryable());
}

#[test]
fn plain_http_is_refused() {
    let ca = Ca::new("one");
    let err = CollectorClient::new("http://127.0.0.1:1", ca.pem().as_bytes(), "ca.pem", None).unwrap_err();
    assert!(err.to_string().contains("https only"), "{err}");
}
