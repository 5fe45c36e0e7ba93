//! Central agent configuration: set per practice and per site (`rounds-collector agent-config
//! set|show|clear`), merged, validated and served to agents (`GET /api/v1/agent/config`).
//!
//! One format: a level's text is an agent configuration file (`rounds_agent_config`), validated
//! with the agent's own code before anything is stored; errors name the file, the line and the
//! key. Every change is a new version (the history is kept) and an audit-log entry.
//!
//! The effective configuration of an agent is built in three layers, each laid over the one
//! before by [`merge`]:
//!
//! 1. the full default ([`default_toml`]): every check of [`rounds_agent_config::CHECKS`],
//!    enabled, on the default schedule, and the collector's heartbeat interval, so an agent
//!    that applies a configuration nobody set keeps running every check;
//! 2. the practice's configuration, if set;
//! 3. the site's configuration, if set.
//!
//! Merge rule: tables (`[checks.inventory]`, `[spool]`, `[probes]`) merge key by key; arrays of
//! tables whose entries are named (`[[backup]]`, `[[endpoint]]` by `name`, `[[audit_log]]` by
//! `name`, else `path`) merge by that key: an upper entry replaces the lower entry of the same
//! name as a whole, and new names are added after the lower ones (so a site adds its own NAS
//! backup to the practice's EHR endpoints, or redefines one). Any other value of an upper layer
//! replaces the lower one. A level cannot remove an entry a lower level defines; set such
//! entries per site instead. Every layer and every merged result (the practice's with each of
//! its sites' configurations) must validate before a change is stored.
//!
//! The served [`rounds_protocol::AgentConfig`] carries `version` = `ETag` = a hash of the merged
//! text, so a change anywhere changes it, and heartbeats announce it (`config_etag`).

use std::path::Path;

use chrono::{DateTime, Utc};
use rounds_agent_config::{CHECKS, ConfigError, DEFAULT_SCHEDULE};
use rounds_protocol::{AgentConfig, PROTOCOL_MAJOR};
use sha2::{Digest, Sha256};

use crate::store::{AgentConfigSources, Store, StoreError};

/// Why a configuration change was refused or could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AgentConfigError {
    /// The file does not validate (the error names file, line and key).
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// The file validates on its own but not merged with another level.
    #[error("{level}: the merged configuration does not validate: {source}")]
    Merged { level: String, source: ConfigError },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AgentConfigError {
    /// Whether the caller asked for something wrong (exit 64) rather than something failing.
    pub fn is_usage(&self) -> bool {
        match self {
            AgentConfigError::Invalid(_) | AgentConfigError::Merged { .. } => true,
            AgentConfigError::Store(e) => matches!(e, StoreError::NotFound { .. } | StoreError::Invalid(_)),
        }
    }
}

/// The full default configuration: every check, enabled, on the default schedule, and the
/// collector's heartbeat interval.
pub fn default_toml(heartbeat_interval_secs: u64) -> String {
    let mut out = format!("heartbeat_interval_secs = {heartbeat_interval_secs}\n");
    for check in CHECKS {
        out.push_str(&format!(
            "\n[checks.{check}]\nenabled = true\nschedule = \"{DEFAULT_SCHEDULE}\"\n"
        ));
    }
    out
}

/// The key an entry of an array of tables merges by: its `name`, else its `path`.
fn entry_key(v: &toml::Value) -> Option<&str> {
    let t = v.as_table()?;
    t.get("name").or_else(|| t.get("path")).and_then(toml::Value::as_str)
}

/// Lays `over` on `base` by the merge rule of the module docs.
pub fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (Some(toml::Value::Array(b)), toml::Value::Array(o))
                if b.iter().chain(o.iter()).all(|v| entry_key(v).is_some()) =>
            {
                for entry in o {
                    let k = entry_key(&entry).map(str::to_string);
                    match b.iter_mut().find(|e| entry_key(e).map(str::to_string) == k) {
                        Some(existing) => *existing = entry,
                        None => b.push(entry),
                    }
                }
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// An effective configuration: the merged text, where it comes from, its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    pub toml: String,
    pub origin: String,
    pub version: String,
}

