//! Administrative commands: enrollment tokens, users, API keys, per-practice and per-site
//! policy settings. They work on the data dir directly (the SQLite file is shared safely with
//! a running server through WAL).

use std::time::Duration;

use chrono::Utc;
use rounds_policies::{LoadErrors, Overrides, Pack, Policy};

use crate::evaluation;
use crate::secrets;
use crate::store::{AgentPolicySettings, NewToken, PolicySettingsRow, Role, Store, StoreError};

/// Errors of the administrative commands.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
    /// Policy settings that do not validate against the built-in pack.
    #[error("policy settings refused: {0}")]
    Policy(#[from] LoadErrors),
}

impl AdminError {
    /// Whether the caller asked for something wrong (usage or configuration, exit 64) rather
    /// than something failing (exit 1).
    pub fn is_usage(&self) -> bool {
        match self {
            AdminError::Invalid(_) | AdminError::Policy(_) => true,
            AdminError::Store(e) => matches!(e, StoreError::NotFound { .. } | StoreError::Invalid(_)),
        }
    }
}

fn name_ok(what: &str, v: &str) -> Result<(), AdminError> {
    if v.trim().is_empty() || v.len() > 200 || v.chars().any(char::is_control) {
        return Err(AdminError::Invalid(format!(
            "{what} must be 1 to 200 printable characters"
        )));
    }
    Ok(())
}

/// Creates a one-time enrollment token for a site (creating practice and site if new).
pub async fn token_create(
    store: &dyn Store,
    practice: &str,
    site: &str,
    expires_in: Duration,
) -> Result<String, AdminError> {
    token_create_as(store, "cli", Utc::now(), practice, site, expires_in).await
}

