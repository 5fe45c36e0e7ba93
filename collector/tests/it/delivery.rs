//! Reliable delivery through the router: idempotent replay, 409 on other content, batches in
//! one transaction, 429 when saturated, gaps, and the agent's hash chain (issue 11) verified.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{StatusCode, header};
use rounds_collector::admin;
use rounds_collector::api::delivery::IngestGate;
use rounds_collector::delivery::{chain_seed, digest};
use rounds_collector::store::Role;
use rounds_protocol::{BatchAck, DroppedRange, EnrollResponse, Report, ReportAck, SequenceConflict};
use serde_json::Value;

use crate::api::{enrolled, get, inventory, post_json};
use crate::support::{TestApp, body_text};

/// An agent's side of the chain, as its spool builds it.
#[derive(Clone)]
struct Chain {
    agent_id: String,
    prev: String,
    next: u64,
    t0: chrono::DateTime<chrono::Utc>,
}

impl Chain {
    fn new(e: &EnrollResponse) -> Self {
        Chain {
            agent_id: e.agent_id.clone(),
            prev: chain_seed(&e.agent_id),
            next: 1,
            t0: chrono::DateTime::from_timestamp_millis(chrono::Utc::now().timestamp_millis()).unwrap(),
        }
    }

    /// The next report, chained.
    fn next(&mut self, dropped: Vec<DroppedRange>) -> Report {
        let at = self.t0 + chrono::Duration::seconds(self.next as i64);
        let mut r = Report {
            protocol: 1,
            agent_id: self.agent_id.clone(),
            sequence: self.next,
            created_at: at,
            check: Some("inventory".into()),
            complete: true,
            prev_hash: Some(self.prev.clone()),
            hash: None,
            dropped,
            observations: vec![inventory(at)],
        };
        r.hash = Some(digest(&r));
        self.prev = r.hash.clone().unwrap();
        self.next += 1;
        r
    }

    /// `n` chained reports.
    fn take(&mut self, n: usize) -> Vec<Report> {
        (0..n).map(|_| self.next(vec![])).collect()
    }

    /// Skips `n` sequences as if they were produced and never sent (their hashes chain on).
    fn lose(&mut self, n: usize) {
        self.take(n);
    }
}

