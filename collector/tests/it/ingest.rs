//! The ingest and evaluation service: concurrency across agents, order within one, the change
//! stream, subjects that disappear, and the agent's clock.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use rounds_collector::admin;
use rounds_collector::ingest::{CLOCK_RULE, Change};
use rounds_collector::store::{ChangeQuery, FindingChange, Role, Scope};
use rounds_policies::Status;
use rounds_protocol::{EnrollResponse, Observation, obs};
use serde_json::{Value, json};

use crate::api::{deliver, enrolled, findings, firewall, inventory, metric, post_json, rule};
use crate::support::{TestApp, body_text};

/// The finding changes of an agent recorded in the second from `from`.
async fn changes_in_second(app: &TestApp, agent_id: &str, from: DateTime<Utc>) -> Vec<FindingChange> {
    let query = ChangeQuery {
        agent_id: Some(agent_id.to_string()),
        practice_id: None,
        from,
        to: from + Duration::seconds(1),
    };
    app.store().finding_changes(&everyone(), &query).await.unwrap()
}

fn everyone() -> Scope {
    Scope {
        role: Role::Admin,
        practice_id: None,
    }
}

/// An agent's findings as (rule -> status, evidence), without times.
async fn judged(app: &TestApp, agent_id: &str) -> BTreeMap<String, (Status, Value)> {
    app.store()
        .findings(&everyone(), agent_id)
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.rule, (f.status, f.evidence)))
        .collect()
}