/// [`token_create`] on behalf of `actor` (a dashboard user) at `now`.
pub async fn token_create_as(
    store: &dyn Store,
    actor: &str,
    now: chrono::DateTime<Utc>,
    practice: &str,
    site: &str,
    expires_in: Duration,
) -> Result<String, AdminError> {
    name_ok("practice", practice)?;
    name_ok("site", site)?;
    let token = secrets::random_secret("rnd_tok_");
    let expires_at = now + chrono::Duration::from_std(expires_in).unwrap_or(chrono::Duration::hours(24));
    let mut tx = store.begin().await?;
    tx.create_token(
        NewToken {
            practice: practice.trim().to_string(),
            site: site.trim().to_string(),
            token_hash: secrets::hash_secret(&token),
            expires_at,
        },
        now,
    )
    .await?;
    tx.audit(
        actor,
        "token.create",
        &format!("{practice}/{site}, expires {}", expires_at.to_rfc3339()),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(token)
}

/// Adds a dashboard user; returns the password (generated when none is given).
pub async fn user_add(
    store: &dyn Store,
    username: &str,
    role: Role,
    practice: Option<&str>,
    password: Option<String>,
) -> Result<String, AdminError> {
    user_add_as(store, "cli", Utc::now(), username, role, practice, password).await
}

/// [`user_add`] on behalf of `actor` (a dashboard admin) at `now`.
pub async fn user_add_as(
    store: &dyn Store,
    actor: &str,
    now: chrono::DateTime<Utc>,
    username: &str,
    role: Role,
    practice: Option<&str>,
    password: Option<String>,
) -> Result<String, AdminError> {
    name_ok("username", username)?;
    match (role, practice) {
        (Role::PracticeManager, None) => {
            return Err(AdminError::Invalid("a practice manager needs --practice".into()));
        }
        (Role::Admin | Role::Technician, Some(_)) => {
            return Err(AdminError::Invalid(
                "--practice applies only to the practice_manager role".into(),
            ));
        }
        _ => {}
    }
    let password = password.unwrap_or_else(secrets::random_password);
    if password.chars().count() < 12 {
        return Err(AdminError::Invalid("password must be at least 12 characters".into()));
    }
    let hash = secrets::hash_password(&password).map_err(AdminError::Invalid)?;
    let mut tx = store.begin().await?;
    tx.add_user(username, &hash, role, practice, now).await?;
    tx.audit(actor, "user.add", &format!("{username} as {}", role.as_str()), now)
        .await?;
    tx.commit().await?;
    Ok(password)
}

/// Sets a new password for a user and ends their sessions; returns the password.
pub async fn user_reset_password(store: &dyn Store, username: &str) -> Result<String, AdminError> {
    let password = secrets::random_password();
    let hash = secrets::hash_password(&password).map_err(AdminError::Invalid)?;
    let mut tx = store.begin().await?;
    tx.set_password(username, &hash).await?;
    tx.audit("cli", "user.password_reset", username, Utc::now()).await?;
    tx.commit().await?;
    Ok(password)
}

/// Creates an API key for automation, without expiry; returns the key (shown once). See
/// [`crate::security::revoke::apikey_create`] for keys that expire.
pub async fn apikey_create(
    store: &dyn Store,
    role: Role,
    practice: Option<&str>,
    label: &str,
) -> Result<String, AdminError> {
    crate::security::revoke::apikey_create(store, role, practice, label, None, "cli", Utc::now())
        .await
        .map(|k| k.key)
}

/// An overrides file as read by the caller: its name (for messages) and its text.
#[derive(Debug, Clone)]
pub struct OverridesFile {
    pub name: String,
    pub text: String,
}

/// A change to the policy settings of a practice (`site` `None`) or a site. What is neither
/// given nor cleared stays as it was.
#[derive(Debug, Clone, Default)]
pub struct PolicyChange {
    pub practice: String,
    pub site: Option<String>,
    /// A new profile (practice level only).
    pub profile: Option<String>,
    pub clear_profile: bool,
    /// New overrides, replacing the previous ones.
    pub overrides: Option<OverridesFile>,
    pub clear_overrides: bool,
}

/// Changes the policy settings of a practice or site after validating them against `pack` (the
/// built-in pack): the overrides must parse, the profile must exist, and the practice's and
/// site's settings together must build a policy. Nothing is stored when anything is wrong.
/// Returns the settings now stored (`None` when cleared).
pub async fn policy_set(
    store: &dyn Store,
    pack: &Pack,
    change: PolicyChange,
) -> Result<Option<PolicySettingsRow>, AdminError> {
    policy_set_as(store, pack, "cli", Utc::now(), change).await
}

/// [`policy_set`] on behalf of `actor` (a dashboard user) at `now`: the same validation.
pub async fn policy_set_as(
    store: &dyn Store,
    pack: &Pack,
    actor: &str,
    now: chrono::DateTime<Utc>,
    change: PolicyChange,
) -> Result<Option<PolicySettingsRow>, AdminError> {
    let PolicyChange {
        practice,
        site,
        profile,
        clear_profile,
        overrides,
        clear_overrides,
    } = change;
    if site.is_some() && (profile.is_some() || clear_profile) {
        return Err(AdminError::Invalid(
            "a profile is set per practice: --profile and --clear-profile do not go with --site".into(),
        ));
    }
    if (profile.is_some() && clear_profile) || (overrides.is_some() && clear_overrides) {
        return Err(AdminError::Invalid("give a new value or clear it, not both".into()));
    }
    if profile.is_none() && !clear_profile && overrides.is_none() && !clear_overrides {
        return Err(AdminError::Invalid(
            "nothing to change: give --profile, --overrides, --clear-profile or --clear-overrides".into(),
        ));
    }
    let current = store.policy_settings(&practice, site.as_deref()).await?;
    let (old_profile, old_overrides) = current.map_or((None, None), |c| (c.profile, c.overrides_toml));
    let new_profile = if clear_profile { None } else { profile.or(old_profile) };
    // Parse the new file under its own name, so errors name the file the user gave.
    if let Some(file) = &overrides {
        Overrides::from_toml(&file.name, &file.text, pack)?;
    }
    let new_overrides = if clear_overrides {
        None
    } else {
        overrides.as_ref().map(|f| f.text.clone()).or(old_overrides)
    };
    // The combination this level takes part in must build.
    let effective = match &site {
        None => AgentPolicySettings {
            practice: practice.clone(),
            profile: new_profile.clone(),
            practice_overrides: new_overrides.clone(),
            ..AgentPolicySettings::default()
        },
        Some(site) => {
            let upper = store.policy_settings(&practice, None).await?;
            let (profile, practice_overrides) = upper.map_or((None, None), |u| (u.profile, u.overrides_toml));
            AgentPolicySettings {
                practice: practice.clone(),
                site: site.clone(),
                profile,
                practice_overrides,
                site_overrides: new_overrides.clone(),
            }
        }
    };
    let policy = evaluation::build(pack, &effective)?;
    let level = match &site {
        Some(s) => format!("{practice} / {s}"),
        None => practice.clone(),
    };
    let overrides_said = match (&overrides, clear_overrides, &new_overrides) {
        (Some(f), _, _) => format!("overrides from {}", f.name),
        (None, true, _) => "overrides cleared".to_string(),
        (None, false, Some(_)) => "overrides unchanged".to_string(),
        (None, false, None) => "no overrides".to_string(),
    };
    let profile_said = match (&site, &new_profile) {
        (Some(_), _) => String::new(),
        (None, p) => format!("profile {}, ", p.as_deref().unwrap_or("none")),
    };
    let accepted = match policy.rules.iter().filter(|r| r.exception.is_some()).count() {
        0 => String::new(),
        n => format!(", {n} accepted risk(s) in effect"),
    };
    let detail = format!("{level}: {profile_said}{overrides_said}{accepted}");
    let mut tx = store.begin().await?;
    tx.set_policy_settings(
        &practice,
        site.as_deref(),
        new_profile.as_deref(),
        new_overrides.as_deref(),
        actor,
        now,
    )
    .await?;
    tx.audit(actor, "policy.set", &detail, now).await?;
    tx.commit().await?;
    Ok(store.policy_settings(&practice, site.as_deref()).await?)
}

/// What `policy show` prints: the settings stored at this level and, for a site, the
/// practice's settings it inherits, then what differs from the pack's defaults.
pub async fn policy_show(
    store: &dyn Store,
    pack: &Pack,
    practice: &str,
    site: Option<&str>,
) -> Result<String, AdminError> {
    let own = store.policy_settings(practice, site).await?;
    let upper = match site {
        Some(_) => store.policy_settings(practice, None).await?,
        None => None,
    };
    let mut out = String::new();
    let mut section = |title: String, row: &Option<PolicySettingsRow>| {
        out.push_str(&format!("{title}\n"));
        match row {
            None => out.push_str("  no settings (built-in defaults)\n"),
            Some(r) => {
                if r.site.is_none() {
                    out.push_str(&format!("  profile: {}\n", r.profile.as_deref().unwrap_or("none")));
                }
                match &r.overrides_toml {
                    None => out.push_str("  overrides: none\n"),
                    Some(text) => {
                        out.push_str("  overrides:\n");
                        for line in text.lines() {
                            if line.trim().is_empty() {
                                out.push('\n');
                            } else {
                                out.push_str(&format!("    {line}\n"));
                            }
                        }
                    }
                }
                out.push_str(&format!(
                    "  updated {} by {}\n",
                    r.updated_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    r.updated_by
                ));
            }
        }
    };
    if let Some(site) = site {
        section(format!("practice {practice} (inherited)"), &upper);
        section(format!("site {practice} / {site}"), &own);
    } else {
        section(format!("practice {practice}"), &own);
    }
    let settings = AgentPolicySettings {
        practice: practice.to_string(),
        site: site.unwrap_or_default().to_string(),
        profile: upper.as_ref().or(own.as_ref()).and_then(|r| r.profile.clone()),
        practice_overrides: match site {
            Some(_) => upper.and_then(|r| r.overrides_toml),
            None => own.as_ref().and_then(|r| r.overrides_toml.clone()),
        },
        site_overrides: site.and(own.and_then(|r| r.overrides_toml)),
    };
    match evaluation::build(pack, &settings) {
        Err(e) => out.push_str(&format!("effective policy: does not build ({e})\n")),
        Ok(policy) => out.push_str(&effective_changes(pack, &policy)),
    }
    Ok(out)
}

/// The parameters and accepted risks of `policy` that differ from `pack`'s defaults.
fn effective_changes(pack: &Pack, policy: &Policy) -> String {
    let mut lines = Vec::new();
    if let Some(p) = &policy.profile {
        lines.push(format!("  profile {p}"));
    }
    for rule in &policy.rules {
        for (name, value) in &rule.params {
            let default = pack
                .rule(&rule.rule.id)
                .and_then(|r| r.params.iter().find(|p| &p.name == name))
                .map(|p| &p.default);
            if default != Some(value) {
                lines.push(format!("  {} {name} = {value}", rule.rule.id));
            }
        }
        if let Some(e) = &rule.exception {
            lines.push(format!(
                "  {} risk accepted by {} until {} ({}): {}",
                rule.rule.id, e.accepted_by, e.expires, e.source, e.reason
            ));
        }
    }
    if lines.is_empty() {
        "effective policy: the built-in defaults\n".to_string()
    } else {
        format!(
            "effective policy, where it differs from the defaults:\n{}\n",
            lines.join("\n")
        )
    }
}
