//! Day-to-day actions from the dashboard, each the same code as its CLI command
//! ([`crate::admin`]): an enrollment token for a site with the install command to copy, a
//! practice's or site's policy settings (validated as `policy set` validates them), users
//! (admins only), and the collector's audit log (admins only). Every action checks the
//! session's CSRF token before anything else and is written to the audit log under the
//! user's name. Practice managers read only: their forms are refused with 403.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;

use super::overview::{Seen, role_label};
use super::practice::{self, Notice};
use super::session::Session;
use super::{WebError, page};
use crate::admin::{self, AdminError, OverridesFile, PolicyChange};
use crate::app::AppState;
use crate::store::{AuditEntry, Role, UserSummary};

/// Audit-log entries the admin page shows.
pub const AUDIT_PAGE_LIMIT: u32 = 500;

/// Refuses anyone who may not change things (practice managers).
fn may_act(session: &Session) -> Result<(), WebError> {
    match session.user.role {
        Role::Admin | Role::Technician => Ok(()),
        Role::PracticeManager => Err(WebError::Forbidden),
    }
}

/// Refuses anyone but an admin.
fn admin_only(session: &Session) -> Result<(), WebError> {
    match session.user.role {
        Role::Admin => Ok(()),
        Role::Technician | Role::PracticeManager => Err(WebError::Forbidden),
    }
}

/// The actor named in the audit log for a dashboard user.
fn actor(session: &Session) -> String {
    format!("web:{}", session.user.username)
}

/// A refused dashboard action: a usage error is shown on the page (400); anything else is an
/// internal error.
fn refused(e: AdminError) -> Result<(StatusCode, Notice), WebError> {
    if !e.is_usage() {
        return Err(WebError::Internal(e.to_string()));
    }
    Ok((
        StatusCode::BAD_REQUEST,
        Notice {
            text: e.to_string(),
            command: None,
            error: true,
        },
    ))
}

/// The practice's name, when the user sees it.
async fn practice_name(state: &AppState, session: &Session, practice_id: &str) -> Result<(i64, String), WebError> {
    let id: i64 = practice_id.parse().map_err(|_| WebError::NotFound)?;
    let p = state
        .store
        .practices(&session.scope())
        .await?
        .into_iter()
        .find(|p| p.id == id)
        .ok_or(WebError::NotFound)?;
    Ok((id, p.name))
}

async fn practice_with(
    state: &AppState,
    session: &Session,
    id: i64,
    status: StatusCode,
    notice: Notice,
) -> Result<Response, WebError> {
    let html = practice::build(state, session, id, Some(notice)).await?.render()?;
    Ok(page(status, html))
}

/// The enrollment form.
#[derive(Debug, Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub site: String,
    #[serde(default)]
    pub hours: Option<u64>,
}

/// The command to run on the machine.
pub fn install_command(host: &str, token: &str) -> String {
    format!(
        "rounds-agent enroll --collector https://{host} --token {token} --ca ca.pem\n# ca.pem: the collector's CA certificate (ca.pem in its data dir)"
    )
}

/// `POST /practices/{id}/tokens`: a one-time enrollment token for a site, shown once with the
/// install command.
pub async fn create_token(
    State(state): State<AppState>,
    session: Session,
    Path(practice_id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Result<Response, WebError> {
    session.check_csrf(&form.csrf)?;
    may_act(&session)?;
    let (id, practice) = practice_name(&state, &session, &practice_id).await?;
    let hours = form.hours.unwrap_or(24).clamp(1, 720);
    let created = admin::token_create_as(
        state.store.as_ref(),
        &actor(&session),
        state.now(),
        &practice,
        &form.site,
        std::time::Duration::from_secs(hours * 3600),
    )
    .await;
    let (status, notice) = match created {
        Ok(token) => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("COLLECTOR:8443");
            (
                StatusCode::OK,
                Notice {
                    text: format!(
                        "Enrollment token for {practice} / {} created, valid for {hours} h and one machine. Copy it now: it is not shown again.",
                        form.site.trim()
                    ),
                    command: Some(install_command(host, &token)),
                    error: false,
                },
            )
        }
        Err(e) => refused(e)?,
    };
    practice_with(&state, &session, id, status, notice).await
}

/// The policy form.
#[derive(Debug, Deserialize)]
pub struct PolicyForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub site: String,
    #[serde(default)]
    pub profile: String,
    #[serde(default)]
    pub overrides: String,
}

