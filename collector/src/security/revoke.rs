//! Revoking and expiring credentials: agents, API keys, users. The CLI (`agent revoke`,
//! `apikey revoke`, `apikey create --expires`, `user remove`) and the admin API call the same
//! functions; each writes the change and its audit entry in one unit of work. Revocation takes
//! effect on the next request: every request looks its credentials up in the store.

use chrono::{DateTime, Utc};

use crate::admin::AdminError;
use crate::secrets;
use crate::store::{Role, Store};

/// A new API key: its id (for `apikey revoke`) and the key (shown once).
#[derive(Debug, Clone)]
pub struct CreatedKey {
    pub id: i64,
    pub key: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Creates an API key, optionally expiring after `expires_in`. `--practice` goes only with the
/// practice_manager role (as for `user add`), which needs it.
pub async fn apikey_create(
    store: &dyn Store,
    role: Role,
    practice: Option<&str>,
    label: &str,
    expires_in: Option<std::time::Duration>,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<CreatedKey, AdminError> {
    match (role, practice) {
        (Role::PracticeManager, None) => {
            return Err(AdminError::Invalid("a practice_manager key needs --practice".into()));
        }
        (Role::Admin | Role::Technician, Some(_)) => {
            return Err(AdminError::Invalid(format!(
                "--practice applies only to the practice_manager role; a {} key sees every practice",
                role.as_str()
            )));
        }
        _ => {}
    }
    let expires_at = expires_in
        .map(|d| {
            chrono::Duration::from_std(d)
                .ok()
                .and_then(|d| now.checked_add_signed(d))
                .ok_or_else(|| AdminError::Invalid("--expires is too far in the future".into()))
        })
        .transpose()?;
    let key = secrets::random_secret("rnd_key_");
    let mut tx = store.begin().await?;
    let id = tx
        .create_api_key_expiring(&secrets::hash_secret(&key), role, practice, label, expires_at, now)
        .await?;
    let until = expires_at.map_or_else(|| "no expiry".to_string(), |t| format!("expires {}", t.to_rfc3339()));
    tx.audit(
        actor,
        "apikey.create",
        &format!("#{id} {label} as {}, {until}", role.as_str()),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(CreatedKey { id, key, expires_at })
}

/// Revokes an agent: its next request is answered `401` with the `credentials_revoked` code,
/// and the agent stops. Returns whether it was live before.
pub async fn agent_revoke(
    store: &dyn Store,
    agent_id: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<bool, AdminError> {
    let mut tx = store.begin().await?;
    let changed = tx.revoke_agent(agent_id, now).await?;
    if changed {
        tx.audit(actor, "agent.revoke", agent_id, now).await?;
    }
    tx.commit().await?;
    if changed {
        tracing::info!(agent_id, actor, "agent revoked");
    }
    Ok(changed)
}

/// Revokes an API key by id. Returns whether it was live before.
pub async fn apikey_revoke(store: &dyn Store, id: i64, actor: &str, now: DateTime<Utc>) -> Result<bool, AdminError> {
    let mut tx = store.begin().await?;
    let changed = tx.revoke_api_key(id, now).await?;
    if changed {
        tx.audit(actor, "apikey.revoke", &format!("#{id}"), now).await?;
    }
    tx.commit().await?;
    if changed {
        tracing::info!(id, actor, "API key revoked");
    }
    Ok(changed)
}

/// Removes a dashboard user and ends their sessions. The last admin cannot be removed.
pub async fn user_remove(store: &dyn Store, username: &str, actor: &str, now: DateTime<Utc>) -> Result<(), AdminError> {
    let user = store.user(username).await?.ok_or_else(|| {
        AdminError::Store(crate::store::StoreError::NotFound {
            what: "user",
            name: username.to_string(),
        })
    })?;
    if user.role == Role::Admin && store.admin_count().await? <= 1 {
        return Err(AdminError::Invalid(format!(
            "`{username}` is the last admin; add another admin before removing it"
        )));
    }
    let mut tx = store.begin().await?;
    tx.remove_user(username).await?;
    tx.audit(actor, "user.remove", username, now).await?;
    tx.commit().await?;
    tracing::info!(username, actor, "user removed");
    Ok(())
}
