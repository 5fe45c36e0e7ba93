//! One probe of one target: name resolution, TCP connect, TLS handshake with a recording
//! verifier, an HTTP/1.1 request, each phase timed and bounded by the probe's deadline; the
//! result is an [`EhrProbe`] record, with a typed reason when the target is down.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rounds_agent_config::endpoint::{Endpoint, EndpointKind, HttpMethod};
use rounds_protocol::obs::EhrProbe;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::timeout_at;

use super::dns;
use super::http;
use super::tls::{RecordingVerifier, Roots, version_name};

/// Longest DNS wait per resolver within a probe's deadline.
const DNS_TRY: Duration = Duration::from_secs(2);
/// Body bytes read to recognise a CapabilityStatement.
const FHIR_BODY_LIMIT: usize = 4 * 1024 * 1024;
/// Body bytes searched for `body_contains`.
const BODY_SEARCH_LIMIT: usize = 64 * 1024;

/// What every probe shares: the crypto provider, the system roots, the resolvers and the
/// hosts file, read once at start under the host root.
#[derive(Debug)]
pub struct ProbeContext {
    pub provider: Arc<CryptoProvider>,
    pub system_roots: Arc<Roots>,
    pub resolvers: Vec<SocketAddr>,
    pub hosts: String,
}

impl ProbeContext {
    /// The context of the host under `root` (`/` on a real machine).
    pub fn load(root: &Path) -> Self {
        let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_default();
        ProbeContext {
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            system_roots: Arc::new(Roots::system(root)),
            resolvers: dns::parse_resolv_conf(&read("etc/resolv.conf")),
            hosts: read("etc/hosts"),
        }
    }
}

/// A target ready to probe: the endpoint and the roots its certificates are checked against
/// (`Err` when its `ca_file` cannot be read: every probe then says so).
#[derive(Debug, Clone)]
pub struct Prepared {
    pub endpoint: Endpoint,
    pub roots: Result<Arc<Roots>, String>,
}

impl Prepared {
    pub fn new(endpoint: Endpoint, ctx: &ProbeContext) -> Self {
        let roots = match &endpoint.ca_file {
            None => Ok(ctx.system_roots.clone()),
            Some(path) => Roots::from_pem_file(path, path.display().to_string())
                .map(Arc::new)
                .map_err(|e| e.to_string()),
        };
        Prepared { endpoint, roots }
    }
}

/// Why a probe is down.
#[derive(Debug)]
struct Down {
    reason: &'static str,
    message: String,
}

fn down(reason: &'static str, message: impl Into<String>) -> Down {
    Down {
        reason,
        message: message.into(),
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// Whole days from `now` to `at`, rounded down (negative once passed).
pub fn days_until(at: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    (at - now).num_seconds().div_euclid(86_400)
}

/// Probes `target` once, within its timeout. `now` dates the certificate expiry figures.
pub async fn probe_once(target: &Prepared, ctx: &ProbeContext, now: DateTime<Utc>) -> EhrProbe {
    let ep = &target.endpoint;
    let start = Instant::now();
    let deadline = tokio::time::Instant::from_std(start + ep.timeout);
    let mut p = EhrProbe {
        probe: ep.kind.as_str().to_string(),
        target: redacted(&ep.target),
        attempts: 1,
        ..EhrProbe::default()
    };
    let result = match ep.kind {
        EndpointKind::Https | EndpointKind::Fhir => web(target, ctx, now, deadline, &mut p).await,
        EndpointKind::Tcp => tcp(ep, ctx, deadline, &mut p).await.map(drop),
        EndpointKind::Dns => dns_probe(ep, ctx, deadline, &mut p).await,
    };
    p.latency_ms = Some(ms(start.elapsed()));
    match result {
        Ok(()) => p.up = true,
        Err(Down { reason, message }) => {
            p.up = false;
            p.reason = Some(reason.to_string());
            p.failure = Some(message);
        }
    }
    p
}

/// `target` without the user name and password a URL may carry: they are never sent.
pub fn redacted(target: &str) -> String {
    match reqwest::Url::parse(target) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        _ => target.to_string(),
    }
}

/// Resolves `host` (an IP address, a name in the hosts file, or by asking the resolvers).
async fn resolve(
    host: &str,
    ctx: &ProbeContext,
    deadline: tokio::time::Instant,
    p: &mut EhrProbe,
) -> Result<Vec<IpAddr>, Down> {
    let start = Instant::now();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        p.dns_ms = Some(0.0);
        return Ok(vec![ip]);
    }
    let listed = dns::lookup_hosts(&ctx.hosts, host);
    if !listed.is_empty() {
        p.dns_ms = Some(ms(start.elapsed()));
        return Ok(listed);
    }
    if ctx.resolvers.is_empty() {
        return Err(down(
            "dns_timeout",
            format!("no DNS resolver configured to resolve {host}"),
        ));
    }
    let mut last = down("dns_timeout", format!("no resolver answered for {host}"));
    for resolver in &ctx.resolvers {
        let mut rcodes = Vec::new();
        for qtype in [dns::TYPE_A, dns::TYPE_AAAA] {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(down(
                    "dns_timeout",
                    format!("resolving {host} took longer than the probe's timeout"),
                ));
            }
            match dns::query(*resolver, host, qtype, left.min(DNS_TRY)).await {
                Ok(a) if a.rcode == 0 && !a.addresses.is_empty() => {
                    p.dns_ms = Some(ms(start.elapsed()));
                    return Ok(a.addresses);
                }
                Ok(a) if a.rcode == dns::RCODE_NXDOMAIN => {
                    p.dns_ms = Some(ms(start.elapsed()));
                    return Err(down(
                        "dns_nxdomain",
                        format!("{host} does not exist (NXDOMAIN from {resolver})"),
                    ));
                }
                Ok(a) => rcodes.push(a.rcode),
                Err(e @ dns::QueryError::BadName(_)) => return Err(down("dns_nxdomain", e.to_string())),
                Err(e) => {
                    last = down("dns_timeout", e.to_string());
                    break;
                }
            }
        }
        if rcodes.len() == 2 {
            p.dns_ms = Some(ms(start.elapsed()));
            last = if rcodes.iter().all(|c| *c == 0) {
                down("dns_nxdomain", format!("{host} has no address records ({resolver})"))
            } else {
                down(
                    "dns_error",
                    format!("resolver {resolver} answered with error code {}", rcodes[0]),
                )
            };
            if rcodes.iter().all(|c| *c == 0) {
                return Err(last);
            }
        }
    }
    Err(last)
}

