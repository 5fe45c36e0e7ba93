//! The simulated fleet: who the agents are (practice, site, host profile) and how they enroll.
//!
//! Agents come from two sources: the credentials file of an earlier run (`--state`), reused
//! as they are, and enrollment tokens (`--tokens`, one a line, `practice<TAB>site<TAB>token`),
//! one token per new agent. Host profiles are drawn from the run's seed and the agent's index,
//! so the same seed gives the same fleet.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Why the fleet could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} line {line}: expected `practice<TAB>site<TAB>token`")]
    TokenLine { path: PathBuf, line: usize },
    #[error("{path}: not a rounds-sim credentials file: {detail}")]
    State { path: PathBuf, detail: String },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error(
        "{wanted} agents wanted but only {have} are available ({saved} saved credentials, {tokens} tokens); create more tokens with bench/tokens.sh"
    )]
    TooFew {
        wanted: usize,
        have: usize,
        saved: usize,
        tokens: usize,
    },
}

/// One enrollment token and the practice and site it was created for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub practice: String,
    pub site: String,
    pub token: String,
}

/// Parses a tokens file; `path` is named in errors.
pub fn parse_tokens(text: &str, path: &Path) -> Result<Vec<Token>, FleetError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split('\t');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(p), Some(s), Some(t), None) if !p.is_empty() && !s.is_empty() && !t.trim().is_empty() => {
                out.push(Token {
                    practice: p.into(),
                    site: s.into(),
                    token: t.trim().into(),
                })
            }
            _ => {
                return Err(FleetError::TokenLine {
                    path: path.into(),
                    line: i + 1,
                });
            }
        }
    }
    Ok(out)
}

/// An enrolled agent's identity and progress, as kept in the credentials file.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    pub agent_id: String,
    pub agent_secret: String,
    pub practice: String,
    pub site: String,
    pub hostname: String,
    /// The next report sequence number to use.
    pub next_sequence: u64,
}

impl std::fmt::Debug for Saved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Saved")
            .field("agent_id", &self.agent_id)
            .field("agent_secret", &"<redacted>")
            .field("practice", &self.practice)
            .field("site", &self.site)
            .field("next_sequence", &self.next_sequence)
            .finish()
    }
}

/// The credentials file.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StateFile {
    /// The collector the agents are enrolled with.
    pub collector: String,
    pub agents: Vec<Saved>,
}

/// Reads the credentials file; a missing file is an empty fleet.
pub fn load_state(path: &Path) -> Result<StateFile, FleetError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| FleetError::State {
            path: path.into(),
            detail: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StateFile::default()),
        Err(source) => Err(FleetError::Read {
            path: path.into(),
            source,
        }),
    }
}

/// Writes the credentials file whole (to a temporary file renamed over it), readable only by
/// its owner: it holds agent secrets, as an agent's state dir does.
pub fn save_state(path: &Path, state: &StateFile) -> Result<(), FleetError> {
    let err = |source| FleetError::Write {
        path: path.into(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let body = serde_json::to_vec(state).map_err(|e| err(std::io::Error::other(e)))?;
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(&tmp).map_err(err)?;
        f.write_all(&body).map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    std::fs::rename(&tmp, path).map_err(err)
}

/// Where a simulated agent's identity comes from.
#[derive(Debug, Clone)]
pub enum Identity {
    Saved(Saved),
    Token(Token),
}

impl Identity {
    pub fn practice(&self) -> &str {
        match self {
            Identity::Saved(s) => &s.practice,
            Identity::Token(t) => &t.practice,
        }
    }
    pub fn site(&self) -> &str {
        match self {
            Identity::Saved(s) => &s.site,
            Identity::Token(t) => &t.site,
        }
    }
}

/// Picks `wanted` identities: saved agents first, then tokens.
pub fn identities(saved: Vec<Saved>, tokens: Vec<Token>, wanted: usize) -> Result<Vec<Identity>, FleetError> {
    let (n_saved, n_tokens) = (saved.len(), tokens.len());
    let out: Vec<Identity> = saved
        .into_iter()
        .map(Identity::Saved)
        .chain(tokens.into_iter().map(Identity::Token))
        .take(wanted)
        .collect();
    if out.len() < wanted {
        return Err(FleetError::TooFew {
            wanted,
            have: out.len(),
            saved: n_saved,
            tokens: n_tokens,
        });
    }
    Ok(out)
}

/// Operating-system family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Os {
    Windows,
    Macos,
    Linux,
}

impl Os {
    pub fn family(self) -> &'static str {
        match self {
            Os::Windows => "windows",
            Os::Macos => "macos",
            Os::Linux => "linux",
        }
    }
}

