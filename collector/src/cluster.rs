//! Several collectors on one PostgreSQL database (issue 17): the changes one collector commits
//! reach the dashboard's live pages on the others, through PostgreSQL's `LISTEN`/`NOTIFY`.
//!
//! Each collector on PostgreSQL runs one [`Relay`]: a task with a connection of its own (not
//! one of the store's pool) that `LISTEN`s on the database's channel and
//!
//! - sends its own collector's changes, as the evaluator publishes them after their commit,
//!   with `pg_notify` (several at once when they come quickly; each payload under 8000 bytes,
//!   PostgreSQL's limit);
//! - publishes the changes of other collectors into the local [`ChangeStream`] as remote
//!   changes ([`ChangeStream::publish_remote`]), which only the live pages subscribe to: the
//!   alert engine reads the shared database and holds its lease, and must not see a change
//!   twice. Its own notifications come back too and are ignored (the payload names the
//!   sending instance).
//!
//! A payload holds only kinds, ids and statuses: the agent id, when it was seen, the rule ids
//! whose findings changed with their old and new status and severity. Never secrets, evidence
//! or anything an agent observed; probe observations are not relayed at all. A remote
//! [`Change::FindingsChanged`] therefore carries [`FindingChange`]s with those fields only
//! (titles, messages and evidence empty): readers take the rest from the store.
//!
//! The channel is per schema (`rounds_changes`, or `rounds_changes.<schema>` when the search
//! path is not `public`), so installations or test schemas sharing one database do not hear
//! each other. When the connection cannot be made or breaks, the relay logs it, retries with
//! backoff (1 s doubling to 30 s) and logs again when it listens; meanwhile changes are not
//! relayed (pages still notice agents going offline by their own tick, and show the rest at
//! the next change or reload).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rounds_policies::{Severity, Status};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio_postgres::{AsyncMessage, Client};

use crate::store::postgres::tls::{self, MakeRustls, Target};
use tokio_util::sync::CancellationToken;

use crate::ingest::{Change, ChangeStream};
use crate::store::FindingChange;

/// The largest payload sent: PostgreSQL refuses 8000 bytes and more.
pub const MAX_PAYLOAD: usize = 7900;
/// Rule changes per relayed item (a first evaluation changes every rule at once).
const RULES_PER_ITEM: usize = 40;
/// Local changes sent in one round trip at most.
const BATCH: usize = 500;
/// Notifications received and not yet published that are kept; more are dropped (and logged).
const INBOX: usize = 4096;

/// The payload's format version.
const VERSION: u32 = 1;

/// One notification: who sent it and what changed.
#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    v: u32,
    /// The sending instance.
    i: String,
    c: Vec<Item>,
}

