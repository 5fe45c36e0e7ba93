//! Wire compatibility, pinned by golden JSON files in `protocol/tests/golden/`.
//!
//! The rule within one protocol major version (see the crate docs and ARCHITECTURE.md, wire
//! compatibility): receivers ignore fields they do not know, and every field added after the
//! first release is optional (`#[serde(default)]`). So a newer agent can talk to an older
//! collector and an older agent to a newer collector.
//!
//! What the tests hold to, for every wire type:
//! - the golden file (written once, never edited: an older peer's message) deserializes with the
//!   current types, and every key it holds comes back with the same value when re-serialized
//!   (nothing was renamed, removed or retyped);
//! - the golden file with an unknown field added to every object still parses, to the same value
//!   (what a newer peer sends);
//! - the current sample serializes to exactly the golden file (the shape is pinned; a new
//!   optional field that is always serialized shows up here and gets a new golden file with the
//!   next sample, keeping the old one).
//!
//! A missing golden file fails the test; `ROUNDS_BLESS_GOLDEN=1` writes the missing ones (never
//! overwrites one that exists).

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use rounds_protocol::obs::{self, Payload};
use rounds_protocol::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Adds `"zz_future_field"` to every object in `v`, recursively, except inside `data`
/// payloads that are free-form anyway.
fn with_unknown_fields(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                // An observation's `data` is kept as it is (payloads have their own files).
                if key != "data" {
                    with_unknown_fields(child);
                }
            }
            map.insert("zz_future_field".into(), json!({"added_in": "1.99", "n": 1}));
        }
        Value::Array(items) => items.iter_mut().for_each(with_unknown_fields),
        _ => {}
    }
}

/// Every key of `old` is in `new` with the same value (objects compared key by key).
fn keys_survive(old: &Value, new: &Value, at: &str) -> Result<(), String> {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            for (k, ov) in o {
                match n.get(k) {
                    Some(nv) => keys_survive(ov, nv, &format!("{at}.{k}"))?,
                    None => return Err(format!("{at}.{k} is dropped by the current types")),
                }
            }
            Ok(())
        }
        (Value::Array(o), Value::Array(n)) if o.len() == n.len() => o
            .iter()
            .zip(n)
            .enumerate()
            .try_for_each(|(i, (a, b))| keys_survive(a, b, &format!("{at}[{i}]"))),
        (a, b) if a == b => Ok(()),
        (a, b) => Err(format!("{at} was {a} and comes back as {b}")),
    }
}

/// The checks of the module docs for one type; returns problems instead of panicking so one
/// run lists every broken file.
fn check<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(name: &str, sample: &T) -> Vec<String> {
    let path = dir().join(format!("{name}.json"));
    let current = serde_json::to_value(sample).unwrap();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(_) if std::env::var_os("ROUNDS_BLESS_GOLDEN").is_some() => {
            let mut pretty = serde_json::to_string_pretty(&current).unwrap();
            pretty.push('\n');
            std::fs::write(&path, &pretty).unwrap();
            pretty
        }
        Err(e) => {
            return vec![format!(
                "{}: {e} (ROUNDS_BLESS_GOLDEN=1 writes missing golden files)",
                path.display()
            )];
        }
    };
    let mut problems = Vec::new();
    let golden: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => return vec![format!("{}: not JSON: {e}", path.display())],
    };
    match serde_json::from_value::<T>(golden.clone()) {
        Err(e) => problems.push(format!("{}: the current types cannot read it: {e}", path.display())),
        Ok(parsed) => {
            let again = serde_json::to_value(&parsed).unwrap();
            if let Err(e) = keys_survive(&golden, &again, name) {
                problems.push(format!("{}: {e}", path.display()));
            }
            let mut newer = golden.clone();
            with_unknown_fields(&mut newer);
            match serde_json::from_value::<T>(newer) {
                Ok(v) if v == parsed => {}
                Ok(v) => problems.push(format!("{}: unknown fields change what is read: {v:?}", path.display())),
                Err(e) => problems.push(format!(
                    "{}: an unknown field is refused (a newer peer could not talk to this one): {e}",
                    path.display()
                )),
            }
        }
    }
    if current != golden {
        problems.push(format!(
            "{}: the current sample serializes differently:\n{}",
            path.display(),
            serde_json::to_string_pretty(&current).unwrap()
        ));
    }
    problems
}

