//! The simulator's HTTPS client: one HTTP/1.1 connection pool shared by every agent task, TLS
//! 1.2/1.3 (ring) trusting only the collector's CA, the collector's host name pinned to its
//! loopback address, every request under one concurrency limit and timed into the
//! [`Recorder`]. Agents that "reconnect" get a [`SimClient::fresh`] pool of their own, so the
//! collector sees new TCP connections and TLS handshakes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;

use crate::config::SimConfig;
use crate::stats::{Kind, Recorder};

/// Timeout of a whole request, as the agent's.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of connecting and the TLS handshake, as the agent's.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{path}: no usable PEM CA certificate: {detail}")]
    Ca { path: String, detail: String },
    #[error("cannot set up the HTTPS client: {0}")]
    Build(String),
}

/// HTTP Basic credentials of one simulated agent.
#[derive(Clone)]
pub struct Credentials {
    pub agent_id: String,
    pub agent_secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.agent_id)
    }
}

/// TLS trusting only the CA certificates in `pem`.
pub fn tls_config(pem: &[u8], path: &str) -> Result<rustls::ClientConfig, ClientError> {
    let bad = |detail: String| ClientError::Ca {
        path: path.into(),
        detail,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        roots
            .add(cert.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in the file".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ClientError::Build(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A request's answer: the parsed body, `None` for `304 Not Modified`.
pub type Answer<R> = Result<Option<R>, String>;

/// The shared client.
#[derive(Debug, Clone)]
pub struct SimClient {
    http: reqwest::Client,
    base: String,
    tls: rustls::ClientConfig,
    host: String,
    addr: std::net::SocketAddr,
    pool: usize,
    slots: Arc<Semaphore>,
    pub recorder: Arc<Recorder>,
    metrics_token: Option<String>,
}

fn build(
    tls: &rustls::ClientConfig,
    host: &str,
    addr: std::net::SocketAddr,
    pool: usize,
) -> Result<reqwest::Client, ClientError> {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls.clone())
        .https_only(true)
        .resolve(host, addr)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(pool)
        .pool_idle_timeout(Duration::from_secs(rounds_protocol::CLIENT_IDLE_SECS))
        .user_agent(concat!("rounds-sim/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ClientError::Build(e.to_string()))
}

impl SimClient {
    /// The shared pool of the run described by `config`, trusting `ca_pem`.
    pub fn new(config: &SimConfig, ca_pem: &[u8], recorder: Arc<Recorder>) -> Result<SimClient, ClientError> {
        let tls = tls_config(ca_pem, &config.ca.display().to_string())?;
        let http = build(&tls, &config.host, config.addr, config.max_in_flight)?;
        Ok(SimClient {
            http,
            base: config.base_url.clone(),
            tls,
            host: config.host.clone(),
            addr: config.addr,
            pool: config.max_in_flight,
            slots: Arc::new(Semaphore::new(config.max_in_flight)),
            recorder,
            metrics_token: config.metrics_token.clone(),
        })
    }

    /// A client with its own new connection pool (one connection), under the same limit and
    /// recorder: an agent that restarted or came back online.
    pub fn fresh(&self) -> Result<SimClient, ClientError> {
        Ok(SimClient {
            http: build(&self.tls, &self.host, self.addr, 1)?,
            pool: 1,
            ..self.clone()
        })
    }

    /// The number of idle connections this client's pool keeps.
    pub fn pool_size(&self) -> usize {
        self.pool
    }

    /// POSTs `body` as JSON and parses the JSON answer.
    pub async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        kind: Kind,
        path: &str,
        creds: Option<&Credentials>,
        body: &B,
    ) -> Answer<R> {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(body);
        if let Some(c) = creds {
            req = req.basic_auth(&c.agent_id, Some(&c.agent_secret));
        }
        self.send(kind, req).await
    }

    /// GETs `path`, with `If-None-Match` when an `etag` is known.
    pub async fn get<R: DeserializeOwned>(
        &self,
        kind: Kind,
        path: &str,
        creds: &Credentials,
        etag: Option<&str>,
    ) -> Answer<R> {
        let mut req = self
            .http
            .get(format!("{}{path}", self.base))
            .basic_auth(&creds.agent_id, Some(&creds.agent_secret));
        if let Some(e) = etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, e);
        }
        self.send(kind, req).await
    }

    async fn send<R: DeserializeOwned>(&self, kind: Kind, req: reqwest::RequestBuilder) -> Answer<R> {
        let queued = Instant::now();
        let Ok(_slot) = self.slots.acquire().await else {
            return Err("closed".into());
        };
        self.recorder.wait(queued.elapsed());
        let started = Instant::now();
        let result = async {
            let resp = req.send().await.map_err(|e| classify(&e))?;
            let status = resp.status();
            if status == reqwest::StatusCode::NOT_MODIFIED {
                return Ok(None);
            }
            // The body is read in full before the latency is taken: the answer is complete.
            let bytes = resp.bytes().await.map_err(|e| classify(&e))?;
            if !status.is_success() {
                return Err(status.as_u16().to_string());
            }
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|_| "unparsable_answer".to_string())
        }
        .await;
        self.recorder
            .request(kind, started.elapsed(), result.as_ref().err().cloned());
        result
    }

    /// The collector's `/metrics` text, outside the recorded requests; with the configured
    /// `metrics_token` (issue 15) as a bearer token when there is one.
    pub async fn metrics_text(&self) -> Result<String, String> {
        let mut req = self.http.get(format!("{}/metrics", self.base));
        if let Some(token) = &self.metrics_token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.map_err(|e| classify(&e))?;
        resp.text().await.map_err(|e| classify(&e))
    }
}

fn classify(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect".into()
    } else if e.is_body() || e.is_decode() {
        "body".into()
    } else {
        // Rare, and the class alone does not say why: the cause goes to the log (sim.err in
        // bench/collector-load.sh), e.g. "connection closed before message completed".
        let mut cause = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            cause.push_str(": ");
            cause.push_str(&s.to_string());
            source = s.source();
        }
        tracing::warn!(%cause, "transport error");
        "transport".into()
    }
}
