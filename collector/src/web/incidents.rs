//! `GET /incidents` and `GET /incidents/{id}`: the alert engine's incidents with their probable
//! cause and timeline; technicians and admins acknowledge, resolve and add notes (the same
//! [`crate::alerting::Engine`] calls as the API and the `incident` CLI). Practice managers see
//! their practice's incidents and act on none; another practice's incident answers 404.
//! Each action also goes to the collector's audit log under the user's name.
//!
//! Runtime silences (issue 12, asked by issue 13): the list page shows the silences not over
//! yet, with a form to silence for a period and a button to end one early; an incident's page
//! has the same form filled with what selects that incident. Technicians and admins only,
//! CSRF-checked like the other forms, through [`crate::alerting::Engine::create_silence`].

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::overview::{Seen, role_label};
use super::session::Session;
use super::{WebError, page};
use crate::alerting::{
    Incident, IncidentError, IncidentQuery, IncidentState, SilenceError, SilenceRequest, StoredSilence,
};
use crate::app::AppState;
use crate::store::{Role, Scope};

/// Incidents the list shows at most.
pub const LIST_LIMIT: u32 = 200;

/// One incident's row.
#[derive(Debug)]
pub struct IncidentLine {
    pub id: i64,
    pub title: String,
    pub state: &'static str,
    /// Badge class and icon of the state.
    pub class: &'static str,
    pub icon: &'static str,
    pub severity: &'static str,
    pub practice: String,
    pub site: String,
    pub probable_cause: String,
    pub opened: Seen,
    pub acknowledged_by: Option<String>,
    pub flapping: bool,
}

impl IncidentLine {
    pub fn new(i: &Incident, now: DateTime<Utc>) -> Self {
        let (class, icon) = match i.state {
            IncidentState::Open => ("fail", "✖"),
            IncidentState::Acknowledged => ("warn", "▲"),
            IncidentState::Resolved => ("pass", "✔"),
        };
        IncidentLine {
            id: i.id,
            title: i.title.clone(),
            state: i.state.as_str(),
            class,
            icon,
            severity: i.severity.as_str(),
            practice: i.practice.clone().unwrap_or_else(|| i.practices_affected.join(", ")),
            site: i.site.clone().unwrap_or_default(),
            probable_cause: i.probable_cause.clone(),
            opened: Seen::new(i.opened_at, now),
            acknowledged_by: i.acknowledged_by.clone(),
            flapping: i.flapping,
        }
    }
}

/// Open and acknowledged top-level incidents, for the overview.
pub async fn active(
    state: &AppState,
    scope: &Scope,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<IncidentLine>, WebError> {
    let query = IncidentQuery {
        states: vec![IncidentState::Open, IncidentState::Acknowledged],
        source: None,
        top_level_only: true,
        limit: Some(limit),
    };
    Ok(state
        .alerts
        .list(scope, &query)
        .await?
        .iter()
        .map(|i| IncidentLine::new(i, now))
        .collect())
}

/// The incidents page.
#[derive(Template)]
#[template(path = "incidents.html")]
pub struct IncidentsPage {
    pub username: String,
    pub role: &'static str,
    pub csrf: String,
    pub is_admin: bool,
    pub filter: String,
    pub incidents: Vec<IncidentLine>,
    /// Technicians and admins: the silences and their form.
    pub can_act: bool,
    pub silences: Vec<SilenceLine>,
    pub notice: Option<(bool, String)>,
    /// What the silence form shows (what was typed, after an error).
    pub form: SilenceForm,
    pub sources: &'static [&'static str],
}

/// A runtime silence not over yet.
#[derive(Debug)]
pub struct SilenceLine {
    pub id: i64,
    /// `practice=Smith site=main`.
    pub selects: String,
    pub from: Seen,
    pub until: Seen,
    pub active: bool,
    pub reason: String,
    pub created_by: String,
}

impl SilenceLine {
    pub fn new(s: &StoredSilence, now: DateTime<Utc>) -> Self {
        let selects = [
            ("practice", &s.practice),
            ("site", &s.site),
            ("source", &s.source),
            ("subject", &s.subject),
        ]
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect::<Vec<_>>()
        .join(" ");
        SilenceLine {
            id: s.id,
            selects,
            from: Seen::new(s.starts_at, now),
            until: Seen::new(s.effective_end(), now),
            active: s.active(now),
            reason: s.reason.clone(),
            created_by: s.created_by.clone(),
        }
    }
}

/// The "silence for a period" form, as posted.
#[derive(Debug, Default, Deserialize)]
pub struct SilenceForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub practice: String,
    #[serde(default)]
    pub site: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub subject: String,
    /// Such as `2h`.
    #[serde(default)]
    pub duration: String,
    #[serde(default)]
    pub reason: String,
    /// The incident whose page the form was on: answered with that page.
    #[serde(default)]
    pub incident: String,
}

