//! Administrative commands: enrollment tokens, users, API keys. They work on the data dir
//! directly (the SQLite file is shared safely with a running server through WAL).

use std::time::Duration;

use chrono::Utc;

use crate::secrets;
use crate::store::{NewToken, Role, Store, StoreError};

/// Errors of the administrative commands.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
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
    name_ok("practice", practice)?;
    name_ok("site", site)?;
    let token = secrets::random_secret("rnd_tok_");
    let expires_at = Utc::now() + chrono::Duration::from_std(expires_in).unwrap_or(chrono::Duration::hours(24));
    store
        .create_token(NewToken {
            practice: practice.trim().to_string(),
            site: site.trim().to_string(),
            token_hash: secrets::hash_secret(&token),
            expires_at,
        })
        .await?;
    store
        .audit(
            "cli",
            "token.create",
            &format!("{practice}/{site}, expires {}", expires_at.to_rfc3339()),
            Utc::now(),
        )
        .await?;
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
    store.add_user(username, &hash, role, practice).await?;
    store
        .audit(
            "cli",
            "user.add",
            &format!("{username} as {}", role.as_str()),
            Utc::now(),
        )
        .await?;
    Ok(password)
}

/// Sets a new password for a user and ends their sessions; returns the password.
pub async fn user_reset_password(store: &dyn Store, username: &str) -> Result<String, AdminError> {
    let password = secrets::random_password();
    let hash = secrets::hash_password(&password).map_err(AdminError::Invalid)?;
    store.set_password(username, &hash).await?;
    store.audit("cli", "user.password_reset", username, Utc::now()).await?;
    Ok(password)
}

/// Creates an API key for automation; returns the key (shown once).
pub async fn apikey_create(
    store: &dyn Store,
    role: Role,
    practice: Option<&str>,
    label: &str,
) -> Result<String, AdminError> {
    if role == Role::PracticeManager && practice.is_none() {
        return Err(AdminError::Invalid("a practice_manager key needs --practice".into()));
    }
    let key = secrets::random_secret("rnd_key_");
    store
        .create_api_key(&secrets::hash_secret(&key), role, practice, label)
        .await?;
    store
        .audit(
            "cli",
            "apikey.create",
            &format!("{label} as {}", role.as_str()),
            Utc::now(),
        )
        .await?;
    Ok(key)
}