/// Resolves and connects to `host:port`; the stream and the address connected to.
async fn connect(
    host: &str,
    port: u16,
    ctx: &ProbeContext,
    deadline: tokio::time::Instant,
    p: &mut EhrProbe,
) -> Result<TcpStream, Down> {
    let addrs = resolve(host, ctx, deadline, p).await?;
    let start = Instant::now();
    let mut last = down("tcp_refused", format!("no address for {host}"));
    // The first two addresses (say one IPv4 and one IPv6) are tried in turn.
    for ip in addrs.into_iter().take(2) {
        let addr = SocketAddr::new(ip, port);
        p.address = Some(addr.to_string());
        match timeout_at(deadline, TcpStream::connect(addr)).await {
            Err(_) => {
                return Err(down(
                    "tcp_timeout",
                    format!("connecting to {addr} took longer than the probe's timeout"),
                ));
            }
            Ok(Ok(s)) => {
                p.connect_ms = Some(ms(start.elapsed()));
                return Ok(s);
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = down("tcp_refused", format!("{addr} refused the connection"));
            }
            Ok(Err(e)) => last = down("tcp_unreachable", format!("cannot connect to {addr}: {e}")),
        }
    }
    Err(last)
}

fn split_host_port(target: &str) -> Option<(&str, u16)> {
    let (h, port) = target.rsplit_once(':')?;
    Some((h, port.parse().ok()?))
}

async fn tcp(
    ep: &Endpoint,
    ctx: &ProbeContext,
    deadline: tokio::time::Instant,
    p: &mut EhrProbe,
) -> Result<TcpStream, Down> {
    let (host, port) =
        split_host_port(&ep.target).ok_or_else(|| down("error", format!("`{}` is not host:port", ep.target)))?;
    connect(host, port, ctx, deadline, p).await
}

async fn dns_probe(
    ep: &Endpoint,
    ctx: &ProbeContext,
    deadline: tokio::time::Instant,
    p: &mut EhrProbe,
) -> Result<(), Down> {
    let addrs = resolve(&ep.target, ctx, deadline, p).await?;
    p.address = addrs.first().map(IpAddr::to_string);
    match ep.expect_address {
        Some(want) if !addrs.contains(&want) => Err(down(
            "dns_mismatch",
            format!(
                "{} resolves to {}, not to {want}",
                ep.target,
                addrs.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(", ")
            ),
        )),
        _ => Ok(()),
    }
}

