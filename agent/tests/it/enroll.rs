//! `enroll`: the request it sends, what it keeps, and how refusals read.

use std::os::unix::fs::PermissionsExt;

use rounds_agent::state::StateDir;
use rounds_agent::{EnrollError, EnrollOptions, enroll};
use rounds_protocol::paths;

use crate::support::{AGENT_ID, AGENT_SECRET, Ca, FakeCollector, enroll_into, healthy, write_ca};

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn enroll_sends_the_request_and_keeps_identity_and_ca() {
    let ca = Ca::new("Rounds CA");
    let collector = FakeCollector::start(&ca, healthy).await;
    let tmp = tempfile::tempdir().unwrap();
    let state_dir = tmp.path().join("nested/state");

    let identity = enroll_into(&collector, &ca, &state_dir).await;

    assert_eq!(identity.agent_id, AGENT_ID);
    assert_eq!(identity.practice, "Maple Family Practice");
    assert_eq!(identity.site, "Main Street");
    assert_eq!(identity.collector, collector.url);
    assert_eq!(
        identity.heartbeat_interval_secs,
        Some(1),
        "the announced interval is kept"
    );

    let reqs = collector.on(paths::ENROLL);
    assert_eq!(reqs.len(), 1);
    let body = reqs[0].json();
    assert_eq!(body["protocol"], rounds_protocol::PROTOCOL_MAJOR);
    assert_eq!(body["token"], "tok_test");
    assert_eq!(body["hostname"], "frontdesk-01");
    assert_eq!(body["os"], std::env::consts::OS);
    assert_eq!(body["agent_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        reqs[0].header("authorization"),
        None,
        "enrollment carries no credentials"
    );

    let state = StateDir::new(&state_dir);
    assert_eq!(mode(&state_dir), 0o700);
    assert_eq!(mode(&state.identity_path()), 0o600);
    assert_eq!(mode(&state.ca_path()), 0o600);
    assert_eq!(std::fs::read_to_string(state.ca_path()).unwrap(), ca.pem());
    assert_eq!(state.load_identity().unwrap(), identity);
    let on_disk = std::fs::read_to_string(state.identity_path()).unwrap();
    assert!(on_disk.contains(AGENT_SECRET), "the secret is kept for run");
    assert!(
        !format!("{identity:?}").contains(AGENT_SECRET),
        "Debug hides the secret"
    );
}

#[tokio::test]
async fn a_refusal_shows_the_collectors_message_and_keeps_nothing() {
    let ca = Ca::new("Rounds CA");
    let collector = FakeCollector::start(&ca, |_| (409, r#"{"error":"enrollment token already used"}"#.into())).await;
    let tmp = tempfile::tempdir().unwrap();
    let state_dir = tmp.path().join("state");
    let opts = EnrollOptions {
        collector: collector.url.clone(),
        token: "tok_used".into(),
        ca_file: write_ca(&ca, tmp.path(), "ca.pem"),
        state_dir: state_dir.clone(),
        hostname: None,
    };

    let err = enroll(opts).await.unwrap_err();

    assert_eq!(
        err.to_string(),
        "enrollment refused by collector: enrollment token already used"
    );
    assert!(matches!(err, EnrollError::Refused { status: 409, .. }));
    assert!(!err.is_usage());
    assert!(!StateDir::new(&state_dir).is_enrolled());
}

#[tokio::test]
async fn enrolling_against_a_collector_of_another_ca_fails_on_the_certificate() {
    let (ca1, ca2) = (Ca::new("one"), Ca::new("two"));
    let collector = FakeCollector::start(&ca1, healthy).await;
    let tmp = tempfile::tempdir().unwrap();
    let opts = EnrollOptions {
        collector: collector.url.clone(),
        token: "tok".into(),
        ca_file: write_ca(&ca2, tmp.path(), "ca2.pem"),
        state_dir: tmp.path().join("state"),
        hostname: None,
    };
    let err = enroll(opts).await.unwrap_err().to_string();
    assert!(err.contains("certificate") && err.contains("not trusted"), "{err}");
    assert!(collector.requests().is_empty());
}

#[tokio::test]
async fn a_missing_or_bad_ca_file_is_a_usage_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope.pem");
    let opts = |ca_file| EnrollOptions {
        collector: "https://127.0.0.1:1".into(),
        token: "tok".into(),
        ca_file,
        state_dir: tmp.path().join("state"),
        hostname: None,
    };
    let err = enroll(opts(missing.clone())).await.unwrap_err();
    assert!(err.is_usage());
    assert!(err.to_string().contains(&missing.display().to_string()), "{err}");

    let garbage = tmp.path().join("garbage.pem");
    std::fs::write(&garbage, "hello").unwrap();
    let err = enroll(opts(garbage.clone())).await.unwrap_err();
    assert!(err.is_usage());
    assert!(
        err.to_string().contains("garbage.pem") && err.to_string().contains("no PEM certificate"),
        "{err}"
    );
}

#[tokio::test]
async fn re_enrolling_starts_the_sequence_over() {
    let ca = Ca::new("Rounds CA");
    let collector = FakeCollector::start(&ca, healthy).await;
    let tmp = tempfile::tempdir().unwrap();
    let state_dir = tmp.path().join("state");
    enroll_into(&collector, &ca, &state_dir).await;
    let state = StateDir::new(&state_dir);
    state.store_next_sequence(42).unwrap();
    enroll_into(&collector, &ca, &state_dir).await;
    assert_eq!(state.load_next_sequence().unwrap(), 1);
}