impl Effective {
    /// As served to agents.
    pub fn served(&self) -> AgentConfig {
        AgentConfig {
            protocol: PROTOCOL_MAJOR,
            version: self.version.clone(),
            origin: self.origin.clone(),
            toml: self.toml.clone(),
        }
    }
}

/// The version (and `ETag`) of a configuration text: a quoted hash of it.
pub fn version_of(text: &str) -> String {
    format!("\"{}\"", &hex::encode(Sha256::digest(text.as_bytes()))[..16])
}

fn table(label: &str, text: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>().map_err(|_| {
        // Stored levels were validated; re-validating gives the precise error.
        match rounds_agent_config::parse(text, Path::new(label)) {
            Err(e) => e,
            Ok(_) => ConfigError::Invalid {
                path: label.into(),
                problems: vec![rounds_agent_config::Problem {
                    line: None,
                    key: None,
                    message: "not a TOML table".into(),
                }],
            },
        }
    })
}

/// Default, then `practice`'s text, then `site`'s, merged (not validated).
pub fn effective(
    heartbeat_interval_secs: u64,
    practice: (&str, Option<&str>),
    site: Option<(&str, Option<&str>)>,
) -> Result<Effective, ConfigError> {
    let mut base = table("default", &default_toml(heartbeat_interval_secs))?;
    let mut origin = Vec::new();
    if let Some(text) = practice.1 {
        merge(&mut base, table(&format!("practice {}", practice.0), text)?);
        origin.push(format!("practice {}", practice.0));
    }
    if let Some((site, Some(text))) = site {
        merge(&mut base, table(&format!("site {site}"), text)?);
        origin.push(format!("site {site}"));
    }
    let toml = base.to_string();
    Ok(Effective {
        version: version_of(&toml),
        origin: if origin.is_empty() {
            "default".into()
        } else {
            origin.join(", ")
        },
        toml,
    })
}

/// The effective configuration of an agent from what the store holds for it.
pub fn for_agent(heartbeat_interval_secs: u64, sources: &AgentConfigSources) -> Result<Effective, ConfigError> {
    let AgentConfigSources {
        practice,
        site,
        practice_toml,
        site_toml,
    } = sources;
    effective(
        heartbeat_interval_secs,
        (practice, practice_toml.as_deref()),
        Some((site, site_toml.as_deref())),
    )
}

// --- Heartbeats at scale (issue 16) ---
/// The effective configurations merged so far, by what decides them. Every heartbeat answers
/// its agent's configuration version, and merging, printing and hashing the TOML again for
/// each of 10,000 agents' heartbeats is work whose result only changes when a practice's or a
/// site's text does. The key is the text itself (and the names only where a text is set, as
/// [`effective`] uses them), so a change is seen at the next heartbeat, with no invalidation.
/// Bounded: emptied when it holds [`EffectiveCache::CAPACITY`] entries.
#[derive(Debug, Default)]
pub struct EffectiveCache {
    /// By the hash of the key's parts, with the key itself to confirm a hit: a heartbeat looks
    /// its configuration up from the borrowed sources and copies no name or text. Two keys
    /// with one hash take turns in the slot (a miss, never a wrong answer).
    merged: std::sync::Mutex<std::collections::HashMap<u64, (EffectiveKey, Effective)>>,
}

/// What decides an effective configuration: the heartbeat interval, and the practice's and
/// the site's (name, text) where a text is set.
type EffectiveKey = (u64, Option<(String, String)>, Option<(String, String)>);

/// An [`EffectiveKey`]'s parts as the sources (or a held key) lend them.
type BorrowedKey<'a> = (u64, Option<(&'a str, &'a str)>, Option<(&'a str, &'a str)>);