async fn list_page(
    state: &AppState,
    session: &Session,
    filter: String,
    status: StatusCode,
    notice: Option<(bool, String)>,
    form: SilenceForm,
) -> Result<Response, WebError> {
    let now = state.now();
    let states = match filter.as_str() {
        "" | "active" => vec![IncidentState::Open, IncidentState::Acknowledged],
        "all" => Vec::new(),
        s => vec![IncidentState::parse(s).ok_or(WebError::NotFound)?],
    };
    let query = IncidentQuery {
        states,
        source: None,
        top_level_only: false,
        limit: Some(LIST_LIMIT),
    };
    let scope = session.scope();
    let incidents = state.alerts.list(&scope, &query).await?;
    let can_act = session.user.role != Role::PracticeManager;
    let silences = if can_act {
        state.alerts.silences(&scope, false).await.map_err(silence_internal)?
    } else {
        Vec::new()
    };
    let html = IncidentsPage {
        username: session.user.username.clone(),
        role: role_label(session.user.role),
        csrf: session.user.csrf_token.clone(),
        is_admin: session.user.role == Role::Admin,
        filter: if filter.is_empty() { "active".into() } else { filter },
        incidents: incidents.iter().map(|i| IncidentLine::new(i, now)).collect(),
        can_act,
        silences: silences.iter().map(|s| SilenceLine::new(s, now)).collect(),
        notice,
        form,
        sources: crate::alerting::silence::SOURCES,
    }
    .render()?;
    Ok(page(status, html))
}

fn silence_internal(e: SilenceError) -> WebError {
    match e {
        SilenceError::Store(e) => e.into(),
        SilenceError::Forbidden => WebError::Forbidden,
        SilenceError::NotFound(_) => WebError::NotFound,
        other => WebError::Internal(other.to_string()),
    }
}

/// `POST /incidents/silences`: silence for a period what the form selects.
pub async fn create_silence(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<SilenceForm>,
) -> Result<Response, WebError> {
    session.check_csrf(&form.csrf)?;
    if session.user.role == Role::PracticeManager {
        return Err(WebError::Forbidden);
    }
    let opt = |v: &str| Some(v.to_string());
    let req = SilenceRequest {
        practice: opt(&form.practice),
        site: opt(&form.site),
        source: opt(&form.source),
        subject: opt(&form.subject),
        start: None,
        end: None,
        duration: opt(&form.duration),
        reason: opt(&form.reason),
        by: None,
    };
    let actor = session.user.username.clone();
    let incident = form.incident.trim().parse::<i64>().ok();
    let done = state
        .alerts
        .create_silence(&session.scope(), &req, &format!("web:{actor}"))
        .await;
    let (status, notice, form) = match done {
        Ok(s) => (
            StatusCode::OK,
            (
                false,
                format!(
                    "Silence #{} created until {}.",
                    s.id,
                    s.ends_at.format("%Y-%m-%d %H:%M UTC")
                ),
            ),
            SilenceForm::default(),
        ),
        Err(SilenceError::Invalid(problems)) => (StatusCode::BAD_REQUEST, (true, problems.join("; ")), form),
        Err(e) => return Err(silence_internal(e)),
    };
    match incident {
        Some(id) => detail_page(&state, &session, id, status, Some(notice)).await,
        None => list_page(&state, &session, String::new(), status, Some(notice), form).await,
    }
}

/// `POST /incidents/silences/{id}/end`: end a silence early.
pub async fn end_silence(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, WebError> {
    session.check_csrf(&form.csrf)?;
    if session.user.role == Role::PracticeManager {
        return Err(WebError::Forbidden);
    }
    let id = parse_id(&id)?;
    let actor = session.user.username.clone();
    let (status, notice) = match state
        .alerts
        .end_silence(&session.scope(), id, &format!("web:{actor}"))
        .await
    {
        Ok(s) => (StatusCode::OK, (false, format!("Silence #{} ended.", s.id))),
        Err(e @ SilenceError::Over(_)) => (StatusCode::BAD_REQUEST, (true, e.to_string())),
        Err(e) => return Err(silence_internal(e)),
    };
    list_page(
        &state,
        &session,
        String::new(),
        status,
        Some(notice),
        SilenceForm::default(),
    )
    .await
}

/// `?state=` of the list.
#[derive(Debug, Default, Deserialize)]
pub struct ListFilter {
    #[serde(default)]
    pub state: String,
}

/// `GET /incidents[?state=open|acknowledged|resolved|all]`: active ones by default.
pub async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(f): Query<ListFilter>,
) -> Result<Response, WebError> {
    list_page(&state, &session, f.state, StatusCode::OK, None, SilenceForm::default()).await
}

/// One entry of the timeline.
#[derive(Debug)]
pub struct EventLine {
    pub at: Seen,
    pub kind: String,
    pub actor: String,
    pub message: String,
}

