//! The HTTPS client to the collector: TLS trust, timeouts, authentication and error mapping.
//!
//! Trust is exactly one CA: the one given at enrollment (and copied into the state dir). No
//! platform roots are loaded, so a server whose certificate chains to any other CA is refused.
//! TLS 1.2 and 1.3 only, with the ring provider. After enrollment every request carries HTTP
//! Basic auth (agent id, agent secret). Failures are mapped to [`RequestError`], which names
//! the URL and tells apart what is worth retrying from what is not.

use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;
use rounds_protocol::{ErrorBody, paths};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How long to wait for a TCP connection and TLS handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a whole request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{source_name} holds no PEM certificate")]
    NoCertificate { source_name: String },
    #[error("{source_name} is not a valid PEM certificate file: {detail}")]
    BadPem { source_name: String, detail: String },
    #[error("CA certificate in {source_name} is not usable as a trust anchor: {detail}")]
    BadCa { source_name: String, detail: String },
    #[error("invalid collector URL {url:?}: {detail}")]
    BadUrl { url: String, detail: String },
    #[error("cannot set up TLS: {0}")]
    Tls(String),
}

/// Builds the TLS configuration: TLS 1.2 and 1.3 with ring, trusting only the CA certificates in
/// `ca_pem`. `source_name` (a path) is named in errors.
pub fn tls_config(ca_pem: &[u8], source_name: &str) -> Result<rustls::ClientConfig, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    let mut found = 0;
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| ClientError::BadPem {
            source_name: source_name.into(),
            detail: e.to_string(),
        })?;
        roots.add(cert).map_err(|e| ClientError::BadCa {
            source_name: source_name.into(),
            detail: e.to_string(),
        })?;
        found += 1;
    }
    if found == 0 {
        return Err(ClientError::NoCertificate {
            source_name: source_name.into(),
        });
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// HTTP Basic credentials of an enrolled agent. `Debug` never shows the secret.
#[derive(Clone)]
pub struct Credentials {
    pub agent_id: String,
    pub agent_secret: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("agent_id", &self.agent_id)
            .field("agent_secret", &"<redacted>")
            .finish()
    }
}

/// Why a request to the collector did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error(
        "the collector at {url} presented a certificate that is not trusted (it does not chain to the configured CA): {detail}"
    )]
    Untrusted { url: String, detail: String },
    #[error("TLS handshake with {url} failed: {detail}")]
    Tls { url: String, detail: String },
    #[error("cannot connect to {url}: {detail}")]
    Connect { url: String, detail: String },
    #[error("request to {url} timed out")]
    Timeout { url: String },
    #[error("request to {url} failed: {detail}")]
    Transport { url: String, detail: String },
    #[error("collector refused the agent's credentials at {url} ({message}); re-enrollment is needed")]
    Unauthorized { url: String, message: String },
    /// The collector said the agent's credentials were revoked (issue 15): retrying cannot help.
    #[error(
        "collector at {url} says this agent's credentials were revoked ({message}); enroll the machine again with a new token"
    )]
    Revoked { url: String, message: String },
    #[error("collector at {url} rejected the request ({status}): {message}")]
    Rejected { url: String, status: u16, message: String },
    #[error("collector at {url} failed ({status}): {message}")]
    Server {
        url: String,
        status: u16,
        message: String,
        /// How long the collector asked to wait (`Retry-After` of a 429 or 503).
        retry_after: Option<Duration>,
    },
    #[error(
        "collector at {url} already holds other reports with these sequence numbers, it expects {next_expected} next: {message}"
    )]
    Conflict {
        url: String,
        next_expected: u64,
        /// The collector's chain head (hash of `next_expected - 1`), when it said.
        chain_hash: Option<String>,
        message: String,
    },
    #[error("unexpected answer from {url}: {detail}")]
    BadResponse { url: String, detail: String },
}

impl RequestError {
    /// Whether sending the same request again later may succeed: network trouble, timeouts, 5xx,
    /// 408 and 429, and an answer that could not be read (the request may well have been
    /// stored; resending is safe). A 401 is retried too (slowly), since credentials can be fixed
    /// by the operator without the report becoming invalid.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            RequestError::Rejected { .. } | RequestError::Conflict { .. } | RequestError::Revoked { .. }
        )
    }

    /// The `Retry-After` the collector sent, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RequestError::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status of an error answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            RequestError::Unauthorized { .. } | RequestError::Revoked { .. } => Some(401),
            RequestError::Conflict { .. } => Some(409),
            RequestError::Rejected { status, .. } | RequestError::Server { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The collector's message, for a request it answered with an error status.
    pub fn collector_message(&self) -> Option<&str> {
        match self {
            RequestError::Unauthorized { message, .. }
            | RequestError::Revoked { message, .. }
            | RequestError::Rejected { message, .. }
            | RequestError::Server { message, .. }
            | RequestError::Conflict { message, .. } => Some(message),
            _ => None,
        }
    }
}