/// What agent `which` reports in round `round`: the firewall goes on and off in a pattern of
/// its own, and every fourth round leaves the firewall out.
fn round_observations(which: usize, round: u64, at: DateTime<Utc>) -> Vec<Observation> {
    let mut o = vec![inventory(at)];
    if !round.is_multiple_of(4) {
        o.push(firewall((round + which as u64).is_multiple_of(3), at));
    }
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_reports_evaluated_at_once_give_the_findings_of_one_after_the_other() {
    let together = TestApp::new();
    let apart = TestApp::new();
    let mut pairs: Vec<[EnrollResponse; 2]> = Vec::new();
    for app in [&together, &apart] {
        pairs.push([
            enrolled(app, "Smith", "frontdesk").await,
            enrolled(app, "Lakeside", "xray").await,
        ]);
    }
    for round in 1..=30u64 {
        let at = together.state.now();
        let [a, b] = &pairs[0];
        let (oa, ob) = (round_observations(0, round, at), round_observations(1, round, at));
        // Both at once, many times, through the router.
        tokio::join!(
            deliver(&together, a, round, &oa, true),
            deliver(&together, b, round, &ob, true)
        );
        let [a2, b2] = &pairs[1];
        deliver(&apart, a2, round, &oa, true).await;
        deliver(&apart, b2, round, &ob, true).await;
        assert_eq!(
            judged(&together, &a.agent_id).await,
            judged(&apart, &a2.agent_id).await,
            "round {round}, first agent"
        );
        assert_eq!(
            judged(&together, &b.agent_id).await,
            judged(&apart, &b2.agent_id).await,
            "round {round}, second agent"
        );
    }
    let m = body_text(
        together
            .send(crate::api::get("/metrics", Some(crate::support::METRICS_TOKEN)))
            .await,
    )
    .await;
    assert_eq!(metric(&m, "rounds_evaluations_total"), 60);
    assert_eq!(metric(&m, "rounds_evaluations_failed_total"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_of_one_agent_arriving_together_end_on_the_newest_sequence() {
    let app = TestApp::new();
    let tech = admin::apikey_create(app.store(), Role::Technician, None, "t")
        .await
        .unwrap();
    let e = enrolled(&app, "Smith", "frontdesk").await;
    let at = app.state.now();
    // Sequence 8 (the newest) has the firewall on; every older one has it off. Sent at once,
    // newest first, so older reports are stored and evaluated after it.
    let sends = (1..=8u64).rev().map(|seq| {
        let o = vec![inventory(at), firewall(seq == 8, at)];
        let app = &app;
        let e = &e;
        async move { deliver(app, e, seq, &o, true).await }
    });
    futures_join_all(sends).await;
    let (_, body) = findings(&app, &e.agent_id, &tech).await;
    assert_eq!(rule(&body, "hipaa.network.firewall")["status"], "pass", "{body:#}");
}

/// Runs futures concurrently (a small `join_all`, to need no extra crate).
async fn futures_join_all<F: std::future::Future<Output = ()>>(futures: impl Iterator<Item = F>) {
    let set: Vec<_> = futures.map(Box::pin).collect();
    let mut pending = set;
    std::future::poll_fn(move |cx| {
        pending.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if pending.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

#[tokio::test]
async fn changes_are_published_after_commit_and_a_lagging_subscriber_never_blocks_ingest() {
    let app = TestApp::with_settings(|s| s.change_stream_capacity = 4);
    let mut live = app.state.evaluator.changes().subscribe("test-live");
    let mut slow = app.state.evaluator.changes().subscribe("test-slow");
    let e = enrolled(&app, "Smith", "frontdesk").await;
    let t0 = app.state.now();
    deliver(&app, &e, 1, &[inventory(t0), firewall(false, t0)], true).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(live.recv().await.unwrap());
    }
    assert!(
        matches!(&got[0], Change::AgentSeen { agent_id, .. } if *agent_id == e.agent_id),
        "{got:?}"
    );
    assert!(
        matches!(&got[1], Change::FirstReport { agent_id, .. } if *agent_id == e.agent_id),
        "{got:?}"
    );
    let Change::FindingsChanged { agent_id, changes } = &got[2] else {
        panic!("{got:?}")
    };
    assert_eq!(agent_id, &e.agent_id);
    let fw = changes.iter().find(|c| c.rule == "hipaa.network.firewall").unwrap();
    assert_eq!((fw.old_status, fw.new_status), (None, Some(Status::Fail)));
    // What was published is what the store recorded.
    let recorded = changes_in_second(&app, &e.agent_id, t0).await;
    assert_eq!(&recorded[..], &changes[..]);

    // `slow` never reads while many reports are ingested: ingest goes on, and the slow
    // subscriber is told it lagged, in a metric.
    for seq in 2..=20u64 {
        app.advance(60);
        let t = app.state.now();
        deliver(&app, &e, seq, &[inventory(t), firewall(seq % 2 == 0, t)], true).await;
    }
    let next = slow.recv().await.unwrap();
    assert!(
        matches!(next, Change::AgentSeen { .. } | Change::FindingsChanged { .. }),
        "{next:?}"
    );
    let m = body_text(
        app.send(crate::api::get("/metrics", Some(crate::support::METRICS_TOKEN)))
            .await,
    )
    .await;
    assert!(metric(&m, "rounds_change_consumer_lagged_total") > 0, "{m}");
    assert_eq!(metric(&m, "rounds_reports_stored_total"), 20);
}

fn volume(mount_point: &str, volume_type: &str, encrypted: bool, at: DateTime<Utc>) -> Observation {
    Observation::ok(
        mount_point,
        at,
        &obs::EncryptionVolume {
            device: format!("/dev/{}", mount_point.trim_start_matches('/').replace('/', "-")),
            mount_point: mount_point.into(),
            volume_type: volume_type.into(),
            encrypted,
            method: if encrypted { "luks" } else { "none" }.into(),
            state: if encrypted { "on" } else { "off" }.into(),
            device_chain: Vec::new(),
        },
    )
}

/// Sends a report of one check through the router.
async fn deliver_check(
    app: &TestApp,
    e: &EnrollResponse,
    sequence: u64,
    check: &str,
    complete: bool,
    o: &[Observation],
) {
    let mut body = crate::api::report_of(&e.agent_id, sequence, o);
    body["check"] = json!(check);
    body["complete"] = json!(complete);
    let resp = app
        .send(post_json(
            "/api/v1/agent/reports",
            &body,
            Some((&e.agent_id, &e.agent_secret)),
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::OK, "{}", body_text(resp).await);
}

#[tokio::test]
async fn an_unplugged_usb_stick_resolves_its_finding_with_the_change_recorded() {
    let app = TestApp::new();
    let tech = admin::apikey_create(app.store(), Role::Technician, None, "t")
        .await
        .unwrap();
    let e = enrolled(&app, "Smith", "frontdesk").await;
    let t0 = app.state.now();
    deliver(&app, &e, 1, &[inventory(t0)], true).await;
    let root = volume("/", "fixed", true, t0);
    let usb = volume("/media/usb", "removable", false, t0);
    deliver_check(&app, &e, 2, "encryption", true, &[root.clone(), usb]).await;
    let (_, body) = findings(&app, &e.agent_id, &tech).await;
    assert_eq!(
        rule(&body, "hipaa.encryption.removable_media")["status"],
        "fail",
        "{body:#}"
    );
    let at_rest = rule(&body, "hipaa.encryption.at_rest")["status"].clone();

    // A partial report of the check without the stick retires nothing.
    app.advance(60);
    let t1 = app.state.now();
    deliver_check(&app, &e, 3, "encryption", false, &[volume("/", "fixed", true, t1)]).await;
    let (_, body) = findings(&app, &e.agent_id, &tech).await;
    assert_eq!(rule(&body, "hipaa.encryption.removable_media")["status"], "fail");

    // The next complete run without it: the stick is gone, its finding resolves.
    app.advance(60);
    let t2 = app.state.now();
    deliver_check(&app, &e, 4, "encryption", true, &[volume("/", "fixed", true, t2)]).await;
    let (_, body) = findings(&app, &e.agent_id, &tech).await;
    let removable = rule(&body, "hipaa.encryption.removable_media");
    assert_eq!(removable["status"], "not_applicable", "{removable:#}");
    assert_eq!(
        rule(&body, "hipaa.encryption.at_rest")["status"],
        at_rest,
        "the fixed volume stays"
    );
    let subjects: Vec<String> = app
        .store()
        .latest_observations(&everyone(), &e.agent_id, Some("encryption.volume"))
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.observation.subject)
        .collect();
    assert_eq!(subjects, vec!["/".to_string()]);
    let history = changes_in_second(&app, &e.agent_id, t2).await;
    let change = history
        .iter()
        .find(|c| c.rule == "hipaa.encryption.removable_media")
        .unwrap_or_else(|| panic!("{history:#?}"));
    assert_eq!(
        (change.old_status, change.new_status),
        (Some(Status::Fail), Some(Status::NotApplicable))
    );
    assert_eq!(change.at, t2);
}

async fn heartbeat(app: &TestApp, e: &EnrollResponse, sent_at: DateTime<Utc>) {
    let hb = json!({"protocol": 1, "agent_id": e.agent_id, "sent_at": sent_at, "agent_version": "0.1.0", "agent_uptime_secs": 5});
    let resp = app
        .send(post_json(
            "/api/v1/agent/heartbeat",
            &hb,
            Some((&e.agent_id, &e.agent_secret)),
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_report_dated_a_day_ahead_does_not_hide_a_later_correct_one_and_the_clock_finding_comes_and_goes() {
    let app = TestApp::new();
    let tech = admin::apikey_create(app.store(), Role::Technician, None, "t")
        .await
        .unwrap();
    let e = enrolled(&app, "Smith", "frontdesk").await;
    let now = app.state.now();
    let ahead = now + Duration::days(1);
    // The agent's clock is a day ahead: its heartbeat says so, its report is dated tomorrow.
    heartbeat(&app, &e, ahead).await;
    deliver(&app, &e, 1, &[inventory(ahead), firewall(false, ahead)], true).await;
    let (_, body) = findings(&app, &e.agent_id, &tech).await;
    let clock = rule(&body, CLOCK_RULE);
    assert_eq!(clock["status"], "error", "{clock:#}");
    assert!(clock["message"].as_str().unwrap().contains("ahead"), "{clock:#}");
    assert_eq!(clock["citations"], json!(["164.312(b)"]));
    let stored = app
        .store()
        .latest_observations(&everyone(), &e.agent_id, Some("firewall"))
        .await
        .unwrap();
    assert!(stored[0].future_dated, "flagged");
    assert_eq!(stored[0].observation.observed_at, now, "stored with the receive time");
    let m = body_text(
        app.send(crate::api::get("/metrics", Some(crate::support::METRICS_TOKEN)))
            .await,
    )
    .await;
    assert_eq!(metric(&m, "rounds_observations_future_dated_total"), 2);

    // The clock is fixed; the next report has a correct date, earlier than the bad one.
    app.advance(60);
    let later = app.state.now();
    heartbeat(&app, &e, later).await;
    deliver(&app, &e, 2, &[inventory(later), firewall(true, later)], true).await;
    let (_, body) = findings(&app, &e.agent_id, &tech).await;
    assert_eq!(
        rule(&body, "hipaa.network.firewall")["status"],
        "pass",
        "the later report wins"
    );
    assert_eq!(rule(&body, CLOCK_RULE)["status"], "pass", "the clock finding clears");
    let stored = app
        .store()
        .latest_observations(&everyone(), &e.agent_id, Some("firewall"))
        .await
        .unwrap();
    assert_eq!((stored[0].sequence, stored[0].future_dated), (2, false));

    // A clock that goes wrong between reports is caught at the heartbeat alone.
    app.advance(60);
    heartbeat(&app, &e, app.state.now() - Duration::minutes(10)).await;
    let (_, body) = findings(&app, &e.agent_id, &tech).await;
    let clock = rule(&body, CLOCK_RULE);
    assert_eq!(clock["status"], "error");
    assert!(clock["message"].as_str().unwrap().contains("behind"), "{clock:#}");
}

// --- Ingest throughput (core, issue 7): what the faster paths must keep ---

/// A raw agent request with the agent's credentials.
fn raw_report(e: &EnrollResponse, body: Vec<u8>) -> axum::http::Request<axum::body::Body> {
    use base64::Engine;
    let pair = format!("{}:{}", e.agent_id, e.agent_secret);
    axum::http::Request::post("/api/v1/agent/reports")
        .header("content-type", "application/json")
        .header(
            "authorization",
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair)),
        )
        .body(axum::body::Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn bodies_the_version_shortcut_does_not_take_are_answered_as_before() {
    let app = TestApp::new();
    let e = enrolled(&app, "Smith", "frontdesk").await;
    let id = &e.agent_id;
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "not an object",
            b"[1]".to_vec(),
            StatusCode::BAD_REQUEST,
            "missing field `protocol`",
        ),
        (
            "null version",
            format!(r#"{{"protocol": null, "agent_id": "{id}"}}"#).into_bytes(),
            StatusCode::BAD_REQUEST,
            "missing field `protocol`",
        ),
        (
            "version not a number",
            format!(r#"{{"agent_id": "{id}", "protocol": "one"}}"#).into_bytes(),
            StatusCode::BAD_REQUEST,
            "must be a whole number, got \\\"one\\\"",
        ),
        (
            "version given twice: the last one counts, as before",
            format!(r#"{{"protocol": 1, "agent_id": "{id}", "protocol": 2}}"#).into_bytes(),
            StatusCode::BAD_REQUEST,
            "unsupported protocol major version 2",
        ),
        (
            "truncated",
            format!(r#"{{"protocol": 1, "agent_id": "{id}""#).into_bytes(),
            StatusCode::BAD_REQUEST,
            "not valid JSON",
        ),
        (
            "not UTF-8 in a field nobody reads",
            [
                format!(r#"{{"protocol": 1, "agent_id": "{id}", "x": ""#).as_bytes(),
                &[0xff, 0xfe],
                br#""}"#,
            ]
            .concat(),
            StatusCode::BAD_REQUEST,
            "not valid JSON",
        ),
        (
            "version right, content wrong",
            format!(r#"{{"protocol": 1, "agent_id": "{id}"}}"#).into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "does not match the protocol",
        ),
    ];
    for (name, body, status, needle) in cases {
        let resp = app.send(raw_report(&e, body)).await;
        assert_eq!(resp.status(), status, "{name}");
        let text = body_text(resp).await;
        assert!(text.contains(needle), "{name}: {text}");
    }
    assert_eq!(app.store().report_count().await.unwrap(), 0);
}

#[tokio::test]
async fn a_history_row_is_written_when_status_or_error_changes_not_when_nothing_does() {
    let app = TestApp::new();
    let e = enrolled(&app, "Smith", "frontdesk").await;
    let t = app.state.now();
    let failed = |why: Option<&str>| Observation {
        kind: "firewall".into(),
        subject: "host".into(),
        observed_at: t,
        status: rounds_protocol::ObservationStatus::Error,
        data: Value::Null,
        error: why.map(str::to_string),
    };
    let rows = || {
        let conn = rusqlite::Connection::open(app.db_path()).unwrap();
        conn.query_row(
            "SELECT COUNT(*) FROM observations WHERE agent_id = ?1 AND kind = 'firewall'",
            [&e.agent_id],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
    };
    let steps = [
        (failed(Some("ufw not found")), 1, "first"),
        (failed(Some("ufw not found")), 1, "same error"),
        (failed(Some("permission denied")), 2, "other error"),
        (failed(None), 3, "error without a reason"),
        (failed(None), 3, "again without a reason"),
        (firewall(true, t), 4, "ok"),
        (firewall(true, t), 4, "same payload"),
        (firewall(false, t), 5, "other payload"),
    ];
    for (seq, (o, expected, name)) in steps.into_iter().enumerate() {
        deliver(&app, &e, seq as u64 + 1, &[inventory(t), o], true).await;
        assert_eq!(rows(), expected, "{name}");
    }
}

/// The current payloads a report is compared with are read once per report (core, issue 7):
/// a late older report, and a report naming one subject twice, still compare with what the
/// current state holds at each observation, as one read per observation did.
#[tokio::test]
async fn late_reports_and_a_subject_named_twice_compare_with_the_current_state() {
    let app = TestApp::new();
    let e = enrolled(&app, "Smith", "frontdesk").await;
    let t = app.state.now();
    let conn = rusqlite::Connection::open(app.db_path()).unwrap();
    let rows = || {
        conn.query_row(
            "SELECT COUNT(*) FROM observations WHERE agent_id = ?1 AND kind = 'firewall'",
            [&e.agent_id],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
    };
    let current = || {
        conn.query_row(
            "SELECT sequence, data FROM latest_observations WHERE agent_id = ?1 AND kind = 'firewall'",
            [&e.agent_id],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
        )
        .unwrap()
    };
    let payload = |enabled: bool| firewall(enabled, t).data.to_string();
    deliver(&app, &e, 2, &[inventory(t), firewall(true, t)], true).await;
    assert_eq!((rows(), current()), (1, (2, payload(true))));
    // Sequence 1 arrives late with another payload: a history row, the current state stays.
    deliver(&app, &e, 1, &[inventory(t), firewall(false, t)], true).await;
    assert_eq!((rows(), current()), (2, (2, payload(true))), "late older report");
    // The payload of sequence 2 again: confirmed, no history row.
    deliver(&app, &e, 3, &[inventory(t), firewall(true, t)], true).await;
    assert_eq!(
        (rows(), current()),
        (2, (3, payload(true))),
        "same as the current state"
    );
    // One report naming the subject twice: each compares with the one before it.
    deliver(
        &app,
        &e,
        4,
        &[inventory(t), firewall(false, t), firewall(true, t)],
        true,
    )
    .await;
    assert_eq!((rows(), current()), (4, (4, payload(true))), "subject named twice");
    deliver(&app, &e, 5, &[inventory(t), firewall(true, t), firewall(true, t)], true).await;
    assert_eq!((rows(), current()), (4, (5, payload(true))), "same payload named twice");
}

#[tokio::test]
async fn each_agent_first_report_is_announced_once() {
    let app = TestApp::new();
    let mut live = app.state.evaluator.changes().subscribe("test-first");
    let a = enrolled(&app, "Smith", "frontdesk").await;
    let b = enrolled(&app, "Lakeside", "xray").await;
    for seq in 1..=3u64 {
        let t = app.state.now();
        deliver(&app, &a, seq, &[inventory(t), firewall(true, t)], true).await;
        deliver(&app, &b, seq, &[inventory(t), firewall(seq == 2, t)], true).await;
        app.advance(60);
    }
    // A heartbeat of a third agent marks the end of what the reports published.
    let end = enrolled(&app, "Smith", "backoffice").await;
    heartbeat(&app, &end, app.state.now()).await;
    let mut first = Vec::new();
    loop {
        match live.recv().await.unwrap() {
            Change::FirstReport { agent_id, .. } => first.push(agent_id),
            Change::AgentSeen { agent_id, .. } if agent_id == end.agent_id => break,
            _ => {}
        }
    }
    assert_eq!(first, vec![a.agent_id.clone(), b.agent_id.clone()]);
}