/// `POST /practices/{id}/policy`: replaces the practice's (or a site's) profile and
/// overrides, accepted risks included, after the same validation as `policy set`.
pub async fn set_policy(
    State(state): State<AppState>,
    session: Session,
    Path(practice_id): Path<String>,
    Form(form): Form<PolicyForm>,
) -> Result<Response, WebError> {
    session.check_csrf(&form.csrf)?;
    may_act(&session)?;
    let (id, practice) = practice_name(&state, &session, &practice_id).await?;
    let site = Some(form.site.trim().to_string()).filter(|s| !s.is_empty());
    let profile = form.profile.trim().to_string();
    let overrides = form.overrides.replace("\r\n", "\n");
    let at_site = site.is_some();
    let change = PolicyChange {
        practice: practice.clone(),
        site: site.clone(),
        profile: (!at_site && !profile.is_empty()).then(|| profile.clone()),
        clear_profile: !at_site && profile.is_empty(),
        overrides: (!overrides.trim().is_empty()).then(|| OverridesFile {
            name: format!("dashboard overrides for {}", site.as_deref().unwrap_or(&practice)),
            text: overrides.clone(),
        }),
        clear_overrides: overrides.trim().is_empty(),
    };
    if at_site && !profile.is_empty() {
        let notice = Notice {
            text: "a profile is set per practice: leave the site empty to set it".into(),
            command: None,
            error: true,
        };
        return practice_with(&state, &session, id, StatusCode::BAD_REQUEST, notice).await;
    }
    let pack = rounds_policies::Pack::builtin().map_err(|e| WebError::Internal(e.to_string()))?;
    let outcome = admin::policy_set_as(state.store.as_ref(), &pack, &actor(&session), state.now(), change).await;
    let (status, notice) = match outcome {
        Ok(_) => (
            StatusCode::OK,
            Notice {
                text: format!(
                    "Policy settings of {} saved; machines are evaluated with them from their next report.",
                    site.as_deref()
                        .map_or(practice.clone(), |s| format!("{practice} / {s}"))
                ),
                command: None,
                error: false,
            },
        ),
        Err(e) => refused(e)?,
    };
    practice_with(&state, &session, id, status, notice).await
}

/// The users page (admins only).
#[derive(Template)]
#[template(path = "users.html")]
pub struct UsersPage {
    pub username: String,
    pub role: &'static str,
    pub csrf: String,
    pub is_admin: bool,
    pub users: Vec<UserLine>,
    pub practices: Vec<String>,
    pub notice: Option<Notice>,
}

/// One user's row.
#[derive(Debug)]
pub struct UserLine {
    pub username: String,
    pub role: &'static str,
    pub practice: String,
    pub created: Seen,
}

async fn users_with(
    state: &AppState,
    session: &Session,
    status: StatusCode,
    notice: Option<Notice>,
) -> Result<Response, WebError> {
    let now = state.now();
    let users: Vec<UserSummary> = state.store.users().await?;
    let html = UsersPage {
        username: session.user.username.clone(),
        role: role_label(session.user.role),
        csrf: session.user.csrf_token.clone(),
        is_admin: true,
        users: users
            .into_iter()
            .map(|u| UserLine {
                username: u.username,
                role: role_label(u.role),
                practice: u.practice.unwrap_or_default(),
                created: Seen::new(u.created_at, now),
            })
            .collect(),
        practices: state
            .store
            .practices(&session.scope())
            .await?
            .into_iter()
            .map(|p| p.name)
            .collect(),
        notice,
    }
    .render()?;
    Ok(page(status, html))
}

/// `GET /admin/users`.
pub async fn users_page(State(state): State<AppState>, session: Session) -> Result<Response, WebError> {
    admin_only(&session)?;
    users_with(&state, &session, StatusCode::OK, None).await
}

/// The new-user form.
#[derive(Debug, Deserialize)]
pub struct UserForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub practice: String,
}

/// `POST /admin/users`: adds a user with a generated password, shown once.
pub async fn create_user(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<UserForm>,
) -> Result<Response, WebError> {
    session.check_csrf(&form.csrf)?;
    admin_only(&session)?;
    let Some(role) = Role::parse(&form.role) else {
        let notice = Notice {
            text: format!("unknown role {:?}: admin, technician or practice_manager", form.role),
            command: None,
            error: true,
        };
        return users_with(&state, &session, StatusCode::BAD_REQUEST, Some(notice)).await;
    };
    let practice = Some(form.practice.trim()).filter(|p| !p.is_empty());
    let added = admin::user_add_as(
        state.store.as_ref(),
        &actor(&session),
        state.now(),
        form.username.trim(),
        role,
        practice,
        None,
    )
    .await;
    let (status, notice) = match added {
        Ok(password) => (
            StatusCode::OK,
            Notice {
                text: format!(
                    "User {} added as {}. Give them this password (shown once); they can log in now.",
                    form.username.trim(),
                    role_label(role)
                ),
                command: Some(password),
                error: false,
            },
        ),
        Err(e) => refused(e)?,
    };
    users_with(&state, &session, status, Some(notice)).await
}

/// The audit-log page (admins only).
#[derive(Template)]
#[template(path = "audit.html")]
pub struct AuditPage {
    pub username: String,
    pub role: &'static str,
    pub csrf: String,
    pub is_admin: bool,
    pub entries: Vec<(Seen, AuditEntry)>,
    pub limit: u32,
    /// The server certificate in use: when it expires and when it renews (issue 15, item 4).
    pub certificate: String,
}