async fn send(app: &TestApp, e: &EnrollResponse, r: &Report) -> (StatusCode, Value) {
    let resp = app
        .send(post_json(
            "/api/v1/agent/reports",
            &serde_json::to_value(r).unwrap(),
            Some((&e.agent_id, &e.agent_secret)),
        ))
        .await;
    let status = resp.status();
    let text = body_text(resp).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn send_batch(app: &TestApp, e: &EnrollResponse, reports: &[Report]) -> (StatusCode, Value) {
    let body = serde_json::json!({"protocol": 1, "agent_id": e.agent_id, "reports": reports});
    let resp = app
        .send(post_json(
            "/api/v1/agent/reports/batch",
            &body,
            Some((&e.agent_id, &e.agent_secret)),
        ))
        .await;
    let status = resp.status();
    let text = body_text(resp).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn stored_ok(app: &TestApp, e: &EnrollResponse, r: &Report, stored: bool) {
    let (status, body) = send(app, e, r).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ack: ReportAck = serde_json::from_value(body).unwrap();
    assert_eq!((ack.sequence, ack.stored), (r.sequence, stored));
}

/// `GET /api/v1/agents/{id}` as an admin.
async fn detail(app: &TestApp, e: &EnrollResponse) -> Value {
    let key = admin::apikey_create(app.store(), Role::Admin, None, "t").await.unwrap();
    let resp = app
        .send(get(&format!("/api/v1/agents/{}", e.agent_id), Some(&key)))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    serde_json::from_str(&body_text(resp).await).unwrap()
}

fn kinds(detail: &Value) -> Vec<String> {
    let mut k: Vec<String> = detail["delivery"]["integrity"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap().to_string())
        .collect();
    k.sort();
    k
}

#[tokio::test]
async fn a_replayed_report_changes_nothing_and_is_acknowledged_again() {
    let app = TestApp::new();
    let e = enrolled(&app, "P", "frontdesk").await;
    let mut chain = Chain::new(&e);
    let reports = chain.take(3);
    for r in &reports {
        stored_ok(&app, &e, r, true).await;
    }
    for r in &reports {
        stored_ok(&app, &e, r, false).await;
    }
    assert_eq!(app.store().report_count().await.unwrap(), 3);
    let d = detail(&app, &e).await;
    assert_eq!(d["delivery"]["last_sequence"], 3);
    assert_eq!(d["delivery"]["reports_stored"], 3);
    assert_eq!(d["delivery"]["chain_sequence"], 3);
    assert_eq!(d["delivery"]["chain_hash"], reports[2].hash.clone().unwrap().as_str());
    assert!(kinds(&d).is_empty(), "{d}");
    assert_eq!(d["delivery"]["gaps"], serde_json::json!([]));
}

/// Reports 1 to 3 stored; the agent's state then goes back to a backup taken after report 1.
/// Returns the restored chain (after its next report), that next report (another report 2)
/// and reports 2 and 3 as stored.
async fn restored_after_report_1(app: &TestApp, e: &EnrollResponse) -> (Chain, Report, Vec<Report>) {
    let mut chain = Chain::new(e);
    stored_ok(app, e, &chain.next(vec![]), true).await;
    let mut restored = chain.clone();
    let delivered = chain.take(2);
    for r in &delivered {
        stored_ok(app, e, r, true).await;
    }
    restored.t0 += chrono::Duration::hours(1);
    let other = restored.next(vec![]);
    (restored, other, delivered)
}

#[tokio::test]
async fn other_content_at_a_stored_sequence_is_409_with_the_next_expected_and_flagged() {
    let app = TestApp::new();
    let e = enrolled(&app, "P", "frontdesk").await;
    let (_, other, _) = restored_after_report_1(&app, &e).await;
    let (status, body) = send(&app, &e, &other).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let c: SequenceConflict = serde_json::from_value(body).unwrap();
    assert_eq!(c.next_expected, 4);
    assert!(c.error.contains("sequence 2 is already stored"), "{}", c.error);
    assert_eq!(app.store().report_count().await.unwrap(), 3, "nothing stored");
    let d = detail(&app, &e).await;
    assert_eq!(kinds(&d), vec!["rewritten"]);
    assert_eq!(d["delivery"]["reports_stored"], 3);

    // The agent renumbers from 4, still chained to its own (restored) history: a rollback.
    let mut renumbered = other.clone();
    renumbered.sequence = 4;
    renumbered.hash = None;
    renumbered.hash = Some(digest(&renumbered));
    stored_ok(&app, &e, &renumbered, true).await;
    let d = detail(&app, &e).await;
    assert_eq!(kinds(&d), vec!["rewritten", "rollback"], "{d}");
    let rollback = &d["delivery"]["integrity"][0];
    assert!(
        rollback["detail"].as_str().unwrap().contains("from report 1"),
        "{rollback}"
    );
}

#[tokio::test]
async fn an_agent_renumbering_onto_the_chain_head_the_409_gave_is_flagged_once_not_as_a_rollback() {
    let app = TestApp::new();
    let e = enrolled(&app, "P", "frontdesk").await;
    let (restored, other, delivered) = restored_after_report_1(&app, &e).await;
    let (status, body) = send(&app, &e, &other).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let c: SequenceConflict = serde_json::from_value(body).unwrap();
    assert_eq!(
        (c.next_expected, c.error.contains("sequence 2 is already stored")),
        (4, true)
    );
    assert_eq!(
        c.chain_hash.as_deref(),
        delivered[1].hash.as_deref(),
        "the 409 names the hash of report 3, the head the agent renumbers onto"
    );

    // The agent renumbers from 4 onto that head (agent/src/spool.rs `renumber_from`), and
    // goes on chaining: the event is the one `rewritten` of the 409, no rollback, no fork.
    let mut renumbered = other.clone();
    renumbered.sequence = 4;
    renumbered.prev_hash = c.chain_hash.clone();
    renumbered.hash = None;
    renumbered.hash = Some(digest(&renumbered));
    stored_ok(&app, &e, &renumbered, true).await;
    let mut after = Chain {
        prev: renumbered.hash.clone().unwrap(),
        next: 5,
        ..restored
    };
    stored_ok(&app, &e, &after.next(vec![]), true).await;
    let d = detail(&app, &e).await;
    assert_eq!(kinds(&d), vec!["rewritten"], "{d}");
    assert_eq!(d["delivery"]["chain_sequence"], 5);
}

#[tokio::test]
async fn a_batch_is_stored_whole_or_not_at_all_and_acknowledged_after_commit() {
    let app = TestApp::new();
    let e = enrolled(&app, "P", "frontdesk").await;
    let mut chain = Chain::new(&e);
    let first = chain.take(3);
    let (status, body) = send_batch(&app, &e, &first).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ack: BatchAck = serde_json::from_value(body).unwrap();
    assert_eq!(ack.next_expected, 4);
    assert_eq!(
        ack.acks.iter().map(|a| (a.sequence, a.stored)).collect::<Vec<_>>(),
        vec![(1, true), (2, true), (3, true)]
    );

    // A write failing in the middle of a batch rolls the whole batch back: nothing stored,
    // nothing acknowledged.
    let second = chain.take(3);
    let conn = rusqlite::Connection::open(app.db_path()).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER fail_6 BEFORE INSERT ON reports WHEN NEW.sequence = 6 BEGIN SELECT RAISE(ABORT, 'injected'); END;",
    )
    .unwrap();
    let (status, _) = send_batch(&app, &e, &second).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        app.store().report_count().await.unwrap(),
        3,
        "reports 4 and 5 rolled back"
    );
    conn.execute_batch("DROP TRIGGER fail_6;").unwrap();

    // A conflict anywhere refuses the whole batch.
    let mut other = second[0].clone();
    other.sequence = 2;
    other.hash = Some(digest(&other));
    let (status, body) = send_batch(&app, &e, &[other, second[0].clone()]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["next_expected"], 4);
    assert_eq!(app.store().report_count().await.unwrap(), 3);

    // The agent resends what it had: the old ones acknowledged again, the new ones stored.
    let all: Vec<Report> = first.iter().chain(second.iter()).cloned().collect();
    let (status, body) = send_batch(&app, &e, &all).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ack: BatchAck = serde_json::from_value(body).unwrap();
    assert_eq!(
        ack.acks.iter().map(|a| a.stored).collect::<Vec<_>>(),
        vec![false, false, false, true, true, true]
    );
    assert_eq!(ack.next_expected, 7);
    assert_eq!(app.store().report_count().await.unwrap(), 6);
    let d = detail(&app, &e).await;
    assert_eq!(kinds(&d), vec!["rewritten"], "only the conflict: {d}");

    // Limits: empty batches, out-of-order sequences, another agent's report.
    let (status, _) = send_batch(&app, &e, &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let later = chain.take(2);
    let (status, body) = send_batch(&app, &e, &[later[1].clone(), later[0].clone()]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"].as_str().unwrap().contains("sequences must increase"),
        "{body}"
    );
}

#[tokio::test]
async fn a_saturated_collector_answers_429_with_retry_after_and_stores_nothing() {
    let mut app = TestApp::new();
    app.state.ingest_gate = Arc::new(IngestGate::new(1, Duration::from_millis(50)));
    let e = enrolled(&app, "P", "frontdesk").await;
    let mut chain = Chain::new(&e);
    let r = chain.next(vec![]);
    let held = app.state.ingest_gate.try_take(1).expect("the one permit");
    for batch in [false, true] {
        let resp = if batch {
            let body = serde_json::json!({"protocol": 1, "agent_id": e.agent_id, "reports": [r]});
            app.send(post_json(
                "/api/v1/agent/reports/batch",
                &body,
                Some((&e.agent_id, &e.agent_secret)),
            ))
            .await
        } else {
            app.send(post_json(
                "/api/v1/agent/reports",
                &serde_json::to_value(&r).unwrap(),
                Some((&e.agent_id, &e.agent_secret)),
            ))
            .await
        };
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        let after: u64 = resp.headers()[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
        assert!((2..=6).contains(&after), "{after}");
    }
    assert_eq!(app.store().report_count().await.unwrap(), 0);
    drop(held);
    stored_ok(&app, &e, &r, true).await;
}

#[tokio::test]
async fn gaps_show_with_the_agents_explanation_and_close_when_a_late_report_arrives() {
    let app = TestApp::new();
    let e = enrolled(&app, "P", "frontdesk").await;
    let mut chain = Chain::new(&e);
    for r in chain.take(2) {
        stored_ok(&app, &e, &r, true).await;
    }
    // 3 was dropped by the agent (its spool was full) and said so; 4 was never sent.
    chain.lose(1);
    let four = chain.next(vec![]);
    let five = chain.next(vec![DroppedRange {
        first: 3,
        last: 3,
        reason: "spool_full".into(),
    }]);
    stored_ok(&app, &e, &five, true).await;
    let d = detail(&app, &e).await;
    assert_eq!(
        d["delivery"]["gaps"],
        serde_json::json!([
            {"first": 3, "last": 3, "reason": "spool_full"},
            {"first": 4, "last": 4, "reason": null}
        ])
    );
    assert_eq!(kinds(&d), vec!["gap"]);
    assert!(
        d["delivery"]["integrity"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("report 4 is missing"),
        "{d}"
    );
    assert_eq!(d["delivery"]["last_sequence"], 5);
    assert_eq!(d["delivery"]["reports_stored"], 3);

    // 4 arrives late: the gap closes, and it links to the stored 5.
    stored_ok(&app, &e, &four, true).await;
    let d = detail(&app, &e).await;
    assert_eq!(
        d["delivery"]["gaps"],
        serde_json::json!([{"first": 3, "last": 3, "reason": "spool_full"}])
    );
    assert_eq!(kinds(&d), vec!["gap"], "nothing new: {d}");
    assert_eq!(d["delivery"]["reports_stored"], 4);
}

#[tokio::test]
async fn a_forged_report_a_dropped_sequence_and_a_replay_with_other_content_are_each_flagged() {
    let app = TestApp::new();

    // Forged: a report 2 that hashes correctly but does not extend the chain.
    let e = enrolled(&app, "P", "forged").await;
    let mut chain = Chain::new(&e);
    let genuine = chain.take(2);
    stored_ok(&app, &e, &genuine[0], true).await;
    let mut forged = genuine[1].clone();
    forged.prev_hash = Some("f".repeat(64));
    forged.hash = Some(digest(&forged));
    stored_ok(&app, &e, &forged, true).await;
    let d = detail(&app, &e).await;
    assert_eq!(kinds(&d), vec!["fork"], "{d}");
    assert!(
        d["delivery"]["integrity"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("does not extend the chain")
    );

    // Altered after the agent hashed it: the claimed hash is not the content's.
    let e = enrolled(&app, "P", "altered").await;
    let mut chain = Chain::new(&e);
    stored_ok(&app, &e, &chain.next(vec![]), true).await;
    let mut altered = chain.next(vec![]);
    altered.observations.clear();
    stored_ok(&app, &e, &altered, true).await;
    assert_eq!(kinds(&detail(&app, &e).await), vec!["bad_hash"]);

    // A dropped sequence nobody explained: 2 never sent, 3 arrives.
    let e = enrolled(&app, "P", "dropped").await;
    let mut chain = Chain::new(&e);
    stored_ok(&app, &e, &chain.next(vec![]), true).await;
    chain.lose(1);
    stored_ok(&app, &e, &chain.next(vec![]), true).await;
    let d = detail(&app, &e).await;
    assert_eq!(kinds(&d), vec!["gap"]);
    assert_eq!(
        d["delivery"]["gaps"],
        serde_json::json!([{"first": 2, "last": 2, "reason": null}])
    );

    // A replay of an old report with changed content.
    let e = enrolled(&app, "P", "replayed").await;
    let mut chain = Chain::new(&e);
    let old = chain.take(3);
    for r in &old {
        stored_ok(&app, &e, r, true).await;
    }
    let mut replay = old[0].clone();
    replay.observations[0].subject = "another".into();
    replay.hash = Some(digest(&replay));
    let (status, _) = send(&app, &e, &replay).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(kinds(&detail(&app, &e).await), vec!["rewritten"]);

    // The first report of an enrollment must start from its seed.
    let e = enrolled(&app, "P", "reseeded").await;
    let other = enrolled(&app, "P", "someone-else").await;
    let mut wrong = Chain::new(&other);
    let mut r = wrong.next(vec![]);
    r.agent_id = e.agent_id.clone();
    r.hash = Some(digest(&r));
    stored_ok(&app, &e, &r, true).await;
    assert_eq!(kinds(&detail(&app, &e).await), vec!["fork"]);
}

#[tokio::test]
async fn reports_replayed_after_an_outage_link_up_and_are_not_flagged() {
    let app = TestApp::new();
    let e = enrolled(&app, "P", "frontdesk").await;
    let mut chain = Chain::new(&e);
    let sent = chain.take(5);
    for r in &sent {
        stored_ok(&app, &e, r, true).await;
    }
    // The collector went away after storing 3..5 but before the agent saw the answers: the
    // agent resends 3..5 with everything it produced during the outage.
    let during = chain.take(20);
    let resend: Vec<Report> = sent[2..].iter().chain(during.iter()).cloned().collect();
    let (status, body) = send_batch(&app, &e, &resend).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["next_expected"], 26);
    let d = detail(&app, &e).await;
    assert!(kinds(&d).is_empty(), "{d}");
    assert_eq!(d["delivery"]["reports_stored"], 25);
    assert_eq!(d["delivery"]["gaps"], serde_json::json!([]));
    assert_eq!(d["delivery"]["chain_hash"], during[19].hash.clone().unwrap().as_str());
}

#[tokio::test]
async fn heartbeats_report_configuration_and_spool_state_and_announce_the_config_etag() {
    let app = TestApp::new();
    let e = enrolled(&app, "P", "frontdesk").await;
    let hb = serde_json::json!({
        "protocol": 1, "agent_id": e.agent_id, "sent_at": chrono::Utc::now(), "agent_version": "0.1.0",
        "agent_uptime_secs": 5, "config_version": "\"abc\"",
        "config_error": "central configuration (practice P): unknown check `backup`",
        "spool_depth": 12, "spool_error": "No space left on device"
    });
    let resp = app
        .send(post_json(
            "/api/v1/agent/heartbeat",
            &hb,
            Some((&e.agent_id, &e.agent_secret)),
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let ack: Value = serde_json::from_str(&body_text(resp).await).unwrap();
    let d = detail(&app, &e).await;
    let reported = &d["delivery"]["reported"];
    assert_eq!(reported["config_version"], "\"abc\"");
    assert!(
        reported["config_error"]
            .as_str()
            .unwrap()
            .contains("unknown check `backup`")
    );
    assert_eq!(reported["spool_depth"], 12);
    assert_eq!(reported["spool_error"], "No space left on device");
    assert!(ack["config_etag"].as_str().unwrap().starts_with('"'));
}

/// A complete report naming the collector's own check (`collector.chain`) and no subject is
/// refused and retires nothing: an agent cannot remove the collector's verdict on its journal
/// from the current state (the review of core issue 7's retirement; the store's own guard
/// against it is in the store suite).
#[tokio::test]
async fn a_report_naming_the_collectors_check_is_refused_and_does_not_retire_the_journal() {
    let app = TestApp::new();
    let e = enrolled(&app, "P", "frontdesk").await;
    let mut chain = Chain::new(&e);
    for r in chain.take(2) {
        stored_ok(&app, &e, &r, true).await;
    }
    let journal = async || {
        app.store()
            .latest_observations(&crate::support::admin(), &e.agent_id, Some("audit.log"))
            .await
            .unwrap()
            .into_iter()
            .filter(|o| o.observation.subject == "rounds-agent journal")
            .count()
    };
    assert_eq!(journal().await, 1, "the collector keeps the journal's verdict");
    let mut hostile = chain.next(vec![]);
    hostile.check = Some("collector.chain".into());
    hostile.complete = true;
    hostile.prev_hash = None;
    hostile.hash = None;
    hostile.observations.clear();
    let (status, body) = send(&app, &e, &hostile).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("`collector.chain` is reserved"),
        "{body}"
    );
    assert_eq!(
        journal().await,
        1,
        "still there after the agent's complete run of that check"
    );
}

#[tokio::test]
async fn the_journal_feeds_hipaa_audit_log_integrity_pass_while_intact_fail_once_forged() {
    let app = TestApp::new();
    let key = admin::apikey_create(app.store(), Role::Admin, None, "k").await.unwrap();
    let e = enrolled(&app, "P", "frontdesk").await;
    let mut chain = Chain::new(&e);
    for r in chain.take(2) {
        stored_ok(&app, &e, &r, true).await;
    }
    let (_, f) = crate::api::findings(&app, &e.agent_id, &key).await;
    let rule = crate::api::rule(&f, "hipaa.audit.log_integrity");
    assert_eq!(rule["status"], "pass", "{rule}");
    assert!(rule["evidence"].to_string().contains("rounds-agent journal"), "{rule}");

    let mut forged = chain.next(vec![]);
    forged.prev_hash = Some("0".repeat(64));
    forged.hash = Some(digest(&forged));
    stored_ok(&app, &e, &forged, true).await;
    let (_, f) = crate::api::findings(&app, &e.agent_id, &key).await;
    let rule = crate::api::rule(&f, "hipaa.audit.log_integrity");
    assert_eq!(rule["status"], "fail", "{rule}");

    // It does not clear by itself: later good reports keep it failing.
    stored_ok(&app, &e, &chain.next(vec![]), true).await;
    let (_, f) = crate::api::findings(&app, &e.agent_id, &key).await;
    let rule = crate::api::rule(&f, "hipaa.audit.log_integrity");
    assert_eq!(rule["status"], "fail");
    // Until a person acknowledges the chain's tamper events (issue 11): the forged report, and
    // the next one, which does not chain to the forged report stored before it.
    let open: Vec<String> = rule["evidence"]["open_tampers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(open.len(), 2, "{rule:#}");
    let scope = rounds_collector::store::Scope {
        role: Role::Admin,
        practice_id: None,
    };
    for id in &open {
        assert!(id.starts_with("chain-"), "{rule}");
        rounds_collector::tamper::acknowledge(
            &app.state.evaluator,
            &scope,
            "cli",
            &e.agent_id,
            id,
            "Dana",
            "test fork",
        )
        .await
        .unwrap();
    }
    let (_, f) = crate::api::findings(&app, &e.agent_id, &key).await;
    let rule = crate::api::rule(&f, "hipaa.audit.log_integrity");
    assert_eq!(rule["status"], "pass", "{rule:#}");
}