/// One incident's page.
#[derive(Template)]
#[template(path = "incident.html")]
pub struct IncidentPage {
    pub username: String,
    pub role: &'static str,
    pub csrf: String,
    pub is_admin: bool,
    pub can_act: bool,
    pub incident: IncidentLine,
    pub resolved: bool,
    pub agent_id: Option<String>,
    pub practice_id: Option<i64>,
    pub timeline: Vec<EventLine>,
    pub children: Vec<IncidentLine>,
    pub notifications: Vec<String>,
    pub notice: Option<(bool, String)>,
    /// The silence form's matchers for this incident: its practice, site and source.
    pub silence_practice: String,
    pub silence_site: String,
    pub silence_source: String,
}

async fn detail_page(
    state: &AppState,
    session: &Session,
    id: i64,
    status: StatusCode,
    notice: Option<(bool, String)>,
) -> Result<Response, WebError> {
    let now = state.now();
    let d = state.alerts.detail(&session.scope(), id).await?;
    let html = IncidentPage {
        username: session.user.username.clone(),
        role: role_label(session.user.role),
        csrf: session.user.csrf_token.clone(),
        is_admin: session.user.role == Role::Admin,
        can_act: session.user.role != Role::PracticeManager,
        resolved: d.incident.state == IncidentState::Resolved,
        agent_id: d.incident.agent_id.clone(),
        practice_id: d.incident.practice_id,
        incident: IncidentLine::new(&d.incident, now),
        timeline: d
            .timeline
            .iter()
            .map(|e| EventLine {
                at: Seen::new(e.at, now),
                kind: e.kind.clone(),
                actor: e.actor.clone(),
                message: e.message.clone(),
            })
            .collect(),
        children: d.children.iter().map(|c| IncidentLine::new(c, now)).collect(),
        notifications: d
            .notifications
            .iter()
            .map(|n| {
                format!(
                    "{} via {}: {:?}, {} attempt(s){}",
                    n.kind.as_str(),
                    n.channel,
                    n.status,
                    n.attempts,
                    n.last_error
                        .as_deref()
                        .map(|e| format!(", last error: {e}"))
                        .unwrap_or_default()
                )
            })
            .collect(),
        notice,
        silence_practice: d.incident.practice.clone().unwrap_or_default(),
        silence_site: d.incident.site.clone().unwrap_or_default(),
        silence_source: d.incident.source.clone(),
    }
    .render()?;
    Ok(page(status, html))
}

fn parse_id(id: &str) -> Result<i64, WebError> {
    id.parse().map_err(|_| WebError::NotFound)
}

/// `GET /incidents/{id}`.
pub async fn detail(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    detail_page(&state, &session, parse_id(&id)?, StatusCode::OK, None).await
}

/// The form of acknowledge, resolve and note.
#[derive(Debug, Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub note: String,
}

/// The three actions.
#[derive(Debug, Clone, Copy)]
enum Action {
    Acknowledge,
    Resolve,
    Note,
}

async fn act(
    state: AppState,
    session: Session,
    id: String,
    form: ActionForm,
    action: Action,
) -> Result<Response, WebError> {
    session.check_csrf(&form.csrf)?;
    if session.user.role == Role::PracticeManager {
        return Err(WebError::Forbidden);
    }
    let id = parse_id(&id)?;
    let scope = session.scope();
    let actor = session.user.username.clone();
    let note = Some(form.note.trim()).filter(|n| !n.is_empty());
    let done = match action {
        Action::Acknowledge => state.alerts.acknowledge(&scope, id, &actor).await,
        Action::Resolve => state.alerts.resolve_by(&scope, id, &actor, note).await,
        Action::Note => state.alerts.note(&scope, id, &actor, note.unwrap_or("")).await,
    };
    let (what, verb) = match action {
        Action::Acknowledge => ("incident.acknowledge", "acknowledged"),
        Action::Resolve => ("incident.resolve", "resolved"),
        Action::Note => ("incident.note", "noted"),
    };
    match done {
        Ok(_) => {
            state
                .store
                .audit(&format!("web:{actor}"), what, &format!("incident #{id}"), state.now())
                .await?;
            detail_page(
                &state,
                &session,
                id,
                StatusCode::OK,
                Some((false, format!("Incident {verb}."))),
            )
            .await
        }
        Err(IncidentError::Store(e)) => Err(e.into()),
        Err(e) => {
            detail_page(
                &state,
                &session,
                id,
                StatusCode::BAD_REQUEST,
                Some((true, e.to_string())),
            )
            .await
        }
    }
}

/// `POST /incidents/{id}/acknowledge`.
pub async fn acknowledge(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, WebError> {
    act(state, session, id, form, Action::Acknowledge).await
}

/// `POST /incidents/{id}/resolve`.
pub async fn resolve(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, WebError> {
    act(state, session, id, form, Action::Resolve).await
}

/// `POST /incidents/{id}/notes`.
pub async fn note(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, WebError> {
    act(state, session, id, form, Action::Note).await
}