/// What the admin page says of the server certificate: its expiry and, for the certificate the
/// collector generated, when the renewal job renews it from the CA.
pub fn certificate_line(settings: &crate::config::Settings) -> String {
    use crate::security::renew::{RENEW_BEFORE_DAYS, not_after};
    let day = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    match &settings.tls {
        crate::config::TlsSettings::Generated { .. } => {
            let pem = settings.data_dir.join("server.pem");
            match not_after(&pem) {
                Ok(t) => format!(
                    "Server certificate (generated, signed by the collector's CA): expires {}; renewed from the CA on {} ({RENEW_BEFORE_DAYS} days before), agents keep trusting it.",
                    day(t),
                    day(t - chrono::Duration::days(RENEW_BEFORE_DAYS))
                ),
                Err(e) => format!("Server certificate: cannot be read ({e})."),
            }
        }
        crate::config::TlsSettings::Files { cert_file, .. } => match not_after(cert_file) {
            Ok(t) => format!(
                "Server certificate ({}, your own): expires {}; the collector does not renew it, replace the file before then.",
                cert_file.display(),
                day(t)
            ),
            Err(e) => format!("Server certificate {}: cannot be read ({e}).", cert_file.display()),
        },
    }
}

/// `GET /admin/audit`: the newest entries of the collector's audit log.
pub async fn audit_page(State(state): State<AppState>, session: Session) -> Result<Response, WebError> {
    admin_only(&session)?;
    let now = state.now();
    let entries = state.store.audit_entries(AUDIT_PAGE_LIMIT).await?;
    let html = AuditPage {
        username: session.user.username.clone(),
        role: role_label(session.user.role),
        csrf: session.user.csrf_token.clone(),
        is_admin: true,
        entries: entries.into_iter().map(|e| (Seen::new(e.at, now), e)).collect(),
        limit: AUDIT_PAGE_LIMIT,
        certificate: certificate_line(&state.settings),
    }
    .render()?;
    Ok(page(StatusCode::OK, html))
}

// --- Retention (issue 17): storage per table ---

/// `GET /admin/storage`: the page.
#[derive(Template)]
#[template(path = "storage.html")]
pub struct StoragePage {
    pub username: String,
    pub role: &'static str,
    pub csrf: String,
    pub is_admin: bool,
    /// How the sizes were measured.
    pub method: String,
    pub total: String,
    /// Table, rows, size (`unknown` where the backend cannot tell).
    pub tables: Vec<(String, String, String)>,
    /// The `[retention]` settings in words.
    pub retention: String,
}

/// Bytes in KiB, MiB or GiB, one decimal.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `GET /admin/storage`: the storage each table takes (admin only).
pub async fn storage_page(State(state): State<AppState>, session: Session) -> Result<Response, WebError> {
    admin_only(&session)?;
    let report = state.store.storage().await?;
    let r = state.settings.retention;
    let html = StoragePage {
        username: session.user.username.clone(),
        role: role_label(session.user.role),
        csrf: session.user.csrf_token.clone(),
        is_admin: true,
        method: report.method,
        total: human_bytes(report.total_bytes),
        tables: report
            .tables
            .into_iter()
            .map(|t| {
                (
                    t.table,
                    t.rows.map_or_else(|| "unknown".to_string(), |n| n.to_string()),
                    t.bytes.map_or_else(|| "unknown".to_string(), human_bytes),
                )
            })
            .collect(),
        retention: format!(
            "Raw observations are kept {} days, then rolled up hourly; hourly rollups {} days, then daily; findings' \
             history, incidents, issued reports and the audit log {} years. Retention runs every {} minutes.",
            r.observations_days,
            r.hourly_days,
            r.records_years,
            r.interval.as_secs() / 60
        ),
    }
    .render()?;
    Ok(page(StatusCode::OK, html))
}

/// The revoke form.
#[derive(Debug, Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    pub csrf: String,
}

/// `POST /agents/{id}/revoke`: revokes the agent's credentials (the same code as
/// `agent revoke` and `POST /api/v1/agents/{id}/revoke`); its next request is refused.
pub async fn revoke_agent(
    State(state): State<AppState>,
    session: Session,
    Path(agent_id): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, WebError> {
    session.check_csrf(&form.csrf)?;
    may_act(&session)?;
    let agent = state.store.agent(&session.scope(), &agent_id).await?;
    let changed = crate::security::revoke::agent_revoke(state.store.as_ref(), &agent_id, &actor(&session), state.now())
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?;
    let notice = if changed {
        format!(
            "{} revoked: its next request is refused and the agent stops.",
            agent.hostname
        )
    } else {
        format!("{} was already revoked.", agent.hostname)
    };
    let html = super::agent::build(&state, &session, agent_id, Some(notice))
        .await?
        .render()?;
    Ok(page(StatusCode::OK, html))
}