fn borrowed_key(heartbeat_interval_secs: u64, sources: &AgentConfigSources) -> BorrowedKey<'_> {
    fn named<'a>(name: &'a str, text: &'a Option<String>) -> Option<(&'a str, &'a str)> {
        text.as_deref().map(|t| (name, t))
    }
    (
        heartbeat_interval_secs,
        named(&sources.practice, &sources.practice_toml),
        named(&sources.site, &sources.site_toml),
    )
}

fn lend(key: &EffectiveKey) -> BorrowedKey<'_> {
    fn part(p: &Option<(String, String)>) -> Option<(&str, &str)> {
        p.as_ref().map(|(n, t)| (n.as_str(), t.as_str()))
    }
    (key.0, part(&key.1), part(&key.2))
}

impl EffectiveCache {
    /// Entries kept before the cache is emptied (one per distinct practice and site text).
    pub const CAPACITY: usize = 4096;

    /// [`for_agent`], merged once per distinct set of sources.
    pub fn for_agent(
        &self,
        heartbeat_interval_secs: u64,
        sources: &AgentConfigSources,
    ) -> Result<Effective, ConfigError> {
        use std::hash::BuildHasher;
        let key = borrowed_key(heartbeat_interval_secs, sources);
        let hash = std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(key);
        if let Some((_, hit)) = self.lock().get(&hash).filter(|(held, _)| lend(held) == key) {
            return Ok(hit.clone());
        }
        let merged = for_agent(heartbeat_interval_secs, sources)?;
        let own = |p: Option<(&str, &str)>| p.map(|(n, t)| (n.to_string(), t.to_string()));
        let mut map = self.lock();
        if map.len() >= Self::CAPACITY {
            map.clear();
        }
        map.insert(hash, ((key.0, own(key.1), own(key.2)), merged.clone()));
        Ok(merged)
    }