/// A simulated machine: what it is and which controls it fails.
#[derive(Debug, Clone)]
pub struct Profile {
    pub index: usize,
    pub hostname: String,
    pub os: Os,
    /// `server` or `workstation`.
    pub role: &'static str,
    /// Names of the failing controls: `encryption`, `firewall`, `updates`, `screen_lock`,
    /// `malware`, `time_sync`, `passwords`, `accounts`, `disk_space`, `backup`.
    pub failing: BTreeSet<&'static str>,
    /// The machine runs a backup job (servers always, some workstations).
    pub has_backup: bool,
}

/// Share of machines failing each control, roughly as small practices look before cleanup.
const FAILURE_RATES: &[(&str, f64)] = &[
    ("encryption", 0.20),
    ("firewall", 0.10),
    ("updates", 0.30),
    ("screen_lock", 0.15),
    ("malware", 0.05),
    ("time_sync", 0.03),
    ("passwords", 0.25),
    ("accounts", 0.05),
    ("disk_space", 0.05),
    ("backup", 0.15),
];

/// A deterministic random source for one agent and purpose.
pub fn rng_for(seed: u64, index: usize, purpose: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ purpose.rotate_left(32))
}

/// The host profile of agent `index`; `first_of_site` makes it the site's server.
pub fn profile(seed: u64, index: usize, practice: &str, first_of_site: bool) -> Profile {
    let mut rng = rng_for(seed, index, 1);
    let roll: f64 = rng.r#gen();
    let (os, role) = if first_of_site {
        (if roll < 0.7 { Os::Windows } else { Os::Linux }, "server")
    } else if roll < 0.70 {
        (Os::Windows, "workstation")
    } else if roll < 0.88 {
        (Os::Macos, "workstation")
    } else {
        (Os::Linux, "workstation")
    };
    let failing = FAILURE_RATES
        .iter()
        .filter(|(_, rate)| rng.r#gen::<f64>() < *rate)
        .map(|(name, _)| *name)
        .collect();
    let slug: String = practice
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(16)
        .collect::<String>()
        .to_ascii_lowercase();
    let kind = if role == "server" { "srv" } else { "ws" };
    Profile {
        index,
        hostname: format!("{slug}-{kind}-{index:05}"),
        os,
        role,
        failing,
        has_backup: role == "server" || rng.r#gen::<f64>() < 0.2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_file_lines_are_checked() {
        let p = Path::new("t.tsv");
        let ok = parse_tokens("# comment\nSmith\tMain\trnd_enr_a\n\nJones\tNorth\trnd_enr_b\n", p).unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].site, "North");
        let e = parse_tokens("Smith\tMain\trnd_enr_a\nSmith rnd_enr_b\n", p).unwrap_err();
        assert_eq!(e.to_string(), "t.tsv line 2: expected `practice<TAB>site<TAB>token`");
    }

    #[test]
    fn too_few_identities_says_how_many_are_missing() {
        let t = Token {
            practice: "P".into(),
            site: "S".into(),
            token: "x".into(),
        };
        assert_eq!(identities(vec![], vec![t.clone(), t.clone()], 2).unwrap().len(), 2);
        let e = identities(vec![], vec![t], 3).unwrap_err();
        assert!(e.to_string().contains("3 agents wanted but only 1"), "{e}");
    }

    #[test]
    fn profiles_are_reproducible_and_varied() {
        let a = profile(7, 3, "Smith Family Practice", false);
        let b = profile(7, 3, "Smith Family Practice", false);
        assert_eq!(
            (a.hostname.as_str(), a.os, &a.failing),
            (b.hostname.as_str(), b.os, &b.failing)
        );
        assert_eq!(a.hostname, "smithfamilypract-ws-00003");
        let fleet: Vec<Profile> = (0..1000).map(|i| profile(7, i, "P", i % 10 == 0)).collect();
        for os in [Os::Windows, Os::Macos, Os::Linux] {
            assert!(fleet.iter().filter(|p| p.os == os).count() > 50, "{os:?}");
        }
        assert_eq!(fleet.iter().filter(|p| p.role == "server").count(), 100);
        let failing_encryption = fleet.iter().filter(|p| p.failing.contains("encryption")).count();
        assert!((120..280).contains(&failing_encryption), "{failing_encryption}");
        assert!(fleet.iter().any(|p| p.failing.is_empty()));
    }

    #[test]
    fn state_file_round_trips_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert!(load_state(&path).unwrap().agents.is_empty());
        let state = StateFile {
            collector: "https://localhost:1".into(),
            agents: vec![Saved {
                agent_id: "a".into(),
                agent_secret: "rnd_agt_secret".into(),
                practice: "P".into(),
                site: "S".into(),
                hostname: "h".into(),
                next_sequence: 12,
            }],
        };
        save_state(&path, &state).unwrap();
        let back = load_state(&path).unwrap();
        assert_eq!(back.agents, state.agents);
        assert!(!format!("{:?}", back.agents[0]).contains("rnd_agt_secret"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "{").unwrap();
        assert!(
            load_state(&path)
                .unwrap_err()
                .to_string()
                .contains("not a rounds-sim credentials file")
        );
    }
}