/// A client for one collector.
#[derive(Debug, Clone)]
pub struct CollectorClient {
    http: reqwest::Client,
    base: String,
    credentials: Option<Credentials>,
}

impl CollectorClient {
    /// A client for the collector at `base_url` (https only), trusting only the CA in `ca_pem`.
    /// `ca_source` (a path) is named in errors.
    pub fn new(
        base_url: &str,
        ca_pem: &[u8],
        ca_source: &str,
        credentials: Option<Credentials>,
    ) -> Result<Self, ClientError> {
        let base = normalize_base_url(base_url)?;
        let tls = tls_config(ca_pem, ca_source)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .https_only(true)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(rounds_protocol::CLIENT_IDLE_SECS))
            .user_agent(concat!("rounds-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Tls(error_chain(&e)))?;
        Ok(CollectorClient {
            http,
            base,
            credentials,
        })
    }

    /// The collector's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The full URL of an API path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Enrolls (no credentials needed).
    pub async fn enroll(
        &self,
        req: &rounds_protocol::EnrollRequest,
    ) -> Result<rounds_protocol::EnrollResponse, RequestError> {
        self.post(paths::ENROLL, req).await
    }

    /// Sends a heartbeat.
    pub async fn heartbeat(
        &self,
        hb: &rounds_protocol::Heartbeat,
    ) -> Result<rounds_protocol::HeartbeatAck, RequestError> {
        self.post(paths::HEARTBEAT, hb).await
    }

    /// Sends a report; `Ok` only once the collector acknowledged it.
    pub async fn report(&self, report: &rounds_protocol::Report) -> Result<rounds_protocol::ReportAck, RequestError> {
        self.post(paths::REPORTS, report).await
    }

    /// Sends reports in one batch; `Ok` only once the collector acknowledged them.
    pub async fn report_batch(
        &self,
        batch: &rounds_protocol::ReportBatch,
    ) -> Result<rounds_protocol::BatchAck, RequestError> {
        self.post(paths::REPORT_BATCH, batch).await
    }

    /// Fetches the agent's effective configuration; `Ok(None)` when it is still `etag`
    /// (`304 Not Modified`).
    pub async fn config(&self, etag: Option<&str>) -> Result<Option<rounds_protocol::AgentConfig>, RequestError> {
        let url = self.url(paths::CONFIG);
        let mut req = self.authed(self.http.get(&url));
        if let Some(tag) = etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, tag);
        }
        let resp = req.send().await.map_err(|e| map_transport(&url, &e))?;
        if resp.status() == StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        answer(url, resp).await.map(Some)
    }

    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.credentials {
            Some(c) => req.basic_auth(&c.agent_id, Some(&c.agent_secret)),
            None => req,
        }
    }

    /// POSTs `body` as JSON to `path` and parses the JSON answer.
    pub async fn post<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, RequestError> {
        let url = self.url(path);
        let req = self.authed(self.http.post(&url).json(body));
        let resp = req.send().await.map_err(|e| map_transport(&url, &e))?;
        answer(url, resp).await
    }
}

/// Longest `Retry-After` honoured; a longer one is cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Reads an answer: the JSON of a success, else the error it means.
async fn answer<R: DeserializeOwned>(url: String, resp: reqwest::Response) -> Result<R, RequestError> {
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|secs| Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    let bytes = resp.bytes().await.map_err(|e| map_transport(&url, &e))?;
    if status.is_success() {
        return serde_json::from_slice(&bytes).map_err(|e| RequestError::BadResponse {
            url,
            detail: format!("cannot parse the {status} answer: {e}"),
        });
    }
    let message = error_message(status, &bytes);
    Err(match status {
        StatusCode::UNAUTHORIZED if is_revoked(&bytes) => RequestError::Revoked { url, message },
        StatusCode::UNAUTHORIZED => RequestError::Unauthorized { url, message },
        StatusCode::CONFLICT => match serde_json::from_slice::<rounds_protocol::SequenceConflict>(&bytes) {
            Ok(c) => RequestError::Conflict {
                url,
                next_expected: c.next_expected,
                chain_hash: c.chain_hash,
                message,
            },
            Err(_) => RequestError::Rejected {
                url,
                status: 409,
                message,
            },
        },
        StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => RequestError::Server {
            url,
            status: status.as_u16(),
            message,
            retry_after,
        },
        s if s.is_client_error() => RequestError::Rejected {
            url,
            status: s.as_u16(),
            message,
        },
        s => RequestError::Server {
            url,
            status: s.as_u16(),
            message,
            retry_after,
        },
    })
}