    /// Entries held (tests).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is held yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, (EffectiveKey, Effective)>> {
        self.merged.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn check_merged(level: &str, e: &Effective) -> Result<(), AgentConfigError> {
    rounds_agent_config::parse(&e.toml, Path::new(level))
        .map(|_| ())
        .map_err(|source| AgentConfigError::Merged {
            level: level.to_string(),
            source,
        })
}

fn level_name(practice: &str, site: Option<&str>) -> String {
    match site {
        Some(s) => format!("practice {practice}, site {s}"),
        None => format!("practice {practice}"),
    }
}

/// Every merged result a change of `practice`/`site` to `text` (`None`: cleared) affects must
/// validate.
async fn check_affected(
    store: &dyn Store,
    heartbeat: u64,
    practice: &str,
    site: Option<&str>,
    text: Option<&str>,
) -> Result<(), AgentConfigError> {
    match site {
        Some(site) => {
            let p = store.agent_config(practice, None).await?;
            let p_text = p.as_ref().and_then(|r| r.toml.as_deref());
            let e = effective(heartbeat, (practice, p_text), Some((site, text)))?;
            check_merged(&level_name(practice, Some(site)), &e)
        }
        None => {
            let e = effective(heartbeat, (practice, text), None)?;
            check_merged(&level_name(practice, None), &e)?;
            for s in store.site_agent_configs(practice).await? {
                let site = s.site.as_deref().unwrap_or_default();
                let e = effective(heartbeat, (practice, text), Some((site, s.toml.as_deref())))?;
                check_merged(&level_name(practice, Some(site)), &e)?;
            }
            Ok(())
        }
    }
}

/// Validates `text` (read from `file`) and stores it as the new version of the practice's or
/// site's configuration, with an audit entry, in one unit of work. Returns the version id.
#[allow(clippy::too_many_arguments)]
pub async fn set(
    store: &dyn Store,
    heartbeat: u64,
    practice: &str,
    site: Option<&str>,
    file: &Path,
    text: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<i64, AgentConfigError> {
    rounds_agent_config::parse(text, file)?;
    // Unknown practice or site: NotFound before anything else.
    store.agent_config_history(practice, site).await?;
    check_affected(store, heartbeat, practice, site, Some(text)).await?;
    let level = level_name(practice, site);
    let mut tx = store.begin().await?;
    let id = tx
        .set_agent_config(practice, site, Some(text), &file.display().to_string(), actor, now)
        .await?;
    tx.audit(
        actor,
        "agent_config.set",
        &format!("{level}: version {id} from {} ({})", file.display(), version_of(text)),
        now,
    )
    .await?;
    tx.commit().await?;
    tracing::info!(%level, version = id, file = %file.display(), "agent configuration set");
    Ok(id)
}

/// Clears the practice's or site's configuration (a new version without text; history kept).
pub async fn clear(
    store: &dyn Store,
    heartbeat: u64,
    practice: &str,
    site: Option<&str>,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<i64, AgentConfigError> {
    store.agent_config_history(practice, site).await?;
    check_affected(store, heartbeat, practice, site, None).await?;
    let level = level_name(practice, site);
    let mut tx = store.begin().await?;
    let id = tx.set_agent_config(practice, site, None, "cleared", actor, now).await?;
    tx.audit(actor, "agent_config.clear", &format!("{level}: version {id}"), now)
        .await?;
    tx.commit().await?;
    tracing::info!(%level, version = id, "agent configuration cleared");
    Ok(id)
}

/// What `agent-config show` prints: what is set at this level (and its history), and the
/// effective merged result an agent there gets.
pub async fn show(
    store: &dyn Store,
    heartbeat: u64,
    practice: &str,
    site: Option<&str>,
) -> Result<String, AgentConfigError> {
    let level = level_name(practice, site);
    let history = store.agent_config_history(practice, site).await?;
    let mut out = String::new();
    match history.last().filter(|r| r.toml.is_some()) {
        Some(r) => {
            out.push_str(&format!(
                "# set for {level}: version {} from {} by {} at {}\n",
                r.id,
                r.source,
                r.set_by,
                r.set_at.to_rfc3339()
            ));
            out.push_str(r.toml.as_deref().unwrap_or_default());
            if !out.ends_with('\n') {
                out.push('\n');
            }
        }
        None => out.push_str(&format!("# nothing set for {level}\n")),
    }
    if history.len() > 1 {
        out.push_str(&format!("# history of {level}:\n"));
        for r in &history {
            out.push_str(&format!(
                "#   version {}: {} by {} at {}\n",
                r.id,
                if r.toml.is_some() { r.source.as_str() } else { "cleared" },
                r.set_by,
                r.set_at.to_rfc3339()
            ));
        }
    }
    let p = store.agent_config(practice, None).await?;
    let p_text = p.as_ref().and_then(|r| r.toml.as_deref());
    let s_text = match site {
        Some(_) => store.agent_config(practice, site).await?.and_then(|r| r.toml),
        None => None,
    };
    let e = effective(heartbeat, (practice, p_text), site.map(|s| (s, s_text.as_deref())))?;
    out.push_str(&format!(
        "\n# effective configuration for agents of {level} (origin: {}, version {}):\n",
        e.origin, e.version
    ));
    out.push_str(&e.toml);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Heartbeats at scale (issue 16).
    #[test]
    fn the_cache_answers_what_a_merge_gives_and_sees_a_changed_text_at_once() {
        let sources = |practice: &str, site: &str, p: Option<&str>, s: Option<&str>| AgentConfigSources {
            practice: practice.into(),
            site: site.into(),
            practice_toml: p.map(str::to_string),
            site_toml: s.map(str::to_string),
        };
        let cache = EffectiveCache::default();
        let plain = [sources("P", "A", None, None), sources("Q", "B", None, None)];
        for s in &plain {
            assert_eq!(cache.for_agent(30, s).unwrap(), for_agent(30, s).unwrap());
        }
        assert_eq!(cache.len(), 1, "places without a text share the default");
        let v1 = sources("P", "A", Some("heartbeat_interval_secs = 60\n"), None);
        let v2 = sources("P", "A", Some("heartbeat_interval_secs = 90\n"), None);
        let (e1, e2) = (cache.for_agent(30, &v1).unwrap(), cache.for_agent(30, &v2).unwrap());
        assert_eq!(e1, for_agent(30, &v1).unwrap());
        assert_eq!(e2, for_agent(30, &v2).unwrap());
        assert_ne!(
            e1.version, e2.version,
            "a changed text is a new entry, not the old answer"
        );
        let other_site = sources("P", "B", None, Some("heartbeat_interval_secs = 60\n"));
        assert_eq!(
            cache.for_agent(30, &other_site).unwrap().origin,
            "site B",
            "names count where a text is set"
        );
        assert_ne!(
            cache.for_agent(45, &plain[0]).unwrap(),
            cache.for_agent(30, &plain[0]).unwrap()
        );
        let bad = sources("P", "A", Some("[checks"), None);
        assert!(cache.for_agent(30, &bad).is_err());
        assert_eq!(cache.len(), 5, "errors are not kept");
        for i in 0..EffectiveCache::CAPACITY {
            let s = sources("P", "A", Some(&format!("heartbeat_interval_secs = {}\n", 60 + i)), None);
            cache.for_agent(30, &s).unwrap();
        }
        assert!(cache.len() <= EffectiveCache::CAPACITY, "bounded");
    }

    #[test]
    fn the_default_names_every_check_and_validates() {
        let text = default_toml(45);
        let c = rounds_agent_config::parse(&text, Path::new("default")).unwrap();
        assert_eq!(c.heartbeat_interval, Some(std::time::Duration::from_secs(45)));
        for check in CHECKS {
            assert!(c.checks.get(*check).is_some_and(|s| s.enabled), "{check}");
        }
    }

    #[test]
    fn site_over_practice_merges_tables_by_key_and_named_entries_by_name() {
        let practice = "heartbeat_interval_secs = 60\n[checks.firewall]\nenabled = false\n\
            [[endpoint]]\nname = \"EHR\"\nkind = \"fhir\"\nurl = \"https://ehr.example/fhir\"\n\
            [[backup]]\nname = \"nas\"\nkind = \"folder\"\npath = \"/mnt/nas\"\n";
        let site = "[checks.firewall]\nschedule = \"0 */5 * * * *\"\n\
            [[backup]]\nname = \"nas\"\nkind = \"folder\"\npath = \"/mnt/other\"\n\
            [[backup]]\nname = \"usb\"\nkind = \"folder\"\npath = \"/media/usb\"\n";
        let e = effective(30, ("P", Some(practice)), Some(("S", Some(site)))).unwrap();
        assert_eq!(e.origin, "practice P, site S");
        let c = rounds_agent_config::parse(&e.toml, Path::new("merged")).unwrap();
        assert_eq!(c.heartbeat_interval, Some(std::time::Duration::from_secs(60)));
        let fw = &c.checks["firewall"];
        assert!(!fw.enabled, "the practice's key stays");
        assert_eq!(
            fw.schedule.as_ref().unwrap().source(),
            "0 */5 * * * *",
            "the site's key added"
        );
        assert!(c.is_enabled("inventory"), "defaults stay");
        let backups: Vec<(&str, String)> = c
            .backups
            .iter()
            .map(|b| (b.name.as_str(), b.path.as_ref().unwrap().display().to_string()))
            .collect();
        assert_eq!(
            backups,
            vec![("nas", "/mnt/other".to_string()), ("usb", "/media/usb".to_string())]
        );
        assert_eq!(c.endpoints.len(), 1, "the practice's endpoint stays");
        let unset = effective(30, ("P", None), Some(("S", None))).unwrap();
        assert_eq!(unset.origin, "default");
        assert_ne!(unset.version, e.version);
    }
}