/// One relayed change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
enum Item {
    /// [`Change::AgentSeen`]; `t` in milliseconds since the epoch.
    Seen { a: String, t: i64 },
    /// [`Change::FirstReport`].
    First { a: String, t: i64 },
    /// [`Change::FindingsChanged`]: the rules whose findings changed.
    Findings { a: String, t: i64, r: Vec<RuleChange> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RuleChange {
    r: String,
    o: Option<Status>,
    n: Option<Status>,
    s: Severity,
}

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// The items a local change is relayed as (none for probe observations).
fn items(change: &Change) -> Vec<Item> {
    match change {
        Change::AgentSeen { agent_id, at } => vec![Item::Seen {
            a: agent_id.clone(),
            t: millis(*at),
        }],
        Change::FirstReport { agent_id, at } => vec![Item::First {
            a: agent_id.clone(),
            t: millis(*at),
        }],
        Change::FindingsChanged { agent_id, changes } => {
            let t = changes.first().map_or(0, |c| millis(c.at));
            changes
                .chunks(RULES_PER_ITEM)
                .map(|chunk| Item::Findings {
                    a: agent_id.clone(),
                    t,
                    r: chunk
                        .iter()
                        .map(|c| RuleChange {
                            r: c.rule.clone(),
                            o: c.old_status,
                            n: c.new_status,
                            s: c.severity,
                        })
                        .collect(),
                })
                .collect()
        }
        Change::ProbesStored { .. } => Vec::new(),
    }
}

/// The change a relayed item stands for.
fn change(item: Item) -> Change {
    match item {
        Item::Seen { a, t } => Change::AgentSeen {
            agent_id: a,
            at: time(t),
        },
        Item::First { a, t } => Change::FirstReport {
            agent_id: a,
            at: time(t),
        },
        Item::Findings { a, t, r } => Change::FindingsChanged {
            changes: r
                .into_iter()
                .map(|c| FindingChange {
                    agent_id: a.clone(),
                    rule: c.r,
                    at: time(t),
                    old_status: c.o,
                    new_status: c.n,
                    severity: c.s,
                    title: String::new(),
                    citations: Vec::new(),
                    evidence: serde_json::Value::Null,
                    message: String::new(),
                    remediation: None,
                    old_exception: None,
                    exception: None,
                })
                .collect(),
            agent_id: a,
        },
    }
}

/// The payloads that carry `changes` from `instance`, each at most [`MAX_PAYLOAD`] bytes. An
/// agent seen several times is sent once, at its latest time.
fn payloads(instance: &str, changes: &[Change]) -> Vec<String> {
    let mut all: Vec<Item> = Vec::new();
    for c in changes {
        for item in items(c) {
            if let Item::Seen { a, t } = &item
                && let Some(Item::Seen { t: earlier, .. }) =
                    all.iter_mut().find(|i| matches!(i, Item::Seen { a: x, .. } if x == a))
            {
                *earlier = (*earlier).max(*t);
                continue;
            }
            all.push(item);
        }
    }
    let wrap = |c: Vec<Item>| {
        serde_json::to_string(&Payload {
            v: VERSION,
            i: instance.to_string(),
            c,
        })
        .unwrap_or_default()
    };
    let mut out = Vec::new();
    let mut current: Vec<Item> = Vec::new();
    let mut size = wrap(Vec::new()).len();
    for item in all {
        let len = serde_json::to_string(&item).map_or(usize::MAX, |s| s.len() + 1);
        if size.saturating_add(len) > MAX_PAYLOAD && !current.is_empty() {
            out.push(wrap(std::mem::take(&mut current)));
            size = wrap(Vec::new()).len();
        }
        if size.saturating_add(len) > MAX_PAYLOAD {
            tracing::warn!(len, "cluster: a change too large for one notification is not relayed");
            continue;
        }
        size += len;
        current.push(item);
    }
    if !current.is_empty() {
        out.push(wrap(current));
    }
    out
}

/// The channel of the schema `schema` (PostgreSQL's names are at most 63 bytes).
pub fn channel_name(schema: Option<&str>) -> String {
    match schema {
        None | Some("public") => "rounds_changes".to_string(),
        Some(s) => {
            let name = format!("rounds_changes.{s}");
            if name.len() <= 63 {
                return name;
            }
            use sha2::Digest;
            let digest = sha2::Sha256::digest(s.as_bytes());
            format!("rounds_changes.{}", hex::encode(&digest[..12]))
        }
    }
}

/// A running relay: its instance id and how often it has started listening.
#[derive(Debug, Clone)]
pub struct Relay {
    instance: Arc<str>,
    application_name: Arc<str>,
    listening: watch::Receiver<u64>,
}

impl Relay {
    /// Starts the relay between `changes` and the PostgreSQL database of `url` until `cancel`.
    /// Fails only on a URL that does not parse (the settings were validated before).
    pub fn start(url: &str, changes: ChangeStream, cancel: CancellationToken) -> Result<Relay, String> {
        let shown = crate::store::postgres::codec::redact_url(url);
        // The store's TLS mode and CA file (sslmode, sslrootcert) for this connection too.
        let bad = |e: String| format!("database_url `{shown}`: {e}");
        let mut target = Target::parse(url).map_err(bad)?;
        let tls = target.connector().map_err(bad)?;
        let instance: Arc<str> = format!("{:016x}", rand::random::<u64>()).into();
        let application_name: Arc<str> = format!("rounds-collector relay {instance}").into();
        target.config.application_name(&*application_name);
        target.config.connect_timeout(Duration::from_secs(10));
        let (tx, listening) = watch::channel(0u64);
        let task = Task {
            target,
            tls,
            shown,
            instance: Arc::clone(&instance),
            changes,
            listening: tx,
        };
        tokio::spawn(task.run(cancel));
        Ok(Relay {
            instance,
            application_name,
            listening,
        })
    }

    /// This collector's instance id in the payloads.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The `application_name` of the relay's connection (`pg_stat_activity`).
    pub fn application_name(&self) -> &str {
        &self.application_name
    }

    /// How many times the relay has started listening (1 after the first connection, one more
    /// after each reconnection).
    pub fn times_listening(&self) -> u64 {
        *self.listening.borrow()
    }

    /// Waits until the relay has started listening `n` times.
    pub async fn listening(&self, n: u64) {
        let mut rx = self.listening.clone();
        let _ = rx.wait_for(|c| *c >= n).await;
    }
}

struct Task {
    target: Target,
    tls: MakeRustls,
    shown: String,
    instance: Arc<str>,
    changes: ChangeStream,
    listening: watch::Sender<u64>,
}

impl Task {
    async fn run(self, cancel: CancellationToken) {
        let mut delay = Duration::from_secs(1);
        let mut failed = false;
        loop {
            let outcome = tokio::select! {
                _ = cancel.cancelled() => return,
                r = self.session(&cancel, failed) => r,
            };
            match outcome {
                Ok(()) => return,
                Err(Broken::Connect(e)) => {
                    tracing::warn!(
                        database = %self.shown,
                        error = %crate::store::postgres::codec::redact_url(&e),
                        retry_secs = delay.as_secs(),
                        "cluster: cannot listen for other collectors' changes; live pages show only this collector's until it can"
                    );
                }
                Err(Broken::Lost(e)) => {
                    tracing::warn!(
                        database = %self.shown,
                        error = %crate::store::postgres::codec::redact_url(&e),
                        "cluster: the connection listening for other collectors' changes broke; reconnecting"
                    );
                    delay = Duration::from_secs(1);
                }
            }
            failed = true;
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }

    /// One connection: listens, relays both ways until the connection breaks or `cancel`.
    async fn session(&self, cancel: &CancellationToken, again: bool) -> Result<(), Broken> {
        let (client, mut connection) = self
            .target
            .config
            .connect(self.tls.clone())
            .await
            .map_err(|e| Broken::Connect(tls::failure(&e, &self.target).unwrap_or_else(|| e.to_string())))?;
        let (inbox, mut received) = mpsc::channel::<String>(INBOX);
        let shown = self.shown.clone();
        let driver = tokio::spawn(async move {
            let mut dropped = 0u64;
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        if inbox.try_send(n.payload().to_string()).is_err() {
                            dropped += 1;
                            if dropped.is_power_of_two() {
                                tracing::warn!(
                                    dropped,
                                    "cluster: other collectors' changes arrive faster than they are published; some are dropped"
                                );
                            }
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return e.to_string(),
                    None => return format!("the connection to {shown} closed"),
                }
            }
        });
        let result = self.relay(&client, &mut received, cancel, again).await;
        drop(client);
        if matches!(result, Err(Broken::Lost(_))) && driver.is_finished() {
            // The connection's own error says more than "closed".
            if let Ok(error) = driver.await {
                return Err(Broken::Lost(error));
            }
            return result;
        }
        driver.abort();
        result
    }

    async fn relay(
        &self,
        client: &Client,
        received: &mut mpsc::Receiver<String>,
        cancel: &CancellationToken,
        again: bool,
    ) -> Result<(), Broken> {
        let schema: Option<String> = client
            .query_one("SELECT current_schema()::text", &[])
            .await
            .map_err(|e| Broken::Connect(e.to_string()))?
            .get(0);
        let channel = channel_name(schema.as_deref());
        client
            .batch_execute(&format!("LISTEN \"{}\"", channel.replace('"', "\"\"")))
            .await
            .map_err(|e| Broken::Connect(e.to_string()))?;
        let notify = client
            .prepare("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
            .await
            .map_err(|e| Broken::Connect(e.to_string()))?;
        // Local changes from now on; none are kept while there is no connection.
        let mut local = self.changes.subscribe("cluster-relay");
        if again {
            tracing::info!(database = %self.shown, channel, "cluster: listening again for other collectors' changes");
        } else {
            tracing::info!(database = %self.shown, channel, instance = %self.instance, "cluster: listening for other collectors' changes");
        }
        self.listening.send_modify(|n| *n += 1);
        let mut bad = false;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                change = local.recv() => {
                    let Some(first) = change else { return Ok(()) };
                    let mut batch = vec![first];
                    while batch.len() < BATCH {
                        match local.try_recv() {
                            Some(c) => batch.push(c),
                            None => break,
                        }
                    }
                    let payloads = payloads(&self.instance, &batch);
                    if !payloads.is_empty() {
                        client
                            .execute(&notify, &[&channel, &payloads])
                            .await
                            .map_err(|e| Broken::Lost(e.to_string()))?;
                    }
                }
                payload = received.recv() => {
                    let Some(payload) = payload else {
                        return Err(Broken::Lost("the listening connection closed".into()));
                    };
                    match serde_json::from_str::<Payload>(&payload) {
                        Ok(p) if p.v == VERSION => {
                            if p.i != *self.instance {
                                for item in p.c {
                                    self.changes.publish_remote(change(item));
                                }
                            }
                        }
                        _ => {
                            if !bad {
                                tracing::warn!(channel, "cluster: a notification of another format (a collector of another version?) is ignored");
                                bad = true;
                            }
                        }
                    }
                }
            }
        }
    }
}

enum Broken {
    /// Connecting or starting to listen failed.
    Connect(String),
    /// A working connection broke.
    Lost(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule_change(agent: &str, n: usize) -> FindingChange {
        FindingChange {
            agent_id: agent.into(),
            rule: format!("hipaa.rule.number_{n:03}"),
            at: time(1_800_000_000_000),
            old_status: None,
            new_status: Some(Status::Fail),
            severity: Severity::High,
            title: "a title".into(),
            citations: vec!["164.312(a)".into()],
            evidence: serde_json::json!({"user": "someone"}),
            message: "a message naming a machine".into(),
            remediation: Some("fix it".into()),
            old_exception: None,
            exception: None,
        }
    }

    #[test]
    fn payloads_stay_under_the_limit_carry_ids_only_and_come_back_as_the_changes() {
        let agent = "3f2a9c1e-0000-4000-8000-000000000001";
        let changes: Vec<FindingChange> = (0..300).map(|n| rule_change(agent, n)).collect();
        let mut sent = vec![Change::FindingsChanged {
            agent_id: agent.into(),
            changes: changes.clone().into(),
        }];
        for n in 0..200 {
            sent.push(Change::AgentSeen {
                agent_id: format!("agent-{}", n % 50),
                at: time(1_800_000_000_000 + n),
            });
        }
        let out = payloads("inst", &sent);
        assert!(out.len() > 1, "split into several notifications");
        let mut rules = Vec::new();
        let mut seen = Vec::new();
        for p in &out {
            assert!(p.len() <= MAX_PAYLOAD, "{} bytes", p.len());
            assert!(
                !p.contains("someone") && !p.contains("a message") && !p.contains("fix it"),
                "{p}"
            );
            let p: Payload = serde_json::from_str(p).unwrap();
            assert_eq!(p.i, "inst");
            for item in p.c {
                match change(item) {
                    Change::FindingsChanged { agent_id, changes } => {
                        assert_eq!(agent_id, agent);
                        rules.extend(changes.iter().map(|c| (c.rule.clone(), c.new_status, c.severity)));
                    }
                    Change::AgentSeen { agent_id, at } => seen.push((agent_id, at)),
                    other => panic!("{other:?}"),
                }
            }
        }
        let want: Vec<_> = changes
            .iter()
            .map(|c| (c.rule.clone(), c.new_status, c.severity))
            .collect();
        assert_eq!(rules, want, "every rule once, in order");
        assert_eq!(seen.len(), 50, "each agent seen once per batch");
        let last = seen.iter().find(|(a, _)| a == "agent-49").unwrap().1;
        assert_eq!(last, time(1_800_000_000_199), "at its latest time");
    }

    #[test]
    fn channel_names_are_per_schema_and_fit_postgres() {
        assert_eq!(channel_name(None), "rounds_changes");
        assert_eq!(channel_name(Some("public")), "rounds_changes");
        assert_eq!(channel_name(Some("t_0123")), "rounds_changes.t_0123");
        let long = "s".repeat(63);
        let name = channel_name(Some(&long));
        assert!(name.len() <= 63, "{name}");
        assert_ne!(name, channel_name(Some(&"t".repeat(63))));
    }
}
