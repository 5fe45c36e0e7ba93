//! `rounds-collector incident list|ack|resolve` and `silence add|list|end`: the same engine service the API calls, over
//! the store in the data dir (a running server's outbox worker delivers what they enqueue).

use std::fmt::Write;
use std::sync::Arc;

use super::silence::describe;
use super::{Engine, IncidentError, IncidentQuery, IncidentState, NoChannels, SilenceError, SilenceRequest};
use crate::store::{Role, Scope, Store};

fn admin() -> Scope {
    Scope {
        role: Role::Admin,
        practice_id: None,
    }
}

/// The engine the CLI uses: system clock, no channels of its own.
pub fn engine(store: Arc<dyn Store>, settings: &crate::config::Settings) -> Engine {
    Engine::new(
        store,
        Arc::new(crate::clock::SystemClock),
        settings.alerting.clone(),
        Arc::new(NoChannels),
    )
}

/// `incident list`: one line per incident, newest first.
pub async fn list(engine: &Engine, states: Vec<IncidentState>) -> Result<String, IncidentError> {
    let rows = engine
        .list(
            &admin(),
            &IncidentQuery {
                states,
                ..IncidentQuery::default()
            },
        )
        .await?;
    let mut out = String::new();
    for i in rows {
        let _ = writeln!(
            out,
            "#{:<5} {:<12} {:<8} {:<15} {}{}{} | {}",
            i.id,
            i.state.as_str(),
            i.severity.as_str(),
            i.source,
            i.title,
            if i.flapping { " (flapping)" } else { "" },
            i.parent_id.map(|p| format!(" (in #{p})")).unwrap_or_default(),
            i.probable_cause
        );
    }
    if out.is_empty() {
        out.push_str("no incidents\n");
    }
    Ok(out)
}

/// `incident ack ID`.
pub async fn ack(engine: &Engine, id: i64, by: &str) -> Result<String, IncidentError> {
    let d = engine.acknowledge(&admin(), id, by).await?;
    Ok(format!(
        "incident #{} acknowledged by {by}: {}\n",
        d.incident.id, d.incident.title
    ))
}

/// `incident resolve ID`.
pub async fn resolve(engine: &Engine, id: i64, by: &str, note: Option<&str>) -> Result<String, IncidentError> {
    let d = engine.resolve_by(&admin(), id, by, note).await?;
    Ok(format!(
        "incident #{} resolved by {by}: {}\n",
        d.incident.id, d.incident.title
    ))
}

// Runtime silences (issue 12).

/// `silence add`.
pub async fn silence_add(engine: &Engine, req: &SilenceRequest, by: &str) -> Result<String, SilenceError> {
    let s = engine.create_silence(&admin(), req, by).await?;
    Ok(format!("created {}\n", describe(&s)))
}

/// `silence list [--all]`: one line per silence, newest first.
pub async fn silence_list(engine: &Engine, all: bool) -> Result<String, SilenceError> {
    let rows = engine.silences(&admin(), all).await?;
    if rows.is_empty() {
        return Ok("no silences\n".into());
    }
    Ok(rows
        .iter()
        .map(|s| {
            let ended = match (&s.ended_at, &s.ended_by) {
                (Some(_), Some(by)) => format!(" [ended early by {by}]"),
                _ => String::new(),
            };
            format!("{}{ended}\n", describe(s))
        })
        .collect())
}

/// `silence end ID`.
pub async fn silence_end(engine: &Engine, id: i64, by: &str) -> Result<String, SilenceError> {
    let s = engine.end_silence(&admin(), id, by).await?;
    Ok(format!("ended {}\n", describe(&s)))
}