/// The https and fhir probes.
async fn web(
    target: &Prepared,
    ctx: &ProbeContext,
    now: DateTime<Utc>,
    deadline: tokio::time::Instant,
    p: &mut EhrProbe,
) -> Result<(), Down> {
    let ep = &target.endpoint;
    let url =
        reqwest::Url::parse(&ep.target).map_err(|e| down("error", format!("`{}` is not a URL: {e}", ep.target)))?;
    let host = url
        .host_str()
        .ok_or_else(|| down("error", format!("`{}` has no host", ep.target)))?
        .to_string();
    let port = url.port_or_known_default().unwrap_or(443);
    let fhir = ep.kind == EndpointKind::Fhir;
    let mut path = url.path().to_string();
    if fhir {
        path = format!("{}/metadata", path.trim_end_matches('/'));
    } else if let Some(q) = url.query() {
        path = format!("{path}?{q}");
    }
    let host_header = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.clone(),
    };
    let (method, accept, limit) = match (fhir, ep.method) {
        (true, _) => ("GET", "application/fhir+json", FHIR_BODY_LIMIT),
        (false, HttpMethod::Head) => ("HEAD", "*/*", 0),
        (false, HttpMethod::Get) => (
            "GET",
            "*/*",
            if ep.body_contains.is_some() {
                BODY_SEARCH_LIMIT
            } else {
                0
            },
        ),
    };
    let tcp = connect(&host, port, ctx, deadline, p).await?;
    let timed_out = || down("timeout", format!("no answer within {} s", ep.timeout.as_secs_f64()));
    let response = if url.scheme() == "https" {
        let roots = target.roots.clone().map_err(|e| down("cert_untrusted", e))?;
        p.roots = Some(roots.source.clone());
        let verifier = Arc::new(RecordingVerifier::new(roots, ctx.provider.clone()));
        let config = rustls::ClientConfig::builder_with_provider(ctx.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| down("error", e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        let name = ServerName::try_from(host.clone()).map_err(|e| down("error", format!("`{host}`: {e}")))?;
        let start = Instant::now();
        let mut stream = match timeout_at(
            deadline,
            tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
        )
        .await
        {
            Err(_) => return Err(timed_out()),
            Ok(Err(e)) => {
                let text = e.to_string();
                if text.contains("ProtocolVersion") || text.contains("protocol version") {
                    // rustls speaks only TLS 1.2 and 1.3: the server offered something older.
                    p.tls_version = Some("older than TLSv1.2".into());
                }
                return Err(down(
                    "tls_handshake",
                    format!("TLS handshake with {host} failed: {text}"),
                ));
            }
            Ok(Ok(s)) => s,
        };
        p.tls_ms = Some(ms(start.elapsed()));
        let (_, conn) = stream.get_ref();
        p.tls_version = conn.protocol_version().map(version_name);
        p.tls_cipher = conn.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite()));
        if let Some(c) = verifier.outcome() {
            p.chain_verified = Some(c.chain_verified);
            p.hostname_match = Some(c.hostname_match);
            p.leaf_expires_in_days = c.leaf_not_after.map(|t| days_until(t, now));
            p.chain_expires_in_days = c.chain_not_after.map(|t| days_until(t, now));
            p.certificate_expires_at = c.chain_not_after;
            p.certificate_valid = Some(c.chain_verified && c.hostname_match);
            if let Some((reason, words)) = c.chain_error {
                return Err(down(reason, words));
            }
            if !c.hostname_match {
                return Err(down(
                    "cert_hostname",
                    format!("the certificate is not valid for {host}"),
                ));
            }
        }
        ask(&mut stream, [method, &host_header, &path, accept], limit, deadline, p)
            .await
            .map_err(|d| d.unwrap_or_else(timed_out))?
    } else {
        let mut stream = tcp;
        ask(&mut stream, [method, &host_header, &path, accept], limit, deadline, p)
            .await
            .map_err(|d| d.unwrap_or_else(timed_out))?
    };
    p.http_status = Some(response.status);
    if fhir {
        if response.status != 200 {
            return Err(down(
                "http_status",
                format!("GET {path} answered HTTP {}", response.status),
            ));
        }
        let (version, software) = http::capability_statement(&response.body).map_err(|m| down("not_fhir", m))?;
        p.fhir_version = version;
        p.fhir_software = software;
        return Ok(());
    }
    if !ep.expect_status.contains(&response.status) {
        return Err(down(
            "http_status",
            format!(
                "HTTP {}, expected {} to {}",
                response.status,
                ep.expect_status.start(),
                ep.expect_status.end()
            ),
        ));
    }
    if let Some(needle) = &ep.body_contains
        && !response
            .body
            .windows(needle.len().max(1))
            .any(|w| w == needle.as_bytes())
    {
        return Err(down(
            "body_mismatch",
            "the answer does not contain the expected text".to_string(),
        ));
    }
    Ok(())
}

/// One HTTP exchange (`[method, host, path, accept]`) within the deadline, timing the first
/// byte; `Err(None)` when the deadline passed.
async fn ask<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    [method, host, path, accept]: [&str; 4],
    limit: usize,
    deadline: tokio::time::Instant,
    p: &mut EhrProbe,
) -> Result<http::Response, Option<Down>> {
    let sent = Instant::now();
    let r = timeout_at(deadline, http::exchange(stream, method, host, path, accept, limit))
        .await
        .map_err(|_| None)?
        .map_err(|e| Some(down("http_error", e.to_string())))?;
    p.first_byte_ms = Some(ms(r.first_byte.saturating_duration_since(sent)));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_not_reported() {
        assert_eq!(
            redacted("https://svc:hunter2@ehr.example/fhir"),
            "https://ehr.example/fhir"
        );
        assert_eq!(redacted("https://ehr.example/fhir"), "https://ehr.example/fhir");
        assert_eq!(redacted("ehr.example:5432"), "ehr.example:5432");
    }
}
