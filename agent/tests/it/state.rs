//! The state dir: permissions, the secret kept out of Debug, sequence numbers never reused.

use std::os::unix::fs::PermissionsExt;

use chrono::Utc;
use rounds_agent::clock::SystemClock;
use rounds_agent::spool::{Priority, Spool, SpoolOptions};
use rounds_agent::state::{Identity, RunStatus, StateDir};
use rounds_agent::{AgentStatus, status};

fn identity() -> Identity {
    Identity {
        collector: "https://collector.example:8443".into(),
        agent_id: "agt_9".into(),
        agent_secret: "hunter2-very-secret".into(),
        practice: "Oak Dental".into(),
        site: "Annex".into(),
        enrolled_at: Utc::now(),
        heartbeat_interval_secs: Some(45),
    }
}

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn identity_is_written_0600_in_a_0700_dir_and_read_back() {
    let tmp = tempfile::tempdir().unwrap();
    let state = StateDir::new(tmp.path().join("a/b/state"));
    state
        .save_enrollment(&identity(), b"-----BEGIN CERTIFICATE-----\n")
        .unwrap();
    assert_eq!(mode(state.path()), 0o700);
    assert_eq!(mode(&state.identity_path()), 0o600);
    assert_eq!(mode(&state.ca_path()), 0o600);
    assert_eq!(state.load_identity().unwrap(), identity_with(&state));
    // Rewriting keeps the mode.
    state.save_enrollment(&identity(), b"x").unwrap();
    assert_eq!(mode(&state.identity_path()), 0o600);
}

fn identity_with(state: &StateDir) -> Identity {
    // enrolled_at is whatever was saved.
    let saved = state.load_identity().unwrap();
    Identity {
        enrolled_at: saved.enrolled_at,
        ..identity()
    }
}

#[test]
fn an_existing_open_dir_is_narrowed_to_0700() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    StateDir::new(&dir).create().unwrap();
    assert_eq!(mode(&dir), 0o700);
}

#[test]
fn debug_never_shows_the_secret() {
    let id = identity();
    let shown = format!("{id:?} {id:#?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("agt_9") && shown.contains("redacted"), "{shown}");
}

fn spool_in(dir: &std::path::Path, first_sequence: u64) -> Spool {
    Spool::open(
        SpoolOptions::new(dir.to_path_buf(), "agt_9".into(), Default::default(), first_sequence),
        std::sync::Arc::new(SystemClock),
    )
    .unwrap()
}

#[test]
fn sequence_numbers_continue_an_old_sequence_file_survive_reopening_and_are_never_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let state = StateDir::new(tmp.path());
    // An agent upgraded from one without a spool continues where its sequence file left off.
    state.store_next_sequence(5).unwrap();
    let spool = spool_in(tmp.path(), state.load_next_sequence().unwrap());
    let mut handed_out = vec![];
    for _ in 0..3 {
        handed_out.push(spool.append(None, true, Priority::Routine, vec![]).unwrap());
    }
    assert_eq!(handed_out, vec![5, 6, 7]);
    spool.ack_through(7).unwrap();
    drop(spool);
    // Reopened (a restart), even with everything acknowledged, the spool continues after 7.
    let spool = spool_in(tmp.path(), 1);
    assert_eq!(spool.append(None, true, Priority::Routine, vec![]).unwrap(), 8);
    assert_eq!(mode(&tmp.path().join(rounds_agent::spool::SPOOL_FILE)), 0o600);
}

#[test]
fn re_enrolling_forgets_the_old_spool() {
    let tmp = tempfile::tempdir().unwrap();
    let state = StateDir::new(tmp.path());
    state.save_enrollment(&identity(), b"ca").unwrap();
    let spool = spool_in(tmp.path(), 1);
    spool.append(None, true, Priority::Routine, vec![]).unwrap();
    drop(spool);
    state.save_enrollment(&identity(), b"ca").unwrap();
    assert!(!tmp.path().join(rounds_agent::spool::SPOOL_FILE).exists());
    assert_eq!(
        spool_in(tmp.path(), 1)
            .append(None, true, Priority::Routine, vec![])
            .unwrap(),
        1
    );
}

#[test]
fn status_of_an_empty_dir_is_not_enrolled() {
    let tmp = tempfile::tempdir().unwrap();
    let s = status(tmp.path()).unwrap();
    assert!(!s.is_enrolled());
    assert!(s.to_string().contains("enrolled:        no"), "{s}");
}

#[test]
fn status_shows_identity_last_contact_spool_configuration_and_errors_but_no_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let state = StateDir::new(tmp.path());
    state.save_enrollment(&identity(), b"ca").unwrap();
    state.store_next_sequence(8).unwrap();
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    state
        .store_status(&RunStatus {
            last_heartbeat_at: Some(at),
            last_report_at: Some(at),
            last_report_sequence: Some(7),
            last_error: Some("collector at https://c failed (503): busy".into()),
            last_error_at: Some(at),
            spool_error: Some("cannot write the spool /x/spool.jsonl: No space left on device".into()),
            config_version: Some("\"v3\"".into()),
            config_origin: Some("collector: practice Oak Dental".into()),
            config_error: Some("central configuration (practice Oak Dental):2: `checks.x`: unknown check".into()),
        })
        .unwrap();
    // Before the spool exists, the old sequence file says what comes next.
    let AgentStatus::Enrolled(e) = status(tmp.path()).unwrap() else {
        panic!("enrolled")
    };
    assert_eq!((e.next_sequence, e.spool.depth), (8, 0));

    let spool = spool_in(tmp.path(), 8);
    for _ in 0..3 {
        spool
            .append(Some("inventory"), true, Priority::Routine, vec![])
            .unwrap();
    }
    spool.ack_through(8).unwrap();
    let s = status(tmp.path()).unwrap();
    let AgentStatus::Enrolled(e) = &s else {
        panic!("enrolled")
    };
    assert_eq!((e.next_sequence, e.spool.depth), (11, 2));
    let text = s.to_string();
    for want in [
        "agt_9",
        "Oak Dental",
        "Annex",
        "https://collector.example:8443",
        "last heartbeat:  2026-11-24T10:00:00Z",
        "last delivery:   2026-11-24T10:00:00Z (sequence 7)",
        "next sequence:   11",
        "spool:           2 undelivered",
        "spool error:     cannot write the spool /x/spool.jsonl: No space left on device",
        "configuration:   collector: practice Oak Dental (version \"v3\")",
        "config refused:  central configuration (practice Oak Dental):2",
        "last error:      2026-11-24T10:00:00Z collector at https://c failed (503): busy",
    ] {
        assert!(text.contains(want), "missing {want}: {text}");
    }
    assert!(!text.contains("hunter2"));
}
