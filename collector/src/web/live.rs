//! `GET /events`: live updates as Server-Sent Events, and `GET /static/app.js`, the one
//! script the dashboard loads (the CSP allows scripts from the collector only).
//!
//! Each stream is fed by the [`Evaluator`](crate::ingest::Evaluator)'s change stream (an agent
//! was seen, its findings changed) and by a tick on the collector's [`Clock`](crate::clock::Clock)
//! every [`TICK`], which notices agents whose last heartbeat is now older than the offline
//! window. With several collectors on one PostgreSQL database, the changes the others
//! committed arrive too ([`crate::cluster`]), so a page follows reports whichever collector
//! received them. A stream only ever knows the agents of its user's scope: it starts from
//! `store.agents(scope)` and asks the store, with the same scope, about any agent a change
//! names that it does not know yet, so a practice manager's stream never carries another
//! practice's agents.
//!
//! Events (JSON data, only ids, counts and words the page already shows):
//! - `agent`: `{agent_id, practice_id, online, practice_online, practice_total, practice_text, practice_class,
//!   practice_icon, fleet_online, fleet_offline}` (the fleet counts: every agent the stream knows, for the
//!   overview's total line);
//! - `findings`: `{agent_id, practice_id, text, class}`, the agent's new findings summary;
//! - `domain`: `{practice_id, domain, class, icon, text}`, the practice's status in a domain its
//!   findings just changed in (an EHR going down turns the practice's EHR cell red).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::Stream;

use super::WebError;
use super::domains::{Domain, Tally, agents_status};
use super::overview::FindingsSummary;
use super::session::Session;
use crate::app::AppState;
use crate::ingest::{Change, Subscriber};
use crate::store::{AgentRow, Scope};

/// How often a stream looks for agents that went offline.
pub const TICK: Duration = Duration::from_secs(1);

/// The dashboard's script: local times, live updates.
pub const APP_JS: &str = include_str!("../../static/app.js");

/// `GET /static/app.js`.
pub async fn app_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        APP_JS,
    )
        .into_response()
}

/// What a stream knows of one agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Known {
    practice_id: i64,
    online: bool,
}

/// One user's live stream.
struct Live {
    state: AppState,
    scope: Scope,
    changes: Subscriber,
    tick: tokio::time::Interval,
    known: HashMap<String, Known>,
    queue: VecDeque<Event>,
}

impl Live {
    fn remember(&mut self, a: &AgentRow) -> Known {
        let k = Known {
            practice_id: a.practice_id,
            online: self.state.is_online(a.last_seen_at),
        };
        self.known.insert(a.agent_id.clone(), k);
        k
    }

    /// The `agent` event of an agent whose online state is `k`, with its practice's counts.
    fn agent_event(&self, agent_id: &str, k: Known) -> Event {
        let (online, total) = self
            .known
            .values()
            .filter(|o| o.practice_id == k.practice_id)
            .fold((0, 0), |(on, all), o| (on + usize::from(o.online), all + 1));
        let status = agents_status(online, total, None);
        let fleet_online = self.known.values().filter(|o| o.online).count();
        let data = serde_json::json!({
            "agent_id": agent_id,
            "practice_id": k.practice_id,
            "online": k.online,
            "practice_online": online,
            "practice_total": total,
            "practice_text": status.text,
            "practice_class": status.level.class(),
            "practice_icon": status.level.icon(),
            "fleet_online": fleet_online,
            "fleet_offline": self.known.len() - fleet_online,
        });
        Event::default().event("agent").data(data.to_string())
    }

    /// Compares every visible agent's online state with what the stream knew.
    async fn tick(&mut self) {
        let Ok(agents) = self.state.store.agents(&self.scope).await else {
            return;
        };
        let mut changed = Vec::new();
        for a in &agents {
            let before = self.known.get(&a.agent_id).copied();
            let now = self.remember(a);
            if before.is_some_and(|b| b.online != now.online) {
                changed.push((a.agent_id.clone(), now));
            }
        }
        for (id, k) in changed {
            let e = self.agent_event(&id, k);
            self.queue.push_back(e);
        }
    }

