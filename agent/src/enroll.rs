//! Enrollment: trading a one-time token for an agent identity, and keeping it.
//!
//! [`enroll`] reads the CA certificate, sends a [`rounds_protocol::EnrollRequest`] to the
//! collector over TLS trusting only that CA, and on success saves the identity and a copy of the
//! CA in the state dir (see [`crate::state`]), so `run` needs nothing but the state dir.

use std::path::PathBuf;

use rounds_protocol::{EnrollRequest, EnrollResponse, PROTOCOL_MAJOR};

use crate::client::{ClientError, CollectorClient, RequestError};
use crate::state::{Identity, StateDir, StateError};

/// What `enroll` needs. `Debug` does not show the token.
#[derive(Clone)]
pub struct EnrollOptions {
    /// Base URL of the collector, e.g. `https://collector.example:8443`.
    pub collector: String,
    /// The one-time enrollment token.
    pub token: String,
    /// PEM file with the CA certificate the collector's certificate must chain to.
    pub ca_file: PathBuf,
    /// Where to keep the identity.
    pub state_dir: PathBuf,
    /// The host name to enroll as; `None` for this machine's.
    pub hostname: Option<String>,
}

impl std::fmt::Debug for EnrollOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let EnrollOptions {
            collector,
            token: _,
            ca_file,
            state_dir,
            hostname,
        } = self;
        f.debug_struct("EnrollOptions")
            .field("collector", collector)
            .field("token", &"<redacted>")
            .field("ca_file", ca_file)
            .field("state_dir", state_dir)
            .field("hostname", hostname)
            .finish()
    }
}

/// Why enrollment failed.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("cannot read CA certificate {path}: {source}")]
    ReadCa { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("enrollment refused by collector: {message}")]
    Refused { url: String, status: u16, message: String },
    #[error("enrollment failed: {0}")]
    Request(RequestError),
    #[error("collector answered enrollment with protocol {got}; this agent speaks protocol {PROTOCOL_MAJOR}")]
    Protocol { got: u32 },
    #[error("cannot save the enrollment: {0}")]
    State(#[from] StateError),
    // Fingerprint enrollment (deploy).
    #[error(transparent)]
    Pin(#[from] crate::pin::PinError),
}

impl EnrollError {
    /// Whether the error is in what the operator gave (a file, a URL) rather than at run time.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            EnrollError::ReadCa { .. }
                | EnrollError::Client(_)
                | EnrollError::Pin(crate::pin::PinError::BadFingerprint { .. } | crate::pin::PinError::BadUrl { .. })
        )
    }
}

/// Enrolls this machine with the collector and saves the identity in the state dir.
pub async fn enroll(opts: EnrollOptions) -> Result<Identity, EnrollError> {
    let EnrollOptions {
        collector,
        token,
        ca_file,
        state_dir,
        hostname,
    } = opts;
    let ca_pem = std::fs::read(&ca_file).map_err(|source| EnrollError::ReadCa {
        path: ca_file.clone(),
        source,
    })?;
    enroll_trusting(
        collector,
        token,
        ca_pem,
        &ca_file.display().to_string(),
        state_dir,
        hostname,
    )
    .await
}

/// What [`enroll_by_fingerprint`] needs: as [`EnrollOptions`], with the CA's SHA-256
/// fingerprint instead of its file. `Debug` does not show the token.
#[derive(Clone)]
pub struct FingerprintEnrollOptions {
    /// Base URL of the collector, e.g. `https://collector.example:8443`.
    pub collector: String,
    /// The one-time enrollment token.
    pub token: String,
    /// The CA's SHA-256 fingerprint as typed (`sha256:HEX`, or hex with or without colons).
    pub ca_fingerprint: String,
    /// Where to keep the identity and the CA.
    pub state_dir: PathBuf,
    /// The host name to enroll as; `None` for this machine's.
    pub hostname: Option<String>,
}

impl std::fmt::Debug for FingerprintEnrollOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let FingerprintEnrollOptions {
            collector,
            token: _,
            ca_fingerprint,
            state_dir,
            hostname,
        } = self;
        f.debug_struct("FingerprintEnrollOptions")
            .field("collector", collector)
            .field("token", &"<redacted>")
            .field("ca_fingerprint", ca_fingerprint)
            .field("state_dir", state_dir)
            .field("hostname", hostname)
            .finish()
    }
}

/// Enrolls with the CA fetched from the collector and pinned by its fingerprint (see
/// [`crate::pin`]); a CA whose fingerprint differs is refused before anything is stored or the
/// token is sent.
pub async fn enroll_by_fingerprint(opts: FingerprintEnrollOptions) -> Result<Identity, EnrollError> {
    let FingerprintEnrollOptions {
        collector,
        token,
        ca_fingerprint,
        state_dir,
        hostname,
    } = opts;
    let expected = crate::pin::Fingerprint::parse(&ca_fingerprint)?;
    let ca_pem = crate::pin::fetch_ca(&collector, expected).await?;
    tracing::info!(fingerprint = %expected, "collector CA matches the fingerprint");
    let source = format!("the CA fetched from {collector} ({expected})");
    enroll_trusting(collector, token, ca_pem, &source, state_dir, hostname).await
}

/// Enrolls trusting the CA in `ca_pem` (named `ca_source` in errors) and saves it with the
/// identity.
async fn enroll_trusting(
    collector: String,
    token: String,
    ca_pem: Vec<u8>,
    ca_source: &str,
    state_dir: PathBuf,
    hostname: Option<String>,
) -> Result<Identity, EnrollError> {
    let client = CollectorClient::new(&collector, &ca_pem, ca_source, None)?;
    let state = StateDir::new(state_dir);
    // Fail on an unwritable state dir before the token is spent.
    state.create()?;

    let hostname = hostname.unwrap_or_else(|| sysinfo::System::host_name().unwrap_or_else(|| "unknown".into()));
    let request = EnrollRequest {
        protocol: PROTOCOL_MAJOR,
        token,
        hostname,
        os: std::env::consts::OS.to_string(),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let response = client.enroll(&request).await.map_err(|e| match e {
        RequestError::Rejected { url, status, message } => EnrollError::Refused { url, status, message },
        RequestError::Unauthorized { url, message } => EnrollError::Refused {
            url,
            status: 401,
            message,
        },
        other => EnrollError::Request(other),
    })?;
    let EnrollResponse {
        protocol,
        agent_id,
        agent_secret,
        practice,
        site,
        heartbeat_interval_secs,
    } = response;
    if protocol != PROTOCOL_MAJOR {
        return Err(EnrollError::Protocol { got: protocol });
    }
    let identity = Identity {
        collector: client.base_url().to_string(),
        agent_id,
        agent_secret,
        practice,
        site,
        enrolled_at: chrono::Utc::now(),
        // A collector's announced interval outside the agent's own limits is ignored.
        heartbeat_interval_secs: Some(heartbeat_interval_secs)
            .filter(|s| (1..=crate::config::MAX_HEARTBEAT_INTERVAL_SECS).contains(s)),
    };
    if let Ok(previous) = state.load_identity() {
        tracing::warn!(previous_agent_id = %previous.agent_id, "replacing previous enrollment");
    }
    state.save_enrollment(&identity, &ca_pem)?;
    tracing::info!(agent_id = %identity.agent_id, practice = %identity.practice, site = %identity.site, "enrolled");
    Ok(identity)
}