/// Whether an error body carries the `credentials_revoked` code.
fn is_revoked(body: &[u8]) -> bool {
    serde_json::from_slice::<ErrorBody>(body)
        .is_ok_and(|b| b.code.as_deref() == Some(rounds_protocol::error_codes::CREDENTIALS_REVOKED))
}

/// Checks and normalizes a collector base URL: https, a host, no query; no trailing slash.
pub fn normalize_base_url(url: &str) -> Result<String, ClientError> {
    let bad = |detail: &str| ClientError::BadUrl {
        url: url.into(),
        detail: detail.into(),
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if parsed.scheme() != "https" {
        return Err(bad("the collector is reached over https only"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad("a base URL has no query or fragment"));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_string())
}

/// The collector's error message: the `error` of a JSON [`ErrorBody`], else the text, else the
/// status's reason.
fn error_message(status: StatusCode, body: &[u8]) -> String {
    if let Ok(ErrorBody { error, .. }) = serde_json::from_slice::<ErrorBody>(body) {
        return error;
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        status.canonical_reason().unwrap_or("no message").to_string()
    } else {
        text.chars().take(500).collect()
    }
}

/// Maps a reqwest failure to a clear error naming the URL.
fn map_transport(url: &str, e: &reqwest::Error) -> RequestError {
    let url = url.to_string();
    if let Some(tls) = find_rustls_error(e) {
        return match tls {
            rustls::Error::InvalidCertificate(cert) => RequestError::Untrusted {
                url,
                detail: cert_detail(cert),
            },
            other => RequestError::Tls {
                url,
                detail: other.to_string(),
            },
        };
    }
    if e.is_timeout() {
        return RequestError::Timeout { url };
    }
    let detail = root_causes(e);
    if e.is_connect() {
        RequestError::Connect { url, detail }
    } else {
        RequestError::Transport { url, detail }
    }
}

fn cert_detail(e: &rustls::CertificateError) -> String {
    match e {
        rustls::CertificateError::UnknownIssuer => "unknown issuer".into(),
        rustls::CertificateError::NotValidForName => "the certificate is not valid for this host name".into(),
        rustls::CertificateError::NotValidForNameContext { expected, .. } => {
            format!("the certificate is not valid for {expected:?}")
        }
        rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. } => {
            "the certificate has expired".into()
        }
        other => format!("invalid peer certificate: {other:?}"),
    }
}

/// Finds a rustls error in an error's source chain, looking inside `io::Error`s (whose `source`
/// skips the wrapped error itself).
fn find_rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur: Option<&'a (dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                return Some(tls);
            }
            cur = Some(inner);
            continue;
        }
        cur = err.source();
    }
    None
}

/// The two innermost causes of an error ("tcp connect error: Connection refused"): what a
/// person needs, without reqwest's and hyper's wrappers that repeat the URL.
fn root_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(err) = cur {
        chain.push(err.to_string());
        cur = err.source();
    }
    let start = chain.len().saturating_sub(2).max(usize::from(chain.len() > 1));
    chain[start..].join(": ")
}

/// An error and its causes, joined by `: `, without repeating a cause already in its parent.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        let s = err.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = err.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_must_be_https_and_loses_trailing_slash() {
        assert_eq!(
            normalize_base_url("https://c.example:8443/").unwrap(),
            "https://c.example:8443"
        );
        assert_eq!(
            normalize_base_url("https://c.example/rounds/").unwrap(),
            "https://c.example/rounds"
        );
        let err = normalize_base_url("http://c.example").unwrap_err().to_string();
        assert!(err.contains("https only") && err.contains("http://c.example"), "{err}");
        assert!(normalize_base_url("c.example").is_err());
        assert!(normalize_base_url("https://c.example/?a=b").is_err());
    }

    #[test]
    fn error_message_prefers_the_json_error_field() {
        let body = br#"{"error":"enrollment token already used"}"#;
        assert_eq!(
            error_message(StatusCode::CONFLICT, body),
            "enrollment token already used"
        );
        assert_eq!(
            error_message(StatusCode::BAD_GATEWAY, b" upstream down \n"),
            "upstream down"
        );
        assert_eq!(error_message(StatusCode::NOT_FOUND, b""), "Not Found");
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let err = tls_config(b"not a pem", "/etc/x.pem").unwrap_err().to_string();
        assert!(
            err.contains("/etc/x.pem") && err.contains("no PEM certificate"),
            "{err}"
        );
    }

    #[test]
    fn credentials_debug_hides_the_secret() {
        let c = Credentials {
            agent_id: "a1".into(),
            agent_secret: "s3cr3t".into(),
        };
        let s = format!("{c:?}");
        assert!(s.contains("a1") && !s.contains("s3cr3t"), "{s}");
    }
}