    /// The agent named by a change, if this stream's user may see it.
    async fn visible(&mut self, agent_id: &str) -> Option<AgentRow> {
        self.state.store.agent(&self.scope, agent_id).await.ok()
    }

    async fn change(&mut self, change: Change) {
        match change {
            Change::AgentSeen { agent_id, .. } => {
                let before = self.known.get(&agent_id).copied();
                if before.is_some_and(|b| b.online) {
                    return;
                }
                if let Some(a) = self.visible(&agent_id).await {
                    let k = self.remember(&a);
                    if before.is_none_or(|b| b.online != k.online) {
                        let e = self.agent_event(&agent_id, k);
                        self.queue.push_back(e);
                    }
                }
            }
            Change::FindingsChanged { agent_id, changes } => {
                if let Some(a) = self.visible(&agent_id).await {
                    self.remember(&a);
                    let s = FindingsSummary::new(&a.findings);
                    let data = serde_json::json!({
                        "agent_id": agent_id,
                        "practice_id": a.practice_id,
                        "text": s.text,
                        "class": s.class,
                    });
                    self.queue
                        .push_back(Event::default().event("findings").data(data.to_string()));
                    let domains: std::collections::BTreeSet<Domain> =
                        changes.iter().map(|c| Domain::of_rule(&c.rule)).collect();
                    self.domain_events(a.practice_id, &domains).await;
                }
            }
            Change::FirstReport { .. } | Change::ProbesStored { .. } => {}
        }
    }

    /// `domain` events: the practice's status in each domain its findings just changed in,
    /// from the current findings of the practice's machines this stream knows.
    async fn domain_events(&mut self, practice_id: i64, domains: &std::collections::BTreeSet<Domain>) {
        let ids: Vec<String> = self
            .known
            .iter()
            .filter(|(_, k)| k.practice_id == practice_id)
            .map(|(id, _)| id.clone())
            .collect();
        let mut tallies: HashMap<Domain, Tally> = HashMap::new();
        for id in ids {
            let Ok(findings) = self.state.store.findings(&self.scope, &id).await else {
                continue;
            };
            for f in findings {
                let d = Domain::of_rule(&f.rule);
                if domains.contains(&d) {
                    tallies
                        .entry(d)
                        .or_default()
                        .add(f.status, f.exception.is_some(), f.status_since);
                }
            }
        }
        for d in domains {
            let s = tallies.get(d).copied().unwrap_or_default().status(*d);
            let data = serde_json::json!({
                "practice_id": practice_id,
                "domain": d.key(),
                "class": s.level.class(),
                "icon": s.level.icon(),
                "text": s.text,
            });
            self.queue
                .push_back(Event::default().event("domain").data(data.to_string()));
        }
    }

    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Some(e);
            }
            tokio::select! {
                change = self.changes.recv() => match change {
                    Some(c) => self.change(c).await,
                    None => return None,
                },
                _ = self.tick.tick() => self.tick().await,
            }
        }
    }
}

/// `GET /events`: the live stream of what the user may see.
pub async fn events(
    State(state): State<AppState>,
    session: Session,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, WebError> {
    let scope = session.scope();
    let changes = state.evaluator.changes().subscribe_with_remote("dashboard");
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut live = Live {
        state: state.clone(),
        scope,
        changes,
        tick,
        known: HashMap::new(),
        queue: VecDeque::new(),
    };
    for a in state.store.agents(&live.scope).await? {
        live.remember(&a);
    }
    // The first event says the stream is up (the page shows "live").
    live.queue
        .push_back(Event::default().event("hello").data(r#"{"live":true}"#));
    let stream = futures_util::stream::unfold(live, |mut live| async move {
        let e = live.next().await?;
        Some((Ok(e), live))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