fn report() -> Report {
    Report {
        protocol: PROTOCOL_MAJOR,
        agent_id: "agt_0001".into(),
        sequence: 42,
        created_at: at("2026-11-24T10:00:00Z"),
        check: Some("time_sync".into()),
        complete: true,
        prev_hash: Some("ab".repeat(32)),
        hash: Some("cd".repeat(32)),
        dropped: vec![DroppedRange {
            first: 40,
            last: 41,
            reason: "spool_full".into(),
        }],
        observations: vec![
            Observation::ok(
                "host",
                at("2026-11-24T09:59:58Z"),
                &obs::TimeSync {
                    synchronized: true,
                    service: Some("chrony".into()),
                    offset_ms: Some(1.5),
                },
            ),
            Observation::error(
                obs::Firewall::KIND,
                "host",
                at("2026-11-24T09:59:59Z"),
                "ufw: permission denied",
            ),
        ],
    }
}

#[test]
fn every_message_type_reads_its_golden_file_and_writes_it_back() {
    let mut problems = Vec::new();
    problems.extend(check(
        "enroll_request",
        &EnrollRequest {
            protocol: PROTOCOL_MAJOR,
            token: "rnd_tok_example".into(),
            hostname: "frontdesk-1".into(),
            os: "linux".into(),
            agent_version: "0.1.0".into(),
        },
    ));
    problems.extend(check(
        "enroll_response",
        &EnrollResponse {
            protocol: PROTOCOL_MAJOR,
            agent_id: "agt_0001".into(),
            agent_secret: "rnd_agt_example".into(),
            practice: "Smith Family Practice".into(),
            site: "Main Street".into(),
            heartbeat_interval_secs: 30,
        },
    ));
    problems.extend(check(
        "heartbeat",
        &Heartbeat {
            protocol: PROTOCOL_MAJOR,
            agent_id: "agt_0001".into(),
            sent_at: at("2026-11-24T10:00:00Z"),
            agent_version: "0.1.0".into(),
            agent_uptime_secs: 3600,
            config_version: Some("\"v7\"".into()),
            config_error: Some("check `nope` is unknown".into()),
            spool_depth: Some(3),
            spool_error: Some("no space left on device".into()),
        },
    ));
    problems.extend(check(
        "heartbeat_ack",
        &HeartbeatAck {
            received_at: at("2026-11-24T10:00:01Z"),
            config_etag: Some("\"v7\"".into()),
        },
    ));
    problems.extend(check("report", &report()));
    problems.extend(check(
        "report_ack",
        &ReportAck {
            sequence: 42,
            stored: true,
            next_expected: Some(43),
        },
    ));
    problems.extend(check(
        "report_batch",
        &ReportBatch {
            protocol: PROTOCOL_MAJOR,
            agent_id: "agt_0001".into(),
            reports: vec![report()],
        },
    ));
    problems.extend(check(
        "batch_ack",
        &BatchAck {
            acks: vec![ReportAck {
                sequence: 42,
                stored: false,
                next_expected: None,
            }],
            next_expected: 43,
        },
    ));
    problems.extend(check(
        "sequence_conflict",
        &SequenceConflict {
            error: "sequence 42 is held with other content".into(),
            next_expected: 43,
            chain_hash: Some("9f2b6c1e0d4a7b3c5e8f1a2d4c6b8e0f1a3c5e7b9d1f3a5c7e9b1d3f5a7c9e1b".into()),
        },
    ));
    problems.extend(check(
        "agent_config",
        &AgentConfig {
            protocol: PROTOCOL_MAJOR,
            version: "\"v7\"".into(),
            origin: "site Main Street".into(),
            toml: "heartbeat_interval_secs = 30\n".into(),
        },
    ));
    problems.extend(check(
        "error_body",
        &ErrorBody {
            error: "unknown enrollment token".into(),
            code: None,
        },
    ));
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// Calls `$m!` with every payload type that has a kind (`obs::Payload`).
macro_rules! payload_types {
    ($m:ident) => {
        $m!(
            Inventory,
            EncryptionVolume,
            EncryptionSwap,
            Firewall,
            Updates,
            ScreenLock,
            Malware,
            TimeSync,
            PasswordPolicy,
            Accounts,
            LoginMonitoring,
            DiskSpace,
            Backup,
            BackupDiscovered,
            EhrProbe,
            NetworkBaseline,
            ProbeSummary,
            AuditLog,
            AuditService,
            Mfa,
            UsbStorage,
            AdminAccounts,
            AccountActivity,
            LogForwarding,
            OsRelease,
            RemoteAccess
        )
    };
}

/// One payload per observation kind (and the structs they nest), from `Default`: every field
/// is serialized (unknown values as `null`), so the golden file names every field.
#[test]
fn every_observation_payload_reads_its_golden_file_and_writes_it_back() {
    let mut problems = Vec::new();
    macro_rules! check_all {
        ($($ty:ident),* $(,)?) => {
            $(problems.extend(check(&format!("obs.{}", stringify!($ty)), &obs::$ty::default()));)*
        };
    }
    payload_types!(check_all);
    // The structs payloads nest.
    check_all!(
        InventoryDisk,
        NetworkInterface,
        ListeningPort,
        FirewallProfile,
        TamperEvent,
        LogEvent,
        AccountLogin
    );
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// Every kind in `ALL_KINDS` has a golden payload file above (a new kind needs one).
#[test]
fn every_known_kind_has_a_golden_payload() {
    let files: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut covered = Vec::new();
    macro_rules! kinds {
        ($($ty:ident),* $(,)?) => {
            $(
                if files.contains(&format!("obs.{}.json", stringify!($ty))) {
                    covered.push(<obs::$ty as Payload>::KIND);
                }
            )*
        };
    }
    payload_types!(kinds);
    let missing: Vec<&&str> = obs::ALL_KINDS.iter().filter(|k| !covered.contains(k)).collect();
    assert!(missing.is_empty(), "kinds without a golden payload file: {missing:?}");
}

/// The rule, shown on the message an older agent sends most: a report with only the fields of
/// the first release (no `check`, `complete`, hashes or `dropped`) parses, with the new fields
/// at their defaults.
#[test]
fn an_older_agents_minimal_report_parses() {
    let old = json!({
        "protocol": 1,
        "agent_id": "agt_0001",
        "sequence": 1,
        "created_at": "2026-11-24T10:00:00Z",
        "observations": [{
            "kind": "time_sync", "subject": "host", "observed_at": "2026-11-24T10:00:00Z",
            "status": "ok", "data": {"synchronized": true}
        }]
    });
    let r: Report = serde_json::from_value(old).unwrap();
    assert_eq!((r.check, r.complete, r.hash, r.dropped.len()), (None, false, None, 0));
    let t: obs::TimeSync = r.observations[0].payload().unwrap().unwrap();
    assert!(t.synchronized && t.service.is_none());
}

/// The checks above catch a breaking change: a golden file whose field was renamed fails.
#[test]
fn a_renamed_field_is_caught() {
    let golden = serde_json::to_value(report()).unwrap();
    let mut renamed = golden.clone();
    let seq = renamed.as_object_mut().unwrap().remove("sequence").unwrap();
    renamed["seq"] = seq;
    assert!(serde_json::from_value::<Report>(renamed.clone()).is_err());
    // An optional field renamed on the other side: parses, but the key does not survive.
    let mut renamed = golden;
    let check = renamed.as_object_mut().unwrap().remove("check").unwrap();
    renamed["check_name"] = check;
    let back = serde_json::to_value(serde_json::from_value::<Report>(renamed.clone()).unwrap()).unwrap();
    assert!(keys_survive(&renamed, &back, "report").is_err());
}
